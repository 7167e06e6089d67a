"""Google AI Studio (Gemini) client, official ``google-genai`` SDK, pre-configured for the gateway.

Requests go to ``{gateway}/google-ai-studio/...``. The provider key (GOOGLE_API_KEY) is
sent only in request-headers mode, as ``x-goog-api-key``. The SDK always sends that
header; in the keyless modes it is removed before the request leaves, so the gateway
supplies the key (BYOK) or pays (Unified Billing).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import httpx
from google import genai
from google.genai import types

from .gateway_options import ChatReply, GatewayResponse
from .settings import Settings, load_settings

DEFAULT_MODEL = "gemini-2.5-flash"
_KEYLESS_PLACEHOLDER = "sent-by-the-gateway"


def _drop_api_key(request: httpx.Request) -> None:
    request.headers.pop("x-goog-api-key", None)


async def _drop_api_key_async(request: httpx.Request) -> None:
    _drop_api_key(request)


def create_google_client(settings: Settings | None = None) -> genai.Client:
    settings = settings or load_settings()
    options: dict[str, Any] = {
        "base_url": settings.provider_url("google-ai-studio"),
        "headers": settings.gateway_headers(),
    }
    if settings.auth_mode == "request-headers":
        api_key = settings.provider_key("google-ai-studio")
    else:
        api_key = _KEYLESS_PLACEHOLDER
        options["httpx_client"] = httpx.Client(event_hooks={"request": [_drop_api_key]})
        options["httpx_async_client"] = httpx.AsyncClient(
            event_hooks={"request": [_drop_api_key_async]}
        )
    return genai.Client(api_key=api_key, http_options=types.HttpOptions(**options))


def chat(
    settings: Settings,
    messages: list[dict[str, str]],
    *,
    model: str = DEFAULT_MODEL,
    stream: bool = False,
    headers: Mapping[str, str] | None = None,
) -> ChatReply:
    client = create_google_client(settings)
    system = "\n".join(m["content"] for m in messages if m["role"] == "system") or None
    contents = [
        types.Content(
            role="model" if m["role"] == "assistant" else "user",
            parts=[types.Part(text=m["content"])],
        )
        for m in messages
        if m["role"] != "system"
    ]
    config = types.GenerateContentConfig(
        system_instruction=system,
        http_options=types.HttpOptions(headers=dict(headers)) if headers else None,
    )
    if not stream:
        response = client.models.generate_content(model=model, contents=contents, config=config)
        return ChatReply([response.text or ""], _gateway_info(response))

    responses = client.models.generate_content_stream(model=model, contents=contents, config=config)
    first = next(responses, None)

    def pieces() -> Iterator[str]:
        if first is not None and first.text:
            yield first.text
        for response in responses:
            if response.text:
                yield response.text

    return ChatReply(pieces(), _gateway_info(first))


def _gateway_info(response: Any) -> GatewayResponse:
    http = getattr(response, "sdk_http_response", None)
    return GatewayResponse.from_headers(dict(http.headers or {}) if http else {})
