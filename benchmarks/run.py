#!/usr/bin/env python3
"""What ai-gateway-starter costs its users, measured side by side in one run.

    .venv/bin/python benchmarks/run.py            # full run (~12 min on 2 cores)
    .venv/bin/python benchmarks/run.py --quick    # every measurement, fewest repetitions (CI)
    .venv/bin/python benchmarks/run.py --only copy,update --reps 5 --json out.json
    .venv/bin/python benchmarks/profile_copy.py   # where copier copy spends its time, by phase

Measurements (each comparison interleaved A B A B ... in the same run; ratios are taken per
pair, then their median and spread are reported, so a noisy machine shifts both sides alike):

1. copy    `copier copy --trust --defaults --vcs-ref HEAD` of each target vs a one-file
           Copier template (benchmarks/fixtures/one_file_template), same Copier, both from a
           clean local git repo.
2. update  `copier update --trust --defaults --vcs-ref v2` of a project rendered from v1, across
           one template change (one line appended to the README template), same comparison.
3. worker  the rendered Worker vs the same Worker with a plain-fetch client
           (benchmarks/fixtures/plain_fetch_worker): bundle size from
           `wrangler deploy --dry-run --outdir dist` (also with --minify, one build when
           wrangler.toml minifies already; and the openai SDK's share of it from esbuild's
           metafile), start-up CPU in workerd (`wrangler check startup` of
           the bundle that dry run wrote with --outfile), and `wrangler dev --local` start until
           the first POST /chat is answered through a loopback gateway. Installed: openai and
           wrangler only (worker_runtime_only: no test, type or lint tools, no scripts).
4. python  `python -m <package> chat "hi"` (time to first byte, and to exit) against the
           loopback gateway vs the same call with bare httpx (benchmarks/fixtures/
           bare_httpx_chat.py); import time of `<package>.client` and `<package>.cli` vs httpx.
5. sync    requests `scripts/ai_gateway.py sync` makes against the loopback v4 API fake
           (tests/fake_cloudflare_api.py): first run, repeated run, after drift; 1 and 3
           environments.
6. green   time to green: wall seconds from the start of the copy to the end of the tests,
           every step exiting 0. python-app: copier copy + `uv sync` + `uv run pytest -q`
           (uv cache .cache/uv); typescript-worker: copier copy + `npm install --prefer-offline`
           + `npm test`; yardstick: `npm create cloudflare@latest` (hello-world, TypeScript; it
           runs its own npm install, also --prefer-offline) + `npm test`. npm cache .cache/npm. Warm caches: this
           measures the machine's second project, not a cold first download. Not in --quick
           (and so not in the template's test suite): a full run or `--only green`.

The template measured is this working tree (tracked and untracked, not ignored, files), copied
into a fresh git repository, so uncommitted work is measured and the copy is never "dirty".
Every template repository measured (ours, trimmed, one-file) has its objects in one pack, as a
user's clone has: Copier clones a local template by hard-linking each object file, so loose
objects (a checkout being worked on) would cost each copy and update several times more.
Results: a table on stdout (Markdown) and JSON in benchmarks/results/ (or --json PATH).
Nothing leaves the machine: every server is on 127.0.0.1, npm installs --prefer-offline.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
# The test kit shared with tests/ (run, free_port, FakeGateway).
import testkit
from testkit import Result, free_port, load_module

BENCH = ROOT / "benchmarks"
FIXTURES = BENCH / "fixtures"
RESULTS = BENCH / "results"
ACCOUNT_ID = "0123456789abcdef0123456789abcdef"
PROJECT = "bench-svc"
PACKAGE = "bench_svc"
GATEWAY_ID = "bench-gw"
COMMON_DATA = {"project_name": PROJECT, "account_id": ACCOUNT_ID, "gateway_id": GATEWAY_ID}
TARGETS = ("python-app", "typescript-worker")
DEFAULT_ENVIRONMENTS = ["production"]  # copier.yml's default for `environments`
TRIMMED = "python-app, trimmed repo"
RENDER_INPUTS = ("template/", "hooks/", "includes/")  # with copier.yml: all that copy and update read
SECTIONS = ("copy", "update", "worker", "python", "sync", "green")
QUICK_SECTIONS = ("copy", "update", "worker", "python", "sync")  # not green: minutes of installs
CHANGE_LINE = "\nChanged in v2 (benchmark template change).\n"

# (quick, full) repetitions per measurement, and warm-up rounds (run first, not recorded).
# Quick mode (tests/test_benchmarks.py) checks that every measurement runs: one of each.
REPS = {
    "copy": (1, 20),
    "update": (1, 12),
    "worker_startup": (1, 15),
    "wrangler_dev": (1, 8),
    "python_chat": (1, 20),
    "python_import": (1, 20),
    "green": (1, 2),
}
WARMUP = {
    "copy": (0, 1),
    "update": (0, 1),
    "worker_startup": (0, 1),
    "wrangler_dev": (0, 1),
    "python_chat": (0, 1),
    "python_import": (0, 1),
    "green": (0, 0),
}

GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "benchmarks",
    "GIT_AUTHOR_EMAIL": "benchmarks@ai-gateway-starter.invalid",
    "GIT_COMMITTER_NAME": "benchmarks",
    "GIT_COMMITTER_EMAIL": "benchmarks@ai-gateway-starter.invalid",
}
for _k, _v in GIT_IDENTITY.items():
    os.environ.setdefault(_k, _v)


_T0 = time.perf_counter()


def cpu_so_far() -> float:
    """CPU seconds (user + system) of this process and every child it has reaped so far."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def log(message: str) -> None:
    """A progress line on stderr, stamped with the wall and CPU seconds since the run started:
    the difference between two lines is what the step between them cost."""
    print(f"[bench {time.strftime('%H:%M:%S')} +{time.perf_counter() - _T0:5.1f}s "
          f"cpu {cpu_so_far():5.1f}s] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Statistics


def summary(values: list[float]) -> dict:
    """median, min, max, quartiles (the quartiles only from 4 values up) and the samples."""
    values = list(values)
    out = {
        "n": len(values),
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "samples": [round(v, 4) for v in values],
    }
    if len(values) >= 4:
        q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
        out["q1"], out["q3"] = q1, q3
    return out


def ratios(a: list[float], b: list[float]) -> dict:
    """Summary of a[i] / b[i]: each pair was measured back to back."""
    return summary([x / y for x, y in zip(a, b, strict=True)])


def differences(a: list[float], b: list[float]) -> dict:
    """Summary of a[i] - b[i] (for values that can be 0, where a ratio means nothing)."""
    return summary([x - y for x, y in zip(a, b, strict=True)])


def interleaved(variants: list, rounds: int, warmup: int, measure) -> dict[str, list]:
    """Run ``measure(variant, round)`` for every variant in every round, A B C then C B A, ...

    Returns ``{name: [sample per recorded round]}``; warm-up rounds are run, not recorded.
    """
    samples: dict[str, list] = {name: [] for name, *_ in variants}
    for r in range(warmup + rounds):
        order = variants if r % 2 == 0 else variants[::-1]
        for variant in order:
            value = measure(variant, r)
            if r >= warmup:
                samples[variant[0]].append(value)
    return samples


# ---------------------------------------------------------------------------------------------
# Processes


class BenchError(RuntimeError):
    pass


def run(cmd: list, cwd: Path | None = None, env: dict | None = None, timeout: float = 600,
        check: bool = True) -> Result:
    """testkit.run, failing the benchmark on a non-zero exit unless ``check`` is false."""
    result = testkit.run(cmd, cwd=cwd, env=env, timeout=timeout)
    if check and result.returncode != 0:
        raise BenchError(f"`{' '.join(result.args)}` exited {result.returncode}:\n{result.output[-4000:]}")
    return result


def git(*args: str, cwd: Path) -> str:
    return run(["git", *args], cwd=cwd).stdout.strip()


def copier_python() -> str:
    """A Python that can ``-m copier``: this one, else the repository's .venv."""
    if importlib.util.find_spec("copier"):
        return sys.executable
    venv = ROOT / ".venv" / "bin" / "python"
    if venv.exists():
        return str(venv)
    raise BenchError("copier is not importable: run with .venv/bin/python (tools/run_tests.py makes it)")


def copier_version() -> str:
    """The version of the Copier that copier_python runs (from its metadata when it is ours)."""
    python = copier_python()
    if python == sys.executable:
        from importlib.metadata import version

        return version("copier")
    return run([python, "-m", "copier", "--version"]).stdout.strip().split()[-1]


def clean_env(**extra: str) -> dict:
    """The caller's environment without anything Cloudflare- or app-related, plus ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CLOUDFLARE_", "CF_", "AI_GATEWAY_", "OPENAI_", "APP_ENV",
                                "WRANGLER_", "npm_"))}
    env.update(extra)
    return env


# ---------------------------------------------------------------------------------------------
# Templates


def pack(repo: Path) -> None:
    """Every object of ``repo`` in one pack, as in a clone from a server (GitHub, or a
    `git clone` of one). Copier's own clone of a local template hard-links each object file:
    with loose objects (a repository being worked on, or one just committed to) that costs
    several times what a user's one-pack clone does, and would be charged to the template."""
    git("repack", "-a", "-d", "-q", cwd=repo)


def make_repo(files_from: Path, dst: Path, names: list[str] | None = None) -> Path:
    """A fresh git repo at ``dst`` holding ``names`` (default: every file) from ``files_from``,
    committed, tagged v1 and packed (see pack)."""
    if names is None:
        names = [p.relative_to(files_from).as_posix() for p in files_from.rglob("*") if p.is_file()]
    if files_from.resolve() == dst.resolve():
        names = []  # the files are already there: just make the repository
    for name in names:
        src = files_from / name
        if src.is_file() and not src.is_symlink():
            target = dst / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
        elif src.is_symlink():
            target = dst / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(os.readlink(src))
    git("init", "-q", "-b", "main", cwd=dst)
    git("add", "-A", cwd=dst)
    git("commit", "-q", "--no-gpg-sign", "-m", "v1", cwd=dst)
    git("tag", "v1", cwd=dst)
    pack(dst)
    return dst


def snapshot_template(dst: Path) -> Path:
    """This working tree as a clean git repo: HEAD cloned, uncommitted changes committed on top.

    Everything a user's clone holds is there (tracked files), plus untracked, not ignored files
    and uncommitted edits, so work in progress is measured too and the source is never dirty.
    Packed like a user's clone: `git clone --no-local` (a local clone would hard-link every
    loose object of this checkout), then the commit on top packed in too (see pack).
    """
    run(["git", "clone", "-q", "--no-local", "--no-tags", str(ROOT), str(dst)])
    changed = run(["git", "diff", "-z", "--name-only", "HEAD"], cwd=ROOT).stdout.split("\0")
    untracked = run(["git", "ls-files", "-z", "-o", "--exclude-standard"], cwd=ROOT).stdout.split("\0")
    for name in sorted({n for n in changed + untracked if n}):
        src, target = ROOT / name, dst / name
        if target.is_file() or target.is_symlink():
            target.unlink()
        if src.is_symlink() or src.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            if src.is_symlink():
                target.symlink_to(os.readlink(src))
            else:
                shutil.copy2(src, target)
    git("add", "-A", cwd=dst)
    if git("status", "--porcelain", cwd=dst):
        git("commit", "-q", "--no-gpg-sign", "-m", "uncommitted changes of the working tree", cwd=dst)
    git("tag", "v1", cwd=dst)
    pack(dst)
    return dst


def release_v2(repo: Path, changed_file: str) -> None:
    """One template change, committed, tagged v2 and packed (as a fresh clone of it would be)."""
    path = repo / changed_file
    path.write_text(path.read_text() + CHANGE_LINE)
    git("commit", "-q", "--no-gpg-sign", "-am", "v2: one change", cwd=repo)
    git("tag", "v2", cwd=repo)
    pack(repo)


class Templates:
    def __init__(self, work: Path):
        self.ours = snapshot_template(work / "template-ours")
        self.baseline = make_repo(FIXTURES / "one_file_template", work / "template-one-file")
        tracked = run(["git", "ls-files"], cwd=self.ours).stdout.splitlines()
        self.file_count = len(tracked)
        # Our template with its repository trimmed to what rendering reads: what the rest of
        # the repository (tests, tools, anything else tracked) costs every copy and update.
        self.trimmed = make_repo(self.ours, work / "template-trimmed",
                                 [n for n in tracked if n == "copier.yml" or n.startswith(RENDER_INPUTS)])
        self.trimmed_file_count = len(run(["git", "ls-files"], cwd=self.trimmed).stdout.splitlines())
        self.work = work
        self._v1_renders: dict[tuple[str, str], Path] = {}

    @staticmethod
    def _key(src: Path, data: dict) -> tuple[str, str]:
        return str(src), json.dumps(data, sort_keys=True)

    def keep_v1_render(self, src: Path, data: dict, rendered: Path) -> None:
        """Keep ``rendered`` (a `copier copy` of ``src`` with ``data``) for render_v1, if it
        was rendered from v1: the copy benchmark renders HEAD, which is v1 until bench_update
        releases v2. A measured copy is then also every later section's project, not a second
        render of the same thing."""
        key = self._key(src, data)
        if key in self._v1_renders or git("rev-parse", "HEAD", cwd=src) != git("rev-parse", "v1", cwd=src):
            shutil.rmtree(rendered)
            return
        kept = self.work / f"v1-render-{len(self._v1_renders)}"
        rendered.rename(kept)
        self._v1_renders[key] = kept

    def render_v1(self, src: Path, data: dict, dst: Path) -> Path:
        """``copier copy --vcs-ref v1`` of ``src`` with ``data`` into ``dst``: a copy of the
        render kept by keep_v1_render when there is one (the same files), else a new render."""
        kept = self._v1_renders.get(self._key(src, data))
        if kept is None:
            copier_copy(src, dst, data, ref="v1")
        else:
            shutil.copytree(kept, dst, symlinks=True)
        return dst

    def variants(self) -> list[tuple[str, Path, dict]]:
        return [
            ("one-file", self.baseline, {"project_name": PROJECT}),
            ("python-app", self.ours, {**COMMON_DATA, "language": "python-app"}),
            ("typescript-worker", self.ours, {**COMMON_DATA, "language": "typescript-worker"}),
            (TRIMMED, self.trimmed, {**COMMON_DATA, "language": "python-app"}),
        ]


def copier_cmd(*args: str, data: dict) -> list[str]:
    cmd = [copier_python(), "-m", "copier", *args, "--trust", "--defaults"]
    for key, value in data.items():
        cmd += ["--data", f"{key}={value}"]
    return cmd


def copier_copy(src: Path, dst: Path, data: dict, ref: str = "HEAD") -> Result:
    return run(copier_cmd("copy", "--vcs-ref", ref, data=data) + [str(src), str(dst)])


def wall_and_cpu(samples: dict[str, list[Result]]) -> dict:
    """Per variant: wall seconds and CPU seconds summaries; ratios to the one-file template."""
    wall = {name: [r.seconds for r in values] for name, values in samples.items()}
    cpu = {name: [r.cpu_seconds for r in values] for name, values in samples.items()}
    result = {name: {"seconds": summary(wall[name]), "cpu_seconds": summary(cpu[name])}
              for name in samples}
    for target in (*TARGETS, TRIMMED):
        result[target]["ratio_vs_one_file"] = ratios(wall[target], wall["one-file"])
        result[target]["cpu_ratio_vs_one_file"] = ratios(cpu[target], cpu["one-file"])
    result["python-app"]["ratio_vs_trimmed_repo"] = ratios(wall["python-app"], wall[TRIMMED])
    return result


# ---------------------------------------------------------------------------------------------
# 1. copier copy


def bench_copy(templates: Templates, work: Path, reps: int, warmup: int) -> dict:
    def measure(variant, r):
        name, src, data = variant
        dst = work / f"copy-{name}-{r}"
        result = copier_copy(src, dst, data)
        files = sum(1 for p in dst.rglob("*") if p.is_file())
        rendered_files[name] = files
        templates.keep_v1_render(src, data, dst)
        return result

    rendered_files: dict[str, int] = {}
    samples = interleaved(templates.variants(), reps, warmup, measure)
    result = wall_and_cpu(samples)
    for name in samples:
        result[name]["files_rendered"] = rendered_files[name]
    result["files_in_template_repo"] = templates.file_count
    result["files_in_trimmed_repo"] = templates.trimmed_file_count
    return result


# ---------------------------------------------------------------------------------------------
# 2. copier update


def bench_update(templates: Templates, work: Path, reps: int, warmup: int) -> dict:
    variants = templates.variants()
    projects = {}
    for name, src, data in variants:
        project = templates.render_v1(src, data, work / f"update-base-{name}")
        git("init", "-q", "-b", "main", cwd=project)
        git("add", "-A", cwd=project)
        git("commit", "-q", "--no-gpg-sign", "-m", "rendered from v1", cwd=project)
        projects[name] = project
    log("update: projects rendered from v1; releasing v2")
    release_v2(templates.baseline, "README.md.jinja")
    release_v2(templates.ours, "template/_shared/readme-updating.md.jinja")
    release_v2(templates.trimmed, "template/_shared/readme-updating.md.jinja")

    def measure(variant, r):
        name, _src, _data = variant
        dst = work / f"update-{name}-{r}"
        shutil.copytree(projects[name], dst, symlinks=True)
        result = run(copier_cmd("update", "--vcs-ref", "v2", data={}) + [str(dst)], cwd=dst)
        if "Changed in v2" not in (dst / "README.md").read_text():
            raise BenchError(f"copier update of {name} did not bring the v2 change")
        shutil.rmtree(dst)
        return result

    return wall_and_cpu(interleaved(variants, reps, warmup, measure))


# ---------------------------------------------------------------------------------------------
# Loopback gateway (tools/testkit.py's, the one the template's tests use)


def fake_gateway():
    """The loopback gateway of tools/testkit.py: every chat is answered "Hello there"."""
    return testkit.FakeGateway()


# ---------------------------------------------------------------------------------------------
# 3. Worker: bundle and start-up, SDK vs plain fetch


def node_env(npm_cache: Path) -> dict:
    sys.path.insert(0, str(ROOT / "tools"))
    from node22 import ensure_node22, toolchain_env

    return toolchain_env(ensure_node22(), npm_cache, clean_env())


def config_minifies(project: Path) -> bool:
    """Whether the Worker's wrangler.toml says ``minify = true`` (False when it has none:
    a wrangler.jsonc is not read here, so its bundle is then also built with --minify)."""
    config = project / "wrangler.toml"
    return config.is_file() and tomllib.loads(config.read_text()).get("minify") is True


STARTUP_BUNDLE = "worker.bundle"
_UPLOAD = re.compile(r"Total Upload: ([\d.]+) KiB / gzip: ([\d.]+) KiB")


def dry_run_bundle(project: Path, env: dict, outdir: str, minify: bool = False,
                   outfile: str | None = None) -> dict:
    """`wrangler deploy --dry-run --outdir OUTDIR`: upload size, and bytes per package from
    esbuild's metafile. ``outfile``: the same build also writes the upload bundle (the form
    data `wrangler check startup --worker` reads; it refuses a bare dist/index.js)."""
    cmd = [project / "node_modules" / ".bin" / "wrangler", "deploy", "--dry-run",
           "--outdir", outdir, "--metafile", f"{outdir}/meta.json"]
    if minify:
        cmd.append("--minify")
    if outfile:
        cmd += ["--outfile", outfile]
    proc = run(cmd, cwd=project, env=env)
    seconds = proc.seconds
    match = _UPLOAD.search(re.sub(r"\x1b\[[0-9;]*m", "", proc.output))
    if not match:
        raise BenchError(f"no 'Total Upload' line from wrangler:\n{proc.stdout[-3000:]}")
    meta = json.loads((project / outdir / "meta.json").read_text())
    by_package: dict[str, int] = {}
    for output in meta["outputs"].values():
        for path, info in output.get("inputs", {}).items():
            match_pkg = re.search(r"node_modules/((?:@[^/]+/)?[^/]+)/", path)
            key = match_pkg.group(1) if match_pkg else ("src/" if "src/" in path else "other")
            by_package[key] = by_package.get(key, 0) + info["bytesInOutput"]
    top = dict(sorted(by_package.items(), key=lambda kv: -kv[1])[:6])
    return {
        "kib": float(match.group(1)),
        "gzip_kib": float(match.group(2)),
        "build_seconds": round(seconds, 2),
        "bytes_by_package": top,
    }


_ACTIVE = re.compile(r"Active: ([\d.]+) ms")
_WINDOW = re.compile(r"Profile window: ([\d.]+) ms")


def startup_profile(project: Path, env: dict, bundle: str) -> dict:
    """`wrangler check startup` on a prebuilt bundle: the Worker's start-up CPU time in workerd."""
    proc = run([project / "node_modules" / ".bin" / "wrangler", "check", "startup",
                "--worker", bundle, "--outfile", "startup.cpuprofile"], cwd=project, env=env)
    text = re.sub(r"\x1b\[[0-9;]*m", "", proc.output)
    active, window = _ACTIVE.search(text), _WINDOW.search(text)
    if not (active and window):
        raise BenchError(f"no start-up profile from `wrangler check startup`:\n{text[-3000:]}")
    return {"active_ms": float(active.group(1)), "window_ms": float(window.group(1))}


def wrangler_dev_first_chat(project: Path, env: dict, gateway_url: str, timeout: float = 90) -> dict:
    """Seconds from spawning `wrangler dev --local` to ``Ready`` and to the first /chat answer."""
    port = free_port()
    cmd = [str(project / "node_modules" / ".bin" / "wrangler"), "dev", "--local",
           "--ip", "127.0.0.1", "--port", str(port), "--inspector-port", str(free_port()),
           "--var", f"AI_GATEWAY_BASE_URL:{gateway_url}", "--log-level", "info"]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=project, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
                            start_new_session=True)
    ready: list[float] = []
    output: list[str] = []

    def reader():
        for line in proc.stdout:
            output.append(line)
            if not ready and "Ready on" in line:
                ready.append(time.perf_counter() - start)

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    body = json.dumps({"prompt": "hi"}).encode()
    answered = None
    try:
        while time.perf_counter() - start < timeout:
            if proc.poll() is not None:
                break
            request = urllib.request.Request(f"http://127.0.0.1:{port}/chat", data=body,
                                             headers={"content-type": "application/json",
                                                      "authorization": "Bearer bench-service-key"})
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    payload = json.loads(response.read())
                if payload.get("reply"):
                    answered = time.perf_counter() - start
                    break
            except (urllib.error.URLError, ConnectionError, OSError, ValueError):
                time.sleep(0.05)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # our own process group: wrangler + workerd
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        thread.join(timeout=5)
    if answered is None:
        raise BenchError(f"wrangler dev answered no /chat within {timeout}s:\n{''.join(output)[-3000:]}")
    return {"ready": ready[0] if ready else answered, "first_chat": answered}


# The devDependencies the bundle, start-up and dev measurements run: wrangler, and smol-toml for
# its build command (scripts/callers.mjs compiles callers.toml).
WORKER_TOOLS = ("wrangler", "smol-toml")


def worker_runtime_only(project: Path) -> list[str]:
    """Drop the rendered Worker's devDependencies but wrangler from its package.json; return
    what is left to install. The bundle holds src/ and the dependencies (openai) only; tests,
    types and lint (vitest and its Workers plugin, workers-types, TypeScript, Biome) are not
    what `wrangler deploy --dry-run`, `check startup` or `dev` run, and the same wrangler,
    miniflare and workerd versions resolve without them: an install of less than half the
    size (the full install is what `green` times). Its scripts are skipped too (`prepare`
    writes worker-configuration.d.ts for the type checker)."""
    path = project / "package.json"
    package = json.loads(path.read_text())
    dev = package.get("devDependencies", {})
    missing = [name for name in WORKER_TOOLS if name not in dev]
    if missing:
        raise BenchError(f"the rendered Worker's devDependencies have no {', '.join(missing)}: {sorted(dev)}")
    package["devDependencies"] = {name: dev[name] for name in WORKER_TOOLS}
    path.write_text(json.dumps(package, indent=2) + "\n")
    return [*package.get("dependencies", {}), *WORKER_TOOLS]


def make_plain_fetch_worker(sdk_project: Path, dst: Path) -> Path:
    shutil.copytree(sdk_project, dst, symlinks=True,
                    ignore=shutil.ignore_patterns("node_modules", "dist*", ".wrangler"))
    (dst / "node_modules").symlink_to(sdk_project / "node_modules", target_is_directory=True)
    for src in (FIXTURES / "plain_fetch_worker" / "src").iterdir():
        shutil.copy2(src, dst / "src" / src.name)
    package = json.loads((dst / "package.json").read_text())
    package["name"] += "-plain-fetch"
    package.get("dependencies", {}).pop("openai", None)
    (dst / "package.json").write_text(json.dumps(package, indent=2) + "\n")
    return dst


def bench_worker(templates: Templates, work: Path, reps: dict, warmup: dict,
                 npm_seed: Path | None = None) -> dict:
    npm_cache = ROOT / ".cache" / "npm"  # shared with the Worker tests: reruns stay offline
    npm_cache.mkdir(parents=True, exist_ok=True)
    env = node_env(npm_cache)
    sdk = work / "worker-sdk"
    templates.render_v1(templates.ours, {**COMMON_DATA, "language": "typescript-worker"}, sdk)
    installed = worker_runtime_only(sdk)
    if npm_seed:  # --npm-seed: start from hard links to that node_modules (see main)
        shutil.copytree(npm_seed, sdk / "node_modules", symlinks=True, copy_function=os.link)
    log(f"worker: npm install --ignore-scripts (--prefer-offline) of {', '.join(installed)}"
        f"{f', seeded from {npm_seed}' if npm_seed else ''}")
    install_s = run(["npm", "install", "--prefer-offline", "--ignore-scripts", "--no-audit", "--no-fund",
                     "--loglevel=error"], cwd=sdk, env=env, timeout=900).seconds
    plain = make_plain_fetch_worker(sdk, work / "worker-plain-fetch")
    versions = {
        "node": run(["node", "--version"], env=env).stdout.strip(),
        "wrangler": json.loads((sdk / "node_modules/wrangler/package.json").read_text())["version"],
        "openai": json.loads((sdk / "node_modules/openai/package.json").read_text())["version"],
    }
    for project in (sdk, plain):
        (project / ".dev.vars").write_text("CF_AIG_TOKEN=bench-gateway-token\nSERVICE_API_KEY=bench-service-key\n")

    log("worker: wrangler deploy --dry-run (bundle sizes)")
    bundles = {}
    for name, project in (("sdk", sdk), ("plain-fetch", plain)):
        bundles[name] = dry_run_bundle(project, env, "dist", outfile=STARTUP_BUNDLE)
        bundles[name]["config_minifies"] = config_minifies(project)
        # With `minify = true` in the config, `--minify` is the same build: not made twice.
        minified = bundles[name] if bundles[name]["config_minifies"] else \
            dry_run_bundle(project, env, "dist-min", True)
        bundles[name]["minified"] = {k: v for k, v in minified.items()
                                     if k in ("kib", "gzip_kib", "bytes_by_package")}
    bundle_ratio = {
        "kib": bundles["sdk"]["kib"] / bundles["plain-fetch"]["kib"],
        "gzip_kib": bundles["sdk"]["gzip_kib"] / bundles["plain-fetch"]["gzip_kib"],
    }

    log("worker: wrangler check startup (start-up CPU in workerd)")
    variants = [("sdk", sdk), ("plain-fetch", plain)]  # bundles: the first dry run's --outfile
    profiles = interleaved(variants, reps["worker_startup"], warmup["worker_startup"],
                           lambda variant, _r: startup_profile(variant[1], env, STARTUP_BUNDLE))
    startup = {name: {key: summary([v[key] for v in values]) for key in ("active_ms", "window_ms")}
               for name, values in profiles.items()}
    # A sampled profile: the plain-fetch Worker's active time can be 0 ms, so differences.
    for key in ("active_ms", "window_ms"):
        startup[f"difference_{key}"] = differences([v[key] for v in profiles["sdk"]],
                                                   [v[key] for v in profiles["plain-fetch"]])

    log("worker: wrangler dev start-up until the first /chat answer")
    with fake_gateway() as gateway:
        def measure(variant, _r):
            return wrangler_dev_first_chat(variant[1], env, gateway.url)

        samples = interleaved(variants, reps["wrangler_dev"], warmup["wrangler_dev"], measure)
        chats = len(gateway.requests)
    start = {}
    for name, values in samples.items():
        start[name] = {key: summary([v[key] for v in values]) for key in ("ready", "first_chat")}
    for key in ("ready", "first_chat"):
        start[f"ratio_{key}"] = ratios([v[key] for v in samples["sdk"]],
                                       [v[key] for v in samples["plain-fetch"]])
    return {
        "versions": versions,
        "npm_install_seconds": round(install_s, 1),
        "npm_install_seeded": bool(npm_seed),  # then not a full install's seconds
        "npm_installed": installed,  # with their dependencies; see worker_runtime_only
        "bundle": bundles,
        "bundle_ratio_sdk_vs_plain_fetch": bundle_ratio,
        "startup_profile": startup,
        "wrangler_dev": start,
        "gateway_requests_served": chats,
    }


# ---------------------------------------------------------------------------------------------
# 4. Python app: chat wall time and import time, SDK vs bare httpx


def first_byte(cmd: list, cwd: Path, env: dict) -> tuple[float, float, str]:
    start = time.perf_counter()
    proc = subprocess.Popen([str(c) for c in cmd], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    first = proc.stdout.read(1)
    t_first = time.perf_counter() - start
    rest = proc.stdout.read()
    err = proc.stderr.read()
    proc.wait()
    t_total = time.perf_counter() - start
    if proc.returncode != 0 or not first:
        raise BenchError(f"`{' '.join(map(str, cmd))}` exited {proc.returncode}: {err.decode()[-3000:]}")
    return t_first, t_total, (first + rest).decode()


def import_seconds(python: str, module: str, cwd: Path, env: dict) -> float:
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    return float(run([python, "-c", code], cwd=cwd, env=env).stdout)


def import_breakdown(python: str, module: str, cwd: Path, env: dict, top: int = 8) -> dict:
    """Cumulative import microseconds of ``module``'s heaviest top-level packages (-X importtime)."""
    proc = run([python, "-X", "importtime", "-c", f"import {module}"], cwd=cwd, env=env)
    per_package: dict[str, int] = {}
    total = 0
    for line in proc.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if not match:
            continue
        self_us, cumulative, indent, name = int(match[1]), int(match[2]), len(match[3]), match[4]
        per_package[name.split(".")[0]] = per_package.get(name.split(".")[0], 0) + self_us
        if name == module and indent == 1:
            total = cumulative
    heaviest = dict(sorted(per_package.items(), key=lambda kv: -kv[1])[:top])
    return {"total_us": total, "self_us_by_package": heaviest}


def bench_python(templates: Templates, work: Path, reps: dict, warmup: dict) -> dict:
    project = work / "python-app"
    templates.render_v1(templates.ours, {**COMMON_DATA, "language": "python-app"}, project)
    python = copier_python()  # the repo's venv: copier, openai and httpx
    env_base = clean_env(PYTHONPATH=str(project / "src"))
    # Their versions from package metadata (importing openai costs ~0.5 s; the measurements
    # below import both, and fail if they cannot).
    code = "import sys; from importlib.metadata import version\nfor m in sys.argv[1:]: print(version(m))"
    found = run([python, "-c", code, "openai", "httpx"], check=False)
    if found.returncode != 0:
        raise BenchError(f"{python} has no openai or httpx: use .venv/bin/python\n{found.stderr[-2000:]}")
    versions = dict(zip(("openai", "httpx"), found.stdout.split(), strict=True))
    result: dict = {"versions": versions}

    with fake_gateway() as gateway:
        env = {**env_base, "AI_GATEWAY_BASE_URL": gateway.url, "CF_AIG_TOKEN": "bench-gateway-token",
               "CLOUDFLARE_ACCOUNT_ID": ACCOUNT_ID, "AI_GATEWAY_ID": GATEWAY_ID}
        commands = [
            ("sdk-cli", [python, "-m", PACKAGE, "chat", "hi"]),
            ("bare-httpx", [python, str(FIXTURES / "bare_httpx_chat.py"), "hi"]),
        ]

        def measure(variant, _r):
            t_first, t_total, out = first_byte(variant[1], project, env)
            if out.strip() != gateway.reply:
                raise BenchError(f"{variant[0]} printed {out!r}, not the gateway's reply")
            return t_first, t_total

        samples = interleaved(commands, reps["python_chat"], warmup["python_chat"], measure)
        result["gateway_requests_served"] = len(gateway.requests)
    chat = {}
    for name, values in samples.items():
        chat[name] = {"first_byte": summary([v[0] for v in values]),
                      "exit": summary([v[1] for v in values])}
    chat["ratio_first_byte"] = ratios([v[0] for v in samples["sdk-cli"]],
                                      [v[0] for v in samples["bare-httpx"]])
    chat["ratio_exit"] = ratios([v[1] for v in samples["sdk-cli"]], [v[1] for v in samples["bare-httpx"]])
    result["chat"] = chat

    log("python: import times")
    modules = [(f"{PACKAGE}.client", None), (f"{PACKAGE}.cli", None), ("httpx", None), ("openai", None)]
    imports = interleaved(modules, reps["python_import"], warmup["python_import"],
                          lambda variant, _r: import_seconds(python, variant[0], project, env_base))
    result["import"] = {name: summary(values) for name, values in imports.items()}
    result["import"]["ratio_client_vs_httpx"] = ratios(imports[f"{PACKAGE}.client"], imports["httpx"])
    result["import"]["ratio_cli_vs_httpx"] = ratios(imports[f"{PACKAGE}.cli"], imports["httpx"])
    result["import_breakdown"] = {m: import_breakdown(python, m, project, env_base)
                                  for m in (f"{PACKAGE}.client", f"{PACKAGE}.cli", "httpx")}
    return result


# ---------------------------------------------------------------------------------------------
# 5. Gateway sync: requests per run


def sync_once(api, project: Path, env: dict) -> dict:
    """Run `ai_gateway.py sync --json` once; the requests it made, as the fake API saw them."""
    before = len(api.requests)
    proc = run([sys.executable, "scripts/ai_gateway.py", "sync", "--json"], cwd=project, env=env)
    seconds = proc.seconds
    made = api.requests[before:]
    counts: dict[str, int] = {}
    for request in made:
        counts[request.method] = counts.get(request.method, 0) + 1
    return {
        "requests": len(made),
        "writes": sum(1 for r in made if r.is_write),
        "by_method": counts,
        "reported_requests": json.loads(proc.stdout).get("requests"),
        "seconds": round(seconds, 3),
    }


def bench_sync(templates: Templates, work: Path) -> dict:
    fake_api = load_module(ROOT / "tests" / "fake_cloudflare_api.py", "bench_fake_cloudflare_api")
    result = {}
    for environments in (DEFAULT_ENVIRONMENTS, ["development", "staging", "production"]):
        data = {**COMMON_DATA, "language": "python-app"}
        if environments != DEFAULT_ENVIRONMENTS:  # the default's render is the python-app one
            data["environments"] = json.dumps(environments)
        project = templates.render_v1(templates.ours, data, work / f"sync-{len(environments)}")
        answers = (project / ".copier-answers.yml").read_text()
        if "".join(f"\n- {e}" for e in environments) not in answers:
            raise BenchError(f"the project for {environments} has other environments:\n{answers}")
        with fake_api.FakeCloudflareAPI() as api:
            env = clean_env(CLOUDFLARE_API_BASE_URL=api.base_url, CLOUDFLARE_API_TOKEN=api.token,
                            AI_GATEWAY_TIMEOUT="10")
            runs = {"first": sync_once(api, project, env), "repeat": sync_once(api, project, env)}
            for gateway in api.gateways[ACCOUNT_ID].values():  # someone changed them in the dashboard
                gateway["cache_ttl"] = 3600
            runs["after_drift"] = sync_once(api, project, env)
        n = len(environments)
        result[f"{n}_env"] = {
            "environments": environments,
            **runs,
            "minimum": {"first": 1 + n, "repeat": 1, "after_drift": 1 + n},
        }
    return result


# ---------------------------------------------------------------------------------------------
# Report


# ---------------------------------------------------------------------------------------------
# 6. Time to green: copy + install + tests, vs `npm create cloudflare`

C3_ARGS = ["--type=hello-world", "--lang=ts", "--no-deploy", "--no-git", "--no-open", "--no-agents"]
_C3_VERSION = re.compile(r"create-cloudflare v(\d+\.\d+\.\d+)")


def timed_steps(steps: list[tuple[str, list, Path, dict]]) -> dict:
    """Run each (label, cmd, cwd, env) in order, failing on any non-zero exit; wall seconds of
    the whole sequence (start of the first to end of the last) and of each step."""
    start = time.perf_counter()
    seconds, outputs = {}, {}
    for label, cmd, cwd, env in steps:
        result = run(cmd, cwd=cwd, env=env, timeout=900)
        seconds[label] = round(result.seconds, 2)
        outputs[label] = result.output
    return {"seconds": time.perf_counter() - start, "steps": seconds, "outputs": outputs}


def bench_green(templates: Templates, work: Path, reps: int, warmup: int) -> dict:
    npm_cache = ROOT / ".cache" / "npm"
    uv_cache = ROOT / ".cache" / "uv"
    npm_cache.mkdir(parents=True, exist_ok=True)
    uv_cache.mkdir(parents=True, exist_ok=True)
    node = node_env(npm_cache)
    # C3 would post usage metrics to Cloudflare; this machine reaches only package registries.
    # Its own `npm install` gets the same --prefer-offline policy as the Worker's install.
    c3_env = {**node, "CREATE_CLOUDFLARE_TELEMETRY_DISABLED": "1", "npm_config_prefer_offline": "true"}
    uv = ROOT / ".venv" / "bin" / "uv"
    uv_env = {k: v for k, v in clean_env().items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    uv_env.update(UV_CACHE_DIR=str(uv_cache), UV_PYTHON=shutil.which("python3") or sys.executable)
    copy_env = clean_env()
    c3_versions: set[str] = set()
    step_seconds: dict[str, list[dict]] = {}

    def copy_step(dst: Path, language: str):
        return ("copier copy", copier_cmd("copy", "--vcs-ref", "HEAD",
                                          data={**COMMON_DATA, "language": language})
                + [templates.ours, dst], work, copy_env)

    def measure(variant, r):
        name = variant[0]
        dst = work / f"green-{name}-{r}"
        if name == "python-app":
            steps = [copy_step(dst, name),
                     ("uv sync", [uv, "sync"], dst, uv_env),
                     ("uv run pytest -q", [uv, "run", "pytest", "-q"], dst, uv_env)]
        elif name == "typescript-worker":
            steps = [copy_step(dst, name),
                     ("npm install", ["npm", "install", "--prefer-offline", "--no-audit", "--no-fund",
                                      "--loglevel=error"], dst, node),
                     ("npm test", ["npm", "test"], dst, node)]
        else:
            steps = [("npm create cloudflare", ["npm", "create", "--yes", "cloudflare@latest", "--",
                                                dst.name, *C3_ARGS], work, c3_env),
                     ("npm test", ["npm", "test"], dst, c3_env)]
        log(f"green: {name} (round {r + 1})")
        done = timed_steps(steps)
        if name == "create-cloudflare":
            found = _C3_VERSION.search(re.sub(r"\x1b\[[0-9;]*m", "", done["outputs"]["npm create cloudflare"]))
            if found:
                c3_versions.add(found.group(1))
        step_seconds.setdefault(name, []).append(done["steps"])
        shutil.rmtree(dst, ignore_errors=True)
        return done["seconds"]

    variants = [("create-cloudflare",), ("python-app",), ("typescript-worker",)]
    samples = interleaved(variants, reps, warmup, measure)
    result = {name: {"seconds": summary(values), "steps": step_seconds[name][warmup:]}
              for name, values in samples.items()}
    for target in TARGETS:
        result[target]["ratio_vs_create_cloudflare"] = ratios(samples[target], samples["create-cloudflare"])
    result["create-cloudflare"]["version"] = ", ".join(sorted(c3_versions)) or "unknown"
    result["create-cloudflare"]["args"] = C3_ARGS
    result["caches"] = {"npm": str(npm_cache.relative_to(ROOT)), "uv": str(uv_cache.relative_to(ROOT)),
                        "warm": True}
    return result


def fmt_ratio(r: dict) -> str:
    spread = f"{r['min']:.2f}–{r['max']:.2f}"
    if "q1" in r:
        spread += f", IQR {r['q1']:.2f}–{r['q3']:.2f}"
    return f"**{r['median']:.2f}×** ({spread}, n={r['n']})"


def table(results: dict) -> str:
    rows = ["| measurement | ours (median) | yardstick (median) | ratio: median (min–max) |",
            "| --- | --- | --- | --- |"]
    for section, verb in (("copy", "copier copy"), ("update", "copier update")):
        data = results.get(section)
        if not data:
            continue
        base = data["one-file"]["seconds"]["median"]
        for target in (*TARGETS, TRIMMED):
            d = data[target]
            rows.append(f"| `{verb}` {target} vs one-file template | {d['seconds']['median']:.2f} s | "
                        f"{base:.2f} s | {fmt_ratio(d['ratio_vs_one_file'])} |")
        for target in (*TARGETS, TRIMMED):
            d = data[target]
            rows.append(f"| `{verb}` {target} vs one-file template, CPU time (user+sys) | "
                        f"{d['cpu_seconds']['median']:.2f} s | {data['one-file']['cpu_seconds']['median']:.2f} s | "
                        f"{fmt_ratio(d['cpu_ratio_vs_one_file'])} |")
        d = data["python-app"]
        rows.append(f"| `{verb}` python-app: whole repo vs trimmed repo (copier.yml, template/, hooks/) | "
                    f"{d['seconds']['median']:.2f} s | {data[TRIMMED]['seconds']['median']:.2f} s | "
                    f"{fmt_ratio(d['ratio_vs_trimmed_repo'])} |")
    worker = results.get("worker")
    if worker:
        sdk, plain = worker["bundle"]["sdk"], worker["bundle"]["plain-fetch"]
        ratio = worker["bundle_ratio_sdk_vs_plain_fetch"]
        rows.append(f"| Worker bundle (`wrangler deploy --dry-run`), openai SDK vs plain fetch | "
                    f"{sdk['kib']:.1f} KiB / gzip {sdk['gzip_kib']:.1f} KiB | "
                    f"{plain['kib']:.1f} KiB / gzip {plain['gzip_kib']:.1f} KiB | "
                    f"**{ratio['kib']:.1f}×** / gzip **{ratio['gzip_kib']:.1f}×** |")
        sm, pm = sdk["minified"], plain["minified"]
        same = " (wrangler.toml minifies already: the same build)" if sdk.get("config_minifies") else ""
        rows.append(f"| same, `--minify`{same} | {sm['kib']:.1f} KiB / gzip {sm['gzip_kib']:.1f} KiB | "
                    f"{pm['kib']:.1f} KiB / gzip {pm['gzip_kib']:.1f} KiB | "
                    f"{sm['kib'] / pm['kib']:.1f}× / gzip {sm['gzip_kib'] / pm['gzip_kib']:.1f}× |")
        prof = worker["startup_profile"]
        for key, label in (("active_ms", "Worker start-up CPU in workerd (`wrangler check startup`, active)"),
                           ("window_ms", "Worker start-up profile window (`wrangler check startup`)")):
            d = prof[f"difference_{key}"]
            rows.append(f"| {label}, SDK vs plain fetch | {prof['sdk'][key]['median']:.1f} ms | "
                        f"{prof['plain-fetch'][key]['median']:.1f} ms | SDK adds **{d['median']:+.1f} ms** "
                        f"({d['min']:+.1f} to {d['max']:+.1f}, n={d['n']}) |")
        dev = worker["wrangler_dev"]
        for key, label in (("ready", "`wrangler dev --local` start until Ready"),
                           ("first_chat", "`wrangler dev --local` start until first `/chat` answered")):
            rows.append(f"| {label}, SDK vs plain fetch | {dev['sdk'][key]['median']:.2f} s | "
                        f"{dev['plain-fetch'][key]['median']:.2f} s | {fmt_ratio(dev[f'ratio_{key}'])} |")
    python = results.get("python")
    if python:
        chat = python["chat"]
        for key, label in (("first_byte", "first byte"), ("exit", "exit")):
            rows.append(f"| `python -m {PACKAGE} chat hi` until {label}, vs bare httpx | "
                        f"{chat['sdk-cli'][key]['median']:.3f} s | "
                        f"{chat['bare-httpx'][key]['median']:.3f} s | {fmt_ratio(chat[f'ratio_{key}'])} |")
        imp = python["import"]
        for module, key in ((f"{PACKAGE}.client", "ratio_client_vs_httpx"),
                            (f"{PACKAGE}.cli", "ratio_cli_vs_httpx")):
            rows.append(f"| `import {module}` vs `import httpx` | {imp[module]['median'] * 1000:.0f} ms | "
                        f"{imp['httpx']['median'] * 1000:.0f} ms | {fmt_ratio(imp[key])} |")
    green = results.get("green")
    if green:
        c3 = green["create-cloudflare"]
        for target in TARGETS:
            d = green[target]
            rows.append(f"| time to green (copy + install + tests), {target} vs `npm create cloudflare` "
                        f"{c3['version']} hello-world (warm npm/uv caches) | {d['seconds']['median']:.1f} s | "
                        f"{c3['seconds']['median']:.1f} s | {fmt_ratio(d['ratio_vs_create_cloudflare'])} |")
    sync = results.get("sync")
    if sync:
        for data in sync.values():
            n = len(data["environments"])
            at_minimum = all(data[k]["requests"] == v for k, v in data["minimum"].items())
            got = ", ".join(f"{label} {data[label]['requests']} ({data[label]['writes']} writes)"
                            for label in ("first", "repeat", "after_drift"))
            minimum = ", ".join(f"{v}" for v in data["minimum"].values())
            rows.append(f"| `ai_gateway.py sync` requests, {n} environment{'s' if n > 1 else ''}: "
                        f"first, repeat, after drift | {got} | minimum {minimum} | "
                        f"{'at the minimum' if at_minimum else 'ABOVE the minimum'} |")
    return "\n".join(rows)


def save_results(results: dict, path: Path | None, started: float, *, quick: bool,
                 prefix: str = "") -> Path:
    """Write ``results`` as JSON to ``path``, or to benchmarks/results/<prefix><UTC start>.json."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(started))
    out = path or RESULTS / f"{prefix}{stamp}{'-quick' if quick else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="every measurement, fewest repetitions (CI)")
    parser.add_argument("--reps", type=int, help="override every repetition count")
    parser.add_argument("--only", help=f"comma-separated sections ({','.join(SECTIONS)}); default all")
    parser.add_argument("--json", type=Path, help="where to write the JSON (default benchmarks/results/)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    parser.add_argument("--npm-seed", type=Path, metavar="NODE_MODULES",
                        help="worker: hard-link this node_modules (an install of the rendered "
                             "Worker's dependencies) into the Worker before its npm install, "
                             "which then only adds and removes packages (the template's tests; "
                             "npm_install_seconds is then not a full install's)")
    args = parser.parse_args(argv)
    default = QUICK_SECTIONS if args.quick else SECTIONS
    sections = default if not args.only else tuple(s.strip() for s in args.only.split(","))
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    mode = 0 if args.quick else 1
    reps = {k: args.reps or v[mode] for k, v in REPS.items()}
    warmup = {k: v[mode] for k, v in WARMUP.items()}

    started = time.time()
    t0 = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="aig-bench-"))
    results: dict = {
        "meta": {
            "quick": args.quick,
            "repetitions": reps,
            "warmup_rounds": warmup,
            "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                        "python": platform.python_version()},
            "copier": copier_version(),
            "template_commit": git("rev-parse", "--short", "HEAD", cwd=ROOT),
            "template_dirty": bool(git("status", "--porcelain", cwd=ROOT)),
            "sections": list(sections),
        }
    }
    try:
        log(f"scratch directory {work}")
        templates = Templates(work)
        log("template repositories made")
        if "copy" in sections:
            log(f"copy: {reps['copy']} interleaved rounds (+{warmup['copy']} warm-up)")
            results["copy"] = bench_copy(templates, work, reps["copy"], warmup["copy"])
        if "update" in sections:
            log(f"update: {reps['update']} interleaved rounds (+{warmup['update']} warm-up)")
            results["update"] = bench_update(templates, work, reps["update"], warmup["update"])
        if "worker" in sections:
            results["worker"] = bench_worker(templates, work, reps, warmup, args.npm_seed)
        if "python" in sections:
            log(f"python: chat x{reps['python_chat']}, imports x{reps['python_import']}")
            results["python"] = bench_python(templates, work, reps, warmup)
        if "sync" in sections:
            log("sync: request counts")
            results["sync"] = bench_sync(templates, work)
        if "green" in sections:
            log(f"green: {reps['green']} interleaved rounds of copy + install + tests, 3 variants")
            results["green"] = bench_green(templates, work, reps["green"], warmup["green"])
        log("done")
    finally:
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    results["meta"]["seconds"] = round(time.perf_counter() - t0, 1)

    out = save_results(results, args.json, started, quick=args.quick)
    print(table(results))
    print(f"\n{'quick' if args.quick else 'full'} run: {results['meta']['seconds']:.0f} s on "
          f"{results['meta']['machine']['cpus']} CPUs, copier {results['meta']['copier']}; JSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
