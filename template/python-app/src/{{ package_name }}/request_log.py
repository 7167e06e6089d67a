"""One JSON log line per request, written when its answer (or its stream) has ended.

    {"event": "request", "method": "POST", "route": "/chat/{provider}", "provider": "openai",
     "model": "...", "status": 200, "latency_ms": 12.3, "upstream_ms": 10.1,
     "log_id": "01J...", "cache_status": "MISS", "usage": {...}, "caller": "default",
     "stream": false, "error": null}

Logger ``<package>.requests`` (INFO, stderr). Never a secret, a prompt, a message or a reply:
only the fields above, which the routes fill in with ``note()``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import ERROR_CLASSES

LOGGER = logging.getLogger(f"{__package__}.requests")


@dataclass
class RequestRecord:
    method: str
    route: str | None = None
    provider: str | None = None
    model: str | None = None
    status: int | None = None
    latency_ms: float | None = None
    upstream_ms: float | None = None
    log_id: str | None = None
    cache_status: str | None = None
    usage: dict[str, int] | None = None
    caller: str | None = None
    stream: bool = False
    error: str | None = None

    def line(self) -> dict[str, Any]:
        return {"event": "request", **asdict(self)}


_current: ContextVar[RequestRecord | None] = ContextVar("request_record", default=None)


def note(**fields: Any) -> None:
    """Add what is known to this request's log line (nothing outside a request)."""
    record = _current.get()
    for name, value in fields.items():
        if record is not None and value is not None:
            setattr(record, name, value)


def token_usage(usage: dict[str, Any] | None) -> dict[str, int | None] | None:
    """Token counts in one shape whatever the provider: prompt, completion and total (None
    where the provider did not say); None without a usage object. The answers' usage too."""
    if not isinstance(usage, dict):
        return None
    prompt = _first(usage, "prompt_tokens", "input_tokens", "prompt_token_count")
    completion = _first(usage, "completion_tokens", "output_tokens", "candidates_token_count")
    total = _first(usage, "total_tokens", "total_token_count")
    if total is None and prompt is not None and completion is not None:
        total = prompt + completion
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total}


def _first(usage: dict[str, Any], *names: str) -> int | None:
    for name in names:
        if isinstance(usage.get(name), int):
            return usage[name]
    return None


class JsonFormatter(logging.Formatter):
    """A record's ``fields`` as one JSON line (other records: level and message)."""

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None)
        if fields is None:
            fields = {"event": "log", "level": record.levelname, "message": record.getMessage()}
        return json.dumps(fields, ensure_ascii=False)


def configure() -> None:
    """The request logger: JSON lines at INFO on stderr (once per process)."""
    if not LOGGER.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        LOGGER.addHandler(handler)
        LOGGER.setLevel(logging.INFO)
        LOGGER.propagate = False


class RequestLog:
    """ASGI middleware: one record per HTTP request, logged when the request has ended."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        record = RequestRecord(method=scope["method"])
        token = _current.set(record)
        started = time.perf_counter()
        ended = False

        async def watch(message: Message) -> None:
            nonlocal ended
            if message["type"] == "http.response.start":
                record.status = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                ended = True
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception:
            record.status, record.error = record.status or 500, record.error or "internal"
            raise
        finally:
            _current.reset(token)
            record.latency_ms = round((time.perf_counter() - started) * 1000, 1)
            _finish(record, scope, ended)
            LOGGER.info("request", extra={"fields": record.line()})


def _finish(record: RequestRecord, scope: Scope, ended: bool) -> None:
    record.route = getattr(scope.get("route"), "path_format", None)
    if record.error is None and not ended:
        record.error = "client_gone"
    elif record.error is None and record.status is not None and record.status >= 400:
        record.error = ERROR_CLASSES.get(record.status, "internal")
