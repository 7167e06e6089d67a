#!/usr/bin/env python3
"""What parts of the template cost `copier copy` and `copier update`: remove one, measure again.

    .venv/bin/python benchmarks/ablate.py [--runs 7] [--target python-app|typescript-worker] [--cpu]

Starts from this working tree's copier.yml, template/ and hooks/ (what Copier reads), makes one
variant per change below, renders a project from each at v1, releases v2 (one line appended to
the README template), then times `run_copy` and `run_update` in-process, all variants
interleaved per round. Prints the median seconds and the median per-round difference to
"as is". A variant is an experiment, not a proposal: removing validators, for one, is not.
"""
from __future__ import annotations

import argparse
import glob
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench

# Each target's own folder: the other target's copy never walks it.
ONLY = {
    "typescript-worker": ["template/typescript-worker"],
    "python-app": ["template/python-app"],
}


def drop_validators(config: dict) -> None:
    for value in config.values():
        if isinstance(value, dict):
            value.pop("validator", None)


def add_computed_values(config: dict) -> None:
    for i in range(10):
        config[f"bench_computed_{i}"] = {
            "type": "yaml",
            "default": "{{ (['openai'] + providers) | unique | list | to_json }}",
            "when": False,
        }


def computed_yaml_as_json(config: dict) -> None:
    """Computed values rendered with ``to_json`` but typed ``yaml``: parse them as JSON
    (json.loads, in C) instead of YAML (PyYAML's pure-Python loader)."""
    for value in config.values():
        if isinstance(value, dict) and value.get("type") == "yaml" and value.get("when") is False:
            value["type"] = "json"


def add_files(target: str, count: int = 10):
    """An edit adding ``count`` small plain files to the target's folder: what one more
    rendered file costs."""
    def edit(dst: Path) -> None:
        for i in range(count):
            (dst / "template" / target / f"bench-extra-{i}.txt").write_text(f"extra file {i}\n")
    return edit


def cpu_seconds() -> float:
    """CPU time of this process and of the children it waited for (Copier's git calls): a
    busy machine stretches wall time, hardly CPU time."""
    import resource

    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def make_variant(src: Path, dst: Path, drop: list[str] = (), edit=None, files=None) -> Path:
    shutil.copytree(src, dst, symlinks=True, ignore=shutil.ignore_patterns(".git"))
    if files:
        files(dst)
    for pattern in drop:
        for path in glob.glob(str(dst / pattern)):
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    if edit:
        config = yaml.safe_load((dst / "copier.yml").read_text())
        edit(config)
        (dst / "copier.yml").write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    return bench.make_repo(dst, dst)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--target", choices=bench.TARGETS, default="python-app")
    parser.add_argument("--cpu", action="store_true",
                        help="CPU seconds (this process + its children) instead of wall seconds")
    args = parser.parse_args()
    from copier import run_copy, run_update

    clock = cpu_seconds if args.cpu else time.perf_counter

    other = "python-app" if args.target == "typescript-worker" else "typescript-worker"
    data = {**bench.COMMON_DATA, "language": args.target}
    work = Path(tempfile.mkdtemp(prefix="aig-ablate-"))
    try:
        source = work / "source"
        source.mkdir()
        shutil.copy2(bench.ROOT / "copier.yml", source / "copier.yml")
        for name in ("template", "hooks", "includes"):
            shutil.copytree(bench.ROOT / name, source / name, symlinks=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.py[co]", "node_modules"))
        variants = {
            "as is": make_variant(source, work / "v0"),
            f"without {other}'s files": make_variant(source, work / "v1", drop=ONLY[other]),
            "without any validator": make_variant(source, work / "v2", edit=drop_validators),
            "with 10 more computed values": make_variant(source, work / "v3", edit=add_computed_values),
            "computed values typed json, not yaml": make_variant(source, work / "v4",
                                                                 edit=computed_yaml_as_json),
            "with 10 more plain files": make_variant(source, work / "v5", files=add_files(args.target)),
        }
        projects = {}
        for i, (name, repo) in enumerate(variants.items()):
            projects[name] = project = work / f"project-{i}"
            run_copy(str(repo), str(project), data=data, defaults=True, unsafe=True, vcs_ref="v1", quiet=True)
            for git_args in (["init", "-q", "-b", "main"], ["add", "-A"],
                             ["commit", "-q", "--no-gpg-sign", "-m", "rendered from v1"]):
                bench.git(*git_args, cwd=project)
            bench.release_v2(repo, "template/_shared/readme-updating.md.jinja")

        times = {op: {name: [] for name in variants} for op in ("copy", "update")}
        for r in range(args.runs + 1):  # round 0 warms up
            order = list(variants.items()) if r % 2 == 0 else list(variants.items())[::-1]
            for name, repo in order:
                dst = work / "out"
                start = clock()
                run_copy(str(repo), str(dst), data=data, defaults=True, unsafe=True, vcs_ref="v1", quiet=True)
                copy_s = clock() - start
                shutil.rmtree(dst)
                shutil.copytree(projects[name], dst, symlinks=True)
                start = clock()
                run_update(str(dst), defaults=True, unsafe=True, vcs_ref="v2", quiet=True, overwrite=True)
                update_s = clock() - start
                shutil.rmtree(dst)
                if r:
                    times["copy"][name].append(copy_s)
                    times["update"][name].append(update_s)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    unit = "CPU seconds" if args.cpu else "seconds"
    print(f"{args.target}: in-process run_copy / run_update ({unit}), median of {args.runs} "
          "interleaved rounds\n")
    print("| variant | copy (s) | vs as is | update (s) | vs as is |")
    print("| --- | --- | --- | --- | --- |")
    for name in variants:
        cells = []
        for op in ("copy", "update"):
            mine, base = times[op][name], times[op]["as is"]
            diff = statistics.median(a - b for a, b in zip(mine, base, strict=True))
            cells += [f"{statistics.median(mine):.3f}", "" if name == "as is" else f"{diff:+.3f}"]
        print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
