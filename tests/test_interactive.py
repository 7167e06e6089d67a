"""The real prompts, driven once through a pseudo-terminal (pexpect), end to end.

``copier copy --trust --vcs-ref HEAD <template> <dst>`` with no ``--data``: every question
is answered the way a person does it (typing, arrow keys and enter on choices, space on
multiselects, y/n on confirms). At each prompt that validates what is typed, every bad value
of tests/test_hostile_input.py and tests/test_questions.py that can be typed on one line is
tried first: the validator's message must show and the question must be asked again; the
good value then goes through. The session must end with a rendered project holding exactly
the answers given, and the screens must show the choices' readable labels and each
question's help text.

Each refusal is read in full on screen: Copier shows "Validation error for question
'<name>': " and the validator's first line in a one-line bar, so the test asks Copier's API
for that line (the same answers given with --data) and finds it whole on the 80-column
screen. A non-number typed for a number gets Copier's own "Invalid input" (it casts before
any validator runs); the help above it states the rule.

Copier gives questionary's confirm prompts no validator, so copier.yml asks
gateway_authentication only where "no" is allowed (request-headers). Each environment
besides production is asked its id once, after environments, with gateway_id-<env> as the
default; an id another chosen environment has is refused.
"""
from __future__ import annotations

import os
import re
import sys
import time
import tomllib
from pathlib import Path

import pexpect
import pytest
import yaml
from cases import BAD_ANSWERS, BAD_DATA, PYTHON_BAD_ANSWERS
from conftest import ACCOUNT_ID, TEMPLATE_ROOT
from copier import run_copy
from template_repo import template_dir

# CSI sequences; a cursor-forward (ESC [ n C) stands for n blanks on a fresh screen.
_CSI = re.compile(r"\x1b\[([0-9;?<>=]*)([A-Za-z])|\x1b[()][A-Z0-9]|\x1b[=>]")
DOWN, UP, ENTER, SPACE = "\x1b[B", "\x1b[A", "\r", " "
CLEAR_LINE, REDRAW = "\x15", "\x0c"  # ctrl-u, ctrl-l (prompt_toolkit repaints everything)
CLEAR_SCREEN = "\x1b[2J"  # what ctrl-l makes prompt_toolkit write first

REFUSED = "Validation error for question '{}'"
GATEWAY_ID = "g" * 53  # +"-staging" fits in 64 characters, +"-development" does not
STAGING_ID = f"{GATEWAY_ID}-staging"
DESCRIPTION = 'Chat «bot» — "quoted" {{ x }} ${y} `z` \\ é 中文 🚀'


def _screen_text(raw: str) -> str:
    def repl(match: re.Match) -> str:
        if match.group(2) == "C":
            return " " * int(match.group(1) or 1)
        return ""
    return _CSI.sub(repl, raw)


class Terminal:
    """A pexpect session that reads the screen as text (colours and cursor moves removed)."""

    def __init__(self, args: list[str], cwd: Path):
        env = {**os.environ, "TERM": "xterm-256color", "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8",
               "COLUMNS": "80", "LINES": "60"}
        # 80 columns: every help and choice label must show whole in a standard terminal.
        self.child = pexpect.spawn(args[0], args[1:], cwd=str(cwd), env=env, encoding="utf-8",
                                   dimensions=(60, 80), timeout=30)
        # No 50 ms sleep before each send (pexpect's default): every step waits for what it
        # expects on screen instead.
        self.child.delaybeforesend = None
        self.transcript = ""

    def _read(self, timeout: float) -> str:
        try:
            chunk = self.child.read_nonblocking(1_000_000, timeout=timeout)
        except pexpect.TIMEOUT:
            return ""
        if "\x1b[6n" in chunk:  # cursor position request: answer like a real terminal
            self.child.send("\x1b[1;1R")
        self.transcript += chunk
        return chunk

    def expect_text(self, text: str, timeout: float = 60) -> str:
        """Wait until ``text`` shows up in the output since this call started."""
        seen = ""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                seen += self._read(0.1)
            except pexpect.EOF:
                break
            if text in _screen_text(seen):
                return _screen_text(seen)
        screen = _screen_text(seen)[-3000:]
        raise AssertionError(f"{text!r} never showed; the screen had:\n{screen}")

    def shown_since(self, mark: int, text: str, timeout: float = 60) -> str:
        """Wait until ``text`` is on screen anywhere after ``mark`` (it may have arrived in
        the same chunk as the text the previous step waited for)."""
        deadline = time.monotonic() + timeout
        while text not in self.since(mark) and time.monotonic() < deadline:
            try:
                self._read(0.1)
            except pexpect.EOF:
                break
        if text not in self.since(mark):
            raise AssertionError(f"{text!r} never showed; the screen had:\n"
                                 f"{self.since(mark)[-3000:]}")
        return self.since(mark)

    def send(self, keys: str) -> None:
        self.child.send(keys)

    def mark(self) -> int:
        return len(self.transcript)

    def since(self, mark: int) -> str:
        return _screen_text(self.transcript[mark:])

    def answer(self, keys: str, next_text: str) -> str:
        self.send(keys)
        return self.expect_text(next_text)

    def repainted(self, keys: str, text: str, timeout: float = 60) -> str:
        """Send ``keys``, then ctrl-l: prompt_toolkit clears the screen (ESC [2J) and draws the
        prompt whole, as the keys left it (its usual repaints skip text already on screen).
        Wait until ``text`` shows after that clear; no output from before counts."""
        mark = self.mark()
        self.send(keys)
        self.send(REDRAW)
        deadline = time.monotonic() + timeout
        while True:
            raw = self.transcript[mark:]
            if CLEAR_SCREEN in raw:
                screen = _screen_text(raw.split(CLEAR_SCREEN, 1)[1])
                if text in screen:
                    return screen
            if time.monotonic() >= deadline:
                break
            try:
                self._read(0.1)
            except pexpect.EOF:
                break
        raise AssertionError(f"{text!r} never showed after a repaint; the screen had:\n"
                             f"{self.since(mark)[-3000:]}")

    def refused(self, value: str, message: str) -> str:
        """Type ``value`` and enter: the message must show and the question stay open."""
        return self.repainted(CLEAR_LINE + value + ENTER, message)

    def finish(self) -> int:
        self.child.expect(pexpect.EOF, timeout=120)
        self.transcript += self.child.before or ""
        self.child.close()
        return self.child.exitstatus


def _typed_bad_values(question: str) -> list[tuple[str, str]]:
    """(value, message) for ``question`` from both --data lists, where it can be typed."""
    values = [(value, message) for q, value, message in BAD_ANSWERS + PYTHON_BAD_ANSWERS
              if q == question]
    values += [(answers[question], message) for case_id, answers, message in BAD_DATA
               if case_id.split("-")[0] == question and len(answers) == 1
               and isinstance(answers[question], str) and "\n" not in answers[question]]
    assert values, question
    return values


def _help(question: str) -> str:
    text = yaml.safe_load((TEMPLATE_ROOT / "copier.yml").read_text())[question]["help"]
    return " ".join(text.split())


@pytest.fixture(scope="module")
def plain_template(tmp_path_factory) -> Path:
    return template_dir(tmp_path_factory.mktemp("template") / "ai-gateway-starter")


class Refusals:
    """Type bad values and check that each refusal shows whole on the 80-column screen:
    the line Copier's API gives for the same answers (with --data), up to its first line
    break, is what the prompt's bar must show."""

    def __init__(self, term: Terminal, template: Path, scratch: Path):
        self.term, self.template, self.scratch = term, template, scratch
        self.shown: list[str] = []

    def expected(self, **answers) -> str:
        data = {"language": "python-app", "project_name": "pty-svc", **answers}
        try:
            run_copy(str(self.template), str(self.scratch / "never"), data=data,
                     defaults=True, unsafe=True, quiet=True)
        except ValueError as error:
            return str(error).strip().splitlines()[0]
        raise AssertionError(f"{answers} was not refused with --data")

    def type(self, question: str, value: str, **answers) -> None:
        line = self.expected(**{**answers, question: value})
        assert line.startswith(REFUSED.format(question)) and len(line) <= 80, line
        # whole: a line cut at the screen's edge (or wrapped) would not show contiguous
        self.term.refused(value, line)
        self.shown.append(line)


@pytest.fixture(scope="module")
def session(tmp_path_factory, plain_template):
    """One complete interactive copy; returns (exit status, transcript, project, shown
    refusals, screens)."""
    root = tmp_path_factory.mktemp("interactive")
    project = root / "pty-svc"
    term = Terminal([sys.executable, "-m", "copier", "copy", "--trust", "--vcs-ref", "HEAD",
                     str(TEMPLATE_ROOT), str(project)], cwd=root)
    refusals = Refusals(term, plain_template, root)
    typed = {"gateway_id": GATEWAY_ID, "auth_mode": "request-headers",
             "gateway_authentication": "false", "environments": '["staging", "production"]'}
    screens = {}
    try:
        term.shown_since(0, _help("language"))
        term.shown_since(0, "Python service (FastAPI, openai SDK, CLI + library)")
        screens["language"] = term.since(0)
        term.answer(DOWN + ENTER, _help("project_name"))
        for value, _message in _typed_bad_values("project_name"):
            refusals.type("project_name", value)
        term.answer(CLEAR_LINE + "pty-svc" + ENTER, _help("description"))
        for value, _message in _typed_bad_values("description"):
            refusals.type("description", value)
        term.answer(CLEAR_LINE + DESCRIPTION + ENTER, _help("account_id"))

        for value, _message in _typed_bad_values("account_id"):
            refusals.type("account_id", value)
        term.answer(CLEAR_LINE + ACCOUNT_ID + ENTER, _help("gateway_id"))

        for value, _message in _typed_bad_values("gateway_id"):
            refusals.type("gateway_id", value)
        mark = term.mark()
        term.answer(CLEAR_LINE + GATEWAY_ID + ENTER, _help("auth_mode"))
        term.shown_since(mark, "Request headers: the service sends its own OPENAI_API_KEY per request")
        screens["auth_mode"] = term.since(mark)
        term.answer(DOWN + DOWN + ENTER, _help("gateway_authentication"))
        mark = term.mark()
        term.answer("n", _help("environments"))

        # environments: development, staging, production; production is checked.
        term.shown_since(mark, "production")
        screens["environments"] = term.since(mark)
        # uncheck production: nothing chosen
        line = refusals.expected(environments="[]")
        term.repainted(DOWN + DOWN + SPACE + ENTER, line)
        refusals.shown.append(line)
        term.send(SPACE + UP + SPACE + ENTER)  # staging + production
        # staging's id, asked once, gateway_id-staging offered; production's is gateway_id
        screen = term.expect_text(STAGING_ID)
        assert _help("staging_gateway_id") in " ".join(screen.split())
        refusals.type("staging_gateway_id", GATEWAY_ID, **typed)  # production's id
        refusals.type("staging_gateway_id", "a--b", **typed)
        mark = term.mark()
        term.answer(CLEAR_LINE + STAGING_ID + ENTER, _help("providers"))
        term.shown_since(mark, "compat (one OpenAI-compatible API, models named provider/model)")
        screens["providers"] = term.since(mark)
        mark = term.mark()
        term.answer(DOWN + SPACE + ENTER, _help("caller_auth"))
        term.shown_since(mark, "none: reached only through a service binding or Cloudflare Access")
        screens["caller_auth"] = term.since(mark)
        term.answer(ENTER, _help("chat_page"))
        term.answer(ENTER, _help("cache_ttl"))  # chat_page: the default, yes

        for question, negative, words, good in [
            ("cache_ttl", "-1", ["abc", "1.5"], "300"),
            ("rate_limiting_interval", "-60", ["ten"], "30"),
            ("rate_limiting_limit", "-1", [""], "50"),
        ]:
            refusals.type(question, negative)
            for value in words:
                screen = term.refused(value, "Invalid input")
                # Copier says only "Invalid input" for a non-number: the help above it
                # says what is allowed.
                assert "a whole number, 0 or more" in " ".join(screen.split()), screen
                refusals.shown.append("Invalid input")
            following = {"cache_ttl": "rate_limiting_interval",
                         "rate_limiting_interval": "rate_limiting_limit",
                         "rate_limiting_limit": "rate_limiting_technique"}[question]
            mark = term.mark()
            term.answer(CLEAR_LINE + good + ENTER, _help(following))
        term.shown_since(mark, "sliding window")
        screens["rate_limiting_technique"] = term.since(mark)
        term.answer(DOWN + ENTER, _help("collect_logs"))
        term.answer("n", _help("create_gateway"))
        term.answer(ENTER, "Rendered pty-svc (python-app, auth mode request-headers)")
        status = term.finish()
    finally:
        if term.child.isalive():
            term.child.terminate(force=True)
    return status, _screen_text(term.transcript), project, refusals.shown, screens


def test_prompts_render_the_project_with_exactly_the_answers_typed(session):
    status, transcript, project, _, _ = session

    assert status == 0, transcript[-3000:]
    # the previous answers are read on update only: a copy finds no answers file to warn of
    assert "MissingFileWarning" not in transcript
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text(encoding="utf-8"))
    answers.pop("_src_path")
    answers.pop("_commit")
    assert answers == {
        "project_name": "pty-svc",
        "description": DESCRIPTION,
        "language": "python-app",
        "account_id": ACCOUNT_ID,
        "gateway_id": GATEWAY_ID,
        "auth_mode": "request-headers",
        "gateway_authentication": False,
        "environments": ["staging", "production"],
        "staging_gateway_id": STAGING_ID,
        "providers": ["openai", "anthropic"],
        "caller_auth": "api-key",
        "chat_page": True,
        "cache_ttl": 300,
        "rate_limiting_interval": 30,
        "rate_limiting_limit": 50,
        "rate_limiting_technique": "sliding",
        "collect_logs": False,
        "create_gateway": False,
    }
    pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["description"] == DESCRIPTION
    gateways = tomllib.loads((project / "ai-gateway.toml").read_text(encoding="utf-8"))
    assert gateways["gateways"]["staging"] | {"authentication": None} == {
        "id": f"{GATEWAY_ID}-staging", "cache_ttl": 300, "cache_invalidate_on_update": True,
        "collect_logs": False, "rate_limiting_interval": 30, "rate_limiting_limit": 50,
        "rate_limiting_technique": "sliding", "authentication": None,
    }
    assert (project / "src" / "pty_svc" / "settings.py").is_file()


def test_every_bad_value_was_shown_its_message_and_asked_again(session):
    _, _, _, shown, _ = session

    typed = sum(len(_typed_bad_values(q))
                for q in ("project_name", "description", "account_id", "gateway_id"))
    # + no environment, two staging ids (production's, a bad one), 3 negative numbers and
    # 4 non-numbers
    assert len(shown) == typed + 1 + 2 + 3 + 4
    assert len(shown) >= 30


def test_every_refusal_shown_names_its_rule_within_80_columns(session):
    _, _, _, shown, _ = session

    assert [line for line in shown if len(line) > 80] == []
    assert "Validation error for question 'staging_gateway_id': production has this id" in shown
    assert "Validation error for question 'description': say what the service does" in shown


def test_help_text_shows_for_every_question(session):
    _, transcript, _, _, _ = session
    flat = " ".join(transcript.split())

    questions = yaml.safe_load((TEMPLATE_ROOT / "copier.yml").read_text())
    for name, spec in questions.items():
        if name.startswith("_") or not isinstance(spec, dict) or "help" not in spec:
            continue
        if name == "development_gateway_id":
            continue  # asked only when development is chosen (test_questions.py)
        if name == "wrangler_config":
            continue  # asked for the Worker only; this session renders the Python service
        assert _help(name) in flat, name


def test_choices_show_readable_labels(session):
    _, _, _, _, screens = session
    questions = yaml.safe_load((TEMPLATE_ROOT / "copier.yml").read_text())

    for name in ("language", "auth_mode", "environments", "providers", "caller_auth",
                 "rate_limiting_technique"):
        labels = list(questions[name]["choices"])
        screen = screens[name]
        for label in labels:
            assert label in screen, (name, label)
    # The labels are prose, not the stored values.
    assert "TypeScript Worker (Cloudflare Workers, wrangler 4, openai SDK)" in screens["language"]
    assert "Unified Billing: pay through Cloudflare, no provider key anywhere" in screens[
        "auth_mode"]
