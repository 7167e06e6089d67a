"""Node 22 and npm for the Worker target's tests: one npm cache, no telemetry, parsed output;
the Worker variants and the session fixtures that render and npm-install them."""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Self

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))

from node22 import MINIMUM, node_version, package_name, toolchain_env
from testkit import FakeGateway, Result, free_port  # noqa: F401 - the shared test kit
from testkit import run as _kit_run

ALL_PROVIDERS = ["anthropic", "google-ai-studio", "workers-ai", "compat"]
ALL_ENVIRONMENTS = ["development", "staging", "production"]
ODD_DESCRIPTION = 'Says "hi" \\ to ünïcode ✓ </script>'

# name -> answers of the variants built for real (npm install, typecheck, vitest, lint, dry-run
# deploy): every auth mode and both caller_auth and wrangler_config choices; an open gateway
# without an answered account; every provider with three environments, in request-headers mode
# (keys on the wire, wrangler.toml, caller_auth=api-key) and byok (no key, wrangler.jsonc,
# caller_auth=none). One code shape each: openai-only request-headers is the
# all-request-headers shape minus providers, and openai-only byok the all-byok shape minus
# providers and environments, so those two are rendered (RENDERED) but not built.
VARIANTS: dict[str, dict] = {
    "unified-billing": {"auth_mode": "unified-billing", "description": ODD_DESCRIPTION},
    "request-headers-open": {"auth_mode": "request-headers", "gateway_authentication": False, "account_id": ""},
    "all-request-headers": {"auth_mode": "request-headers", "providers": ALL_PROVIDERS, "environments": ALL_ENVIRONMENTS},
    "all-byok": {"auth_mode": "byok", "providers": ALL_PROVIDERS, "environments": ALL_ENVIRONMENTS, "account_id": "",
                 "caller_auth": "none", "wrangler_config": "jsonc"},
}
RENDERED: dict[str, dict] = {
    **VARIANTS,
    "request-headers": {"auth_mode": "request-headers"},
    "byok": {"auth_mode": "byok", "caller_auth": "none", "wrangler_config": "jsonc"},
}
# The variant whose code shape (the default answers) the README's quick start renders as
# my-worker: that Worker's ci.yml runs its typecheck, types check, vitest run and dry-run
# deploy (tests/test_quick_start.py, test_worker_quick_start_next_steps_and_ci_as_written),
# with the same assertions as test_worker_target.py's per-variant tests, which run them for the
# other variants (TOOLCHAIN_VARIANTS): each check runs once per code shape. Its lint runs in
# test_worker_target.py for every variant (CI_VARIANT's odd description is in package.json).
CI_VARIANT = "unified-billing"
TOOLCHAIN_VARIANTS = [name for name in VARIANTS if name != CI_VARIANT]


def one_worker_each(names) -> list:
    """``names`` as pytest params, each in its variant's xdist group: every test that uses a
    variant's npm install runs on the one worker that installed it (tests/scheduling.py)."""
    return [pytest.param(name, id=name, marks=pytest.mark.xdist_group(npm_group(name)))
            for name in names]


def npm_group(name: str) -> str:
    """The xdist group of the tests that use the Worker variant ``name``'s npm install."""
    return f"worker:{name}"


# Numbers measured while building the variants, written to .cache/worker-metrics.json.
METRICS: dict[str, dict] = {}

# What `npx wrangler` / `npx vitest` run in a project, without npx's start-up (~0.3 CPU-s a
# call). ci.yml's own steps (run_ci, tests/test_quick_start.py) still go through npx and npm.
WRANGLER = "node_modules/.bin/wrangler"
VITEST = "node_modules/.bin/vitest"

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
    caller = {
        k: v
        for k, v in os.environ.items()
        # Nothing from the caller's Cloudflare login may reach wrangler in tests.
        if not k.startswith(("CLOUDFLARE_", "CF_", "WRANGLER_", "npm_"))
    }
    return toolchain_env(bin_dir, npm_cache, caller)


def run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 600) -> Result:
    """tools/testkit.run with stderr merged into stdout, in the order npm and wrangler wrote them."""
    return _kit_run(args, cwd, env, timeout, merge=True)


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


# What a variant's toolchain steps must show, whether test_worker_target.py runs them
# (TOOLCHAIN_VARIANTS) or a rendered ci.yml does (the quick start's Worker, CI_VARIANT's code
# shape: tests/test_quick_start.py). ``name``: a VARIANTS entry, or another Worker's name
# (then one with the default answers).


def check_lint(output: str) -> None:
    """`biome check .` (`npm run lint`) found nothing to fix."""
    assert "No fixes applied" in plain(output), output


def check_vitest(name: str, output: str, seconds: float) -> None:
    """`npm test`: the rendered suite passed in workerd, all of it, none skipped, and wrangler
    warned of no missing secret (the tests bring their own)."""
    assert "Missing required secrets" not in output and "Using secrets" not in output, output
    counts = vitest_counts(output)
    minimum = 35 if "providers" in VARIANTS.get(name, {}) else 25
    assert counts.get("passed", 0) >= minimum and not counts.get("failed") and not counts.get("skipped"), counts
    METRICS.setdefault(name, {})["npm test s"] = round(seconds, 1)
    METRICS[name]["vitest tests"] = counts["passed"]


def check_dry_run(name: str, project: Path, output: str, gateway: str = "demo-gw") -> None:
    """`wrangler deploy --dry-run --outdir dist` at the config's top level: bundled, the
    production gateway, the multi-environment warning exactly when there are environments."""
    out = plain(output)
    assert "--dry-run: exiting now." in out
    assert (project / "dist/index.js").stat().st_size > 0
    assert f'env.AI_GATEWAY_ID ("{gateway}")' in out
    assert ("Multiple environments" in out) is (len(VARIANTS.get(name, {}).get("environments", [])) > 1)
    kib, gzip_kib = upload_size(out)
    METRICS.setdefault(name, {})["bundle KiB"], METRICS[name]["gzip KiB"] = kib, gzip_kib
    assert gzip_kib < 1024  # far below the 3 MiB (free plan) Worker size limit


def copy_project(source: Path, target: Path, modules: Path) -> Path:
    """The project's files, with ``modules`` as its node_modules (linked, not installed again)."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("node_modules", ".wrangler", "dist", ".dev.vars"))
    (target / "node_modules").symlink_to(modules, target_is_directory=True)
    return target


class WranglerDev:
    """`wrangler dev --local` in its own process group, stopped (that group only) on exit."""

    def __init__(self, cwd: Path, env: dict[str, str], extra: list[str], log: Path):
        self.port = free_port()
        self.args = [WRANGLER, "dev", "--local", "--ip", "127.0.0.1", "--port", str(self.port),
                     "--inspector-port", str(free_port()), *extra]
        self.cwd, self.env, self.log = cwd, env, log

    def __enter__(self) -> Self:
        import time
        import urllib.request

        self.log_file = self.log.open("w")
        self.proc = subprocess.Popen(
            self.args, cwd=self.cwd, env=self.env, stdout=self.log_file, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as res:
                    if res.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        self.__exit__()
        raise AssertionError(f"wrangler dev did not come up:\n{self.log.read_text()[-3000:]}")

    def post(self, path: str, body: dict, headers: dict[str, str] | None = None) -> tuple[int, dict]:
        import json

        status, _, data = self.request(
            "POST", path, json.dumps(body).encode(), {"content-type": "application/json", **(headers or {})}
        )
        return status, json.loads(data)

    def request(self, method: str, path: str, data: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        """``(status, lower-cased headers, body)`` of one request to the Worker, errors included."""
        import urllib.error
        import urllib.request

        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", data=data, headers=headers or {}, method=method
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as res:
                return res.status, {k.lower(): v for k, v in res.headers.items()}, res.read()
        except urllib.error.HTTPError as err:
            return err.code, {k.lower(): v for k, v in err.headers.items()}, err.read()

    def __exit__(self, *exc):
        import signal

        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)
        self.log_file.close()


# ---------------------------------------------------------------------------------------------
# Fixtures: each answer set rendered once per session; each variant npm-installed once.
# tests/conftest.py imports them, so every test module shares one instance of each (one
# npm install per variant per run, wherever the variant is used).


@pytest.fixture(scope="session")
def rendered(tmp_path_factory):
    """``rendered(name)`` for a VARIANTS entry, or ``rendered(name, **answers)``: a Worker render."""
    from conftest import render

    cache: dict[str, Path] = {}

    def get(name: str, **answers) -> Path:
        if name not in cache:
            data = {"language": "typescript-worker", **RENDERED.get(name, {}), **answers}
            cache[name] = render(tmp_path_factory.mktemp("worker") / name, **data)
        return cache[name]

    return get


@pytest.fixture(scope="session")
def npm_env() -> dict[str, str]:
    try:
        bin_dir = node22_bin_dir()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    # A persistent cache makes reruns offline-fast; CI's fresh clone fills it once.
    cache = REPO / ".cache" / "npm"
    cache.mkdir(parents=True, exist_ok=True)
    return node_env(bin_dir, cache)


class Project:
    def __init__(self, name: str, path: Path, env: dict[str, str]):
        self.name, self.path, self.env = name, path, env
        self.install: Result | None = None  # what its `npm install` printed

    def run(self, *args: str, timeout: float = 600) -> Result:
        return run(list(args), self.path, self.env, timeout)


def dependencies(project: Path) -> set[tuple[str, str]]:
    """``(name, range)`` of every dependency and devDependency in the project's package.json."""
    package = json.loads((project / "package.json").read_text())
    return {*package.get("dependencies", {}).items(), *package.get("devDependencies", {}).items()}


class NpmSeeds:
    """The node_modules installed so far in this run, by any pytest-xdist worker: a later
    install seeds its project's node_modules with hard links to the one with the most
    dependencies in common (a fraction of a second), and `npm install` then adds, removes or
    keeps packages to match its own package.json (seconds, not a full install).

    Each is published as a hard-linked snapshot (``<root>/<variant>/node_modules``), so a
    project that later replaces its own (ci.yml's `npm ci`) leaves the seed whole. Installs
    take ``<root>/.lock`` to choose their seed: with nothing to seed from, an install is a
    full one and holds the lock until it is published, so that the workers starting Worker
    variants at the same moment make one full install between them, not one each.
    """

    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """The run-wide lock on choosing a seed (and on a full install, until published)."""
        with (self.root / ".lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)  # released on close, or if this process dies
            yield

    def best(self, wanted: set[tuple[str, str]]) -> Path | None:
        """The published node_modules with the most of ``wanted`` in common, if any."""
        seeds = [d for d in self.root.iterdir() if d.is_dir() and not d.name.startswith(".")]
        if not seeds:
            return None
        return max(seeds, key=lambda d: len(wanted & dependencies(d))) / "node_modules"

    def publish(self, name: str, project: Path) -> None:
        if (self.root / name).exists():
            return
        staging = self.root / f".{name}-{os.getpid()}"
        shutil.copytree(project / "node_modules", staging / "node_modules", symlinks=True, copy_function=os.link)
        shutil.copy2(project / "package.json", staging / "package.json")
        staging.rename(self.root / name)


@pytest.fixture(scope="session")
def npm_seeds(tmp_path_factory) -> NpmSeeds:
    """The run's NpmSeeds: beside the xdist workers' own temporary folders (all of this run's
    workers share it), or in this process's when it runs alone."""
    base = tmp_path_factory.getbasetemp()
    return NpmSeeds((base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "npm-seeds")


@pytest.fixture(scope="session")
def worker_project(rendered, npm_env, npm_seeds):
    """``worker_project(name)``: the variant rendered and ``npm install``-ed (once per session),
    from a seed of the run's earlier installs when there is one (NpmSeeds)."""
    projects: dict[str, Project] = {}

    def install(project: Project) -> Result:
        result = project.run("npm", "install", "--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error")
        return result.check()

    def get(name: str) -> Project:
        if name not in projects:
            project = Project(name, rendered(name), npm_env)
            with npm_seeds.lock():
                seed = npm_seeds.best(dependencies(project.path))
                if seed is None:  # the run's first install: a full one, then the others' seed
                    project.install = install(project)
                    npm_seeds.publish(name, project.path)
                else:
                    shutil.copytree(seed, project.path / "node_modules", symlinks=True, copy_function=os.link)
            if project.install is None:
                project.install = install(project)
                with npm_seeds.lock():
                    npm_seeds.publish(name, project.path)
            METRICS.setdefault(name, {})["npm install s"] = round(project.install.seconds, 1)
            projects[name] = project
        return projects[name]

    yield get
    if METRICS:
        (REPO / ".cache").mkdir(exist_ok=True)
        path = REPO / ".cache" / "worker-metrics.json"
        try:  # parallel test workers each hold some variants: merge, do not overwrite
            merged = json.loads(path.read_text())
        except (OSError, ValueError):
            merged = {}
        path.write_text(json.dumps({**merged, **METRICS}, indent=2) + "\n")
        print("\nWorker target metrics:", json.dumps(METRICS, indent=2))
