"""Workers AI through the gateway, with the openai SDK (Workers AI's OpenAI-compatible API).

Requests go to ``{gateway}/workers-ai/v1/chat/completions``. Workers AI is Cloudflare's
own: it is authorized with a Cloudflare API token, sent as ``Authorization``. This
project uses CF_AIG_TOKEN for it, so that token needs "Workers AI: Read" as well as
"AI Gateway: Read".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from openai import OpenAI

from .client import chat_completion
from .gateway_options import ChatReply
from .settings import Settings, load_settings

DEFAULT_MODEL = "@cf/meta/llama-3.1-8b-instruct"


def create_workers_ai_client(settings: Settings | None = None, **kwargs: Any) -> OpenAI:
    settings = settings or load_settings()
    token = settings.require_gateway_token("Workers AI is authorized with a Cloudflare token")
    return OpenAI(
        api_key=token,
        base_url=f"{settings.provider_url('workers-ai')}/v1",
        default_headers=settings.gateway_headers(),
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
    client = create_workers_ai_client(settings, max_retries=0)
    return chat_completion(client, messages, model=model, stream=stream, headers=headers)
