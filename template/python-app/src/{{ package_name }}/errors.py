"""What can go wrong, as exceptions with their answer: the caller's (ApiError), the gateway's
(UpstreamError and the refused answers), and the error class each one logs."""

from __future__ import annotations

from typing import Any

# The log line's "error" for each status (500 is "setting" when a setting is to blame).
ERROR_CLASSES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    500: "internal",
    502: "upstream",
    503: "unavailable",
    504: "timeout",
}


class ApiError(Exception):
    """An answer other than 200: its status, message and extra headers or fields."""

    def __init__(
        self, code: int, message: str, headers: dict[str, str] | None = None, **fields: Any
    ) -> None:
        super().__init__(message)
        self.code = code
        self.headers = headers or {}
        self.fields = fields
        self.error_class = ERROR_CLASSES.get(code, "internal")

    def body(self) -> dict[str, Any]:
        return {"error": str(self), **self.fields}


def timed_out(seconds: float) -> ApiError:
    return ApiError(504, f"no answer within {seconds:g} s (REQUEST_TIMEOUT_SECONDS)")


class UpstreamError(Exception):
    """The gateway (or the provider behind it) failed. The message never carries what the
    upstream answered, only its status and log id: an error body can echo secrets."""

    def __init__(self, message: str, status: int | None = None, log_id: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.log_id = log_id
        self.upstream_ms: float | None = None  # until the gateway answered, when it did

    def as_api_error(self) -> ApiError:
        return ApiError(502, str(self), status=self.status, log_id=self.log_id)


class RefusedAnswer(Exception):
    """The gateway's answer was not used; ``status`` and ``log_id`` are its own."""

    names_log_id = True  # the message ends with the gateway's log id

    def __init__(self, message: str, status: int | None, log_id: str | None = None) -> None:
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


class AnswerTooLarge(RefusedAnswer):
    """The gateway's answer went past MAX_UPSTREAM_BYTES; the rest was not read."""

    names_log_id = False

    def __init__(self, limit: int, status: int | None, log_id: str | None = None) -> None:
        message = f"the gateway's answer is larger than {limit} bytes (MAX_UPSTREAM_BYTES)"
        super().__init__(message, status, log_id)


def _with_log_id(message: str, log_id: str | None) -> str:
    return f"{message} (gateway log id {log_id})" if log_id else message


def upstream_error(error: BaseException) -> BaseException:
    """One clear exception for an SDK's HTTP failure; any other error is returned as is.

    The SDKs differ in their error classes but agree on the shape: an HTTP error carries the
    ``response``, a connection failure or time-out the ``request``; a refused answer (raised
    by an event hook or while reading) is the error itself or its cause.
    """
    if isinstance(error, UpstreamError):
        return error
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, RefusedAnswer):
            message = _with_log_id(str(cause), cause.log_id) if cause.names_log_id else str(cause)
            return UpstreamError(message, cause.status, cause.log_id)
        cause = cause.__cause__ or cause.__context__
    response = getattr(error, "response", None)
    status = getattr(response, "status_code", None)
    if response is not None and isinstance(status, int):
        log_id = response.headers.get("cf-aig-log-id")
        return UpstreamError(_with_log_id(f"the gateway answered {status}", log_id), status, log_id)
    url = getattr(getattr(error, "request", None), "url", None)
    kind = type(error).__name__
    if url is not None and "Timeout" in kind:
        return UpstreamError(f"the gateway did not answer in time ({_safe_url(url)})")
    if url is not None and ("Connect" in kind or "Connection" in kind):
        return UpstreamError(f"could not reach the gateway at {_safe_url(url)}")
    return error


def _safe_url(url: Any) -> str:
    """The URL without a query string (an SDK may put a key there)."""
    return str(url).split("?", 1)[0]
