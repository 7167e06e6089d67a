"""The shapes of the HTTP contract (pydantic), and ``Reply``: a provider's answer."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    model_validator,
)

from .callers import MAX_TOKENS_LIMIT, METADATA_TOO_MANY
from .gateway import GatewayOptions, GatewayResponse
from .openai_shapes import ResponseFormat, Temperature
from .request_log import token_usage

SEND_PROMPT = (
    'send "prompt" (a non-empty string) or "messages" (a non-empty list of {role, content})'
)


class Message(BaseModel):
    """One chat message: text, or a list of parts (the openai SDK's shape)."""

    model_config = ConfigDict(extra="allow")

    role: StrictStr
    content: StrictStr | list[dict[str, Any]]


class ChatRequest(BaseModel):
    """``{"prompt": "..."}`` or ``{"messages": [...]}``, with model, stream, gateway options."""

    prompt: StrictStr | None = None
    messages: list[Message] | None = None
    model: StrictStr | None = Field(None, min_length=1)
    stream: StrictBool = False
    max_tokens: StrictInt | None = Field(None, ge=1, le=MAX_TOKENS_LIMIT)
    gateway: GatewayOptions = Field(default_factory=GatewayOptions)
    temperature: Temperature | None = None
    response_format: ResponseFormat | None = None  # OpenAI's: text, json_object, json_schema

    @model_validator(mode="after")
    def _prompt_or_messages(self) -> ChatRequest:
        if not (self.prompt and self.prompt.strip()) and not self.messages:
            raise ValueError(SEND_PROMPT)
        return self

    def chat_messages(self) -> list[dict[str, Any]]:
        """What goes to the provider: the prompt as one user message, or the messages."""
        if self.prompt and self.prompt.strip():
            return [{"role": "user", "content": self.prompt}]
        return [message.model_dump() for message in self.messages or []]


class ChatAnswer(BaseModel):
    reply: str
    model: str
    usage: dict[str, Any] | None
    log_id: str | None
    cache_status: str | None
    event_id: str | None = None  # the event id sent upstream, when the request gave one


class Health(BaseModel):
    status: str = "ok"
    providers: list[str]


class ErrorBody(BaseModel):
    error: str


class SettingErrorBody(ErrorBody):
    missing: str | None = None
    invalid: str | None = None


class UpstreamErrorBody(ErrorBody):
    status: int | None
    log_id: str | None


@dataclass
class Reply:
    """A provider's answer: its text in pieces (one unless streamed), and the gateway's info.

    ``aclose()`` closes the upstream answer (a stream not read to its end)."""

    pieces: AsyncIterator[str]
    model: str
    gateway: GatewayResponse
    usage: dict[str, Any] | None = None
    upstream_ms: float | None = None

    @classmethod
    def complete(cls, text: str, **fields: Any) -> Reply:
        async def one_piece() -> AsyncIterator[str]:
            yield text

        return cls(one_piece(), **fields)

    @classmethod
    def streamed(cls, pieces: Callable[[Reply], AsyncIterator[str]], **fields: Any) -> Reply:
        """A stream: ``pieces(reply)`` yields its text and sets the model and usage it reads."""
        reply = cls(_no_text(), **fields)
        reply.pieces = pieces(reply)
        return reply

    async def text(self) -> str:
        try:
            return "".join([piece async for piece in self.pieces])
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        close = getattr(self.pieces, "aclose", None)
        if close is not None:
            await close()

    def log_fields(self) -> dict[str, Any]:
        """What the request's log line says about this answer."""
        return {
            "model": self.model,
            "log_id": self.gateway.log_id,
            "cache_status": self.gateway.cache_status,
            "usage": token_usage(self.usage),
            "upstream_ms": self.upstream_ms,
        }


async def _no_text() -> AsyncIterator[str]:
    return
    yield  # an async generator that yields nothing


def validation_message(errors: Sequence[Any]) -> str:
    """One message for the first problem pydantic found in a request body."""
    error = errors[0]
    loc = [part for part in error.get("loc", ()) if part != "body"]
    kind, field = error.get("type", ""), loc[0] if loc else None
    if field is None and kind in ("model_type", "model_attributes_type", "dict_type"):
        return 'the request body must be a JSON object with "prompt" or "messages"'
    if field is None or field in ("prompt", "messages"):
        return SEND_PROMPT
    if field == "stream":
        return '"stream" must be true or false'
    if field == "model":
        return '"model" must be a non-empty string'
    if field == "max_tokens":
        return f'"max_tokens" must be an integer from 1 to {MAX_TOKENS_LIMIT}'
    if field == "temperature":
        return '"temperature" must be a number from 0 to 2'
    if field == "gateway" and len(loc) == 1:
        return '"gateway" must be an object'
    if field == "gateway":
        return _gateway_message(str(loc[1]), error)
    return f"{'.'.join(map(str, loc))}: {error.get('msg', 'not valid')}"


def _gateway_message(option: str, error: Any) -> str:
    kind = error.get("type", "")
    if kind == "extra_forbidden":
        return f"unknown gateway option {option!r}"
    if option == "metadata" and kind == "too_long":
        return METADATA_TOO_MANY
    if kind == "value_error":
        return str(error["ctx"]["error"])
    if kind.endswith("_type"):
        return f"gateway option {option!r} has the wrong type"
    return f"gateway option {option!r}: {error.get('msg', 'not valid')}"
