"""The HTTP rules every client in this package follows, whatever its SDK.

- Redirects are never followed: the gateway token, a provider key and the prompt go
  to the configured gateway and nowhere else. A 3xx answer raises GatewayRedirect,
  which names the ``Location``.
- Headers an SDK insists on making (its ``Authorization`` from a placeholder key)
  can be dropped before the request leaves, through httpx's public event hooks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any


class GatewayRedirect(Exception):
    """The gateway answered with a redirect; it was not followed."""

    def __init__(self, status: int, location: str | None) -> None:
        super().__init__(f"the gateway redirected ({status}) to {location or 'nowhere'}")
        self.status = status
        self.location = location


def refuse_redirect(response: Any) -> None:
    if 300 <= response.status_code < 400:
        raise GatewayRedirect(response.status_code, response.headers.get("location"))


async def refuse_redirect_async(response: Any) -> None:
    refuse_redirect(response)


def header_dropper(names: Iterable[str]) -> Callable[[Any], None]:
    names = tuple(names)

    def drop(request: Any) -> None:
        for name in names:
            request.headers.pop(name, None)

    return drop


def http_options(*, drop_headers: Iterable[str] = (), timeout: float | None = None) -> dict:
    """Keyword arguments for a sync ``httpx``-style client that follows these rules."""
    hooks: dict[str, list] = {"response": [refuse_redirect]}
    if drop_headers:
        hooks["request"] = [header_dropper(drop_headers)]
    options: dict[str, Any] = {"follow_redirects": False, "event_hooks": hooks}
    if timeout is not None:
        options["timeout"] = timeout
    return options


def async_http_options(*, drop_headers: Iterable[str] = (), timeout: float | None = None) -> dict:
    """The same for an async client (its event hooks must be coroutines)."""
    hooks: dict[str, list] = {"response": [refuse_redirect_async]}
    if drop_headers:
        drop = header_dropper(drop_headers)

        async def drop_async(request: Any) -> None:
            drop(request)

        hooks["request"] = [drop_async]
    options: dict[str, Any] = {"follow_redirects": False, "event_hooks": hooks}
    if timeout is not None:
        options["timeout"] = timeout
    return options
