"""The template's layout: one plain folder per target, shared files reached by include stubs.

- Every file in template/_shared/ that is not a ``.jinja`` file is included verbatim into
  both targets, so it must hold no Jinja syntax (or mark it raw).
- A service rendered before the per-target layout (commit ``PRE_LAYOUT``, the last commit
  with the single interleaved ``template/`` folder) updates across the change with no
  conflict and comes out exactly as a fresh render of the new layout: no file lost, none
  stray.
- A service rendered from the last release (``LAST_RELEASE``, 0.2.0) updates to the working
  tree the same way: no conflict, and byte for byte a fresh render.
- An update that switches ``language`` turns one target into the other, the same way.

The fresh renders of 0.2.0 (the working tree) come from conftest's plain copy of it, one per
answer set for the module: the same files as a render of the tag, without a git clone.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import BASE_ANSWERS, TEMPLATE_ROOT, render, rendered_files
from copier import run_copy
from template_repo import (
    commit_all,
    copier,
    files_with_conflicts,
    git,
    init_project,
    template_dir,
)

SHARED = TEMPLATE_ROOT / "template" / "_shared"
PRE_LAYOUT = "7ccc709"  # main before "Per-target folders" (template/ held both targets)
LAST_RELEASE = "93c9b20"  # "CHANGELOG: 0.2.0", the release services are made from today
UPDATE = ["update", "--trust", "--defaults", "--skip-answered"]
_JINJA = re.compile(r"\{\{|\{%|\{#")
_RAW = re.compile(r"\{% raw %\}.*?\{% endraw %\}", re.DOTALL)


def test_shared_files_included_verbatim_hold_no_jinja():
    verbatim = [p for p in SHARED.rglob("*") if p.is_file() and p.suffix != ".jinja"]

    assert "scripts/ai_gateway.py" in {p.relative_to(SHARED).as_posix() for p in verbatim}
    for path in verbatim:
        outside_raw = _RAW.sub("", path.read_text(encoding="utf-8"))
        assert not _JINJA.search(outside_raw), path


def test_each_shared_file_is_reached_by_a_one_line_stub_in_both_targets():
    shared = {p.relative_to(SHARED).as_posix() for p in SHARED.rglob("*") if p.is_file()}
    stubs = {}
    for target in ("python-app", "typescript-worker"):
        for path in (TEMPLATE_ROOT / "template" / target).rglob("*"):
            if path.is_file() and "{% include \"template/_shared/" in path.read_text(
                    encoding="utf-8", errors="replace"):
                for name in re.findall(r'\{% include "template/_shared/([^"]+)" %\}',
                                       path.read_text(encoding="utf-8")):
                    stubs.setdefault(name, set()).add(target)

    # Every shared file is used, by both targets.
    assert {name: targets for name, targets in stubs.items()
            if targets != {"python-app", "typescript-worker"}} == {}
    assert shared == set(stubs)


def test_no_exclude_entry_names_a_target():
    config = yaml.safe_load((TEMPLATE_ROOT / "copier.yml").read_text(encoding="utf-8"))

    assert config["_subdirectory"] == "template/{{ language }}"
    for pattern in config["_exclude"]:
        assert "language" not in pattern and "/" not in pattern, pattern


def _two_release_template(dst: Path, old: str) -> Path:
    """A template repo tagged 0.1.0 at commit ``old`` and 0.2.0 at the working tree."""
    archive = subprocess.run(["git", "archive", old], cwd=TEMPLATE_ROOT,
                             capture_output=True, check=True).stdout
    dst.mkdir(parents=True)
    subprocess.run(["tar", "-x"], input=archive, cwd=dst, check=True)
    git(dst, "init", "-q")
    commit_all(dst, f"template at {old}")
    git(dst, "tag", "0.1.0")
    new = template_dir(dst.parent / "working-tree")
    for path in dst.iterdir():
        if path.name != ".git":
            subprocess.run(["rm", "-rf", str(path)], check=True)
    for path in new.iterdir():
        subprocess.run(["cp", "-a", str(path), str(dst)], check=True)
    commit_all(dst, "per-target layout")
    git(dst, "tag", "0.2.0")
    return dst


@pytest.fixture(scope="module")
def two_releases(tmp_path_factory) -> Path:
    return _two_release_template(tmp_path_factory.mktemp("layout") / "ai-gateway-starter",
                                 PRE_LAYOUT)


@pytest.fixture(scope="module")
def since_last_release(tmp_path_factory) -> Path:
    return _two_release_template(tmp_path_factory.mktemp("release") / "ai-gateway-starter",
                                 LAST_RELEASE)


def _render(template: Path, dst: Path, ref: str, **answers) -> Path:
    """``copier copy --trust --defaults --vcs-ref <ref>``, through Copier's API (the updates
    below go through the command line, as README "Updating" documents them)."""
    run_copy(str(template), str(dst), data={**BASE_ANSWERS, **answers}, defaults=True,
             unsafe=True, vcs_ref=ref, quiet=True)
    return dst


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    """``fresh(**answers)``: a render of the working tree (release 0.2.0 in the template repos
    above) with ``answers``, once per answer set for the module."""
    made: dict[str, Path] = {}

    def get(**answers) -> Path:
        key = repr(sorted(answers.items()))
        if key not in made:
            made[key] = render(tmp_path_factory.mktemp("fresh") / "svc", **answers)
        return made[key]

    return get


def _same_project(updated: Path, fresh: Path) -> None:
    """``updated`` is byte for byte ``fresh``, its answers those of ``fresh`` at 0.2.0."""
    files = rendered_files(updated) - {p for p in rendered_files(updated) if p.startswith(".git/")}
    assert files == rendered_files(fresh)
    for name in sorted(files - {".copier-answers.yml"}):
        assert (updated / name).read_bytes() == (fresh / name).read_bytes(), name
    old = yaml.safe_load((updated / ".copier-answers.yml").read_text(encoding="utf-8"))
    new = yaml.safe_load((fresh / ".copier-answers.yml").read_text(encoding="utf-8"))
    # fresh comes from a plain folder: no _commit, another _src_path
    assert old.pop("_commit") == "0.2.0" and "_commit" not in new
    assert {k: v for k, v in old.items() if k != "_src_path"} == {
        k: v for k, v in new.items() if k != "_src_path"}


@pytest.mark.parametrize("language", ["python-app", "typescript-worker"])
def test_service_from_before_the_layout_updates_across_it(two_releases, fresh, tmp_path, language):
    project = _render(two_releases, tmp_path / "svc", "0.1.0", language=language,
                      providers=["anthropic", "compat"])
    init_project(project)

    result = copier(*UPDATE, cwd=project)

    assert result.returncode == 0, result.stderr
    assert files_with_conflicts(project) == []
    _same_project(project, fresh(language=language, providers=["anthropic", "compat"]))
    # Caller auth arrives on by default (a breaking change): the update says what to do.
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text(encoding="utf-8"))
    assert answers["caller_auth"] == "api-key"
    said = " ".join((result.stdout + result.stderr).split())
    assert "Callers must send Authorization: Bearer $SERVICE_API_KEY" in said
    assert ("npx wrangler secret put SERVICE_API_KEY" in said) is (language == "typescript-worker")
    assert "--data caller_auth=none" in said


@pytest.mark.parametrize("language", ["python-app", "typescript-worker"])
def test_service_from_the_last_release_updates_cleanly(since_last_release, fresh, tmp_path, language):
    answers = {"language": language, "providers": ["anthropic", "compat"]}
    project = _render(since_last_release, tmp_path / "svc", "0.1.0", **answers)
    init_project(project)

    result = copier(*UPDATE, cwd=project)

    assert result.returncode == 0, result.stderr
    assert files_with_conflicts(project) == []
    _same_project(project, fresh(**answers))


def test_update_can_switch_the_language(two_releases, fresh, tmp_path):
    project = _render(two_releases, tmp_path / "svc", "0.2.0", language="python-app")
    init_project(project)

    result = copier(*UPDATE, "--data", "language=typescript-worker", cwd=project)

    assert result.returncode == 0, result.stderr
    assert files_with_conflicts(project) == []
    assert not (project / "pyproject.toml").exists()
    assert not (project / "src" / "demo_svc").exists()
    _same_project(project, fresh(language="typescript-worker"))
