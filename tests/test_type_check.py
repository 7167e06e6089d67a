"""The rendered python-app passes its own type checker (ty, the rendered ci.yml's
`uv run ty check`) on every variant: the three variants below cover every auth mode, every
provider and both caller_auth values. ty runs once per render against this interpreter's
environment, which has every provider SDK (requirements-dev.txt), with the project's own
[tool.ty] configuration; tests/test_quick_start.py runs it (ci.yml) in the locked environment too.
"""
from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from conftest import render

TY = Path(sys.executable).parent / "ty"

VARIANTS = {
    "unified-openai-api-key": {"language": "python-app"},
    "headers-all-providers-no-auth": {
        "language": "python-app", "auth_mode": "request-headers",
        "gateway_authentication": False, "caller_auth": "none", "account_id": "",
        "providers": ["anthropic", "google-ai-studio", "workers-ai", "compat"],
        "environments": ["development", "staging", "production"],
    },
    "byok-anthropic-google": {
        "language": "python-app", "auth_mode": "byok",
        "providers": ["anthropic", "google-ai-studio"],
    },
}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """``project(variant)``: that variant, rendered once for the module."""
    made: dict[str, Path] = {}

    def get(variant: str) -> Path:
        if variant not in made:
            made[variant] = render(tmp_path_factory.mktemp(variant) / "app", **VARIANTS[variant])
        return made[variant]

    return get


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_the_rendered_app_passes_ty(project, variant):
    path = project(variant)
    result = subprocess.run(
        [TY, "check", "--python", sys.prefix, "--output-format", "concise", "--no-progress"],
        cwd=path, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )

    assert (result.returncode, result.stdout) == (0, "All checks passed!\n"), (
        result.stdout + result.stderr)


def test_the_project_pins_the_ty_this_suite_runs(project):
    pyproject = tomllib.loads((project("unified-openai-api-key") / "pyproject.toml").read_text())
    installed = subprocess.run([TY, "--version"], capture_output=True, text=True, timeout=60)

    assert f"ty=={installed.stdout.split()[1]}" in pyproject["dependency-groups"]["dev"]
    # requires-python's oldest version, so code that needs a newer Python is flagged
    assert pyproject["tool"]["ty"]["environment"]["python-version"] == "3.11"
    assert pyproject["project"]["requires-python"] == ">=3.11"
    assert pyproject["tool"]["ty"]["terminal"]["error-on-warning"] is True
