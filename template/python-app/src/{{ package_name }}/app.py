"""The HTTP service: ``python -m my_service serve``, or ``uvicorn my_service.app:app``.

Routes (every answer JSON, or server-sent events with ``"stream": true``):
- ``GET /health``: ``{"status": "ok", "providers": [...]}``, no key needed.
- ``POST /chat`` (the default provider) and ``POST /chat/<provider>``: a body
  ``{"prompt": "..."}`` or ``{"messages": [{"role", "content"}, ...]}``, with optional
  ``model`` (from ALLOWED_MODELS), ``stream`` and ``gateway`` (per-request gateway
  options: cacheTtl, skipCache, cacheKey, metadata, eventId, ...). The answer:
  ``{"reply", "model", "usage", "log_id", "cache_status"}``.

With caller_auth ``api-key``, every route but ``GET /health`` needs
``Authorization: Bearer $SERVICE_API_KEY``; the caller's Authorization is never
forwarded upstream. Errors are ``{"error": "..."}``: 400 bad body or model, 401 no or
wrong key, 404 unknown route, 405 wrong method, 413 body over MAX_BODY_BYTES, 415 not
application/json, 500 missing setting (named, nothing sent), 502 upstream failure
(status and log id only), 504 past REQUEST_TIMEOUT_SECONDS. Checks run in that order:
caller key, route, method, content type, size, body, settings, gateway; a caller without
the key learns nothing about the settings. README.md "HTTP contract" has the details.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import json
import re
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException

from .chat import Reply, UpstreamError, chat
from .gateway_options import GatewayOptions
from .providers import DEFAULT_PROVIDER, PROVIDERS
from .settings import (
    ServiceSettings,
    Settings,
    SettingsError,
    load_service_settings,
    load_settings,
    read_service_api_key,
)

METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


class ApiError(Exception):
    """An answer other than 200: its status, message and extra headers or fields."""

    def __init__(self, code: int, message: str, headers: dict | None = None, **fields: Any):
        super().__init__(message)
        self.code = code
        self.headers = headers or {}
        self.fields = fields


def error_response(error: ApiError) -> JSONResponse:
    body = {"error": str(error), **error.fields}
    return JSONResponse(body, status_code=error.code, headers=error.headers)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The service. ``app.state.settings``: read from the environment on first use unless given."""
    # No /docs or /openapi.json: every route the service has is documented above.
    # No redirect from /chat/ to /chat either: an unknown path is a 404.
    app = FastAPI(
        title=__package__,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        redirect_slashes=False,
    )
    app.state.settings = settings

    def current_settings() -> Settings:
        if app.state.settings is None:
            app.state.settings = load_settings()
        return app.state.settings

    def service_settings() -> ServiceSettings | Settings:
        """What the checks before the gateway's settings need: caller key, limits, models."""
        if app.state.settings is not None:
            return app.state.settings
        return load_service_settings()

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        return error_response(error)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        message = f"no route for {request.method} {request.url.path}"
        if error.status_code != 404:
            message = f"method {request.method} not allowed on {request.url.path}"
        return error_response(ApiError(error.status_code, message, dict(error.headers or {})))

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, error: Exception) -> JSONResponse:
        # The traceback goes to the server's log (uvicorn's); the caller learns nothing more.
        return error_response(ApiError(500, "internal error"))

    @app.middleware("http")
    async def caller_auth(request: Request, call_next: Any) -> Response:
        public = request.method == "GET" and request.url.path == "/health"
        if public:
            return await call_next(request)
        try:
            # Only SERVICE_API_KEY is read here: a caller without the key learns nothing
            # about the other settings, not even whether they are valid.
            service = app.state.settings or ServiceSettings(service_api_key=read_service_api_key())
            if service.caller_auth == "api-key":
                check_caller_key(request, service.require_service_api_key())
        except SettingsError as error:
            return error_response(missing_setting(error))
        except ApiError as error:
            return error_response(error)
        return await call_next(request)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "providers": list(PROVIDERS)}

    @app.api_route("/chat", methods=METHODS)
    @app.api_route("/chat/{provider}", methods=METHODS)
    async def chat_route(request: Request, provider: str = DEFAULT_PROVIDER) -> Response:
        if provider not in PROVIDERS:
            raise ApiError(404, f"no route for {request.method} {request.url.path}")
        if request.method != "POST":
            raise ApiError(
                405,
                f"method {request.method} not allowed on {request.url.path}",
                {"allow": "POST"},
            )
        try:
            service = service_settings()
        except SettingsError as error:
            raise missing_setting(error) from None
        timeout = service.request_timeout
        # One deadline for all of it: reading the body, the gateway's answer, the stream.
        deadline = asyncio.get_running_loop().time() + timeout
        try:
            async with asyncio.timeout_at(deadline):
                body = await read_json(request, service.max_body_bytes)
                call = chat_call(body, request, provider, service.allowed_models)
                # The settings as a whole (and the secrets) only now, before anything is sent.
                settings = current_settings()
                reply = await chat(settings, **call)
                if call["stream"]:
                    return StreamingResponse(
                        events(reply, deadline, timeout),
                        media_type="text/event-stream",
                        headers={"cache-control": "no-cache", **gateway_headers(reply)},
                    )
                text = await reply.text()
        except SettingsError as error:
            raise missing_setting(error) from None
        except UpstreamError as error:
            raise ApiError(502, str(error), status=error.status, log_id=error.log_id) from None
        except TimeoutError:
            raise timed_out(timeout) from None
        answer = {
            "reply": text,
            "model": reply.model,
            "usage": reply.usage,
            "log_id": reply.gateway.log_id,
            "cache_status": reply.gateway.cache_status,
        }
        return JSONResponse(answer, headers=gateway_headers(reply))

    return app


def check_caller_key(request: Request, key: str) -> None:
    """401 unless the request carries ``Authorization: Bearer <key>`` (constant-time check)."""
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), key.encode()):
        raise ApiError(
            401,
            "send Authorization: Bearer <SERVICE_API_KEY>",
            {"www-authenticate": "Bearer"},
        )


def missing_setting(error: SettingsError) -> ApiError:
    """500 naming the variable (never its value): ``missing``, or set but ``invalid``."""
    return ApiError(500, str(error), **{"missing" if error.missing else "invalid": error.variable})


def too_large(limit: int) -> ApiError:
    return ApiError(413, f"the request body is larger than {limit} bytes (MAX_BODY_BYTES)")


def timed_out(seconds: float) -> ApiError:
    return ApiError(504, f"no answer within {seconds:g} s (REQUEST_TIMEOUT_SECONDS)")


async def read_json(request: Request, limit: int) -> Any:
    """The JSON body: 415 unless application/json, 413 past ``limit`` bytes, 400 if not JSON."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise ApiError(415, 'send the body as JSON with "content-type: application/json"')
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large(limit)
    try:
        return json.loads(body)
    except ValueError:
        raise ApiError(400, "the request body must be JSON") from None


def chat_call(body: Any, request: Request, provider: str, allowed_models: tuple[str, ...]) -> dict:
    """The arguments of ``chat()`` from a checked request body (400 when it is not right)."""
    if not isinstance(body, dict):
        raise ApiError(400, 'the request body must be a JSON object with "prompt" or "messages"')
    prompt, messages = body.get("prompt"), body.get("messages")
    if isinstance(prompt, str) and prompt.strip():
        messages = [{"role": "user", "content": prompt}]
    elif not (isinstance(messages, list) and messages and all(map(is_message, messages))):
        raise ApiError(
            400,
            'send "prompt" (a non-empty string) or "messages" (a non-empty list of '
            "{role, content})",
        )
    if PROVIDERS[provider].sdk != "client" and not all(
        isinstance(message["content"], str) for message in messages
    ):
        raise ApiError(400, f"{provider} takes messages whose content is text")
    model = body.get("model", PROVIDERS[provider].default_model)
    if not isinstance(model, str) or not model:
        raise ApiError(400, '"model" must be a non-empty string')
    if model not in (allowed_models or (PROVIDERS[provider].default_model,)):
        raise ApiError(400, f"model {json.dumps(model)} is not allowed (ALLOWED_MODELS)")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise ApiError(400, '"stream" must be true or false')
    options = gateway_options(body.get("gateway"))
    event_id = request.headers.get("cf-aig-event-id")
    if event_id:  # a caller's own trace id (request header) wins over the body's
        options = dataclasses.replace(options, event_id=event_id)
    return {
        "messages": messages,
        "provider": provider,
        "model": model,
        "stream": stream,
        "headers": options.headers(),
    }


def is_message(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and isinstance(value.get("role"), str)
        and isinstance(value.get("content"), str | list)
    )


def gateway_options(value: Any) -> GatewayOptions:
    """GatewayOptions from the body's ``gateway`` object, whose keys are camelCase."""
    if value is None:
        return GatewayOptions()
    if not isinstance(value, dict):
        raise ApiError(400, '"gateway" must be an object')
    fields = {field.name: field for field in dataclasses.fields(GatewayOptions)}
    options = {}
    for key, option in value.items():
        name = re.sub(r"(?<!^)([A-Z])", r"_\1", key).lower()
        field = fields.get(name)
        if field is None or "_" in key:  # the keys are camelCase, as in the Worker
            raise ApiError(400, f"unknown gateway option {key!r}")
        if not _json_type_fits(option, str(field.type)):
            raise ApiError(400, f"gateway option {key!r} has the wrong type")
        options[name] = option
    try:
        return GatewayOptions(**options)
    except (TypeError, ValueError) as error:
        raise ApiError(400, f"gateway options: {error}") from None


def _json_type_fits(value: Any, annotation: str) -> bool:
    """Whether a JSON value fits a GatewayOptions field's annotation."""
    if annotation.startswith("bool"):
        return isinstance(value, bool)
    if annotation.startswith(("int", "float")):
        return isinstance(value, int | float) and not isinstance(value, bool)
    if annotation.startswith("Mapping"):
        return isinstance(value, dict)
    return isinstance(value, str)


def gateway_headers(reply: Reply) -> dict[str, str]:
    """The gateway's answer headers, copied onto ours so callers can find the log entry."""
    info = {
        "cf-aig-log-id": reply.gateway.log_id,
        "cf-aig-cache-status": reply.gateway.cache_status,
    }
    return {name: value for name, value in info.items() if value}


async def events(reply: Reply, deadline: float, seconds: float) -> AsyncIterator[str]:
    """Server-sent events: ``delta`` per piece of text, then ``done``, or ``error``."""
    try:
        async with asyncio.timeout_at(deadline):
            async for piece in reply.pieces:
                yield sse("delta", {"text": piece})
    except UpstreamError as error:
        yield sse("error", {"error": str(error), "status": 502, "log_id": error.log_id})
        return
    except TimeoutError:
        yield sse("error", {"error": str(timed_out(seconds)), "status": 504})
        return
    done = {
        "model": reply.model,
        "log_id": reply.gateway.log_id,
        "cache_status": reply.gateway.cache_status,
    }
    if reply.usage:  # known once the stream has ended, when the provider sends it
        done["usage"] = reply.usage
    yield sse("done", done)


def sse(event: str, data: dict) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


app = create_app()
