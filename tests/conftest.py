"""Shared fixtures: render this template (the working tree, uncommitted changes included)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from copier import run_copy

TEMPLATE_ROOT = Path(__file__).resolve().parents[1]

# Tests commit rendered projects and template clones: give git an identity that does
# not depend on the machine's configuration.
for _key, _value in {
    "GIT_AUTHOR_NAME": "template tests",
    "GIT_AUTHOR_EMAIL": "tests@ai-gateway-starter.invalid",
    "GIT_COMMITTER_NAME": "template tests",
    "GIT_COMMITTER_EMAIL": "tests@ai-gateway-starter.invalid",
}.items():
    os.environ.setdefault(_key, _value)
ACCOUNT_ID = "0123456789abcdef0123456789abcdef"
AUTH_MODES = ("unified-billing", "byok", "request-headers")

# Answers every test starts from; a test overrides what it cares about.
BASE_ANSWERS = {
    "project_name": "demo-svc",
    "account_id": ACCOUNT_ID,
    "gateway_id": "demo-gw",
}


def render(dst: Path, **answers) -> Path:
    """Render the template into ``dst`` non-interactively and return ``dst``."""
    data = {**BASE_ANSWERS, **answers}
    run_copy(
        str(TEMPLATE_ROOT),
        str(dst),
        data=data,
        defaults=True,
        unsafe=True,  # the template has a (copy-only, opt-in) task
        vcs_ref="HEAD",  # HEAD plus uncommitted changes: never a stale tag
        quiet=True,
    )
    return dst


def rendered_files(root: Path) -> set[str]:
    """All files under ``root`` as POSIX paths relative to it."""
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def render_project(tmp_path):
    """Factory fixture: ``render_project(**answers)`` renders into a fresh folder."""
    counter = iter(range(1000))

    def _render(**answers) -> Path:
        return render(tmp_path / f"project-{next(counter)}", **answers)

    return _render


def run(cmd, cwd: Path, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run a command, capturing text output; never raises on a non-zero exit."""
    return subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
