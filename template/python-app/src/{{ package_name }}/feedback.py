"""Feedback on a gateway log entry: ``POST /feedback`` ``{"log_id", "score", "feedback"}``, and
``send_feedback()`` for the evals (``python -m {{ package_name }} eval --feedback``).

The score (0 to 100) and the thumbs (-1 or 1) go to the log the gateway wrote for an answer
(its ``cf-aig-log-id``) through the Cloudflare v4 API: ``PATCH {CLOUDFLARE_API_BASE_URL}/
accounts/{account}/ai-gateway/gateways/{gateway}/logs/{log_id}``. The token is
CLOUDFLARE_API_TOKEN with the one permission that call needs, "AI Gateway Edit" ("AI Gateway
Write" in the API reference). It goes to CLOUDFLARE_API_BASE_URL only (https, no redirects
followed), and the whole call has one deadline (REQUEST_TIMEOUT_SECONDS).
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError

from .auth import caller
from .errors import ApiError, RefusedAnswer, timed_out
from .gateway import http_client, sdk_http
from .models import ErrorBody
from .openai_shapes import Score
from .settings import CALLER_AUTH, Settings, get_settings
from .streaming import read_json

LOG_ID_PATTERN = r"^[A-Za-z0-9_-]{1,128}$"  # a cf-aig-log-id: never a path of its own
MESSAGES = {
    "score": '"score" must be a number from 0 to 100',
    "feedback": '"feedback" must be -1 or 1',
    "log_id": '"log_id" must be a gateway log id (cf-aig-log-id)',
}
NOTHING_TO_SEND = 'send "score" (0 to 100), "feedback" (-1 or 1) or both'


class FeedbackError(Exception):
    """The Cloudflare API did not take the feedback (or could not be reached)."""


class Feedback(BaseModel):
    model_config = ConfigDict(extra="forbid")

    log_id: Annotated[StrictStr, Field(pattern=LOG_ID_PATTERN)]
    score: Score | None = None
    feedback: Literal[-1, 1] | None = None

    def patch(self) -> dict[str, Any]:
        """The PATCH body: what was given, as the API's schema has it."""
        return self.model_dump(exclude={"log_id"}, exclude_none=True)


def log_url(settings: Settings, log_id: str) -> str:
    account = settings.require_account_id()
    api = settings.api_base_url.rstrip("/")
    return f"{api}/accounts/{account}/ai-gateway/gateways/{settings.gateway_id}/logs/{log_id}"


async def send_feedback(settings: Settings, feedback: Feedback) -> None:
    """PATCH the log; FeedbackError, SettingsError (no token) or TimeoutError otherwise."""
    from openai import DefaultAsyncHttpxClient  # the package's own httpx (the openai SDK's)

    token = settings.secret(
        "CLOUDFLARE_API_TOKEN", 'feedback is sent to the Cloudflare API ("AI Gateway Edit")'
    )
    url = log_url(settings, feedback.log_id)
    headers = {"authorization": f"Bearer {token}"}
    http = http_client(settings, (), sdk_http(DefaultAsyncHttpxClient))
    async with http, asyncio.timeout(settings.request_timeout):
        try:
            response = await http.patch(url, json=feedback.patch(), headers=headers)
        except RefusedAnswer as error:
            raise FeedbackError(f"the Cloudflare API's answer was refused: {error}") from None
        except Exception as error:  # the package's connection errors
            if "Timeout" in type(error).__name__:
                raise TimeoutError from None
            api = settings.api_base_url
            raise FeedbackError(f"could not reach the Cloudflare API at {api}") from None
    if response.status_code != 200:
        raise FeedbackError(refusal(response, feedback.log_id))


def refusal(response: Any, log_id: str) -> str:
    """The API's status and its first error's code and message (never the token)."""
    message = f"the Cloudflare API answered {response.status_code} to the feedback for log {log_id}"
    try:
        first = json.loads(response.content)["errors"][0]
        return f"{message} (code {int(first['code'])}: {str(first['message'])[:200]})"
    except (ValueError, KeyError, IndexError, TypeError):
        return message


def checked(body: Any) -> Feedback:
    try:
        feedback = Feedback.model_validate(body)
    except ValidationError as error:
        first = error.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else ""
        if first["type"] == "extra_forbidden":
            raise ApiError(400, f"unknown field {field!r}") from None
        if field == "" or first["type"] == "model_type":
            raise ApiError(400, 'the request body must be a JSON object with "log_id"') from None
        raise ApiError(400, MESSAGES.get(field, f"{field}: {first['msg']}")) from None
    if feedback.score is None and feedback.feedback is None:
        raise ApiError(400, NOTHING_TO_SEND)
    return feedback


feedback_routes = APIRouter(dependencies=[Depends(caller)])
KEYED = CALLER_AUTH == "api-key"
CODES = [code for code in (400, 401, 413, 415, 500, 502, 504) if KEYED or code != 401]


@feedback_routes.post("/feedback", responses={code: {"model": ErrorBody} for code in CODES})
async def post_feedback(
    request: Request, settings: Annotated[Settings, Depends(get_settings)]
) -> JSONResponse:
    """The feedback set on the gateway's log: 200 ``{"log_id"}``, 400 for a bad body, 502
    when the API refuses it, 504 past the deadline."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise ApiError(415, 'send the body as JSON with "content-type: application/json"')
    settings.check("MAX_BODY_BYTES", "REQUEST_TIMEOUT_SECONDS")
    feedback = checked(await read_json(request, settings.max_body_bytes))
    try:
        await send_feedback(settings, feedback)
    except FeedbackError as error:
        raise ApiError(502, str(error)) from None
    except TimeoutError:
        raise timed_out(settings.request_timeout) from None
    return JSONResponse({"log_id": feedback.log_id})
