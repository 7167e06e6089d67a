"""A loopback stand-in for the Cloudflare v4 AI Gateway API, for tests.

    with FakeCloudflareAPI() as api:
        env = {"CLOUDFLARE_API_BASE_URL": api.base_url, "CLOUDFLARE_API_TOKEN": api.token}
        ...
        assert [r.method for r in api.requests] == ["GET", "POST"]

It follows the Cloudflare v4 API's AI Gateway operations as the spec extract in
``tests/cloudflare/ai-gateway-openapi.json`` has them (see its README) on
``/client/v4/accounts/{account}/ai-gateway/gateways[/{id}[/routes[/{id}[/versions|
/deployments]]|/provider_configs]]``:

- the ``{success, errors, messages, result}`` envelope; each error is ``{code, message}``
  plus ``path`` (validation) or ``documentation_url`` (forbidden);
- every request body is validated against the extract's schema for its operation
  (jsonschema ``Draft202012Validator``, ``$ref`` resolved in the extract): what it refuses is
  400, code 7001, ``path`` naming the field; what it allows is accepted (an unknown key
  too: the extract does not forbid them). "Already exists" is 400 7001 at ``id``;
- dynamic routes: a POST makes the route, its first version and a deployment; a new version
  is deployed by POSTing its ``version_id`` to ``deployments`` (the answers have the SDK's
  shapes: ``{data: {routes}}`` lists, a version answer without ``version_id``);
- stored keys (``provider_configs``): create and list only, as in the extract; the secret is
  kept aside, the answers carry ``secret_preview``;
- log feedback: PATCH ``.../gateways/{id}/logs/{log_id}`` (``feedback``, ``score``,
  ``metadata``) is kept in ``log_feedback[(gateway id, log id)]``, answered ``{result: {}}``;
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
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012

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

EXTRACT = Path(__file__).parent / "cloudflare" / "ai-gateway-openapi.json"
SPEC = json.loads(EXTRACT.read_text(encoding="utf-8"))
SPEC_URI = "urn:cloudflare:ai-gateway-openapi"
REGISTRY = Registry().with_resource(SPEC_URI, DRAFT202012.create_resource(SPEC))
READ_ONLY = ("id", "account_id", "account_tag", "internal_id", "created_at", "modified_at",
             "is_default")


def _operation(method: str, path: str) -> tuple[str, dict] | None:
    """(template, operation) of the extract that serves METHOD path (no /client/v4 prefix)."""
    parts = path.strip("/").split("/")
    for template, ops in SPEC["paths"].items():
        pattern = template.strip("/").split("/")
        if len(pattern) == len(parts) and method.lower() in ops and all(
                p.startswith("{") or p == q for p, q in zip(pattern, parts, strict=True)):
            return template, ops[method.lower()]
    return None


def body_problems(method: str, path: str, body) -> list[tuple[str, list]]:
    """(message, path) for each way `body` breaks the extract's request schema of the operation
    at METHOD path (``/accounts/...``), in the order jsonschema finds them."""
    found = _operation(method, path)
    if found is None or "requestBody" not in found[1]:
        return []
    template, op = found
    pointer = "/".join(["#/paths", template.replace("~", "~0").replace("/", "~1"), method.lower(),
                        "requestBody/content/application~1json/schema"])
    validator = Draft202012Validator({"$ref": SPEC_URI + pointer}, registry=REGISTRY)
    problems = []
    for error in sorted(validator.iter_errors(body), key=lambda e: list(e.path)):
        where = [str(p) for p in error.absolute_path]
        if error.validator == "required":
            where.append(error.message.split("'")[1])
        problems.append((error.message, where))
    return problems


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
    status: int = 0  # what the fake answered


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
        self.log_feedback: dict = {}  # (gateway id, log id) -> the feedback PATCHed
        self.stored_secrets: dict = {}  # (gateway id, alias) -> the secret a key was stored with
        self._serial = 0
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
            request = Request(h.command, parts.path, query, dict(h.headers.items()), body,
                              time.monotonic())
            self.requests.append(request)
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
                request.status = fault.status
                return self._send(h, fault.status, fault.body, fault.headers)
        status, payload = self._route(h.command, parts.path, query, h.headers, body)
        request.status = status
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
        rest = [unquote(p) for p in path[len(PREFIX):].split("/")]
        if len(rest) < 3 or rest[1:3] != ["ai-gateway", "gateways"] or len(rest) > 7 \
                or _operation(method, "/accounts/" + "/".join(rest)) is None:
            return self._err(404, 7000, "No route for that URI")
        account_id, ids = rest[0], rest[3:]
        auth = headers.get("Authorization", "")
        if auth == f"Bearer {self.read_only_token}":
            if method != "GET":
                return self._err(403, 10000, "Authentication error",
                                 documentation_url=FORBIDDEN_DOCS)
        elif auth != f"Bearer {self.token}":
            return self._err(401, 10000, "Authentication error")
        problems = body_problems(method, "/accounts/" + "/".join(rest), body)
        if problems:
            return self._err(400, 7001, problems[0][0], path=problems[0][1])
        with self._lock:
            gws = self.gateways.setdefault(account_id, {})
            if not ids:
                return self._list(gws, query) if method == "GET" else \
                    self._create(account_id, gws, body)
            gw = gws.get(ids[0])
            if gw is None:
                return self._err(404, 7002, "Not Found")
            if len(ids) > 1:
                return self._gateway_part(method, gw, ids[1:], body, query)
            if method == "GET":
                return 200, envelope(self.public(gw))
            if method == "PUT":
                return self._update(gw, body)
            del gws[ids[0]]
            return 200, envelope(self.public(gw))

    def _list(self, gws, query):
        status, page = self._page([self.public(g) for g in sorted(gws.values(),
                                                                  key=lambda g: g["id"])], query)
        if status != 200:
            return status, page
        items, info = page
        return 200, envelope(items, result_info=info if self.result_info else None)

    def _page(self, items: list, query: dict):
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
        chunk = items[(page - 1) * per_page: page * per_page]
        return 200, (chunk, {"page": page, "per_page": per_page, "count": len(chunk),
                             "total_count": len(items)})

    def _create(self, account_id, gws, body):
        if body["id"] in gws:
            return self._invalid("A gateway with this ID already exists", "id")
        gw = self._new_gateway(account_id, body)
        gws[gw["id"]] = gw
        return 200, envelope(gw)

    def _update(self, gw, body):
        # PUT replaces the configuration: what the body leaves out is reset.
        kept = {k: gw[k] for k in READ_ONLY if k in gw}
        private = {k: gw[k] for k in ("routes", "provider_configs") if k in gw}
        gw.clear()
        gw.update({**kept, **DEFAULTS, **{k: v for k, v in body.items() if k != "id"},
                   **private})
        gw["modified_at"] = _now()
        return 200, envelope(self.public(gw))

    # ------------------------------------------------------------ routes and stored keys
    # Kept inside the gateway under "routes" / "provider_configs"; never shown in its answers.
    @staticmethod
    def public(gw: dict) -> dict:
        return {k: v for k, v in gw.items() if k not in ("routes", "provider_configs")}

    def _log_part(self, gw, log_id, body):
        """PATCH a log's feedback: merged into what earlier PATCHes set."""
        key = (gw["id"], log_id)
        self.log_feedback[key] = {**self.log_feedback.get(key, {}), **(body or {})}
        return 200, envelope({})

    def _gateway_part(self, method, gw, ids, body, query):
        if ids[0] == "logs" and method == "PATCH" and len(ids) == 2:
            return self._log_part(gw, ids[1], body)
        if ids[0] == "provider_configs":
            keys = gw.setdefault("provider_configs", [])
            if method == "POST":
                keys.append(self._new_key(gw, body))
                return 200, envelope(keys[-1])
            status, page = self._page(keys, query)
            return (status, page) if status != 200 else \
                (200, envelope(page[0], result_info=page[1]))
        routes = gw.setdefault("routes", {})
        if len(ids) == 1:
            if method == "POST":
                return 200, envelope(self._new_route(gw, body))
            status, page = self._page(sorted(routes.values(), key=lambda r: r["created_at"]),
                                      query)
            return (status, page) if status != 200 else \
                (200, envelope({"data": {"routes": page[0], "order_by": "created_at",
                                         "order_by_direction": "asc",
                                         "page": page[1]["page"],
                                         "per_page": page[1]["per_page"]}, "success": True}))
        route = routes.get(ids[1])
        if route is None:
            return self._err(404, 7002, "Not Found")
        return self._route_part(method, route, ids[2:], body)

    def _route_part(self, method, route, ids, body):
        shown = {k: v for k, v in route.items() if k != "versions"}
        if not ids:
            if method == "DELETE":
                del self.gateways[route["account_tag"]][route["gateway_id"]]["routes"][route["id"]]
            elif method == "PATCH":
                route["name"] = body["name"]
            return 200, envelope(shown if method != "PATCH" else {"route": shown,
                                                                  "success": True})
        listing = {"order_by": "created_at", "order_by_direction": "desc", "page": 1,
                   "per_page": 100}
        if ids == ["versions"] and method == "POST":
            self._new_version(route, body["elements"])
            return 200, envelope({k: shown[k] for k in ("id", "created_at", "elements",
                                                        "gateway_id", "modified_at", "name")})
        if ids == ["versions"]:
            return 200, envelope({"data": {**listing, "versions": [
                {k: v for k, v in version.items() if k != "elements"}
                for version in route["versions"]]}, "success": True})
        if ids == ["deployments"] and method == "POST":
            version = next((v for v in route["versions"] if v["version_id"] == body["version_id"]),
                           None)
            if version is None:
                return self._invalid("No such version", "version_id")
            self._deploy(route, version)
            return 200, envelope({k: route[k] for k in ("id", "created_at", "elements",
                                                        "gateway_id", "modified_at", "name")})
        if ids == ["deployments"]:
            return 200, envelope({"data": {**listing, "deployments": [route["deployment"]]},
                                  "success": True})
        return self._err(405, 10405, "Method not allowed")

    def _new_route(self, gw, body) -> dict:
        self._serial += 1
        route = {"id": f"route-{self._serial:04d}", "account_tag": gw["account_id"],
                 "gateway_id": gw["id"], "name": body["name"], "created_at": _now(),
                 "versions": []}
        gw["routes"][route["id"]] = route
        self._deploy(route, self._new_version(route, body["elements"]))
        return {k: v for k, v in route.items() if k != "versions"}

    def _new_version(self, route, elements) -> dict:
        self._serial += 1
        version = {"version_id": f"version-{self._serial:04d}", "active": "false",
                   "created_at": _now(), "data": json.dumps(elements), "elements": elements}
        route["versions"].append(version)
        route["modified_at"] = _now()
        return version

    def _deploy(self, route, version) -> None:
        self._serial += 1
        for other in route["versions"]:
            other["active"] = "true" if other is version else "false"
        route["deployment"] = {"deployment_id": f"deployment-{self._serial:04d}",
                               "version_id": version["version_id"], "created_at": _now()}
        route["version"] = {k: v for k, v in version.items() if k != "elements"}
        route["elements"] = version["elements"]
        route["modified_at"] = _now()

    def _new_key(self, gw, body) -> dict:
        self._serial += 1
        secret = body.get("secret")
        if secret is not None:
            self.stored_secrets[(gw["id"], body["alias"])] = secret
        return {"id": f"key-{self._serial:04d}", "gateway_id": gw["id"], "modified_at": _now(),
                "alias": body["alias"], "provider_slug": body["provider_slug"],
                "default_config": body["default_config"],
                "secret_id": body.get("secret_id") or f"secret-{self._serial:04d}",
                "secret_preview": (secret or "")[:2] + "****",
                "rate_limit": body.get("rate_limit"),
                "rate_limit_period": body.get("rate_limit_period")}


def _now() -> str:
    """A timestamp that sorts in creation order (microseconds)."""
    micros = time.time_ns() // 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(micros / 1e6)) + f".{micros % 10**6:06d}Z"



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
