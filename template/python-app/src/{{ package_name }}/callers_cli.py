"""``callers add NAME`` and ``callers remove NAME``: edit callers.toml, keeping its comments.

``add`` makes a key (32 random bytes, base64url), prints it once on stdout (the key alone,
one line) and writes only its SHA-256. The file is checked as the service checks it at
start-up before it is written, so a command never leaves it invalid.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import secrets
import sys
from pathlib import Path
from typing import Any

from .callers import NAME, CallersError, parse_callers
from .providers import PROVIDERS
from .settings import DEFAULT_CALLERS_FILE, SettingsError, load_settings


class Refused(Exception):
    """The command cannot do what was asked; the message says why (exit 2)."""


def add_parser(commands: Any) -> None:
    callers = commands.add_parser("callers", help="add or remove a caller of callers.toml")
    actions = callers.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="make a key for a new caller, print it once")
    add.add_argument("name", help="the caller's name: a-z 0-9 _ -, at most 64")
    add.add_argument("--models", help="comma-separated models it may use (default: all)")
    add.add_argument("--max-tokens", type=int, help="cap on max_tokens per request")
    add.add_argument("--rpm", type=int, help="requests per minute it may send")
    remove = actions.add_parser("remove", help="remove a caller (its keys stop working)")
    remove.add_argument("name")
    for action in (add, remove):
        action.add_argument(
            "--file",
            type=Path,
            default=Path(os.environ.get("CALLERS_FILE") or DEFAULT_CALLERS_FILE),
            help="the callers file (default: CALLERS_FILE, else callers.toml)",
        )


def run(args: argparse.Namespace) -> int:
    try:
        if args.action == "add":
            key = add(args)
            print(key)
            print(
                f'caller "{args.name}" added to {args.file}: give it the key above now,\n'
                "only its SHA-256 is kept. Restart or deploy the service to use it.",
                file=sys.stderr,
            )
        else:
            remove(args)
            print(f'caller "{args.name}" removed from {args.file}', file=sys.stderr)
    except (Refused, CallersError, SettingsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def add(args: argparse.Namespace) -> str:
    import tomlkit

    if not NAME.fullmatch(args.name):
        raise Refused(f"{args.name!r}: a caller's name is 1 to 64 of a-z 0-9 _ -")
    if args.name == "default":
        raise Refused("default is SERVICE_API_KEY's caller: add [callers.default] by hand")
    document = _read(args.file)
    callers = document.setdefault("callers", tomlkit.table(is_super_table=True))
    if args.name in callers:
        raise Refused(f'caller "{args.name}" is already in {args.file} (remove it first)')
    key = secrets.token_urlsafe(32)
    table = tomlkit.table()
    table["key_sha256"] = hashlib.sha256(key.encode()).hexdigest()
    if args.models:
        table["models"] = [model.strip() for model in args.models.split(",") if model.strip()]
    if args.max_tokens is not None:
        table["max_tokens"] = args.max_tokens
    if args.rpm is not None:
        table["requests_per_minute"] = args.rpm
    callers[args.name] = table
    _write(args.file, document)
    return key


def remove(args: argparse.Namespace) -> None:
    document = _read(args.file)
    callers = document.get("callers", {})
    if args.name not in callers:
        raise Refused(f'no caller "{args.name}" in {args.file}')
    del callers[args.name]
    if not callers:
        del document["callers"]
    _write(args.file, document)


def _read(path: Path) -> Any:
    import tomlkit
    from tomlkit.exceptions import ParseError

    try:
        return tomlkit.parse(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return tomlkit.document()
    except (OSError, UnicodeDecodeError, ParseError) as error:
        raise Refused(f"{path}: cannot be read: {error}") from None


def _write(path: Path, document: Any) -> None:
    """Check the result as the service will, then replace the file in one step."""
    settings = load_settings()
    allowed = settings.allowed_models or tuple(p.default_model for p in PROVIDERS.values())
    parse_callers(document.unwrap(), allowed, str(path))  # as the service's read_callers
    temporary = path.with_name(f".{path.name}.tmp")
    text = document.as_string().rstrip("\n") + "\n"
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)
