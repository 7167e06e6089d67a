"""The gateway's per-request controls, as typed values instead of raw header strings.

    from my_service.gateway_options import GatewayOptions, GatewayResponse

    options = GatewayOptions(cache_ttl=3600, metadata={"user": "u-42"}, max_attempts=3)
    raw = client.chat.completions.with_raw_response.create(
        model=..., messages=..., extra_headers=options.headers()
    )
    info = GatewayResponse.from_headers(raw.headers)  # log id, cache status

Header reference: https://developers.cloudflare.com/ai-gateway/glossary/
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

Backoff = Literal["constant", "linear", "exponential"]
MetadataValue = str | int | float | bool

MAX_METADATA_ENTRIES = 5  # the gateway keeps at most five metadata entries
MAX_ATTEMPTS = 5  # the gateway retries at most five times


@dataclass(frozen=True)
class GatewayOptions:
    """Per-request gateway settings; None leaves the gateway's own setting in force."""

    cache_ttl: int | None = None  # seconds to cache this response (cf-aig-cache-ttl)
    skip_cache: bool = False  # bypass the cache for this request (cf-aig-skip-cache)
    cache_key: str | None = None  # custom cache key (cf-aig-cache-key)
    metadata: Mapping[str, MetadataValue] | None = None  # tags for logs (cf-aig-metadata)
    request_timeout_ms: int | None = None  # give up on the provider after (cf-aig-request-timeout)
    max_attempts: int | None = None  # gateway-side retries, 1-5 (cf-aig-max-attempts)
    retry_delay_ms: int | None = None  # delay between retries (cf-aig-retry-delay)
    backoff: Backoff | None = None  # how the delay grows (cf-aig-backoff)
    collect_log: bool | None = None  # log this request or not (cf-aig-collect-log)
    event_id: str | None = None  # your id, to find this request in logs (cf-aig-event-id)

    def __post_init__(self) -> None:
        if self.metadata is not None and len(self.metadata) > MAX_METADATA_ENTRIES:
            raise ValueError(f"metadata takes at most {MAX_METADATA_ENTRIES} entries")
        if self.max_attempts is not None and not 1 <= self.max_attempts <= MAX_ATTEMPTS:
            raise ValueError(f"max_attempts must be 1 to {MAX_ATTEMPTS}")
        for name in ("cache_ttl", "request_timeout_ms", "retry_delay_ms"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be 0 or more")

    def headers(self) -> dict[str, str]:
        """The request headers to send (pass as ``extra_headers`` to any SDK call)."""
        values: dict[str, str | None] = {
            "cf-aig-cache-ttl": _number(self.cache_ttl),
            "cf-aig-skip-cache": "true" if self.skip_cache else None,
            "cf-aig-cache-key": self.cache_key,
            "cf-aig-metadata": json.dumps(dict(self.metadata)) if self.metadata else None,
            "cf-aig-request-timeout": _number(self.request_timeout_ms),
            "cf-aig-max-attempts": _number(self.max_attempts),
            "cf-aig-retry-delay": _number(self.retry_delay_ms),
            "cf-aig-backoff": self.backoff,
            "cf-aig-collect-log": None
            if self.collect_log is None
            else str(self.collect_log).lower(),
            "cf-aig-event-id": self.event_id,
        }
        return {name: value for name, value in values.items() if value is not None}


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


def _number(value: int | None) -> str | None:
    return None if value is None else str(value)


def _flag(value: bool | None) -> str | None:
    return None if value is None else str(value).lower()


@dataclass(frozen=True)
class ChatReply:
    """A provider's reply: its text in pieces (one piece unless streamed) and the gateway's info."""

    chunks: Iterable[str]
    gateway: GatewayResponse
