#!/usr/bin/env python3
"""What the release workflow (.github/workflows/release.yml) runs: the releases in CHANGELOG.md.

    python3 tools/release.py plan [--notes PATH] [--changelog PATH]
    python3 tools/release.py tag [--changelog PATH]

Every level-2 heading below "Unreleased" is a release, written "## 0.2.0 - 2026-12-01" (or
"## [0.2.0] - 2026-12-01"). The version must be a PEP 440 public version (0.2.0, 1.0.0rc1),
the tags `copier update` sorts. A release's commit is the oldest commit that added its
heading to CHANGELOG.md (found with ``git log -G``), so a late run still tags the commit the
release was cut in.

``plan`` looks at the newest release: prints ``version=``, ``commit=``, ``tagged=`` (true
when the tag exists already) and ``prerelease=`` lines, appends them to ``$GITHUB_OUTPUT``
when it is set, and writes the version's section (without its heading) to ``--notes``
(default release-notes.md).

``tag`` creates an annotated tag (message: the version and its section) for every release
that has none, oldest first, in the local repository only (pushing is the caller's step);
prints ``tagged <version> <commit>`` for each and appends ``tags=<versions>`` (space
separated, empty when none was missing) to ``$GITHUB_OUTPUT``. The tagger is git's
committer identity (``GIT_COMMITTER_NAME`` / ``GIT_COMMITTER_EMAIL`` or git config).

Exit codes: 0 done, 2 no released version, or not a PEP 440 version, or not in git history
(a shallow clone: fetch the whole history). Standard library only.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# PEP 440 public versions, in their normalized form (what a tag should be).
VERSION = re.compile(r"\d+(?:\.\d+)*(?:(?:a|b|rc)\d+)?(?:\.post\d+)?(?:\.dev\d+)?")
PRERELEASE = re.compile(r"(?:a|b|rc)\d+|\.dev\d+")
HEADING = re.compile(r"^## \[?(?P<version>[^\]\s]+)\]?")


class ReleaseError(Exception):
    """A CHANGELOG or git state no release can be cut from; the message says why."""


def releases(changelog: str) -> list[tuple[str, str]]:
    """(version, notes) of every version heading, newest first: "Unreleased" is skipped."""
    lines = changelog.splitlines()
    found = []
    for index, line in enumerate(lines):
        match = HEADING.match(line)
        if not match or match["version"].lower() == "unreleased":
            continue
        version = match["version"]
        if not VERSION.fullmatch(version):
            raise ReleaseError(
                f"CHANGELOG heading {line!r}: {version!r} is not a PEP 440 version in its "
                "normalized form (e.g. 0.2.0, 1.0.0rc1); copier update only knows those")
        end = next((i for i in range(index + 1, len(lines)) if lines[i].startswith("## ")),
                   len(lines))
        found.append((version, "\n".join(lines[index + 1:end]).strip() + "\n"))
    return found


def newest_release(changelog: str) -> tuple[str, str]:
    """(version, notes) of the first version heading: "Unreleased" is skipped."""
    found = releases(changelog)
    if not found:
        raise ReleaseError("CHANGELOG.md has no released version yet (only Unreleased)")
    return found[0]


def git(*args: str, cwd: Path) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise ReleaseError(f"git {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


def release_commit(version: str, changelog: Path) -> str:
    """The oldest commit whose diff adds or removes the version's heading."""
    # In a shallow clone the oldest commit present "adds" every line: a wrong answer.
    if git("rev-parse", "--is-shallow-repository", cwd=changelog.parent).strip() == "true":
        raise ReleaseError("this is a shallow clone: the release commits are not in it; "
                           "fetch the whole history (git fetch --unshallow, fetch-depth: 0)")
    pattern = r"^## \[?" + re.escape(version) + r"\]?( |$)"
    log = git("log", "--reverse", "--format=%H", "-G", pattern, "--", changelog.name,
              cwd=changelog.parent)
    commits = log.split()
    if not commits:
        raise ReleaseError(f"no commit adds the heading of {version} to {changelog.name}: "
                           "commit it first (and fetch the whole history)")
    return commits[0]


def is_tagged(version: str, cwd: Path) -> bool:
    result = subprocess.run(["git", "rev-parse", "-q", "--verify", f"refs/tags/{version}"],
                            cwd=cwd, capture_output=True, text=True, timeout=60)
    return result.returncode == 0


def plan(changelog: Path, notes_path: Path) -> dict[str, str]:
    version, notes = newest_release(changelog.read_text(encoding="utf-8"))
    commit = release_commit(version, changelog)
    notes_path.write_text(notes, encoding="utf-8")
    return {
        "version": version,
        "commit": commit,
        "tagged": "true" if is_tagged(version, changelog.parent) else "false",
        "prerelease": "true" if PRERELEASE.search(version) else "false",
    }


def tag_missing(changelog: Path) -> list[tuple[str, str]]:
    """Tag (annotated) every release without a tag, oldest first; (version, commit) made."""
    found = releases(changelog.read_text(encoding="utf-8"))
    if not found:
        raise ReleaseError("CHANGELOG.md has no released version yet (only Unreleased)")
    made = []
    for version, notes in reversed(found):
        if is_tagged(version, changelog.parent):
            continue
        commit = release_commit(version, changelog)
        git("tag", "-a", version, commit, "-m", f"{version}\n\n{notes}", cwd=changelog.parent)
        made.append((version, commit))
    return made


def write_outputs(lines: list[str]) -> None:
    """Append ``key=value`` lines to $GITHUB_OUTPUT when the workflow set it."""
    github_output = os.environ.get("GITHUB_OUTPUT")
    if github_output:
        with open(github_output, "a", encoding="utf-8") as out:
            out.write("\n".join(lines) + "\n")


def run_plan(args: argparse.Namespace) -> None:
    outputs = plan(args.changelog.resolve(), args.notes)
    lines = [f"{key}={value}" for key, value in outputs.items()]
    print("\n".join(lines))
    write_outputs(lines)


def run_tag(args: argparse.Namespace) -> None:
    made = tag_missing(args.changelog.resolve())
    for version, commit in made:
        print(f"tagged {version} {commit}")
    if not made:
        print("every CHANGELOG release is tagged already")
    write_outputs([f"tags={' '.join(version for version, _ in made)}"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    plan_parser = sub.add_parser("plan", help="the newest CHANGELOG version and its commit")
    plan_parser.add_argument("--changelog", type=Path, default=ROOT / "CHANGELOG.md")
    plan_parser.add_argument("--notes", type=Path, default=Path("release-notes.md"))
    tag_parser = sub.add_parser("tag", help="annotated tags for every untagged release")
    tag_parser.add_argument("--changelog", type=Path, default=ROOT / "CHANGELOG.md")
    args = parser.parse_args(argv)

    try:
        run_plan(args) if args.command == "plan" else run_tag(args)
    except ReleaseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
