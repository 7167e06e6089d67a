"""Node 22 and npm for the Worker target's tests: one npm cache, no telemetry, parsed output."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))

from node22 import MINIMUM, node_version, package_name

NODE22_CACHE = REPO / ".cache" / "node22"
HOW_TO_GET_NODE22 = (
    "The Worker target's tests need Node >= {minimum} (wrangler 4 refuses older ones); found {found}.\n"
    "Run the tests with `python3 tools/run_tests.py`, which installs it, or install it once with\n"
    "    npm install --prefix .cache/node22 {package}@22\n"
    "(these tests then use .cache/node22 by themselves), or put your own Node 22 first on PATH:\n"
    '    PATH="$(python3 tools/node22.py):$PATH"'
)


def node22_bin_dir() -> Path:
    """A directory whose ``node`` is >= 22.12: the one on PATH, else .cache/node22. Never installs."""
    found = []
    current = shutil.which("node")
    if current:
        version = node_version(current)
        if version and version >= MINIMUM:
            return Path(current).resolve().parent
        found.append(f"{current} ({'.'.join(map(str, version)) if version else 'not runnable'})")
    cached = NODE22_CACHE / "node_modules" / package_name() / "bin" / "node"
    version = node_version(cached)
    if version and version >= MINIMUM:
        return cached.parent
    found.append(f"{cached} ({'.'.join(map(str, version)) if version else 'missing'})")
    raise RuntimeError(
        HOW_TO_GET_NODE22.format(
            minimum=".".join(map(str, MINIMUM)), found=", ".join(found), package=package_name()
        )
    )


def node_env(bin_dir: Path, npm_cache: Path) -> dict[str, str]:
    """The environment every npm/npx call runs in: Node 22 first on PATH, one shared npm cache."""
    env = {
        k: v
        for k, v in os.environ.items()
        # Nothing from the caller's Cloudflare login may reach wrangler in tests.
        if not k.startswith(("CLOUDFLARE_", "CF_", "WRANGLER_", "npm_"))
    }
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        npm_config_cache=str(npm_cache),
        npm_config_update_notifier="false",
        npm_config_fund="false",
        npm_config_audit="false",
        WRANGLER_SEND_METRICS="false",
        NO_COLOR="1",
        FORCE_COLOR="0",
        CI="true",
    )
    return env


@dataclass
class Result:
    args: list[str]
    returncode: int
    output: str
    seconds: float

    def check(self) -> Result:
        assert self.returncode == 0, (
            f"`{' '.join(self.args)}` exited {self.returncode} after {self.seconds:.1f}s:\n{self.output[-6000:]}"
        )
        return self


def run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 600) -> Result:
    import time

    start = time.monotonic()
    proc = subprocess.run(
        args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        timeout=timeout, stdin=subprocess.DEVNULL, check=False,
    )
    return Result(args, proc.returncode, proc.stdout, time.monotonic() - start)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def plain(text: str) -> str:
    return _ANSI.sub("", text)


def upload_size(output: str) -> tuple[float, float]:
    """``(KiB, gzip KiB)`` from wrangler's ``Total Upload: 1008.22 KiB / gzip: 158.66 KiB``."""
    match = re.search(r"Total Upload: ([\d.]+) KiB / gzip: ([\d.]+) KiB", plain(output))
    assert match, f"no 'Total Upload' line in wrangler's output:\n{output[-3000:]}"
    return float(match.group(1)), float(match.group(2))


def vitest_counts(output: str) -> dict[str, int]:
    """Counts from vitest's ``Tests  24 passed | 1 failed (25)`` line."""
    line = next((ln for ln in plain(output).splitlines() if ln.strip().startswith("Tests ")), None)
    assert line, f"no vitest 'Tests' line:\n{output[-3000:]}"
    return {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|skipped|todo)", line)}
