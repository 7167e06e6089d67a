#!/usr/bin/env python3
"""Run the template's whole test suite, installing what it needs first.

    python3 tools/run_tests.py [pytest arguments]

1. a virtual environment in .venv with requirements-dev.txt (re-installed when that
   file changes);
2. Node >= 22.12 for wrangler 4: the machine's node if new enough, else the npm
   registry package node-<platform>-<arch>@22 in .cache/node22 (tools/node22.py);
3. pytest, with that Node first on PATH.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv"
REQUIREMENTS = ROOT / "requirements-dev.txt"
STAMP = VENV / ".requirements-sha256"

sys.path.insert(0, str(Path(__file__).resolve().parent))
from node22 import Node22Error, ensure_node22  # noqa: E402


def venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def ensure_venv() -> Path:
    """Create .venv and install requirements-dev.txt unless it is already current."""
    if sys.version_info < (3, 11):
        sys.exit(f"run_tests: Python 3.11+ is needed, this is {sys.version.split()[0]}")
    wanted = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    if venv_python().exists() and STAMP.exists() and STAMP.read_text() == wanted:
        return venv_python()
    if not venv_python().exists():
        print(f"run_tests: creating {VENV}", flush=True)
        venv.create(VENV, with_pip=True)
    print("run_tests: installing requirements-dev.txt", flush=True)
    subprocess.run(
        [venv_python(), "-m", "pip", "install", "-q", "--disable-pip-version-check",
         "-r", REQUIREMENTS],
        check=True,
    )
    STAMP.write_text(wanted)
    return venv_python()


def main(argv: list[str]) -> int:
    python = ensure_venv()
    try:
        node_bin = ensure_node22()
    except Node22Error as error:
        print(f"run_tests: {error}", file=sys.stderr)
        return 1
    env = {**os.environ, "PATH": os.pathsep.join([str(node_bin), os.environ.get("PATH", "")])}
    env.pop("PYTHONPATH", None)
    return subprocess.run([python, "-m", "pytest", *argv], cwd=ROOT, env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
