"""Releases that exist: annotated tags for every CHANGELOG version, and a render from one.

The tests never rely on tags being present in this repository (a fresh CI clone may have
none): they clone the repository, delete whatever tags came along, create them again with
``tools/release.py tag`` as .github/workflows/release.yml runs it, and then render with the
README's own ``--vcs-ref`` example, read from README.md so the two cannot drift.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import TEMPLATE_ROOT, run
from template_repo import git

sys.path.insert(0, str(TEMPLATE_ROOT / "tools"))
import release  # noqa: E402 - tools/release.py, the module release.yml runs

TAG_COMMAND = "python3 tools/release.py tag"


def changelog_versions(repo: Path) -> list[str]:
    """Every released version in the clone's CHANGELOG.md, oldest first."""
    text = (repo / "CHANGELOG.md").read_text(encoding="utf-8")
    return [version for version, _ in reversed(release.releases(text))]


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """A clone of this repository with its tags made by ``tools/release.py tag``."""
    assert git(TEMPLATE_ROOT, "rev-parse", "--is-shallow-repository").strip() == "false", \
        "the release tests need the whole history (a CI checkout: fetch-depth: 0)"
    repo = tmp_path_factory.mktemp("release") / "ai-gateway-starter"
    git(TEMPLATE_ROOT, "clone", "-q", str(TEMPLATE_ROOT), str(repo))
    for tag in git(repo, "tag", "--list").split():
        git(repo, "tag", "-d", tag)
    tagged = run(["bash", "-c", TAG_COMMAND], repo, env=tag_env(repo / "github-output"),
                 timeout=120)
    return repo, tagged


def tag_env(output: Path) -> dict:
    output.write_text("")
    return {**os.environ, "GITHUB_OUTPUT": str(output)}


def heading_in(repo: Path, revision: str, version: str) -> bool:
    shown = subprocess.run(["git", "show", f"{revision}:CHANGELOG.md"], cwd=repo,
                           capture_output=True, text=True, timeout=60)
    return re.search(rf"^## \[?{re.escape(version)}\]?( |$)", shown.stdout, re.M) is not None


def test_release_workflow_runs_the_tag_command_tested_here():
    workflow = yaml.safe_load((TEMPLATE_ROOT / ".github/workflows/release.yml").read_text())
    (job,) = workflow["jobs"].values()
    assert TAG_COMMAND in [step.get("run") for step in job["steps"]]


def test_every_changelog_version_gets_an_annotated_tag_on_its_release_commit(clone):
    repo, tagged = clone
    versions = changelog_versions(repo)
    assert versions[:2] == ["0.1.0", "0.2.0"]

    assert tagged.returncode == 0, tagged.stdout + tagged.stderr
    lines = tagged.stdout.splitlines()
    assert [line.split()[1] for line in lines] == versions  # oldest first, none skipped
    assert (repo / "github-output").read_text() == f"tags={' '.join(versions)}\n"
    for line, version in zip(lines, versions):
        commit = line.split()[2]
        assert git(repo, "cat-file", "-t", version).strip() == "tag"  # annotated
        assert git(repo, "rev-parse", f"{version}^{{commit}}").strip() == commit
        # The commit that added the heading: there, and not in its parent.
        assert heading_in(repo, commit, version)
        assert not heading_in(repo, f"{commit}^", version)
        message = git(repo, "tag", "-l", "--format=%(contents)", version)
        assert message.startswith(f"{version}\n\n")


def test_tag_again_finds_nothing_missing(clone, tmp_path):
    repo, _ = clone
    output = tmp_path / "github-output"

    again = run(["bash", "-c", TAG_COMMAND], repo, env=tag_env(output), timeout=120)

    assert again.returncode == 0, again.stderr
    assert again.stdout == "every CHANGELOG release is tagged already\n"
    assert output.read_text() == "tags=\n"


def readme_vcs_ref_command() -> str:
    """The README's example render at a release: the shell line with ``--vcs-ref``."""
    readme = (TEMPLATE_ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```sh\n(.*?)\n```", readme, flags=re.S)
    commands = [line.split(" #", 1)[0].strip() for block in blocks
                for line in block.splitlines() if "copier" in line and "--vcs-ref" in line]
    assert len(commands) == 1, commands
    return commands[0]


def test_the_readmes_vcs_ref_example_renders_that_release(clone):
    repo, _ = clone
    command = readme_vcs_ref_command()
    version = re.search(r"--vcs-ref[= ](\S+)", command)[1]
    assert version in changelog_versions(repo)
    assert " ../my-service" in command  # lands beside the clone, as in the Quick start
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}

    rendered = run(["bash", "-c", command], repo, env=env, timeout=900)

    assert rendered.returncode == 0, rendered.stdout + rendered.stderr
    answers = yaml.safe_load((repo.parent / "my-service/.copier-answers.yml").read_text())
    assert answers["_commit"] == version
    assert answers["_src_path"] == str(repo)
