#!/usr/bin/env python3
"""Run the template's whole test suite, installing what it needs first.

    python3 tools/run_tests.py [pytest arguments]

1. a virtual environment in .venv with requirements-dev.txt (re-installed when that
   file changes);
2. Node >= 22.12 for wrangler 4: the machine's node if new enough, else the npm
   registry package node-<platform>-<arch>@22 in .cache/node22 (tools/node22.py);
3. redis-server (tests/test_callers.py runs a real one) and /usr/bin/chromium (the chat
   page's browser tests, tests/test_chat_page.py): the machine's, else Debian's or Ubuntu's
   package through apt-get (as root, or with sudo -n as on GitHub's runners);
4. pytest, with that Node first on PATH, in parallel (``-n <CPUs + 1>``: one worker per CPU
   and one more; tests/scheduling.py keeps tests that share an expensive fixture on one
   worker and starts the heaviest first) and verbose (one line per test as it finishes).

Each step says what it does and how long it took; a long one says it is still running.
Pass ``-n 0`` to run serially, ``-q`` for dots instead of one line per test. The exit
status is pytest's: 0 only when every test passed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import threading
import time
import venv
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv"
REQUIREMENTS = ROOT / "requirements-dev.txt"
STAMP = VENV / ".requirements-sha256"
HEARTBEAT_SECONDS = 15

sys.path.insert(0, str(Path(__file__).resolve().parent))
from node22 import Node22Error, ensure_node22  # noqa: E402

_START = time.monotonic()


def say(message: str) -> None:
    print(f"[run_tests {time.monotonic() - _START:5.1f}s] {message}", flush=True)


@contextmanager
def step(what: str) -> Iterator[None]:
    """Print ``what``, a line every HEARTBEAT_SECONDS while it runs, then how long it took."""
    say(f"{what} ...")
    started = time.monotonic()
    done = threading.Event()

    def heartbeat() -> None:
        while not done.wait(HEARTBEAT_SECONDS):
            say(f"    still {what[0].lower()}{what[1:]} ({time.monotonic() - started:.0f} s)")

    thread = threading.Thread(target=heartbeat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
    say(f"{what}: done in {time.monotonic() - started:.1f} s")


def venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def ensure_venv() -> Path:
    """Create .venv and install requirements-dev.txt unless it is already current."""
    if sys.version_info < (3, 11):
        sys.exit(f"run_tests: Python 3.11+ is needed, this is {sys.version.split()[0]}")
    wanted = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    if venv_python().exists() and STAMP.exists() and STAMP.read_text() == wanted:
        say(f"Python: {VENV.relative_to(ROOT)} is current with requirements-dev.txt")
        return venv_python()
    if not venv_python().exists():
        with step(f"Python: creating {VENV.relative_to(ROOT)}"):
            try:
                venv.create(VENV, with_pip=True)
            except (OSError, subprocess.CalledProcessError) as error:
                sys.exit(f"run_tests: creating {VENV} failed ({error}); on Debian/Ubuntu "
                         "install python3-venv, then run again")
    with step("Python: installing requirements-dev.txt into .venv (pip)"):
        pip = subprocess.run(
            [venv_python(), "-m", "pip", "install", "-q", "--disable-pip-version-check",
             "-r", REQUIREMENTS],
            check=False,
        )
    if pip.returncode != 0:
        sys.exit(f"run_tests: pip could not install requirements-dev.txt (exit {pip.returncode}; "
                 "its message is above)")
    STAMP.write_text(wanted)
    return venv_python()


def workers() -> int:
    """One pytest worker per CPU, plus one: a good part of the suite waits on the processes
    it starts (npm, wrangler, uvicorn, git), so a CPU would otherwise sit idle."""
    return (os.cpu_count() or 1) + 1


def pytest_args(argv: list[str]) -> list[str]:
    """``argv`` plus the defaults: parallel and verbose unless the caller chose otherwise."""
    args = list(argv)
    chose_workers = any(
        a in ("-n", "--numprocesses") or a.startswith(("-n", "--numprocesses=")) for a in args
    ) or "no:xdist" in args
    if not chose_workers:
        args = ["-n", str(workers()), *args]
    if not any(a in ("-q", "--quiet", "-v", "--verbose") or a.startswith(("-qq", "-vv")) for a in args):
        args = ["-v", *args]
    if not any(a.startswith("--durations") for a in args):
        args.append("--durations=15")
    return args


def ensure_from_apt(program: str, package: str) -> bool:
    """``program`` (a name on PATH, or a path), installed from ``package`` with apt-get when
    missing; False when it cannot be."""
    if shutil.which(program):
        return True
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    for command in (["apt-get", "install", "-y", package], ["apt-get", "update"],
                    ["apt-get", "install", "-y", package]):
        if shutil.which(command[0]) is None:
            break
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run([*sudo, *command], env=env, check=False, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if shutil.which(program):
            return True
    print(f"run_tests: {program} is missing and apt-get could not install it; install it\n"
          f"(Debian/Ubuntu: apt-get install {package}) and run again", file=sys.stderr)
    return False


def main(argv: list[str]) -> int:
    python = ensure_venv()
    try:
        with step("Node: finding or installing Node >= 22.12 (tools/node22.py)"):
            node_bin = ensure_node22(log=say)
    except Node22Error as error:
        print(f"run_tests: {error}", file=sys.stderr)
        return 1
    with step("redis-server: finding or installing it (apt-get)"):
        if not ensure_from_apt("redis-server", "redis-server"):
            return 1
    with step("Chromium: finding or installing /usr/bin/chromium (apt-get)"):
        if not ensure_from_apt("/usr/bin/chromium", "chromium"):
            return 1
    env = {**os.environ, "PATH": os.pathsep.join([str(node_bin), os.environ.get("PATH", "")])}
    env.pop("PYTHONPATH", None)
    command = [str(python), "-m", "pytest", *pytest_args(argv)]
    say(f"running: {' '.join(command[1:])}")
    returncode = subprocess.run(command, cwd=ROOT, env=env, check=False).returncode
    say(f"pytest exited {returncode} after {time.monotonic() - _START:.0f} s in all")
    if returncode < 0:  # killed by a signal: report it the way a shell would
        return 128 - returncode
    return returncode


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)
