"""The README's quick start commands and every README's shell blocks and Copier pins.

The quick start run as written, then CI and an update of that service: tests/test_quick_start.py.
"""

from __future__ import annotations

import re

from cases import quick_start_commands
from conftest import TEMPLATE_ROOT, run

README = (TEMPLATE_ROOT / "README.md").read_text()


PINNED = re.search(r"^copier==(\S+)$", (TEMPLATE_ROOT / "requirements-dev.txt").read_text(), re.MULTILINE)[1]
READMES = [TEMPLATE_ROOT / "README.md", TEMPLATE_ROOT / "template/python-app/README.md.jinja",
           TEMPLATE_ROOT / "template/typescript-worker/README.md.jinja",
           *sorted((TEMPLATE_ROOT / "template/_shared").glob("readme-*.md.jinja"))]


def test_quick_start_has_both_render_commands_and_the_test_command():
    python_render, worker_render, test = quick_start_commands()

    # The Copier this suite tests with (requirements-dev.txt), not whichever is newest.
    assert python_render.startswith(f"uvx copier@{PINNED} copy --trust --defaults ")
    assert "--data language=python-app " in python_render
    assert python_render.endswith(' "$PWD" ../my-service')
    assert worker_render.startswith(f"uvx copier@{PINNED} copy --trust --defaults ")
    assert "--data language=typescript-worker " in worker_render
    assert worker_render.endswith(' "$PWD" ../my-worker')
    assert test == "python3 tools/run_tests.py"
    assert (TEMPLATE_ROOT / ".ci/run").read_text().rstrip().endswith(test)


def copier_invocations(text: str) -> list[str]:
    """Every Copier command a README gives to run (with flags; a bare `copier update` in
    prose names the command): the runner and ``copier[@version]`` before the subcommand."""
    pattern = r"(?:^|`)\s*((?:uvx |pipx run )?copier\S*) (?:copy|update|recopy) --"
    return re.findall(pattern, text, flags=re.MULTILINE)


def test_every_readme_runs_copier_at_the_pinned_version():
    unpinned = []
    for readme in READMES:
        for invocation in copier_invocations(readme.read_text()):
            runner = invocation.split()
            if runner[-1] not in (f"copier@{PINNED}", f"copier=={PINNED}"):
                unpinned.append(f"{readme.relative_to(TEMPLATE_ROOT)}: {invocation}")
    assert unpinned == []


def test_every_readme_shell_block_parses():
    """Each ``sh`` block is valid shell as pasted (bash -n), so a person can run it."""
    for readme in READMES:
        blocks = re.findall(r"^( *)```sh\n(.*?)\n\1```", readme.read_text(), flags=re.DOTALL | re.MULTILINE)
        for _, block in blocks:
            if "{%" in block or "{{" in block:
                continue  # Jinja: checked in the rendered READMEs by the target tests
            checked = run(["bash", "-n", "-c", block], TEMPLATE_ROOT)
            assert checked.returncode == 0, f"{readme.name}: {block}\n{checked.stderr}"
