"""`copier update` / `copier recopy` bring template releases into services made from it.

Everything runs in a temporary git clone of this template (working tree included), tagged
0.1.0; the module then changes the template and tags 0.2.0. Each service is rendered at
0.1.0 with ``create_gateway=true`` against the loopback Cloudflare API, committed, edited by
its owner, and updated with the exact command README "Updating" documents. No task may touch
the API during update or recopy: the copy-time hook is the only one, and only on copy.
"""
from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path

import pytest
import yaml
from conftest import BASE_ANSWERS
from copier import run_copy
from fake_cloudflare_api import FakeCloudflareAPI
from plumbum import local
from template_repo import (
    commit_all,
    copier,
    files_with_conflicts,
    init_project,
    release,
    template_clone,
)

UPDATE = ["update", "--trust", "--defaults", "--skip-answered"]
RECOPY = ["recopy", "--trust", "--defaults", "--skip-answered", "--overwrite", "--skip-tasks"]

# What release 0.2.0 of the (cloned) template changes; the owner touches none of these lines.
GATEWAY_TOML_LINE = "# Added by template 0.2.0: nothing to do, this line only proves the update."
README_LINE = "Template 0.2.0 footer: this line arrived with copier update."
NEW_TEMPLATE_FILE = "UPDATED_IN_0_2_0.md"
NEW_TEMPLATE_TEXT = "This file is new in template 0.2.0.\n"

# The owner's own edits after rendering.
OWNER_README_LINE = "Owned by the payments team: page #payments-oncall."
OWNER_NEW_FILE = "docs/OWNER_NOTES.md"
OWNER_NEW_TEXT = "Notes the template knows nothing about.\n"

# Free text with everything that can break a file; it must survive every update verbatim.
HOSTILE_DESCRIPTION = 'Quotes " \' back\\slash {{ x }} {% if %} ${y} `z` </script> é 中文 🚀'


def _release_0_2_0(repo: Path) -> None:
    toml = repo / "template" / "_shared" / "ai-gateway.toml.jinja"
    toml.write_text(toml.read_text(encoding="utf-8").rstrip("\n") + "\n" + GATEWAY_TOML_LINE
                    + "\n", encoding="utf-8")
    readme = repo / "template" / "_shared" / "readme-updating.md.jinja"
    readme.write_text(readme.read_text(encoding="utf-8").rstrip("\n") + "\n\n" + README_LINE
                      + "\n", encoding="utf-8")
    for target in ("python-app", "typescript-worker"):
        (repo / "template" / target / NEW_TEMPLATE_FILE).write_text(NEW_TEMPLATE_TEXT, encoding="utf-8")


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    repo = template_clone(tmp_path_factory.mktemp("template") / "ai-gateway-starter")
    release(repo, "0.2.0", _release_0_2_0)
    return repo


@pytest.fixture(scope="module")
def api():
    with FakeCloudflareAPI() as fake:
        yield fake


@pytest.fixture
def env(api) -> dict:
    """The environment of a user with a management token and the loopback API."""
    environ = {k: v for k, v in os.environ.items()
               if k not in {"CF_API_TOKEN", "CF_AIG_TOKEN", "OPENAI_API_KEY",
                            "CLOUDFLARE_ACCOUNT_ID"}}
    environ.update(CLOUDFLARE_API_BASE_URL=api.base_url, CLOUDFLARE_API_TOKEN=api.token)
    return environ


def _copy(template: Path, dst: Path, env: dict, **answers) -> None:
    """``copier copy --trust --defaults --vcs-ref 0.1.0`` through Copier's API, its task
    (create_gateway) run in ``env``: Copier gives tasks plumbum's environment. The updates
    below go through the command line, as README "Updating" documents them."""
    with local.env():
        local.env.clear()
        local.env.update(**env)
        run_copy(str(template), str(dst), data={**BASE_ANSWERS, **answers}, defaults=True,
                 unsafe=True, vcs_ref="0.1.0", quiet=True)
    init_project(dst)


def _answers(project: Path) -> dict:
    return yaml.safe_load((project / ".copier-answers.yml").read_text(encoding="utf-8"))


def _owner_edits(project: Path, source: str, comment: str) -> None:
    readme = project / "README.md"
    lines = readme.read_text(encoding="utf-8").splitlines(keepends=True)
    lines.insert(1, f"\n{OWNER_README_LINE}\n")
    readme.write_text("".join(lines), encoding="utf-8")
    src = project / source
    src.write_text(f"{comment} Owner's edit: tuned for the payments team.\n"
                   + src.read_text(encoding="utf-8"), encoding="utf-8")
    (project / OWNER_NEW_FILE).parent.mkdir(parents=True, exist_ok=True)
    (project / OWNER_NEW_FILE).write_text(OWNER_NEW_TEXT, encoding="utf-8")
    commit_all(project, "owner's edits")


def _assert_owner_edits_kept(project: Path, source: str, comment: str) -> None:
    assert OWNER_README_LINE in (project / "README.md").read_text(encoding="utf-8")
    assert (project / source).read_text(encoding="utf-8").startswith(
        f"{comment} Owner's edit: tuned for the payments team.\n")
    assert (project / OWNER_NEW_FILE).read_text(encoding="utf-8") == OWNER_NEW_TEXT


TARGETS = {
    # language: (a source file the owner edits, its comment marker, extra answers)
    "python-app": ("src/demo_svc/cli.py", "#", {"description": HOSTILE_DESCRIPTION}),
    "typescript-worker": ("src/index.ts", "//", {}),
}


@pytest.mark.parametrize("language", sorted(TARGETS))
def test_update_recopy_and_changed_answer_keep_owner_edits(tmp_path, template, api, env,
                                                           language):
    source, comment, extra = TARGETS[language]
    project = tmp_path / "svc"
    _copy(template, project, env, language=language, create_gateway=True, **extra)
    # The copy-time hook really ran against the loopback API (so zero calls later means
    # the task is off during update, not that it could not reach anything).
    assert ("POST", f"/client/v4/accounts/{BASE_ANSWERS['account_id']}/ai-gateway/gateways") \
        in api.calls()
    assert _answers(project)["_commit"] == "0.1.0"
    _owner_edits(project, source, comment)
    calls_before = len(api.requests)

    # 1. A new release: 0.1.0 -> 0.2.0.
    result = copier(*UPDATE, cwd=project, env=env)

    assert result.returncode == 0, result.stderr
    _assert_owner_edits_kept(project, source, comment)
    assert (project / "ai-gateway.toml").read_text(encoding="utf-8").rstrip("\n").endswith(
        GATEWAY_TOML_LINE)
    assert tomllib.loads((project / "ai-gateway.toml").read_text(encoding="utf-8"))[
        "gateways"]["production"]["id"] == BASE_ANSWERS["gateway_id"]
    assert (project / "README.md").read_text(encoding="utf-8").rstrip("\n").endswith(README_LINE)
    assert (project / NEW_TEMPLATE_FILE).read_text(encoding="utf-8") == NEW_TEMPLATE_TEXT
    assert files_with_conflicts(project) == []
    answers = _answers(project)
    assert answers["_commit"] == "0.2.0"
    assert answers["create_gateway"] is True
    assert answers["description"] == extra.get("description", answers["description"])
    if language == "python-app":
        pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
        assert pyproject["project"]["description"] == HOSTILE_DESCRIPTION
    assert len(api.requests) == calls_before, api.calls()[calls_before:]
    commit_all(project, "update to 0.2.0")

    # 2. Change answers on update: auth mode unified-billing -> request-headers, and a
    # staging environment next to production (its gateway is NOT created: update never
    # calls the API; README says to run sync).
    result = copier(*UPDATE, "--data", "auth_mode=request-headers",
                    "--data", 'environments=["staging", "production"]', cwd=project, env=env)

    assert result.returncode == 0, result.stderr
    assert _answers(project)["auth_mode"] == "request-headers"
    assert _answers(project)["environments"] == ["staging", "production"]
    assert _answers(project)["_commit"] == "0.2.0"
    gateways = tomllib.loads((project / "ai-gateway.toml").read_text(encoding="utf-8"))
    assert {env_name: table["id"] for env_name, table in gateways["gateways"].items()} == {
        "staging": "demo-gw-staging", "production": "demo-gw"}
    assert sorted(api.gateways[BASE_ANSWERS["account_id"]]) == ["demo-gw"]
    if language == "python-app":
        settings = (project / "src/demo_svc/settings.py").read_text(encoding="utf-8")
        assert 'AUTH_MODE = "request-headers"' in settings
        assert "\nOPENAI_API_KEY=\n" in (project / ".env.example").read_text(encoding="utf-8")
    else:
        config = (project / "src/settings.ts").read_text(encoding="utf-8")
        assert 'export const AUTH_MODE: AuthMode = "request-headers";' in config
        wrangler = tomllib.loads((project / "wrangler.toml").read_text(encoding="utf-8"))
        assert wrangler["secrets"]["required"] == ["CF_AIG_TOKEN", "OPENAI_API_KEY",
                                                   "SERVICE_API_KEY"]
        assert wrangler["env"]["staging"]["vars"]["AI_GATEWAY_ID"] == "demo-gw-staging"
        assert wrangler["env"]["staging"]["secrets"]["required"] == [
            "CF_AIG_TOKEN", "OPENAI_API_KEY", "SERVICE_API_KEY"]
        assert "\nOPENAI_API_KEY=\n" in (project / ".dev.vars.example").read_text(
            encoding="utf-8")
    assert "**`request-headers`**" in (project / "README.md").read_text(encoding="utf-8")
    _assert_owner_edits_kept(project, source, comment)
    assert files_with_conflicts(project) == []
    assert len(api.requests) == calls_before, api.calls()[calls_before:]
    commit_all(project, "auth mode request-headers")

    # 3. Recopy: re-render from scratch with the recorded answers. Template files are
    # rendered afresh (the owner's edits to them are dropped: that is what recopy is for),
    # files the template does not know are kept, the answers stay. Copier runs recopy as a
    # copy, so copy tasks would run again: README documents --skip-tasks for it.
    result = copier(*RECOPY, cwd=project, env=env)

    assert result.returncode == 0, result.stderr
    answers = _answers(project)
    assert answers["_commit"] == "0.2.0"
    assert answers["auth_mode"] == "request-headers"
    assert answers["environments"] == ["staging", "production"]
    assert OWNER_README_LINE not in (project / "README.md").read_text(encoding="utf-8")
    assert "Owner's edit" not in (project / source).read_text(encoding="utf-8")
    assert (project / OWNER_NEW_FILE).read_text(encoding="utf-8") == OWNER_NEW_TEXT
    assert (project / NEW_TEMPLATE_FILE).read_text(encoding="utf-8") == NEW_TEMPLATE_TEXT
    assert files_with_conflicts(project) == []
    assert len(api.requests) == calls_before, api.calls()[calls_before:]


def test_conflict_is_left_inline_and_update_still_exits_0(tmp_path, template, api, env):
    """Owner and template change the same spot: Git-style markers, documented in README."""
    project = tmp_path / "svc"
    calls_before = len(api.requests)
    _copy(template, project, env, language="python-app")
    toml = project / "ai-gateway.toml"
    owner_line = "# Owner: the staging gateway is managed by hand."
    toml.write_text(toml.read_text(encoding="utf-8").rstrip("\n") + "\n" + owner_line + "\n",
                    encoding="utf-8")
    commit_all(project, "owner's note at the end of ai-gateway.toml")

    result = copier(*UPDATE, cwd=project, env=env)

    assert result.returncode == 0, result.stderr
    assert files_with_conflicts(project) == ["ai-gateway.toml"]
    text = toml.read_text(encoding="utf-8")
    conflict = text[text.index("<<<<<<<"):]
    assert conflict == (
        "<<<<<<< before updating\n"
        f"{owner_line}\n"
        "=======\n"
        f"{GATEWAY_TOML_LINE}\n"
        ">>>>>>> after updating\n"
    )
    assert _answers(project)["_commit"] == "0.2.0"
    assert not list(project.rglob("*.rej"))
    assert len(api.requests) == calls_before  # create_gateway false: not even copy calls it


def test_answers_file_records_the_release_answers_only_and_no_secret(tmp_path, template, env):
    project = tmp_path / "svc"
    _copy(template, project, env, language="typescript-worker")

    answers = _answers(project)

    assert answers["_commit"] == "0.1.0"
    assert answers["_src_path"] == str(template)
    questions = yaml.safe_load((template / "copier.yml").read_text(encoding="utf-8"))
    computed = {name for name, spec in questions.items()
                if isinstance(spec, dict) and spec.get("when") is False}
    asked = {name for name in questions if not name.startswith("_")} - computed
    # Every answer update needs is there; computed values are never stored (update derives
    # them again from the answers).
    assert {"project_name", "language", "account_id", "gateway_id", "auth_mode",
            "environments", "create_gateway"} <= set(answers)
    assert set(answers) - {"_commit", "_src_path"} <= asked
    assert not computed & set(answers)
    assert env["CLOUDFLARE_API_TOKEN"] not in json.dumps(answers)
