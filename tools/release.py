#!/usr/bin/env python3
"""What the release workflow (.github/workflows/release.yml) runs: the release in CHANGELOG.md.

    python3 tools/release.py plan [--notes PATH] [--changelog PATH]

Finds the newest released version in CHANGELOG.md: the first level-2 heading below
"Unreleased", written "## 0.2.0 - 2026-12-01" (or "## [0.2.0] - 2026-12-01"). The version
must be a PEP 440 public version (0.2.0, 1.0.0rc1), the tags `copier update` sorts. The
release commit is the oldest commit that added that heading to CHANGELOG.md (found with
``git log -G``), so a late run still tags the commit the release was cut in.

Prints ``version=``, ``commit=``, ``tagged=`` (true when the tag exists already) and
``prerelease=`` lines, appends them to ``$GITHUB_OUTPUT`` when it is set, and writes the
version's section (without its heading) to ``--notes`` (default release-notes.md).
Exit codes: 0 done, 2 no released version, or not a PEP 440 version, or not in git history.
Standard library only.
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


def newest_release(changelog: str) -> tuple[str, str]:
    """(version, notes) of the first version heading: "Unreleased" is skipped."""
    lines = changelog.splitlines()
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
        notes = "\n".join(lines[index + 1:end]).strip() + "\n"
        return version, notes
    raise ReleaseError("CHANGELOG.md has no released version yet (only Unreleased)")


def git(*args: str, cwd: Path) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise ReleaseError(f"git {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


def release_commit(version: str, changelog: Path) -> str:
    """The oldest commit whose diff adds or removes the version's heading."""
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    plan_parser = sub.add_parser("plan", help="the newest CHANGELOG version and its commit")
    plan_parser.add_argument("--changelog", type=Path, default=ROOT / "CHANGELOG.md")
    plan_parser.add_argument("--notes", type=Path, default=Path("release-notes.md"))
    args = parser.parse_args(argv)

    try:
        outputs = plan(args.changelog.resolve(), args.notes)
    except ReleaseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    lines = [f"{key}={value}" for key, value in outputs.items()]
    print("\n".join(lines))
    github_output = os.environ.get("GITHUB_OUTPUT")
    if github_output:
        with open(github_output, "a", encoding="utf-8") as out:
            out.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
