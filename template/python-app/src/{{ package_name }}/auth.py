"""The caller's key: with caller_auth ``api-key``, callers send ``Authorization: Bearer <key>``
(the scheme in any case): a named caller's key from callers.toml (its SHA-256 compared in
constant time with every hash there), or SERVICE_API_KEY (the caller ``default``, compared
in constant time as well). It is checked before anything else, and never forwarded
upstream; the log line names the caller, never the key."""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request

from . import request_log
from .callers import ANONYMOUS, Caller, Callers, load_callers
from .errors import ApiError
from .providers import PROVIDERS
from .settings import Settings, get_settings

UNAUTHORIZED = "send Authorization: Bearer <SERVICE_API_KEY>"


def check_caller(request: Request, settings: Settings, callers: Callers) -> Caller:
    """The caller (``default`` for SERVICE_API_KEY, ``anonymous`` with caller_auth none),
    else 401.

    Only the keys are looked at: a caller without a key learns nothing about the other
    settings, not even whether they are valid."""
    if settings.caller_auth == "none":
        request_log.note(caller=ANONYMOUS.name)
        return ANONYMOUS
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    bearer = scheme.lower() == "bearer"
    found = callers.find(given) if bearer and given else None
    if found is None and (settings.service_api_key is not None or not callers.hashes):
        key = settings.secret(
            "SERVICE_API_KEY", "callers of the service must send it as `Authorization: Bearer ...`"
        )
        if bearer and hmac.compare_digest(given.encode(), key.encode()):
            found = callers.default
    if found is None:
        raise ApiError(401, UNAUTHORIZED, {"www-authenticate": "Bearer"})
    request_log.note(caller=found.name)
    return found


def read_callers(settings: Settings) -> Callers:
    """CALLERS_FILE (callers.toml), checked against ALLOWED_MODELS (empty: each provider's
    default model); CallersError or SettingsError when it cannot be used. None with
    caller_auth none: every request is ``anonymous``, the file is not read."""
    if settings.caller_auth == "none":
        return Callers()
    settings.check("CALLERS_FILE", "ALLOWED_MODELS")
    allowed = settings.allowed_models or tuple(p.default_model for p in PROVIDERS.values())
    return load_callers(Path(settings.callers_file), allowed)


def callers_of(request: Request) -> Callers:
    """The callers read at start-up (none before it: a test app served without lifespan)."""
    return getattr(request.app.state, "callers", None) or Callers()


async def caller(request: Request, settings: Annotated[Settings, Depends(get_settings)]) -> Caller:
    """The dependency every route but the open ones (health, the contract) declares."""
    return check_caller(request, settings, callers_of(request))
