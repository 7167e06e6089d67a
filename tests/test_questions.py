"""Bad answers given with --data are refused with a clear message, before any file is written.

The answers go through Copier's API as the very strings ``--data`` passes (Copier reads a
plain copy of the template, no clone per case): the same check without a new interpreter per
case. tests/test_hostile_input.py runs its first cases through the command line itself (exit
code 1, stderr's last line) for each kind of value.

Every refusal's first line is "Validation error for question '<name>': <rule>" within 80
columns: that line is all the prompt shows (tests/test_interactive.py reads it on screen);
the lines after it (with the value given) show with --data.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from cases import BAD_ANSWERS, BAD_DATA, PYTHON_BAD_ANSWERS
from conftest import BASE_ANSWERS, TEMPLATE_ROOT
from copier import run_copy
from template_repo import data_args, template_dir

# Each computed value refuses --data; one is enough per behaviour, these are all of them.
COMPUTED = ["previous_answers", "gateways", "default_environment", "package_name",
            "provider_table", "all_providers", "required_secrets"]


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    return template_dir(tmp_path_factory.mktemp("template") / "ai-gateway-starter")


def refused(template: Path, dst: Path, **answers) -> str:
    """Copy with ``answers`` as --data strings; it must be refused. What Copier says, whole
    (the command line prints it as the last lines of stderr)."""
    data = dict(arg.split("=", 1) for arg in data_args(answers)[1::2])
    with pytest.raises(ValueError) as error:
        run_copy(str(template), str(dst), data=data, defaults=True, unsafe=True, quiet=True)
    return str(error.value).strip()


def render(template: Path, dst: Path, **answers) -> Path:
    run_copy(str(template), str(dst), data={**BASE_ANSWERS, **answers}, defaults=True,
             unsafe=True, quiet=True)
    return dst


def answers_file(project: Path) -> dict:
    return yaml.safe_load((project / ".copier-answers.yml").read_text(encoding="utf-8"))


@pytest.mark.parametrize(("question", "value", "message"),
                         BAD_ANSWERS + PYTHON_BAD_ANSWERS)
def test_bad_value_is_refused_and_nothing_is_written(template, tmp_path, question, value,
                                                     message):
    dst = tmp_path / "out"
    answers = {"language": "python-app", "project_name": "demo-svc", question: value}

    said = refused(template, dst, **answers)

    assert said.startswith(f"Validation error for question '{question}': ")
    assert message in said
    assert not dst.exists()


def _first_lines() -> list[tuple[str, dict]]:
    cases = [(f"{q}={v!r}", {"language": "python-app", q: v})
             for q, v, _ in BAD_ANSWERS + PYTHON_BAD_ANSWERS]
    cases += [(case_id, answers) for case_id, answers, message in BAD_DATA
              if not message.startswith("Invalid choice")]
    return cases


@pytest.mark.parametrize(("case_id", "answers"), _first_lines(),
                         ids=[case_id for case_id, _ in _first_lines()])
def test_every_refusal_names_its_rule_within_80_columns(template, tmp_path, case_id, answers):
    said = refused(template, tmp_path / "out", **{"project_name": "demo-svc", **answers})
    first, *details = said.splitlines()

    assert first.startswith("Validation error for question '"), said
    rule = first.split("': ", 1)[1]
    assert rule and len(first) <= 80, first
    # the value given shows in the details (or the rule says it all in one line)
    assert all(len(line) <= 80 for line in details if '"' not in line), details


def test_keyless_auth_modes_need_an_authenticated_gateway(template, tmp_path):
    dst = tmp_path / "out"

    said = refused(template, dst, project_name="demo-svc", auth_mode="byok",
                   gateway_authentication="false")

    assert said == ("Validation error for question 'gateway_authentication': auth_mode needs "
                    "it true\nbyok needs an authenticated gateway (or use request-headers)")
    assert not dst.exists()


def test_existing_destination_is_left_untouched(template, tmp_path):
    dst = tmp_path / "out"
    dst.mkdir()
    (dst / "keep.txt").write_text("mine")

    said = refused(template, dst, project_name="demo-svc", gateway_id="Bad")

    assert said.startswith("Validation error for question 'gateway_id': 1 to 64 of a-z 0-9 _ -\n")
    assert sorted(p.name for p in dst.iterdir()) == ["keep.txt"]


def test_staging_with_production_s_id_is_refused_before_anything_is_written(template, tmp_path):
    dst = tmp_path / "out"

    said = refused(template, dst, project_name="demo-svc", gateway_id="shared-gw",
                   environments=["staging", "production"], staging_gateway_id="shared-gw")

    assert said == (
        "Validation error for question 'staging_gateway_id': production has this id\n"
        'staging and production would share the gateway "shared-gw": give staging its own')
    assert not dst.exists()


def test_duplicate_id_leaves_an_existing_destination_as_it_was(template, tmp_path):
    dst = tmp_path / "out"
    dst.mkdir()
    (dst / "keep.txt").write_text("mine")

    said = refused(template, dst, project_name="demo-svc",
                   environments=["development", "staging"],
                   development_gateway_id="pre-gw", staging_gateway_id="pre-gw")

    assert said.startswith(
        "Validation error for question 'staging_gateway_id': development has this id\n")
    assert sorted(p.name for p in dst.iterdir()) == ["keep.txt"]


def test_development_with_production_s_id_is_refused(template, tmp_path):
    said = refused(template, tmp_path / "out", project_name="demo-svc",
                   environments=["development", "production"], development_gateway_id="demo-svc")

    assert said.startswith(
        "Validation error for question 'development_gateway_id': production has this id\n")


def test_an_id_may_repeat_one_of_an_environment_not_chosen(template, tmp_path):
    # production is not chosen: its gateway_id is only the base of the default ids
    project = render(template, tmp_path / "svc", language="python-app", gateway_id="gw",
                     environments=["staging"], staging_gateway_id="gw")

    assert '[gateways.staging]\nid = "gw"' in (project / "ai-gateway.toml").read_text()


def test_environment_ids_default_to_gateway_id_with_the_environment(template, tmp_path):
    project = render(template, tmp_path / "svc", language="python-app",
                     environments=["development", "staging", "production"])

    settings = (project / "src/demo_svc/settings.py").read_text()
    assert ('    "development": "demo-gw-development",\n    "staging": "demo-gw-staging",\n'
            '    "production": "demo-gw",\n') in settings
    answers = answers_file(project)
    assert (answers["development_gateway_id"], answers["staging_gateway_id"]) == (
        "demo-gw-development", "demo-gw-staging")


def test_each_environment_s_id_is_asked_once_and_production_s_is_gateway_id(template, tmp_path):
    project = render(template, tmp_path / "svc", language="python-app",
                     environments=["staging", "production"], staging_gateway_id="stg-gw")

    toml = (project / "ai-gateway.toml").read_text()
    assert '[gateways.staging]\nid = "stg-gw"' in toml
    assert '[gateways.production]\nid = "demo-gw"' in toml
    questions = yaml.safe_load((TEMPLATE_ROOT / "copier.yml").read_text())
    asked_ids = [name for name in questions if name.endswith("gateway_id")]
    assert asked_ids == ["gateway_id", "development_gateway_id", "staging_gateway_id"]


def test_production_gateway_id_of_0_2_0_is_refused_not_ignored(template, tmp_path):
    # a 0.2.0 script's answer: ignoring it would put production on gateway_id silently
    said = refused(template, tmp_path / "out", project_name="demo-svc", gateway_id="base-gw",
                   environments=["staging", "production"], gateway_ids_confirmed=False,
                   production_gateway_id="prod-gw")

    assert said == ("Validation error for question 'environments': production_gateway_id is "
                    "gone\nproduction's gateway id is gateway_id now: give --data "
                    "gateway_id=<id>")


def test_ids_of_environments_not_chosen_are_not_stored(template, tmp_path):
    project = render(template, tmp_path / "svc", language="python-app")

    assert not {"development_gateway_id", "staging_gateway_id"} & set(answers_file(project))


def test_a_derived_id_too_long_is_refused_with_defaults(template, tmp_path):
    said = refused(template, tmp_path / "out", project_name="demo-svc", gateway_id="g" * 60,
                   environments=["staging", "production"])

    assert said.startswith(
        "Validation error for question 'staging_gateway_id': 1 to 64 of a-z 0-9 _ -\n")
    assert f'(got "{"g" * 60}-staging")' in said


@pytest.mark.parametrize("blank", ["", "   "])
def test_a_blank_description_is_refused(template, tmp_path, blank):
    said = refused(template, tmp_path / "out", project_name="demo-svc", description=blank)

    assert said == ("Validation error for question 'description': say what the service does\n"
                    "description: one line for the README and package metadata; it cannot be "
                    "empty")


@pytest.mark.parametrize("value", ["abc", "1.5", "", "true", "-1"])
def test_a_number_given_as_text_names_the_rule(template, tmp_path, value):
    said = refused(template, tmp_path / "out", project_name="demo-svc",
                   rate_limiting_interval=value)

    assert said == ("Validation error for question 'rate_limiting_interval': "
                    "whole number, 0 or more")


def test_numbers_stay_integers_in_the_answers(template, tmp_path):
    project = render(template, tmp_path / "svc", language="python-app", cache_ttl="300",
                     rate_limiting_limit=7)

    answers = answers_file(project)
    assert (answers["cache_ttl"], answers["rate_limiting_limit"]) == (300, 7)
    assert "cache_ttl = 300" in (project / "ai-gateway.toml").read_text()


def test_keyless_modes_do_not_ask_about_gateway_authentication(template, tmp_path):
    project = render(template, tmp_path / "svc", language="python-app", auth_mode="byok")

    assert "gateway_authentication" not in answers_file(project)
    assert "GATEWAY_AUTHENTICATION = True" in (project / "src/demo_svc/settings.py").read_text()


def test_python_names_are_fine_for_a_worker(template, tmp_path):
    project = render(template, tmp_path / "svc", language="typescript-worker", project_name="json")

    assert '"name": "json"' in (project / "package.json").read_text()


def test_the_api_gateway_id_rule_accepts_underscores(template, tmp_path):
    project = render(template, tmp_path / "svc", language="python-app", gateway_id="my_gw")

    assert '[gateways.production]\nid = "my_gw"' in (project / "ai-gateway.toml").read_text()


@pytest.mark.parametrize("computed", COMPUTED)
def test_computed_values_cannot_be_set_with_data(template, tmp_path, computed):
    dst = tmp_path / "out"

    said = refused(template, dst, project_name="demo-svc", **{computed: "[]"})

    assert said.startswith(
        f"Validation error for question '{computed}': computed: cannot be set\n{computed} ")
    assert not dst.exists()


def test_computed_values_are_all_listed_here():
    questions = yaml.safe_load((TEMPLATE_ROOT / "copier.yml").read_text())

    assert [name for name, spec in questions.items()
            if isinstance(spec, dict) and spec.get("when") is False] == COMPUTED


def test_copier_yml_holds_questions_and_one_line_calls():
    text = (TEMPLATE_ROOT / "copier.yml").read_text()

    assert text.count("{%") <= 10
    assert "{%- set" not in text and "{% set" not in text and "{%- for" not in text


def test_every_help_fits_an_80_column_terminal():
    questions = yaml.safe_load((TEMPLATE_ROOT / "copier.yml").read_text())
    helps = {name: " ".join(spec["help"].split()) for name, spec in questions.items()
             if isinstance(spec, dict) and "help" in spec and "{" not in spec["help"]}

    assert len(helps) >= 15
    assert {name: text for name, text in helps.items() if len(text) > 78} == {}
