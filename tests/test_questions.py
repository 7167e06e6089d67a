"""Bad answers given with --data are refused with a clear message, before any file is written."""

from __future__ import annotations

import sys

import pytest
from conftest import TEMPLATE_ROOT, run

BAD_ANSWERS = [
    ("project_name", "My-Service", "project_name must start with a lowercase letter"),
    ("project_name", "my_service", "project_name must start with a lowercase letter"),
    ("project_name", "my-service-", "not end with a hyphen"),
    ("project_name", "9lives", "project_name must start with a lowercase letter"),
    ("project_name", "a" * 55, "at most 54 characters"),
    ("project_name", "import", 'project_name "import" is a Python keyword'),
    ("project_name", "openai", 'project_name "openai" would shadow the Python module'),
    ("account_id", "0123456789ABCDEF0123456789ABCDEF", "account_id must be 32 lowercase hex"),
    ("account_id", "0123456789abcdef", "account_id must be 32 lowercase hex"),
    ("gateway_id", "-prod", "gateway_id must be 1 to 64 lowercase letters"),
    ("gateway_id", "prod_api", "gateway_id must be 1 to 64 lowercase letters"),
    ("gateway_id", "g" * 65, "gateway_id must be 1 to 64 lowercase letters"),
]


def copier_copy(dst, *data: str):
    args = [sys.executable, "-m", "copier", "copy", "--trust", "--defaults", "--vcs-ref", "HEAD"]
    for item in data:
        args += ["--data", item]
    return run([*args, str(TEMPLATE_ROOT), str(dst)], TEMPLATE_ROOT)


@pytest.mark.parametrize(("question", "value", "message"), BAD_ANSWERS)
def test_bad_value_is_refused_and_nothing_is_written(tmp_path, question, value, message):
    dst = tmp_path / "out"
    answers = {"project_name": "demo-svc", question: value}

    result = copier_copy(dst, *(f"{k}={v}" for k, v in answers.items()))

    assert result.returncode == 1
    last_line = result.stderr.strip().splitlines()[-1]
    assert f"Validation error for question '{question}'" in last_line
    assert message in last_line
    assert not dst.exists()


def test_keyless_auth_modes_need_an_authenticated_gateway(tmp_path):
    dst = tmp_path / "out"

    result = copier_copy(dst, "project_name=demo-svc", "auth_mode=byok", "gateway_authentication=false")

    assert result.returncode == 1
    assert "byok needs an authenticated gateway" in result.stderr
    assert not dst.exists()


def test_existing_destination_is_left_untouched(tmp_path):
    dst = tmp_path / "out"
    dst.mkdir()
    (dst / "keep.txt").write_text("mine")

    result = copier_copy(dst, "project_name=demo-svc", "gateway_id=Bad")

    assert result.returncode == 1
    assert sorted(p.name for p in dst.iterdir()) == ["keep.txt"]


def test_unconfirmed_gateway_ids_are_typed_per_environment(render_project):
    project = render_project(
        language="python-app",
        environments=["staging", "production"],
        gateway_ids_confirmed=False,
        staging_gateway_id="stg-gw",
        production_gateway_id="prod-gw",
    )

    settings = (project / "src/demo_svc/settings.py").read_text()
    assert '    "staging": "stg-gw",\n    "production": "prod-gw",\n' in settings
    toml = (project / "ai-gateway.toml").read_text()
    assert '[gateways.staging]\nid = "stg-gw"' in toml
    assert '[gateways.production]\nid = "prod-gw"' in toml


def test_keyless_modes_do_not_ask_about_gateway_authentication(render_project):
    project = render_project(language="python-app", auth_mode="byok")

    answers = (project / ".copier-answers.yml").read_text()
    assert "gateway_authentication" not in answers
    assert "GATEWAY_AUTHENTICATION = True" in (project / "src/demo_svc/settings.py").read_text()
