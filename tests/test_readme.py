"""The README's quick start: its render command works as written, in a clone of the template."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

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


def rendered_update_command(service) -> str:
    """The first command of the rendered README's "Updating from the template" section."""
    readme = (service / "README.md").read_text()
    section = readme.split("## Updating from the template\n", 1)[1]
    block = re.search(r"```sh\n(.*?)\n```", section, flags=re.DOTALL)[1]
    return block.splitlines()[0].split("#", 1)[0].strip()


def test_quick_start_as_written_gives_a_service_that_copier_update_updates(tmp_path):
    """The Quick start, run verbatim in a clone of the template, then an update from inside.

    The clone is tagged 0.1.0 (tests/template_repo.py); ``../my-service`` lands beside it.
    The service must record an absolute ``_src_path`` so that ``copier update`` finds the
    template from the service's own folder; the update runs the rendered README's command
    exactly as written (``uvx``: no Copier installed in the service).
    """
    import yaml
    from template_repo import git, init_project, release, template_clone

    render_command = quick_start_commands()[0]
    assert " ../my-service" in render_command
    template = template_clone(tmp_path / "ai-gateway-starter")
    service = tmp_path / "my-service"

    # uvx from this suite's environment (requirements-dev.txt installs uv), as on a user's PATH.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    rendered = run(["bash", "-c", render_command], template, env=env, timeout=900)

    assert rendered.returncode == 0, rendered.stdout + rendered.stderr
    assert (service / "src/my_service/client.py").is_file()
    answers_text = (service / ".copier-answers.yml").read_text()
    assert "account_id: 0123456789abcdef0123456789abcdef" in answers_text
    assert "gateway_id: my-gateway" in answers_text
    answers = yaml.safe_load(answers_text)
    assert answers["_src_path"] == str(template)
    assert answers["_commit"] == "0.1.0"
    init_project(service)

    footer = "Template 0.2.0: this line arrived with the quick start's update."

    def edit(repo):
        readme = repo / "template/_shared/readme-updating.md.jinja"
        readme.write_text(readme.read_text() + f"\n{footer}\n")

    release(template, "0.2.0", edit)

    # --skip-tasks does not stand in for --trust on update (README "Updating" says so).
    copier = render_command.split(" copy ", 1)[0]  # the quick start's Copier: uvx copier@<version>
    untrusted = run(["bash", "-c", f"{copier} update --defaults --skip-answered --skip-tasks"],
                    service, env=env, timeout=300)
    assert untrusted.returncode == 4, untrusted.stdout + untrusted.stderr
    assert "--trust" in untrusted.stderr
    assert git(service, "status", "--porcelain") == ""

    update = rendered_update_command(service)
    assert update == f"{copier} update --trust --defaults --skip-answered"  # the same pin
    updated = run(["bash", "-c", update], service, env=env, timeout=600)

    assert updated.returncode == 0, updated.stdout + updated.stderr
    assert yaml.safe_load((service / ".copier-answers.yml").read_text())["_commit"] == "0.2.0"
    assert (service / "README.md").read_text().rstrip("\n").endswith(footer)
    # _message_after_update: what to check next, the gateway plan included.
    message = updated.stdout + updated.stderr
    assert "Updated my-service from the template. Next:" in message
    assert "python3 scripts/ai_gateway.py sync --dry-run" in message


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
