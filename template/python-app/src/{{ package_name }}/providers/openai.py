"""OpenAI-compatible providers through the official ``openai`` SDK: openai, and, where
rendered, workers-ai and compat.

Headers by provider and auth mode:
- openai, every mode: ``cf-aig-authorization: Bearer $CF_AIG_TOKEN`` (authenticated
  gateway); request-headers adds ``Authorization: Bearer $OPENAI_API_KEY``; unified-billing
  and byok send no ``Authorization`` header at all: the gateway pays (Unified Billing) or
  adds the key stored in it (BYOK).
- workers-ai: Cloudflare's own, authorized by ``Authorization: Bearer $CF_AIG_TOKEN``.
- compat (the AI REST API): ``Authorization: Bearer $CF_AIG_TOKEN``, gateway named by
  ``cf-aig-gateway-id``.
The SDK is imported when the first client is made.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from ..gateway import (
    KEYLESS_PLACEHOLDER,
    GatewayResponse,
    gateway_headers,
    gateway_token,
    gateway_url,
    http_client,
    rest_api_url,
    sdk_http,
)
from ..models import Reply
from ..settings import Settings
from ..streaming import close_shielded

if TYPE_CHECKING:
    from openai import AsyncOpenAI
    from openai.types.chat import ChatCompletion, ChatCompletionMessageParam

    from . import Provider


@dataclass(frozen=True)
class Connection:
    """How a client reaches one OpenAI-compatible provider."""

    base_url: str
    api_key: str
    headers: dict[str, str]
    keyless: bool = False  # the Authorization header the SDK makes is dropped


def connection(settings: Settings, provider: Provider) -> Connection:
    """Where and how to call ``provider``; SettingsError when a secret it needs is missing."""
    path = provider.endpoint.removesuffix("/chat/completions")
    cloudflare = f"{provider.label} is authorized with a Cloudflare token"
    if provider.via_rest_api:  # the AI REST API: a Cloudflare token, the gateway in a header
        token = gateway_token(settings, cloudflare)
        headers = {"cf-aig-gateway-id": settings.gateway_id}
        return Connection(rest_api_url(settings, path), token, headers)
    base_url, headers = f"{gateway_url(settings)}/{path}", gateway_headers(settings)
    if provider.key_env is None:  # Cloudflare's own provider: the Cloudflare token is its key
        return Connection(base_url, gateway_token(settings, cloudflare), headers)
    if settings.auth_mode == "request-headers":
        why = f"auth mode request-headers sends the {provider.id} key with every request"
        return Connection(base_url, settings.secret(provider.key_env, why), headers)
    return Connection(base_url, KEYLESS_PLACEHOLDER, headers, keyless=True)


def connect(settings: Settings, provider: Provider) -> tuple[AsyncOpenAI, Any]:
    """The SDK client (the SDK is imported now) and its connection pool, to close."""
    from openai import AsyncOpenAI, DefaultAsyncHttpxClient

    link = connection(settings, provider)
    drop = ("authorization",) if link.keyless else ()
    http = http_client(settings, drop, sdk_http(DefaultAsyncHttpxClient))
    client = AsyncOpenAI(
        api_key=link.api_key,
        base_url=link.base_url,
        default_headers=link.headers,
        http_client=http,
        max_retries=0,
        timeout=settings.request_timeout,
    )
    return client, http


async def complete(
    client: AsyncOpenAI,
    messages: list[dict[str, Any]],
    *,
    model: str,
    stream: bool = False,
    headers: Mapping[str, str] | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
    response_format: dict[str, Any] | None = None,
) -> Reply:
    """One chat completion, streamed or not."""
    options: dict[str, Any] = {"stream": True} if stream else {}
    if max_tokens is not None:
        options["max_tokens"] = max_tokens
    if temperature is not None:
        options["temperature"] = temperature
    if response_format is not None:
        options["response_format"] = response_format
    if headers:
        options["extra_headers"] = dict(headers)
    started = time.perf_counter()
    raw = await client.chat.completions.with_raw_response.create(
        model=model,
        # models.py checked each message's role and content: the SDK's message shape
        messages=cast("list[ChatCompletionMessageParam]", messages),
        **options,
    )
    gateway = GatewayResponse.from_headers(raw.headers)
    upstream_ms = round((time.perf_counter() - started) * 1000, 1)
    if not stream:
        completion = cast("ChatCompletion", raw.parse())  # not streamed: one completion
        usage = completion.usage.model_dump() if completion.usage else None
        text = completion.choices[0].message.content or "" if completion.choices else ""
        model = completion.model or model
        return Reply.complete(
            text, model=model, gateway=gateway, usage=usage, upstream_ms=upstream_ms
        )
    chunks = raw.parse()
    return Reply.streamed(
        lambda reply: _pieces(chunks, reply), model=model, gateway=gateway, upstream_ms=upstream_ms
    )


async def forward(
    http: Any, link: Connection, path: str, body: dict[str, Any], headers: Mapping[str, str]
) -> Any:
    """POST ``body`` as it is to ``{base_url}/{path}`` through the SDK's own pool (its rules:
    no redirects, MAX_UPSTREAM_BYTES, the keyless modes' Authorization dropped); the answer
    unread, to stream or read. A 4xx or 5xx answer is closed unread and raised."""
    sent = {**link.headers, "authorization": f"Bearer {link.api_key}", **headers}
    request = http.build_request("POST", f"{link.base_url}/{path}", json=body, headers=sent)
    response = await http.send(request, stream=True)
    if response.status_code >= 400:
        await response.aclose()
        response.raise_for_status()  # an HTTPStatusError naming the status (upstream_error)
    return response


async def _pieces(chunks: Any, reply: Reply) -> AsyncIterator[str]:
    """The text of a stream; the model that answered, and the usage when the provider sends
    it (last), kept on the reply."""
    try:
        async for chunk in chunks:
            reply.model = chunk.model or reply.model
            if chunk.usage:
                reply.usage = chunk.usage.model_dump(exclude_none=True)
            text = chunk.choices[0].delta.content if chunk.choices else None
            if text:
                yield text
    finally:
        await close_shielded(chunks.close)
