"""OpenAI-compatible clients (official ``openai`` SDK) pre-configured for the gateway.

One factory serves every OpenAI-compatible provider of this project: ``openai``, and,
where rendered, ``workers-ai`` and ``compat``::

    from my_service.client import create_client
    client = create_client()  # openai; create_client(provider="workers-ai") etc.
    reply = client.chat.completions.create(model=..., messages=[...])

Headers by provider and auth mode:
- openai, every mode: ``cf-aig-authorization: Bearer $CF_AIG_TOKEN`` (authenticated
  gateway); request-headers adds ``Authorization: Bearer $OPENAI_API_KEY``;
  unified-billing and byok send no ``Authorization`` header at all: the gateway pays
  (Unified Billing) or adds the key stored in it (BYOK).
- workers-ai: Cloudflare's own, authorized by ``Authorization: Bearer $CF_AIG_TOKEN``.
- compat (the AI REST API): ``Authorization: Bearer $CF_AIG_TOKEN``, gateway named by
  ``cf-aig-gateway-id``.
Redirects are never followed (see connection.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from openai import AsyncOpenAI, DefaultAsyncHttpxClient, DefaultHttpxClient, OpenAI

from .chat import Reply
from .connection import async_http_options, http_options
from .gateway_options import GatewayResponse
from .providers import DEFAULT_PROVIDER, PROVIDERS
from .settings import Settings, load_settings

# The SDK refuses to start without a key. Where the gateway supplies the key, it gets
# this placeholder, and the Authorization header made from it is dropped on the way out.
KEYLESS_PLACEHOLDER = "sent-by-the-gateway"


@dataclass(frozen=True)
class Connection:
    """How a client reaches one OpenAI-compatible provider."""

    base_url: str
    api_key: str
    headers: dict[str, str]
    keyless: bool = False  # the Authorization header the SDK makes is dropped


def connection(settings: Settings, provider: str = DEFAULT_PROVIDER) -> Connection:
    row = PROVIDERS[provider]
    base_url = settings.openai_base_url(provider)
    if row.via_rest_api:  # the AI REST API: a Cloudflare token, the gateway named by a header
        token = settings.require_gateway_token(f"{row.label} is authorized with a Cloudflare token")
        return Connection(base_url, token, {"cf-aig-gateway-id": settings.gateway_id})
    headers = settings.gateway_headers()
    if row.key_env is None:  # Cloudflare's own provider: the Cloudflare token is its key
        token = settings.require_gateway_token(f"{row.label} is authorized with a Cloudflare token")
        return Connection(base_url, token, headers)
    if settings.auth_mode == "request-headers":
        return Connection(base_url, settings.provider_key(provider), headers)
    return Connection(base_url, KEYLESS_PLACEHOLDER, headers, keyless=True)


def create_client(
    settings: Settings | None = None, provider: str = DEFAULT_PROVIDER, **kwargs: Any
) -> OpenAI:
    """An ``OpenAI`` client for the gateway; ``kwargs`` go to the constructor."""
    link = connection(settings or load_settings(), provider)
    drop = ("authorization",) if link.keyless else ()
    return OpenAI(
        api_key=link.api_key,
        base_url=link.base_url,
        default_headers=link.headers,
        http_client=DefaultHttpxClient(**http_options(drop_headers=drop)),
        **kwargs,
    )


def create_async_client(
    settings: Settings | None = None, provider: str = DEFAULT_PROVIDER, **kwargs: Any
) -> AsyncOpenAI:
    """An ``AsyncOpenAI`` client for the gateway; ``kwargs`` go to the constructor."""
    link = connection(settings or load_settings(), provider)
    drop = ("authorization",) if link.keyless else ()
    return AsyncOpenAI(
        api_key=link.api_key,
        base_url=link.base_url,
        default_headers=link.headers,
        http_client=DefaultAsyncHttpxClient(**async_http_options(drop_headers=drop)),
        **kwargs,
    )


async def complete(
    settings: Settings,
    provider: str,
    messages: list[dict[str, Any]],
    *,
    model: str,
    stream: bool = False,
    headers: Mapping[str, str] | None = None,
) -> Reply:
    """One chat completion from an OpenAI-compatible provider, streamed or not."""
    client = create_async_client(
        settings, provider, max_retries=0, timeout=settings.request_timeout
    )
    options: dict[str, Any] = {"stream": True} if stream else {}
    if headers:
        options["extra_headers"] = dict(headers)
    try:
        raw = await client.chat.completions.with_raw_response.create(
            model=model, messages=messages, **options
        )
    except BaseException:
        await client.close()
        raise
    gateway = GatewayResponse.from_headers(raw.headers)
    if not stream:
        try:
            completion = raw.parse()
        finally:
            await client.close()
        usage = completion.usage.model_dump() if completion.usage else None
        text = completion.choices[0].message.content or "" if completion.choices else ""
        return Reply.complete(text, model=completion.model or model, gateway=gateway, usage=usage)

    async def pieces() -> AsyncIterator[str]:
        try:
            async for chunk in raw.parse():
                # The model that answered, and the usage when the provider sends it (last).
                reply.model = chunk.model or reply.model
                if chunk.usage:
                    reply.usage = chunk.usage.model_dump(exclude_none=True)
                text = chunk.choices[0].delta.content if chunk.choices else None
                if text:
                    yield text
        finally:
            await client.close()

    reply = Reply(pieces(), model=model, gateway=gateway)
    return reply
