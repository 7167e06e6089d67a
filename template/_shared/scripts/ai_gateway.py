#!/usr/bin/env python3
"""Manage this project's Cloudflare AI Gateway(s) as code.

The gateways are described in ``ai-gateway.toml`` at the project root (one table per
environment). This script talks to the Cloudflare v4 API:

    python3 scripts/ai_gateway.py sync [--env NAME] [--dry-run]   # make Cloudflare match the file
    python3 scripts/ai_gateway.py list                             # every gateway of the account
    python3 scripts/ai_gateway.py get [ID] [--env NAME]
    python3 scripts/ai_gateway.py create [--env NAME]
    python3 scripts/ai_gateway.py update [--env NAME]
    python3 scripts/ai_gateway.py delete [ID] [--env NAME] [--yes]

Environment:
    CLOUDFLARE_API_TOKEN (or CF_API_TOKEN)   API token with "AI Gateway Read" (reads) and
                                             "AI Gateway Edit" (writes); never printed
    CLOUDFLARE_ACCOUNT_ID                    account; wins over account_id in the settings file
    CLOUDFLARE_API_BASE_URL                  default https://api.cloudflare.com/client/v4
    AI_GATEWAY_TIMEOUT                       seconds per HTTP call (default 30; --timeout)
    AI_GATEWAY_RETRY_BASE_DELAY              first retry delay in seconds (default 1)

Exit codes: 0 done, 1 the API call failed, 2 usage or settings error (bad arguments,
unreadable settings file, no token or account id), 130 interrupted.

Python 3.9+ and the standard library only: the Worker target (Node) can run it too.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import socket
import ssl
import sys
import time
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import quote, urlencode, urlsplit

DEFAULT_API_BASE_URL = "https://api.cloudflare.com/client/v4"
# The project root is the folder above scripts/: the default settings file lives there,
# whatever the current directory is.
PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = PROJECT_ROOT / "ai-gateway.toml"

# Fields the v4 API requires on create (POST); update (PUT) takes the same minus `id`.
# (cloudflare SDK: AIGatewayCreateParams / AIGatewayUpdateParams.)
REQUIRED_SETTINGS = (
    "cache_invalidate_on_update",
    "cache_ttl",
    "collect_logs",
    "rate_limiting_interval",
    "rate_limiting_limit",
    "rate_limiting_technique",
)
BOOL_SETTINGS = ("cache_invalidate_on_update", "collect_logs", "authentication")
INT_SETTINGS = ("cache_ttl", "rate_limiting_interval", "rate_limiting_limit")
TECHNIQUES = ("fixed", "sliding")
GATEWAY_ID_RE = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?\Z")
ACCOUNT_ID_RE = re.compile(r"^[0-9a-fA-F]{32}\Z")
# The API returns null for an unset optional number or flag; treat it like the "off" value
# so that a gateway whose API state is null does not look drifted forever.
NULL_EQUIVALENT = {"cache_ttl": 0, "rate_limiting_interval": 0, "rate_limiting_limit": 0,
                   "authentication": False}

EXIT_OK, EXIT_API, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
MAX_RETRY_AFTER = 60.0  # seconds: a longer Retry-After is capped at this
LIST_PER_PAGE = 50
MAX_PAGES = 200

TOKEN_HELP = (
    "create an API token (Cloudflare dashboard > My Profile > API Tokens > Create Token > "
    "Custom token, permissions Account > AI Gateway > Read and Edit) and export it as "
    "CLOUDFLARE_API_TOKEN (or CF_API_TOKEN)"
)

# Secret values that must never reach the terminal (filled with the API token).
_SECRETS: list = []


def redact(text: str) -> str:
    text = str(text)
    for secret in _SECRETS:
        if secret:
            text = text.replace(secret, "***")
    return text


def out(text: str = "") -> None:
    print(redact(text), flush=True)


def note(text: str) -> None:
    print(redact(text), file=sys.stderr, flush=True)


class CliError(Exception):
    """A failure that ends the run with one line on stderr and an exit code."""

    def __init__(self, message: str, code: int = EXIT_API):
        super().__init__(message)
        self.message = message
        self.exit_code = code


class ApiError(CliError):
    def __init__(self, message: str, status: int | None = None, error_code=None):
        super().__init__(message, EXIT_API)
        self.status = status
        self.error_code = error_code


# ---------------------------------------------------------------- settings file (TOML)

def _toml_string(text: str, pos: int, lineno: int):
    """Parse a basic ("...") or literal ('...') string starting at text[pos]."""
    quote_char = text[pos]
    i = pos + 1
    buf = []
    escapes = {"b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r", '"': '"', "\\": "\\"}
    while i < len(text):
        ch = text[i]
        if ch == quote_char:
            return "".join(buf), i + 1
        if ch == "\\" and quote_char == '"':
            nxt = text[i + 1:i + 2]
            if nxt in escapes:
                buf.append(escapes[nxt])
                i += 2
                continue
            if nxt in ("u", "U"):
                width = 4 if nxt == "u" else 8
                digits = text[i + 2:i + 2 + width]
                if len(digits) != width or not re.fullmatch(r"[0-9a-fA-F]+", digits):
                    raise ValueError(f"line {lineno}: bad \\{nxt} escape")
                buf.append(chr(int(digits, 16)))
                i += 2 + width
                continue
            raise ValueError(f"line {lineno}: unknown escape \\{nxt}")
        buf.append(ch)
        i += 1
    raise ValueError(f"line {lineno}: unterminated string")


_NUMBER_RE = re.compile(r"[+-]?(\d[\d_]*)(\.\d[\d_]*)?([eE][+-]?\d+)?")


def _toml_value(text: str, pos: int, lineno: int):
    ch = text[pos:pos + 1]
    if ch in ('"', "'"):
        if text[pos:pos + 3] in ('"""', "'''"):
            raise ValueError(f"line {lineno}: multi-line strings are not supported")
        return _toml_string(text, pos, lineno)
    if text.startswith("true", pos) and not re.match(r"[\w-]", text[pos + 4:pos + 5] or " "):
        return True, pos + 4
    if text.startswith("false", pos) and not re.match(r"[\w-]", text[pos + 5:pos + 6] or " "):
        return False, pos + 5
    if ch == "[":
        items = []
        pos += 1
        while True:
            while pos < len(text) and text[pos] in " \t":
                pos += 1
            if text[pos:pos + 1] == "]":
                return items, pos + 1
            value, pos = _toml_value(text, pos, lineno)
            items.append(value)
            while pos < len(text) and text[pos] in " \t":
                pos += 1
            if text[pos:pos + 1] == ",":
                pos += 1
            elif text[pos:pos + 1] != "]":
                raise ValueError(f"line {lineno}: expected , or ] in array")
    match = _NUMBER_RE.match(text, pos)
    if match and match.group(0):
        token = match.group(0).replace("_", "")
        if match.group(2) or match.group(3):
            return float(token), match.end()
        return int(token), match.end()
    raise ValueError(f"line {lineno}: unsupported value {text[pos:].strip()[:30]!r}")


def _toml_key(text: str, lineno: int) -> list:
    """Split a (possibly dotted, possibly quoted) key into its parts."""
    parts = []
    pos = 0
    text = text.strip()
    while True:
        while pos < len(text) and text[pos] in " \t":
            pos += 1
        if pos < len(text) and text[pos] in ('"', "'"):
            part, pos = _toml_string(text, pos, lineno)
        else:
            match = re.compile(r"[A-Za-z0-9_-]+").match(text, pos)
            if not match:
                raise ValueError(f"line {lineno}: bad key {text!r}")
            part, pos = match.group(0), match.end()
        parts.append(part)
        while pos < len(text) and text[pos] in " \t":
            pos += 1
        if pos == len(text):
            return parts
        if text[pos] != ".":
            raise ValueError(f"line {lineno}: bad key {text!r}")
        pos += 1


def parse_toml_subset(text: str) -> dict:
    """The TOML this settings file uses, for Pythons without tomllib (before 3.11).

    Supports comments, [tables] (dotted, quoted parts), key = value with basic and literal
    strings, integers, floats, booleans and one-line arrays. Anything else is an error.
    """
    root: dict = {}
    table = root
    defined = set()
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[["):
            raise ValueError(f"line {lineno}: arrays of tables are not supported")
        if line.startswith("["):
            end = line.find("]")
            rest = line[end + 1:].strip() if end >= 0 else ""
            if end < 0 or (rest and not rest.startswith("#")):
                raise ValueError(f"line {lineno}: bad table header")
            parts = _toml_key(line[1:end], lineno)
            if tuple(parts) in defined:
                raise ValueError(f"line {lineno}: table [{'.'.join(parts)}] defined twice")
            defined.add(tuple(parts))
            table = root
            for part in parts:
                table = table.setdefault(part, {})
                if not isinstance(table, dict):
                    raise ValueError(f"line {lineno}: {part!r} is not a table")
            continue
        key_text, sep, _ = line.partition("=")
        if not sep:
            raise ValueError(f"line {lineno}: expected key = value")
        keys = _toml_key(key_text, lineno)
        pos = raw.index("=") + 1
        while pos < len(raw) and raw[pos] in " \t":
            pos += 1
        value, end = _toml_value(raw, pos, lineno)
        rest = raw[end:].strip()
        if rest and not rest.startswith("#"):
            raise ValueError(f"line {lineno}: unexpected text after the value: {rest[:30]!r}")
        target = table
        for part in keys[:-1]:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise ValueError(f"line {lineno}: {part!r} is not a table")
        if keys[-1] in target:
            raise ValueError(f"line {lineno}: key {keys[-1]!r} defined twice")
        target[keys[-1]] = value
    return root


def parse_toml(text: str) -> dict:
    try:
        import tomllib  # Python 3.11+
    except ImportError:
        return parse_toml_subset(text)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(str(exc)) from None


def load_settings(path: Path) -> dict:
    """Read and check the settings file; returns {"account_id": str, "gateways": {env: {...}}}."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CliError(f"settings file {path} not found: run from the project, or pass "
                       "--config PATH", EXIT_USAGE) from None
    except OSError as exc:
        raise CliError(f"cannot read settings file {path}: {exc.strerror}", EXIT_USAGE) from None
    try:
        data = parse_toml(text)
    except ValueError as exc:
        raise CliError(f"{path} is not valid TOML: {exc}", EXIT_USAGE) from None

    def bad(msg: str):
        return CliError(f"{path}: {msg}", EXIT_USAGE)

    account_id = data.get("account_id", "")
    if not isinstance(account_id, str):
        raise bad("account_id must be a string")
    gateways = data.get("gateways")
    if not isinstance(gateways, dict) or not gateways:
        raise bad("no [gateways.<environment>] table")
    for env, gw in gateways.items():
        where = f"[gateways.{env}]"
        if not isinstance(gw, dict):
            raise bad(f"gateways.{env} must be a table")
        gid = gw.get("id")
        if not isinstance(gid, str) or not GATEWAY_ID_RE.match(gid) or len(gid) > 64:
            raise bad(f"{where} id must be 1 to 64 lowercase letters, digits and hyphens, not "
                      f"starting or ending with a hyphen (got {json.dumps(gid)})")
        for key in REQUIRED_SETTINGS:
            if key not in gw:
                raise bad(f"{where} is missing {key} (the API requires it)")
        for key in BOOL_SETTINGS:
            if key in gw and not isinstance(gw[key], bool):
                raise bad(f"{where} {key} must be true or false (got {json.dumps(gw[key])})")
        for key in INT_SETTINGS:
            value = gw[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise bad(f"{where} {key} must be a whole number >= 0 (got {json.dumps(value)})")
        if gw["rate_limiting_technique"] not in TECHNIQUES:
            raise bad(f"{where} rate_limiting_technique must be \"fixed\" or \"sliding\" "
                      f"(got {json.dumps(gw['rate_limiting_technique'])})")
    ids = [gw["id"] for gw in gateways.values()]
    if len(set(ids)) != len(ids):
        raise bad("two environments use the same gateway id")
    return {"account_id": account_id, "gateways": gateways, "path": path}


def desired_body(gw: dict, with_id: bool) -> dict:
    """The JSON body for create (with id) or update (without): every key of the table."""
    body = {k: v for k, v in gw.items() if k != "id"}
    if with_id:
        body = {"id": gw["id"], **body}
    return body


def same_value(key: str, current, wanted) -> bool:
    if current is None and key in NULL_EQUIVALENT:
        current = NULL_EQUIVALENT[key]
    if isinstance(wanted, bool) or isinstance(current, bool):
        return current is wanted
    return current == wanted


def drift(current: dict, gw: dict) -> dict:
    """{setting: (current, wanted)} for every managed setting that differs."""
    return {key: (current.get(key), wanted)
            for key, wanted in desired_body(gw, with_id=False).items()
            if not same_value(key, current.get(key), wanted)}


# ---------------------------------------------------------------- HTTP client

class Api:
    """The Cloudflare v4 AI Gateway endpoints, with timeouts, retries and clear errors."""

    def __init__(self, base_url: str, token: str, account_id: str, timeout: float,
                 attempts: int, base_delay: float, verbose: bool):
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.account_id = account_id
        self.timeout = timeout
        self.attempts = max(1, attempts)
        self.base_delay = max(0.0, base_delay)
        self.verbose = verbose
        self.ambiguous = False  # the last write may have reached the API before it failed
        self.requests = 0  # HTTP requests sent (retries included)
        self.writes = 0    # successful POST/PUT/DELETE

    def _url(self, gateway_id: str | None = None, query: dict | None = None) -> str:
        url = f"{self.base_url}/accounts/{quote(self.account_id, safe='')}/ai-gateway/gateways"
        if gateway_id is not None:
            url += "/" + quote(gateway_id, safe="")
        if query:
            url += "?" + urlencode(query)
        return url

    def _send_once(self, method: str, url: str, body: bytes | None):
        """One HTTP exchange: (status, reason, headers, body bytes). No redirects followed."""
        parts = urlsplit(url)
        if parts.scheme == "https":
            conn = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=self.timeout,
                                               context=ssl.create_default_context())
        elif parts.scheme == "http":
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=self.timeout)
        else:
            raise CliError(f"CLOUDFLARE_API_BASE_URL must start with https:// (got "
                           f"{self.base_url!r})", EXIT_USAGE)
        headers = {
            "Authorization": f"Bearer {self.token}",
            "Accept": "application/json",
            "User-Agent": "ai-gateway-starter/ai_gateway.py",
        }
        if body is not None:
            headers["Content-Type"] = "application/json"
        path = parts.path + ("?" + parts.query if parts.query else "")
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.reason, resp.headers, resp.read()
        finally:
            conn.close()

    def _delay(self, attempt: int) -> float:
        """Exponential backoff with jitter: base * 2^(attempt-1), between half and all of it."""
        ceiling = self.base_delay * (2 ** (attempt - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def request(self, method: str, what: str, gateway_id: str | None = None,
                query: dict | None = None, body: dict | None = None, write: bool = False):
        """Send one API call (retrying what is worth retrying); returns the parsed envelope."""
        url = self._url(gateway_id, query)
        data = json.dumps(body).encode() if body is not None else None
        permission = "AI Gateway Edit" if write else "AI Gateway Read"
        self.ambiguous = False
        attempt = 0
        while True:
            attempt += 1
            last = attempt >= self.attempts
            if self.verbose:
                note(f"> {method} {url}" + (f" (attempt {attempt}/{self.attempts})"
                                             if attempt > 1 else ""))
            started = time.monotonic()
            self.requests += 1
            try:
                status, reason, headers, raw = self._send_once(method, url, data)
            except (socket.timeout, TimeoutError):
                self.ambiguous = self.ambiguous or write
                problem = f"no answer within {self.timeout:g}s"
                if last:
                    raise ApiError(f"{what} failed: {problem} (after {attempt} attempts). "
                                   "Check your network, or raise --timeout / AI_GATEWAY_TIMEOUT, "
                                   "then retry") from None
                self._wait(self._delay(attempt), problem, attempt)
                continue
            except (ConnectionError, OSError, http.client.HTTPException) as exc:
                if isinstance(exc, ssl.SSLCertVerificationError):
                    raise ApiError(f"{what} failed: TLS certificate check failed for "
                                   f"{urlsplit(url).hostname}: {exc.verify_message}. "
                                   "Check CLOUDFLARE_API_BASE_URL and any proxy") from None
                self.ambiguous = self.ambiguous or (write and not isinstance(
                    exc, ConnectionRefusedError))
                problem = f"connection error ({type(exc).__name__}: {exc})"
                if last:
                    raise ApiError(f"{what} failed: {problem} talking to {self.base_url} "
                                   f"(after {attempt} attempts). Check your network and "
                                   "CLOUDFLARE_API_BASE_URL, then retry") from None
                self._wait(self._delay(attempt), problem, attempt)
                continue
            if self.verbose:
                note(f"< {status} {reason} ({time.monotonic() - started:.2f}s)")

            envelope = None
            try:
                envelope = json.loads(raw.decode("utf-8")) if raw else None
            except (UnicodeDecodeError, ValueError):
                envelope = None
            if envelope is not None and not isinstance(envelope, dict):
                envelope = None

            if status == 429 or status >= 500:
                if status >= 500:
                    self.ambiguous = self.ambiguous or write
                retry_after = _retry_after(headers.get("Retry-After"))
                label = f"HTTP {status}" + (" (rate limited)" if status == 429 else "")
                if last:
                    if status == 429:
                        todo = "Wait a minute, then retry"
                    else:
                        todo = ("Cloudflare's API is failing: retry later "
                                "(https://www.cloudflarestatus.com)")
                    raise ApiError(f"{what} failed: {label}{_describe(envelope, raw, headers)} "
                                   f"after {attempt} attempts. {todo}", status,
                                   _first_code(envelope)) from None
                delay = self._delay(attempt)
                if status == 429 and retry_after is not None:
                    delay = max(delay, retry_after)
                self._wait(delay, label + (f", Retry-After {retry_after:g}s"
                                           if retry_after is not None else ""), attempt)
                continue

            if envelope is None:
                ctype = headers.get("Content-Type", "no content type")
                raise ApiError(f"{what} failed: the API answered HTTP {status} with a body that "
                               f"is not a JSON envelope ({ctype}: {_snippet(raw)!r}). Check "
                               "CLOUDFLARE_API_BASE_URL (a proxy or captive portal?)", status)
            if 200 <= status < 300 and envelope.get("success") is not False:
                if write:
                    self.writes += 1
                return envelope
            raise self._error(what, status, envelope, raw, headers, permission, gateway_id)

    def _wait(self, delay: float, problem: str, attempt: int) -> None:
        note(f"  {problem}; retrying in {delay:.1f}s (attempt {attempt + 1} of "
             f"{self.attempts})")
        time.sleep(delay)

    def _error(self, what, status, envelope, raw, headers, permission, gateway_id) -> ApiError:
        detail = _describe(envelope, raw, headers)
        code = _first_code(envelope)
        if status in (401, 403):
            todo = (f"Check that CLOUDFLARE_API_TOKEN (or CF_API_TOKEN) is a valid token with "
                    f"the \"{permission}\" permission for account {self.account_id} (dashboard "
                    "> My Profile > API Tokens)")
        elif status == 404 and gateway_id is not None:
            todo = (f"Gateway {json.dumps(gateway_id)} does not exist in account "
                    f"{self.account_id}: create it with `python3 scripts/ai_gateway.py sync`, or "
                    "check the id and CLOUDFLARE_ACCOUNT_ID")
        elif status == 404:
            todo = (f"Check the account id ({self.account_id}: CLOUDFLARE_ACCOUNT_ID or "
                    "account_id in ai-gateway.toml) and CLOUDFLARE_API_BASE_URL")
        elif 400 <= status < 500:
            todo = "Check the settings in ai-gateway.toml against the API's message"
        else:
            todo = "Retry later"
        return ApiError(f"{what} failed: HTTP {status}{detail}. {todo}", status, code)


def _retry_after(value) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _first_code(envelope):
    errors = (envelope or {}).get("errors") or []
    if errors and isinstance(errors[0], dict):
        return errors[0].get("code")
    return None


def _snippet(raw: bytes, limit: int = 80) -> str:
    text = raw.decode("utf-8", "replace")
    return " ".join(text.split())[:limit]


def _describe(envelope, raw, headers) -> str:
    """', Cloudflare error 10000: Authentication error' from the envelope, or a body snippet."""
    if envelope is None:
        if not raw:
            return ""
        ctype = headers.get("Content-Type", "no content type")
        return f" (non-JSON body, {ctype}: {_snippet(raw)!r})"
    errors = envelope.get("errors") or []
    parts = []
    for err in errors[:3]:
        if isinstance(err, dict):
            code = err.get("code")
            msg = err.get("message", "")
            parts.append(f"Cloudflare error {code}: {msg}" if code is not None else str(msg))
        else:
            parts.append(str(err))
    return (", " + "; ".join(parts)) if parts else ""


# ---------------------------------------------------------------- API operations

def list_gateways(api: Api) -> list:
    """Every gateway of the account, following pages."""
    gateways: list = []
    page = 1
    while page <= MAX_PAGES:
        env = api.request("GET", "listing the gateways", query={"page": page,
                                                                 "per_page": LIST_PER_PAGE})
        items = env.get("result") or []
        if not isinstance(items, list):
            raise ApiError("listing the gateways failed: the API's result is not a list")
        gateways.extend(items)
        info = env.get("result_info") or {}
        per_page = info.get("per_page") or LIST_PER_PAGE
        total_count = info.get("total_count")
        total_pages = info.get("total_pages")
        if not items:
            break
        if isinstance(total_count, int):
            if len(gateways) >= total_count:
                break
        elif isinstance(total_pages, int):
            if page >= total_pages:
                break
        elif len(items) < per_page:
            break
        page += 1
    return gateways


def get_gateway(api: Api, gateway_id: str) -> dict:
    return api.request("GET", f"reading gateway {json.dumps(gateway_id)}",
                       gateway_id=gateway_id).get("result") or {}


def create_gateway(api: Api, env: str, gw: dict) -> dict:
    what = f"creating gateway {json.dumps(gw['id'])} ({env})"
    try:
        return api.request("POST", what, body=desired_body(gw, with_id=True),
                           write=True).get("result") or {}
    except ApiError as exc:
        # A timed-out or 5xx create may still have happened: then its retry fails with
        # "already exists". Look before reporting an error.
        if api.ambiguous and exc.status is not None and 400 <= exc.status < 500:
            try:
                current = get_gateway(api, gw["id"])
            except ApiError:
                raise exc from None
            if current and not drift(current, gw):
                note(f"  {gw['id']}: the first attempt went through; the gateway exists")
                api.writes += 1
                return current
        raise


def update_gateway(api: Api, env: str, gw: dict) -> dict:
    return api.request("PUT", f"updating gateway {json.dumps(gw['id'])} ({env})",
                       gateway_id=gw["id"], body=desired_body(gw, with_id=False),
                       write=True).get("result") or {}


def delete_gateway(api: Api, gateway_id: str) -> dict:
    return api.request("DELETE", f"deleting gateway {json.dumps(gateway_id)}",
                       gateway_id=gateway_id, write=True).get("result") or {}


# ---------------------------------------------------------------- output

SUMMARY_COLUMNS = ("id", "authentication", "cache_ttl", "rate_limiting_limit",
                   "rate_limiting_interval", "rate_limiting_technique", "collect_logs",
                   "modified_at")
HEADERS = {"id": "ID", "authentication": "AUTH", "cache_ttl": "CACHE_TTL",
           "rate_limiting_limit": "LIMIT", "rate_limiting_interval": "PER_SECONDS",
           "rate_limiting_technique": "WINDOW", "collect_logs": "LOGS",
           "modified_at": "MODIFIED"}


def fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return json.dumps(value)


def print_table(rows: list, columns: list) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(columns)]
    out("  ".join(h.ljust(w) for h, w in zip(columns, widths)).rstrip())
    for row in rows:
        out("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())


def print_gateway(gw: dict) -> None:
    keys = sorted(gw, key=lambda k: (k != "id", k))
    width = max(len(k) for k in keys) if keys else 0
    for key in keys:
        out(f"{key.ljust(width)}  {fmt(gw[key])}")


def print_json(data) -> None:
    out(json.dumps(data, indent=2, sort_keys=False))


# ---------------------------------------------------------------- commands

def resolve_token(required: bool = True) -> str:
    token = (os.environ.get("CLOUDFLARE_API_TOKEN") or os.environ.get("CF_API_TOKEN") or "")
    token = token.strip()
    if token:
        _SECRETS.append(token)
        if re.search(r"[^\x21-\x7e]", token):
            raise CliError("the API token contains spaces or control characters: copy it "
                           "again into CLOUDFLARE_API_TOKEN", EXIT_USAGE)
    elif required:
        raise CliError(f"no Cloudflare API token: {TOKEN_HELP}", EXIT_USAGE)
    return token


def resolve_account(settings: dict | None) -> tuple:
    """(account_id, where it came from): CLOUDFLARE_ACCOUNT_ID wins over the settings file."""
    env_value = os.environ.get("CLOUDFLARE_ACCOUNT_ID", "").strip()
    if env_value:
        account, source = env_value, "CLOUDFLARE_ACCOUNT_ID"
    elif settings and settings["account_id"]:
        account, source = settings["account_id"], settings["path"].name
    else:
        raise CliError("no Cloudflare account id: set CLOUDFLARE_ACCOUNT_ID or account_id in "
                       "ai-gateway.toml (dashboard > Overview > Account ID)", EXIT_USAGE)
    if not ACCOUNT_ID_RE.match(account):
        raise CliError(f"the account id from {source} must be 32 hex characters (got "
                       f"{json.dumps(account)})", EXIT_USAGE)
    return account, source


def make_api(args, account_id: str, token: str) -> Api:
    base_url = os.environ.get("CLOUDFLARE_API_BASE_URL", "").strip() or DEFAULT_API_BASE_URL
    return Api(base_url, token, account_id, timeout=args.timeout, attempts=args.attempts,
               base_delay=_env_float("AI_GATEWAY_RETRY_BASE_DELAY", 1.0),
               verbose=getattr(args, "verbose", False))


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise CliError(f"{name} must be a number of seconds (got {raw!r})", EXIT_USAGE) from None
    if value < 0:
        raise CliError(f"{name} must be 0 or more seconds (got {raw!r})", EXIT_USAGE)
    return value


def pick_env(settings: dict, env: str | None, command: str) -> str:
    envs = list(settings["gateways"])
    if env is None:
        if len(envs) == 1:
            return envs[0]
        raise CliError(f"{command}: several environments ({', '.join(envs)}): choose one with "
                       "--env NAME", EXIT_USAGE)
    if env not in settings["gateways"]:
        raise CliError(f"unknown environment {env!r}: ai-gateway.toml has "
                       f"{', '.join(envs)}", EXIT_USAGE)
    return env


def cmd_list(args, settings) -> int:
    token = resolve_token()
    account, _ = resolve_account(settings)
    api = make_api(args, account, token)
    gateways = list_gateways(api)
    if args.json:
        print_json(gateways)
        return EXIT_OK
    if not gateways:
        out(f"no gateways in account {account}")
        return EXIT_OK
    rows = [[fmt(gw.get(c)) for c in SUMMARY_COLUMNS] for gw in gateways]
    print_table(rows, [HEADERS[c] for c in SUMMARY_COLUMNS])
    return EXIT_OK


def _target_id(args, settings) -> tuple:
    if getattr(args, "gateway_id", None):
        if args.env:
            raise CliError("give a gateway id or --env, not both", EXIT_USAGE)
        return args.gateway_id, None
    env = pick_env(settings, args.env, args.command)
    return settings["gateways"][env]["id"], env


def cmd_get(args, settings) -> int:
    gid, _ = _target_id(args, settings)
    token = resolve_token()
    account, _ = resolve_account(settings)
    gw = get_gateway(make_api(args, account, token), gid)
    print_json(gw) if args.json else print_gateway(gw)
    return EXIT_OK


def cmd_create(args, settings) -> int:
    env = pick_env(settings, args.env, "create")
    token = resolve_token()
    account, _ = resolve_account(settings)
    api = make_api(args, account, token)
    try:
        gw = create_gateway(api, env, settings["gateways"][env])
    except ApiError as exc:
        if exc.status in (400, 409):
            exc.message += (". If the gateway already exists, use `update` or `sync` "
                            "instead")
        raise
    return report_written(args, "created", gw, settings["gateways"][env], env)


def report_written(args, verb: str, gw: dict, wanted: dict, env: str) -> int:
    """What create and update print: the gateway as the API returned it."""
    if args.json:
        print_json(gw)
    else:
        out(f"{verb} gateway {gw.get('id', wanted['id'])} ({env})")
        print_gateway(gw)
    return EXIT_OK


def cmd_update(args, settings) -> int:
    env = pick_env(settings, args.env, "update")
    token = resolve_token()
    account, _ = resolve_account(settings)
    gw = update_gateway(make_api(args, account, token), env, settings["gateways"][env])
    return report_written(args, "updated", gw, settings["gateways"][env], env)


def cmd_delete(args, settings) -> int:
    gid, env = _target_id(args, settings)
    token = resolve_token()
    account, _ = resolve_account(settings)
    label = f"gateway {json.dumps(gid)}" + (f" ({env})" if env else "")
    if not args.yes:
        if not sys.stdin.isatty():
            raise CliError(f"refusing to delete {label} without confirmation: there is no "
                           "terminal to ask; pass --yes to delete anyway", EXIT_USAGE)
        print(f"Delete {label} in account {account}? Its settings and logs are lost.",
              file=sys.stderr)
        print(f"Type the gateway id ({gid}) to confirm: ", end="", file=sys.stderr, flush=True)
        answer = sys.stdin.readline().strip()
        if not sys.stderr.isatty():
            print(file=sys.stderr)  # the terminal echoed the answer elsewhere: end the line
        if answer != gid:
            raise CliError(f"not deleted: the answer did not match {gid!r}", EXIT_API)
    result = delete_gateway(make_api(args, account, token), gid)
    if args.json:
        print_json(result or {"id": gid, "deleted": True})
    else:
        out(f"deleted {label}")
    return EXIT_OK


def cmd_sync(args, settings) -> int:
    envs = list(settings["gateways"]) if args.env is None else [pick_env(settings, args.env,
                                                                         "sync")]
    token = resolve_token(required=not args.dry_run)
    if not token:
        return _offline_plan(args, settings, envs)
    account, source = resolve_account(settings)
    api = make_api(args, account, token)
    existing = {gw.get("id"): gw for gw in list_gateways(api)}  # the one read

    plan = []
    for env in envs:
        gw = settings["gateways"][env]
        current = existing.get(gw["id"])
        if current is None:
            plan.append({"env": env, "id": gw["id"], "action": "create", "changes": {}})
        else:
            changes = drift(current, gw)
            plan.append({"env": env, "id": gw["id"],
                         "action": "update" if changes else "unchanged",
                         "changes": {k: {"old": o, "new": n} for k, (o, n) in changes.items()}})

    if not args.json:
        out(f"account {account} (from {source})" + ("; dry run: nothing is written"
                                                     if args.dry_run else ""))
    done = []
    failure = None
    for item in plan:
        env, gid, action = item["env"], item["id"], item["action"]
        if not args.json:
            verb = {"create": "create" if args.dry_run else "creating",
                    "update": "update" if args.dry_run else "updating",
                    "unchanged": "unchanged (matches ai-gateway.toml)"}[action]
            out(f"{env}: {gid}: {verb}")
            for key, change in item["changes"].items():
                out(f"    {key}: {fmt(change['old'])} -> {fmt(change['new'])}")
        if args.dry_run or action == "unchanged":
            continue
        try:
            if action == "create":
                create_gateway(api, env, settings["gateways"][env])
            else:
                update_gateway(api, env, settings["gateways"][env])
            done.append(gid)
        except ApiError as exc:
            failure = exc
            item["error"] = exc.message
            break  # later environments are left for the next sync
    counts = {a: sum(1 for i in plan if i["action"] == a) for a in ("create", "update",
                                                                       "unchanged")}
    if args.json:
        print_json({"account_id": account, "dry_run": args.dry_run, "compared": True,
                    "gateways": plan, "requests": api.requests, "writes": api.writes})
    elif not failure:
        if args.dry_run:
            out(f"plan: {counts['create']} to create, {counts['update']} to update, "
                f"{counts['unchanged']} unchanged")
        else:
            out(f"sync done: {counts['create']} created, {counts['update']} updated, "
                f"{counts['unchanged']} unchanged ({_count(api.requests, 'API request')}, "
                f"{_count(api.writes, 'write')})")
    if failure:
        if done:
            failure.message += f" (already done: {', '.join(done)})"
        raise failure
    return EXIT_OK


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _offline_plan(args, settings, envs) -> int:
    """sync --dry-run without a token: show what the file asks for, compare nothing."""
    plan = [{"env": env, "id": settings["gateways"][env]["id"],
             "settings": desired_body(settings["gateways"][env], with_id=False)}
            for env in envs]
    if args.json:
        print_json({"account_id": settings["account_id"], "dry_run": True, "compared": False,
                    "gateways": plan, "requests": 0, "writes": 0})
        return EXIT_OK
    out("dry run without an API token: showing ai-gateway.toml, not compared with Cloudflare")
    for item in plan:
        out(f"{item['env']}: {item['id']}")
        for key, value in item["settings"].items():
            out(f"    {key} = {fmt(value)}")
    note(f"To compare with Cloudflare and then sync: {TOKEN_HELP}")
    return EXIT_OK


# ---------------------------------------------------------------- command line

def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, default=argparse.SUPPRESS, metavar="PATH",
                        help="settings file (default: ai-gateway.toml in the project root, "
                             "the folder above scripts/; a relative PATH is from the current "
                             "directory)")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="print JSON for scripts instead of a table")
    common.add_argument("--verbose", "-v", action="store_true", default=argparse.SUPPRESS,
                        help="log each HTTP request (method, URL, status; never the token) "
                             "to stderr")
    common.add_argument("--timeout", type=float, default=argparse.SUPPRESS, metavar="SECONDS",
                        help="timeout of each HTTP call (default: AI_GATEWAY_TIMEOUT or 30)")
    common.add_argument("--attempts", type=int, default=argparse.SUPPRESS, metavar="N",
                        help="tries per API call on 429, 5xx, timeouts and connection "
                             "errors (default 4)")

    parser = argparse.ArgumentParser(
        prog="ai_gateway.py", parents=[common],
        description="Manage this project's Cloudflare AI Gateway(s) from ai-gateway.toml "
                    "through the Cloudflare v4 API. Token: CLOUDFLARE_API_TOKEN (or "
                    "CF_API_TOKEN), account: CLOUDFLARE_ACCOUNT_ID (wins) or the settings "
                    "file, API: CLOUDFLARE_API_BASE_URL (default " + DEFAULT_API_BASE_URL + ").",
        epilog="Exit codes: 0 done, 1 API failure, 2 usage or settings error.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def add(name, help_text, description):
        p = sub.add_parser(name, parents=[common], help=help_text, description=description)
        return p

    env_help = ("environment (a [gateways.NAME] table in the settings file); may be left out "
                "when the file has only one")
    add("list", "list every gateway of the account",
        "List every AI Gateway of the account (all pages).")
    p = add("get", "show one gateway",
            "Show one gateway as Cloudflare has it: ID, or the gateway of --env.")
    p.add_argument("gateway_id", nargs="?", metavar="ID", help="gateway id (default: --env's)")
    p.add_argument("--env", metavar="NAME", help=env_help)
    p = add("create", "create the gateway of an environment",
            "Create the gateway of an environment with the settings from the file (POST). "
            "Fails if it exists: use sync to create or update as needed.")
    p.add_argument("--env", metavar="NAME", help=env_help)
    p = add("update", "overwrite the settings of an environment's gateway",
            "Send the settings from the file to the environment's gateway (PUT).")
    p.add_argument("--env", metavar="NAME", help=env_help)
    p = add("delete", "delete a gateway (asks first)",
            "Delete a gateway: ID, or the gateway of --env. Asks you to type the id unless "
            "--yes; without a terminal it refuses unless --yes.")
    p.add_argument("gateway_id", nargs="?", metavar="ID", help="gateway id (default: --env's)")
    p.add_argument("--env", metavar="NAME", help=env_help)
    p.add_argument("--yes", "-y", action="store_true", help="delete without asking")
    p = add("sync", "create or update the gateways so that they match the file",
            "Read every gateway of the account with one list call, then per environment: "
            "create it if missing, update it if a setting drifted (printing old -> new), "
            "or leave it alone. A repeated sync writes nothing.")
    p.add_argument("--env", metavar="NAME", help="only this environment (default: all)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the plan, write nothing (without a token: show the file)")
    return parser


COMMANDS = {"list": cmd_list, "get": cmd_get, "create": cmd_create, "update": cmd_update,
            "delete": cmd_delete, "sync": cmd_sync}


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.json = getattr(args, "json", False)
    args.verbose = getattr(args, "verbose", False)
    try:
        timeout = getattr(args, "timeout", None)
        args.timeout = timeout if timeout is not None else _env_float("AI_GATEWAY_TIMEOUT", 30.0)
        if args.timeout <= 0:
            raise CliError("--timeout must be more than 0 seconds", EXIT_USAGE)
        args.attempts = getattr(args, "attempts", 4)
        if args.attempts < 1:
            raise CliError("--attempts must be 1 or more", EXIT_USAGE)
        config = getattr(args, "config", None) or DEFAULT_CONFIG
        settings = load_settings(Path(config))
        return COMMANDS[args.command](args, settings)
    except CliError as exc:
        note(f"error: {exc.message}")
        return exc.exit_code
    except KeyboardInterrupt:
        note("error: interrupted; nothing more was sent (run the same command again)")
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug: still one line, never a traceback with the token
        note(f"error: unexpected {type(exc).__name__}: {exc} (please report it; rerun with "
             "--verbose to see which request failed)")
        return EXIT_API


if __name__ == "__main__":
    sys.exit(main())
