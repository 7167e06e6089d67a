"""template-update.yml: a rendered project takes the template's newest release as a pull request.

A local template clone carries two releases: OLD, the working tree as the newest version
CHANGELOG.md names, and NEW, the next patch version, which adds
a dependency (so the lock must change), a CHANGELOG entry and a changed README line. A
python-app service is rendered at OLD, locked (``uv lock``) and committed, once per module.
Each test copies it and runs the workflow's own run steps (read from the rendered
template-update.yml: the test and the workflow cannot drift), all but the ``publish`` step,
which needs GitHub; that one runs against a local bare ``origin`` and a ``gh`` stand-in.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import BASE_ANSWERS, TEMPLATE_ROOT, run
from copier import run_copy
from template_repo import commit_all, git, init_project, release, template_clone

# The working tree is the newest release CHANGELOG.md names; the next one is made here.
_NEWEST = re.search(r"^## (\d+)\.(\d+)\.(\d+) - ", (TEMPLATE_ROOT / "CHANGELOG.md").read_text(),
                    flags=re.M)
_MAJOR, _MINOR, _PATCH = map(int, _NEWEST.groups())
OLD, NEW = f"{_MAJOR}.{_MINOR}.{_PATCH}", f"{_MAJOR}.{_MINOR}.{_PATCH + 1}"
BODY = "$RUNNER_TEMP/template-update.md"
# What template-update.yml runs, in order; the last one talks to GitHub.
STEPS = [
    "uvx copier@9.19.1 update --trust --skip-tasks --defaults",
    f'python3 scripts/template_update.py report --body "{BODY}"',
    f'python3 scripts/template_update.py publish --body "{BODY}"',
]

NEW_DEPENDENCY = '    "tenacity>=9.0",\n'
CHANGELOG_ENTRY = ("### Added\n\n"
                   "- Retries through `tenacity`, a new dependency: run `uv lock` after updating.")
README_LINE = ("This project remembers where it came from in `.copier-answers.yml` "
               "(never edit it by hand).")
README_LINE_NEW = README_LINE.replace("(never", "(Copier writes it; never")
OWNER_README_LINE = README_LINE.replace("(never", "(owner: we update monthly; never")


def replace_once(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{path} no longer has {old!r} once"
    path.write_text(text.replace(old, new), encoding="utf-8")


def release_new(repo: Path) -> None:
    replace_once(repo / "template/python-app/pyproject.toml.jinja",
                 '    "python-dotenv>=1.0",\n', '    "python-dotenv>=1.0",\n' + NEW_DEPENDENCY)
    replace_once(repo / "template/_shared/readme-updating.md.jinja", README_LINE,
                 README_LINE_NEW)
    replace_once(repo / "CHANGELOG.md", f"\n## {OLD} - ",
                 f"\n## {NEW} - 2026-12-02\n\n{CHANGELOG_ENTRY}\n\n## {OLD} - ")


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    repo = template_clone(tmp_path_factory.mktemp("template") / "ai-gateway-starter", OLD)
    release(repo, NEW, release_new)
    return repo


@pytest.fixture(scope="module")
def service(template, tmp_path_factory) -> Path:
    """demo-svc rendered at OLD, its uv.lock made and everything committed."""
    project = tmp_path_factory.mktemp("rendered") / "demo-svc"
    run_copy(str(template), str(project), data={**BASE_ANSWERS, "language": "python-app"},
             defaults=True, unsafe=True, vcs_ref=OLD, quiet=True)
    locked = run(["uv", "lock"], project, env=tool_env(), timeout=600)
    assert locked.returncode == 0, locked.stderr
    init_project(project)
    return project


def tool_env(**extra: str) -> dict:
    """uv/uvx from this suite's environment (requirements-dev.txt), as on a runner's PATH."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    return {**os.environ, "PATH": path, **extra}


def copy_of(service: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(service, tmp_path / "demo-svc", symlinks=True))


def run_steps(project: Path, tmp_path: Path, steps: list[str]) -> tuple[str, str]:
    """The workflow's run steps in ``project``; (body, $GITHUB_OUTPUT) they wrote."""
    output = tmp_path / "github-output"
    output.write_text("")
    env = tool_env(RUNNER_TEMP=str(tmp_path), GITHUB_OUTPUT=str(output))
    for step in steps:
        result = run(["bash", "-c", step], project, env=env, timeout=900)
        assert result.returncode == 0, f"{step}\n{result.stdout}\n{result.stderr}"
    body = tmp_path / "template-update.md"
    return (body.read_text() if body.exists() else ""), output.read_text()


def expected_body(conflicts: str) -> str:
    return f"""## Template update: {OLD} -> {NEW}

`.github/workflows/template-update.yml` ran `{STEPS[0]}` (the newest release, every \
recorded answer kept), then the lock file's command.

### Versions crossed

From `{OLD}` to `{NEW}`:

- {NEW} - 2026-12-02

### Conflicts

{conflicts}

### Lock file

`uv.lock` refreshed with `uv lock`.

## What changed (the template's CHANGELOG.md)

### {NEW} - 2026-12-02

{CHANGELOG_ENTRY.replace("### Added", "#### Added")}
"""


def answers(project: Path) -> dict:
    return yaml.safe_load((project / ".copier-answers.yml").read_text())


def test_workflow_runs_the_steps_tested_here(service):
    workflow = yaml.safe_load((service / ".github/workflows/template-update.yml").read_text())
    triggers = workflow[True]  # PyYAML reads the key `on` as True
    assert set(triggers) == {"schedule", "workflow_dispatch"}  # never pull_request
    (job,) = workflow["jobs"].values()
    assert job["permissions"] == {"contents": "write", "pull-requests": "write"}
    assert [step["run"] for step in job["steps"] if "run" in step] == STEPS
    publish = job["steps"][-1]
    assert publish["if"] == "steps.report.outputs.changed == 'true'"
    assert publish["env"]["GH_TOKEN"] == "${{ secrets.TEMPLATE_UPDATE_TOKEN || github.token }}"


def test_readme_names_the_token_and_the_commands_the_workflow_uses(service):
    readme = (service / "README.md").read_text()
    section = readme.split("## Updating from the template\n", 1)[1].split("\n## ", 1)[0]
    workflow = (service / ".github/workflows/template-update.yml").read_text()
    assert "secrets.TEMPLATE_UPDATE_TOKEN" in workflow
    assert "- **`TEMPLATE_UPDATE_TOKEN`** (repository secret; used when set)" in section
    assert "Contents, Pull requests and Workflows: Read and\n  write" in section
    assert f"`{STEPS[0]}`" in section
    assert "`uv.lock` (`uv lock`)" in section


def test_update_moves_to_the_new_release_with_a_fresh_lock_and_its_changelog(service,
                                                                               tmp_path):
    project = copy_of(service, tmp_path)

    body, output = run_steps(project, tmp_path, STEPS[:2])

    assert answers(project)["_commit"] == NEW
    assert NEW_DEPENDENCY in (project / "pyproject.toml").read_text()
    assert 'name = "tenacity"' in (project / "uv.lock").read_text()
    checked = run(["uv", "lock", "--check"], project, env=tool_env(), timeout=600)
    assert checked.returncode == 0, checked.stderr
    assert output == f"changed=true\nold={OLD}\nnew={NEW}\nconflicts=0\n"
    assert body == expected_body("No conflicts: no `.rej` files and no conflict markers.")


def test_update_lists_the_file_an_owner_edit_collided_in(service, tmp_path):
    project = copy_of(service, tmp_path)
    replace_once(project / "README.md", README_LINE, OWNER_README_LINE)
    commit_all(project, "owner's README line")

    body, output = run_steps(project, tmp_path, STEPS[:2])

    readme = (project / "README.md").read_text()
    assert f"<<<<<<< before updating\n{OWNER_README_LINE}\n=======\n" in readme
    assert output == f"changed=true\nold={OLD}\nnew={NEW}\nconflicts=1\n"
    assert body == expected_body(
        "Resolve these on this branch before merging (keep what you want, delete the "
        "markers or the `.rej` file, commit):\n\n- `README.md` (conflict markers)")


def test_update_with_a_conflict_in_pyproject_leaves_the_lock_to_the_owner(service, tmp_path):
    project = copy_of(service, tmp_path)
    replace_once(project / "pyproject.toml", '"python-dotenv>=1.0",', '"python-dotenv>=1.1",')
    commit_all(project, "owner's python-dotenv pin")
    lock_before = (project / "uv.lock").read_text()

    body, output = run_steps(project, tmp_path, STEPS[:2])

    assert "<<<<<<< before updating\n" in (project / "pyproject.toml").read_text()
    assert (project / "uv.lock").read_text() == lock_before  # uv lock did not run
    assert output == f"changed=true\nold={OLD}\nnew={NEW}\nconflicts=1\n"
    assert "- `pyproject.toml` (conflict markers)" in body
    assert ("### Lock file\n\n`uv.lock` was not refreshed: `pyproject.toml` has conflicts. "
            "Resolve them, then run `uv lock` and commit `uv.lock`.\n") in body


def test_report_without_an_update_changes_nothing(service, tmp_path):
    project = copy_of(service, tmp_path)

    body, output = run_steps(project, tmp_path, STEPS[1:2])

    assert output == f"changed=false\nold={OLD}\nnew={OLD}\nconflicts=0\n"
    assert body == ""
    assert git(project, "status", "--porcelain") == ""


# ---- publish: a local bare origin and a gh stand-in that records its calls -------------

FAKE_GH = """#!/usr/bin/env python3
import json, os, sys
with open(os.environ["GH_CALLS"], "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
if sys.argv[1:3] == ["pr", "list"]:
    print(os.environ["GH_OPEN_PRS"])
elif sys.argv[1:3] == ["pr", "create"]:
    print("https://github.com/acme/demo-svc/pull/7")
"""


def publish_setup(service: Path, tmp_path: Path, open_prs: list) -> tuple[Path, Path, dict]:
    """An updated-looking copy (``_commit`` moved), a bare origin, and gh on PATH."""
    project = copy_of(service, tmp_path)
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(origin))
    git(project, "remote", "add", "origin", str(origin))
    replace_once(project / ".copier-answers.yml", f"_commit: {OLD}\n", f"_commit: {NEW}\n")
    (tmp_path / "template-update.md").write_text("the body\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "gh").write_text(FAKE_GH.replace("python3", sys.executable, 1))
    (bin_dir / "gh").chmod(stat.S_IRWXU)
    env = tool_env(RUNNER_TEMP=str(tmp_path), GH_CALLS=str(tmp_path / "gh-calls"),
                   GH_OPEN_PRS=json.dumps(open_prs))
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    return project, origin, env


def gh_calls(tmp_path: Path) -> list[list[str]]:
    return [json.loads(line) for line in (tmp_path / "gh-calls").read_text().splitlines()]


def test_publish_pushes_the_branch_and_opens_the_pull_request(service, tmp_path):
    project, origin, env = publish_setup(service, tmp_path, [])

    result = run(["bash", "-c", STEPS[2]], project, env=env, timeout=120)

    assert result.returncode == 0, result.stderr
    assert result.stdout == "opened https://github.com/acme/demo-svc/pull/7\n"
    title = f"Template update: {OLD} -> {NEW}"
    assert git(origin, "log", "-1", "--format=%s", "template-update").strip() == title
    assert git(origin, "show", "template-update:.copier-answers.yml").count(f"_commit: {NEW}")
    body = str(tmp_path / "template-update.md")
    assert gh_calls(tmp_path) == [
        ["pr", "list", "--head", "template-update", "--state", "open", "--json", "number,title"],
        ["auth", "setup-git"],
        ["pr", "create", "--head", "template-update", "--title", title, "--body-file", body],
    ]


def test_publish_leaves_an_open_pull_request_for_the_same_version_alone(service, tmp_path):
    title = f"Template update: {OLD} -> {NEW}"
    project, origin, env = publish_setup(service, tmp_path, [{"number": 7, "title": title}])

    result = run(["bash", "-c", STEPS[2]], project, env=env, timeout=120)

    assert result.returncode == 0, result.stderr
    assert result.stdout == f"pull request #7 already proposes {NEW}: left as it is\n"
    assert git(origin, "branch", "--list") == ""  # nothing pushed
    assert len(gh_calls(tmp_path)) == 1


def test_publish_moves_an_open_pull_request_to_a_newer_release(service, tmp_path):
    older = [{"number": 7, "title": f"Template update: 0.1.0 -> {OLD}"}]
    project, origin, env = publish_setup(service, tmp_path, older)

    result = run(["bash", "-c", STEPS[2]], project, env=env, timeout=120)

    assert result.returncode == 0, result.stderr
    assert result.stdout == f"pull request #7 now proposes {NEW}\n"
    title = f"Template update: {OLD} -> {NEW}"
    assert gh_calls(tmp_path)[-1] == ["pr", "edit", "7", "--title", title, "--body-file",
                                      str(tmp_path / "template-update.md")]
    assert subprocess.run(["git", "-C", str(origin), "rev-parse", "template-update"],
                          capture_output=True).returncode == 0
