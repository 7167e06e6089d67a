"""One HTTP contract, two services: ONE table of cases, run over real HTTP against the rendered
Python service (uvicorn) and the rendered Worker (`wrangler dev --local`), each in front of the
same loopback fake gateway. README.md "HTTP contract (both targets)" is what this checks, and the
contract document each service serves at GET /openapi.json (template/_shared/openapi.json.jinja):
the README's route and status tables are checked against it, and schemathesis runs it against
both services (no 5xx, every answer as the document says).

Each service also runs with a long deadline (LONG_DEADLINE_S) for what must end long before
it: a caller's hang-up closes the upstream answer (counted at the fake gateway), an endless
upstream answer ends at MAX_UPSTREAM_BYTES with the service's memory flat. Every request
writes one JSON log line; its fields are checked, and no canary secret (nor the prompt, nor
a reply) may appear anywhere in a service's output.

Both services are rendered with the same answers (unified-billing, an authenticated gateway,
caller_auth=api-key) and run with the same settings, so every case expects the same answer
from both. The Worker half reuses the "unified-billing" variant of test_worker_target.py
(rendered and npm-installed once per run, in that variant's xdist group).
"""
from __future__ import annotations

import http.client
import json
import os
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import pytest
from conftest import ACCOUNT_ID, render
from testkit import ServiceProcess
from worker_toolchain import VARIANTS, FakeGateway, WranglerDev, free_port

# Canaries: every secret the services are given, and a prompt; none may appear in a log.
SERVICE_KEY = "svc-key-canary-4b1d"
GATEWAY_TOKEN = "tok-gw-canary-93e7"
PROVIDER_KEY = "sk-openai-canary-2c58"  # OPENAI_API_KEY, set though unified-billing never sends it
PROMPT = "canary prompt 7a61"
FEEDBACK_TOKEN = "tok-feedback-canary-0d4e"  # CLOUDFLARE_API_TOKEN, POST /feedback's
CANARIES = (SERVICE_KEY, GATEWAY_TOKEN, PROVIDER_KEY, FEEDBACK_TOKEN, PROMPT, "Hello there")  # last: a reply
DEADLINE_S = 3
LONG_DEADLINE_S = 30  # the hang-up and endless-answer checks: they must end long before it
MAX_UPSTREAM_BYTES = 4194304
KEY = {"authorization": f"Bearer {SERVICE_KEY}"}
JSON = {"content-type": "application/json"}
ANSWERS = VARIANTS["unified-billing"]  # the Worker variant the Worker half runs
GATEWAY_PATH = f"/v1/{ACCOUNT_ID}/demo-gw/openai/chat/completions"
ABSENT = None  # in `headers`: this response header must not be there
ANSWER = {"reply", "model", "usage", "log_id", "cache_status"}

# The exact messages (core spec): the same text from both services.
DEEP = "the request body is nested deeper than 64 levels"
EVENT_ID_HEADER = "header cf-aig-event-id must be 1 to 256 printable ASCII characters"
METADATA = 'gateway option "metadata" must have keys and values of 1 to 256 printable ASCII characters'
TOO_BIG = f"the gateway's answer is larger than {MAX_UPSTREAM_BYTES} bytes (MAX_UPSTREAM_BYTES)"


def printable(option: str) -> str:
    return f'gateway option "{option}" must be 1 to 256 printable ASCII characters'


def body(value) -> bytes:
    return json.dumps(value).encode()


def nested(levels: int) -> bytes:
    """A chat body nested ``levels`` deep: the object is level 1, then arrays in arrays."""
    return b'{"prompt": "ping", "extra": ' + b"[" * (levels - 1) + b"]" * (levels - 1) + b"}"


def with_gateway(options: dict) -> bytes:
    return body({"prompt": "ping", "gateway": options})


@dataclass
class Case:
    """One request and everything its answer must show, in both services."""

    name: str
    method: str
    path: str
    headers: dict[str, str]
    data: bytes | None
    status: int
    keys: set[str]  # the JSON answer's keys (the event names, for a stream)
    error: str = ""  # a substring of "error"
    headers_out: dict[str, str | None] = field(default_factory=dict)
    upstream: int = 0  # requests the fake gateway received
    exact: bool = False  # "error" is exactly `error`, not just containing it
    sent: dict[str, str | None] = field(default_factory=dict)  # headers the gateway must receive


CASES = [
    Case("health needs no key", "GET", "/health", {}, None, 200, {"status", "providers"}),
    Case("no key", "POST", "/chat", JSON, body({"prompt": "ping"}), 401, {"error"},
         "send Authorization: Bearer <SERVICE_API_KEY>", {"www-authenticate": "Bearer"}),
    Case("wrong key", "POST", "/chat", {**JSON, "authorization": "Bearer not-the-key"}, body({"prompt": "ping"}),
         401, {"error"}, "send Authorization: Bearer <SERVICE_API_KEY>", {"www-authenticate": "Bearer"}),
    Case("unknown route without a key: auth comes first", "POST", "/nowhere", JSON, b"{}", 401, {"error"},
         "send Authorization"),
    Case("200 with the key", "POST", "/chat", {**JSON, **KEY}, body({"prompt": PROMPT}), 200, ANSWER, "",
         {"cf-aig-log-id": "LOG1", "content-type": "application/json"}, 1),
    Case("POST /chat/constructor", "POST", "/chat/constructor", {**JSON, **KEY}, body({"prompt": "ping"}), 404,
         {"error"}, "no route for POST /chat/constructor"),
    Case("GET /chat/constructor", "GET", "/chat/constructor", KEY, None, 404, {"error"},
         "no route for GET /chat/constructor"),
    Case("GET /chat", "GET", "/chat", KEY, None, 405, {"error"}, "method GET not allowed on /chat",
         {"allow": "POST"}),
    Case("POST /health", "POST", "/health", {**JSON, **KEY}, b"{}", 405, {"error"},
         "method POST not allowed on /health", {"allow": "GET"}),
    Case("2 MiB body", "POST", "/chat", {**JSON, **KEY}, body({"prompt": "x" * (2 * 1024 * 1024)}), 413,
         {"error"}, "the request body is larger than 1048576 bytes (MAX_BODY_BYTES)"),
    Case("text/plain", "POST", "/chat", {"content-type": "text/plain", **KEY}, body({"prompt": "ping"}), 415,
         {"error"}, 'send the body as JSON with "content-type: application/json"'),
    Case("bad JSON", "POST", "/chat", {**JSON, **KEY}, b"{not json", 400, {"error"},
         "the request body must be JSON"),
    Case("model not allowed", "POST", "/chat", {**JSON, **KEY}, body({"prompt": "ping", "model": "o3-pro"}), 400,
         {"error"}, 'model "o3-pro" is not allowed (ALLOWED_MODELS)'),
    Case("gateway 500", "POST", "/chat", {**JSON, **KEY}, body({"prompt": "fail"}), 502,
         {"error", "status", "log_id"}, "the gateway answered 500", {"cf-aig-log-id": ABSENT}, 1),
    Case("redirecting gateway", "POST", "/chat", {**JSON, **KEY}, body({"prompt": "redirect"}), 502,
         {"error", "status", "log_id"}, f"/elsewhere{GATEWAY_PATH}; redirects are not followed", {}, 1),
    Case("dripping gateway", "POST", "/chat", {**JSON, **KEY}, body({"prompt": "drip"}), 504, {"error"},
         f"no answer within {DEADLINE_S} s (REQUEST_TIMEOUT_SECONDS)", {}, 1),
    Case("streamed answer", "POST", "/chat", {**JSON, **KEY}, body({"prompt": "ping", "stream": True}), 200,
         {"delta", "done"}, "", {"content-type": "text/event-stream; charset=utf-8", "cf-aig-log-id": "LOG1"}, 1),
    # The contract document: open like /health, GET only.
    Case("GET /openapi.json without a key", "GET", "/openapi.json", {}, None, 200,
         {"openapi", "info", "paths", "components", "security"}, "", {"content-type": "application/json"}),
    Case("POST /openapi.json", "POST", "/openapi.json", {**JSON, **KEY}, b"{}", 405, {"error"},
         "method POST not allowed on /openapi.json", {"allow": "GET"}, exact=True),
    Case("POST /openapi.json without a key", "POST", "/openapi.json", JSON, b"{}", 401, {"error"},
         "send Authorization: Bearer <SERVICE_API_KEY>", {"www-authenticate": "Bearer"}),
    # Nesting: 64 levels are fine, 65 are not (the body's object is level 1).
    Case("64 levels deep", "POST", "/chat", {**JSON, **KEY}, nested(64), 200, ANSWER, "", {}, 1),
    Case("65 levels deep", "POST", "/chat", {**JSON, **KEY}, nested(65), 400, {"error"}, DEEP, exact=True),
    Case("1,000 levels deep", "POST", "/chat", {**JSON, **KEY}, nested(1000), 400, {"error"}, DEEP, exact=True),
    # Every value that becomes an upstream header: printable ASCII, 1 to 256 characters.
    Case("cacheKey non-ASCII", "POST", "/chat", {**JSON, **KEY}, with_gateway({"cacheKey": "café"}), 400,
         {"error"}, printable("cacheKey"), exact=True),
    Case("cacheKey empty", "POST", "/chat", {**JSON, **KEY}, with_gateway({"cacheKey": ""}), 400,
         {"error"}, printable("cacheKey"), exact=True),
    Case("cacheKey 257 characters", "POST", "/chat", {**JSON, **KEY}, with_gateway({"cacheKey": "k" * 257}), 400,
         {"error"}, printable("cacheKey"), exact=True),
    Case("cacheKey 900 KB", "POST", "/chat", {**JSON, **KEY}, with_gateway({"cacheKey": "k" * 900_000}), 400,
         {"error"}, printable("cacheKey"), exact=True),
    Case("eventId non-ASCII", "POST", "/chat", {**JSON, **KEY}, with_gateway({"eventId": "ev-é"}), 400,
         {"error"}, printable("eventId"), exact=True),
    Case("eventId with a newline", "POST", "/chat", {**JSON, **KEY}, with_gateway({"eventId": "ev\n1"}), 400,
         {"error"}, printable("eventId"), exact=True),
    Case("byokAlias with a tab", "POST", "/chat", {**JSON, **KEY}, with_gateway({"byokAlias": "a\tb"}), 400,
         {"error"}, printable("byokAlias"), exact=True),
    Case("metadata value non-ASCII", "POST", "/chat", {**JSON, **KEY}, with_gateway({"metadata": {"user": "ü"}}),
         400, {"error"}, METADATA, exact=True),
    Case("metadata key non-ASCII", "POST", "/chat", {**JSON, **KEY}, with_gateway({"metadata": {"ü": "x"}}),
         400, {"error"}, METADATA, exact=True),
    Case("metadata over 1024 characters", "POST", "/chat", {**JSON, **KEY},
         with_gateway({"metadata": {f"k{i}": "v" * 256 for i in range(4)}}), 400, {"error"}, METADATA, exact=True),
    Case("cf-aig-event-id with a tab", "POST", "/chat", {**JSON, **KEY, "cf-aig-event-id": "trace\t1"},
         body({"prompt": "ping"}), 400, {"error"}, EVENT_ID_HEADER, exact=True),
    Case("cf-aig-event-id non-ASCII", "POST", "/chat", {**JSON, **KEY, "cf-aig-event-id": "trace-é".encode()},
         body({"prompt": "ping"}), 400, {"error"}, EVENT_ID_HEADER, exact=True),
    Case("cf-aig-event-id 257 characters", "POST", "/chat", {**JSON, **KEY, "cf-aig-event-id": "t" * 257},
         body({"prompt": "ping"}), 400, {"error"}, EVENT_ID_HEADER, exact=True),
    Case("cf-aig-event-id empty", "POST", "/chat", {**JSON, **KEY, "cf-aig-event-id": ""},
         body({"prompt": "ping"}), 400, {"error"}, EVENT_ID_HEADER, exact=True),
    Case("header values at their limits", "POST", "/chat", {**JSON, **KEY, "cf-aig-event-id": "t" * 256},
         with_gateway({"cacheKey": "~" * 256, "eventId": "ignored: the header wins", "metadata": {"user": "u 42"}}),
         200, ANSWER | {"event_id"}, "", {}, 1,
         sent={"cf-aig-event-id": "t" * 256, "cf-aig-cache-key": "~" * 256}),
]


def request(port: int, case: Case) -> tuple[int, dict[str, str], bytes, float]:
    """``(status, lower-cased headers, body, seconds)`` of one request to a service.

    A service may answer (413) and close before the client has sent the whole body; the
    client then reads the answer it got. If the close also reset the connection before the
    answer could be read (a race in the kernel, not in the service), a request that must not
    reach the gateway is sent again, at most twice."""
    for attempt in range(3):
        started = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            conn.putrequest(case.method, case.path)
            for name, value in {**case.headers, "Connection": "close"}.items():
                conn.putheader(name, value)
            if case.data is not None:
                conn.putheader("Content-Length", str(len(case.data)))
            conn.endheaders()
            try:
                for start in range(0, len(case.data or b""), 65536):
                    conn.send(case.data[start:start + 65536])
            except (BrokenPipeError, ConnectionResetError):
                pass  # answered early: read that answer
            res = conn.getresponse()
            status, headers, data = res.status, dict(res.getheaders()), res.read()
        except ConnectionResetError:
            if case.upstream or attempt == 2:
                raise
            continue
        finally:
            conn.close()
        return status, {k.lower(): v for k, v in headers.items()}, data, time.monotonic() - started
    raise AssertionError("unreachable")


def events(data: bytes) -> list[tuple[str, dict]]:
    """The server-sent events of a stream, as (name, data) pairs."""
    out = []
    for block in data.decode().strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        out.append((lines["event"], json.loads(lines["data"])))
    return out


def check(case: Case, port: int, gateway: FakeGateway, doc: dict | None = None) -> list[str]:
    """What this service answered differently from the contract (empty: all as documented);
    with ``doc``, also where the answer breaks the contract document."""
    before = len(gateway.requests)
    status, headers, data, seconds = request(port, case)
    sent = gateway.requests[before:]
    problems = undocumented(doc, case, status, headers, data) if doc else []
    if status != case.status:
        problems.append(f"status {status}, not {case.status}: {data[:300]!r}")
    if case.status == 200 and status != 200:
        problems.append(f"answered {status}: skipped the answer's checks")
    elif case.keys >= {"delta", "done"}:
        stream = events(data)
        names = [name for name, _ in stream]
        if names != ["delta", "delta", "done"]:
            problems.append(f"events {names}: {data[:500]!r}")
        if "".join(d.get("text", "") for name, d in stream if name == "delta") != "Hello there":
            problems.append(f"deltas: {data[:500]!r}")
        done = stream[-1][1] if stream else {}
        expected_done = {"model": "gpt-4o-mini", "log_id": f"LOG{before + 1}", "cache_status": "MISS"}
        if {k: done.get(k) for k in expected_done} != expected_done or set(done) != {*expected_done, "usage"}:
            problems.append(f"done event {done}")
        if done.get("usage") != USAGE:  # the same token counts as the JSON answer's
            problems.append(f"usage in done: {done.get('usage')}")
    else:
        try:
            answer = json.loads(data)
        except ValueError:
            answer = {}
            problems.append(f"not JSON: {data[:300]!r}")
        if set(answer) != case.keys:
            problems.append(f"keys {sorted(answer)}, not {sorted(case.keys)}")
        if status == 200 and "usage" in case.keys and answer.get("usage") != USAGE:
            problems.append(f"usage {answer.get('usage')}, not {USAGE}")  # one shape in both
        if case.error not in str(answer.get("error", "")) or (case.exact and answer.get("error") != case.error):
            problems.append(f"error {answer.get('error')!r}, not {'' if case.exact else 'with '}{case.error!r}")
        if GATEWAY_TOKEN in data.decode() or "upstream detail" in data.decode():
            problems.append("the answer echoes the gateway's body or token")
    for name, value in case.headers_out.items():
        if name == "cf-aig-log-id" and value is not None:
            value = f"LOG{before + 1}"
        if headers.get(name) != value:
            problems.append(f"header {name}: {headers.get(name)!r}, not {value!r}")
    if len(sent) != case.upstream:
        problems.append(f"{len(sent)} upstream requests, not {case.upstream}: {[r['path'] for r in sent]}")
    for r in sent:
        if r["path"] != GATEWAY_PATH:
            problems.append(f"upstream path {r['path']}")
        auth = {k: v for k, v in r["headers"].items()
                if "auth" in k or k.startswith("x-api") or ("key" in k and k != "cf-aig-cache-key")}
        if auth != {"cf-aig-authorization": f"Bearer {GATEWAY_TOKEN}"}:
            problems.append(f"upstream auth headers {auth}")
        if SERVICE_KEY in json.dumps(r["headers"]):
            problems.append("the caller's key went upstream")
        for name, value in case.sent.items():
            if r["headers"].get(name) != value:
                problems.append(f"upstream header {name}: {r['headers'].get(name)!r}, not {value!r}")
    if case.status == 504 and not DEADLINE_S <= seconds < DEADLINE_S + 5:
        problems.append(f"504 after {seconds:.1f} s, deadline {DEADLINE_S} s")
    return problems


def run_table(port: int, gateway: FakeGateway, problems: dict | None = None,
              doc: dict | None = None) -> dict[str, str]:
    """Every case of the table; ``{case name: the gateway log id of its first request}``.
    What went wrong raises, or with ``problems`` goes there (``problems["table"]``). With the
    contract document ``doc``, every answer must also be one it documents."""
    log_ids, failures = {}, {}
    for case in CASES:
        log_ids[case.name] = f"LOG{len(gateway.requests) + 1}"
        if found := check(case, port, gateway, doc):
            failures[case.name] = found
    if failures and problems is None:
        raise AssertionError(json.dumps(failures, indent=2))
    if failures:
        problems["table"] = json.dumps(failures, indent=2)
    return log_ids


def settings(gateway: FakeGateway) -> dict[str, str]:
    """The same settings for both services (secrets included: tests only)."""
    return {
        "CLOUDFLARE_ACCOUNT_ID": ACCOUNT_ID,
        "AI_GATEWAY_BASE_URL": f"http://127.0.0.1:{gateway.port}/v1",
        "REQUEST_TIMEOUT_SECONDS": str(DEADLINE_S),
        "CF_AIG_TOKEN": GATEWAY_TOKEN,
        "SERVICE_API_KEY": SERVICE_KEY,
        "OPENAI_API_KEY": PROVIDER_KEY,
    }


def python_env(project: Path, gateway: FakeGateway, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in settings(gateway) and not k.startswith("CF_")}
    # POST /feedback: its token, and the fake gateway as the Cloudflare API
    # (it answers the log PATCH as the API does).
    feedback = {"CLOUDFLARE_API_TOKEN": FEEDBACK_TOKEN, "CLOUDFLARE_API_BASE_URL": gateway.api_url}
    return {**env, **settings(gateway), **feedback, "PYTHONPATH": str(project / "src"), **extra}


# ---------------------------------------------------------------------------------------------
# The contract document, and the README's tables against it.


def document(project: Path) -> dict:
    """The contract document a rendered service serves (python-app or Worker)."""
    path = project / "src" / "openapi.json"
    return json.loads((path if path.exists() else project / "src" / "demo_svc" / "openapi.json").read_text())


def assert_document_served(port: int, expected: dict) -> None:
    """GET /openapi.json without a key: 200, application/json, the rendered document itself."""
    status, headers, data, _ = request(port, Case("document", "GET", "/openapi.json", {}, None, 200, set()))
    assert (status, headers.get("content-type")) == (200, "application/json"), (status, headers, data[:300])
    assert json.loads(data) == expected, "GET /openapi.json is not the rendered src/.../openapi.json"


def deref(doc: dict, node: dict) -> dict:
    """``node`` with its local ``$ref`` chain followed."""
    while isinstance(node, dict) and "$ref" in node:
        target = doc
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def undocumented(doc: dict, case: Case, status: int, headers: dict[str, str], data: bytes) -> list[str]:
    """Where an answer breaks the document: its status, media type, required headers, JSON body.
    A method or path no operation has gets the document's 401, 404 or 405 answers."""
    import jsonschema

    path = "/chat/{provider}" if case.path.startswith("/chat/") else case.path
    operation = doc["paths"].get(path, {}).get(case.method.lower())
    generic = {"401": "Unauthorized", "404": "NotFound", "405": "MethodNotAllowed"}
    if operation is not None:
        response = operation["responses"].get(str(status))
    else:
        response = doc["components"]["responses"].get(generic.get(str(status), ""))
    if response is None:
        return [f"document: no {status} answer for {case.method} {path}"]
    response, problems = deref(doc, response), []
    for name, header in response.get("headers", {}).items():
        if deref(doc, header).get("required") and name.lower() not in headers:
            problems.append(f"document: no {name} header")
    media = headers.get("content-type", "").split(";")[0].strip()
    content = response.get("content", {})
    if media not in content:
        return [*problems, f"document: {media!r} is not one of {sorted(content)} for {status}"]
    if media == "application/json":
        schema = {**deref(doc, content[media]["schema"]), "components": doc["components"]}
        try:
            answer = json.loads(data)
        except ValueError:
            return [*problems, "document: not JSON"]
        problems += [f"document: {error.message}" for error in
                     jsonschema.Draft202012Validator(schema).iter_errors(answer)][:3]
    return problems


def documented_statuses(doc: dict) -> dict[str, list[dict]]:
    """Status code -> the responses the document gives for it (any operation, or ``x-status``)."""
    out: dict[str, list[dict]] = {}
    for operations in doc["paths"].values():
        for operation in operations.values():
            for code, response in operation["responses"].items():
                out.setdefault(code, []).append(deref(doc, response))
    for response in doc["components"]["responses"].values():
        if "x-status" in response:
            out.setdefault(str(response["x-status"]), []).append(response)
    return out


def extras(doc: dict, responses: list[dict]) -> set[str]:
    """The headers and the JSON keys other than "error" these responses document."""
    names = set()
    for response in responses:
        names |= {name.lower() for name in response.get("headers", {})}
        schema = deref(doc, response.get("content", {}).get("application/json", {}).get("schema", {}))
        names |= set(schema.get("properties", {})) - {"error"}
    return names


def assert_readme_agrees(readme: str, doc: dict) -> None:
    """README "HTTP contract": the route table and the status table say what the document says."""
    section = readme.split("## HTTP contract", 1)[1].split("\n## ", 1)[0]
    routes = set(re.findall(r"^\| `(GET|POST) (/\S*)` \|", section, re.MULTILINE))
    expected = {(method.upper(), path.replace("{provider}", "<provider>"))
                for path, operations in doc["paths"].items() for method in operations}
    assert routes == expected, f"README routes {sorted(routes)}, the document's {sorted(expected)}"
    row = next(line for line in section.splitlines() if line.startswith("| `POST /chat/<provider>`"))
    enum = deref(doc, doc["paths"]["/chat/{provider}"]["post"]["parameters"][0])["schema"]["enum"]
    assert re.findall(r"`([a-z-]+)`", row.split("|")[2]) == enum, row
    rows: dict[str, set[str]] = {}
    for code, cell in (line.split("|")[1::2][:2] for line in section.splitlines()
                       if re.match(r"\| \d{3} \|", line)):
        code = code.strip()
        named = {h.lower() for h in re.findall(r"`([A-Za-z-]+): ", cell)} | set(re.findall(r'"(\w+)"`?:', cell))
        rows.setdefault(code, set()).update(named)
    statuses = documented_statuses(doc)
    assert set(rows) == set(statuses) - {"200"}, f"README statuses {sorted(rows)}, the document's {sorted(statuses)}"
    for code, named in rows.items():
        assert named == extras(doc, statuses[code]), f"{code}: README names {named}, the document {extras(doc, statuses[code])}"


def render_document(**context) -> dict:
    """template/_shared/openapi.json.jinja rendered with plain Jinja (no project: no Copier run)."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(Path(__file__).resolve().parents[1])))
    env.filters["to_json"] = json.dumps
    return json.loads(env.get_template("template/_shared/openapi.json.jinja").render(
        project_name="demo-svc", **context))


def test_the_contract_document_is_openapi_3_1_and_the_readme_agrees(python_service):
    from openapi_spec_validator import validate

    doc = document(python_service)
    validate(doc)
    assert doc["openapi"] == "3.1.0" and doc["security"] == [{"bearer": []}]
    assert doc["paths"]["/health"]["get"]["security"] == doc["paths"]["/openapi.json"]["get"]["security"] == []
    assert_readme_agrees((python_service / "README.md").read_text(), doc)
    # The other answers: no bearer scheme and no 401 with caller_auth=none; every provider.
    providers = ["openai", "anthropic", "google-ai-studio", "workers-ai", "compat"]
    for caller_auth in ("api-key", "none"):
        other = render_document(caller_auth=caller_auth, all_providers=providers)
        validate(other)
        assert ("security" in other) is ("securitySchemes" in other["components"]) is (caller_auth == "api-key")
        assert ("401" in documented_statuses(other)) is (caller_auth == "api-key")
        assert other["components"]["schemas"]["Health"]["properties"]["providers"]["items"]["enum"] == providers


# ---------------------------------------------------------------------------------------------
# The log line: one JSON object per request, no secret in any output.

LOG_FIELDS = {"event", "method", "route", "provider", "model", "status", "latency_ms", "upstream_ms",
              "log_id", "cache_status", "usage", "caller", "stream", "error"}
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
USAGE = {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}


# What every log line holds, whatever the request (the same in both services):
LOG_RULES = {
    # The provider follows from the path alone, whatever the status (401 and 405 too).
    "/chat is the openai provider's route": lambda line: line["route"] != "/chat" or line["provider"] == "openai",
    # The model is the one the request is served with: never known on a refused request.
    "no model, gateway log id or upstream time on a 4xx": lambda line: not 400 <= line["status"] < 500 or (
        line["model"], line["log_id"], line["upstream_ms"]) == (None, None, None),
    # The time until the gateway's answer, whenever one came (a 502 for the gateway's 500 too).
    "upstream_ms whenever the gateway answered": lambda line: line["log_id"] is None or isinstance(
        line["upstream_ms"], int | float),
}


def request_lines(log: Path) -> list[dict]:
    """The ``"event": "request"`` JSON lines of a service's output."""
    lines = []
    for line in _ANSI.sub("", log.read_text(errors="replace")).splitlines():
        start = line.find('{"')
        try:
            value = json.loads(line[start:]) if start >= 0 else None
        except ValueError:
            continue
        if isinstance(value, dict) and value.get("event") == "request":
            lines.append(value)
    return lines


def fits(line: dict, expected: dict) -> bool:
    return all(line.get(k, "<absent>") == v for k, v in expected.items())


def assert_log_lines(log: Path, expected: dict[str, dict], timeout: float = 10) -> None:
    """Each expected line (its fields as given) is in the log, with every field and no other;
    latency_ms a number, upstream_ms a number or null. Polls: a line is written at the end."""
    deadline = time.monotonic() + timeout
    while True:
        lines = request_lines(log)
        missing = {name: want for name, want in expected.items() if not any(fits(line, want) for line in lines)}
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    problems = [f"no log line like {name}: {want}; lines with status {want.get('status')}: "
                f"{[line for line in lines if line.get('status') == want.get('status')][:3]}"
                for name, want in missing.items()]
    for line in lines:
        if set(line) != LOG_FIELDS:
            problems.append(f"fields {sorted(set(line) ^ LOG_FIELDS)} wrong in {line}")
            break
        if not isinstance(line["latency_ms"], int | float) or line["latency_ms"] < 0 or not (
                line["upstream_ms"] is None or isinstance(line["upstream_ms"], int | float)):
            problems.append(f"latency_ms / upstream_ms in {line}")
            break
    problems += [f"{rule}: {line}" for line in lines for rule, holds in LOG_RULES.items() if not holds(line)][:5]
    if not lines:
        problems.append(f"no request log line at all; the output ends:\n{log.read_text(errors='replace')[-2000:]}")
    assert not problems, "\n".join(problems)


def assert_no_canary(*logs: Path) -> None:
    for log in logs:
        text = log.read_text(errors="replace")
        leaked = [canary for canary in CANARIES if canary in text]
        assert not leaked, f"{log.name} shows {leaked}"


def table_log_lines(log_ids: dict[str, str]) -> dict[str, dict]:
    """The log lines some of the table's requests must have written."""
    chat = {"method": "POST", "route": "/chat", "provider": "openai", "caller": "default"}
    nothing = {"log_id": None, "cache_status": None, "usage": None, "upstream_ms": None}
    return {
        "GET /health": {"method": "GET", "route": "/health", "status": 200, "provider": None, "model": None,
                        "caller": None, "stream": False, "error": None, **nothing},
        "GET /openapi.json": {"method": "GET", "route": "/openapi.json", "status": 200, "provider": None,
                              "model": None, "caller": None, "stream": False, "error": None, **nothing},
        "200": {**chat, "model": "gpt-4o-mini", "status": 200, "log_id": log_ids["200 with the key"],
                "cache_status": "MISS", "usage": USAGE, "stream": False, "error": None},
        "200 streamed": {**chat, "model": "gpt-4o-mini", "status": 200, "log_id": log_ids["streamed answer"],
                         "cache_status": "MISS", "usage": USAGE, "stream": True, "error": None},
        "401": {**chat, "caller": None, "model": None, "status": 401,
                "stream": False, "error": "unauthorized", **nothing},
        "401 on an unknown route": {"method": "POST", "route": None, "provider": None, "caller": None,
                                    "status": 401, "error": "unauthorized", **nothing},
        "400": {**chat, "status": 400, "error": "bad_request", "stream": False, **nothing},
        "404": {"method": "POST", "route": None, "status": 404, "error": "not_found", **nothing},
        "405": {**chat, "method": "GET", "status": 405, "error": "method_not_allowed", **nothing},
        "413": {**chat, "status": 413, "error": "too_large", **nothing},
        "415": {**chat, "status": 415, "error": "unsupported_media_type", **nothing},
        "502": {**chat, "model": "gpt-4o-mini", "status": 502, "log_id": log_ids["gateway 500"],
                "cache_status": None, "usage": None, "stream": False, "error": "upstream"},
        "504": {**chat, "model": "gpt-4o-mini", "status": 504, "stream": False, "error": "timeout"},
    }


# ---------------------------------------------------------------------------------------------
# Streams that end with their caller; answers bounded by MAX_UPSTREAM_BYTES, memory flat.


def wait_for(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def assert_hang_up_closes_upstream(port: int, gateway: FakeGateway, callers: int = 3) -> None:
    """Callers that read a trickling stream's first event and hang up: the service closes each
    upstream answer long before its deadline (LONG_DEADLINE_S), as counted at the gateway."""
    payload = body({"prompt": "trickle", "stream": True})
    head = (f"POST /chat HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nauthorization: Bearer {SERVICE_KEY}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(payload)}\r\n\r\n").encode()
    hung_up = gateway.hang_ups
    socks = [socket.create_connection(("127.0.0.1", port), timeout=LONG_DEADLINE_S) for _ in range(callers)]
    try:
        for sock in socks:
            sock.sendall(head + payload)
        for sock in socks:
            seen = b""
            while b"event: delta" not in seen and (chunk := sock.recv(65536)):
                seen += chunk
            assert seen.startswith(b"HTTP/1.1 200") and b"event: delta" in seen, seen[:500]
        assert wait_for(lambda: gateway.open_answers == callers, 10), f"{gateway.open_answers} answers open"
    finally:
        for n, sock in enumerate(socks):
            if n:  # a clean hang-up (FIN); the first caller's close resets the connection (RST)
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
    closed = wait_for(lambda: gateway.open_answers == 0, LONG_DEADLINE_S / 2)
    assert closed, (f"{gateway.open_answers} of {callers} upstream answers still open "
                    f"{LONG_DEADLINE_S / 2:g} s after their callers hung up")
    assert gateway.hang_ups - hung_up == callers


def rss(pid: int) -> int:
    """Resident memory of a process, bytes (/proc/<pid>/status VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


class PeakRss:
    """The highest resident memory of ``pid`` while the block runs (sampled every 20 ms)."""

    def __init__(self, pid: int):
        self.pid, self.peak, self.stop = pid, rss(pid), threading.Event()

    def sample(self) -> None:
        while not self.stop.wait(0.02):
            self.peak = max(self.peak, rss(self.pid))

    def __enter__(self) -> Self:
        self.thread = threading.Thread(target=self.sample, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()
        self.peak = max(self.peak, rss(self.pid))


def workerd_pid(group: int) -> int:
    """The workerd process that `wrangler dev` (process group ``group``) runs the Worker in."""
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text() if entry.name.isdigit() else ""
        except OSError:
            continue
        if (stat and stat[stat.index("(") + 1:stat.rindex(")")] == "workerd"
                and int(stat[stat.rindex(")") + 2:].split()[2]) == group):
            return int(entry.name)
    raise AssertionError(f"no workerd process in group {group}")


def assert_endless_answers_are_bounded(port: int, gateway: FakeGateway, pid: int, log_ids: dict) -> None:
    """An endless upstream answer: 502 (JSON) or an SSE error event (stream) with the spec's
    message once MAX_UPSTREAM_BYTES have come, the upstream closed, the service's resident
    memory never 50 MB above where it was. ``log_ids`` gets ``{what: gateway log id}``."""
    problems, hung_up = [], gateway.hang_ups
    start = rss(pid)
    with PeakRss(pid) as peak:
        log_ids["endless"] = f"LOG{len(gateway.requests) + 1}"
        status, _, data, _ = request(port, Case("endless", "POST", "/chat", {**JSON, **KEY},
                                                body({"prompt": "endless"}), 502, {"error"}, upstream=1))
        expected = {"error": TOO_BIG, "status": 200, "log_id": log_ids["endless"]}
        if status != 502 or data[:1] != b"{" or json.loads(data) != expected:
            problems.append(f"endless JSON: {status} {data[:300]!r}, not 502 {expected}")
        log_ids["endless stream"] = f"LOG{len(gateway.requests) + 1}"
        status, headers, data, _ = request(port, Case("endless stream", "POST", "/chat", {**JSON, **KEY},
                                                      body({"prompt": "endless", "stream": True}), 200,
                                                      {"error"}, upstream=1))
        expected = ("error", {"error": TOO_BIG, "status": 502, "log_id": log_ids["endless stream"]})
        try:
            stream = events(data)
        except (ValueError, KeyError):
            stream = [("unparsable", {"tail": data[-300:].decode(errors="replace")})]
        if status != 200 or headers.get("content-type") != "text/event-stream; charset=utf-8" or (
                stream[-1:] != [expected] or {name for name, _ in stream[:-1]} - {"delta"}):
            problems.append(f"endless stream: {status} {headers.get('content-type')} ends {stream[-1:]}, "
                            f"not {expected}")
    if not wait_for(lambda: gateway.hang_ups - hung_up == 2 and gateway.open_answers == 0, LONG_DEADLINE_S / 2):
        problems.append(f"the service closed {gateway.hang_ups - hung_up} of 2 endless upstream answers "
                        f"({gateway.open_answers} still open)")
    if peak.peak - start >= 50 * 2**20:
        problems.append(f"resident memory grew {(peak.peak - start) / 2**20:.0f} MB (from {start / 2**20:.0f} MB)")
    assert not problems, "\n".join(problems)


def long_deadline_log_lines(log_ids: dict[str, str], callers: int = 3) -> dict[str, dict]:
    chat = {"method": "POST", "route": "/chat", "provider": "openai", "caller": "default", "model": "gpt-4o-mini"}
    lines = {f"hang-up {n}": {**chat, "status": 200, "stream": True, "error": "client_gone"} for n in range(callers)}
    return {
        **lines,
        "endless": {**chat, "status": 502, "stream": False, "error": "upstream", "log_id": log_ids.get("endless")},
        "endless stream": {**chat, "status": 200, "stream": True, "error": "upstream",
                           "log_id": log_ids.get("endless stream")},
    }


# ---------------------------------------------------------------------------------------------
# schemathesis: the document against the service, bounded and reproducible.

SCHEMATHESIS_EXAMPLES = 25  # per chat operation; GET /health and /openapi.json have nothing to vary


def run_schemathesis(port: int, doc: dict) -> None:
    """Positive cases generated from the document (derandomized: the same ones every run), each
    sent with the caller key: no 5xx, and status, content type, headers and body as documented."""
    import schemathesis
    from hypothesis import HealthCheck, Phase, given
    from hypothesis import settings as hypothesis_settings
    from schemathesis.checks import (
        content_type_conformance,
        not_a_server_error,
        response_headers_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    checks = [not_a_server_error, status_code_conformance, content_type_conformance,
              response_headers_conformance, response_schema_conformance]
    failures = {}
    for result in schemathesis.openapi.from_dict(doc).get_all_operations():
        operation = result.ok()

        @hypothesis_settings(max_examples=SCHEMATHESIS_EXAMPLES if operation.method.upper() == "POST" else 3,
                             derandomize=True, database=None, deadline=None, print_blob=False,
                             phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def call(case) -> None:
            response = case.call(base_url=f"http://127.0.0.1:{port}", headers=KEY, timeout=LONG_DEADLINE_S)
            case.validate_response(response, checks=checks)

        try:
            call()
        except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - every failure, then one assertion
            failures[operation.label] = str(exc)[:2500]
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())


# ---------------------------------------------------------------------------------------------
# The two services.


class Problems(dict):
    """What each part of a service's run found, so that one run reports every part."""

    def run(self, name: str, function, *args):
        try:
            return function(*args)
        except AssertionError as exc:
            self[name] = str(exc)[:6000]
        except Exception as exc:  # noqa: BLE001 - a service's odd answer: reported with the rest
            self[name] = f"{type(exc).__name__}: {exc}"[:6000]
        return None

    def check(self) -> None:
        assert not self, "\n\n".join(f"== {name}\n{text}" for name, text in self.items())


@pytest.fixture(scope="module")
def python_service(tmp_path_factory) -> Path:
    return render(tmp_path_factory.mktemp("contract") / "svc", language="python-app", **ANSWERS)


def test_the_python_service_keeps_the_contract(python_service, tmp_path):
    problems, log = Problems(), tmp_path / "uvicorn.log"
    with FakeGateway() as gateway, ServiceProcess(
            python_service, python_env(python_service, gateway), log) as service:
        log_ids = run_table(service.port, gateway, problems, document(python_service))
        problems.run("GET /openapi.json", assert_document_served, service.port, document(python_service))
        problems.run("schemathesis", run_schemathesis, service.port, document(python_service))
    problems.run("log lines", assert_log_lines, log, table_log_lines(log_ids))
    problems.run("canaries", assert_no_canary, log)
    problems.check()


def test_python_streams_end_with_their_caller_and_answers_are_bounded(python_service, tmp_path):
    problems, log = Problems(), tmp_path / "uvicorn.log"
    with FakeGateway() as gateway:
        env = python_env(python_service, gateway, REQUEST_TIMEOUT_SECONDS=str(LONG_DEADLINE_S))
        with ServiceProcess(python_service, env, log) as service:
            problems.run("hang-up", assert_hang_up_closes_upstream, service.port, gateway)
            log_ids = {}
            problems.run("endless", assert_endless_answers_are_bounded, service.port, gateway, service.proc.pid,
                         log_ids)
    problems.run("log lines", assert_log_lines, log, long_deadline_log_lines(log_ids))
    problems.run("canaries", assert_no_canary, log)
    problems.check()


def test_an_anonymous_caller_learns_nothing_about_settings_python(python_service, tmp_path):
    """Invalid gateway settings: 401 without the key, 500 naming the setting only with it."""
    with FakeGateway() as gateway:
        env = python_env(python_service, gateway, CLOUDFLARE_ACCOUNT_ID="not-an-account")
        with ServiceProcess(python_service, env, tmp_path / "uvicorn.log") as service:
            assert_settings_hidden(service.port, gateway)


def test_an_unreachable_gateway_is_named_in_the_502_python(python_service, tmp_path):
    with FakeGateway() as gateway:
        closed = free_port()  # nothing listens there
        env = python_env(python_service, gateway, AI_GATEWAY_BASE_URL=f"http://127.0.0.1:{closed}/v1")
        with ServiceProcess(python_service, env, tmp_path / "uvicorn.log") as service:
            assert_unreachable_named(service.port, closed)


def assert_unreachable_named(port: int, closed: int) -> None:
    """A gateway nobody listens on: a 502 naming the URL the service tried, in both services."""
    case = Case("unreachable", "POST", "/chat", {**JSON, **KEY}, body({"prompt": "ping"}), 502, set())
    status, _, data, _ = request(port, case)
    assert (status, json.loads(data)) == (502, {
        "error": f"could not reach the gateway at http://127.0.0.1:{closed}{GATEWAY_PATH}",
        "status": None, "log_id": None}), data


def assert_settings_hidden(port: int, gateway: FakeGateway) -> None:
    before = len(gateway.requests)
    anonymous = Case("anonymous", "POST", "/chat", JSON, body({"prompt": "ping"}), 401, {"error"})
    status, _, data, _ = request(port, anonymous)
    assert status == 401 and b"CLOUDFLARE_ACCOUNT_ID" not in data, data
    caller = Case("caller", "POST", "/chat", {**JSON, **KEY}, body({"prompt": "ping"}), 500, {"error"})
    status, _, data, _ = request(port, caller)
    assert status == 500, data
    assert json.loads(data)["invalid"] == "CLOUDFLARE_ACCOUNT_ID"
    assert len(gateway.requests) == before


def wrangler_vars(values: dict[str, str]) -> list[str]:
    """`--var NAME:value` for the settings that are not secrets (those go to .dev.vars)."""
    names = ("CLOUDFLARE_ACCOUNT_ID", "AI_GATEWAY_BASE_URL", "REQUEST_TIMEOUT_SECONDS",
             "CLOUDFLARE_API_BASE_URL", "CLOUDFLARE_API_TOKEN")  # the last two: POST /feedback's
    return [arg for name in names if name in values for arg in ("--var", f"{name}:{values[name]}")]


@pytest.mark.xdist_group("worker:unified-billing")  # its npm install, once per run
def test_the_worker_keeps_the_contract(worker_project, tmp_path):
    """The table, the document (served, as README says, schemathesis) and the log lines; then
    with a long deadline: hang-ups and endless answers; then a gateway nobody listens on.
    Three `wrangler dev` runs of one Worker. An invalid setting hidden from a caller without
    the key (test_an_anonymous_caller_learns_nothing_about_settings_python for Python) is the
    rendered suite's, in workerd (test/contract.test.ts, "tells a caller without the key
    nothing about an invalid setting"), which test_worker_target / test_quick_start run."""
    project = worker_project("unified-billing")
    dev_vars = project.path / ".dev.vars"
    problems, logs = Problems(), [tmp_path / f"dev-{n}.log" for n in range(3)]
    doc = document(project.path)
    problems.run("README", assert_readme_agrees, (project.path / "README.md").read_text(), doc)
    with FakeGateway() as gateway:
        # POST /feedback: its token (optional, so not read from .dev.vars: a --var), and the
        # fake gateway as the Cloudflare API, as for Python.
        values = {**settings(gateway), "CLOUDFLARE_API_BASE_URL": gateway.api_url,
                  "CLOUDFLARE_API_TOKEN": FEEDBACK_TOKEN}
        dev_vars.write_text(f"CF_AIG_TOKEN={GATEWAY_TOKEN}\nSERVICE_API_KEY={SERVICE_KEY}\n"
                            f"OPENAI_API_KEY={PROVIDER_KEY}\n")
        try:
            with WranglerDev(project.path, project.env, wrangler_vars(values), logs[0]) as dev:
                log_ids = run_table(dev.port, gateway, problems, doc)
                problems.run("GET /openapi.json", assert_document_served, dev.port, doc)
                problems.run("schemathesis", run_schemathesis, dev.port, doc)
            problems.run("log lines", assert_log_lines, logs[0], table_log_lines(log_ids))
            long = wrangler_vars({**values, "REQUEST_TIMEOUT_SECONDS": str(LONG_DEADLINE_S)})
            with WranglerDev(project.path, project.env, long, logs[1]) as dev:
                problems.run("hang-up", assert_hang_up_closes_upstream, dev.port, gateway)
                log_ids = {}
                problems.run("endless", lambda: assert_endless_answers_are_bounded(
                    dev.port, gateway, workerd_pid(dev.proc.pid), log_ids))
            problems.run("log lines (long deadline)", assert_log_lines, logs[1], long_deadline_log_lines(log_ids))
            closed = free_port()  # nothing listens there
            unreachable = wrangler_vars({**values, "AI_GATEWAY_BASE_URL": f"http://127.0.0.1:{closed}/v1"})
            with WranglerDev(project.path, project.env, unreachable, logs[2]) as dev:
                problems.run("unreachable gateway", assert_unreachable_named, dev.port, closed)
        finally:
            dev_vars.unlink(missing_ok=True)
    problems.run("canaries", assert_no_canary, *logs)
    problems.check()
