"""Bounded reads and server-sent events.

- ``bounded_transport``: every answer from the gateway is read up to MAX_UPSTREAM_BYTES of raw
  bytes (a whole JSON answer, or all the bytes of a stream), then AnswerTooLarge: memory stays
  flat whatever the gateway sends.
- ``read_json``: the caller's body, up to MAX_BODY_BYTES, nested at most 64 levels.
- ``events`` and ``EventStream``: the service's own server-sent events, ended by the caller
  (a hang-up closes the upstream answer at once), by the deadline, or by the gateway.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from functools import cache
from types import ModuleType
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from . import request_log
from .errors import AnswerTooLarge, ApiError, UpstreamError, timed_out

MAX_JSON_DEPTH = 64


def bounded_transport(http: ModuleType, limit: int, limits: Any, sync: bool = False) -> Any:
    """httpx's own transport (one connection pool), every answer read through a bound.

    ``http`` is the httpx package an SDK is built on: ``httpx``, or its fork ``httpx2``
    (whose classes an SDK checks for), hence one pair of classes per package."""
    return _bounded_classes(http)(limit, limits=limits, sync=sync)


@cache
def _bounded_classes(http: ModuleType) -> type:
    stream = (_BoundedStream, http.AsyncByteStream, http.SyncByteStream)
    transport = (_BoundedTransport, http.AsyncBaseTransport, http.BaseTransport)
    stream_class = type("BoundedStream", stream, {})
    return type("BoundedTransport", transport, {"http": http, "stream_class": stream_class})


class _BoundedStream:
    """An answer's bytes, cut off with AnswerTooLarge past ``limit``."""

    def __init__(self, stream: Any, limit: int, response: Any) -> None:
        self._stream, self._limit = stream, limit
        self._status = response.status_code
        self._log_id = response.headers.get("cf-aig-log-id")

    def _count(self, seen: int, chunk: bytes) -> int:
        seen += len(chunk)
        if seen > self._limit:
            raise AnswerTooLarge(self._limit, self._status, self._log_id)
        return seen

    async def __aiter__(self) -> AsyncIterator[bytes]:
        seen = 0
        async for chunk in self._stream:
            seen = self._count(seen, chunk)
            yield chunk

    def __iter__(self) -> Iterator[bytes]:
        seen = 0
        for chunk in self._stream:
            seen = self._count(seen, chunk)
            yield chunk

    async def aclose(self) -> None:
        await self._stream.aclose()

    def close(self) -> None:
        self._stream.close()


class _BoundedTransport:
    """The package's own HTTP transport, its answers wrapped in ``stream_class``."""

    http: Any
    stream_class: Any

    def __init__(self, limit: int, *, limits: Any, sync: bool = False) -> None:
        self._limit = limit
        transport = self.http.HTTPTransport if sync else self.http.AsyncHTTPTransport
        self._inner = transport(limits=limits)

    def _bounded(self, response: Any) -> Any:
        return self.http.Response(
            response.status_code,
            headers=response.headers,
            stream=self.stream_class(response.stream, self._limit, response),
            extensions=response.extensions,
        )

    async def handle_async_request(self, request: Any) -> Any:
        return self._bounded(await self._inner.handle_async_request(request))

    def handle_request(self, request: Any) -> Any:
        return self._bounded(self._inner.handle_request(request))

    async def aclose(self) -> None:
        await self._inner.aclose()

    def close(self) -> None:
        self._inner.close()


async def close_shielded(close: Callable[[], Awaitable[Any]]) -> None:
    """Close an upstream answer even while the request is being cancelled (a caller hang-up)."""
    with anyio.CancelScope(shield=True):
        await close()


def too_large(limit: int) -> ApiError:
    return ApiError(413, f"the request body is larger than {limit} bytes (MAX_BODY_BYTES)")


def too_deep(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether JSON arrays and objects nest deeper than ``limit`` levels (no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if not isinstance(item, dict | list):
            continue
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children)
    return False


async def read_json(request: Request, limit: int) -> Any:
    """The caller's JSON body: 413 past ``limit`` bytes, 400 if not JSON or nested too deep."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large(limit)
    try:
        value = json.loads(body)
    except RecursionError:
        raise nested_too_deep() from None
    except ValueError:
        raise ApiError(400, "the request body must be JSON") from None
    if too_deep(value):
        raise nested_too_deep()
    return value


def nested_too_deep() -> ApiError:
    return ApiError(400, f"the request body is nested deeper than {MAX_JSON_DEPTH} levels")


def sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


async def events(reply: Any, deadline: float, seconds: float) -> AsyncIterator[str]:
    """Server-sent events of a Reply: ``delta`` per piece of text, then ``done``, or ``error``."""
    pieces = aiter(reply.pieces)
    try:
        while True:
            async with asyncio.timeout_at(deadline):
                piece = await anext(pieces, None)
            if piece is None:
                break
            yield sse("delta", {"text": piece})
    except UpstreamError as error:
        request_log.note(error="upstream", **reply.log_fields())
        yield sse("error", {"error": str(error), "status": 502, "log_id": error.log_id})
        return
    except TimeoutError:
        request_log.note(error="timeout", **reply.log_fields())
        yield sse("error", {"error": str(timed_out(seconds)), "status": 504})
        return
    finally:
        await close_shielded(reply.aclose)
    request_log.note(**reply.log_fields())
    done = {
        "model": reply.model,
        "log_id": reply.gateway.log_id,
        "cache_status": reply.gateway.cache_status,
    }
    if reply.usage:  # known once the stream has ended, when the provider sends it
        done["usage"] = request_log.token_usage(reply.usage)
    yield sse("done", done)


class EventStream(StreamingResponse):
    """A StreamingResponse of server-sent events that always closes its events (and so the
    upstream answer) when it ends: finished, failed, or the caller gone."""

    media_type = "text/event-stream"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            close = getattr(self.body_iterator, "aclose", None)
            if close is not None:
                await close_shielded(close)
