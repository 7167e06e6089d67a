#!/usr/bin/env python3
"""Where `copier copy` (or `update`) spends its time: our targets vs the one-file template.

    .venv/bin/python benchmarks/profile_copy.py [--runs 5] [--update] [--cpu]

Runs `copier.run_copy` (with --update: `copier.run_update` of a project rendered from v1 to v2,
across one template change) in-process under pyinstrument, on the same template repos as run.py
(ours as the working tree, the same trimmed to copier.yml + template/ + hooks/, and the one-file
template), and sums,
per phase, the time of the outermost call of each Copier function below, averaged over runs.
Phases overlap (rendering a file compiles Jinja, for instance): they say where time goes, they
do not add up to the total. Process start and `import copier` come first, measured apart.

--cpu: no profiler; the same Copier functions are wrapped and charged CPU time (this
process plus the git processes it waited for), which a busy machine hardly changes. Same
table, in CPU milliseconds; "git" there is the CPU of every git process Copier ran.
"""
from __future__ import annotations

import argparse
import inspect
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench

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


def cpu_seconds() -> float:
    import resource
    import time

    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def git_cpu_seconds() -> float:
    import resource

    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return children.ru_utime + children.ru_stime


WRAPPED: set[str] = {"all subprocesses (git)"}  # phases --cpu measures


def profile_cpu(src: Path, data: dict, dst: Path, runs: int, update_from: Path | None = None) -> dict[str, float]:
    """PHASES by CPU seconds, from wrappers around Copier's functions (outermost call only)."""
    import copier._main as copier_main
    import copier._template as copier_template
    from copier import _vcs

    owners = {"_main.py": [copier_main, copier_main.Worker], "_template.py": [copier_template.Template],
              "_vcs.py": [copier_template]}  # clone is called through _template's import
    totals = dict.fromkeys(PHASES, 0.0)
    active: set[str] = set()
    restore = []
    for phase, (function, file_name) in PHASES.items():
        if file_name == "processes.py":
            continue
        for owner in owners.get(file_name, []):
            original = owner.__dict__.get(function) if isinstance(owner, type) else getattr(owner, function, None)
            if original is None or not callable(original) or inspect.isgeneratorfunction(original):
                continue  # a generator's time is spent by its caller, not in the call

            def wrapper(*args, _original=original, _phase=phase, **kwargs):
                if _phase in active:
                    return _original(*args, **kwargs)
                active.add(_phase)
                start = cpu_seconds()
                try:
                    return _original(*args, **kwargs)
                finally:
                    totals[_phase] += (cpu_seconds() - start) / runs
                    active.discard(_phase)

            restore.append((owner, function, original))
            WRAPPED.add(phase)
            setattr(owner, function, wrapper)
    _ = _vcs
    try:
        for _ in range(runs):
            shutil.rmtree(dst, ignore_errors=True)
            if update_from:
                shutil.copytree(update_from, dst, symlinks=True)
            git_before = git_cpu_seconds()
            if update_from:
                copier_main.run_update(str(dst), defaults=True, unsafe=True, vcs_ref="v2", quiet=True,
                                       overwrite=True)
            else:
                copier_main.run_copy(str(src), str(dst), data=data, defaults=True, unsafe=True,
                                     vcs_ref="HEAD", quiet=True)
            totals["all subprocesses (git)"] += (git_cpu_seconds() - git_before) / runs
    finally:
        for owner, function, original in restore:
            setattr(owner, function, original)
    shutil.rmtree(dst, ignore_errors=True)
    return totals


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--update", action="store_true", help="profile copier update, not copy")
    parser.add_argument("--cpu", action="store_true", help="CPU time per phase, no profiler")
    args = parser.parse_args()
    measure = profile_cpu if args.cpu else profile
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
        results = {name: measure(src, data, work / f"out-{i}", args.runs, projects.get(name))
                   for i, (name, src, data) in enumerate(variants)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    names = [name for name, *_ in variants]
    unit = "CPU ms" if args.cpu else "s"
    print(f"| phase ({unit}, mean of {args.runs}) | {' | '.join(names)} |")
    print("| --- |" + " --- |" * len(names))
    for phase in PHASES:
        if "run_update" in phase and not args.update or args.cpu and phase not in WRAPPED:
            continue
        cells = (f"{results[n][phase] * 1000:.0f}" if args.cpu else f"{results[n][phase]:.3f}" for n in names)
        print(f"| {phase} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
