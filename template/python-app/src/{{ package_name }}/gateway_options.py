"""The gateway's per-request controls, as typed values instead of raw header strings.

    from my_service.gateway_options import GatewayOptions, GatewayResponse

    options = GatewayOptions(cache_ttl=3600, metadata={"user": "u-42"}, max_attempts=3)
    raw = client.chat.completions.with_raw_response.create(
        model=..., messages=..., extra_headers=options.headers()
    )
    info = GatewayResponse.from_headers(raw.headers)  # log id, cache status

The limits are the documented ones (Cloudflare AI Gateway docs: features/caching,
configuration/request-handling, observability/custom-metadata, observability/logging,
configuration/bring-your-own-keys), the same as the Worker's src/gateway-options.ts: a value
the gateway would not take raises ValueError (TypeError for a wrong type) before any request.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

Backoff = Literal["constant", "linear", "exponential"]
MetadataValue = str | int | float | bool

BACKOFFS = ("constant", "linear", "exponential")
CACHE_TTL_MIN = 60  # seconds: the shortest cache the gateway accepts
CACHE_TTL_MAX = 30 * 24 * 3600  # one month
MAX_ATTEMPTS = 5  # tries in all, the first included
MAX_RETRY_DELAY_MS = 5000
MAX_METADATA_ENTRIES = 5  # the gateway keeps at most five flat entries
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class GatewayOptions:
    """Per-request gateway settings; None leaves the gateway's own setting in force."""

    cache_ttl: int | None = None  # seconds to cache, 60 to one month (cf-aig-cache-ttl)
    skip_cache: bool = False  # bypass the cache for this request (cf-aig-skip-cache)
    cache_key: str | None = None  # custom cache key (cf-aig-cache-key)
    metadata: Mapping[str, MetadataValue] | None = None  # up to 5 flat tags (cf-aig-metadata)
    request_timeout_ms: int | None = None  # give up on the provider after (cf-aig-request-timeout)
    max_attempts: int | None = None  # gateway-side tries in all, 1-5 (cf-aig-max-attempts)
    retry_delay_ms: int | None = None  # delay between tries, <= 5000 ms (cf-aig-retry-delay)
    backoff: Backoff | None = None  # how the delay grows (cf-aig-backoff)
    collect_log: bool | None = None  # log this request or not (cf-aig-collect-log)
    collect_log_payload: bool | None = None  # False: no bodies in logs (cf-aig-collect-log-payload)
    zdr: bool | None = None  # zero data retention at the provider (cf-aig-zdr)
    byok_alias: str | None = None  # which stored BYOK key to use (cf-aig-byok-alias)
    event_id: str | None = None  # your id, to find this request in logs (cf-aig-event-id)

    def __post_init__(self) -> None:
        self.headers()  # checks every value

    def headers(self) -> dict[str, str]:
        """The request headers to send (pass as ``extra_headers`` to any SDK call)."""
        skip_cache = _flag("cf-aig-skip-cache", self.skip_cache) == "true"
        values: dict[str, str | None] = {
            "cf-aig-cache-ttl": _int(
                "cf-aig-cache-ttl", self.cache_ttl, CACHE_TTL_MIN, CACHE_TTL_MAX
            ),
            "cf-aig-skip-cache": "true" if skip_cache else None,
            "cf-aig-cache-key": _text("cf-aig-cache-key", self.cache_key),
            "cf-aig-metadata": _metadata(self.metadata),
            "cf-aig-request-timeout": _int("cf-aig-request-timeout", self.request_timeout_ms, 1),
            "cf-aig-max-attempts": _int("cf-aig-max-attempts", self.max_attempts, 1, MAX_ATTEMPTS),
            "cf-aig-retry-delay": _int(
                "cf-aig-retry-delay", self.retry_delay_ms, 0, MAX_RETRY_DELAY_MS
            ),
            "cf-aig-backoff": _backoff(self.backoff),
            "cf-aig-collect-log": _flag("cf-aig-collect-log", self.collect_log),
            "cf-aig-collect-log-payload": _flag(
                "cf-aig-collect-log-payload", self.collect_log_payload
            ),
            "cf-aig-zdr": _flag("cf-aig-zdr", self.zdr),
            "cf-aig-byok-alias": _text("cf-aig-byok-alias", self.byok_alias),
            "cf-aig-event-id": _text("cf-aig-event-id", self.event_id),
        }
        return {name: value for name, value in values.items() if value is not None}


def _int(name: str, value: int | None, low: int, high: int | None = None) -> str | None:
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < low
        or (high is not None and value > high)
    ):
        span = f"from {low} to {high}" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be an integer {span} (got {value})")
    return str(value)


def _flag(name: str, value: bool | None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be true or false (got {value!r})")
    return "true" if value else "false"


def _text(name: str, value: str | None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or _CONTROL.search(value):
        raise ValueError(f"{name} must be a non-empty string without control characters")
    return value


def _backoff(value: str | None) -> str | None:
    if value is not None and value not in BACKOFFS:
        raise ValueError(f"cf-aig-backoff must be one of {', '.join(BACKOFFS)}")
    return value


def _metadata(metadata: Mapping[str, MetadataValue] | None) -> str | None:
    if metadata is None:
        return None
    if len(metadata) > MAX_METADATA_ENTRIES:
        raise ValueError(f"cf-aig-metadata keeps at most {MAX_METADATA_ENTRIES} entries")
    for key, value in metadata.items():
        flat = isinstance(value, str | bool | int) or (
            isinstance(value, float) and math.isfinite(value)
        )
        if not isinstance(key, str) or not flat:
            raise TypeError(f"cf-aig-metadata values must be strings, numbers or booleans ({key})")
    return json.dumps(dict(metadata)) if metadata else None


@dataclass(frozen=True)
class GatewayResponse:
    """What the gateway says about a request, read from the response headers."""

    log_id: str | None  # the log entry (cf-aig-log-id), e.g. to add feedback
    cache_status: str | None  # HIT or MISS (cf-aig-cache-status)

    @property
    def cache_hit(self) -> bool:
        return (self.cache_status or "").upper() == "HIT"

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> GatewayResponse:
        lowered = {name.lower(): value for name, value in headers.items()}
        return cls(lowered.get("cf-aig-log-id"), lowered.get("cf-aig-cache-status"))
