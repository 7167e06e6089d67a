"""The create-gateway Copier task, run by real `copier copy` / `copier update` against the
loopback v4 API (tests/fake_cloudflare_api.py)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from copier import run_copy, run_update
from plumbum import local

from conftest import ACCOUNT_ID, BASE_ANSWERS, TEMPLATE_ROOT
from fake_cloudflare_api import GATEWAYS, LIST, SETTINGS, TOKEN, DrippingServer, FakeCloudflareAPI
from template_repo import template_dir

RETRY = "python3 scripts/ai_gateway.py sync"


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """A plain (non-git) copy of the working tree: Copier reads it as it is, no clone per copy."""
    return template_dir(tmp_path_factory.mktemp("template") / "ai-gateway-starter")


def render(template: Path, dst: Path, **answers) -> Path:
    """``copier copy`` through Copier's API (the task runs as on the command line)."""
    run_copy(str(template), str(dst), data={**BASE_ANSWERS, **answers}, defaults=True,
             unsafe=True, quiet=True)
    return dst


@pytest.fixture
def fake():
    with FakeCloudflareAPI() as api:
        yield api


@pytest.fixture
def api_env(monkeypatch, fake):
    """Point every Cloudflare variable at the fake (and drop the developer's own).

    Copier runs tasks with plumbum's ``local.env``, a copy of os.environ taken when plumbum
    was imported, so monkeypatch.setenv alone would not reach the task: set both.
    """
    def apply(**values):
        for key, value in values.items():
            if value is None:
                monkeypatch.delenv(key, raising=False)
                local.env.pop(key, None)
            else:
                monkeypatch.setenv(key, value)
                local.env[key] = value

    with local.env():  # restores plumbum's environment afterwards
        apply(CLOUDFLARE_API_TOKEN=TOKEN, CF_API_TOKEN=None, CLOUDFLARE_ACCOUNT_ID=None,
              CLOUDFLARE_API_BASE_URL=fake.base_url, AI_GATEWAY_RETRY_BASE_DELAY="0.01",
              AI_GATEWAY_TIMEOUT="5")
        yield apply


def output_of(capfd) -> str:
    captured = capfd.readouterr()
    text = captured.out + captured.err
    assert TOKEN not in text
    assert "Traceback" not in text
    return text


def test_copy_creates_the_gateway(template, tmp_path, fake, api_env, capfd):
    dst = render(template, tmp_path / "svc", create_gateway=True)
    assert fake.calls() == [LIST, ("POST", GATEWAYS)]
    assert fake.requests[1].body == {"id": "demo-gw", **SETTINGS}
    assert fake.requests[1].headers["Authorization"] == f"Bearer {TOKEN}"
    out = output_of(capfd)
    assert "production: demo-gw: creating" in out
    assert "create_gateway: done" in out
    assert (dst / "ai-gateway.toml").is_file() and (dst / "scripts" / "ai_gateway.py").is_file()

    # The rendered project's own script: a repeated sync reads once and writes nothing.
    fake.requests.clear()
    proc = subprocess.run([sys.executable, "scripts/ai_gateway.py", "sync"], cwd=dst,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert fake.calls() == [LIST]
    assert "production: demo-gw: unchanged" in proc.stdout


@pytest.mark.parametrize("language", ["typescript-worker", "python-app"])
def test_copy_with_three_environments_creates_three(template, tmp_path, fake, api_env, capfd, language):
    dst = render(template, tmp_path / "svc", create_gateway=True, language=language,
           environments=["development", "staging", "production"], cache_ttl=120,
           rate_limiting_technique="sliding", gateway_authentication=False,
           auth_mode="request-headers")
    assert fake.calls() == [LIST] + [("POST", GATEWAYS)] * 3
    wanted = {**SETTINGS, "cache_ttl": 120, "rate_limiting_technique": "sliding",
              "authentication": False}
    assert [r.body for r in fake.writes()] == [
        {"id": gid, **wanted} for gid in ("demo-gw-development", "demo-gw-staging", "demo-gw")]
    assert "3 created, 0 updated, 0 unchanged" in output_of(capfd)
    # Both targets carry the script verbatim and document it in the README.
    script = TEMPLATE_ROOT / "template" / "_shared" / "scripts" / "ai_gateway.py"
    assert (dst / "scripts" / "ai_gateway.py").read_bytes() == script.read_bytes()
    readme = (dst / "README.md").read_text()
    section = readme[readme.index("## Managing the gateway"):]
    assert ("`development` → `demo-gw-development`, `staging` → `demo-gw-staging`, "
            "`production` → `demo-gw`.") in section
    assert "python3 scripts/ai_gateway.py sync --dry-run" in section
    assert ("npm run gateway:sync" in section) == (language == "typescript-worker")


def test_a_byok_project_creates_a_byok_only_gateway(template, tmp_path, fake, api_env, capfd):
    dst = render(template, tmp_path / "svc", create_gateway=True, auth_mode="byok")
    assert fake.calls() == [LIST, ("POST", GATEWAYS)]
    assert fake.requests[1].body == {"id": "demo-gw", **SETTINGS, "byok_only": True}
    toml = (dst / "ai-gateway.toml").read_text()
    assert "fails instead of silently spending Unified Billing credits" in toml
    assert "set byok_only = false and run sync" in toml
    output_of(capfd)


def test_api_failure_keeps_the_project_and_says_how_to_retry(template, tmp_path, fake, api_env, capfd):
    fake.add_fault(method="POST", status=503, body="<html>down</html>", times=10)
    dst = render(template, tmp_path / "svc", create_gateway=True)
    assert (dst / "ai-gateway.toml").is_file()
    assert (dst / ".copier-answers.yml").is_file()
    out = output_of(capfd)
    assert 'error: creating gateway "demo-gw" (production) failed: HTTP 503' in out
    assert "after 4 attempts" in out
    assert "create_gateway: the gateway(s) were NOT all created" in out
    assert f"kept in {dst}" in out
    assert f"cd {dst} && {RETRY}" in out
    assert [c[0] for c in fake.calls()] == ["GET"] + ["POST"] * 4

    # The retry it tells about works once the API is back.
    fake.faults.clear()
    proc = subprocess.run([sys.executable, "scripts/ai_gateway.py", "sync"], cwd=dst,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "demo-gw" in fake.gateways[ACCOUNT_ID]


def test_no_token_explains_how_to_sync_later(template, tmp_path, fake, api_env, capfd):
    api_env(CLOUDFLARE_API_TOKEN=None)
    dst = render(template, tmp_path / "svc", create_gateway=True)
    assert (dst / "ai-gateway.toml").is_file()
    assert fake.requests == []
    out = output_of(capfd)
    assert "skipped, no API token" in out
    assert "AI Gateway > Read and Edit" in out
    assert "export CLOUDFLARE_API_TOKEN=" in out
    assert f"cd {dst} && {RETRY}" in out


# ------------------------------------------------------------------ the hook on its own
# One render (create_gateway left at its default, false) shared by the tests below, which run
# hooks/create_gateway.py the way the Copier task does: in the project, with Copier's Python.

HOOK = TEMPLATE_ROOT / "hooks" / "create_gateway.py"


@pytest.fixture(scope="module")
def rendered(template, tmp_path_factory):
    """A project rendered with the default create_gateway=false while a fake API and a token
    are in place: the render itself must not call the API."""
    with FakeCloudflareAPI() as api, pytest.MonkeyPatch.context() as mp, local.env():
        for key, value in {"CLOUDFLARE_API_TOKEN": TOKEN,
                           "CLOUDFLARE_API_BASE_URL": api.base_url}.items():
            mp.setenv(key, value)
            local.env[key] = value
        dst = render(template, tmp_path_factory.mktemp("shared") / "svc")
        assert api.requests == []  # create_gateway=false: no task, no API call
    return dst


def run_hook(project: Path, fake, **env_overrides) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CLOUDFLARE_", "CF_", "AI_GATEWAY_"))}
    env.update({"CLOUDFLARE_API_TOKEN": TOKEN, "CLOUDFLARE_API_BASE_URL": fake.base_url,
                "AI_GATEWAY_RETRY_BASE_DELAY": "0.01", "AI_GATEWAY_TIMEOUT": "5"})
    env.update(env_overrides)
    env = {k: v for k, v in env.items() if v is not None}
    proc = subprocess.run([sys.executable, str(HOOK)], cwd=project, env=env,
                          capture_output=True, text=True, timeout=120)
    text = proc.stdout + proc.stderr
    assert TOKEN not in text and "Traceback" not in text
    for value in env_overrides.values():
        if value and "token" in str(value):
            assert value not in text
    assert proc.returncode == 0  # always: Copier would delete a new project on a failure
    return proc


@pytest.fixture
def project(rendered, tmp_path):
    dst = tmp_path / "svc"
    shutil.copytree(rendered, dst)
    return dst


def test_hook_updates_an_existing_gateway_instead_of_recreating_it(project, fake):
    fake.seed(id="demo-gw", **{**SETTINGS, "rate_limiting_limit": 5})
    proc = run_hook(project, fake)
    assert fake.calls() == [LIST, ("PUT", f"{GATEWAYS}/demo-gw")]
    assert "rate_limiting_limit: 5 -> 100" in proc.stdout
    assert "create_gateway: done" in proc.stdout


def test_hook_with_a_bad_token(project, fake):
    proc = run_hook(project, fake, CLOUDFLARE_API_TOKEN="not-the-right-token")
    out = proc.stdout + proc.stderr
    assert "HTTP 401" in out and '"AI Gateway Read"' in out
    assert f"cd {project} && {RETRY}" in out
    assert len(fake.requests) == 1


def test_hook_without_an_account_id(project, fake):
    toml = project / "ai-gateway.toml"
    toml.write_text(toml.read_text().replace(f'account_id = "{ACCOUNT_ID}"', 'account_id = ""'))
    proc = run_hook(project, fake)
    out = proc.stdout + proc.stderr
    assert "no Cloudflare account id" in out and f"cd {project} && {RETRY}" in out
    assert fake.requests == []
    run_hook(project, fake, CLOUDFLARE_ACCOUNT_ID=ACCOUNT_ID)
    assert fake.calls() == [LIST, ("POST", GATEWAYS)]


def test_hook_with_cf_api_token_only(project, fake):
    proc = run_hook(project, fake, CLOUDFLARE_API_TOKEN=None, CF_API_TOKEN=TOKEN)
    assert "create_gateway: done" in proc.stdout
    assert fake.calls() == [LIST, ("POST", GATEWAYS)]


def test_hook_says_what_it_runs_and_gives_up_in_time(project, fake):
    """Against a server that drips one byte a second (for over 15 minutes), the script's own
    1 s deadline ends the task: its words say so, before the hook's kill (at 1 + 5 s) and long
    before the drip ends. The bound is loose on purpose: a busy runner starts Python slowly."""
    server = DrippingServer()
    try:
        started = time.monotonic()
        proc = run_hook(project, fake, AI_GATEWAY_TIMEOUT="1",
                        CLOUDFLARE_API_BASE_URL=server.base_url)
        elapsed = time.monotonic() - started
    finally:
        server.close()
    assert elapsed < 60, elapsed
    assert "the script was stopped" not in proc.stdout  # its deadline ended it, not the hook
    lines = proc.stdout.splitlines()
    assert f"create_gateway: running `{RETRY} --timeout 1` (gives up after 1 s)" in lines
    assert "--timeout 1s bounds the whole command" in proc.stderr
    assert "create_gateway: the gateway(s) were NOT all created" in proc.stdout
    assert f"cd {project} && {RETRY}" in proc.stdout
    assert (project / "ai-gateway.toml").is_file()


def test_hook_stops_a_script_that_overruns_its_deadline(project, fake):
    (project / "scripts" / "ai_gateway.py").write_text("import time\ntime.sleep(120)\n")
    started = time.monotonic()
    proc = run_hook(project, fake, AI_GATEWAY_TIMEOUT="0.1")  # + the hook's 5 s of grace
    assert time.monotonic() - started < 60  # the script would sleep 120 s
    assert "create_gateway: gave up after 5.1 s (the script was stopped)." in proc.stdout
    assert f"cd {project} && {RETRY}" in proc.stdout


def test_hook_without_the_script(project, fake):
    (project / "scripts" / "ai_gateway.py").unlink()
    proc = run_hook(project, fake)
    assert "scripts/ai_gateway.py is missing" in proc.stdout
    assert fake.requests == []


# ------------------------------------------------------------------ copier update

def git(*args, cwd: Path) -> str:
    proc = subprocess.run(["git", "-c", "user.name=Test", "-c", "user.email=test@example.com",
                           "-c", "commit.gpgsign=false", "-c", "init.defaultBranch=main", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture
def template_repo(tmp_path):
    """The working tree as a tagged git repository (copier update needs versions)."""
    repo = tmp_path / "template-repo"
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=TEMPLATE_ROOT, capture_output=True, text=True, check=True)
    for rel in filter(None, listed.stdout.split("\0")):
        source = TEMPLATE_ROOT / rel
        if rel.split("/")[0] in (".venv", ".cache", "node_modules") or not source.is_file():
            continue
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, repo / rel)
    git("init", "-q", cwd=repo)
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "v1", cwd=repo)
    git("tag", "v1", cwd=repo)
    return repo


def test_copier_update_never_calls_the_api(tmp_path, fake, api_env, capfd, template_repo,
                                           monkeypatch):
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Test")
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "test@example.com")
    monkeypatch.setenv("GIT_COMMITTER_NAME", "Test")
    monkeypatch.setenv("GIT_COMMITTER_EMAIL", "test@example.com")
    dst = tmp_path / "svc"
    answers = {**BASE_ANSWERS, "create_gateway": True,
               "environments": ["staging", "production"]}
    run_copy(str(template_repo), str(dst), data=answers, defaults=True, unsafe=True,
             vcs_ref="v1", quiet=True)
    assert fake.calls() == [LIST] + [("POST", GATEWAYS)] * 2  # the copy did run the task
    output_of(capfd)
    git("init", "-q", cwd=dst)
    git("add", "-A", cwd=dst)
    git("commit", "-q", "-m", "rendered", cwd=dst)

    # A new template version, and a changed answer: update re-renders, runs no task.
    toml_template = template_repo / "template" / "_shared" / "ai-gateway.toml.jinja"
    toml_template.write_text(toml_template.read_text() + "# v2 marker\n")
    git("commit", "-q", "-am", "v2", cwd=template_repo)
    git("tag", "v2", cwd=template_repo)
    fake.requests.clear()
    run_update(str(dst), data={"cache_ttl": 300}, defaults=True, unsafe=True, overwrite=True,
               vcs_ref="v2", quiet=True)
    assert fake.requests == []
    rendered = (dst / "ai-gateway.toml").read_text()
    assert "# v2 marker" in rendered and "cache_ttl = 300" in rendered
    assert "create_gateway" not in output_of(capfd)

    # The drift that update introduced is the user's to sync, on purpose.
    proc = subprocess.run([sys.executable, "scripts/ai_gateway.py", "sync", "--dry-run"],
                          cwd=dst, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("cache_ttl: 0 -> 300") == 2
    assert fake.writes() == []
