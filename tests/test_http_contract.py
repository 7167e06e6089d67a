"""One HTTP contract, two services: ONE table of cases, run over real HTTP against the rendered
Python service (uvicorn) and the rendered Worker (`wrangler dev --local`), each in front of the
same loopback fake gateway. README.md "HTTP contract (both targets)" is what this checks.

Both services are rendered with the same answers (unified-billing, an authenticated gateway,
caller_auth=api-key) and run with the same settings, so every case expects the same answer
from both. The Worker half reuses the "unified-billing" variant of test_worker_target.py
(rendered and npm-installed once per run, in that variant's xdist group).
"""
from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import pytest
from conftest import ACCOUNT_ID, render
from worker_toolchain import VARIANTS, FakeGateway, WranglerDev, free_port

SERVICE_KEY = "svc-key"
GATEWAY_TOKEN = "tok-gw"
DEADLINE_S = 3
KEY = {"authorization": f"Bearer {SERVICE_KEY}"}
JSON = {"content-type": "application/json"}
ANSWERS = VARIANTS["unified-billing"]  # the Worker variant the Worker half runs
GATEWAY_PATH = f"/v1/{ACCOUNT_ID}/demo-gw/openai/chat/completions"
ABSENT = None  # in `headers`: this response header must not be there


def body(value) -> bytes:
    return json.dumps(value).encode()


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


CASES = [
    Case("health needs no key", "GET", "/health", {}, None, 200, {"status", "providers"}),
    Case("no key", "POST", "/chat", JSON, body({"prompt": "ping"}), 401, {"error"},
         "send Authorization: Bearer <SERVICE_API_KEY>", {"www-authenticate": "Bearer"}),
    Case("wrong key", "POST", "/chat", {**JSON, "authorization": "Bearer svc-kez"}, body({"prompt": "ping"}),
         401, {"error"}, "send Authorization: Bearer <SERVICE_API_KEY>", {"www-authenticate": "Bearer"}),
    Case("unknown route without a key: auth comes first", "POST", "/nowhere", JSON, b"{}", 401, {"error"},
         "send Authorization"),
    Case("200 with the key", "POST", "/chat", {**JSON, **KEY}, body({"prompt": "ping"}), 200,
         {"reply", "model", "usage", "log_id", "cache_status"}, "",
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


def check(case: Case, port: int, gateway: FakeGateway) -> list[str]:
    """What this service answered differently from the contract (empty: all as documented)."""
    before = len(gateway.requests)
    status, headers, data, seconds = request(port, case)
    sent = gateway.requests[before:]
    problems = []
    if status != case.status:
        problems.append(f"status {status}, not {case.status}: {data[:300]!r}")
    if case.keys >= {"delta", "done"}:
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
        if (done.get("usage") or {}).get("total_tokens") != 3:
            problems.append(f"usage in done: {done.get('usage')}")
    else:
        try:
            answer = json.loads(data)
        except ValueError:
            answer = {}
            problems.append(f"not JSON: {data[:300]!r}")
        if set(answer) != case.keys:
            problems.append(f"keys {sorted(answer)}, not {sorted(case.keys)}")
        if case.error not in str(answer.get("error", "")):
            problems.append(f"error {answer.get('error')!r} lacks {case.error!r}")
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
        auth = {k: v for k, v in r["headers"].items() if "auth" in k or k.startswith("x-api") or "key" in k}
        if auth != {"cf-aig-authorization": f"Bearer {GATEWAY_TOKEN}"}:
            problems.append(f"upstream auth headers {auth}")
        if SERVICE_KEY in json.dumps(r["headers"]):
            problems.append("the caller's key went upstream")
    if case.status == 504 and not DEADLINE_S <= seconds < DEADLINE_S + 5:
        problems.append(f"504 after {seconds:.1f} s, deadline {DEADLINE_S} s")
    return problems


def run_table(port: int, gateway: FakeGateway) -> None:
    failures = {case.name: problems for case in CASES if (problems := check(case, port, gateway))}
    assert not failures, json.dumps(failures, indent=2)


def settings(gateway: FakeGateway) -> dict[str, str]:
    """The same settings for both services (secrets included: tests only)."""
    return {
        "CLOUDFLARE_ACCOUNT_ID": ACCOUNT_ID,
        "AI_GATEWAY_BASE_URL": f"http://127.0.0.1:{gateway.port}/v1",
        "REQUEST_TIMEOUT_SECONDS": str(DEADLINE_S),
        "CF_AIG_TOKEN": GATEWAY_TOKEN,
        "SERVICE_API_KEY": SERVICE_KEY,
    }


class Uvicorn:
    """`python -m demo_svc serve` on a loopback port, in its own process group."""

    def __init__(self, project: Path, env: dict[str, str], log: Path):
        self.port = free_port()
        self.project, self.env, self.log = project, env, log

    def __enter__(self) -> Self:
        self.log_file = self.log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "demo_svc", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=self.project, env=self.env, stdout=self.log_file, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2):
                    return self
            except OSError:
                time.sleep(0.1)
        self.__exit__()
        raise AssertionError(f"the service did not come up:\n{self.log.read_text()[-3000:]}")

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log_file.close()


def python_env(project: Path, gateway: FakeGateway, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in settings(gateway) and not k.startswith("CF_")}
    return {**env, **settings(gateway), "PYTHONPATH": str(project / "src"), **extra}


@pytest.fixture(scope="module")
def python_service(tmp_path_factory) -> Path:
    return render(tmp_path_factory.mktemp("contract") / "svc", language="python-app", **ANSWERS)


def test_the_python_service_keeps_the_contract(python_service, tmp_path):
    with FakeGateway() as gateway, Uvicorn(python_service, python_env(python_service, gateway),
                                           tmp_path / "uvicorn.log") as service:
        run_table(service.port, gateway)


def test_an_anonymous_caller_learns_nothing_about_settings_python(python_service, tmp_path):
    """Invalid gateway settings: 401 without the key, 500 naming the setting only with it."""
    with FakeGateway() as gateway:
        env = python_env(python_service, gateway, CLOUDFLARE_ACCOUNT_ID="not-an-account")
        with Uvicorn(python_service, env, tmp_path / "uvicorn.log") as service:
            assert_settings_hidden(service.port, gateway)


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
    names = ("CLOUDFLARE_ACCOUNT_ID", "AI_GATEWAY_BASE_URL", "REQUEST_TIMEOUT_SECONDS")
    return [arg for name in names for arg in ("--var", f"{name}:{values[name]}")]


@pytest.mark.xdist_group("test_worker_target:unified-billing")  # its npm install, once per run
def test_the_worker_keeps_the_contract(worker_project, tmp_path):
    project = worker_project("unified-billing")
    dev_vars = project.path / ".dev.vars"
    with FakeGateway() as gateway:
        values = settings(gateway)
        dev_vars.write_text(f"CF_AIG_TOKEN={GATEWAY_TOKEN}\nSERVICE_API_KEY={SERVICE_KEY}\n")
        try:
            with WranglerDev(project.path, project.env, wrangler_vars(values), tmp_path / "dev.log") as dev:
                run_table(dev.port, gateway)
            # The same Worker with an invalid account id, for an anonymous caller and a caller.
            bad = wrangler_vars({**values, "CLOUDFLARE_ACCOUNT_ID": "not-an-account"})
            with WranglerDev(project.path, project.env, bad, tmp_path / "dev-2.log") as dev:
                assert_settings_hidden(dev.port, gateway)
        finally:
            dev_vars.unlink(missing_ok=True)
