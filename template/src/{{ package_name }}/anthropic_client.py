"""Anthropic clients (official ``anthropic`` SDK) pre-configured for the gateway.

Requests go to ``{gateway}/anthropic/v1/messages``. The provider key (ANTHROPIC_API_KEY)
is sent only in request-headers mode; in the keyless modes the SDK's key headers are
removed and the gateway supplies the key (BYOK) or pays (Unified Billing).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from anthropic import Anthropic, AsyncAnthropic, Omit

from .gateway_options import ChatReply, GatewayResponse
from .settings import Settings, load_settings

DEFAULT_MODEL = "claude-haiku-4-5"
MAX_TOKENS = 1024
_KEYLESS_PLACEHOLDER = "sent-by-the-gateway"


def client_options(settings: Settings) -> dict[str, Any]:
    headers: dict[str, Any] = settings.gateway_headers()
    if settings.auth_mode == "request-headers":
        api_key = settings.provider_key("anthropic")
    else:
        api_key = _KEYLESS_PLACEHOLDER
        headers.update({"Authorization": Omit(), "X-Api-Key": Omit()})
    return {
        "api_key": api_key,
        "base_url": settings.provider_url("anthropic"),
        "default_headers": headers,
    }


def create_anthropic_client(settings: Settings | None = None, **kwargs: Any) -> Anthropic:
    return Anthropic(**client_options(settings or load_settings()), **kwargs)


def create_async_anthropic_client(
    settings: Settings | None = None, **kwargs: Any
) -> AsyncAnthropic:
    return AsyncAnthropic(**client_options(settings or load_settings()), **kwargs)


def chat(
    settings: Settings,
    messages: list[dict[str, str]],
    *,
    model: str = DEFAULT_MODEL,
    stream: bool = False,
    headers: Mapping[str, str] | None = None,
) -> ChatReply:
    client = create_anthropic_client(settings, max_retries=0)
    system = [m["content"] for m in messages if m["role"] == "system"]
    options: dict[str, Any] = {"system": "\n".join(system)} if system else {}
    if stream:
        options["stream"] = True
    if headers:
        options["extra_headers"] = dict(headers)
    raw = client.messages.with_raw_response.create(
        model=model,
        max_tokens=MAX_TOKENS,
        messages=[m for m in messages if m["role"] != "system"],
        **options,
    )
    gateway = GatewayResponse.from_headers(raw.headers)
    if not stream:
        text = "".join(block.text for block in raw.parse().content if block.type == "text")
        return ChatReply([text], gateway)

    def pieces() -> Iterator[str]:
        for event in raw.parse():
            if event.type == "content_block_delta" and event.delta.type == "text_delta":
                yield event.delta.text

    return ChatReply(pieces(), gateway)
