"""Any provider's model through one OpenAI-compatible endpoint: Cloudflare's AI REST API.

The gateway's older ``/compat`` endpoint is deprecated for single-model calls; its
replacement, used here, is ``{CLOUDFLARE_API_BASE_URL}/accounts/{account}/ai/v1``
(``/chat/completions``) with ``Authorization: Bearer <Cloudflare API token>`` and the
gateway chosen by the ``cf-aig-gateway-id`` header. Models are named
``provider/model`` (``openai/gpt-4o-mini``, ``anthropic/claude-haiku-4-5``,
``@cf/meta/llama-3.1-8b-instruct``); third-party models are paid through Unified Billing.
The token is CF_AIG_TOKEN.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from openai import OpenAI

from .client import chat_completion
from .gateway_options import ChatReply
from .settings import Settings, load_settings

DEFAULT_MODEL = "openai/gpt-4o-mini"


def compat_base_url(settings: Settings) -> str:
    return f"{settings.api_base_url.rstrip('/')}/accounts/{settings.account_id}/ai/v1"


def create_compat_client(settings: Settings | None = None, **kwargs: Any) -> OpenAI:
    settings = settings or load_settings()
    token = settings.require_gateway_token("the AI REST API is authorized with a Cloudflare token")
    return OpenAI(
        api_key=token,
        base_url=compat_base_url(settings),
        default_headers={"cf-aig-gateway-id": settings.gateway_id},
        **kwargs,
    )


def chat(
    settings: Settings,
    messages: list[dict[str, str]],
    *,
    model: str = DEFAULT_MODEL,
    stream: bool = False,
    headers: Mapping[str, str] | None = None,
) -> ChatReply:
    client = create_compat_client(settings, max_retries=0)
    return chat_completion(client, messages, model=model, stream=stream, headers=headers)
