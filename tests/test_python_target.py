"""The python-app target: rendered files, and the rendered project's own tests, green."""

from __future__ import annotations

import os
import sys
import tomllib
import venv
from pathlib import Path

import pytest
from conftest import ACCOUNT_ID, AUTH_MODES, rendered_files, run

PYTHON_FILES = {
    ".copier-answers.yml",
    ".env.example",
    ".gitignore",
    "README.md",
    "ai-gateway.toml",
    "pyproject.toml",
    "scripts/ai_gateway.py",
    "src/demo_svc/__init__.py",
    "src/demo_svc/__main__.py",
    "src/demo_svc/cli.py",
    "src/demo_svc/client.py",
    "src/demo_svc/gateway_options.py",
    "src/demo_svc/settings.py",
    "tests/conftest.py",
    "tests/fake_gateway.py",
    "tests/test_cli.py",
    "tests/test_client.py",
    "tests/test_gateway_options.py",
    "tests/test_providers.py",
    "tests/test_settings.py",
}


def run_rendered_tests(project: Path) -> None:
    """Run the rendered project's pytest suite with this interpreter (openai installed)."""
    env = {**os.environ, "PYTHONPATH": str(project / "src")}
    for secret in ("CF_AIG_TOKEN", "OPENAI_API_KEY", "CLOUDFLARE_ACCOUNT_ID"):
        env.pop(secret, None)
    result = run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider"], project, env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout


@pytest.mark.parametrize("auth_mode", AUTH_MODES)
def test_every_auth_mode_renders_and_its_tests_pass(render_project, auth_mode):
    project = render_project(language="python-app", auth_mode=auth_mode)

    assert rendered_files(project) == PYTHON_FILES
    settings = (project / "src/demo_svc/settings.py").read_text()
    assert f'AUTH_MODE = "{auth_mode}"' in settings
    assert f'ACCOUNT_ID = "{ACCOUNT_ID}"' in settings
    assert '    "production": "demo-gw",\n' in settings
    env_example = (project / ".env.example").read_text()
    assert ("OPENAI_API_KEY=" in env_example) is (auth_mode == "request-headers")
    readme = (project / "README.md").read_text()
    assert f"This project uses **`{auth_mode}`**" in readme
    assert "gateway access: **AI Gateway: Run**" in readme
    run_rendered_tests(project)


def test_pyproject_is_a_src_layout_package_with_openai(render_project):
    project = render_project(language="python-app")

    pyproject = tomllib.loads((project / "pyproject.toml").read_text())

    assert pyproject["project"]["name"] == "demo-svc"
    assert pyproject["project"]["dependencies"] == ["openai>=3.50,<4"]
    assert pyproject["project"]["optional-dependencies"]["dev"] == ["pytest>=8", "ruff>=0.6"]
    assert pyproject["project"]["scripts"] == {"demo-svc": "demo_svc.cli:main"}
    assert pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"] == ["src/demo_svc"]


def test_secrets_and_caches_are_git_ignored(render_project):
    project = render_project(language="python-app")

    ignored = (project / ".gitignore").read_text().splitlines()

    assert {".env", ".env.*", "!.env.example", ".venv/"} <= set(ignored)


def test_empty_account_id_is_read_at_run_time(render_project):
    project = render_project(language="python-app", account_id="")

    assert 'ACCOUNT_ID = ""' in (project / "src/demo_svc/settings.py").read_text()
    run_rendered_tests(project)


def test_three_environments_pick_their_gateways(render_project):
    project = render_project(
        language="python-app", environments=["development", "staging", "production"]
    )

    settings = (project / "src/demo_svc/settings.py").read_text()
    assert (
        'GATEWAYS = {\n    "development": "demo-gw-development",\n'
        '    "staging": "demo-gw-staging",\n    "production": "demo-gw",\n}'
    ) in settings
    run_rendered_tests(project)


ALL_PROVIDERS = ["anthropic", "google-ai-studio", "workers-ai", "compat"]
THREE_ENVIRONMENTS = ["development", "staging", "production"]


@pytest.mark.parametrize("auth_mode", ["byok", "request-headers"])
def test_every_provider_and_three_environments(render_project, auth_mode):
    project = render_project(
        language="python-app",
        auth_mode=auth_mode,
        providers=ALL_PROVIDERS,
        environments=THREE_ENVIRONMENTS,
    )

    package = project / "src/demo_svc"
    for module in ("anthropic", "google_ai_studio", "workers_ai", "compat"):
        assert (package / f"{module}_client.py").is_file()
    assert 'PROVIDERS = ["openai", "anthropic", "google-ai-studio", "workers-ai", "compat"]' in (
        package / "cli.py"
    ).read_text()
    dependencies = tomllib.loads((project / "pyproject.toml").read_text())["project"]
    assert dependencies["dependencies"] == [
        "openai>=3.50,<4",
        "anthropic>=2.12,<3",
        "google-genai>=3.4,<4",
        "httpx>=0.28",
    ]
    env_example = (project / ".env.example").read_text()
    for key in ("ANTHROPIC_API_KEY=", "GOOGLE_API_KEY="):
        assert (key in env_example) is (auth_mode == "request-headers")
    run_rendered_tests(project)


def test_unchosen_providers_are_not_rendered(render_project):
    project = render_project(language="python-app", providers=["compat"])

    modules = {p.name for p in (project / "src/demo_svc").glob("*_client.py")}
    assert modules == {"compat_client.py"}
    assert "anthropic" not in (project / "pyproject.toml").read_text()


def test_fresh_venv_install_tests_and_lint(render_project, tmp_path):
    """The README's quick start, for real: pip install -e '.[dev]', pytest, ruff."""
    project = render_project(language="python-app", auth_mode="request-headers")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    bin_dir = env_dir / ("Scripts" if os.name == "nt" else "bin")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}

    install = run([bin_dir / "python", "-m", "pip", "install", "-q", "-e", ".[dev]"], project, env)
    assert install.returncode == 0, install.stdout + install.stderr
    for command in (
        [bin_dir / "pytest", "-p", "no:cacheprovider"],
        [bin_dir / "ruff", "check", "--no-cache", "src", "tests"],
        [bin_dir / "ruff", "format", "--check", "--no-cache", "src", "tests"],
        [bin_dir / "demo-svc", "--help"],
    ):
        result = run(command, project, env)
        assert result.returncode == 0, f"{command}: {result.stdout}{result.stderr}"
