"""Callers (issue 20), Python target: named keys from callers.toml, each caller held to its
models, max_tokens cap and rate before anything goes upstream, and the caller's identity set
by the service in the upstream cf-aig-metadata.

Everything over real HTTP: the rendered service run as `python -m demo_svc serve` (uvicorn)
in front of the loopback fake gateway (tools/testkit.py), httpx as the client. The shared
limit is checked with two service processes and one real `redis-server` (Debian's package;
tools/run_tests.py installs it when missing) started here on a free port, with no
persistence, and stopped after.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Self

import httpx
import pytest
from conftest import ACCOUNT_ID, render
from testkit import FakeGateway, ServiceProcess, free_port

SERVICE_KEY = "svc-key-canary-31c9"
GATEWAY_TOKEN = "tok-gw-canary-5e02"
KEYS = {name: f"{name}-key-canary-{index:04d}" for index, name in enumerate(
    ["alice", "bob", "slow", "fast", "strict", "capped", "carol-old", "carol-new", "shared"])}
MODELS = "gpt-4o-mini,gpt-4.1"
UNAUTHORIZED = {"error": "send Authorization: Bearer <SERVICE_API_KEY>"}
CHAT_PATH = f"/v1/{ACCOUNT_ID}/demo-gw/openai/chat/completions"


def sha256(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


CALLERS_TOML = f"""\
# callers for the tests
[callers.alice]
key_sha256 = "{sha256(KEYS['alice'])}"
models = ["gpt-4o-mini"]

[callers.bob]
key_sha256 = "{sha256(KEYS['bob'])}"
models = ["gpt-4.1"]

[callers.slow]
key_sha256 = "{sha256(KEYS['slow'])}"
requests_per_minute = 1

[callers.fast]
key_sha256 = "{sha256(KEYS['fast'])}"
requests_per_minute = 3

[callers.strict]
key_sha256 = "{sha256(KEYS['strict'])}"
models = ["gpt-4o-mini"]
requests_per_minute = 1

[callers.capped]
key_sha256 = "{sha256(KEYS['capped'])}"
max_tokens = 100

[callers.carol]
key_sha256 = ["{sha256(KEYS['carol-old'])}", "{sha256(KEYS['carol-new'])}"]
"""


class Service(ServiceProcess):
    """The rendered service (tools/testkit.py) with an HTTP client and its request log."""

    def __enter__(self) -> Self:
        super().__enter__()
        self.client = httpx.Client(base_url=self.url, timeout=30)
        return self

    def chat(self, key: str, **body) -> httpx.Response:
        return self.client.post("/chat", json={"prompt": "hi", **body},
                                headers={"authorization": f"Bearer {key}"})

    def log_lines(self, until=bool) -> list[dict]:
        """The request log lines (one JSON line per request, written just after its answer)
        once ``until(lines)`` holds, or after 10 s."""
        give_up = time.monotonic() + 10
        while True:
            lines = [json.loads(line) for line in self.log.read_text().splitlines()
                     if line.startswith('{"event": "request"')]
            if until(lines) or time.monotonic() > give_up:
                return lines
            time.sleep(0.05)

    def __exit__(self, *exc) -> None:
        self.client.close()
        super().__exit__(*exc)

def service_env(project: Path, gateway: FakeGateway, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CF_", "CLOUDFLARE_", "AI_GATEWAY_", "OPENAI_", "SERVICE_"))}
    return {**env, "PYTHONPATH": str(project / "src"), "CLOUDFLARE_ACCOUNT_ID": ACCOUNT_ID,
            "AI_GATEWAY_BASE_URL": gateway.url, "CF_AIG_TOKEN": GATEWAY_TOKEN,
            "SERVICE_API_KEY": SERVICE_KEY, "ALLOWED_MODELS": MODELS, **extra}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return render(tmp_path_factory.mktemp("callers") / "svc", language="python-app",
                  gateway_id="demo-gw")


@pytest.fixture(scope="module")
def gateway():
    with FakeGateway() as fake:
        yield fake


@pytest.fixture(scope="module")
def service(project, gateway, tmp_path_factory):
    """One service with the callers of CALLERS_TOML (each test uses callers of its own)."""
    folder = tmp_path_factory.mktemp("callers-service")
    (folder / "callers.toml").write_text(CALLERS_TOML)
    env = service_env(project, gateway, CALLERS_FILE=str(folder / "callers.toml"))
    with Service(project, env, folder / "service.log") as running:
        yield running


def upstream_after(gateway: FakeGateway, send) -> list[dict]:
    """The requests that reached the gateway while ``send()`` ran."""
    before = len(gateway.requests)
    send()
    return gateway.requests[before:]


def test_each_caller_is_held_to_its_models(service, gateway):
    answers = {}

    def send():
        for caller, model in [("alice", "gpt-4o-mini"), ("alice", "gpt-4.1"),
                              ("bob", "gpt-4.1"), ("bob", "gpt-4o-mini")]:
            answers[caller, model] = service.chat(KEYS[caller], model=model)

    sent = upstream_after(gateway, send)

    assert [r.status_code for r in answers.values()] == [200, 400, 200, 400]
    assert answers["alice", "gpt-4.1"].json() == {
        "error": 'model "gpt-4.1" is not allowed for caller "alice" (callers.toml models)'}
    assert answers["bob", "gpt-4o-mini"].json() == {
        "error": 'model "gpt-4o-mini" is not allowed for caller "bob" (callers.toml models)'}
    assert [(r["path"], r["body"]["model"]) for r in sent] == [
        (CHAT_PATH, "gpt-4o-mini"), (CHAT_PATH, "gpt-4.1")]


def test_each_caller_is_held_to_its_own_rate_and_nothing_goes_upstream_over_it(service, gateway):
    answers: list[tuple[str, httpx.Response]] = []

    def send():
        for caller in ["slow", "fast", "slow", "fast", "fast", "fast"]:
            answers.append((caller, service.chat(KEYS[caller])))

    sent = upstream_after(gateway, send)

    assert [(caller, r.status_code) for caller, r in answers] == [
        ("slow", 200), ("fast", 200), ("slow", 429), ("fast", 200), ("fast", 200), ("fast", 429)]
    assert len(sent) == 4
    slow, fast = answers[2][1], answers[5][1]
    assert slow.json() == {"error": 'caller "slow" is over its limit of 1 requests per minute'}
    assert fast.json() == {"error": 'caller "fast" is over its limit of 3 requests per minute'}
    for refused in (slow, fast):
        assert 1 <= int(refused.headers["retry-after"]) <= 60


def test_a_refused_request_does_not_use_up_the_callers_rate(service, gateway):
    refused = service.chat(KEYS["strict"], model="gpt-4.1")
    sent = upstream_after(gateway, lambda: service.chat(KEYS["strict"]).raise_for_status())

    assert refused.status_code == 400
    assert len(sent) == 1


def test_the_upstream_metadata_names_the_caller_and_the_service(service, gateway):
    sent = upstream_after(gateway, lambda: service.chat(
        KEYS["alice"], gateway={"metadata": {"team": "search", "ticket": 42}}).raise_for_status())

    assert [json.loads(r["headers"]["cf-aig-metadata"]) for r in sent] == [
        {"caller": "alice", "service": "demo-svc", "team": "search", "ticket": 42}]


@pytest.mark.parametrize("metadata", [{"caller": "bob"}, {"service": "other"}])
def test_a_caller_cannot_set_its_own_identity(service, gateway, metadata):
    answers = []
    sent = upstream_after(gateway, lambda: answers.append(
        service.chat(KEYS["alice"], gateway={"metadata": metadata})))

    assert (answers[0].status_code, answers[0].json()) == (400, {
        "error": 'gateway.metadata may not set "caller" or "service": the service sets them'})
    assert sent == []


def test_a_caller_may_add_at_most_three_metadata_keys(service, gateway):
    answers = []
    four = {"a": 1, "b": 2, "c": 3, "d": 4}
    sent = upstream_after(gateway, lambda: answers.append(
        service.chat(KEYS["alice"], gateway={"metadata": four})))

    assert (answers[0].status_code, answers[0].json()) == (400, {
        "error": "gateway.metadata may have at most 3 keys: the service adds caller and service "
                 "(the gateway allows 5)"})
    assert sent == []


def test_max_tokens_is_held_to_the_callers_cap_and_the_cap_is_sent(service, gateway):
    answers = []

    def send():
        for asked in (101, None, 100, 7):
            body = {} if asked is None else {"max_tokens": asked}
            answers.append(service.chat(KEYS["capped"], **body))

    sent = upstream_after(gateway, send)

    assert [r.status_code for r in answers] == [400, 200, 200, 200]
    assert answers[0].json() == {
        "error": "max_tokens 101 is over caller \"capped\"'s cap of 100 (callers.toml max_tokens)"}
    assert [r["body"]["max_tokens"] for r in sent] == [100, 100, 7]


@pytest.mark.parametrize("max_tokens", [0, 1000001, 1.5, "10", True])
def test_max_tokens_must_be_a_whole_number_in_range(service, gateway, max_tokens):
    answers: list = []
    sent = upstream_after(gateway, lambda: answers.append(
        service.chat(KEYS["alice"], max_tokens=max_tokens)))

    assert (answers[0].status_code, answers[0].json()) == (
        400, {"error": '"max_tokens" must be an integer from 1 to 1000000'})
    assert sent == []


def test_both_keys_of_a_caller_in_rotation_work(service):
    answers = [service.chat(KEYS["carol-old"]), service.chat(KEYS["carol-new"])]

    assert [r.status_code for r in answers] == [200, 200]
    def carol(lines):
        return [line for line in lines if line["caller"] == "carol"]

    assert len(carol(service.log_lines(until=lambda lines: len(carol(lines)) == 2))) == 2


def test_a_wrong_key_is_401_with_the_same_answer_as_before(service, gateway):
    answers = []
    sent = upstream_after(gateway, lambda: answers.append(service.chat(sha256(KEYS["alice"]))))

    assert (answers[0].status_code, answers[0].json()) == (401, UNAUTHORIZED)
    assert answers[0].headers["www-authenticate"] == "Bearer"
    assert sent == []


def test_service_api_key_is_the_caller_default_beside_named_callers(service, gateway):
    sent = upstream_after(gateway, lambda: service.chat(SERVICE_KEY).raise_for_status())

    assert json.loads(sent[0]["headers"]["cf-aig-metadata"]) == {
        "caller": "default", "service": "demo-svc"}


def test_the_log_line_names_the_caller_and_never_a_key_or_its_hash(service):
    before = len(service.log_lines(until=lambda lines: True))
    service.chat(KEYS["bob"], model="gpt-4.1").raise_for_status()
    service.chat(KEYS["slow"])  # over its rate since the rate test (or the first of it)
    service.chat(KEYS["slow"])

    lines = service.log_lines(until=lambda lines: len(lines) >= before + 3)
    assert {"caller": "bob", "status": 200, "error": None}.items() <= lines[-3].items()
    assert {"caller": "slow", "status": 429, "error": "rate_limited"}.items() <= lines[-1].items()
    text = service.log.read_text()
    for secret in [*KEYS.values(), SERVICE_KEY, GATEWAY_TOKEN]:
        assert secret not in text
        assert sha256(secret) not in text


# ---- callers add / remove, then a fresh service ------------------------------------------


def callers_command(project: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "demo_svc", "callers", *args], cwd=project,
                          env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def removed(project, gateway, tmp_path_factory):
    """``callers add dave`` then ``callers remove dave`` on the rendered callers.toml, then a
    service on that file: (service, dave's key, the add command's result)."""
    folder = tmp_path_factory.mktemp("removed")
    shutil.copy(project / "callers.toml", folder / "callers.toml")
    env = service_env(project, gateway, CALLERS_FILE=str(folder / "callers.toml"))
    added = callers_command(project, "add", "dave", "--rpm", "5", env=env)
    with_dave = (folder / "callers.toml").read_text()
    removed = callers_command(project, "remove", "dave", env=env)
    assert (added.returncode, removed.returncode) == (0, 0), added.stderr + removed.stderr
    with Service(project, env, folder / "service.log") as running:
        yield running, added.stdout.strip(), added, with_dave


def test_callers_add_prints_the_key_once_and_writes_only_its_hash(removed, project):
    _, key, added, with_dave = removed

    assert added.stdout == f"{key}\n" and len(key) == 43  # 32 bytes, base64url
    assert added.stderr.startswith('caller "dave" added to ')
    assert key not in with_dave
    assert f'[callers.dave]\nkey_sha256 = "{sha256(key)}"\nrequests_per_minute = 5\n' in with_dave
    assert with_dave.startswith((project / "callers.toml").read_text())  # comments kept


def test_a_removed_callers_key_is_401(removed, gateway):
    service, key, _, _ = removed
    answers = []
    sent = upstream_after(gateway, lambda: answers.append(service.chat(key)))

    assert (answers[0].status_code, answers[0].json()) == (401, UNAUTHORIZED)
    assert sent == []


def test_service_api_key_alone_still_works_as_the_caller_default(removed, gateway):
    service, _, _, _ = removed
    sent = upstream_after(gateway, lambda: service.chat(SERVICE_KEY).raise_for_status())

    assert json.loads(sent[0]["headers"]["cf-aig-metadata"]) == {
        "caller": "default", "service": "demo-svc"}
    lines = service.log_lines(until=lambda lines: any(l["caller"] == "default" for l in lines))
    assert lines[-1]["caller"] == "default"


def test_callers_add_refuses_a_name_already_there(project, gateway, tmp_path):
    env = service_env(project, gateway, CALLERS_FILE=str(tmp_path / "callers.toml"))
    (tmp_path / "callers.toml").write_text(CALLERS_TOML)

    again = callers_command(project, "add", "alice", env=env)

    assert (again.returncode, again.stdout) == (2, "")
    assert again.stderr == f'error: caller "alice" is already in {tmp_path / "callers.toml"} (remove it first)\n'
    assert (tmp_path / "callers.toml").read_text() == CALLERS_TOML


def test_an_invalid_callers_file_stops_the_start_with_one_line(project, gateway, tmp_path):
    shared = sha256(KEYS["alice"])
    (tmp_path / "callers.toml").write_text(
        f'[callers.a]\nkey_sha256 = "{shared}"\n[callers.b]\nkey_sha256 = "{shared}"\n')
    env = service_env(project, gateway, CALLERS_FILE=str(tmp_path / "callers.toml"))

    started = subprocess.run([sys.executable, "-m", "demo_svc", "serve", "--port", str(free_port())],
                             cwd=project, env=env, capture_output=True, text=True, timeout=60)

    assert started.returncode == 2
    assert started.stderr == (f"error: {tmp_path / 'callers.toml'}: callers.b: a key_sha256 also "
                              "used by callers.a\n")


# ---- one limit held by two processes through one Redis ------------------------------------


@pytest.fixture
def redis_url(tmp_path):
    """A real redis-server on a free loopback port, no persistence, stopped after the test."""
    server = shutil.which("redis-server")
    assert server, "redis-server is missing: apt-get install -y redis-server (tools/run_tests.py does)"
    port = free_port()
    proc = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        give_up = time.monotonic() + 30
        while not _answers_ping(port):
            assert proc.poll() is None and time.monotonic() < give_up, "redis-server did not start"
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _answers_ping(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def test_two_processes_sharing_one_redis_hold_one_limit(project, gateway, redis_url, tmp_path):
    (tmp_path / "callers.toml").write_text(
        f'[callers.shared]\nkey_sha256 = "{sha256(KEYS["shared"])}"\nrequests_per_minute = 3\n')
    env = service_env(project, gateway, CALLERS_FILE=str(tmp_path / "callers.toml"),
                      RATE_LIMIT_STORAGE_URL=redis_url)
    answers = []
    with Service(project, env, tmp_path / "a.log") as a, Service(project, env, tmp_path / "b.log") as b:
        sent = upstream_after(gateway, lambda: answers.extend(
            [(name, s.chat(KEYS["shared"]).status_code) for name, s in
             [("a", a), ("b", b), ("a", a), ("b", b), ("a", a)]]))

    assert answers == [("a", 200), ("b", 200), ("a", 200), ("b", 429), ("a", 429)]
    assert len(sent) == 3


def test_a_rate_limit_storage_that_does_not_answer_refuses_the_request(project, gateway, tmp_path):
    (tmp_path / "callers.toml").write_text(
        f'[callers.shared]\nkey_sha256 = "{sha256(KEYS["shared"])}"\nrequests_per_minute = 3\n')
    env = service_env(project, gateway, CALLERS_FILE=str(tmp_path / "callers.toml"),
                      RATE_LIMIT_STORAGE_URL=f"redis://127.0.0.1:{free_port()}/0")  # nobody there
    answers = []
    with Service(project, env, tmp_path / "service.log") as service:
        sent = upstream_after(gateway, lambda: answers.append(service.chat(KEYS["shared"])))
        lines = service.log_lines(until=len)

    assert (answers[0].status_code, answers[0].json()) == (503, {
        "error": "the rate limit storage did not answer (RATE_LIMIT_STORAGE_URL)"})
    assert sent == []
    assert {"caller": "shared", "status": 503, "error": "unavailable"}.items() <= lines[-1].items()


def test_without_caller_keys_callers_toml_is_unused_and_upstream_names_anonymous(tmp_path, gateway):
    project = render(tmp_path / "open", language="python-app", gateway_id="demo-gw",
                     caller_auth="none")
    (tmp_path / "unused.toml").write_text("not toml at all [")  # not read: no keys taken
    env = service_env(project, gateway, CALLERS_FILE=str(tmp_path / "unused.toml"))
    with Service(project, env, tmp_path / "service.log") as service:
        sent = upstream_after(gateway, lambda: service.chat("any").raise_for_status())

    assert json.loads(sent[0]["headers"]["cf-aig-metadata"]) == {
        "caller": "anonymous", "service": "demo-svc"}
