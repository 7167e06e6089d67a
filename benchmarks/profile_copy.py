#!/usr/bin/env python3
"""Where `copier copy` (or `update`) spends its time: our targets vs the one-file template.

    .venv/bin/python benchmarks/profile_copy.py [--runs 5] [--update]

Runs `copier.run_copy` (with --update: `copier.run_update` of a project rendered from v1 to v2,
across one template change) in-process under pyinstrument, on the same template repos as run.py
(ours as the working tree, the same trimmed to copier.yml + template/ + hooks/, and the one-file
template), and sums,
per phase, the time of the outermost call of each Copier function below, averaged over runs.
Phases overlap (rendering a file compiles Jinja, for instance): they say where time goes, they
do not add up to the total. Process start and `import copier` come first, measured apart.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench  # noqa: E402

# phase -> (function name, file name) of Copier's own code.
PHASES = {
    "total (run_update)": ("run_update", "_main.py"),
    "total (run_copy; twice per update)": ("run_copy", "_main.py"),
    "clone template repo": ("clone", "_vcs.py"),
    "questions (defaults, validators)": ("_ask", "_main.py"),
    "render file names": ("_render_path", "_main.py"),
    "render files": ("_render_file", "_main.py"),
    "Jinja compile (all)": ("compile", "environment.py"),
    "git index exec bit sync": ("_sync_git_index_executable_bit", "_main.py"),
    "tasks": ("_execute_tasks", "_main.py"),
    "clean-up (rm clones)": ("_cleanup", "_template.py"),
    "all rmtree": ("rmtree", "shutil.py"),
    "all subprocesses (git)": ("run_proc", "processes.py"),
}


def profile(src: Path, data: dict, dst: Path, runs: int, update_from: Path | None = None) -> dict[str, float]:
    from copier import run_copy, run_update
    from pyinstrument import Profiler

    totals = dict.fromkeys(PHASES, 0.0)
    for _ in range(runs):
        shutil.rmtree(dst, ignore_errors=True)
        if update_from:
            shutil.copytree(update_from, dst, symlinks=True)
        profiler = Profiler(interval=0.0005)
        profiler.start()
        if update_from:
            run_update(str(dst), defaults=True, unsafe=True, vcs_ref="v2", quiet=True, overwrite=True)
        else:
            run_copy(str(src), str(dst), data=data, defaults=True, unsafe=True, vcs_ref="HEAD", quiet=True)
        profiler.stop()

        def walk(frame, seen: frozenset) -> None:
            key = (frame.function, Path(frame.file_path or "").name)
            for phase, wanted in PHASES.items():
                if key == wanted and phase not in seen:
                    totals[phase] += frame.time / runs
                    seen = seen | {phase}
            for child in frame.children:
                walk(child, seen)

        walk(profiler.last_session.root_frame(), frozenset())
    shutil.rmtree(dst, ignore_errors=True)
    return totals


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--update", action="store_true", help="profile copier update, not copy")
    args = parser.parse_args()
    python = bench.copier_python()
    starts = [bench.run([python, "-c", "import copier"]).seconds for _ in range(5)]
    print(f"python -c 'import copier' (process start + import), median of 5: "
          f"{sorted(starts)[2]:.3f} s: paid alike by every template\n")

    work = Path(tempfile.mkdtemp(prefix="aig-profile-"))
    try:
        templates = bench.Templates(work)
        variants = templates.variants()
        projects = {}
        if args.update:
            for name, src, data in variants:
                projects[name] = project = work / f"v1-{len(projects)}"
                bench.copier_copy(src, project, data, ref="v1")
                for git_args in (["init", "-q", "-b", "main"], ["add", "-A"],
                                 ["commit", "-q", "--no-gpg-sign", "-m", "rendered from v1"]):
                    bench.git(*git_args, cwd=project)
            bench.release_v2(templates.baseline, "README.md.jinja")
            for repo in (templates.ours, templates.trimmed):
                bench.release_v2(repo, "template/_shared/readme-updating.md.jinja")
        results = {name: profile(src, data, work / f"out-{i}", args.runs, projects.get(name))
                   for i, (name, src, data) in enumerate(variants)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    names = [name for name, *_ in variants]
    print(f"| phase (s, mean of {args.runs}) | {' | '.join(names)} |")
    print("| --- |" + " --- |" * len(names))
    for phase in PHASES:
        if "run_update" in phase and not args.update:
            continue
        print(f"| {phase} | " + " | ".join(f"{results[n][phase]:.3f}" for n in names) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
