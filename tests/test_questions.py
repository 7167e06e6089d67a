"""Bad answers given with --data are refused with a clear message, before any file is written.

The answers go through Copier's API as the very strings ``--data`` passes (Copier reads a
plain copy of the template, no clone per case): the same check without a new interpreter per
case. tests/test_hostile_input.py runs its first cases through the command line itself (exit
code 1, stderr's last line) for each kind of value.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from cases import BAD_ANSWERS, PYTHON_BAD_ANSWERS
from conftest import BASE_ANSWERS, TEMPLATE_ROOT
from copier import run_copy
from template_repo import data_args, template_dir



@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    return template_dir(tmp_path_factory.mktemp("template") / "ai-gateway-starter")


def refused(template: Path, dst: Path, **answers) -> str:
    """Copy with ``answers`` as --data strings; it must be refused. The last line of what
    Copier says, as the command line prints it last on stderr."""
    data = dict(arg.split("=", 1) for arg in data_args(answers)[1::2])
    with pytest.raises(ValueError) as error:
        run_copy(str(template), str(dst), data=data, defaults=True, unsafe=True, quiet=True)
    return str(error.value).strip().splitlines()[-1]


def render(template: Path, dst: Path, **answers) -> Path:
    run_copy(str(template), str(dst), data={**BASE_ANSWERS, **answers}, defaults=True,
             unsafe=True, quiet=True)
    return dst


@pytest.mark.parametrize(("question", "value", "message"),
                         BAD_ANSWERS + PYTHON_BAD_ANSWERS)
def test_bad_value_is_refused_and_nothing_is_written(template, tmp_path, question, value,
                                                     message):
    dst = tmp_path / "out"
    answers = {"language": "python-app", "project_name": "demo-svc", question: value}

    last_line = refused(template, dst, **answers)

    assert f"Validation error for question '{question}'" in last_line
    assert message in last_line
    assert not dst.exists()


def test_keyless_auth_modes_need_an_authenticated_gateway(template, tmp_path):
    dst = tmp_path / "out"

    said = refused(template, dst, project_name="demo-svc", auth_mode="byok",
                   gateway_authentication="false")

    assert "byok needs an authenticated gateway" in said
    assert not dst.exists()


def test_existing_destination_is_left_untouched(template, tmp_path):
    dst = tmp_path / "out"
    dst.mkdir()
    (dst / "keep.txt").write_text("mine")

    said = refused(template, dst, project_name="demo-svc", gateway_id="Bad")

    assert "Validation error for question 'gateway_id'" in said
    assert sorted(p.name for p in dst.iterdir()) == ["keep.txt"]


def test_unconfirmed_gateway_ids_are_typed_per_environment(template, tmp_path):
    project = render(
        template,
        tmp_path / "svc",
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


def test_keyless_modes_do_not_ask_about_gateway_authentication(template, tmp_path):
    project = render(template, tmp_path / "svc", language="python-app", auth_mode="byok")

    answers = (project / ".copier-answers.yml").read_text()
    assert "gateway_authentication" not in answers
    assert "GATEWAY_AUTHENTICATION = True" in (project / "src/demo_svc/settings.py").read_text()


def test_python_names_are_fine_for_a_worker(template, tmp_path):
    project = render(template, tmp_path / "svc", language="typescript-worker", project_name="json")

    assert '"name": "json"' in (project / "package.json").read_text()


def test_the_api_gateway_id_rule_accepts_underscores(template, tmp_path):
    project = render(template, tmp_path / "svc", language="python-app", gateway_id="my_gw")

    assert '[gateways.production]\nid = "my_gw"' in (project / "ai-gateway.toml").read_text()


@pytest.mark.parametrize("computed", ["package_name", "required_secrets", "provider_table",
                                      "all_providers", "gateways"])
def test_computed_values_cannot_be_set_with_data(template, tmp_path, computed):
    dst = tmp_path / "out"

    said = refused(template, dst, project_name="demo-svc", **{computed: "[]"})

    assert said.endswith(
        f"Validation error for question '{computed}': "
        f"{computed} is computed by the template and cannot be set")
    assert not dst.exists()


def test_every_help_fits_an_80_column_terminal():
    questions = yaml.safe_load((TEMPLATE_ROOT / "copier.yml").read_text())
    helps = {name: " ".join(spec["help"].split()) for name, spec in questions.items()
             if isinstance(spec, dict) and "help" in spec and "{" not in spec["help"]}

    assert len(helps) >= 15
    assert {name: text for name, text in helps.items() if len(text) > 78} == {}
