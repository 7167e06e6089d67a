"""The rendered Worker's callers (issue 20) over real HTTP: `npm run callers` writes
callers.toml and the rate limiting bindings, wrangler's build compiles the table, and
`wrangler dev --local` serves it in front of the loopback fake gateway. One copy of the
"unified-billing" variant (its npm install, shared through a node_modules link), one
`wrangler dev` for the module.

Rate limits are counted by the Workers Rate Limiting binding, which wrangler dev simulates
(miniflare) in windows aligned to the minute; the rate test starts with at least 15 s of a
minute left, so that its few requests fall into one window.
"""
from __future__ import annotations

import hashlib
import json
import re
import subprocess
import time
from pathlib import Path

import pytest
from worker_toolchain import (
    CI_VARIANT,
    FakeGateway,
    WranglerDev,
    copy_project,
    npm_group,
    run,
)

pytestmark = pytest.mark.xdist_group(npm_group(CI_VARIANT))  # its npm install, once per run

ACCOUNT_ID = "0123456789abcdef0123456789abcdef"
SERVICE_KEY = "svc-key-canary-77c1"
GATEWAY_TOKEN = "tok-gw-canary-5e20"
UNAUTHORIZED = {"error": "send Authorization: Bearer <SERVICE_API_KEY>"}
MODELS = "gpt-4o-mini,gpt-4.1-nano"


def callers(project, path: Path, *args: str):
    return run(["node", "scripts/callers.mjs", *args], path, project.env, timeout=120)


def add(project, path: Path, *args: str) -> str:
    """`npm run callers -- add ...`: stdout is the new key alone, one line (32 bytes, base64url)."""
    result = subprocess.run(["node", "scripts/callers.mjs", "add", *args], cwd=path, env=project.env,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}\n", result.stdout), result.stdout
    assert "give it the key above now" in result.stderr
    return result.stdout.strip()


class Service:
    def __init__(self, dev: WranglerDev, gateway: FakeGateway, keys: dict[str, str], log: Path):
        self.dev, self.gateway, self.keys, self.log = dev, gateway, keys, log

    def chat(self, key: str, body: dict) -> tuple[int, dict[str, str], dict]:
        status, headers, data = self.dev.request(
            "POST", "/chat", json.dumps(body).encode(),
            {"content-type": "application/json", "authorization": f"Bearer {key}"},
        )
        return status, headers, json.loads(data)


@pytest.fixture(scope="module")
def service(worker_project, tmp_path_factory):
    project = worker_project(CI_VARIANT)
    path = copy_project(project.path, tmp_path_factory.mktemp("callers") / "svc", project.path / "node_modules")
    config = path / "wrangler.toml"
    config.write_text(re.sub(r'(?m)^ALLOWED_MODELS = ".*"$', f'ALLOWED_MODELS = "{MODELS}"', config.read_text()))
    keys = {
        "alice": add(project, path, "alice", "--models", "gpt-4o-mini", "--rpm", "2"),
        "bob": add(project, path, "bob", "--max-tokens", "50"),
        "erin": add(project, path, "erin", "--rpm", "3"),
        "carol": add(project, path, "carol"),
    }
    callers(project, path, "remove", "carol").check()
    (path / ".dev.vars").write_text(f"CF_AIG_TOKEN={GATEWAY_TOKEN}\nSERVICE_API_KEY={SERVICE_KEY}\n")
    log = path.parent / "dev.log"
    with FakeGateway() as gateway:
        variables = {"CLOUDFLARE_ACCOUNT_ID": ACCOUNT_ID, "AI_GATEWAY_BASE_URL": f"http://127.0.0.1:{gateway.port}/v1"}
        extra = [arg for name, value in variables.items() for arg in ("--var", f"{name}:{value}")]
        with WranglerDev(path, project.env, extra, log) as dev:
            yield Service(dev, gateway, keys, log)


def test_callers_add_writes_hashes_and_one_binding_per_rate(service):
    """callers.toml keeps its comments and gets only hashes; wrangler.toml one binding per
    requests_per_minute."""
    path = service.dev.cwd
    text = (path / "callers.toml").read_text()
    assert text.startswith("# Who may call demo-svc")
    for name in ("alice", "bob", "erin"):
        digest = hashlib.sha256(service.keys[name].encode()).hexdigest()
        assert f'[callers.{name}]\nkey_sha256 = "{digest}"' in text
        assert service.keys[name] not in text
    assert "carol" not in text
    config = (path / "wrangler.toml").read_text()
    assert re.findall(r'name = "(CALLERS_RPM_\d+)"', config) == ["CALLERS_RPM_2", "CALLERS_RPM_3"]
    assert "simple = { limit = 2, period = 60 }" in config


def test_each_caller_is_held_to_its_models(service):
    before = len(service.gateway.requests)
    status, _, body = service.chat(service.keys["alice"], {"prompt": "Hi", "model": "gpt-4.1-nano"})
    refused = 'model "gpt-4.1-nano" is not allowed for caller "alice" (callers.toml models)'
    assert (status, body) == (400, {"error": refused})
    assert len(service.gateway.requests) == before
    status, _, body = service.chat(service.keys["bob"], {"prompt": "Hi", "model": "gpt-4.1-nano"})
    assert (status, body["reply"]) == (200, "Hello there")
    assert service.gateway.requests[-1]["body"]["model"] == "gpt-4.1-nano"


def test_a_max_tokens_cap_is_sent_and_a_request_over_it_refused(service):
    status, _, _ = service.chat(service.keys["bob"], {"prompt": "Hi"})
    assert status == 200
    assert service.gateway.requests[-1]["body"]["max_tokens"] == 50
    before = len(service.gateway.requests)
    status, _, body = service.chat(service.keys["bob"], {"prompt": "Hi", "max_tokens": 51})
    refused = "max_tokens 51 is over caller \"bob\"'s cap of 50 (callers.toml max_tokens)"
    assert (status, body) == (400, {"error": refused})
    assert len(service.gateway.requests) == before


def room_in_this_minute() -> None:
    """Waits, if need be, for the next minute when less than 15 s of this one is left: the
    simulated windows turn on the minute, and the rate test's few requests must share one.
    (Only this test spends alice's and erin's rates; their other requests are refused first.)"""
    left = 60 - time.time() % 60
    if left < 15:
        time.sleep(left + 0.2)


def test_over_its_rate_a_caller_gets_429_and_nothing_goes_upstream(service):
    room_in_this_minute()
    for name, limit in (("alice", 2), ("erin", 3)):
        for _ in range(limit):
            status, _, _ = service.chat(service.keys[name], {"prompt": "Hi"})
            assert status == 200, name
        before = len(service.gateway.requests)
        status, headers, body = service.chat(service.keys[name], {"prompt": "Hi"})
        assert (status, body) == (429, {"error": f'caller "{name}" is over its limit of {limit} requests per minute'})
        assert headers["retry-after"] == "60"
        assert len(service.gateway.requests) == before
    status, _, _ = service.chat(service.keys["bob"], {"prompt": "Hi"})  # no rate: not held back
    assert status == 200


def test_the_upstream_metadata_names_the_caller_and_the_service(service):
    status, _, _ = service.chat(service.keys["bob"], {"prompt": "Hi", "gateway": {"metadata": {"team": "search"}}})
    assert status == 200
    sent = json.loads(service.gateway.requests[-1]["headers"]["cf-aig-metadata"])
    assert sent == {"caller": "bob", "service": "demo-svc", "team": "search"}


@pytest.mark.parametrize("metadata", [{"caller": "alice"}, {"service": "other"}])
def test_a_caller_cannot_set_who_it_is(service, metadata):
    before = len(service.gateway.requests)
    status, _, body = service.chat(service.keys["bob"], {"prompt": "Hi", "gateway": {"metadata": metadata}})
    clash = 'gateway.metadata may not set "caller" or "service": the service sets them'
    assert (status, body) == (400, {"error": clash})
    assert len(service.gateway.requests) == before


def test_a_removed_key_is_401(service):
    before = len(service.gateway.requests)
    status, headers, body = service.chat(service.keys["carol"], {"prompt": "Hi"})
    assert (status, body, headers["www-authenticate"]) == (401, UNAUTHORIZED, "Bearer")
    assert len(service.gateway.requests) == before


def test_service_api_key_alone_is_the_caller_default(service):
    status, _, _ = service.chat(SERVICE_KEY, {"prompt": "Hi"})
    assert status == 200
    sent = json.loads(service.gateway.requests[-1]["headers"]["cf-aig-metadata"])
    assert sent == {"caller": "default", "service": "demo-svc"}


def test_the_log_names_callers_never_their_keys(service):
    service.chat(service.keys["bob"], {"prompt": "Hi"})
    deadline = time.monotonic() + 10
    while '"caller":"bob"' not in service.log.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    text = service.log.read_text()
    lines = [json.loads(line[line.index("{"):]) for line in text.splitlines() if '"event":"request"' in line]
    assert {"alice", "bob", "erin", "default"} <= {line["caller"] for line in lines}
    for key in service.keys.values():
        assert key not in text
        assert hashlib.sha256(key.encode()).hexdigest() not in text


def test_an_invalid_callers_toml_stops_the_build(service):
    path = service.dev.cwd
    good = (path / "callers.toml").read_text()
    try:
        (path / "callers.toml").write_text(good + '\n[callers.zed]\nkey_sha256 = "not-hex"\n')
        result = run(["node", "scripts/callers.mjs", "build"], path, service.dev.env, timeout=120)
    finally:
        (path / "callers.toml").write_text(good)
    assert result.returncode == 1
    assert result.stdout.strip() == "error: callers.toml: callers.zed.key_sha256: not 64 hex characters (a SHA-256)"


def test_adding_an_existing_caller_is_refused(service):
    path = service.dev.cwd
    result = run(["node", "scripts/callers.mjs", "add", "bob"], path, service.dev.env, timeout=120)
    assert result.returncode == 2
    assert result.stdout.strip() == 'error: caller "bob" is already in callers.toml (remove it first)'


def test_jsonc_gets_the_binding_in_every_environment(rendered, worker_project, tmp_path):
    """wrangler.jsonc (three environments): the binding goes into each "ratelimits" array and
    the build accepts the result."""
    project = worker_project(CI_VARIANT)
    path = copy_project(rendered("all-byok"), tmp_path / "jsonc", project.path / "node_modules")
    add(project, path, "alice", "--rpm", "4")
    config = (path / "wrangler.jsonc").read_text()
    # The top level and env.development, env.staging, env.production: bindings are not inherited.
    assert config.count('"name": "CALLERS_RPM_4"') == 4
    assert config.count('"simple": { "limit": 4, "period": 60 }') == 4
    callers(project, path, "build").check()
    assert "CALLERS_RPM_4: RateLimit" in (path / "worker-configuration.d.ts").read_text()
