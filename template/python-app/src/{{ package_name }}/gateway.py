"""The gateway: its URLs, its authentication, its per-request options, and the HTTP rules
every client in this package follows, whatever its SDK.

- Redirects are never followed: the gateway token, a provider key and the prompt go to the
  configured gateway and nowhere else. A 3xx answer raises GatewayRedirect (with its Location).
- A successful answer must be JSON or server-sent events: anything else (an HTML login page,
  say) raises UnexpectedAnswer instead of being passed on.
- An answer is read up to MAX_UPSTREAM_BYTES (raw bytes, streamed or not), then AnswerTooLarge.
- Headers an SDK insists on making (its ``Authorization`` from a placeholder key) are dropped
  before the request leaves, through httpx's public event hooks.

Per-request options (Cloudflare AI Gateway docs: features/caching, configuration/
request-handling, observability/custom-metadata, observability/logging, configuration/
bring-your-own-keys)::

    options = GatewayOptions(cache_ttl=3600, metadata={"user": "u-42"}, max_attempts=3)
    raw = client.chat.completions.with_raw_response.create(
        model=..., messages=..., extra_headers=options.headers()
    )
    info = GatewayResponse.from_headers(raw.headers)  # log id, cache status
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, field_validator
from pydantic.alias_generators import to_camel

from .errors import GatewayRedirect, UnexpectedAnswer
from .settings import Settings
from .streaming import bounded_transport

EXPECTED_MEDIA_TYPES = ("application/json", "text/event-stream")
CACHE_TTL_MAX = 30 * 24 * 3600  # one month; the shortest cache is 60 s
MAX_HEADER_VALUE = 256  # characters of one header value (printable ASCII)
MAX_METADATA_HEADER = 1024  # characters of the serialized cf-aig-metadata header
# The SDKs refuse to start without a key. Where the gateway supplies the key, they get this
# placeholder, and the header made from it is dropped on the way out.
KEYLESS_PLACEHOLDER = "sent-by-the-gateway"


def is_header_text(value: str) -> bool:
    """1 to 256 printable ASCII characters (0x20-0x7E): safe as a header value."""
    return 0 < len(value) <= MAX_HEADER_VALUE and all(" " <= c <= "~" for c in value)


def _header_text(option: str, value: str | None) -> str | None:
    if value is not None and not is_header_text(value):
        raise ValueError(f'gateway option "{option}" must be 1 to 256 printable ASCII characters')
    return value


MetadataValue = StrictStr | StrictBool | StrictInt | float
METADATA_MESSAGE = (
    'gateway option "metadata" must have keys and values of 1 to 256 printable ASCII characters'
)


class GatewayOptions(BaseModel):
    """Per-request gateway settings; None leaves the gateway's own setting in force.

    Field names in Python, camelCase in JSON (``cacheTtl``), as in the Worker.
    """

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )

    cache_ttl: StrictInt | None = Field(None, ge=60, le=CACHE_TTL_MAX)  # cf-aig-cache-ttl
    skip_cache: StrictBool = False  # bypass the cache for this request (cf-aig-skip-cache)
    cache_key: StrictStr | None = None  # custom cache key (cf-aig-cache-key)
    metadata: dict[StrictStr, MetadataValue] | None = Field(None, max_length=5)  # cf-aig-metadata
    request_timeout_ms: StrictInt | None = Field(None, ge=1)  # cf-aig-request-timeout
    max_attempts: StrictInt | None = Field(None, ge=1, le=5)  # tries in all (cf-aig-max-attempts)
    retry_delay_ms: StrictInt | None = Field(None, ge=0, le=5000)  # cf-aig-retry-delay
    backoff: Literal["constant", "linear", "exponential"] | None = None  # cf-aig-backoff
    collect_log: StrictBool | None = None  # log this request or not (cf-aig-collect-log)
    collect_log_payload: StrictBool | None = None  # False: no bodies in logs
    zdr: StrictBool | None = None  # zero data retention at the provider (cf-aig-zdr)
    byok_alias: StrictStr | None = None  # which stored BYOK key to use (cf-aig-byok-alias)
    event_id: StrictStr | None = None  # your id, to find this request in logs (cf-aig-event-id)

    @field_validator("cache_key", "byok_alias", "event_id")
    @classmethod
    def _printable(cls, value: str | None, info: Any) -> str | None:
        return _header_text(to_camel(info.field_name), value)

    @field_validator("metadata")
    @classmethod
    def _flat_metadata(cls, metadata: dict[str, Any] | None) -> dict[str, Any] | None:
        for key, value in (metadata or {}).items():
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError('gateway option "metadata" takes finite numbers only')
            if not is_header_text(key) or (isinstance(value, str) and not is_header_text(value)):
                raise ValueError(METADATA_MESSAGE)
        if metadata and len(json.dumps(metadata)) > MAX_METADATA_HEADER:
            raise ValueError(METADATA_MESSAGE)
        return metadata

    def headers(self) -> dict[str, str]:
        """The request headers to send (pass as ``extra_headers`` to any SDK call)."""
        values = {
            "cf-aig-cache-ttl": self.cache_ttl,
            "cf-aig-skip-cache": True if self.skip_cache else None,
            "cf-aig-cache-key": self.cache_key,
            "cf-aig-metadata": json.dumps(self.metadata) if self.metadata else None,
            "cf-aig-request-timeout": self.request_timeout_ms,
            "cf-aig-max-attempts": self.max_attempts,
            "cf-aig-retry-delay": self.retry_delay_ms,
            "cf-aig-backoff": self.backoff,
            "cf-aig-collect-log": self.collect_log,
            "cf-aig-collect-log-payload": self.collect_log_payload,
            "cf-aig-zdr": self.zdr,
            "cf-aig-byok-alias": self.byok_alias,
            "cf-aig-event-id": self.event_id,
        }
        return {name: _header(value) for name, value in values.items() if value is not None}


def _header(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


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


def check_answer(response: Any) -> None:
    status, headers = response.status_code, response.headers
    log_id = headers.get("cf-aig-log-id")
    if 300 <= status < 400:
        raise GatewayRedirect(status, headers.get("location"), log_id)
    if 200 <= status < 300:
        media_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type not in EXPECTED_MEDIA_TYPES:
            raise UnexpectedAnswer(status, media_type, log_id)


async def _check_answer_async(response: Any) -> None:
    check_answer(response)


def http_client(settings: Settings, drop_headers: Iterable[str], http: ModuleType) -> Any:
    """The async client an SDK gets: these rules, the pool limits, keep-alive. ``http`` is
    the httpx package the SDK is built on (``sdk_http``); this module imports none itself, so
    a project whose SDKs all use httpx2 needs no httpx installed."""
    drop = tuple(drop_headers)

    async def drop_async(request: Any) -> None:
        for name in drop:
            request.headers.pop(name, None)

    hooks: dict[str, list] = {"response": [_check_answer_async], "request": [drop_async]}
    return http.AsyncClient(**_client_options(settings, http), event_hooks=hooks)


def sdk_http(client_class: type) -> ModuleType:
    """The httpx package an SDK's client class is built on: httpx, or its fork httpx2."""
    for base in client_class.__mro__:
        module = sys.modules.get(base.__module__.partition(".")[0])
        if module is not None and base in (
            getattr(module, "AsyncClient", None),
            getattr(module, "Client", None),
        ):
            return module
    raise TypeError(f"{client_class.__qualname__} is not an httpx or httpx2 client class")


def sync_http_client(settings: Settings, drop_headers: Iterable[str], http: ModuleType) -> Any:
    """The same rules for a sync client (``create_client``)."""
    drop = tuple(drop_headers)

    def drop_sync(request: Any) -> None:
        for name in drop:
            request.headers.pop(name, None)

    options = _client_options(settings, http, sync=True)
    return http.Client(**options, event_hooks={"response": [check_answer], "request": [drop_sync]})


def _client_options(settings: Settings, http: ModuleType, sync: bool = False) -> dict[str, Any]:
    limits = http.Limits(
        max_connections=settings.upstream_max_connections,
        max_keepalive_connections=settings.upstream_max_keepalive,
    )
    transport = bounded_transport(http, settings.max_upstream_bytes, limits, sync=sync)
    timeout = http.Timeout(settings.request_timeout, connect=min(settings.request_timeout, 10))
    return {"transport": transport, "follow_redirects": False, "timeout": timeout}


def gateway_url(settings: Settings) -> str:
    """``{base}/{account}/{gateway}``: append a provider path to call it."""
    account = settings.require_account_id()
    return f"{settings.base_url.rstrip('/')}/{account}/{settings.gateway_id}"


def provider_url(settings: Settings, provider: str) -> str:
    """Where a provider's own SDK points: ``{gateway}/{provider}``."""
    return f"{gateway_url(settings)}/{provider}"


def rest_api_url(settings: Settings, endpoint: str) -> str:
    """An AI REST API endpoint (``{api}/accounts/{account}/...``), as the provider table has it."""
    api = settings.api_base_url.rstrip("/")
    return endpoint.format(api=api, account=settings.require_account_id())


def gateway_token(settings: Settings, why: str) -> str:
    return settings.secret(
        "CF_AIG_TOKEN",
        f"{why}. Create a Cloudflare API token with the permission 'AI Gateway: Run'",
    )


def gateway_headers(settings: Settings) -> dict[str, str]:
    """Headers every request to the gateway carries (its authentication)."""
    if not settings.gateway_authentication:
        return {}
    token = gateway_token(settings, "the gateway is authenticated")
    return {"cf-aig-authorization": f"Bearer {token}"}
