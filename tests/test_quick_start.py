"""Issue 22 item 6: the README's Quick start and the printed offline next steps, verbatim.

In a clone of the template, at 80 columns, each target's render command is read from
README.md (so the two cannot drift) and run as pasted; then the block Copier prints under
"Next steps (offline" runs as pasted. Any command that exits non-zero, or any line a
person would see that is wider than 80 columns, fails the test.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from pathlib import Path

import pytest
from cases import quick_start_commands
from testkit import run
from worker_toolchain import node22_bin_dir, npm_group

WIDTH = 80
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
RENDERS = [
    pytest.param(0, "my-service", id="python-app"),
    pytest.param(1, "my-worker", id="typescript-worker",
                 marks=pytest.mark.xdist_group(npm_group("unified-billing"))),
]


def person_env(tmp_path: Path) -> dict[str, str]:
    """A shell like a new user's: 80 columns, uvx and Node 22 on PATH, a git identity."""
    path = os.pathsep.join([str(Path(sys.executable).parent), str(node22_bin_dir()),
                            os.environ["PATH"]])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLOUDFLARE_", "CF_"))}
    identity = {f"GIT_{who}_{what}": value for who in ("AUTHOR", "COMMITTER")
                for what, value in (("NAME", "New User"), ("EMAIL", "new@example.com"))}
    # git's own "hint: Using 'master'" (81 columns) is for a git never configured.
    branch = {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "init.defaultBranch",
              "GIT_CONFIG_VALUE_0": "main"}
    return {**env, **identity, **branch, "PATH": path, "COLUMNS": str(WIDTH), "LINES": "24",
            "HOME": os.environ.get("HOME", str(tmp_path))}


def offline_next_steps(message: str) -> str:
    """The commands under "Next steps (offline ...):", up to the blank line before "Then,"."""
    after = message.split("Next steps (offline", 1)[1].split("\n", 1)[1]
    block = after.split("\n\n", 1)[0]
    assert "Then," not in block
    return block


def too_wide(output: str) -> list[str]:
    return [line for line in ANSI.sub("", output).splitlines() if len(line) > WIDTH]


def show(command: str, result) -> str:
    return f"$ {command}\nrc={result.returncode}\n{result.stdout}\n{result.stderr}"


@pytest.mark.parametrize(("block", "name"), RENDERS)
def test_quick_start_then_offline_next_steps_run_as_pasted_at_80_columns(tmp_path, block, name):
    from template_repo import template_clone

    render_command = quick_start_commands()[block]
    # A short folder like a person's (~/src): pytest's tmp_path alone is 70+ columns wide.
    tmp_path = Path(tempfile.mkdtemp(prefix="qs", dir=tmp_path.anchor + "tmp"))
    template = template_clone(tmp_path / "ai-gateway-starter")
    env = person_env(tmp_path)

    rendered = run(["bash", "-c", render_command], template, env=env, timeout=900)
    assert rendered.returncode == 0, show(render_command, rendered)
    assert (tmp_path / name / ".copier-answers.yml").is_file()
    steps = offline_next_steps(ANSI.sub("", rendered.stdout + rendered.stderr))

    done = run(["bash", "-e", "-c", steps], template, env=env, timeout=900)
    assert done.returncode == 0, show(steps, done)
    seen = "\n".join([*render_command.splitlines(), rendered.stdout, rendered.stderr,
                      done.stdout, done.stderr])
    assert too_wide(seen) == [], "\n".join(too_wide(seen))
