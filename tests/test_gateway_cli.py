"""scripts/ai_gateway.py run as a subprocess against the loopback v4 API."""
from __future__ import annotations

import json
import os
import pty
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ACCOUNT_ID, TEMPLATE_ROOT
from fake_cloudflare_api import (
    GATEWAYS,
    LIST,
    READ_ONLY_TOKEN,
    SETTINGS,
    TOKEN,
    DrippingServer,
    FakeCloudflareAPI,
)
from testkit import free_port

SCRIPT = TEMPLATE_ROOT / "template" / "_shared" / "scripts" / "ai_gateway.py"
SCHEMA = SCRIPT.with_name("ai_gateway.schema.json")
# The script supports Python 3.11+: AI_GATEWAY_TEST_PYTHON=/path/to/python3.11 runs these
# tests with another interpreter (the default is the one running pytest).
PYTHON = os.environ.get("AI_GATEWAY_TEST_PYTHON") or sys.executable
ENV_IDS = {"development": "demo-gw-development", "staging": "demo-gw-staging",
           "production": "demo-gw"}


def toml_value(value) -> str:
    return json.dumps(value)  # true/false, ints and "strings" are the same in TOML


def write_config(path: Path, envs=("production",), account_id=ACCOUNT_ID, extra=None,
                 **overrides) -> Path:
    lines = ["# test settings", f"account_id = {toml_value(account_id)}"]
    for env in envs:
        lines += ["", f"[gateways.{env}]", f"id = {toml_value(ENV_IDS[env])}  # comment"]
        for key, value in {**SETTINGS, **overrides, **(extra or {})}.items():
            if value is not None:
                lines.append(f"{key} = {toml_value(value)}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def fake():
    with FakeCloudflareAPI() as api:
        yield api


@pytest.fixture
def config(tmp_path):
    return write_config(tmp_path / "ai-gateway.toml")


def base_env(fake=None, token=TOKEN, **extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CLOUDFLARE_", "CF_", "AI_GATEWAY_"))}
    env.update({"AI_GATEWAY_RETRY_BASE_DELAY": "0.01", "AI_GATEWAY_TIMEOUT": "5"})
    if fake is not None:
        env["CLOUDFLARE_API_BASE_URL"] = fake.base_url
    if token:
        env["CLOUDFLARE_API_TOKEN"] = token
    env.update(extra)
    return {k: v for k, v in env.items() if v is not None}


def cli(*args, fake=None, config=None, env=None, script=SCRIPT, cwd=None, stdin=None):
    cmd = [PYTHON, str(script), *args]
    if config is not None:
        cmd += ["--config", str(config)]
    proc = subprocess.run(cmd, env=env if env is not None else base_env(fake), cwd=cwd,
                          capture_output=True, text=True, timeout=60,
                          stdin=stdin if stdin is not None else subprocess.DEVNULL)
    output = proc.stdout + proc.stderr
    # The token must never be printed, whatever happened: not even 8 characters of it, in any
    # case, across line breaks.
    squeezed = "".join(output.split()).lower()
    for secret in (TOKEN, READ_ONLY_TOKEN):
        for i in range(len(secret) - 7):
            assert secret[i:i + 8].lower() not in squeezed
    assert "Traceback" not in output
    return proc


def last_line(proc) -> str:
    lines = proc.stderr.strip().splitlines()
    return lines[-1] if lines else ""


def assert_failure(proc, code: int, *fragments: str) -> str:
    assert proc.returncode == code, (proc.stdout, proc.stderr)
    line = last_line(proc)
    assert line.startswith("error: "), proc.stderr
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    return line


def create_body(gateway_id: str, **overrides) -> dict:
    return {"id": gateway_id, **SETTINGS, **overrides}


def put_body(seeded: dict, **file_settings) -> dict:
    """What update/sync PUT for a gateway seeded with `seeded`: its updatable, non-null
    settings (the fake's defaults included) with the file's settings applied."""
    current = {"authentication": False, "logpush": False, "workers_ai_billing_mode": "postpaid",
               **{k: v for k, v in seeded.items() if k != "id" and v is not None}}
    return {**current, **SETTINGS, **file_settings}


# ------------------------------------------------------------------ help and settings

@pytest.mark.parametrize("command", ["list", "get", "create", "update", "delete", "sync"])
def test_help_for_each_subcommand(command):
    proc = cli(command, "--help", env=base_env())
    assert proc.returncode == 0
    assert f"ai_gateway.py {command}" in proc.stdout
    for option in ("--json", "--verbose", "--config", "--timeout"):
        assert option in proc.stdout
    if command == "sync":
        assert "--dry-run" in proc.stdout and "--env" in proc.stdout
    if command == "delete":
        assert "--yes" in proc.stdout


def test_top_level_help_names_every_command_and_the_variables():
    proc = cli("--help", env=base_env())
    assert proc.returncode == 0
    for word in ("list", "get", "create", "update", "delete", "sync", "CLOUDFLARE_API_TOKEN",
                 "CF_API_TOKEN", "CLOUDFLARE_ACCOUNT_ID", "CLOUDFLARE_API_BASE_URL"):
        assert word in proc.stdout


@pytest.mark.parametrize("text, fragment", [
    ("account_id = 1\n[gateways.production]\nid='x'\n", "account_id must be a string"),
    ('account_id = ""\n', "no [gateways.<environment>] table"),
    ('[gateways.production]\nid = "Bad_ID"\n', "id must be 1 to 64 lowercase"),
    ('[gateways.production]\nid = "a--b"\n', "in groups joined by single hyphens"),
    ('[gateways.production]\nid = ".."\n', 'got ".."'),
    ('[gateways.production]\nid = "' + "a" * 65 + '"\n', "1 to 64"),
    ('[gateways.production]\nid = "gw"\ncache_invalidate_on_update = true\n'
     'collect_logs = true\ncreated_at = "x"\n', "created_at is set by Cloudflare"),
    ('[gateways.production]\nid = "gw"\ncache_ttl = 0\n',
     "cache_invalidate_on_update is missing (the API requires it)"),
    ('[gateways.production]\nid = "gw"\ncache_invalidate_on_update = true\ncollect_logs = true\n'
     'cache_tll = 60\n', "[gateways.production] cache_tll is not a setting the API knows"),
    ('[gateways.production]\nid = "gw"\ncache_invalidate_on_update = true\ncollect_logs = true\n'
     '[[gateways.production.otel]]\nurl = "https://o.example"\nheaders = {}\nauthorization = "x"\n',
     "otel[0].authorization: a secret never goes in the file"),
    ('[gateways.production]\nid = "gw"\ncache_invalidate_on_update = true\ncollect_logs = true\n'
     '[provider_configs.k]\nprovider_slug = "openai"\n', "give the key as secret_env"),
    ('[gateways.production]\nid = "gw"\ncache_invalidate_on_update = true\ncollect_logs = true\n'
     '[routes."a b"]\nelements = []\n', "a route name is 1 to 64 letters"),
    ('[gateways.production]\nid = "gw"\ncache_invalidate_on_update = true\ncollect_logs = true\n'
     '[[routes.r.elements]]\nid = "start"\ntype = "start"\n'
     'outputs = { next = { elementId = "nowhere" } }\n',
     'element "start": outputs.next leads to "nowhere", which no element has'),
    ('[gateways.production]\nid = "gw"\ncache_invalidate_on_update = true\ncollect_logs = true\n'
     '[[routes.r.elements]]\nid = "m"\ntype = "model"\noutputs = {}\n',
     "routes.r elements[0].properties is missing (the API requires it)"),
    ("this is not toml", "is not valid TOML"),
])
def test_bad_settings_file_is_one_line_exit_2(fake, tmp_path, text, fragment):
    config = tmp_path / "ai-gateway.toml"
    config.write_text(text)
    proc = cli("sync", fake=fake, config=config)
    assert_failure(proc, 2, fragment, str(config))
    assert fake.requests == []


def test_bad_setting_values_are_rejected_before_any_request(fake, tmp_path):
    for overrides, fragment in [({"cache_ttl": -1}, "cache_ttl must be 0 or more (got -1)"),
                                ({"collect_logs": "yes"}, "collect_logs must be true or false"),
                                ({"rate_limiting_technique": "leaky"}, "must be \"fixed\" or"),
                                ({"retry_max_attempts": 6}, "from 1 to 5"),
                                ({"retry_delay": 5001}, "from 0 to 5000"),
                                ({"retry_backoff": "random"}, '"constant" or "linear" or'),
                                ({"byok_only": 1}, "byok_only must be true or false")]:
        config = write_config(tmp_path / "ai-gateway.toml", **overrides)
        assert_failure(cli("sync", fake=fake, config=config), 2, fragment)
    assert fake.requests == []


def test_missing_settings_file(fake, tmp_path):
    proc = cli("sync", fake=fake, config=tmp_path / "nope.toml")
    assert_failure(proc, 2, "not found", "--config")


def test_default_config_is_next_to_scripts_folder_whatever_the_cwd(fake, tmp_path):
    project = tmp_path / "project"
    (project / "scripts").mkdir(parents=True)
    shutil.copy(SCRIPT, project / "scripts" / "ai_gateway.py")
    shutil.copy(SCHEMA, project / "scripts" / "ai_gateway.schema.json")
    write_config(project / "ai-gateway.toml")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = cli("sync", fake=fake, script=project / "scripts" / "ai_gateway.py", cwd=elsewhere)
    assert proc.returncode == 0, proc.stderr
    assert fake.calls() == [LIST, ("POST", GATEWAYS)]


# ------------------------------------------------------------------ sync

def test_first_sync_creates_second_sync_writes_nothing(fake, config):
    first = cli("sync", fake=fake, config=config)
    assert first.returncode == 0, first.stderr
    assert fake.calls() == [LIST, ("POST", GATEWAYS)]
    post = fake.requests[1]
    assert post.body == create_body("demo-gw")
    assert post.headers["Authorization"] == f"Bearer {TOKEN}"
    assert post.headers["Content-Type"] == "application/json"
    assert f"account {ACCOUNT_ID} (from ai-gateway.toml)" in first.stdout
    assert "production: demo-gw: creating" in first.stdout
    assert "1 created, 0 updated, 0 unchanged (2 API requests, 1 write)" in first.stdout

    fake.requests.clear()
    second = cli("sync", fake=fake, config=config)
    assert second.returncode == 0, second.stderr
    assert fake.calls() == [LIST]
    assert fake.writes() == []
    assert "production: demo-gw: unchanged" in second.stdout
    assert "(1 API request, 0 writes)" in second.stdout


def test_three_environments_one_read_three_creates_then_one_read(fake, tmp_path):
    config = write_config(tmp_path / "ai-gateway.toml",
                          envs=("development", "staging", "production"))
    first = cli("sync", "--json", fake=fake, config=config)
    assert first.returncode == 0, first.stderr
    assert fake.calls() == [LIST] + [("POST", GATEWAYS)] * 3
    assert [r.body["id"] for r in fake.writes()] == list(ENV_IDS.values())
    report = json.loads(first.stdout)
    assert (report["requests"], report["writes"]) == (4, 3)
    assert [g["action"] for g in report["gateways"]] == ["create"] * 3

    fake.requests.clear()
    second = cli("sync", "--json", fake=fake, config=config)
    report = json.loads(second.stdout)
    assert fake.calls() == [LIST]
    assert (report["requests"], report["writes"]) == (1, 0)
    assert [g["action"] for g in report["gateways"]] == ["unchanged"] * 3


def test_drift_is_updated_with_a_printed_diff(fake, config):
    fake.seed(**create_body("demo-gw", cache_ttl=300, rate_limiting_limit=50,
                            rate_limiting_technique="sliding", logpush=True))
    proc = cli("sync", fake=fake, config=config)
    assert proc.returncode == 0, proc.stderr
    assert fake.calls() == [LIST, ("PUT", f"{GATEWAYS}/demo-gw")]
    body = fake.requests[1].body
    # PUT: the whole configuration (logpush, set elsewhere, included), the file applied, no id
    assert body == put_body({"logpush": True}) and "id" not in body
    assert "production: demo-gw: updating" in proc.stdout
    assert "    cache_ttl: 300 -> 0" in proc.stdout
    assert "    rate_limiting_limit: 50 -> 100" in proc.stdout
    assert "    rate_limiting_technique: sliding -> fixed" in proc.stdout
    assert "logpush" not in proc.stdout  # not in the file: not managed
    assert "authentication" not in proc.stdout  # matches

    fake.requests.clear()
    assert cli("sync", fake=fake, config=config).returncode == 0
    assert fake.writes() == []


def test_null_api_values_equal_off(fake, config):
    fake.seed(**create_body("demo-gw", cache_ttl=None))
    proc = cli("sync", fake=fake, config=config)
    assert proc.returncode == 0 and "unchanged" in proc.stdout
    assert fake.writes() == []


def test_dry_run_writes_nothing_and_shows_the_plan(fake, tmp_path):
    config = write_config(tmp_path / "ai-gateway.toml",
                          envs=("development", "staging", "production"))
    fake.seed(**create_body("demo-gw", collect_logs=False))
    fake.seed(**create_body("demo-gw-staging"))
    proc = cli("sync", "--dry-run", fake=fake, config=config)
    assert proc.returncode == 0, proc.stderr
    assert fake.calls() == [LIST]
    assert "dry run: nothing is written" in proc.stdout
    assert "development: demo-gw-development: create" in proc.stdout
    assert "staging: demo-gw-staging: unchanged" in proc.stdout
    assert "production: demo-gw: update\n    collect_logs: false -> true" in proc.stdout
    assert "plan: 1 to create, 1 to update, 1 unchanged" in proc.stdout

    plan = json.loads(cli("sync", "--dry-run", "--json", fake=fake, config=config).stdout)
    assert plan["dry_run"] is True and plan["writes"] == 0
    assert plan["gateways"][2] == {"env": "production", "id": "demo-gw", "action": "update",
                                   "changes": {"collect_logs": {"old": False, "new": True}}}
    assert fake.writes() == []


def test_dry_run_without_token_shows_the_file_offline(config):
    proc = cli("sync", "--dry-run", config=config,
               env=base_env(token=None, CLOUDFLARE_API_BASE_URL="http://127.0.0.1:9"))
    assert proc.returncode == 0, proc.stderr
    assert "not compared with Cloudflare" in proc.stdout
    assert "production: demo-gw\n    cache_ttl = 0" in proc.stdout
    assert "CLOUDFLARE_API_TOKEN" in proc.stderr


def test_sync_one_environment(fake, tmp_path):
    config = write_config(tmp_path / "ai-gateway.toml",
                          envs=("development", "staging", "production"))
    proc = cli("sync", "--env", "staging", fake=fake, config=config)
    assert proc.returncode == 0, proc.stderr
    assert fake.calls() == [LIST, ("POST", GATEWAYS)]
    assert fake.requests[1].body == create_body("demo-gw-staging")
    assert_failure(cli("sync", "--env", "qa", fake=fake, config=config), 2,
                   "unknown environment 'qa'", "development, staging, production")


def test_extra_keys_are_sent_as_is_and_managed(fake, tmp_path):
    config = write_config(tmp_path / "ai-gateway.toml",
                          extra={"log_management": 10000, "logpush": False,
                                 "log_management_strategy": "DELETE_OLDEST"})
    assert cli("sync", fake=fake, config=config).returncode == 0
    assert fake.requests[1].body == create_body(
        "demo-gw", log_management=10000, logpush=False, log_management_strategy="DELETE_OLDEST")
    fake.gateways[ACCOUNT_ID]["demo-gw"]["log_management"] = 500  # changed in the dashboard
    fake.requests.clear()
    proc = cli("sync", fake=fake, config=config)
    assert "    log_management: 500 -> 10000" in proc.stdout
    assert fake.calls() == [LIST, ("PUT", f"{GATEWAYS}/demo-gw")]
    assert fake.requests[1].body["log_management"] == 10000


@pytest.mark.parametrize("result_info, pages", [(True, 2), (False, 3)])
def test_sync_reads_every_page_once(tmp_path, result_info, pages):
    """Pages of 100 until an empty page; a page shorter than the per_page the API says it
    used also ends the list (without result_info, only the empty page does)."""
    with FakeCloudflareAPI(result_info=result_info) as fake:
        for i in range(120):
            fake.seed(**create_body(f"a-other-{i:03d}"))
        fake.seed(**create_body("demo-gw"))  # sorts last: page 2
        config = write_config(tmp_path / "ai-gateway.toml")
        proc = cli("sync", fake=fake, config=config)
        assert proc.returncode == 0, proc.stderr
        assert fake.calls() == [("GET", f"{GATEWAYS}?page={p}&per_page=100")
                                for p in range(1, pages + 1)]
        assert "unchanged" in proc.stdout
        listed = json.loads(cli("list", "--json", fake=fake, config=config).stdout)
        assert len(listed) == 121 and listed[-1]["id"] == "demo-gw"


def test_a_server_with_smaller_pages_is_read_to_the_end(tmp_path):
    """The API may serve fewer than the 100 asked for: a page of its own size is not short."""
    with FakeCloudflareAPI(max_per_page=20) as fake:
        for i in range(45):
            fake.seed(**create_body(f"gw-{i:02d}"))
        proc = cli("list", "--json", fake=fake, config=write_config(tmp_path / "c.toml"))
        assert len(json.loads(proc.stdout)) == 45
        assert [c[1].split("?")[1] for c in fake.calls()] == [
            f"page={p}&per_page=100" for p in (1, 2, 3)]


def test_exactly_full_last_page_costs_one_empty_page(tmp_path):
    with FakeCloudflareAPI(result_info=False) as fake:
        for i in range(100):
            fake.seed(**create_body(f"gw-{i:03d}"))
        proc = cli("list", "--json", fake=fake, config=write_config(tmp_path / "c.toml"))
        assert len(json.loads(proc.stdout)) == 100
        assert [c[1].split("?")[1] for c in fake.calls()] == ["page=1&per_page=100",
                                                              "page=2&per_page=100"]


def test_the_page_cap_is_an_error_never_a_silent_cut(tmp_path):
    with FakeCloudflareAPI(max_per_page=1) as fake:
        for i in range(101):
            fake.seed(**create_body(f"gw-{i:03d}"))
        config = write_config(tmp_path / "c.toml")
        proc = cli("sync", fake=fake, config=config)
        assert_failure(proc, 1, "listing the gateways failed: the API still had more after "
                                "100 pages (100 gateways)", "nothing was written")
        assert len(fake.requests) == 100 and fake.writes() == []


def test_a_failing_write_stops_the_sync_and_says_what_was_done(fake, tmp_path):
    config = write_config(tmp_path / "ai-gateway.toml",
                          envs=("development", "staging", "production"))
    fake.add_fault(method="POST", status=400,
                   body={"success": False, "errors": [{"code": 7003, "message": "Bad thing"}],
                         "messages": [], "result": None})
    fake.seed(**create_body("demo-gw-development", cache_ttl=5))
    proc = cli("sync", fake=fake, config=config)
    line = assert_failure(proc, 1, 'creating gateway "demo-gw-staging" (staging) failed',
                          "HTTP 400", "Cloudflare error 7003: Bad thing",
                          "already done: demo-gw-development")
    assert "ai-gateway.toml" in line
    assert [c[0] for c in fake.calls()] == ["GET", "PUT", "POST"]  # production not tried


# ------------------------------------------------------------------ the other commands

def test_list_prints_a_table(fake, config):
    fake.seed(**create_body("demo-gw"))
    fake.seed(**create_body("other-gw", authentication=False, cache_ttl=60))
    proc = cli("list", fake=fake, config=config)
    assert proc.returncode == 0, proc.stderr
    header, *rows = proc.stdout.splitlines()
    assert header.split() == ["ID", "AUTH", "CACHE_TTL", "LIMIT", "PER_SECONDS", "WINDOW",
                              "LOGS", "MODIFIED"]
    assert rows[0].split()[:7] == ["demo-gw", "true", "0", "100", "60", "fixed", "true"]
    assert rows[1].split()[:3] == ["other-gw", "false", "60"]
    assert fake.calls() == [LIST]


def test_get(fake, tmp_path):
    config = write_config(tmp_path / "c.toml", envs=("staging", "production"))
    fake.seed(**create_body("demo-gw-staging"))
    proc = cli("get", "--env", "staging", "--json", fake=fake, config=config)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["id"] == "demo-gw-staging"
    assert fake.calls() == [("GET", f"{GATEWAYS}/demo-gw-staging")]
    human = cli("get", "demo-gw-staging", fake=fake, config=config)
    assert human.stdout.splitlines()[0].split() == ["id", "demo-gw-staging"]
    assert "rate_limiting_limit" in human.stdout

    missing = cli("get", "--env", "production", fake=fake, config=config)
    assert_failure(missing, 1, 'reading gateway "demo-gw" failed', "HTTP 404",
                   "Cloudflare error 7002: Not Found", "does not exist",
                   "python3 scripts/ai_gateway.py sync")
    assert_failure(cli("get", fake=fake, config=config), 2, "choose one with --env")


def test_create_and_create_again(fake, config):
    proc = cli("create", fake=fake, config=config)
    assert proc.returncode == 0, proc.stderr
    assert fake.calls() == [("POST", GATEWAYS)]
    assert fake.requests[0].body == create_body("demo-gw")
    again = cli("create", fake=fake, config=config)
    assert_failure(again, 1, "HTTP 400", "Cloudflare error 7001: A gateway with this ID "
                   "already exists (at id)", "use `update` or `sync`")
    assert len(fake.requests) == 2  # a 4xx is not retried


def test_update_reads_then_writes(fake, config):
    fake.seed(**create_body("demo-gw", cache_ttl=99, zdr=True))
    proc = cli("update", "--json", fake=fake, config=config)
    assert proc.returncode == 0, proc.stderr
    assert fake.calls() == [("GET", f"{GATEWAYS}/demo-gw"), ("PUT", f"{GATEWAYS}/demo-gw")]
    assert fake.requests[1].body == put_body({"zdr": True})
    assert json.loads(proc.stdout)["cache_ttl"] == 0
    assert fake.gateways[ACCOUNT_ID]["demo-gw"]["zdr"] is True
    fake.gateways[ACCOUNT_ID].clear()
    fake.requests.clear()
    assert_failure(cli("update", fake=fake, config=config), 1, 'reading gateway "demo-gw"',
                   "HTTP 404", "Cloudflare error 7002", "does not exist")
    assert fake.writes() == []


def test_delete_needs_yes_without_a_terminal(fake, config):
    fake.seed(**create_body("demo-gw"))
    refused = cli("delete", fake=fake, config=config)
    assert_failure(refused, 2, "refusing to delete", "--yes")
    assert fake.requests == []
    proc = cli("delete", "--yes", fake=fake, config=config)
    assert proc.returncode == 0, proc.stderr
    assert fake.calls() == [("DELETE", f"{GATEWAYS}/demo-gw")]
    assert 'deleted gateway "demo-gw" (production)' in proc.stdout
    assert fake.gateways[ACCOUNT_ID] == {}
    fake.seed(**create_body("demo-gw"))
    deleted = json.loads(cli("delete", "--yes", "--json", fake=fake, config=config).stdout)
    assert deleted["id"] == "demo-gw" and deleted["cache_ttl"] == 0  # DELETE returns it


@pytest.mark.parametrize("answer, deleted", [("demo-gw", True), ("y", False)])
def test_delete_asks_on_a_terminal(fake, config, answer, deleted):
    fake.seed(**create_body("demo-gw"))
    controller, terminal = pty.openpty()
    try:
        os.write(controller, (answer + "\n").encode())
        proc = cli("delete", fake=fake, config=config, stdin=terminal)
    finally:
        os.close(terminal)
        os.close(controller)
    assert "Type the gateway id (demo-gw) to confirm" in proc.stderr
    if deleted:
        assert proc.returncode == 0, proc.stderr
        assert fake.calls() == [("DELETE", f"{GATEWAYS}/demo-gw")]
    else:
        assert_failure(proc, 1, "not deleted")
        assert fake.requests == []


# ------------------------------------------------------------------ tokens and accounts

def test_missing_token(fake, config):
    proc = cli("sync", config=config, env=base_env(fake, token=None))
    assert_failure(proc, 2, "no Cloudflare API token", "CLOUDFLARE_API_TOKEN", "CF_API_TOKEN",
                   "AI Gateway > Read and Edit", "API Tokens")
    assert fake.requests == []


def test_cf_api_token_is_accepted(fake, config):
    env = base_env(fake, token=None, CF_API_TOKEN=TOKEN)
    assert cli("sync", config=config, env=env).returncode == 0
    assert fake.requests[0].headers["Authorization"] == f"Bearer {TOKEN}"


def test_bad_token_is_401_with_the_read_permission_and_no_retry(fake, config):
    proc = cli("list", config=config, env=base_env(fake, token="wrong-token-xyz"))
    assert_failure(proc, 1, "listing the gateways failed", "HTTP 401",
                   "Cloudflare error 10000: Authentication error", '"AI Gateway Read"',
                   ACCOUNT_ID)
    assert len(fake.requests) == 1
    assert "wrong-token-xyz" not in proc.stdout + proc.stderr


def test_read_only_token_fails_the_write_naming_the_edit_permission(fake, config):
    proc = cli("sync", config=config, env=base_env(fake, token=READ_ONLY_TOKEN))
    assert_failure(proc, 1, 'creating gateway "demo-gw" (production) failed', "HTTP 403",
                   "Cloudflare error 10000: Authentication error (see https://developers."
                   "cloudflare.com/fundamentals/api/reference/permissions/)", '"AI Gateway Edit"')
    assert [c[0] for c in fake.calls()] == ["GET", "POST"]


def test_account_from_environment_wins_over_the_file(fake, tmp_path):
    other = "f" * 32
    config = write_config(tmp_path / "c.toml")
    proc = cli("sync", config=config, env=base_env(fake, CLOUDFLARE_ACCOUNT_ID=other))
    assert proc.returncode == 0, proc.stderr
    assert fake.requests[0].path == f"/client/v4/accounts/{other}/ai-gateway/gateways"
    assert f"account {other} (from CLOUDFLARE_ACCOUNT_ID)" in proc.stdout

    empty = write_config(tmp_path / "empty.toml", account_id="")
    fake.requests.clear()
    assert_failure(cli("sync", fake=fake, config=empty), 2, "no Cloudflare account id",
                   "CLOUDFLARE_ACCOUNT_ID")
    assert fake.requests == []
    assert_failure(cli("sync", config=empty, env=base_env(fake, CLOUDFLARE_ACCOUNT_ID="nope")),
                   2, "must be 32 hex characters")


def test_verbose_logs_method_and_url_never_the_token(fake, config):
    proc = cli("sync", "--verbose", fake=fake, config=config)
    assert proc.returncode == 0
    assert f"> GET {fake.base_url}/accounts/{ACCOUNT_ID}/ai-gateway/gateways?page=1&per_page=100" \
        in proc.stderr
    assert f"> POST {fake.base_url}/accounts/{ACCOUNT_ID}/ai-gateway/gateways" in proc.stderr
    assert "< 200 OK" in proc.stderr
    assert "Bearer" not in proc.stderr


# ------------------------------------------------------------------ reliability

def test_429_is_retried_after_retry_after(fake, config):
    fake.add_fault(method="GET", status=429, headers={"Retry-After": "1"},
                   body={"success": False, "errors": [{"code": 971, "message": "rate limited"}],
                         "messages": [], "result": None})
    proc = cli("sync", fake=fake, config=config)
    assert proc.returncode == 0, proc.stderr
    assert fake.calls() == [LIST, LIST, ("POST", GATEWAYS)]
    assert fake.requests[1].at - fake.requests[0].at >= 0.95
    assert "HTTP 429 (rate limited), Retry-After 1s; retrying in 1.0s (attempt 2 of 4)" \
        in proc.stderr


def test_5xx_is_retried_then_succeeds(fake, config):
    fake.add_fault(method="POST", status=503, body="<html>Service Unavailable</html>", times=2)
    proc = cli("sync", fake=fake, config=config)
    assert proc.returncode == 0, proc.stderr
    assert fake.calls() == [LIST] + [("POST", GATEWAYS)] * 3
    assert proc.stderr.count("HTTP 503; retrying") == 2


def test_5xx_gives_up_after_four_attempts(fake, config):
    fake.add_fault(method="GET", status=502, body=f"<html>Bad gateway {TOKEN}</html>", times=10)
    proc = cli("sync", fake=fake, config=config)
    assert_failure(proc, 1, "listing the gateways failed: HTTP 502",
                   "non-JSON body, text/html", "after 4 attempts", "retry later")
    assert len(fake.requests) == 4
    assert "***" in last_line(proc)  # the token echoed by the body was masked


def test_5xx_gives_up_with_the_attempts_option(fake, config):
    fake.add_fault(method="GET", status=500, times=10,
                   body={"success": False, "errors": [{"code": 10001, "message": "boom"}],
                         "messages": [], "result": None})
    proc = cli("list", "--attempts", "2", fake=fake, config=config)
    assert_failure(proc, 1, "HTTP 500, Cloudflare error 10001: boom after 2 attempts")
    assert len(fake.requests) == 2


def test_4xx_is_not_retried(fake, config):
    fake.add_fault(method="GET", status=400, times=10,
                   body={"success": False, "errors": [{"code": 7003, "message": "nope"}],
                         "messages": [], "result": None})
    proc = cli("list", fake=fake, config=config)
    assert_failure(proc, 1, "HTTP 400, Cloudflare error 7003: nope")
    assert len(fake.requests) == 1


def test_timeouts_are_retried_within_the_deadline(fake, config):
    """Each attempt gets an equal share of the time left: 4 s for 4 attempts = 1 s first."""
    fake.add_fault(method="GET", status=0, delay=1.5)  # slow once, then normal
    proc = cli("sync", "--timeout", "4", fake=fake, config=config)
    assert proc.returncode == 0, proc.stderr
    assert "no complete answer within 1.0s; retrying" in proc.stderr
    assert fake.calls() == [LIST, LIST, ("POST", GATEWAYS)]


def test_timeouts_give_up(fake, config):
    """Three attempts within the 0.6 s, then one clear failure. Each slow answer would take
    30 s: the loose bound (busy runners start Python slowly) still tells the two apart."""
    fake.add_fault(method="GET", status=0, delay=30.0, times=10)
    started = time.monotonic()
    proc = cli("list", "--timeout", "0.6", "--attempts", "3", fake=fake, config=config)
    assert time.monotonic() - started < 20
    assert_failure(proc, 1, "listing the gateways failed: no complete answer within",
                   "(after 3 attempts; --timeout 0.6s bounds the whole command)")
    assert len(fake.requests) == 3


def test_a_create_that_went_through_before_a_5xx_is_not_an_error(fake, config):
    fake.add_fault(method="POST", status=502, body="<html>upstream</html>", apply=True)
    proc = cli("sync", fake=fake, config=config)
    assert proc.returncode == 0, proc.stderr
    assert fake.calls() == [LIST, ("POST", GATEWAYS), ("POST", GATEWAYS),
                            ("GET", f"{GATEWAYS}/demo-gw")]
    assert "the first attempt went through" in proc.stderr
    assert list(fake.gateways[ACCOUNT_ID]) == ["demo-gw"]


def test_non_json_success_body(fake, config):
    fake.add_fault(method="GET", status=200, body=f"<html>Captive portal {TOKEN}</html>")
    proc = cli("sync", fake=fake, config=config)
    assert_failure(proc, 1, "HTTP 200 with a body that is not a JSON envelope", "text/html",
                   "CLOUDFLARE_API_BASE_URL")
    assert len(fake.requests) == 1


def test_success_false_in_a_200_is_an_error(fake, config):
    fake.add_fault(method="GET", status=200,
                   body={"success": False, "errors": [{"code": 1234, "message": "odd"}],
                         "messages": [], "result": None})
    assert_failure(cli("list", fake=fake, config=config), 1, "HTTP 200, Cloudflare error 1234")


def test_connection_refused(config):
    port = free_port()  # nobody listens there
    env = base_env(CLOUDFLARE_API_BASE_URL=f"http://127.0.0.1:{port}/client/v4")
    proc = cli("sync", config=config, env=env)
    assert_failure(proc, 1, "listing the gateways failed: connection error",
                   f"http://127.0.0.1:{port}/client/v4", "after 4 attempts")


# ------------------------------------------------------------------ read, merge, write

# Settings made in the dashboard (or by another tool) that ai-gateway.toml does not name.
DASHBOARD_ONLY = {
    "dlp": {"enabled": True, "action": "BLOCK", "profiles": ["p-credit-cards"]},
    "guardrails": {"prompt": {"S1": "BLOCK", "S10": "FLAG"}, "response": {"S1": "FLAG"}},
    "byok_only": True,
    "zdr": True,
    "retry_max_attempts": 3,
    "retry_delay": 500,
    "retry_backoff": "exponential",
    "spend_limits": {"enabled": True, "rules": [{"id": "r1", "limit": 50, "limitType": "cost",
                                                 "window": 86400, "technique": "sliding"}]},
    "otel": [{"url": "https://otel.example.com/v1/traces", "headers": {"x-team": "ai"},
              "content_type": "json"}],
    "log_management": 100000,
    "log_management_strategy": "DELETE_OLDEST",
    "logpush": True,
    "logpush_public_key": "-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----",
    "workers_ai_billing_mode": "unified",
    "log_classification": True,
    "store_id": "0123abcd0123abcd0123abcd0123abcd",
}


def test_the_fake_put_really_replaces_the_whole_configuration(fake):
    """What a PUT of only the file's keys would do: reset every other setting."""
    import urllib.request

    fake.seed(**create_body("demo-gw", **DASHBOARD_ONLY))
    request = urllib.request.Request(
        f"{fake.base_url}/accounts/{ACCOUNT_ID}/ai-gateway/gateways/demo-gw", method="PUT",
        data=json.dumps(SETTINGS).encode(), headers={"Authorization": f"Bearer {TOKEN}",
                                                      "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - loopback
        assert response.status == 200
    gw = fake.gateways[ACCOUNT_ID]["demo-gw"]
    assert [key for key in DASHBOARD_ONLY if gw.get(key) == DASHBOARD_ONLY[key]] == []


@pytest.mark.parametrize("command", ["sync", "update"])
def test_settings_the_file_does_not_name_survive_a_write(fake, config, command):
    fake.seed(**create_body("demo-gw", cache_ttl=300, **DASHBOARD_ONLY))  # cache_ttl drifted
    proc = cli(command, fake=fake, config=config)
    assert proc.returncode == 0, proc.stderr
    read = LIST if command == "sync" else ("GET", f"{GATEWAYS}/demo-gw")
    assert fake.calls() == [read, ("PUT", f"{GATEWAYS}/demo-gw")]
    put = fake.requests[1].body
    assert put == {**SETTINGS, "authentication": True, **DASHBOARD_ONLY}
    for key in ("id", "account_id", "account_tag", "internal_id", "created_at", "modified_at",
                "is_default"):
        assert key not in put  # only what update accepts goes back
    gw = fake.gateways[ACCOUNT_ID]["demo-gw"]
    assert gw["cache_ttl"] == 0  # the drift is fixed
    for key, value in DASHBOARD_ONLY.items():
        assert gw[key] == value, key  # and each dashboard setting survived
    if command == "sync":
        assert "    cache_ttl: 300 -> 0" in proc.stdout
        assert "dlp" not in proc.stdout and "byok_only" not in proc.stdout

    fake.requests.clear()
    again = cli("sync", "--json", fake=fake, config=config)
    assert fake.calls() == [LIST] and fake.writes() == []
    assert (json.loads(again.stdout)["requests"], json.loads(again.stdout)["writes"]) == (1, 0)


def test_rate_limiting_technique_is_optional_and_nulls_are_sent(fake, tmp_path):
    """A file may leave out the technique (optional) and the nullable settings: create sends
    null for those, and a later sync compares only what the file names."""
    config = tmp_path / "ai-gateway.toml"
    config.write_text(f'account_id = "{ACCOUNT_ID}"\n[gateways.production]\nid = "my_gw"\n'
                      "cache_invalidate_on_update = false\ncollect_logs = true\n")
    proc = cli("sync", fake=fake, config=config)
    assert proc.returncode == 0, proc.stderr
    assert fake.requests[1].body == {"id": "my_gw", "cache_invalidate_on_update": False,
                                     "collect_logs": True, "cache_ttl": None,
                                     "rate_limiting_interval": None, "rate_limiting_limit": None}
    fake.gateways[ACCOUNT_ID]["my_gw"]["rate_limiting_technique"] = "sliding"  # dashboard
    fake.requests.clear()
    assert "unchanged" in cli("sync", fake=fake, config=config).stdout
    assert fake.writes() == []
    # An update keeps the gateway's nulls and its technique.
    fake.gateways[ACCOUNT_ID]["my_gw"]["collect_logs"] = False
    fake.requests.clear()
    assert cli("sync", fake=fake, config=config).returncode == 0
    assert fake.requests[1].body == {"cache_invalidate_on_update": False, "collect_logs": True,
                                     "cache_ttl": None, "rate_limiting_interval": None,
                                     "rate_limiting_limit": None, "authentication": False,
                                     "logpush": False, "workers_ai_billing_mode": "postpaid",
                                     "rate_limiting_technique": "sliding"}


@pytest.mark.parametrize("gateway_id", ["a--b", ".", "..", "a/b", "%2e%2e", "-a", "a-", "A",
                                        "a b", "a" * 65, ""])
def test_bad_gateway_ids_are_refused_before_any_request(fake, config, gateway_id):
    for command in (["get", "--", gateway_id], ["delete", "--yes", "--", gateway_id]):
        proc = cli("--config", str(config), *command, fake=fake)
        assert_failure(proc, 2, "is not valid", "in groups joined by single hyphens")
    assert fake.requests == []


def test_underscores_are_valid_gateway_ids(fake, config):
    fake.seed(**create_body("my_gw"))
    proc = cli("get", "my_gw", "--json", fake=fake, config=config)
    assert proc.returncode == 0, proc.stderr
    assert fake.calls() == [("GET", f"{GATEWAYS}/my_gw")]


def test_validation_errors_show_the_field(fake, config):
    fake.add_fault(method="POST", status=400,
                   body={"success": False, "messages": [], "result": None,
                         "errors": [{"code": 7001, "message": "Too big: expected <=2592000",
                                     "path": ["cache_ttl"]}]})
    assert_failure(cli("sync", fake=fake, config=config), 1,
                   "HTTP 400, Cloudflare error 7001: Too big: expected <=2592000 (at cache_ttl)")


# ------------------------------------------------------------------ deadline


def test_timeout_bounds_the_whole_call_against_a_dripping_server(config):
    server = DrippingServer()
    try:
        started = time.monotonic()
        proc = cli("list", "--timeout", "1", config=config,
                   env=base_env(CLOUDFLARE_API_BASE_URL=server.base_url))
        elapsed = time.monotonic() - started
    finally:
        server.close()
    assert elapsed < 60, elapsed  # the drip would last over 15 minutes; loose for busy runners
    assert_failure(proc, 1, "listing the gateways failed: no complete answer within",
                   "--timeout 1s bounds the whole command")
    assert server.connections >= 2  # retried within the same 1 s


# ------------------------------------------------------------------ terminal hygiene


def test_the_token_is_masked_cut_split_and_upper_cased(fake, config):
    echo = (f"<html>{TOKEN.upper()} | {TOKEN[:12]}\n{TOKEN[12:]} | {TOKEN[3:15]}</html>")
    fake.add_fault(method="GET", status=502, body=echo, times=10)
    fake.add_fault(method="POST", status=400,
                   body={"success": False, "messages": [], "result": None,
                         "errors": [{"code": 7001, "message": f"bad token {TOKEN.upper()}"}]})
    proc = cli("list", "--attempts", "1", fake=fake, config=config)  # cli() checks every form
    assert "***" in last_line(proc)


def test_credentials_in_the_base_url_are_refused(fake, config):
    url = fake.base_url.replace("http://", "http://admin:hunter22@")
    proc = cli("list", "--verbose", config=config, env=base_env(CLOUDFLARE_API_BASE_URL=url))
    assert_failure(proc, 2, "must not contain a user name or password")
    assert "hunter22" not in proc.stdout + proc.stderr
    assert fake.requests == []


@pytest.mark.parametrize("url", ["http://api.example.com/client/v4",
                                 "http://10.0.0.1/client/v4", "ftp://127.0.0.1/x"])
def test_plain_http_only_to_loopback(config, url):
    proc = cli("list", config=config, env=base_env(CLOUDFLARE_API_BASE_URL=url))
    assert_failure(proc, 2, "CLOUDFLARE_API_BASE_URL must")


def test_control_characters_are_stripped_from_what_is_printed(fake, config):
    fake.seed(**create_body("evil\x1b[2J\x1b]0;pwned\x07-gw", cache_ttl=60))
    fake.add_fault(method="PUT", status=400,
                   body={"success": False, "messages": [], "result": None,
                         "errors": [{"code": 7001, "message": "bad\x1b[31m red\u202e\rline"}]})
    listing = cli("list", fake=fake, config=config)
    assert listing.returncode == 0
    assert "\x1b" not in listing.stdout and "\x07" not in listing.stdout
    assert "evil[2J]0;pwned-gw" in listing.stdout
    fake.seed(**create_body("demo-gw", cache_ttl=5))
    proc = cli("sync", fake=fake, config=config)
    line = assert_failure(proc, 1, "Cloudflare error 7001: bad[31m red line")
    for char in ("\x1b", "\r", "\u202e"):
        assert char not in proc.stdout + proc.stderr
    assert line


# ------------------------------------------------------------------ the API's schema is the oracle

def toml_inline(value) -> str:
    """A value as one-line TOML: inline tables and arrays included."""
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {toml_inline(v)}"
                                for k, v in value.items()) + " }" if value else "{}"
    if isinstance(value, list):
        return "[" + ", ".join(toml_inline(v) for v in value) + "]"
    return json.dumps(value)


# Ten settings the extract's schema refuses (the fake accepted each of them before): the script
# refuses them before any request, naming the key and the rule, and the fake answers 400 7001.
SCHEMA_INVALID = [
    ("retry_delay", 99999, "retry_delay must be from 0 to 5000 (got 99999)"),
    ("dlp", True, "dlp must be a table (got true)"),
    ("zdr", "yes", 'zdr must be true or false (got "yes")'),
    ("workers_ai_billing_mode", "prepaid",
     'workers_ai_billing_mode must be "postpaid" or "unified" (got "prepaid")'),
    ("logpush_public_key", "too-short",
     "logpush_public_key must be 16 to 1024 characters long (got 9)"),
    ("guardrails", {"prompt": {"S1": "DENY"}, "response": {}},
     'guardrails.prompt.S1 must be "FLAG" or "BLOCK" (got "DENY")'),
    ("otel", [{"url": "https://otel.example.com/v1/traces"}],
     "otel[0].headers is missing (the API requires it)"),
    ("spend_limits", {"enabled": True, "rules": [{"limit": 10, "limitType": "tokens",
                                                  "window": 60}]},
     'spend_limits.rules[0].limitType must be "cost" (got "tokens")'),
    ("log_management", 500, "log_management must be from 10000 to 10000000 (got 500)"),
    ("retry_max_attempts", 0, "retry_max_attempts must be from 1 to 5 (got 0)"),
]


def post_raw(fake, path: str, body, method: str = "POST") -> tuple[int, dict]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        f"{fake.base_url}/accounts/{ACCOUNT_ID}/ai-gateway/gateways{path}", method=method,
        data=json.dumps(body).encode(), headers={"Authorization": f"Bearer {TOKEN}",
                                                 "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - loopback
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.parametrize("key, value, rule", SCHEMA_INVALID, ids=[k for k, _, _ in SCHEMA_INVALID])
def test_a_setting_the_schema_refuses_is_refused_before_sending_and_by_the_fake(
        fake, tmp_path, key, value, rule):
    config = write_config(tmp_path / "ai-gateway.toml")
    config.write_text(config.read_text() + f"{key} = {toml_inline(value)}\n")
    assert_failure(cli("sync", fake=fake, config=config), 2,
                   f"[gateways.production] {rule}")
    assert fake.requests == []

    status, answer = post_raw(fake, "", create_body("demo-gw", **{key: value}))
    assert status == 400, answer
    assert answer["errors"][0]["code"] == 7001 and answer["errors"][0]["path"][0] == key
    assert fake.gateways.get(ACCOUNT_ID, {}) == {}


@pytest.mark.parametrize("extra, spot, variable", [
    ('otel = [{ url = "https://otel.example.com", headers = {}, content_type = "json", '
     'authorization_env = "CLOUDFLARE_API_TOKEN" }]\n', "otel[0].authorization_env",
     "CLOUDFLARE_API_TOKEN"),
    ('\n[provider_configs.main]\nprovider_slug = "openai"\nsecret_env = "GITHUB_TOKEN"\n',
     "secret_env", "GITHUB_TOKEN"),
])
def test_the_file_cannot_name_a_credential_of_the_script_or_ci(fake, tmp_path, extra, spot,
                                                               variable):
    """The file is data a pull request changes: it never gets the management token sent to an
    exporter, nor stored as a provider key."""
    config = write_config(tmp_path / "ai-gateway.toml")
    config.write_text(config.read_text() + extra)
    proc = cli("plan", fake=fake, config=config)
    assert_failure(proc, 2, f"{spot} may not name {variable}")
    assert fake.requests == [] and TOKEN not in proc.stdout + proc.stderr


def test_the_fake_accepts_what_the_schema_allows(fake):
    """An unknown key and an id in an update body: the extract forbids neither (the script
    refuses unknown keys in its file all the same, to catch typos)."""
    assert post_raw(fake, "", create_body("demo-gw", not_in_the_schema=1))[0] == 200
    status, answer = post_raw(fake, "/demo-gw", {"id": "demo-gw", **SETTINGS}, method="PUT")
    assert status == 200, answer
    assert post_raw(fake, "", create_body("demo-gw"))[1]["errors"][0]["path"] == ["id"]


def test_each_changed_value_says_whether_it_is_added_or_removed(capsys):
    script = load_script()
    changes = script.leaf_changes({"dlp": {"action": "FLAG", "profiles": ["a"]}},
                                  {"dlp": {"action": "BLOCK", "enabled": True}})
    changes += [(("otel", 0, "authorization"), None, "s3cret-value")]
    script.print_changes(changes)
    assert capsys.readouterr().out.splitlines() == [
        "    dlp.action: FLAG -> BLOCK",
        "    dlp.enabled: - -> true (added)",
        "    dlp.profiles[0]: a -> - (removed)",
        "    otel[0].authorization: *** -> *** (added)",
    ]


def load_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("ai_gateway_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_shipped_schema_is_the_extracts_and_the_validator_agrees_with_jsonschema():
    from fake_cloudflare_api import SPEC, body_problems

    shipped = json.loads(SCHEMA.read_text())["operations"]
    for op in shipped.values():
        body = SPEC["paths"][op["path"]][op["method"].lower()]["requestBody"]
        assert op["schema"] == body["content"]["application/json"]["schema"], op["path"]
        assert "$ref" not in json.dumps(op["schema"])  # the script's validator needs none
    script = load_script()
    bodies = [create_body("demo-gw", **{k: v}) for k, v, _ in SCHEMA_INVALID[1:]]
    bodies += [create_body("demo-gw", retry_delay=70000), create_body("demo-gw", **FULL)]
    path = "/accounts/x/ai-gateway/gateways"
    for body in bodies:
        assert bool(script.schema_errors(body, script.schema("gateway_create"))) == \
            bool(body_problems("POST", path, body)), body


# ------------------------------------------------------------------ the whole surface, rendered

FULL = {  # every gateway setting the file can own besides the basics
    "dlp": {"enabled": True, "action": "BLOCK", "profiles": ["credit-cards"]},
    "guardrails": {"prompt": {"S1": "BLOCK", "P1": "FLAG"}, "response": {"S10": "FLAG"}},
    "spend_limits": {"enabled": True, "rules": [
        {"id": "daily", "limit": 50, "limitType": "cost", "window": 86400,
         "technique": "sliding", "metadata": {"caller": {"mode": "partition"}}}]},
    "logpush": True,
    "logpush_public_key": "-----BEGIN PUBLIC KEY-----MIIBIjANBg-----END PUBLIC KEY-----",
    "workers_ai_billing_mode": "unified",
    "retry_max_attempts": 3,
    "retry_delay": 500,
    "retry_backoff": "exponential",
    "zdr": True,
    "log_management": 100000,
    "log_management_strategy": "DELETE_OLDEST",
}
OTEL_SECRET = "otel-canary-9d3f61a2c4"
KEY_SECRET = "sk-canary-4b7e0c9a1f22"
ROUTE = """
[routes.support]
[[routes.support.elements]]
id = "start"
type = "start"
outputs = { next = { elementId = "primary" } }
[[routes.support.elements]]
id = "primary"
type = "model"
properties = { provider = "openai", model = "gpt-4o-mini", retries = 1, timeout = 30000 }
outputs = { success = { elementId = "end" }, fallback = { elementId = "backup" } }
[[routes.support.elements]]
id = "backup"
type = "model"
properties = { provider = "anthropic", model = "claude-haiku-4-5", retries = 0, timeout = 30000 }
outputs = { success = { elementId = "end" }, fallback = { elementId = "end" } }
[[routes.support.elements]]
id = "end"
type = "end"
outputs = {}
"""
KEYS = """
[provider_configs.openai-main]
provider_slug = "openai"
secret_env = "GATEWAY_OPENAI_KEY"
default_config = true

[provider_configs.anthropic-main]
provider_slug = "anthropic"
secret_id = "0123abcd0123abcd0123abcd0123abcd"
"""


def examples_are_valid(config: Path, tmp_path: Path) -> None:
    """The file's commented examples, uncommented, are a valid settings file."""
    text = config.read_text()
    tail = text[text.index("\n# More settings"):].splitlines()
    code = [line[4:] for line in tail if line.startswith("#   ") and line[4:5] != " "]
    first = next(i for i, line in enumerate(code) if line.startswith("["))
    head = "\n[gateways.production]\n"
    settings = text.replace(head, head + "\n".join(code[:first]) + "\n", 1)
    example = tmp_path / "examples.toml"
    example.write_text(settings + "\n".join(code[first:]) + "\n")
    loaded = load_script().load_settings(example)["gateways"]["production"]
    assert {"dlp", "guardrails", "spend_limits", "otel", "zdr", "logpush_public_key"} <= \
        set(loaded["settings"])
    assert list(loaded["routes"]) == ["support"] and list(loaded["keys"]) == ["openai-main"]


def test_every_section_synced_against_the_schema(fake, render_project, tmp_path):
    project = render_project(language="python-app")
    config = project / "ai-gateway.toml"
    examples_are_valid(config, tmp_path)
    text = config.read_text()
    head = "\n[gateways.production]\n"
    own = "".join(f"{k} = {toml_inline(v)}\n" for k, v in FULL.items())
    otel = ('[[gateways.production.otel]]\nurl = "https://otel.example.com/v1/traces"\n'
            'headers = { "x-team" = "ai" }\nauthorization_env = "OTEL_EXPORTER_TOKEN"\n'
            'content_type = "json"\n')
    text = text.replace(head, head + own, 1)
    text = text.replace("\n# More settings", "\n" + otel + "\n# More settings", 1)
    assert otel in text
    config.write_text(text + ROUTE + KEYS)
    script = project / "scripts" / "ai_gateway.py"
    secrets = {"OTEL_EXPORTER_TOKEN": OTEL_SECRET, "GATEWAY_OPENAI_KEY": KEY_SECRET}
    env = base_env(fake, **secrets)
    # The gateway exists, with a setting made in the dashboard that the file does not name.
    fake.seed(**create_body("demo-gw", log_classification=True, store_id="st-1"))

    def run(*args, token=TOKEN, **extra):
        proc = cli(*args, script=script, env={**env, "CLOUDFLARE_API_TOKEN": token, **extra})
        assert OTEL_SECRET not in proc.stdout + proc.stderr
        assert KEY_SECRET[4:] not in proc.stdout + proc.stderr
        return proc

    plan = run("plan", token=READ_ONLY_TOKEN)  # the pull request's token is enough
    assert plan.returncode == 0, plan.stderr
    assert "production: demo-gw: update\n" in plan.stdout
    assert "    dlp.action: - -> BLOCK (added)\n" in plan.stdout
    assert "    otel[0].authorization: *** -> *** (added)\n" in plan.stdout
    assert "production: demo-gw: route support (model dynamic/support): add" in plan.stdout
    assert "production: demo-gw: stored key openai-main: add" in plan.stdout
    assert "routes: 1 to add\nstored keys: 2 to add\n" in plan.stdout
    assert fake.writes() == []

    fake.requests.clear()
    first = run("sync")
    assert first.returncode == 0, first.stderr
    assert "routes: 1 added\nstored keys: 2 added\n" in first.stdout
    assert [(r.method, r.status) for r in fake.requests] == [
        ("GET", 200), ("GET", 200), ("GET", 200), ("PUT", 200), ("POST", 200), ("POST", 200),
        ("POST", 200)]
    gw = fake.gateways[ACCOUNT_ID]["demo-gw"]
    assert gw["log_classification"] is True and gw["store_id"] == "st-1"  # survived
    assert {k: gw[k] for k in FULL} == FULL
    assert gw["otel"][0]["authorization"] == OTEL_SECRET
    assert fake.stored_secrets == {("demo-gw", "openai-main"): KEY_SECRET}
    (route,) = gw["routes"].values()
    assert route["name"] == "support" and route["elements"][1]["properties"]["model"] == \
        "gpt-4o-mini"

    for shown in (run("get", "--json").stdout, run("list", "--json").stdout):
        assert '"authorization": "***"' in shown  # get and list mask the exporter's secret

    fake.requests.clear()
    second = run("sync", "--json")
    assert fake.writes() == [] and [r.method for r in fake.requests] == ["GET"] * 3
    report = json.loads(second.stdout)["gateways"][0]
    assert report["action"] == "unchanged"
    assert {r["action"] for r in report["routes"] + report["provider_configs"]} == {"unchanged"}

    # A spend-limit change: one write, shown in the plan first.
    config.write_text(config.read_text().replace('"limit" = 50', '"limit" = 80'))
    assert "    spend_limits.rules[0].limit: 50 -> 80" in run("plan").stdout
    fake.requests.clear()
    assert run("sync").returncode == 0
    assert [(r.method, r.path.rsplit("/", 1)[1]) for r in fake.writes()] == [("PUT", "demo-gw")]
    assert fake.requests[-1].body["spend_limits"]["rules"][0]["limit"] == 80

    # A route change: one new version and its deployment (the API has no single call for it).
    config.write_text(config.read_text().replace('"gpt-4o-mini"', '"gpt-4.1-mini"'))
    shown = run("plan").stdout
    assert "route support (model dynamic/support): update" in shown
    assert "    elements[1].properties.model: gpt-4o-mini -> gpt-4.1-mini" in shown
    fake.requests.clear()
    assert run("sync").returncode == 0
    assert [r.path.rsplit("/", 1)[1] for r in fake.writes()] == ["versions", "deployments"]
    assert all(r.status == 200 for r in fake.requests)
    (route,) = fake.gateways[ACCOUNT_ID]["demo-gw"]["routes"].values()
    assert route["elements"][1]["properties"]["model"] == "gpt-4.1-mini"
    fake.requests.clear()
    assert run("sync").returncode == 0 and fake.writes() == []

    # Without the exporter's secret, the plan still runs (not compared); sync writes nothing.
    gw["collect_logs"] = False  # drift in the dashboard
    fake.requests.clear()
    unset = run("plan", OTEL_EXPORTER_TOKEN="")
    assert "note: OTEL_EXPORTER_TOKEN is not set here" in unset.stdout
    assert_failure(run("sync", OTEL_EXPORTER_TOKEN=""), 2, "OTEL_EXPORTER_TOKEN is not set")
    assert fake.writes() == []


# ---- spend limits: the rules the file names, the dashboard's kept --------------------------

PER_CALLER = {"limit": 50, "limitType": "cost", "window": 86400,
              "metadata": {"caller": {"mode": "partition"}}}
PER_MODEL = {"limit": 5, "limitType": "cost", "window": 3600,
             "model": {"mode": "filter", "values": ["gpt-4o-mini"]}}
DASHBOARD_RULE = {"id": "dash-1", "limit": 10, "limitType": "cost", "window": 86400,
                  "provider": {"mode": "filter", "values": ["anthropic"]}}


def spend_config(path: Path, *rules: dict) -> Path:
    """ai-gateway.toml with spend_limits (enabled) and these rules."""
    text = write_config(path).read_text() + "\n[gateways.production.spend_limits]\nenabled = true\n"
    for rule in rules:
        text += "\n[[gateways.production.spend_limits.rules]]\n" + "".join(
            f"{k} = {toml_inline(v)}\n" for k, v in rule.items())
    path.write_text(text)
    return path


def test_sync_applies_the_files_spend_rules_and_keeps_a_dashboard_rule(fake, tmp_path):
    # The gateway has a rule made in the dashboard, and a per-caller rule the file now changes
    # (the gateway gave it an id and a technique the file does not name).
    owned = {**PER_CALLER, "id": "cf-7", "limit": 20, "technique": "fixed"}
    fake.seed(**create_body("demo-gw", spend_limits={"enabled": False,
                                                     "rules": [DASHBOARD_RULE, owned]}))
    config = spend_config(tmp_path / "ai-gateway.toml", PER_CALLER, PER_MODEL)

    synced = cli("sync", fake=fake, config=config)

    assert synced.returncode == 0, synced.stderr
    assert "    spend_limits.rules[1].limit: 20 -> 50\n" in synced.stdout
    (put,) = fake.writes()
    assert put.method == "PUT"
    assert put.body["spend_limits"] == {"enabled": True, "rules": [
        DASHBOARD_RULE, {**owned, "limit": 50}, PER_MODEL]}


def test_unchanged_spend_limits_mean_reads_only(fake, tmp_path):
    owned = {**PER_CALLER, "id": "cf-7", "technique": "fixed"}
    fake.seed(**create_body("demo-gw", spend_limits={"enabled": True,
                                                     "rules": [DASHBOARD_RULE, owned, PER_MODEL]}))
    config = spend_config(tmp_path / "ai-gateway.toml", PER_CALLER, PER_MODEL)

    synced = cli("sync", fake=fake, config=config)

    assert synced.returncode == 0, synced.stderr
    assert fake.calls() == [LIST]
    assert "production: demo-gw: unchanged" in synced.stdout


def test_a_spend_rule_named_twice_is_refused_before_any_request(fake, tmp_path):
    config = spend_config(tmp_path / "ai-gateway.toml", PER_CALLER, {**PER_CALLER, "limit": 9})

    refused = cli("sync", fake=fake, config=config)

    assert_failure(refused, 2, "[gateways.production] spend_limits.rules[1] has the same "
                               "metadata, model and provider as an earlier rule")
    assert fake.requests == []
