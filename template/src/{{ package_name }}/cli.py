"""Command line: ``python -m <package> chat "PROMPT"`` prints the model's reply.

Settings errors (a missing CF_AIG_TOKEN, say) end in one line on stderr and exit
code 2, before any request is sent; gateway errors end in one line and exit 1.
The openai SDK is imported only once a request is really going to be made.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .settings import SettingsError, load_settings

DEFAULT_MODEL = "gpt-4o-mini"


def load_dotenv(path: Path = Path(".env")) -> None:
    """Read KEY=VALUE lines from .env; variables already set in the environment win."""
    if not path.is_file():
        return
    for line in path.read_text(encoding="utf-8").splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key and not key.startswith("#"):
            os.environ.setdefault(key.strip(), value.strip().strip("\"'"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=__package__, description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    chat = commands.add_parser("chat", help="send one prompt through the gateway, print the reply")
    chat.add_argument("prompt", help="what to ask")
    chat.add_argument("--model", default=DEFAULT_MODEL, help=f"model (default {DEFAULT_MODEL})")
    chat.add_argument("--system", help="system message to send before the prompt")
    chat.add_argument("--stream", action="store_true", help="print the reply as it arrives")
    chat.add_argument("--event-id", help="cf-aig-event-id to send, to find this request in logs")
    chat.add_argument(
        "--json", action="store_true", help="print {reply, log_id, cache_status} as JSON"
    )
    return parser


def chat(args: argparse.Namespace) -> int:
    settings = load_settings()
    from .client import create_client  # imports openai: only now that we need it

    client = create_client(settings, max_retries=0)
    messages = [{"role": "system", "content": args.system}] if args.system else []
    messages.append({"role": "user", "content": args.prompt})
    options = {"stream": True} if args.stream else {}
    if args.event_id:
        options["extra_headers"] = {"cf-aig-event-id": args.event_id}
    raw = client.chat.completions.with_raw_response.create(
        model=args.model, messages=messages, **options
    )
    if args.stream:
        parts = []
        for chunk in raw.parse():
            text = chunk.choices[0].delta.content if chunk.choices else None
            if text:
                parts.append(text)
                if not args.json:
                    print(text, end="", flush=True)
        reply = "".join(parts)
        if not args.json:
            print()
    else:
        reply = raw.parse().choices[0].message.content or ""
    if args.json:
        print(
            json.dumps(
                {
                    "reply": reply,
                    "log_id": raw.headers.get("cf-aig-log-id"),
                    "cache_status": raw.headers.get("cf-aig-cache-status"),
                },
                ensure_ascii=False,
            )
        )
    elif not args.stream:
        print(reply)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    load_dotenv()
    try:
        return chat(args)
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # noqa: BLE001 - turned into one line, see gateway_error
        message = gateway_error(error)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 1


def gateway_error(error: Exception) -> str | None:
    """One line for the SDK's errors (None: not an SDK error, let it raise)."""
    import openai

    if isinstance(error, openai.APIStatusError):
        log_id = error.response.headers.get("cf-aig-log-id")
        where = f" (gateway log id {log_id})" if log_id else ""
        return f"the gateway answered {error.status_code}: {error.message}{where}"
    if isinstance(error, openai.APITimeoutError):
        return f"the gateway did not answer in time ({error.request.url})"
    if isinstance(error, openai.APIConnectionError):
        return f"could not reach the gateway at {error.request.url}: {error.__cause__ or error}"
    return None
