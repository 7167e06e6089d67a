"""Who is calling, and within which limits: the callers of ``callers.toml``.

Each ``[callers.<name>]`` has a key of its own, kept only as its SHA-256 (``key_sha256``, or
a list of them while a key is rotated), and optional ``models``, ``max_tokens`` and
``requests_per_minute``. SERVICE_API_KEY alone is the caller ``default``; a
``[callers.default]`` table (without a hash) gives it limits. The file is read once, at
start-up: one that is not valid stops the service with one line naming the rule.

The rate limit is the ``limits`` library's sliding window counter, kept in this process's
memory, or in Redis when RATE_LIMIT_STORAGE_URL is set, so that several processes share one
count.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import math
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ApiError

NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
SHA256_HEX = re.compile(r"[0-9a-f]{64}")
FIELDS = ("key_sha256", "models", "max_tokens", "requests_per_minute")
MAX_TOKENS_LIMIT = 1_000_000  # the largest max_tokens /chat takes
STORAGE_TIMEOUT_SECONDS = 2.0  # one answer from Redis, connecting included
WINDOW_SECONDS = 60  # requests_per_minute


class CallersError(Exception):
    """callers.toml is not valid; the message names the file and the rule."""


@dataclass(frozen=True)
class Caller:
    name: str
    models: tuple[str, ...] = ()  # empty: every model of ALLOWED_MODELS
    max_tokens: int | None = None
    requests_per_minute: int | None = None

    def allows(self, model: str) -> bool:
        return not self.models or model in self.models


ANONYMOUS = Caller("anonymous")  # caller_auth none: no limits from callers.toml


@dataclass(frozen=True)
class Callers:
    """The callers' hashes and ``default`` (SERVICE_API_KEY's caller)."""

    hashes: tuple[tuple[bytes, Caller], ...] = ()
    default: Caller = Caller("default")

    def find(self, key: str) -> Caller | None:
        """The caller whose hash is sha256(key), comparing every hash in constant time
        (no early return: how long it takes says nothing about which one matched)."""
        digest = hashlib.sha256(key.encode()).digest()
        found = None
        for known, caller in self.hashes:
            if hmac.compare_digest(digest, known):
                found = caller
        return found


def load_callers(path: Path, allowed_models: Iterable[str]) -> Callers:
    """The callers of ``path`` (none when it does not exist), or CallersError."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Callers()
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise CallersError(f"{path}: cannot be read: {error}") from None
    return parse_callers(data, tuple(allowed_models), str(path))


def parse_callers(data: Mapping[str, Any], allowed: tuple[str, ...], source: str) -> Callers:
    unknown = sorted(set(data) - {"callers"})
    if unknown:
        raise CallersError(f"{source}: unknown table {unknown[0]!r} (only [callers.<name>])")
    tables = data.get("callers", {})
    if not isinstance(tables, dict):
        raise CallersError(f"{source}: callers must be tables: [callers.<name>]")
    hashes: dict[bytes, str] = {}
    found: list[tuple[bytes, Caller]] = []
    default = Caller("default")
    for name, table in tables.items():
        caller, digests = _caller(name, table, allowed, source)
        for digest in digests:
            if digest in hashes:
                other = hashes[digest]
                raise CallersError(
                    f"{source}: callers.{name}: a key_sha256 also used by callers.{other}"
                )
            hashes[digest] = name
            found.append((digest, caller))
        if name == "default":
            default = caller
    return Callers(tuple(found), default)


def _caller(
    name: str, table: Any, allowed: tuple[str, ...], source: str
) -> tuple[Caller, list[bytes]]:
    where = f"{source}: callers.{name}"
    if not NAME.fullmatch(name):
        raise CallersError(f"{where}: a name is 1 to 64 of a-z 0-9 _ -, not starting with _ -")
    if not isinstance(table, dict):
        raise CallersError(f"{where} must be a table")
    unknown = sorted(set(table) - set(FIELDS))
    if unknown:
        raise CallersError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(FIELDS)})")
    digests = _hashes(where, name, table.get("key_sha256"))
    models = table.get("models", [])
    if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
        raise CallersError(f"{where}.models must be a list of model names")
    for model in models:
        if model not in allowed:
            raise CallersError(f"{where}.models: {model!r} is not in ALLOWED_MODELS")
    caller = Caller(
        name,
        tuple(models),
        _count(where, table, "max_tokens", MAX_TOKENS_LIMIT),
        _count(where, table, "requests_per_minute", None),
    )
    return caller, digests


def _hashes(where: str, name: str, value: Any) -> list[bytes]:
    if name == "default":
        if value is not None:
            raise CallersError(
                f"{where}.key_sha256: default's key is SERVICE_API_KEY; remove the hash"
            )
        return []
    values = value if isinstance(value, list) else [value]
    if value is None or not values:
        raise CallersError(f"{where}: key_sha256 is missing (the SHA-256 of its key)")
    digests = []
    for one in values:
        if not isinstance(one, str) or not SHA256_HEX.fullmatch(one.lower()):
            raise CallersError(f"{where}.key_sha256: not 64 hex characters (a SHA-256)")
        digest = bytes.fromhex(one)
        if digest in digests:
            raise CallersError(f"{where}.key_sha256: the same hash is listed twice")
        digests.append(digest)
    return digests


def _count(where: str, table: Mapping[str, Any], key: str, most: int | None) -> int | None:
    value = table.get(key)
    if value is None:
        return None
    too_big = most is not None and isinstance(value, int) and value > most
    if isinstance(value, bool) or not isinstance(value, int) or value < 1 or too_big:
        upper = f" to {most}" if most else " or more"
        raise CallersError(f"{where}.{key} must be a whole number from 1{upper}")
    return value


class RateLimiter:
    """requests_per_minute per caller over the last 60 seconds, counted in memory, or in
    Redis (``storage_url``) so that every process of the service shares it. Counters are
    named by service and caller, so services may share one Redis.

    A sliding window counter: this minute's count plus the last minute's, weighted by how
    much of it is still inside the window. Two counters per caller in either storage, and a
    fraction of the moving window's cost per request (which keeps one entry per request and
    expires them through a thread in memory)."""

    def __init__(self, service: str, storage_url: str | None = None) -> None:
        from limits.aio.strategies import SlidingWindowCounterRateLimiter
        from limits.storage import storage_from_string

        if storage_url:
            storage = storage_from_string(
                f"async+{storage_url}",
                implementation="redispy",
                socket_timeout=STORAGE_TIMEOUT_SECONDS,
                socket_connect_timeout=STORAGE_TIMEOUT_SECONDS,
            )
        else:
            storage = storage_from_string("async+memory://")
        self.service = service
        self._storage: Any = storage  # async memory or Redis: both count sliding windows
        self._limiter = SlidingWindowCounterRateLimiter(storage)
        self._deadline = STORAGE_TIMEOUT_SECONDS * 2 if storage_url else None
        self._items: dict[int, Any] = {}

    async def hit(self, caller: Caller) -> None:
        """Count one request of ``caller``, or 429 with Retry-After when over its rate."""
        per_minute = caller.requests_per_minute
        if per_minute is None:
            return
        item = self._item(per_minute)
        try:
            async with asyncio.timeout(self._deadline):
                if await self._limiter.hit(item, self.service, caller.name):
                    return
                counts = await self._storage.get_sliding_window(
                    item.key_for(self.service, caller.name), WINDOW_SECONDS
                )
        except Exception:  # Redis down or slow: refuse rather than let everyone through
            raise ApiError(
                503, "the rate limit storage did not answer (RATE_LIMIT_STORAGE_URL)"
            ) from None
        # whole seconds, strictly after: at the very moment, the window is still full
        wait = math.floor(seconds_until_room(per_minute, *counts)) + 1
        retry_after = min(max(wait, 1), WINDOW_SECONDS)
        raise ApiError(
            429,
            f'caller "{caller.name}" is over its limit of {per_minute} requests per minute',
            {"retry-after": str(retry_after)},
        )

    def _item(self, per_minute: int) -> Any:
        if per_minute not in self._items:
            from limits import RateLimitItemPerMinute

            self._items[per_minute] = RateLimitItemPerMinute(per_minute)
        return self._items[per_minute]


def seconds_until_room(
    limit: int, previous: int, previous_ttl: float, current: int, current_ttl: float
) -> float:
    """When one more request fits the sliding window counter again, from its counts and
    their storage TTLs. A request goes through while previous * weight + current < limit;
    the weight (how much of the previous minute is still inside the window) is
    previous_ttl / 60, falling to 0 as this minute ends, current_ttl - 60 seconds from now."""
    room = limit - current
    if room > 0 and previous:  # this minute: the previous minute weighs less and less
        return previous_ttl - room * WINDOW_SECONDS / previous
    # this minute is full: once it ends, it is the previous minute and its weight falls
    return current_ttl - WINDOW_SECONDS * limit / max(current, 1)


METADATA_CLASH = 'gateway.metadata may not set "caller" or "service": the service sets them'
METADATA_TOO_MANY = (
    "gateway.metadata may have at most 3 keys: the service adds caller and service "
    "(the gateway allows 5)"
)
IDENTITY_KEYS = ("caller", "service")


def identity_metadata(
    caller: Caller, service: str, metadata: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The cf-aig-metadata to send: who is calling, set here, then the caller's own keys."""
    own = dict(metadata or {})
    if any(key in own for key in IDENTITY_KEYS):
        raise ApiError(400, METADATA_CLASH)
    if len(own) > 5 - len(IDENTITY_KEYS):
        raise ApiError(400, METADATA_TOO_MANY)
    return {"caller": caller.name, "service": service, **own}


def capped_max_tokens(caller: Caller, asked: int | None) -> int | None:
    """What to send as max_tokens: the request's, within the caller's cap; none asked:
    the cap."""
    cap = caller.max_tokens
    if cap is not None and asked is not None and asked > cap:
        raise ApiError(
            400,
            f'max_tokens {asked} is over caller "{caller.name}"\'s cap of {cap} '
            "(callers.toml max_tokens)",
        )
    return asked if asked is not None else cap


def check_model(caller: Caller, model: str) -> None:
    if not caller.allows(model):
        raise ApiError(
            400, f'model "{model}" is not allowed for caller "{caller.name}" (callers.toml models)'
        )
