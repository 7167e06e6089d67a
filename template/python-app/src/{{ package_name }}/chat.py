"""One ``chat()`` for every provider, with one deadline and one way to report failure.

    reply = await chat(settings, [{"role": "user", "content": "Hi"}], provider="openai")
    print(await reply.text(), reply.gateway.log_id)

Each provider's module (see providers.py, ``sdk``) turns the call into its SDK's
request; its SDK is imported only when that provider is really called.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from .connection import RefusedAnswer
from .gateway_options import GatewayResponse
from .providers import DEFAULT_PROVIDER, PROVIDERS
from .settings import Settings


@dataclass
class Reply:
    """A provider's answer: its text in pieces (one unless streamed), and the gateway's info."""

    pieces: AsyncIterator[str]
    model: str
    gateway: GatewayResponse
    usage: dict[str, Any] | None = None

    @classmethod
    def complete(cls, text: str, **fields: Any) -> Reply:
        async def one_piece() -> AsyncIterator[str]:
            yield text

        return cls(one_piece(), **fields)

    async def text(self) -> str:
        return "".join([piece async for piece in self.pieces])


class UpstreamError(Exception):
    """The gateway (or the provider behind it) failed. The message never carries what
    the upstream answered, only its status and log id: an error body can echo secrets."""

    def __init__(self, message: str, status: int | None = None, log_id: str | None = None):
        where = f" (gateway log id {log_id})" if log_id else ""
        super().__init__(message + where)
        self.status = status
        self.log_id = log_id


async def chat(
    settings: Settings,
    messages: list[dict[str, Any]],
    *,
    provider: str = DEFAULT_PROVIDER,
    model: str | None = None,
    stream: bool = False,
    headers: Mapping[str, str] | None = None,
) -> Reply:
    """Send one chat to ``provider`` through the gateway; SDK failures become UpstreamError."""
    row = PROVIDERS[provider]
    module = importlib.import_module(f"{__package__}.{row.sdk}")
    try:
        reply = await module.complete(
            settings,
            provider,
            messages,
            model=model or row.default_model,
            stream=stream,
            headers=headers,
        )
    except Exception as error:
        raise upstream_error(error) from None
    reply.pieces = _translated(reply.pieces)
    return reply


async def _translated(pieces: AsyncIterator[str]) -> AsyncIterator[str]:
    """``pieces``, with an SDK failure in the middle of a stream turned into UpstreamError."""
    try:
        async for piece in pieces:
            yield piece
    except Exception as error:
        raise upstream_error(error) from None


def upstream_error(error: Exception) -> Exception:
    """One clear exception for an SDK's HTTP failure; any other error is returned as is.

    The SDKs differ in their error classes but agree on the shape: an HTTP error
    carries the ``response``, a connection failure or time-out the ``request``; an
    event hook's exception (RefusedAnswer) is the cause of the SDK's error.
    """
    if isinstance(error, UpstreamError):
        return error
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, RefusedAnswer):
            return UpstreamError(str(cause), cause.status, cause.log_id)
        cause = cause.__cause__ or cause.__context__
    response = getattr(error, "response", None)
    status = getattr(response, "status_code", None)
    if isinstance(status, int):
        log_id = response.headers.get("cf-aig-log-id")
        return UpstreamError(f"the gateway answered {status}", status, log_id)
    url = getattr(getattr(error, "request", None), "url", None)
    kind = type(error).__name__
    if url is not None and "Timeout" in kind:
        return UpstreamError(f"the gateway did not answer in time ({_safe_url(url)})")
    if url is not None and ("Connect" in kind or "Connection" in kind):
        return UpstreamError(f"could not reach the gateway at {_safe_url(url)}")
    return error


def _safe_url(url: Any) -> str:
    """The URL without a query string (an SDK may put a key there)."""
    return str(url).split("?", 1)[0]
