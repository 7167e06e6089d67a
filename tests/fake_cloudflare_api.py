"""A loopback stand-in for the Cloudflare v4 AI Gateway API, for tests.

    with FakeCloudflareAPI() as api:
        env = {"CLOUDFLARE_API_BASE_URL": api.base_url, "CLOUDFLARE_API_TOKEN": api.token}
        ...
        assert [r.method for r in api.requests] == ["GET", "POST"]

It follows the Cloudflare v4 OpenAPI spec (cloudflare/api-schemas ``openapi.yaml``, tag
"AI Gateway Gateways": operations aig-config-list-gateway, aig-config-create-gateway,
aig-config-fetch-gateway, aig-config-update-gateway, aig-config-delete-gateway) on
``/client/v4/accounts/{account}/ai-gateway/gateways[/{id}]``:

- the ``{success, errors, messages, result}`` envelope; each error is ``{code, message}``
  plus ``path`` (validation) or ``documentation_url`` (forbidden);
- validation errors: 400, code 7001, ``path`` naming the field (required keys, types,
  ``rate_limiting_technique`` optional and nullable, null allowed for ``cache_ttl`` and the
  rate limits, the gateway id pattern ``^[a-z0-9_]+(?:-[a-z0-9_]+)*$`` and 1-64 characters,
  read-only fields refused);
- a missing gateway: 404, code 7002; an unknown token: 401, code 10000; a read-only token
  on a write: 403, code 10000 with ``documentation_url``;
- PUT REPLACES the whole configuration: a setting the body leaves out goes back to its
  default (the behaviour the CLI must survive: it reads, merges, then writes);
- DELETE answers with the deleted gateway;
- lists of at most 100 per page (``page``, ``per_page``, ``result_info``; an empty page past
  the end);
- injectable faults (status + body + headers, e.g. 429 with Retry-After, 5xx, non-JSON
  bodies; or a delay for timeouts).

Every request is logged (method, path, query, headers, JSON body, time).
"""
from __future__ import annotations

import json
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

ACCOUNT_ID = "0123456789abcdef0123456789abcdef"
TOKEN = "fake-token-sekrit-7f3a9c"          # AI Gateway Read + Edit
READ_ONLY_TOKEN = "fake-readonly-token-42b1"  # AI Gateway Read only
PREFIX = "/client/v4/accounts/"

# What the tests expect on the wire for the template's default answers.
GATEWAYS = f"{PREFIX}{ACCOUNT_ID}/ai-gateway/gateways"
LIST = ("GET", f"{GATEWAYS}?page=1&per_page=100")
SETTINGS = {  # ai-gateway.toml's settings with the default answers, as create/update send them
    "cache_ttl": 0,
    "cache_invalidate_on_update": True,
    "collect_logs": True,
    "rate_limiting_interval": 60,
    "rate_limiting_limit": 100,
    "rate_limiting_technique": "fixed",
    "authentication": True,
}

# Required keys of create and update, and whether null is allowed.
REQUIRED = {
    "cache_invalidate_on_update": (bool, False),
    "collect_logs": (bool, False),
    "cache_ttl": (int, True),
    "rate_limiting_interval": (int, True),
    "rate_limiting_limit": (int, True),
}
GATEWAY_ID_RE = re.compile(r"[a-z0-9_]+(?:-[a-z0-9_]+)*")
READ_ONLY = ("id", "account_id", "account_tag", "internal_id", "created_at", "modified_at",
             "is_default")
# What a new gateway has for the optional settings a body leaves out (and what PUT resets
# them to, since it replaces the whole configuration).
DEFAULTS = {"authentication": False, "log_management": None, "log_management_strategy": None,
            "logpush": False, "logpush_public_key": None, "rate_limiting_technique": None,
            "workers_ai_billing_mode": "postpaid"}
FORBIDDEN_DOCS = "https://developers.cloudflare.com/fundamentals/api/reference/permissions/"


@dataclass
class Request:
    method: str
    path: str
    query: dict
    headers: dict
    body: object
    at: float

    @property
    def is_write(self) -> bool:
        return self.method in ("POST", "PUT", "PATCH", "DELETE")


@dataclass
class Fault:
    """Answer matching requests with this instead of the normal response (``times`` times)."""

    method: str | None = None      # None: any method
    path_suffix: str | None = None  # e.g. "/gateways" or "/gateways/demo-gw"
    status: int = 500
    body: object = None            # dict -> JSON envelope; str/bytes -> sent raw
    headers: dict = field(default_factory=dict)
    delay: float = 0.0             # sleep before answering (then answer normally if status==0)
    times: int = 1
    apply: bool = False            # carry the request out, then answer with the fault anyway

    def matches(self, method: str, path: str) -> bool:
        return ((self.method is None or self.method == method)
                and (self.path_suffix is None or path.endswith(self.path_suffix)))


def envelope(result=None, errors=(), success=None, result_info=None) -> dict:
    env = {"success": not errors if success is None else success,
           "errors": list(errors), "messages": [], "result": result}
    if result_info is not None:
        env["result_info"] = result_info
    return env


class FakeCloudflareAPI:
    def __init__(self, token: str = TOKEN, read_only_token: str = READ_ONLY_TOKEN,
                 max_per_page: int = 100, result_info: bool = True):
        self.token = token
        self.read_only_token = read_only_token
        self.max_per_page = max_per_page
        self.result_info = result_info
        self.gateways: dict = {}   # account_id -> {gateway_id: gateway}
        self.requests: list = []
        self.faults: list = []
        self._lock = threading.Lock()
        self._server = None
        self._thread = None

    # ------------------------------------------------------------ control
    def start(self) -> "FakeCloudflareAPI":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _handle(self):
                fake._dispatch(self)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/client/v4"

    def add_fault(self, **kwargs) -> Fault:
        fault = Fault(**kwargs)
        with self._lock:
            self.faults.append(fault)
        return fault

    def seed(self, account_id: str = ACCOUNT_ID, **gateway) -> dict:
        """Put a gateway in place as if it had been created earlier."""
        gw = self._new_gateway(account_id, gateway)
        self.gateways.setdefault(account_id, {})[gw["id"]] = gw
        return gw

    def writes(self) -> list:
        return [r for r in self.requests if r.is_write]

    def calls(self) -> list:
        """(method, path[?query]) of every request, in order."""
        out = []
        for r in self.requests:
            q = "&".join(f"{k}={v}" for k, v in sorted(r.query.items()))
            out.append((r.method, r.path + (f"?{q}" if q else "")))
        return out

    # ------------------------------------------------------------ serving
    def _new_gateway(self, account_id: str, fields: dict) -> dict:
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
        gw = {"id": fields["id"], "account_id": account_id, "account_tag": account_id,
              "internal_id": f"int-{fields['id']}", "created_at": now, "modified_at": now,
              "is_default": False, **DEFAULTS}
        gw.update(fields)
        return gw

    def _dispatch(self, h: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(h.path)
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        with self._lock:
            self.requests.append(Request(h.command, parts.path, query, dict(h.headers.items()),
                                         body, time.monotonic()))
            fault = next((f for f in self.faults if f.times > 0
                          and f.matches(h.command, parts.path)), None)
            if fault:
                fault.times -= 1
        if fault:
            if fault.delay:
                time.sleep(fault.delay)
            if fault.apply:
                self._route(h.command, parts.path, query, h.headers, body)
            if fault.status:
                return self._send(h, fault.status, fault.body, fault.headers)
        status, payload = self._route(h.command, parts.path, query, h.headers, body)
        self._send(h, status, payload)

    def _send(self, h, status: int, payload, headers: dict | None = None) -> None:
        if isinstance(payload, (dict, list)):
            data, ctype = json.dumps(payload).encode(), "application/json"
        elif isinstance(payload, str):
            data, ctype = payload.encode(), "text/html; charset=utf-8"
        elif isinstance(payload, bytes):
            data, ctype = payload, "application/octet-stream"
        else:
            data, ctype = b"", "text/plain"
        try:
            h.send_response(status)
            h.send_header("Content-Type", ctype)
            h.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                h.send_header(key, value)
            h.end_headers()
            h.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout test)

    @staticmethod
    def _err(status: int, code: int, message: str, **extra):
        return status, envelope(None, [{"code": code, "message": message, **extra}])

    def _invalid(self, message: str, path: str):
        return self._err(400, 7001, message, path=[path])

    def _route(self, method, path, query, headers, body):
        if not path.startswith(PREFIX):
            return self._err(404, 7000, "No route for that URI")
        rest = path[len(PREFIX):].split("/")
        if len(rest) < 3 or rest[1:3] != ["ai-gateway", "gateways"] or len(rest) > 4:
            return self._err(404, 7000, "No route for that URI")
        account_id = rest[0]
        gateway_id = rest[3] if len(rest) == 4 else None
        auth = headers.get("Authorization", "")
        if auth == f"Bearer {self.read_only_token}":
            if method != "GET":
                return self._err(403, 10000, "Authentication error",
                                 documentation_url=FORBIDDEN_DOCS)
        elif auth != f"Bearer {self.token}":
            return self._err(401, 10000, "Authentication error")
        with self._lock:
            gws = self.gateways.setdefault(account_id, {})
            if gateway_id is None and method == "GET":
                return self._list(gws, query)
            if gateway_id is None and method == "POST":
                return self._create(account_id, gws, body)
            if gateway_id is None:
                return self._err(405, 10405, "Method not allowed")
            gw = gws.get(gateway_id)
            if gw is None:
                return self._err(404, 7002, "Not Found")
            if method == "GET":
                return 200, envelope(gw)
            if method == "PUT":
                return self._update(gw, body)
            if method == "DELETE":
                del gws[gateway_id]
                return 200, envelope(gw)
            return self._err(405, 10405, "Method not allowed")

    def _list(self, gws, query):
        try:
            page = int(query.get("page", 1))
            per_page = int(query.get("per_page", 20))
        except ValueError:
            return self._invalid("Expected a number", "page")
        if page < 1:
            return self._invalid("Too small: expected number to be >=1", "page")
        if not 1 <= per_page <= 100:
            return self._invalid("Expected a number from 1 to 100", "per_page")
        per_page = min(per_page, self.max_per_page)
        items = sorted(gws.values(), key=lambda g: g["id"])
        chunk = items[(page - 1) * per_page: page * per_page]
        info = {"page": page, "per_page": per_page, "count": len(chunk),
                "total_count": len(items)}
        return 200, envelope(chunk, result_info=info if self.result_info else None)

    @staticmethod
    def _check(body, read_only=()) -> tuple | None:
        """(message, path) of the first validation problem, or None."""
        if not isinstance(body, dict):
            return "Expected object, received " + type(body).__name__, ""
        for key, (kind, nullable) in REQUIRED.items():
            if key not in body:
                return "Required", key
            value = body[key]
            if value is None:
                if not nullable:
                    return "Expected " + kind.__name__ + ", received null", key
                continue
            if isinstance(value, bool) != (kind is bool) or not isinstance(value, kind):
                return f"Expected {kind.__name__}, received {type(value).__name__}", key
            if kind is int and value < 0:
                return "Too small: expected number to be >=0", key
        if body.get("rate_limiting_technique") not in (None, "fixed", "sliding"):
            return "Invalid option: expected one of \"fixed\"|\"sliding\"", \
                "rate_limiting_technique"
        for key in read_only:
            if key in body:
                return "Unrecognized key: " + key, key
        return None

    def _create(self, account_id, gws, body):
        problem = self._check(body, READ_ONLY[1:])
        if problem:
            return self._invalid(*problem)
        gid = body.get("id")
        if not isinstance(gid, str) or not 1 <= len(gid) <= 64 \
                or not GATEWAY_ID_RE.fullmatch(gid):
            return self._invalid("Invalid string: must match pattern "
                                 "/^[a-z0-9_]+(?:-[a-z0-9_]+)*$/", "id")
        if gid in gws:
            return self._invalid("A gateway with this ID already exists", "id")
        gw = self._new_gateway(account_id, body)
        gws[gw["id"]] = gw
        return 200, envelope(gw)

    def _update(self, gw, body):
        problem = self._check(body, READ_ONLY)
        if problem:
            return self._invalid(*problem)
        # PUT replaces the configuration: what the body leaves out is reset.
        kept = {k: gw[k] for k in READ_ONLY if k in gw}
        gw.clear()
        gw.update({**kept, **DEFAULTS, **body})
        gw["modified_at"] = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
        return 200, envelope(gw)


class DrippingServer:
    """Accepts connections and answers one byte per second, forever: the slowest server."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.connections = 0
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/client/v4"

    def _serve(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn):
        with conn:
            for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 1000:
                if self.stop.wait(1.0):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return

    def close(self):
        self.stop.set()
        self.sock.close()
