"""The caller's key: with caller_auth ``api-key``, callers send
``Authorization: Bearer $SERVICE_API_KEY`` (the scheme in any case, the key exactly, compared
in constant time). It is checked before anything else, and never forwarded upstream."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from . import request_log
from .errors import ApiError
from .settings import Settings, get_settings

UNAUTHORIZED = "send Authorization: Bearer <SERVICE_API_KEY>"


def check_caller(request: Request, settings: Settings) -> str:
    """The caller's name (``default``, or ``anonymous`` with caller_auth none), else 401.

    Only SERVICE_API_KEY is looked at: a caller without the key learns nothing about the
    other settings, not even whether they are valid."""
    if settings.caller_auth == "none":
        request_log.note(caller="anonymous")
        return "anonymous"
    key = settings.secret(
        "SERVICE_API_KEY", "callers of the service must send it as `Authorization: Bearer ...`"
    )
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), key.encode()):
        raise ApiError(401, UNAUTHORIZED, {"www-authenticate": "Bearer"})
    request_log.note(caller="default")
    return "default"


async def caller(request: Request, settings: Annotated[Settings, Depends(get_settings)]) -> str:
    """The dependency every route but the open ones (health, the contract) declares."""
    return check_caller(request, settings)
