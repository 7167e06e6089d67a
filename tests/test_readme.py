"""The README's quick start: its render command works as written."""

from __future__ import annotations

import re
import shlex

from conftest import TEMPLATE_ROOT, run

README = (TEMPLATE_ROOT / "README.md").read_text()


def quick_start_commands() -> list[str]:
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)\n```", section, flags=re.S)


def test_quick_start_has_the_render_and_the_test_command():
    render, test = quick_start_commands()

    assert "copier copy --trust --defaults" in render
    assert test == "python3 tools/run_tests.py"
    assert (TEMPLATE_ROOT / ".ci/run").read_text().rstrip().endswith(test)


def test_render_command_renders_a_project(tmp_path):
    render, _ = quick_start_commands()
    destination = tmp_path / "my-service"
    command = render.replace("../my-service", shlex.quote(str(destination)))
    assert command != render

    result = run(["bash", "-c", command], TEMPLATE_ROOT, timeout=900)

    assert result.returncode == 0, result.stdout + result.stderr
    assert (destination / "src/my_service/client.py").is_file()
    answers = (destination / ".copier-answers.yml").read_text()
    assert "account_id: 0123456789abcdef0123456789abcdef" in answers
    assert "gateway_id: my-gateway" in answers
