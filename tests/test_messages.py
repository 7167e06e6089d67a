"""What Copier prints after copy and after update (includes/messages.jinja), read as a person
reads it: every line within 80 columns; after an update, the lock command only when the
dependencies changed and the notes of the releases crossed only; and the Worker's
compatibility_date moving forward with an update. Also: the 0.3.0 migration keeps the gateway
ids a 0.2.0 service typed (hooks/migrate_gateway_ids.py).

The releases are a local template repository: 0.2.0 is the real release (commit 93c9b20),
0.3.0 the working tree, 0.3.1 the working tree with one README line more (a README-only
release). Services are rendered at one tag and updated to the next with the Copier CLI.
"""
from __future__ import annotations

import contextlib
import io
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import BASE_ANSWERS, TEMPLATE_ROOT, plain_template
from copier import run_copy
from template_repo import commit_all, copier, git, init_project, template_dir

LAST_RELEASE = "93c9b20"  # "CHANGELOG: 0.2.0"
UPDATE = ["update", "--trust", "--defaults", "--skip-tasks"]
README_LINE = "Template 0.3.1 changes this README line only."
OFFLINE = "Next steps (offline, no Cloudflare account needed):"
CLOUDFLARE = "Then, with a Cloudflare account"


def _release_date() -> str:
    text = (TEMPLATE_ROOT / "includes/releases.jinja").read_text()
    return re.search(r'set compatibility_date = "(\d{4}-\d{2}-\d{2})"', text).group(1)


@pytest.fixture(scope="module")
def releases(tmp_path_factory) -> Path:
    """A template repository tagged 0.2.0 (the last release), 0.3.0 and 0.3.1."""
    repo = tmp_path_factory.mktemp("releases") / "ai-gateway-starter"
    archive = subprocess.run(["git", "archive", LAST_RELEASE], cwd=TEMPLATE_ROOT,
                             capture_output=True, check=True).stdout
    repo.mkdir()
    subprocess.run(["tar", "-x"], input=archive, cwd=repo, check=True)
    git(repo, "init", "-q")
    commit_all(repo, "template 0.2.0")
    git(repo, "tag", "0.2.0")
    working_tree = template_dir(repo.parent / "working-tree")
    subprocess.run(["git", "rm", "-rq", "."], cwd=repo, check=True)
    subprocess.run(["cp", "-a", f"{working_tree}/.", str(repo)], check=True)
    commit_all(repo, "template 0.3.0")
    git(repo, "tag", "0.3.0")
    readme = repo / "template/_shared/readme-updating.md.jinja"
    readme.write_text(readme.read_text() + f"\n{README_LINE}\n")
    commit_all(repo, "template 0.3.1")
    git(repo, "tag", "0.3.1")
    return repo


def _service(releases: Path, dst: Path, tag: str, **answers) -> Path:
    run_copy(str(releases), str(dst), data={**BASE_ANSWERS, **answers}, defaults=True,
             unsafe=True, vcs_ref=tag, quiet=True)
    init_project(dst)
    return dst


def _update(project: Path, tag: str, *data: str) -> str:
    result = copier(*UPDATE, "--vcs-ref", tag, *data, cwd=project)
    assert result.returncode == 0, result.stderr
    said = result.stdout + result.stderr
    assert "MissingFileWarning" not in said
    return said[said.index("Updated demo-svc from the template. Next:"):]


def _message_after_copy(dst: Path, **answers) -> str:
    """What a copy of the working tree prints (conftest's plain copy: no git clone)."""
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        run_copy(str(plain_template()), str(dst), data={**BASE_ANSWERS, **answers},
                 defaults=True, unsafe=True)
    said = stderr.getvalue()
    return said[said.index("Rendered "):].rstrip("\n")


@pytest.fixture(scope="module")
def python_at_0_3_0(releases, tmp_path_factory) -> Path:
    """The python-app rendered at 0.3.0 and committed: each test updates a copy of it."""
    return _service(releases, tmp_path_factory.mktemp("p") / "svc", "0.3.0", language="python-app")


def _copy_of(project: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(project, tmp_path / "svc", symlinks=True))


@pytest.fixture(scope="module")
def worker_from_last_release(releases, tmp_path_factory) -> tuple[Path, str]:
    """A Worker rendered from 0.2.0, updated to 0.3.0: (project, message)."""
    project = _service(releases, tmp_path_factory.mktemp("w") / "svc", "0.2.0",
                       language="typescript-worker")
    assert 'compatibility_date = "2026-11-01"' in (project / "wrangler.toml").read_text()
    return project, _update(project, "0.3.0")


def test_update_moves_the_compatibility_date_forward(worker_from_last_release):
    project, _ = worker_from_last_release

    toml = (project / "wrangler.toml").read_text()
    assert f'\ncompatibility_date = "{_release_date()}"\n' in toml
    assert _release_date() > "2026-11-01"


def test_update_across_a_release_that_changed_dependencies_names_the_lock_command(
        worker_from_last_release):
    _, message = worker_from_last_release

    assert ("\n  npm install                       # dependencies changed: "
            "package-lock.json\n") in message, message
    assert "uv lock" not in message


def test_update_shows_the_notes_of_the_releases_crossed_only(worker_from_last_release):
    _, message = worker_from_last_release

    assert "\nTemplate 0.3.0:\n  callers.toml: named caller keys" in message
    # 0.2.0's caller-auth note is for services made before 0.2.0: not crossed here
    assert "Callers must send" not in message
    assert "Template 0.2.0" not in message
    assert max(len(line) for line in message.splitlines()) <= 80


def test_readme_only_update_shows_no_note_and_no_lock_command(python_at_0_3_0, tmp_path):
    project = _copy_of(python_at_0_3_0, tmp_path)

    message = _update(project, "0.3.1")

    assert (project / "README.md").read_text().rstrip("\n").endswith(README_LINE)
    assert message.splitlines() == [
        "Updated demo-svc from the template. Next:",
        "  git diff --check                  # conflict markers to resolve, if any",
        "  git diff                          # review what changed, then commit",
        "  python3 scripts/ai_gateway.py sync --dry-run   # gateways as the file says?",
    ]


def test_adding_a_provider_on_update_names_the_lock_command(python_at_0_3_0, tmp_path):
    project = _copy_of(python_at_0_3_0, tmp_path)

    message = _update(project, "0.3.1", "--data", 'providers=["anthropic"]')

    assert "\n  uv lock                           # the dependencies changed: refresh uv.lock\n" \
        in message
    assert "Template 0." not in message


def test_update_from_before_0_2_0_shows_the_caller_auth_note(releases, python_at_0_3_0, tmp_path):
    # a project whose answers say 0.1.0 (the release before caller auth)
    project = _copy_of(python_at_0_3_0, tmp_path)
    answers = project / ".copier-answers.yml"
    answers.write_text(answers.read_text().replace("_commit: 0.3.0", "_commit: 0.1.0"))
    commit_all(project, "made from 0.1.0")
    git(releases, "tag", "0.1.0", "0.2.0")

    message = _update(project, "0.3.1")

    assert "\nCallers must send Authorization: Bearer $SERVICE_API_KEY" in message
    assert "\n  SERVICE_API_KEY in .env, and in your platform's secret store\n" in message
    assert "\nTemplate 0.3.0:\n" in message
    assert max(len(line) for line in message.splitlines()) <= 80


@pytest.mark.parametrize("language", ["python-app", "typescript-worker"])
def test_next_steps_after_copy_fit_80_columns_offline_block_first(tmp_path, language):
    message = _message_after_copy(tmp_path / "svc", language=language)

    lines = message.splitlines()
    assert max(len(line) for line in lines) <= 80
    offline = message.split(OFFLINE + "\n", 1)[1].split("\n\n", 1)[0]
    # A destination path too long for one line is cut with a backslash-newline, which the
    # shell joins (as here): how long tmp_path is depends on the machine and the run.
    commands = [line.split("  #", 1)[0].strip() for line in offline.replace("\\\n", "").splitlines()]
    first = [f"cd {tmp_path / 'svc'}",
             'git init && git add -A && git commit -m "Render from ai-gateway-starter"']
    steps = (["uv sync", "uv run pytest"] if language == "python-app"
             else ["node --version", "npm install", "npm test"])
    assert commands == [*first, *steps, "python3 scripts/ai_gateway.py sync --dry-run"]
    assert message.split("\n\n")[2].startswith(CLOUDFLARE)


def test_next_steps_after_copy_keep_a_long_name_and_path_within_80_columns(tmp_path):
    name = "a-very-long-project-name-that-goes-on-and-on-forever-x"  # 54 characters
    dst = tmp_path / ("deep-" * 12) / name
    message = _message_after_copy(dst, language="python-app", project_name=name)

    assert max(len(line) for line in message.splitlines()) <= 80
    first = message.split("\n\n", 1)[0]
    assert " ".join(first.split()) == f"Rendered {name} (python-app, auth mode unified-billing)."
    offline = message.split(OFFLINE + "\n", 1)[1]
    cd = offline.split("\n  git init")[0]
    # the shell joins backslash-newline: the path comes back whole
    joined = subprocess.run(["bash", "-c", f"echo {cd.strip()[3:]}"], capture_output=True,
                            text=True, check=True).stdout.strip()
    assert joined == str(dst)
    assert (f"\n  uv run python -m {name.replace('-', '_')} \\\n      chat \"Hello\"\n"
            in message)


def test_update_from_0_2_0_keeps_the_gateway_ids_typed_there(releases, tmp_path):
    project = _service(releases, tmp_path / "svc", "0.2.0", language="python-app",
                       gateway_id="base-gw", environments=["staging", "production"],
                       gateway_ids_confirmed=False, staging_gateway_id="stg-gw",
                       production_gateway_id="prod-gw")

    _update(project, "0.3.0")

    toml = (project / "ai-gateway.toml").read_text()
    assert '[gateways.staging]\nid = "stg-gw"' in toml
    assert '[gateways.production]\nid = "prod-gw"' in toml
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert (answers["gateway_id"], answers["staging_gateway_id"]) == ("prod-gw", "stg-gw")
    assert not {"gateway_ids_confirmed", "production_gateway_id"} & set(answers)


def test_every_release_in_the_changelog_has_a_row_in_the_release_table():
    table = set(re.findall(r'"version": "(\d+\.\d+\.\d+)"',
                           (TEMPLATE_ROOT / "includes/releases.jinja").read_text()))
    changelog = (TEMPLATE_ROOT / "CHANGELOG.md").read_text()
    released = set(re.findall(r"^## (\d+\.\d+\.\d+) - ", changelog, flags=re.M))

    # 0.1.0 had no update to describe; the newest row may be the release being cut
    assert released - {"0.1.0"} <= table
    assert len(table - released) <= 1 and "## Unreleased" in changelog or table <= released
