"""Secrets in the environment never reach a rendered file, the answers file or the output.

``copier copy`` (with ``create_gateway=true``, so the hook really uses the management token
against the loopback Cloudflare API) and then ``copier update`` run with all four secrets
set to distinctive values; every file of the project (outside .git) and every byte Copier
printed is searched for them. A rejected token (the API answers 401) must not be echoed
either.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import BASE_ANSWERS
from fake_cloudflare_api import FakeCloudflareAPI
from template_repo import copier, data_args, init_project, release, template_clone

SECRETS = {
    "CLOUDFLARE_API_TOKEN": "cfat-CANARY-5e1f0c2b9d7a4e63b8aa",
    "CF_API_TOKEN": "cfapi-CANARY-0b7d93e2f4c1a5d8",
    "CF_AIG_TOKEN": "cfaig-CANARY-a9c4e7f21b3d6058",
    "OPENAI_API_KEY": "sk-proj-CANARY-3f9a2c7e1d5b8046",
}
NEW_LINE = "# template 0.2.0"


def _release(repo: Path) -> None:
    path = repo / "template" / "_shared" / "ai-gateway.toml.jinja"
    path.write_text(path.read_text(encoding="utf-8") + NEW_LINE + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    repo = template_clone(tmp_path_factory.mktemp("template") / "ai-gateway-starter")
    release(repo, "0.2.0", _release)
    return repo


def _env(api: FakeCloudflareAPI) -> dict:
    return {**os.environ, **SECRETS, "CLOUDFLARE_API_BASE_URL": api.base_url}


def _leaks(project: Path, *outputs: str) -> list[str]:
    """Where any secret value shows up: file paths (outside .git) or "output"."""
    found = []
    for path in sorted(project.rglob("*")):
        if ".git" in path.relative_to(project).parts or not path.is_file():
            continue
        data = path.read_bytes()
        found += [f"{path.relative_to(project)}: {name}" for name, value in SECRETS.items()
                  if value.encode() in data]
    for index, text in enumerate(outputs):
        found += [f"output {index}: {name}" for name, value in SECRETS.items() if value in text]
    return found


@pytest.mark.parametrize("language", ["python-app", "typescript-worker"])
def test_copy_and_update_never_write_or_print_a_secret(tmp_path, template, language):
    project = tmp_path / "svc"
    answers = {**BASE_ANSWERS, "language": language, "auth_mode": "request-headers",
               "environments": ["staging", "production"], "create_gateway": True}
    with FakeCloudflareAPI(token=SECRETS["CLOUDFLARE_API_TOKEN"]) as api:
        env = _env(api)
        copied = copier("copy", "--trust", "--defaults", "--vcs-ref", "0.1.0",
                        *data_args(answers), str(template), str(project), cwd=tmp_path, env=env)

        assert copied.returncode == 0, copied.stderr
        # The hook used the management token: both gateways exist on the (fake) account.
        assert sorted(api.gateways[BASE_ANSWERS["account_id"]]) == ["demo-gw", "demo-gw-staging"]
        assert {r.headers.get("Authorization") for r in api.requests} == {
            f"Bearer {SECRETS['CLOUDFLARE_API_TOKEN']}"}
        assert "create_gateway: done" in copied.stdout + copied.stderr
        assert _leaks(project, copied.stdout, copied.stderr) == []

        init_project(project)
        calls = len(api.requests)
        updated = copier("update", "--trust", "--defaults", "--skip-answered", cwd=project,
                         env=env)

        assert updated.returncode == 0, updated.stderr
        assert (project / "ai-gateway.toml").read_text(encoding="utf-8").endswith(NEW_LINE + "\n")
        assert len(api.requests) == calls
        assert _leaks(project, updated.stdout, updated.stderr) == []


def test_a_rejected_token_is_not_echoed(tmp_path, template):
    """The API refuses the token (401): the hook explains, keeps the project, prints no token."""
    project = tmp_path / "svc"
    answers = {**BASE_ANSWERS, "language": "python-app", "create_gateway": True}
    with FakeCloudflareAPI(token="the-only-token-the-api-accepts") as api:
        result = copier("copy", "--trust", "--defaults", "--vcs-ref", "0.1.0",
                        *data_args(answers), str(template), str(project), cwd=tmp_path,
                        env=_env(api))

        assert result.returncode == 0, result.stderr
        assert api.requests, "the hook did not call the API"
        assert "NOT all created" in result.stdout + result.stderr
        assert (project / "pyproject.toml").is_file()
        assert _leaks(project, result.stdout, result.stderr) == []
