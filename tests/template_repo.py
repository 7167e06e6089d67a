"""Throwaway copies of this template for tests that need releases (git tags) or speed.

``template_clone(dst)`` copies the working tree (uncommitted changes included, never .git,
.venv, caches or node_modules) into ``dst``, makes it a git repository with one commit and
tags it ``0.1.0``: a release as the lead would cut it, without ever tagging /work/main.
``release(repo, tag, edit)`` then changes the template and tags the next version.

``template_dir(dst)`` is the same copy without git: Copier renders a plain directory
as-is (no clone), which makes the many ``--data`` refusal runs cheap.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from conftest import TEMPLATE_ROOT

# Never part of a template release: VCS data, local environments, caches, build output.
_IGNORED_TOP = {".git", ".venv", ".cache", "node_modules", ".pytest_cache", ".ruff_cache"}
_IGNORED_ANYWHERE = shutil.ignore_patterns(
    "__pycache__", "*.pyc", "node_modules", ".pytest_cache", ".ruff_cache", ".wrangler"
)

COPIER = [sys.executable, "-m", "copier"]
# A conflict marker line as git and Copier write them (prose may mention "<<<<<<<").
_MARKER = re.compile(r"^(<<<<<<<|>>>>>>>)( |$)", re.MULTILINE)


def _ignore(directory: str, names: list[str]) -> set[str]:
    ignored = set(_IGNORED_ANYWHERE(directory, names))
    if Path(directory) == TEMPLATE_ROOT:
        ignored |= _IGNORED_TOP & set(names)
    if Path(directory) == TEMPLATE_ROOT / "benchmarks":
        ignored |= {"results"} & set(names)
    return ignored


def template_dir(dst: Path) -> Path:
    """A plain (non-git) copy of the template's working tree."""
    shutil.copytree(TEMPLATE_ROOT, dst, ignore=_ignore, symlinks=True)
    return dst


def git(repo: Path, *args: str) -> str:
    """Run git in ``repo``; raise with git's own words when it fails."""
    result = subprocess.run(
        ["git", "-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false",
         "-c", "tag.gpgsign=false", *args],
        cwd=repo, capture_output=True, text=True, timeout=120,
    )
    if result.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed in {repo}:\n{result.stderr}")
    return result.stdout


def commit_all(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", message)


def template_clone(dst: Path, first_tag: str = "0.1.0") -> Path:
    """A git copy of the template with one commit tagged ``first_tag``."""
    template_dir(dst)
    git(dst, "init", "-q")
    commit_all(dst, f"template {first_tag}")
    git(dst, "tag", first_tag)
    return dst


def release(repo: Path, tag: str, edit: Callable[[Path], None]) -> None:
    """Change the template with ``edit(repo)``, commit and tag ``tag``."""
    edit(repo)
    commit_all(repo, f"template {tag}")
    git(repo, "tag", tag)


def init_project(project: Path, message: str = "rendered from the template") -> None:
    """Make a rendered project a git repository with everything committed (update needs it)."""
    git(project, "init", "-q")
    commit_all(project, message)


def copier(*args: str, cwd: Path, env: dict | None = None,
           timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the Copier CLI; never raises on a non-zero exit."""
    return subprocess.run(
        [*COPIER, *args], cwd=cwd, env=env if env is not None else dict(os.environ),
        capture_output=True, text=True, timeout=timeout,
    )


def data_args(answers: dict) -> list[str]:
    """``--data key=value`` pairs; lists and bools as JSON, so Copier parses them back."""
    import json

    out: list[str] = []
    for key, value in answers.items():
        text = json.dumps(value) if isinstance(value, (list, bool, int)) else str(value)
        out += ["--data", f"{key}={text}"]
    return out


def files_with_conflicts(project: Path) -> list[str]:
    """Files under ``project`` (outside .git) with conflict markers, plus any ``.rej``."""
    found = []
    for path in project.rglob("*"):
        if ".git" in path.relative_to(project).parts or not path.is_file():
            continue
        if path.suffix == ".rej":
            found.append(path.relative_to(project).as_posix())
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        if _MARKER.search(text):
            found.append(path.relative_to(project).as_posix())
    return sorted(found)
