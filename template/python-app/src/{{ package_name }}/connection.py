"""The HTTP rules every client in this package follows, whatever its SDK.

- Redirects are never followed: the gateway token, a provider key and the prompt go
  to the configured gateway and nowhere else. A 3xx answer raises GatewayRedirect,
  which names the ``Location``.
- A successful answer must be JSON or server-sent events: anything else (an HTML
  login page, say) raises UnexpectedAnswer instead of being passed on.
- Headers an SDK insists on making (its ``Authorization`` from a placeholder key)
  can be dropped before the request leaves, through httpx's public event hooks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

EXPECTED_MEDIA_TYPES = ("application/json", "text/event-stream")


class RefusedAnswer(Exception):
    """The gateway's answer was not used; ``status`` and ``log_id`` are its own."""

    def __init__(self, message: str, status: int, log_id: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.log_id = log_id


class GatewayRedirect(RefusedAnswer):
    """The gateway answered with a redirect; it was not followed."""

    def __init__(self, status: int, location: str | None, log_id: str | None = None) -> None:
        where = location or "nowhere"
        message = f"the gateway redirected ({status}) to {where}; redirects are not followed"
        super().__init__(message, status, log_id)
        self.location = location


class UnexpectedAnswer(RefusedAnswer):
    """The gateway answered 2xx with something other than JSON or server-sent events."""

    def __init__(self, status: int, media_type: str, log_id: str | None = None) -> None:
        message = f"the gateway answered {status} with {media_type or 'no content type'}"
        super().__init__(message, status, log_id)


def check_answer(response: Any) -> None:
    status, headers = response.status_code, response.headers
    log_id = headers.get("cf-aig-log-id")
    if 300 <= status < 400:
        raise GatewayRedirect(status, headers.get("location"), log_id)
    if 200 <= status < 300:
        media_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type not in EXPECTED_MEDIA_TYPES:
            raise UnexpectedAnswer(status, media_type, log_id)


async def check_answer_async(response: Any) -> None:
    check_answer(response)


def header_dropper(names: Iterable[str]) -> Callable[[Any], None]:
    names = tuple(names)

    def drop(request: Any) -> None:
        for name in names:
            request.headers.pop(name, None)

    return drop


def http_options(*, drop_headers: Iterable[str] = (), timeout: float | None = None) -> dict:
    """Keyword arguments for a sync ``httpx``-style client that follows these rules."""
    hooks: dict[str, list] = {"response": [check_answer]}
    if drop_headers:
        hooks["request"] = [header_dropper(drop_headers)]
    options: dict[str, Any] = {"follow_redirects": False, "event_hooks": hooks}
    if timeout is not None:
        options["timeout"] = timeout
    return options


def async_http_options(*, drop_headers: Iterable[str] = (), timeout: float | None = None) -> dict:
    """The same for an async client (its event hooks must be coroutines)."""
    hooks: dict[str, list] = {"response": [check_answer_async]}
    if drop_headers:
        drop = header_dropper(drop_headers)

        async def drop_async(request: Any) -> None:
            drop(request)

        hooks["request"] = [drop_async]
    options: dict[str, Any] = {"follow_redirects": False, "event_hooks": hooks}
    if timeout is not None:
        options["timeout"] = timeout
    return options
