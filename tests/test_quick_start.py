"""Issue 22 item 6: the README's Quick start and the printed offline next steps, verbatim.

In a clone of the template, at 80 columns, each target's render command is read from
README.md (so the two cannot drift) and run as pasted; then the block Copier prints under
"Next steps (offline" runs as pasted. Any command that exits non-zero, or any line a
person would see that is wider than 80 columns, fails the test.

Each service then lives its owner's first day on: the lock the install wrote committed, CI
runs ci.yml (tests/workflow_steps.py's run_ci: every `run:` step as written; the one that is
the next steps' own test run is not run twice). The Python service's README `uv run`
commands and Dockerfile install steps work; then the template releases 0.2.0 and the
rendered README's update command brings it (the README's "Updating" as written). One render,
one install and one run of the project's own suite for all of it (CI's `npm ci` excepted).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from cases import quick_start_commands
from testkit import run
from worker_toolchain import (
    METRICS,
    check_dry_run,
    check_lint,
    check_vitest,
    node22_bin_dir,
)
from workflow_steps import dockerfile_stages, load, run_build_stage, run_ci
from workflow_steps import steps as steps_of

WIDTH = 80
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# The rendered services' own variables: never taken from the shell running the tests.
SERVICE_VARIABLES = ("CF_AIG_TOKEN", "OPENAI_API_KEY", "CLOUDFLARE_ACCOUNT_ID", "SERVICE_API_KEY",
                     "PYTHONPATH", "VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT")


def person_env(tmp_path: Path) -> dict[str, str]:
    """A shell like a new user's: 80 columns, uvx and Node 22 on PATH, a git identity, none
    of the services' variables (nor this suite's Python environment)."""
    path = os.pathsep.join([str(Path(sys.executable).parent), str(node22_bin_dir()),
                            os.environ["PATH"]])
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CLOUDFLARE_", "CF_")) and k not in SERVICE_VARIABLES}
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


def quick_start(tmp_path: Path, block: int, name: str):
    """The README's render command ``block`` in a fresh clone of the template (tagged 0.1.0),
    then the offline next steps it printed, as pasted, every line at most 80 columns wide.
    ``(template, service, env, what the next steps did)``."""
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
    return template, tmp_path / name, env, steps, done


# Its own unit (tests/scheduling.py): it makes its own npm install, as a person would (npm's
# own cache, no shared node_modules).
@pytest.mark.standalone
def test_worker_quick_start_next_steps_and_ci_as_written(tmp_path, npm_env):
    """The Quick start and next steps as above; then the owner's first day on that Worker:
    the install's package-lock.json and worker-configuration.d.ts committed, CI runs ci.yml
    (its `npm ci` reinstalls from that lock): lint, typecheck, types check, vitest, the evals
    against the fake gateway under `wrangler dev --local`, dry-run deploy. Its code shape is
    CI_VARIANT's (the default answers), so these steps are that shape's checks, asserted as
    test_worker_target.py asserts them for the other variants."""
    from template_repo import commit_all, git

    _, service, _, steps, done = quick_start(tmp_path, 1, "my-worker")

    # `npm install` ran cf-typegen (the prepare script): the types are committed with the lock.
    assert (service / "worker-configuration.d.ts").is_file()
    assert (service / "package-lock.json").is_file()
    commit_all(service, "first install: package-lock.json, worker-configuration.d.ts")
    env = npm_env  # actions/setup-node: Node 22 and npm on PATH (and an npm cache)

    # ci.yml's `npm test` is the next steps' own, in this Worker, on these files: `npm ci`
    # reinstalls the very packages of the lock that install wrote, and its prepare script
    # writes the same types (the types step checks them). It passed there.
    assert "npm test" in [line.split("#")[0].strip() for line in steps.splitlines()]
    ci = run_ci(service, env, already_passed={"npm test": done})
    assert len(ci) == 7
    assert (service / "node_modules/wrangler/package.json").is_file()
    # The steps, by what they run (test_worker_ci_runs_every_check_and_a_dry_run_deploy pins the
    # exact list): the same checks as test_worker_target.py's per-variant tests.
    scripts = json.loads((service / "package.json").read_text())["scripts"]
    assert scripts["lint"] == "biome check ." and scripts["typecheck"] == "tsc --noEmit"
    assert scripts["test"] == "vitest run"
    check_lint(ci["npm run lint"].output)  # test_lint_clean_as_rendered
    METRICS.setdefault("my-worker", {})["typecheck s"] = round(ci["npm run typecheck"].seconds, 1)
    check_vitest("my-worker", ci["npm test"].output, ci["npm test"].seconds)
    check_dry_run("my-worker", service, ci["npx wrangler deploy --dry-run --outdir dist"].output,
                  gateway="my-gateway")
    # The evals against the fake (its failing case: tests/test_worker_openai_sdks.py).
    assert "passed 5 of 5: 100% (threshold 80%)" in ci["npm run eval:fake"].output

    # A wrangler.toml change without regenerated types fails the types step.
    wrangler = service / "wrangler.toml"
    wrangler.write_text(wrangler.read_text().replace(
        'AI_GATEWAY_ID = "my-gateway"', 'AI_GATEWAY_ID = "my-gateway"\nNEW_SETTING = "x"', 1))
    git(service, "commit", "-qam", "a new var, types not regenerated")
    (types_step,) = [s for s in steps_of(load(service / ".github/workflows/ci.yml"))
                     if "cf-typegen" in s.get("run", "")]
    result = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", types_step["run"]],
        cwd=service, env=env, capture_output=True, text=True, timeout=300,
        stdin=subprocess.DEVNULL)
    assert result.returncode != 0
    # wrangler's own check (or, after `npm ci` regenerated them, git diff) names it
    said = result.stdout + result.stderr
    assert "worker-configuration.d.ts are out of date" in said or "NEW_SETTING" in said


def rendered_update_command(service: Path) -> str:
    """The first command of the rendered README's "Updating from the template" section."""
    readme = (service / "README.md").read_text()
    section = readme.split("## Updating from the template\n", 1)[1]
    block = re.search(r"```sh\n(.*?)\n```", section, flags=re.DOTALL)[1]
    return block.splitlines()[0].split("#", 1)[0].strip()


def test_python_quick_start_next_steps_ci_and_update_as_written(tmp_path):
    """The Quick start and next steps as above; then CI and the Dockerfile on that service;
    then an update from inside it. Also tests/test_python_target.py's default project (the
    default answers but for the names): its suite passes here, its Dockerfile is checked here."""
    from template_repo import commit_all, git, release

    template, service, env, steps, done = quick_start(tmp_path, 0, "my-service")

    # What the quick start rendered: the package, the answers given, an absolute _src_path
    # (so that `copier update` finds the template from the service's own folder).
    assert (service / "src/my_service/client.py").is_file()
    answers_text = (service / ".copier-answers.yml").read_text()
    assert "account_id: 0123456789abcdef0123456789abcdef" in answers_text
    assert "gateway_id: my-gateway" in answers_text
    answers = yaml.safe_load(answers_text)
    assert answers["_src_path"] == str(template)
    assert answers["_commit"] == "0.1.0"

    # The owner's first day: the next steps' `uv sync` wrote uv.lock ("commit it"); CI runs
    # ci.yml, every `run:` step as written, in order (astral-sh/setup-uv: uv on PATH).
    assert (service / "uv.lock").is_file()
    commit_all(service, "first uv sync: uv.lock")
    # Its `uv run pytest` is the next steps' own, in the same service and environment, on
    # the same files (the commit and `uv sync --locked` change none): it passed there.
    assert "uv run pytest" in [line.split("#")[0].strip() for line in steps.splitlines()]
    ci = run_ci(service, env, already_passed={"uv run pytest": done})
    assert list(ci)[-1] == "uv run hadolint Dockerfile"  # default threshold: info
    assert " passed" in ci["uv run pytest"].output

    # The README's run commands, against the locked environment.
    for command in (["uv", "run", "--locked", "my-service", "--help"],
                    ["uv", "run", "--locked", "python", "-m", "my_service", "serve", "--help"]):
        result = subprocess.run(command, cwd=service, env=env, capture_output=True, text=True,
                                timeout=300, stdin=subprocess.DEVNULL)
        assert result.returncode == 0, f"{command}: {result.stdout}{result.stderr}"

    dockerfile = (service / "Dockerfile").read_text()
    assert dockerfile.startswith("# The service image")
    build, image = dockerfile_stages(dockerfile)
    # uv's Docker guide: the uv binary from its image (a pinned release), cache and bind
    # mounts, --locked; the image gets the environment and nothing of uv or pip.
    assert build[0] == "FROM python:3.12-slim AS build" and image[0] == "FROM python:3.12-slim"
    assert re.fullmatch(r"COPY --from=ghcr\.io/astral-sh/uv:\d+\.\d+\.\d+ /uv /bin/uv", build[1])
    assert "COPY --from=build /app/.venv /app/.venv" in image
    assert not [line for line in image if re.search(r"\buv\b", line)]
    assert "RUN python -m pip uninstall --yes pip && useradd --create-home --uid 10001 app" in image
    assert "USER 10001" in image
    assert "http://127.0.0.1:8000/health" in dockerfile
    assert image[-1] == (
        'CMD ["/app/.venv/bin/python", "-m", "my_service", "serve", "--host", "0.0.0.0", '
        '"--port", "8000"]'
    )
    # The build stage's steps, into another environment: no dev tools there.
    image_env = {**env, "UV_PROJECT_ENVIRONMENT": str(tmp_path / "image-venv")}
    ran = run_build_stage(build, service, tmp_path / "build", image_env)
    assert ran == ["uv sync --locked --no-dev --no-install-project",
                   "uv sync --locked --no-dev --no-editable"]
    for line in image:  # what the image copies from the project exists there
        if line.startswith("COPY ") and "--from=" not in line:
            assert all((service / source).exists() for source in line.split()[1:-1]), line
    image_python = tmp_path / "image-venv/bin/python"
    serve_help = subprocess.run([image_python, "-m", "my_service", "serve", "--help"], cwd=tmp_path,
                                env=env, capture_output=True, text=True, timeout=60)
    assert serve_help.returncode == 0, serve_help.stderr
    assert subprocess.run([image_python, "-c", "import pytest"], cwd=tmp_path, env=env,
                          capture_output=True, timeout=60).returncode != 0

    # Then the template releases 0.2.0, and the service updates from inside its own folder
    # with the rendered README's command, exactly as written (uvx: no Copier in the service).
    footer = "Template 0.2.0: this line arrived with the quick start's update."

    def edit(repo):
        readme = repo / "template/_shared/readme-updating.md.jinja"
        readme.write_text(readme.read_text() + f"\n{footer}\n")

    release(template, "0.2.0", edit)

    # --skip-tasks does not stand in for --trust on update (README "Updating" says so).
    copier = quick_start_commands()[0].split(" copy ", 1)[0]  # the quick start's uvx copier@<version>
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
