"""OpenAI clients pre-configured to talk through Cloudflare AI Gateway.

    from my_service.client import create_client
    reply = create_client().chat.completions.create(model=..., messages=[...])

Headers by auth mode:
- every mode: ``cf-aig-authorization: Bearer $CF_AIG_TOKEN`` (authenticated gateway);
- request-headers: ``Authorization: Bearer $OPENAI_API_KEY`` as well;
- unified-billing and byok: no ``Authorization`` header at all. The gateway pays
  (Unified Billing) or adds the key stored in it (BYOK).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from openai import AsyncOpenAI, Omit, OpenAI

from .gateway_options import ChatReply, GatewayResponse
from .settings import Settings, load_settings

DEFAULT_MODEL = "gpt-4o-mini"

# The SDK refuses to start without a key. In the keyless modes it gets this
# placeholder, and the Authorization header it would make from it is removed.
_KEYLESS_PLACEHOLDER = "sent-by-the-gateway"


class _KeylessOpenAI(OpenAI):
    """OpenAI client that sends no provider key (the gateway supplies it)."""

    def _validate_headers(self, headers: Any, custom_headers: Any) -> None:
        return None  # no Authorization header is the point, not a mistake


class _KeylessAsyncOpenAI(AsyncOpenAI):
    """AsyncOpenAI client that sends no provider key (the gateway supplies it)."""

    def _validate_headers(self, headers: Any, custom_headers: Any) -> None:
        return None


def client_options(settings: Settings) -> dict[str, Any]:
    """Constructor arguments shared by the sync and async clients."""
    headers: dict[str, Any] = settings.gateway_headers()
    if settings.auth_mode == "request-headers":
        api_key = settings.provider_key("openai")
    else:
        api_key = _KEYLESS_PLACEHOLDER
        headers["Authorization"] = Omit()
    return {
        "api_key": api_key,
        "base_url": settings.provider_url("openai"),
        "default_headers": headers,
    }


def create_client(settings: Settings | None = None, **kwargs: Any) -> OpenAI:
    """An ``OpenAI`` client for the gateway; ``kwargs`` go to the constructor."""
    settings = settings or load_settings()
    cls = OpenAI if settings.auth_mode == "request-headers" else _KeylessOpenAI
    return cls(**client_options(settings), **kwargs)


def create_async_client(settings: Settings | None = None, **kwargs: Any) -> AsyncOpenAI:
    """An ``AsyncOpenAI`` client for the gateway; ``kwargs`` go to the constructor."""
    settings = settings or load_settings()
    cls = AsyncOpenAI if settings.auth_mode == "request-headers" else _KeylessAsyncOpenAI
    return cls(**client_options(settings), **kwargs)


def chat_completion(
    client: OpenAI,
    messages: list[dict[str, str]],
    *,
    model: str,
    stream: bool = False,
    headers: Mapping[str, str] | None = None,
) -> ChatReply:
    """One chat completion with any OpenAI-compatible client, streamed or not."""
    options: dict[str, Any] = {"stream": True} if stream else {}
    if headers:
        options["extra_headers"] = dict(headers)
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=messages, **options
    )
    gateway = GatewayResponse.from_headers(raw.headers)
    if not stream:
        return ChatReply([raw.parse().choices[0].message.content or ""], gateway)

    def pieces() -> Iterator[str]:
        for chunk in raw.parse():
            text = chunk.choices[0].delta.content if chunk.choices else None
            if text:
                yield text

    return ChatReply(pieces(), gateway)


def chat(
    settings: Settings,
    messages: list[dict[str, str]],
    *,
    model: str = DEFAULT_MODEL,
    stream: bool = False,
    headers: Mapping[str, str] | None = None,
) -> ChatReply:
    """The CLI's entry: OpenAI chat completions through the gateway."""
    client = create_client(settings, max_retries=0)
    return chat_completion(client, messages, model=model, stream=stream, headers=headers)
