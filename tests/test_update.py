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
import shutil
import tomllib
from dataclasses import dataclass
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


@pytest.fixture(scope="module")
def env_module(api) -> dict:
    """The environment of a user with a management token and the loopback API."""
    environ = {k: v for k, v in os.environ.items()
               if k not in {"CF_API_TOKEN", "CF_AIG_TOKEN", "OPENAI_API_KEY",
                            "CLOUDFLARE_ACCOUNT_ID"}}
    environ.update(CLOUDFLARE_API_BASE_URL=api.base_url, CLOUDFLARE_API_TOKEN=api.token)
    return environ


@pytest.fixture
def env(env_module) -> dict:
    return dict(env_module)


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


@dataclass
class Phase:
    """A service after one step of its life: its folder (a copy, kept for the tests of this
    step), its language, and the requests the step sent to the Cloudflare API."""

    project: Path
    language: str
    api_calls: list


def _next_phase(previous: Phase, dst: Path, api, env: dict, *args: str) -> Phase:
    """Copy ``previous``'s folder to ``dst`` and run ``copier *args`` there; it must exit 0."""
    shutil.copytree(previous.project, dst, symlinks=True)
    before = len(api.requests)
    result = copier(*args, cwd=dst, env=env)
    assert result.returncode == 0, result.stderr
    return Phase(dst, previous.language, api.calls()[before:])


@pytest.fixture(scope="module", params=sorted(TARGETS))
def copied(request, tmp_path_factory, template, api, env_module) -> Phase:
    """Rendered at 0.1.0 with create_gateway (the copy-time hook calls the API), then edited
    and committed by its owner."""
    language = request.param
    source, comment, extra = TARGETS[language]
    project = tmp_path_factory.mktemp(f"copied-{language}") / "svc"
    before = len(api.requests)
    _copy(template, project, env_module, language=language, create_gateway=True, **extra)
    calls = api.calls()[before:]
    _owner_edits(project, source, comment)
    return Phase(project, language, calls)


@pytest.fixture(scope="module")
def updated(copied, tmp_path_factory, api, env_module) -> Phase:
    """``copied`` after ``copier update`` to release 0.2.0."""
    dst = tmp_path_factory.mktemp(f"updated-{copied.language}") / "svc"
    return _next_phase(copied, dst, api, env_module, *UPDATE)


@pytest.fixture(scope="module")
def answers_changed(updated, tmp_path_factory, api, env_module) -> Phase:
    """``updated``, committed, then updated again with new answers: request-headers, and a
    staging environment next to production."""
    commit_all(updated.project, "update to 0.2.0")
    dst = tmp_path_factory.mktemp(f"answers-{updated.language}") / "svc"
    return _next_phase(updated, dst, api, env_module, *UPDATE, "--data",
                       "auth_mode=request-headers", "--data",
                       'environments=["staging", "production"]')


@pytest.fixture(scope="module")
def recopied(answers_changed, tmp_path_factory, api, env_module) -> Phase:
    """``answers_changed``, committed, then re-rendered from scratch (``copier recopy``)."""
    commit_all(answers_changed.project, "auth mode request-headers")
    dst = tmp_path_factory.mktemp(f"recopied-{answers_changed.language}") / "svc"
    return _next_phase(answers_changed, dst, api, env_module, *RECOPY)


def test_copy_runs_the_create_gateway_hook_and_records_the_release(copied):
    # The hook really reached the loopback API (it creates the gateway, or finds the one the
    # other language's copy created), so no calls later means the task is off during update
    # and recopy, not that it could not reach anything.
    gateways = f"/client/v4/accounts/{BASE_ANSWERS['account_id']}/ai-gateway/gateways"
    assert copied.api_calls and all(path.startswith(gateways) for _, path in copied.api_calls)
    assert _answers(copied.project)["_commit"] == "0.1.0"


def test_update_brings_the_new_release(updated):
    project = updated.project
    toml = (project / "ai-gateway.toml").read_text(encoding="utf-8")
    assert toml.rstrip("\n").endswith(GATEWAY_TOML_LINE)
    assert tomllib.loads(toml)["gateways"]["production"]["id"] == BASE_ANSWERS["gateway_id"]
    readme = (project / "README.md").read_text(encoding="utf-8")
    assert readme.rstrip("\n").endswith(README_LINE)
    assert (project / NEW_TEMPLATE_FILE).read_text(encoding="utf-8") == NEW_TEMPLATE_TEXT
    assert files_with_conflicts(project) == []
    assert _answers(project)["_commit"] == "0.2.0"


def test_update_keeps_the_owners_edits(updated):
    source, comment, _ = TARGETS[updated.language]
    _assert_owner_edits_kept(updated.project, source, comment)


def test_update_keeps_the_answers_and_the_free_text_verbatim(updated):
    answers = _answers(updated.project)
    assert answers["create_gateway"] is True
    _, _, extra = TARGETS[updated.language]
    assert answers["description"] == extra.get("description", answers["description"])
    if updated.language == "python-app":
        pyproject = (updated.project / "pyproject.toml").read_text(encoding="utf-8")
        assert tomllib.loads(pyproject)["project"]["description"] == HOSTILE_DESCRIPTION


def test_update_calls_no_api(updated):
    assert updated.api_calls == []


def test_update_with_changed_answers_calls_no_api(answers_changed):
    assert answers_changed.api_calls == []


def test_recopy_calls_no_api(recopied):
    assert recopied.api_calls == []


def test_changed_answers_are_recorded_and_name_the_new_gateway(answers_changed):
    answers = _answers(answers_changed.project)
    assert (answers["auth_mode"], answers["environments"], answers["_commit"]) == (
        "request-headers", ["staging", "production"], "0.2.0")
    toml = (answers_changed.project / "ai-gateway.toml").read_text(encoding="utf-8")
    gateways = tomllib.loads(toml)["gateways"]
    assert {name: table["id"] for name, table in gateways.items()} == {
        "staging": "demo-gw-staging", "production": "demo-gw"}


def test_changed_answers_create_no_gateway(answers_changed, api):
    # README says to run sync for the new environment's gateway: update never calls the API.
    assert sorted(api.gateways[BASE_ANSWERS["account_id"]]) == ["demo-gw"]


def test_changed_auth_mode_rewrites_the_settings_and_secrets(answers_changed):
    project = answers_changed.project
    if answers_changed.language == "python-app":
        settings = (project / "src/demo_svc/settings.py").read_text(encoding="utf-8")
        assert 'AUTH_MODE = "request-headers"' in settings
        assert "\nOPENAI_API_KEY=\n" in (project / ".env.example").read_text(encoding="utf-8")
    else:
        config = (project / "src/settings.ts").read_text(encoding="utf-8")
        assert 'export const AUTH_MODE: AuthMode = "request-headers";' in config
        wrangler = tomllib.loads((project / "wrangler.toml").read_text(encoding="utf-8"))
        secrets = ["CF_AIG_TOKEN", "OPENAI_API_KEY", "SERVICE_API_KEY"]
        assert wrangler["secrets"]["required"] == secrets
        assert wrangler["env"]["staging"]["vars"]["AI_GATEWAY_ID"] == "demo-gw-staging"
        assert wrangler["env"]["staging"]["secrets"]["required"] == secrets
        dev_vars = (project / ".dev.vars.example").read_text(encoding="utf-8")
        assert "\nOPENAI_API_KEY=\n" in dev_vars
    assert "**`request-headers`**" in (project / "README.md").read_text(encoding="utf-8")


def test_changed_answers_keep_the_owners_edits(answers_changed):
    source, comment, _ = TARGETS[answers_changed.language]
    _assert_owner_edits_kept(answers_changed.project, source, comment)
    assert files_with_conflicts(answers_changed.project) == []


def test_recopy_renders_template_files_afresh_and_keeps_the_owners_own(recopied):
    # That is what recopy is for; Copier runs it as a copy, so README documents --skip-tasks.
    source, _, _ = TARGETS[recopied.language]
    project = recopied.project
    assert OWNER_README_LINE not in (project / "README.md").read_text(encoding="utf-8")
    assert "Owner's edit" not in (project / source).read_text(encoding="utf-8")
    assert (project / OWNER_NEW_FILE).read_text(encoding="utf-8") == OWNER_NEW_TEXT
    assert (project / NEW_TEMPLATE_FILE).read_text(encoding="utf-8") == NEW_TEMPLATE_TEXT
    assert files_with_conflicts(project) == []


def test_recopy_keeps_the_answers(recopied):
    answers = _answers(recopied.project)
    assert (answers["_commit"], answers["auth_mode"], answers["environments"]) == (
        "0.2.0", "request-headers", ["staging", "production"])


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
