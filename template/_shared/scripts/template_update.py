#!/usr/bin/env python3
"""Turn a template update of this project into one pull request (template-update.yml).

.github/workflows/template-update.yml runs, in a clean checkout of main:

    uvx copier@9.19.1 update --trust --skip-tasks --defaults
    python3 scripts/template_update.py report --body BODY.md
    python3 scripts/template_update.py publish --body BODY.md   (when report said changed)

``report`` compares the committed .copier-answers.yml (before the update) with the updated
one, refreshes the lock file (``uv lock``, or ``npm install --package-lock-only`` for a
package.json project) unless the update left conflicts in its manifest, finds the conflicts
among the files the update touched (``.rej`` files, conflict marker lines), reads the
template's CHANGELOG.md at the new version, and writes the pull request's body to --body.
It prints ``changed=``, ``old=``, ``new=`` and ``conflicts=`` lines, also appended to
$GITHUB_OUTPUT when that is set.

``publish`` commits everything on the branch template-update, pushes it and opens the pull
request, or updates the open one (the gh CLI, authenticated by GH_TOKEN). While an open
pull request already proposes the same version, it is left alone, so fixes pushed to its
branch are kept; a newer release rebuilds the branch from main.

Exit codes: 0 done, 2 the project or a command is not as expected (message on stderr).
Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ANSWERS = ".copier-answers.yml"
BRANCH = "template-update"
UPDATE_COMMAND = "uvx copier@9.19.1 update --trust --skip-tasks --defaults"
# GitHub refuses a pull request body over 65,536 characters.
MAX_BODY = 60_000
# A conflict marker line as git and Copier write them (prose may mention "<<<<<<<").
MARKER = re.compile(r"^(<<<<<<<|>>>>>>>)( |$)", re.MULTILINE)
HEADING = re.compile(r"^## \[?(?P<version>[^\]\s]+)\]?")
VERSION = re.compile(r"v?(\d+(?:\.\d+)*)(?:(a|b|rc)(\d+))?(?:\.post(\d+))?")
# `git describe` form Copier records for a commit after a tag: 0.2.0-3-gdeadbee.
DESCRIBED = re.compile(r"^(?P<tag>.+)-\d+-g(?P<hash>[0-9a-f]{4,40})$")
SHORTHANDS = {"gh:": "https://github.com/", "gl:": "https://gitlab.com/"}


class UpdateError(Exception):
    """The project or a command is not as expected; the message says what to do."""


def run(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    try:
        # Fixed commands (git, gh, uv, npm) with arguments this script builds.
        return subprocess.run(  # noqa: S603
            list(args),
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UpdateError(f"{args[0]}: {exc}") from exc


def git(*args: str, cwd: Path) -> str:
    result = run("git", *args, cwd=cwd, timeout=300)
    if result.returncode != 0:
        raise UpdateError(f"git {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


# ---- versions ------------------------------------------------------------------------


def answer(text: str, key: str) -> str:
    """One top-level value of .copier-answers.yml (plain or quoted YAML scalar)."""
    match = re.search(rf"^{re.escape(key)}:[ \t]*(.*?)[ \t]*$", text, re.MULTILINE)
    if not match:
        raise UpdateError(f"{ANSWERS} has no {key}: was this project made with Copier?")
    return match[1].strip("'\"")


def versions(project: Path) -> tuple[str, str]:
    """(old, new) _commit: the committed answers file, then the updated one."""
    before = git("show", f"HEAD:{ANSWERS}", cwd=project)
    after = (project / ANSWERS).read_text(encoding="utf-8")
    return answer(before, "_commit"), answer(after, "_commit")


def version_key(commit: str) -> tuple | None:
    """A sort key for a PEP 440-style version, or None for anything else."""
    described = DESCRIBED.match(commit)
    match = VERSION.fullmatch(described["tag"] if described else commit)
    if not match:
        return None
    release = tuple(int(part) for part in match[1].split("."))
    while len(release) > 1 and release[-1] == 0:
        release = release[:-1]
    pre = ("a", "b", "rc").index(match[2]) if match[2] else 3
    extra = 1 if described else 0  # commits after a tag sort after it
    return release, pre, int(match[3] or 0), int(match[4] or -1), extra


def crossed_sections(changelog: str, old: str, new: str) -> list[tuple[str, str]]:
    """(heading, text) of every CHANGELOG release after ``old`` up to ``new``, newest first."""
    low, high = version_key(old), version_key(new)
    lines = changelog.splitlines()
    sections = []
    for index, line in enumerate(lines):
        match = HEADING.match(line)
        key = version_key(match["version"]) if match else None
        if key is None or (low is not None and key <= low) or (high and key > high):
            continue
        end = next(
            (i for i in range(index + 1, len(lines)) if lines[i].startswith("## ")), len(lines)
        )
        sections.append((line[3:].strip(), "\n".join(lines[index + 1 : end]).strip()))
    return sections


# ---- the template's CHANGELOG --------------------------------------------------------


def clone_url(src_path: str) -> str:
    """Copier's gh:/gl: shorthands as git URLs; anything else as written."""
    for prefix, base in SHORTHANDS.items():
        if src_path.startswith(prefix):
            return base + src_path[len(prefix) :].removesuffix(".git") + ".git"
    return src_path


def template_changelog(project: Path, new: str) -> str:
    """CHANGELOG.md of the template at the updated _commit (a bare, blob-less clone)."""
    src_path = answer((project / ANSWERS).read_text(encoding="utf-8"), "_src_path")
    described = DESCRIBED.match(new)
    revision = described["hash"] if described else new
    with tempfile.TemporaryDirectory(prefix="template-") as tmp:
        git(
            "clone",
            "--quiet",
            "--bare",
            "--filter=blob:none",
            clone_url(src_path),
            tmp,
            cwd=project,
        )
        return git("--git-dir", tmp, "show", f"{revision}:CHANGELOG.md", cwd=project)


# ---- what the update left --------------------------------------------------------------


def touched_files(project: Path) -> list[str]:
    """Files the update changed or added (git status, untracked files included)."""
    out = git("status", "--porcelain", "-z", "--untracked-files=all", cwd=project)
    entries = out.split("\0")
    paths, skip = [], False
    for entry in entries:
        if skip or not entry:
            skip = False
            continue
        status, path = entry[:2], entry[3:]
        skip = status[0] in "RC"  # a rename's next entry is its old path
        if status != " D" and status[0] != "D":
            paths.append(path)
    return sorted(paths)


def conflicts(project: Path, paths: list[str]) -> list[str]:
    """Those of ``paths`` that are .rej files or hold conflict marker lines."""
    found = []
    for path in paths:
        if path.endswith(".rej"):
            found.append(path)
            continue
        try:
            text = (project / path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue  # binary or unreadable: Copier writes markers into text files only
        if MARKER.search(text):
            found.append(path)
    return found


def lock_plan(project: Path) -> tuple[list[str], str, str] | None:
    """(command, manifest, lock file) for this project, or None when it has neither."""
    if (project / "pyproject.toml").is_file():
        return ["uv", "lock"], "pyproject.toml", "uv.lock"
    if (project / "package.json").is_file():
        return (
            [
                "npm",
                "install",
                "--package-lock-only",
                "--ignore-scripts",
                "--no-audit",
                "--no-fund",
            ],
            "package.json",
            "package-lock.json",
        )
    return None


def refresh_lock(project: Path, conflicted: list[str]) -> str:
    """Run the lock command; return the sentence the pull request says about it."""
    plan = lock_plan(project)
    if plan is None:
        return "No lock file to refresh (no pyproject.toml or package.json)."
    command, manifest, lock = plan
    shown = " ".join(command[:3]) if command[0] == "npm" else " ".join(command)
    if manifest in conflicted:
        return (
            f"`{lock}` was not refreshed: `{manifest}` has conflicts. Resolve them, "
            f"then run `{shown}` and commit `{lock}`."
        )
    result = run(*command, cwd=project)
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-10:])
        print(f"{shown} failed:\n{result.stderr}", file=sys.stderr)
        return (
            f"`{shown}` failed (exit code {result.returncode}); run it on this branch "
            f"and commit `{lock}`:\n\n```\n{tail}\n```"
        )
    return f"`{lock}` refreshed with `{shown}`."


# ---- the pull request -----------------------------------------------------------------


def title(old: str, new: str) -> str:
    return f"Template update: {old} -> {new}"


def changelog_markdown(sections: list[tuple[str, str]]) -> str:
    """The CHANGELOG sections, their own headings one level below ours."""
    parts = []
    for heading, text in sections:
        demoted = re.sub(r"^(#+) ", r"\1# ", text, flags=re.MULTILINE)
        parts.append(f"### {heading}\n\n{demoted}".rstrip())
    return "\n\n".join(parts)


def conflicts_markdown(found: list[str]) -> str:
    if not found:
        return "No conflicts: no `.rej` files and no conflict markers."
    lines = [
        "Resolve these on this branch before merging (keep what you want, delete the "
        "markers or the `.rej` file, commit):",
        "",
    ]
    for path in found:
        kind = "changes Copier could not apply" if path.endswith(".rej") else "conflict markers"
        lines.append(f"- `{path}` ({kind})")
    return "\n".join(lines)


def body(old: str, new: str, changelog: str | None, found: list[str], lock: str) -> str:
    sections = crossed_sections(changelog, old, new) if changelog is not None else []
    crossed = "\n".join(f"- {heading}" for heading, _ in sections) or "- (none in CHANGELOG.md)"
    if changelog is None:
        notes = "The template's CHANGELOG.md could not be read (see the workflow's log)."
    else:
        notes = changelog_markdown(sections) or "CHANGELOG.md has no entry for these versions."
    text = (
        f"## {title(old, new)}\n\n"
        f"`.github/workflows/template-update.yml` ran `{UPDATE_COMMAND}` (the newest "
        "release, every recorded answer kept), then the lock file's command.\n\n"
        f"### Versions crossed\n\nFrom `{old}` to `{new}`:\n\n{crossed}\n\n"
        f"### Conflicts\n\n{conflicts_markdown(found)}\n\n"
        f"### Lock file\n\n{lock}\n\n"
        f"## What changed (the template's CHANGELOG.md)\n\n{notes}\n"
    )
    if len(text) > MAX_BODY:
        text = text[:MAX_BODY] + f"\n\n(cut: read CHANGELOG.md of the template at `{new}`)\n"
    return text


def report(project: Path, body_path: Path) -> dict[str, str]:
    old, new = versions(project)
    touched = touched_files(project)
    if not touched:
        return {"changed": "false", "old": old, "new": new, "conflicts": "0"}
    found = conflicts(project, touched)
    lock = refresh_lock(project, found)
    try:
        changelog = template_changelog(project, new)
    except UpdateError as exc:
        print(f"warning: {exc}", file=sys.stderr)
        changelog = None
    body_path.write_text(body(old, new, changelog, found, lock), encoding="utf-8")
    return {"changed": "true", "old": old, "new": new, "conflicts": str(len(found))}


# ---- publishing (gh) -------------------------------------------------------------------


def gh(*args: str, cwd: Path) -> str:
    result = run("gh", *args, cwd=cwd, timeout=120)
    if result.returncode != 0:
        raise UpdateError(f"gh {' '.join(args[:2])}: {result.stderr.strip()}")
    return result.stdout


def open_pull_request(project: Path) -> dict | None:
    listed = gh(
        "pr", "list", "--head", BRANCH, "--state", "open", "--json", "number,title", cwd=project
    )
    found = json.loads(listed or "[]")
    return found[0] if found else None


def publish(project: Path, body_path: Path) -> str:
    old, new = versions(project)
    wanted = title(old, new)
    existing = open_pull_request(project)
    if existing and existing["title"] == wanted:
        return f"pull request #{existing['number']} already proposes {new}: left as it is"
    git("switch", "--quiet", "-C", BRANCH, cwd=project)
    git("add", "--all", cwd=project)
    git("commit", "--quiet", "-m", wanted, cwd=project)
    gh("auth", "setup-git", cwd=project)
    git("push", "--quiet", "--force", "origin", f"HEAD:refs/heads/{BRANCH}", cwd=project)
    fields = ["--title", wanted, "--body-file", str(body_path)]
    if existing:
        gh("pr", "edit", str(existing["number"]), *fields, cwd=project)
        return f"pull request #{existing['number']} now proposes {new}"
    url = gh("pr", "create", "--head", BRANCH, *fields, cwd=project)
    return f"opened {url.strip()}"


def write_outputs(outputs: dict[str, str]) -> None:
    lines = [f"{key}={value}" for key, value in outputs.items()]
    print("\n".join(lines))
    github_output = os.environ.get("GITHUB_OUTPUT")
    if github_output:
        with open(github_output, "a", encoding="utf-8") as out:
            out.write("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, what in (
        ("report", "refresh the lock, write the body"),
        ("publish", "push the branch, open or update the pull request"),
    ):
        command = sub.add_parser(name, help=what)
        command.add_argument("--body", type=Path, required=True, help="the body's file")
    args = parser.parse_args(argv)
    project = Path.cwd()
    try:
        if args.command == "report":
            write_outputs(report(project, args.body))
        else:
            print(publish(project, args.body))
    except UpdateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
