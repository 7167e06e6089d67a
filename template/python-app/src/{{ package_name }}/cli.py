"""Command line: ``chat "PROMPT"`` prints the model's reply; ``serve`` runs the HTTP service;
``callers add NAME`` / ``callers remove NAME`` edit callers.toml; ``eval`` scores evals/.

Settings errors (a missing CF_AIG_TOKEN, say) end in one line on stderr and exit code 2,
before any request is sent; gateway errors (an answer over MAX_UPSTREAM_BYTES included), and
a call that outlives its deadline (``--timeout``, default REQUEST_TIMEOUT_SECONDS), end in
one line and exit 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from . import callers_cli, evals
from .callers import CallersError
from .errors import UpstreamError
from .gateway import GatewayOptions
from .providers import DEFAULT_PROVIDER, PROVIDERS, Upstream
from .settings import Settings, SettingsError, get_settings, load_settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=__package__, description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    chat = commands.add_parser("chat", help="send one prompt through the gateway, print the reply")
    chat.add_argument("prompt", help="what to ask")
    chat.add_argument(
        "--provider",
        choices=list(PROVIDERS),
        default=DEFAULT_PROVIDER,
        help=f"provider (default {DEFAULT_PROVIDER})",
    )
    chat.add_argument("--model", help="model (default: the provider's default model)")
    chat.add_argument("--system", help="system message to send before the prompt")
    chat.add_argument("--stream", action="store_true", help="print the reply as it arrives")
    chat.add_argument("--event-id", help="cf-aig-event-id to send, to find it in logs")
    chat.add_argument("--cache-ttl", type=int, help="cache this answer for N seconds")
    chat.add_argument("--skip-cache", action="store_true", help="do not use the cache")
    chat.add_argument(
        "--timeout",
        type=float,
        help="give up after this many seconds, all of the call (default REQUEST_TIMEOUT_SECONDS)",
    )
    chat.add_argument(
        "--json", action="store_true", help="print {reply, model, log_id, cache_status} as JSON"
    )
    serve = commands.add_parser("serve", help="run the HTTP service (uvicorn)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    callers_cli.add_parser(commands)
    evals.add_parser(commands)
    return parser


async def run_chat(args: argparse.Namespace, settings: Settings) -> int:
    messages = [{"role": "system", "content": args.system}] if args.system else []
    messages.append({"role": "user", "content": args.prompt})
    options = GatewayOptions(
        event_id=args.event_id, cache_ttl=args.cache_ttl, skip_cache=args.skip_cache
    )
    parts = []
    async with Upstream(settings) as upstream, asyncio.timeout(settings.request_timeout):
        reply = await upstream.chat(
            messages,
            provider=args.provider,
            model=args.model,
            stream=args.stream,
            headers=options.headers(),
        )
        async for piece in reply.pieces:
            parts.append(piece)
            if args.stream and not args.json:
                print(piece, end="", flush=True)
    if args.json:
        record = {
            "reply": "".join(parts),
            "model": reply.model,
            "log_id": reply.gateway.log_id,
            "cache_status": reply.gateway.cache_status,
        }
        print(json.dumps(record, ensure_ascii=False))
    else:
        print("" if args.stream else "".join(parts))
    return 0


def check_callers() -> None:
    """callers.toml as the service reads it at start-up: CallersError or SettingsError."""
    from .auth import read_callers  # the service's module (FastAPI): only `serve` pays it

    settings = get_settings()
    read_callers(settings)
    settings.check("RATE_LIMIT_STORAGE_URL")


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    try:  # one line and exit 2, rather than uvicorn's traceback from the lifespan
        check_callers()
    except (CallersError, SettingsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    # Each request logs one JSON line (request_log.py): no access log beside it.
    uvicorn.run(f"{__package__}.app:app", host=args.host, port=args.port, access_log=False)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return serve(args)
    if args.command == "callers":
        return callers_cli.run(args)
    if args.command == "eval":
        return evals.run(args)
    try:
        settings = load_settings()
        if args.timeout is not None:
            settings = settings.model_copy(update={"request_timeout": args.timeout})
        return asyncio.run(run_chat(args, settings))
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except UpstreamError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except TimeoutError:
        print(
            f"error: no answer from the gateway within {settings.request_timeout:g} s",
            file=sys.stderr,
        )
        return 1
