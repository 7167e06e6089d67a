"""Running a rendered project's GitHub Actions workflows without GitHub: reading them (PyYAML,
with GitHub's `on`), their steps, ci.yml's shell steps as GitHub's bash runs them, and a
Dockerfile's build stage without Docker. Used by tests/test_workflows.py and
tests/test_quick_start.py."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml
from worker_toolchain import Result, run


def load(path: Path) -> dict:
    # PyYAML reads the key `on` as True (YAML 1.1); GitHub reads it as "on".
    data = yaml.safe_load(path.read_text())
    if True in data:
        data["on"] = data.pop(True)
    return data


def steps(workflow: dict) -> list[dict]:
    return [step for job in workflow["jobs"].values() for step in job["steps"]]


def runs(workflow: dict) -> list[str]:
    return [step["run"] for step in steps(workflow) if "run" in step]


def run_ci(project: Path, env: dict[str, str],
           already_passed: dict[str, Result] | None = None) -> dict[str, Result]:
    """Run ci.yml's shell steps like GitHub's bash shell; the setup actions are ``env``.
    Each step's script -> what it did (stderr merged into stdout), in the order they ran.
    ``already_passed``: a step's script -> what it did when it ran (exit 0) in this project,
    with these files and ``env``, just before (the quick start's next steps): not run twice."""
    done = {}
    for step in steps(load(project / ".github/workflows/ci.yml")):
        if "run" not in step:
            continue
        if step["run"] in (already_passed or {}):
            done[step["run"]] = already_passed[step["run"]]
            continue
        result = run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
                     project, env, timeout=900)
        assert result.returncode == 0, (
            f"ci.yml step {step['run']!r} exited {result.returncode}:\n{result.output[-5000:]}")
        done[step["run"]] = result
    return done


def dockerfile_stages(text: str) -> list[list[str]]:
    """A Dockerfile's instructions, continuation lines joined, one list per FROM."""
    stages: list[list[str]] = []
    for line in re.sub(r"\\\n\s*", "", text).splitlines():
        if line.startswith("FROM "):
            stages.append([])
        if line.strip() and not line.startswith("#"):
            stages[-1].append(line)
    return stages


def run_build_stage(stage: list[str], project: Path, workdir: Path, env: dict) -> list[str]:
    """A build stage's COPY and RUN steps as `docker build` runs them, without Docker: COPY
    copies from the project into ``workdir`` (the WORKDIR), a RUN sees what was copied before
    it plus its own bind mounts, and runs with the mount flags removed. The RUN commands."""
    workdir.mkdir()
    ran = []
    for line in stage:
        word, _, rest = line.partition(" ")
        if word == "COPY" and not rest.startswith("--from="):
            *sources, target = rest.split()
            for source in sources:
                into = workdir / target
                if target.endswith("/"):
                    into = into / Path(source).name
                copy = shutil.copytree if (project / source).is_dir() else shutil.copyfile
                copy(project / source, into)
        elif word == "RUN":
            mounts = [dict(option.split("=", 1) for option in flag.split(","))
                      for flag in re.findall(r"--mount=(\S+)", rest)]
            binds = {workdir / m["target"]: project / m["source"]
                     for m in mounts if m["type"] == "bind"}
            for bound, source in binds.items():
                shutil.copyfile(source, bound)
            command = re.sub(r"--mount=\S+\s+", "", rest)
            result = subprocess.run(["bash", "-c", command], cwd=workdir, env=env,
                                    capture_output=True, text=True, timeout=900,
                                    stdin=subprocess.DEVNULL)
            assert result.returncode == 0, f"{command}: {result.stdout}{result.stderr}"
            for bound in binds:  # a bind mount lasts one RUN
                bound.unlink()
            ran.append(command)
    return ran
