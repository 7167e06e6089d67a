#!/usr/bin/env python3
"""What each copier.yml question costs `copier copy`, in milliseconds, per target.

    .venv/bin/python benchmarks/question_cost.py [--runs 7] [--update]

Runs `copier.run_copy` in-process (with --update: `run_update` of a project rendered from v1,
across one template change: both of Copier's passes) on the working tree's template (as
run.py snapshots it), and charges the time Copier spends on each question (its default,
`when`, type, choices and validator, each rendered as a Jinja template, and YAML answers
parsed) to that question: exclusive CPU time of this process (questions start no subprocess), so
nothing is counted twice and a busy machine hardly changes the numbers. Also the number of
Jinja templates Copier compiled for it (`from_string`: Copier compiles every templated value
each time it renders it, so a choice list or a type costs once per choice, per pass).

The last rows put the questions in proportion to the whole `run_copy`: the time in `_ask`
(all questions) and the rest (clone, render files, clean-up).
"""
from __future__ import annotations

import argparse
import collections
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench

# Question methods whose time is charged to the question (exclusive of nested ones).
METHODS = ("get_default", "parse_answer", "cast_answer", "validate_answer", "get_when", "get_ask",
           "render_value", "_formatted_choices")


class Meter:
    """Exclusive wall time and compile counts per question, from wrapped Copier methods."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.seconds: collections.Counter = collections.Counter()
        self.compiles: collections.Counter = collections.Counter()
        self.ask_seconds = 0.0
        self.total_seconds = 0.0
        self._stack: list[list] = []  # [var_name, start, child seconds]

    def enter(self, var_name: str) -> None:
        self._stack.append([var_name, time.process_time(), 0.0])

    def leave(self) -> None:
        var_name, start, children = self._stack.pop()
        spent = time.process_time() - start
        self.seconds[var_name] += spent - children
        if self._stack:
            self._stack[-1][2] += spent

    def current(self) -> str | None:
        return self._stack[-1][0] if self._stack else None


def instrument(meter: Meter) -> None:
    import copier._main as copier_main
    import copier._user_data as user_data
    from jinja2 import Environment

    question = user_data.Question
    for name in METHODS:
        original = question.__dict__[name]
        if isinstance(original, property) or hasattr(original, "func"):  # cached_property
            func = original.func

            def getter(self, _func=func, _name=name):
                meter.enter(self.var_name)
                try:
                    value = _func(self)
                finally:
                    meter.leave()
                self.__dict__[_name] = value
                return value

            from functools import cached_property

            replacement = cached_property(getter)
            replacement.__set_name__(question, name)
            setattr(question, name, replacement)
            continue

        def wrapper(self, *args, _original=original, **kwargs):
            meter.enter(self.var_name)
            try:
                return _original(self, *args, **kwargs)
            finally:
                meter.leave()

        setattr(question, name, wrapper)

    from_string = Environment.from_string

    def counted_from_string(self, source, *args, **kwargs):
        if meter.current() is not None and isinstance(source, str):
            meter.compiles[meter.current()] += 1
        return from_string(self, source, *args, **kwargs)

    Environment.from_string = counted_from_string

    ask = copier_main.Worker._ask

    def timed_ask(self):
        start = time.process_time()
        try:
            return ask(self)
        finally:
            meter.ask_seconds += time.process_time() - start

    copier_main.Worker._ask = timed_ask


def measure(meter: Meter, target: str, runs: int, update: bool) -> None:
    """Run ``runs`` copies (or updates) of ``target`` after one warm-up, metered."""
    from copier import run_copy, run_update

    work = Path(tempfile.mkdtemp(prefix="aig-questions-"))
    try:
        templates = bench.Templates(work)
        data = {**bench.COMMON_DATA, "language": target}
        base = work / "v1"
        if update:
            bench.copier_copy(templates.ours, base, data, ref="v1")
            for git_args in (["init", "-q", "-b", "main"], ["add", "-A"],
                             ["commit", "-q", "--no-gpg-sign", "-m", "rendered from v1"]):
                bench.git(*git_args, cwd=base)
            bench.release_v2(templates.ours, "template/_shared/readme-updating.md.jinja")
        for r in range(runs + 1):  # round 0 warms up (imports, first compiles)
            dst = work / f"out-{r}"
            if r == 1:
                meter.reset()
            start = time.process_time()
            if update:
                shutil.copytree(base, dst, symlinks=True)
                start = time.process_time()
                run_update(str(dst), defaults=True, unsafe=True, vcs_ref="v2", quiet=True, overwrite=True)
            else:
                run_copy(str(templates.ours), str(dst), data=data, defaults=True, unsafe=True,
                         vcs_ref="HEAD", quiet=True)
            meter.total_seconds += time.process_time() - start
            shutil.rmtree(dst)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--update", action="store_true", help="measure copier update, not copy")
    args = parser.parse_args()
    meter = Meter()
    instrument(meter)
    results = {}
    for target in bench.TARGETS:
        measure(meter, target, args.runs, args.update)
        results[target] = (meter.seconds.copy(), meter.compiles.copy(), meter.ask_seconds,
                           meter.total_seconds, args.runs)
    op = "run_update" if args.update else "run_copy"
    names = sorted({q for seconds, *_ in results.values() for q in seconds},
                   key=lambda q: -sum(results[t][0][q] for t in results))
    print(f"CPU ms per `{op}` (this process; git's own CPU is not in the last row), mean of "
          f"{args.runs} (compiled templates in brackets)\n")
    print("| question | " + " | ".join(results) + " |")
    print("| --- |" + " --- |" * len(results))
    for q in names:
        cells = []
        for seconds, compiles, _, _, runs in results.values():
            cells.append(f"{seconds[q] / runs * 1000:.1f} ({compiles[q] // runs})")
        print(f"| `{q}` | " + " | ".join(cells) + " |")
    for label, index in (("all questions (`_ask`)", 2), (f"whole `{op}`", 3)):
        print(f"| {label} | " + " | ".join(f"{r[index] / r[4] * 1000:.0f}" for r in results.values()) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
