"""Shared fixtures: render this template (the working tree, uncommitted changes included).

Which tests share a worker in parallel runs, and which start first: tests/scheduling.py.
Shared test data: tests/cases.py; shared helpers: tools/testkit.py.
"""
from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
from copier import run_copy

TEMPLATE_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TEMPLATE_ROOT / "tools"))

from cases import ACCOUNT_ID, AUTH_MODES, BASE_ANSWERS  # noqa: F401 - the shared test data
from testkit import Result, free_port, run  # noqa: F401 - the shared test kit

pytest_plugins = ["scheduling"]  # parallel runs: tests/scheduling.py

# Tests commit rendered projects and template clones: give git an identity that does
# not depend on the machine's configuration.
for _key, _value in {
    "GIT_AUTHOR_NAME": "template tests",
    "GIT_AUTHOR_EMAIL": "tests@ai-gateway-starter.invalid",
    "GIT_COMMITTER_NAME": "template tests",
    "GIT_COMMITTER_EMAIL": "tests@ai-gateway-starter.invalid",
}.items():
    os.environ.setdefault(_key, _value)

# The rendered Python projects pin `.python-version` (3.12), and a runner that reaches only
# the package registries cannot download it: uv uses the interpreter running this suite
# (3.11+, which requires-python admits) and says so at once instead of trying GitHub.
os.environ.setdefault("UV_PYTHON", str(Path(sys.base_prefix) / "bin" / "python3"))
os.environ.setdefault("UV_PYTHON_DOWNLOADS", "never")


_plain_template: Path | None = None


def plain_template() -> Path:
    """This process's plain (non-git) copy of the working tree, uncommitted changes included.

    Rendering from it skips the git clone of the working tree Copier makes for every copy
    from a repository (about a third of a render's CPU). Tests about versions, ``_commit``
    or ``copier update`` render from their own template releases (tests/template_repo.py).
    """
    global _plain_template
    if _plain_template is None:
        from template_repo import template_dir

        root = Path(tempfile.mkdtemp(prefix="aig-template-"))
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        _plain_template = template_dir(root / "ai-gateway-starter")
    return _plain_template


def render(dst: Path, **answers) -> Path:
    """Render the template (the working tree as it is) into ``dst``; return ``dst``."""
    data = {**BASE_ANSWERS, **answers}
    run_copy(
        str(plain_template()),
        str(dst),
        data=data,
        defaults=True,
        unsafe=True,  # the template has a (copy-only, opt-in) task
        quiet=True,
    )
    return dst


def rendered_files(root: Path) -> set[str]:
    """All files under ``root`` as POSIX paths relative to it."""
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


# The Worker variants' session fixtures, one instance per run for every module that builds a
# Worker (test_worker_target, test_http_contract): defined in tests/worker_toolchain.py.
from worker_toolchain import npm_env, npm_seeds, rendered, worker_project  # noqa: F401


@pytest.fixture
def render_project(tmp_path):
    """Factory fixture: ``render_project(**answers)`` renders into a fresh folder."""
    counter = iter(range(1000))

    def _render(**answers) -> Path:
        return render(tmp_path / f"project-{next(counter)}", **answers)

    return _render
