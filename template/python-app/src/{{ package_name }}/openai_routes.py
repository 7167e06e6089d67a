"""OpenAI's API, for any OpenAI SDK or agent framework pointed at ``{service}/v1`` with a
caller key as its API key: ``POST /v1/chat/completions`` (streamed or not),
``GET /v1/models`` and ``POST /v1/embeddings``.

The same caller key, limits and log line as /chat (the ``caller`` dependency, callers.toml's
models, max_tokens cap and rate, ``cf-aig-metadata`` naming the caller). A checked request
goes on as it came to the gateway's OpenAI-compatible endpoint of the model's provider:

- ``@cf/...`` models: Workers AI (when this project has it);
- ``provider/model`` names: the AI REST API (compat, when this project has it);
- every other model: OpenAI.

Answers and stream chunks are the provider's own, passed on unchanged (tool-call deltas
included), a stream ended by ``data: [DONE]``; the gateway's ``cf-aig-log-id`` and
``cf-aig-cache-status`` headers are copied. Errors have OpenAI's shape
``{"error": {"message", "type", "param", "code"}}`` (openai_error_body).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError

from . import request_log
from .auth import caller
from .callers import Caller, RateLimiter, capped_max_tokens, check_model, identity_metadata
from .errors import ApiError, UpstreamError, timed_out, upstream_error
from .gateway import GatewayOptions, GatewayResponse, is_header_text
from .openai_shapes import CompletionRequest, EmbeddingRequest, shape_problem
from .providers import PROVIDERS, Provider, Upstream
from .settings import CALLER_AUTH, SERVICE_NAME, Settings, get_settings
from .streaming import EventStream, close_shielded, read_json

ERROR_TYPES = {401: "authentication_error", 429: "rate_limit_error"}


def openai_error_body(error: ApiError) -> dict[str, Any]:
    """An ApiError as OpenAI's SDKs read errors; ``code`` is the log line's error class."""
    kind = ERROR_TYPES.get(error.code, "invalid_request_error" if error.code < 500 else "api_error")
    param = getattr(error, "param", None)
    return {
        "error": {"message": str(error), "type": kind, "param": param, "code": error.error_class}
    }


class Refused(ApiError):
    """A 400 naming the request's field at fault (OpenAI's ``param``)."""

    def __init__(self, message: str, param: str | None) -> None:
        super().__init__(400, message)
        self.param = param


Shape = TypeVar("Shape", bound=BaseModel)


def openai_provider(model: str) -> Provider:
    """Which provider serves ``model`` on /v1 (see the module's docstring)."""
    if model.startswith("@cf/") and "workers-ai" in PROVIDERS:
        return PROVIDERS["workers-ai"]
    if "/" in model and not model.startswith("@cf/") and "compat" in PROVIDERS:
        return PROVIDERS["compat"]
    return PROVIDERS["openai"]


def served_models(settings: Settings) -> tuple[str, ...]:
    """ALLOWED_MODELS; empty: the default model of each OpenAI-compatible provider."""
    settings.check("ALLOWED_MODELS")
    defaults = (p.default_model for p in PROVIDERS.values() if not p.text_only)
    return settings.allowed_models or tuple(defaults)


@dataclass(frozen=True)
class OpenAICall:
    """A checked /v1 request: where it goes, the body to send, its headers and deadline."""

    provider: str
    path: str
    body: dict[str, Any]
    headers: dict[str, str]
    deadline: float
    timeout: float
    stream: bool = False


def start_deadline(settings: Settings) -> float:
    """One deadline for all of a request: its body, the gateway's answer, the stream."""
    settings.check("MAX_BODY_BYTES", "REQUEST_TIMEOUT_SECONDS")
    return asyncio.get_running_loop().time() + settings.request_timeout


async def read_shape(
    request: Request, settings: Settings, shape: type[Shape], deadline: float
) -> Shape:
    """The body (JSON, at most MAX_BODY_BYTES, before the deadline) as ``shape``, else 400."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise ApiError(415, 'send the body as JSON with "content-type: application/json"')
    try:
        async with asyncio.timeout_at(deadline):
            body = await read_json(request, settings.max_body_bytes)
    except TimeoutError:
        raise timed_out(settings.request_timeout) from None
    try:
        return shape.model_validate(body)
    except ValidationError as error:
        message, param = shape_problem(error.errors())
        raise Refused(message, param) from None


async def within_limits(
    request: Request, settings: Settings, who: Caller, model: str, event_id: str | None
) -> dict[str, str]:
    """The model (ALLOWED_MODELS, then the caller's own), the rate; the gateway headers to
    send: the caller named in cf-aig-metadata, the caller's event id."""
    if model not in served_models(settings):
        raise Refused(f'model "{model}" is not allowed (ALLOWED_MODELS)', "model")
    try:
        check_model(who, model)
    except ApiError as error:
        raise Refused(str(error), "model") from None
    if event_id is not None and not is_header_text(event_id):
        raise ApiError(400, "header cf-aig-event-id must be 1 to 256 printable ASCII characters")
    options = GatewayOptions(metadata=identity_metadata(who, SERVICE_NAME, None), event_id=event_id)
    await limiter_of(request).hit(who)  # last: a refused request does not use up the rate
    return options.headers()


def limiter_of(request: Request) -> RateLimiter:
    if getattr(request.app.state, "limiter", None) is None:  # an app served without lifespan
        request.app.state.limiter = RateLimiter(SERVICE_NAME)
    return request.app.state.limiter


async def completion_call(
    request: Request,
    settings: Annotated[Settings, Depends(get_settings)],
    who: Annotated[Caller, Depends(caller)],
    event_id: Annotated[str | None, Header(alias="cf-aig-event-id")] = None,
) -> OpenAICall:
    deadline = start_deadline(settings)
    chat = await read_shape(request, settings, CompletionRequest, deadline)
    provider = openai_provider(chat.model)
    request_log.note(provider=provider.id, stream=chat.stream)
    headers = await within_limits(request, settings, who, chat.model, event_id)
    asked = chat.max_completion_tokens or chat.max_tokens
    try:
        max_tokens = capped_max_tokens(who, asked)
    except ApiError as error:
        raise Refused(str(error), "max_tokens") from None
    body = chat.forwarded(max_tokens)
    return OpenAICall(
        provider.id, "chat/completions", body, headers, deadline, settings.request_timeout,
        chat.stream,
    )  # fmt: skip


async def embedding_call(
    request: Request,
    settings: Annotated[Settings, Depends(get_settings)],
    who: Annotated[Caller, Depends(caller)],
    event_id: Annotated[str | None, Header(alias="cf-aig-event-id")] = None,
) -> OpenAICall:
    deadline = start_deadline(settings)
    asked = await read_shape(request, settings, EmbeddingRequest, deadline)
    provider = openai_provider(asked.model)
    request_log.note(provider=provider.id)
    if provider.via_rest_api:
        message = f'embeddings of "{asked.model}": the AI REST API documents none; name an '
        raise Refused(message + "OpenAI or @cf/ model", "model")
    headers = await within_limits(request, settings, who, asked.model, event_id)
    return OpenAICall(
        provider.id, "embeddings", asked.forwarded(), headers, deadline, settings.request_timeout
    )


def get_upstream(request: Request) -> Upstream:
    return request.app.state.upstream


def gateway_headers(response: Any) -> dict[str, str]:
    info = GatewayResponse.from_headers(response.headers)
    found = {"cf-aig-log-id": info.log_id, "cf-aig-cache-status": info.cache_status}
    return {name: value for name, value in found.items() if value}


def note_answer(response: Any, answer: dict[str, Any]) -> None:
    """The log line's model, usage, log id and cache status, from an answer or a chunk."""
    info = GatewayResponse.from_headers(response.headers)
    model = answer.get("model")
    request_log.note(
        model=model if isinstance(model, str) else None,
        usage=request_log.token_usage(answer.get("usage")),
        log_id=info.log_id,
        cache_status=info.cache_status,
    )


async def send(call: OpenAICall, upstream: Upstream) -> Any:
    """The gateway's answer, unread; UpstreamError or the deadline's 504 otherwise."""
    request_log.note(model=call.body["model"])
    started = time.perf_counter()
    try:
        async with asyncio.timeout_at(call.deadline):
            response = await upstream.forward(call.provider, call.path, call.body, call.headers)
    except UpstreamError as error:
        answered = error.status is not None  # the time until the gateway's answer, if any
        request_log.note(log_id=error.log_id, upstream_ms=_since(started) if answered else None)
        raise error.as_api_error() from None
    except TimeoutError:
        raise timed_out(call.timeout) from None
    request_log.note(upstream_ms=_since(started))
    return response


def _since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


async def read_answer(call: OpenAICall, response: Any) -> Response:
    """A whole JSON answer, passed on as the gateway sent it."""
    try:
        async with asyncio.timeout_at(call.deadline):
            content = await response.aread()
    except TimeoutError:
        raise timed_out(call.timeout) from None
    except Exception as error:
        failure = upstream_error(error)
        if isinstance(failure, UpstreamError):
            raise failure.as_api_error() from None
        raise
    finally:
        await close_shielded(response.aclose)
    try:
        answer = json.loads(content)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise ApiError(502, "the gateway's answer is not a JSON object")
    note_answer(response, answer)
    return Response(content, media_type="application/json", headers=gateway_headers(response))


def stream_error(error: ApiError) -> str:
    return f"data: {json.dumps(openai_error_body(error))}\n\n"


async def relay(call: OpenAICall, response: Any) -> AsyncIterator[str]:
    """The provider's chunks as they come (each ``data:`` line unchanged), then
    ``data: [DONE]``; an error chunk (OpenAI's SDKs raise it) if the gateway fails, the
    stream sends an error, or the deadline passes."""
    lines = aiter(response.aiter_lines())
    try:
        while True:
            async with asyncio.timeout_at(call.deadline):
                line = await anext(lines, None)
            data = line[5:].strip() if line is not None and line.startswith("data:") else None
            if line is None or data == "[DONE]":
                break
            if data:
                chunk = json.loads(data)
                if not isinstance(chunk, dict) or "error" in chunk:
                    raise UpstreamError("the gateway's stream carried an error")
                note_answer(response, chunk)
                yield f"data: {data}\n\n"
    except TimeoutError:
        request_log.note(error="timeout")
        yield stream_error(timed_out(call.timeout))
        return
    except Exception as error:
        failure = upstream_error(error)
        if isinstance(failure, ValueError):  # a chunk that is not JSON
            failure = UpstreamError("the gateway's stream is not JSON chunks")
        if not isinstance(failure, UpstreamError):
            raise
        request_log.note(error="upstream")
        yield stream_error(failure.as_api_error())
        return
    finally:
        await close_shielded(response.aclose)
    yield "data: [DONE]\n\n"


def documented(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The answers openapi.json documents (401, 429 and 503 only with caller keys)."""
    keyed = CALLER_AUTH == "api-key"
    shown = [code for code in codes if keyed or code not in (401, 429, 503)]
    return {code: {"description": "OpenAI's error shape"} for code in shown}


BODY_CODES = (400, 401, 413, 415, 429, 500, 502, 503, 504)
openai_routes = APIRouter(prefix="/v1", dependencies=[Depends(caller)])


@openai_routes.post("/chat/completions", responses=documented(*BODY_CODES))
async def chat_completions(
    call: Annotated[OpenAICall, Depends(completion_call)],
    upstream: Annotated[Upstream, Depends(get_upstream)],
) -> Response:
    response = await send(call, upstream)
    if not call.stream:
        return await read_answer(call, response)
    headers = {"cache-control": "no-cache", **gateway_headers(response)}
    return EventStream(relay(call, response), headers=headers)


@openai_routes.post("/embeddings", responses=documented(*BODY_CODES))
async def embeddings(
    call: Annotated[OpenAICall, Depends(embedding_call)],
    upstream: Annotated[Upstream, Depends(get_upstream)],
) -> Response:
    return await read_answer(call, await send(call, upstream))


@openai_routes.get("/models", responses=documented(401, 500))
async def models(
    settings: Annotated[Settings, Depends(get_settings)],
    who: Annotated[Caller, Depends(caller)],
) -> JSONResponse:
    """The models this caller may name, in OpenAI's list shape."""
    listed = [
        {"id": model, "object": "model", "created": 0, "owned_by": openai_provider(model).id}
        for model in served_models(settings)
        if who.allows(model)
    ]
    return JSONResponse({"object": "list", "data": listed})
