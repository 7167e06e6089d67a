#!/usr/bin/env python3
"""The rendered services under load, side by side with their yardsticks in one run.

    .venv/bin/python benchmarks/load.py            # full run (~10 min on 2 cores)
    .venv/bin/python benchmarks/load.py --quick    # every measurement, few requests
    .venv/bin/python benchmarks/load.py --only python --levels 16 --json out.json
    .venv/bin/python benchmarks/load.py --only python --targets python,python-callers
                                                   # what callers.toml adds (20 callers)
    .venv/bin/python benchmarks/load.py --only worker \
        --worker-targets worker,worker-callers-no-rate,worker-callers   # the same, Worker

Python (one uvicorn worker each, asyncio + h11 as the rendered project installs uvicorn, no
access log): the rendered python-app service (default answers, caller_auth api-key), a
hand-written FastAPI + httpx relay of the same /chat contract
(benchmarks/fixtures/fastapi_httpx_relay.py) and LiteLLM proxy (its own venv in
.cache/litellm-venv, installed from PyPI on first use; its `/v1/chat/completions`, the model
pointed at the gateway as an OpenAI-compatible base URL; LITELLM_LOG=ERROR, so no access log).
Worker (`wrangler dev --local`): the rendered Worker and the plain-fetch Worker
(benchmarks/fixtures/plain_fetch_worker, built as benchmarks/run.py builds it).

All of them call the same loopback gateway (benchmarks/loopback_gateway.py: keep-alive,
counts the connections it accepts) in its own process. A bounded httpx client (c connections,
c requests in flight, a fixed number of requests per level, after a warm-up of 2c) drives each
target in turn at each concurrency, JSON then SSE, the targets' order alternating per level.
Per target and level: requests/s, p50 and p99 latency (request sent to body read), the
target's CPU per request and RSS afterwards (its process tree, from /proc), and the gateway
connections it opened per 1,000 requests. First, on freshly started processes, the RSS
flatness run: 5,000 JSON requests at c=16 with RSS read every 1,000 (Python service, relay).
A `client ceiling` row drives the gateway directly: what the client and gateway manage alone.

The python-app is rendered from HEAD (committed work only: others may be mid-edit), or from
the working tree with --worktree. Results: Markdown tables on stdout, JSON in
benchmarks/results/load-*.json (or --json PATH). No timing is ever asserted in tests.
Nothing leaves the machine: every server is on 127.0.0.1.
"""
from __future__ import annotations

import argparse
import asyncio
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
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(BENCH))
import httpx
from testkit import free_port, load_module

bench = load_module(BENCH / "run.py", "bench_run")  # rendering, git, Node and Worker helpers
log, BenchError, clean_env = bench.log, bench.BenchError, bench.clean_env

FIXTURES = BENCH / "fixtures"
LITELLM_VENV = ROOT / ".cache" / "litellm-venv"
ACCOUNT_ID, GATEWAY_ID = bench.ACCOUNT_ID, bench.GATEWAY_ID
GATEWAY_TOKEN = "bench-gateway-token"
SERVICE_KEY = "sk-bench-service-key"  # LiteLLM wants its master key to start with sk-
PROMPT = "hi"
PYTHON_TARGETS = ("python", "relay", "litellm")
# --targets python,python-callers: the same service with a callers.toml of CALLERS callers,
# each with a rate limit (never reached), called with the last caller's key: what caller
# lookup and the limiter (in memory) add to a request.
CALLERS = 20
WORKER_TARGETS = ("worker", "plain-fetch-worker")
# --worker-targets worker,worker-callers: the rendered Worker with the same CALLERS callers
# compiled in (one Workers Rate Limiting binding, simulated by wrangler dev), called with the
# last caller's key.
SECTIONS = ("flat", "python", "worker")

# Requests per measurement: (quick, full). Full: 2,000 at c=64 as the issue asks.
LEVELS = {"python": (1, 16, 64), "worker": (1, 16)}
REQUESTS = {1: (40, 400), 16: (160, 2000), 64: (320, 2000)}
FLAT = {"total": (400, 5000), "every": (100, 1000), "concurrency": 16}
MAX_SECONDS = (20, 120)  # per measurement: a slow target stops there (its count is reported)


# ---------------------------------------------------------------------------------------------
# Processes: the loopback gateway, the targets, their CPU and memory from /proc


def tree(pid: int) -> list[int]:
    """``pid`` and its descendants, from /proc/<pid>/task/*/children."""
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            continue
    return pids


def rss_mb(pid: int) -> float:
    """Resident memory of the process tree, MB (VmRSS from /proc/<pid>/status)."""
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        except (OSError, StopIteration):
            continue
    return total / 1024


TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of the process tree so far (/proc/<pid>/stat)."""
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError):
            continue
    return total / TICK


class Gateway:
    """benchmarks/loopback_gateway.py in its own process; ``stats()`` reads its counters."""

    def __init__(self, python: str, log_path: Path):
        self.proc = subprocess.Popen([python, str(BENCH / "loopback_gateway.py")], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=log_path.open("w"), text=True)
        ports = json.loads(self.proc.stdout.readline())
        self.port, self.control = ports["port"], ports["control_port"]
        self.url = f"http://127.0.0.1:{self.port}/v1"

    def stats(self) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.control}/", timeout=10) as response:
            return json.loads(response.read())

    def close(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@dataclass
class Target:
    name: str
    label: str
    url: str
    bodies: dict  # mode -> request body (bytes)
    done: dict  # mode -> bytes that a whole answer contains
    cmd: list
    cwd: Path
    env: dict
    log_path: Path
    startup_timeout: float = 120
    stop_signal: int = signal.SIGTERM
    proc: subprocess.Popen | None = None
    started_seconds: float = 0.0
    headers: dict = field(default_factory=lambda: {"content-type": "application/json",
                                                   "authorization": f"Bearer {SERVICE_KEY}"})

    def start(self) -> None:
        start = time.perf_counter()
        self.proc = subprocess.Popen([str(c) for c in self.cmd], cwd=self.cwd, env=self.env,
                                     stdin=subprocess.DEVNULL, stdout=self.log_path.open("w"),
                                     stderr=subprocess.STDOUT, start_new_session=True)
        while time.perf_counter() - start < self.startup_timeout:
            if self.proc.poll() is not None:
                break
            try:
                response = httpx.post(self.url, content=self.bodies["json"], headers=self.headers, timeout=30)
                if response.status_code == 200 and self.done["json"] in response.content:
                    self.started_seconds = time.perf_counter() - start
                    return
                raise BenchError(f"{self.label} answered {response.status_code}: {response.text[:2000]}")
            except httpx.TransportError:
                time.sleep(0.2)
        self.stop()
        raise BenchError(f"{self.label} did not answer /chat within {self.startup_timeout:.0f} s "
                         f"(exit {self.proc.returncode}):\n{self.log_path.read_text()[-4000:]}")

    def stop(self) -> None:
        if not self.proc or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, self.stop_signal)  # its own process group (start_new_session)
            self.proc.wait(timeout=15)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def chat_bodies(openai_shape: bool) -> dict:
    if openai_shape:
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": PROMPT}]}
    else:
        body = {"prompt": PROMPT}
    return {"json": json.dumps(body).encode(), "sse": json.dumps({**body, "stream": True}).encode()}


# ---------------------------------------------------------------------------------------------
# The load client


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """(status, body, keep-alive) of one HTTP/1.1 answer: content-length, chunked or to close."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    version, status = head[0].split(" ", 2)[:2]
    headers = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    keep = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif "chunked" in headers.get("transfer-encoding", "").lower():
        parts = []
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            parts.append((await reader.readexactly(size + 2))[:-2])
        while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers, then the empty line
            pass
        body = b"".join(parts)
    else:
        body, keep = await reader.read(), False
    return int(status), body, keep


async def _drive(url: str, headers: dict, body: bytes, done: bytes, concurrency: int, requests: int,
                 max_seconds: float, warmup: int) -> dict:
    """``concurrency`` keep-alive connections, each sending its next request when the last
    answer is read in full: at most ``concurrency`` in flight. A raw asyncio HTTP/1.1 client,
    not httpx: httpx's pool tops out near 500 requests/s at c=16 here (the client ceiling row
    measured that), which would cap the fastest targets. A connection the target closed is
    reopened (counted in ``reconnects``), and a request it dropped unanswered is sent once more."""
    parsed = httpx.URL(url)
    request = (f"POST {parsed.raw_path.decode()} HTTP/1.1\r\nhost: {parsed.host}:{parsed.port}\r\n"
               + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
               + f"content-length: {len(body)}\r\n\r\n").encode() + body
    latencies: list[float] = []
    failures: list[str] = []
    issued = 0
    reconnects = 0

    async def connection(limit: int, deadline: float) -> None:
        nonlocal issued, reconnects
        reader = writer = None
        try:
            while issued < limit and time.perf_counter() < deadline:
                issued += 1
                start = time.perf_counter()
                why = None
                for attempt in (0, 1):
                    try:
                        async with asyncio.timeout(120):
                            if writer is None:
                                reader, writer = await asyncio.open_connection(parsed.host, parsed.port)
                                reconnects += 1
                            writer.write(request)
                            status, answer, keep = await read_response(reader)
                    except (OSError, asyncio.IncompleteReadError, TimeoutError) as error:
                        if writer:
                            writer.close()
                        reader = writer = None
                        why = f"{type(error).__name__}: {error}"
                        continue
                    why = None if status == 200 and done in answer else f"{status} {answer[:300]!r}"
                    if not keep:
                        writer.close()
                        reader = writer = None
                    break
                latencies.append(time.perf_counter() - start)
                if why:
                    failures.append(why)
        finally:
            if writer:
                writer.close()

    await asyncio.gather(*(connection(warmup, float("inf")) for _ in range(concurrency)))
    latencies.clear()
    failures.clear()
    issued = 0
    reconnects = -concurrency  # each connection's first open is not a reconnect
    t0 = time.perf_counter()
    await asyncio.gather(*(connection(requests, t0 + max_seconds) for _ in range(concurrency)))
    seconds = time.perf_counter() - t0
    return {"latencies": latencies, "failures": failures, "seconds": seconds, "warmup": warmup,
            "reconnects": max(reconnects, 0)}


def percentile(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def measure(target: Target, gateway: Gateway, mode: str, concurrency: int, requests: int,
            max_seconds: float, pid: int | None = None, warmup: int | None = None) -> dict:
    """One measurement: ``requests`` of ``mode`` at ``concurrency`` after ``warmup`` (default
    2 x concurrency, not timed); what the target cost (CPU and connections: warm-up included)."""
    warmup = 2 * concurrency if warmup is None else warmup
    pid = pid or (target.proc.pid if target.proc else None)
    before_cpu = cpu_seconds(pid) if pid else 0.0
    before = None
    out: dict = {}

    async def go():
        nonlocal before
        # the warm-up is inside _drive; gateway and CPU counters bracket warm-up + run
        before = gateway.stats()
        out.update(await _drive(target.url, target.headers, target.bodies[mode], target.done[mode],
                                concurrency, requests, max_seconds, warmup))

    asyncio.run(go())
    after = gateway.stats()
    lat = out["latencies"]
    n = len(lat)
    total = n + out["warmup"]
    connections = after["connections"] - before["connections"]
    result = {
        "requests": n,
        "failures": len(out["failures"]),
        "first_failure": out["failures"][0] if out["failures"] else None,
        "seconds": round(out["seconds"], 3),
        "rps": round(n / out["seconds"], 1) if out["seconds"] else None,
        "p50_ms": round(percentile(lat, 50) * 1000, 2),
        "p99_ms": round(percentile(lat, 99) * 1000, 2),
        "mean_ms": round(statistics.fmean(lat) * 1000, 2) if lat else None,
        "gateway_requests": after["requests"] - before["requests"],
        "gateway_connections": connections,
        "connections_per_1000": round(1000 * connections / total, 1) if total else None,
        "gateway_open_after": after["open"],
        "client_reconnects": out["reconnects"],
    }
    if pid:
        result["cpu_ms_per_request"] = round(1000 * (cpu_seconds(pid) - before_cpu) / total, 2)
        result["rss_mb"] = round(rss_mb(pid), 1)
    if target.name == "ceiling":  # the gateway's own CPU: what the client leaves it
        result.pop("rss_mb", None)
    return result


# ---------------------------------------------------------------------------------------------
# Targets


def render(work: Path, language: str, worktree: bool) -> Path:
    """The project rendered from HEAD (or the working tree) with the default answers."""
    src = work / "template"
    if not src.exists():
        if worktree:
            bench.snapshot_template(src)
        else:
            bench.run(["git", "clone", "-q", "--no-local", "--no-tags", str(ROOT), str(src)])
    dst = work / language
    data = {**bench.COMMON_DATA, "language": language}
    if language == "python-app":
        data["caller_auth"] = "api-key"
    bench.copier_copy(src, dst, data)
    return dst


def python_env(gateway: Gateway, **extra: str) -> dict:
    return clean_env(AI_GATEWAY_BASE_URL=gateway.url, CF_AIG_TOKEN=GATEWAY_TOKEN, SERVICE_API_KEY=SERVICE_KEY,
                     CLOUDFLARE_ACCOUNT_ID=ACCOUNT_ID, AI_GATEWAY_ID=GATEWAY_ID, **extra)


def uvicorn_cmd(python: str, app: str, port: int) -> list:
    return [python, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
            "--no-access-log", "--log-level", "warning"]


def package_of(project: Path) -> str:
    """The rendered python-app's package: the folder of src/ that holds app.py."""
    return next(p.parent.name for p in (project / "src").glob("*/app.py"))


def python_target(name: str, gateway: Gateway, work: Path, project: Path | None,
                  profile: Path | None = None) -> Target:
    python = str(ROOT / ".venv" / "bin" / "python")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    sse_done = b"event: done"
    if name == "python":
        package = package_of(project)
        cmd = uvicorn_cmd(python, f"{package}.app:app", port)
        if profile:
            cmd[1:1] = ["-m", "cProfile", "-o", str(profile)]
        return Target(name, f"rendered python-app ({package})", f"{url}/chat", chat_bodies(False),
                      {"json": b'"reply"', "sse": sse_done}, cmd,
                      project, python_env(gateway, PYTHONPATH=str(project / "src")), work / "python.log",
                      # uvicorn re-raises the signal after its graceful shutdown: SIGTERM's default
                      # action would end the process before cProfile writes, KeyboardInterrupt not
                      stop_signal=signal.SIGINT if profile else signal.SIGTERM)
    if name == "python-callers":
        target = python_target("python", gateway, work, project)
        path, key = callers_file(work, CALLERS)
        target.name, target.label = name, f"python-app, {CALLERS} callers + rate limits"
        target.env = {**target.env, "CALLERS_FILE": str(path)}
        target.headers = {**target.headers, "authorization": f"Bearer {key}"}
        target.log_path = work / "python-callers.log"
        return target
    if name == "relay":
        return Target(name, "FastAPI + httpx relay", f"{url}/chat", chat_bodies(False),
                      {"json": b'"reply"', "sse": sse_done}, uvicorn_cmd(python, "fastapi_httpx_relay:app", port),
                      work, python_env(gateway, PYTHONPATH=str(FIXTURES)), work / "relay.log")
    if name == "litellm":
        config = work / "litellm.yaml"
        api_base = f"{gateway.url}/{ACCOUNT_ID}/{GATEWAY_ID}/openai"
        config.write_text(json.dumps({  # JSON is YAML
            "model_list": [{"model_name": "gpt-4o-mini", "litellm_params": {
                "model": "openai/gpt-4o-mini", "api_base": api_base, "api_key": "unused-provider-key",
                "extra_headers": {"cf-aig-authorization": f"Bearer {GATEWAY_TOKEN}"}}}],
            "general_settings": {"master_key": SERVICE_KEY},
        }, indent=2))
        env = clean_env(LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_LOG="ERROR", LITELLM_TELEMETRY="False",
                        NO_DOCS="True")
        cmd = [LITELLM_VENV / "bin" / "litellm", "--config", config, "--host", "127.0.0.1",
               "--port", str(port), "--num_workers", "1"]
        return Target(name, f"LiteLLM proxy {litellm_version()}", f"{url}/v1/chat/completions",
                      chat_bodies(True), {"json": b'"pong"', "sse": b"data: [DONE]"}, cmd, work, env,
                      work / "litellm.log", startup_timeout=180)
    raise ValueError(name)


def callers_file(work: Path, count: int) -> tuple[Path, str]:
    """callers.toml with ``count`` callers (a rate no run reaches); the last one's key."""
    import hashlib

    keys = [f"bench-caller-key-{i:03d}" for i in range(count)]
    path = work / "callers.toml"
    path.write_text("".join(
        f'[callers.c{i:03d}]\nkey_sha256 = "{hashlib.sha256(k.encode()).hexdigest()}"\n'
        f"requests_per_minute = 10000000\n\n" for i, k in enumerate(keys)))
    return path, keys[-1]


def ensure_litellm() -> bool:
    """LiteLLM proxy in its own venv under .cache/ (uv, from PyPI); False if it cannot install."""
    if (LITELLM_VENV / "bin" / "litellm").exists():
        return True
    uv = ROOT / ".venv" / "bin" / "uv"
    log(f"litellm: installing litellm[proxy] into {LITELLM_VENV}")
    made = bench.run([uv, "venv", "-q", "--python", sys.executable, LITELLM_VENV], check=False)
    installed = made.returncode == 0 and bench.run(
        [uv, "pip", "install", "-q", "--python", LITELLM_VENV / "bin" / "python", "litellm[proxy]"],
        check=False, timeout=900).returncode == 0
    if not installed:
        log("litellm: did not install; its rows are left out")
    return installed


def litellm_version() -> str:
    found = list((LITELLM_VENV / "lib").glob("python3*/site-packages/litellm-*.dist-info"))
    return found[0].name.removeprefix("litellm-").removesuffix(".dist-info") if found else "?"


def worker_callers_project(sdk: Path, dst: Path, env: dict, rates: bool = True) -> tuple[Path, str]:
    """The rendered Worker with callers_file's callers and the binding their rate needs
    (``rates=False``: the same callers without a rate, the lookup alone)."""
    shutil.copytree(sdk, dst, symlinks=True, ignore=shutil.ignore_patterns("node_modules", "dist*", ".wrangler"))
    (dst / "node_modules").symlink_to(sdk / "node_modules", target_is_directory=True)
    path, key = callers_file(dst, CALLERS)  # dst / "callers.toml"
    table = path.read_text() if rates else re.sub(r"(?m)^requests_per_minute = .*\n", "", path.read_text())
    path.write_text((sdk / "callers.toml").read_text() + "\n" + table)
    # Adds [[ratelimits]] CALLERS_RPM_10000000 (its types too: wrangler types, no install needed)
    bench.run(["node", "scripts/callers.mjs", "bindings"], cwd=dst, env=env, timeout=300)
    return dst, key


def worker_targets(gateway: Gateway, work: Path, worktree: bool,
                   names: tuple = WORKER_TARGETS) -> list[Target]:
    """The rendered Worker and the plain-fetch Worker, as benchmarks/run.py builds them (and,
    asked for, the rendered Worker with a callers.toml)."""
    npm_cache = ROOT / ".cache" / "npm"
    npm_cache.mkdir(parents=True, exist_ok=True)
    env = bench.node_env(npm_cache)
    sdk = render(work, "typescript-worker", worktree)
    installed = bench.worker_runtime_only(sdk)
    log(f"worker: npm install --ignore-scripts (--prefer-offline) of {', '.join(installed)}")
    bench.run(["npm", "install", "--prefer-offline", "--ignore-scripts", "--no-audit", "--no-fund",
               "--loglevel=error"], cwd=sdk, env=env, timeout=900)
    projects = {"worker": sdk}
    if "plain-fetch-worker" in names:
        projects["plain-fetch-worker"] = bench.make_plain_fetch_worker(sdk, work / "worker-plain-fetch")
    key = SERVICE_KEY
    if "worker-callers" in names:
        projects["worker-callers"], key = worker_callers_project(sdk, work / "worker-callers", env)
    if "worker-callers-no-rate" in names:
        projects["worker-callers-no-rate"], key = worker_callers_project(
            sdk, work / "worker-callers-no-rate", env, rates=False)
    targets = []
    for name, project in projects.items():
        if name not in names:
            continue
        (project / ".dev.vars").write_text(f"CF_AIG_TOKEN={GATEWAY_TOKEN}\nSERVICE_API_KEY={SERVICE_KEY}\n")
        port = free_port()
        cmd = [project / "node_modules" / ".bin" / "wrangler", "dev", "--local", "--ip", "127.0.0.1",
               "--port", str(port), "--inspector-port", str(free_port()),
               "--var", f"AI_GATEWAY_BASE_URL:{gateway.url}"]
        label = {"worker": "rendered Worker (openai SDK)", "plain-fetch-worker": "plain-fetch Worker",
                 "worker-callers": f"rendered Worker, {CALLERS} callers + rate limits",
                 "worker-callers-no-rate": f"rendered Worker, {CALLERS} callers, no rate limit"}[name]
        target = Target(name, label, f"http://127.0.0.1:{port}/chat", chat_bodies(False),
                        {"json": b'"reply"', "sse": b"event: done"}, cmd, project, env, work / f"{name}.log")
        if name.startswith("worker-callers"):
            target.headers = {**target.headers, "authorization": f"Bearer {key}"}
        targets.append(target)
    return targets


# ---------------------------------------------------------------------------------------------
# Runs


def flat_run(target: Target, gateway: Gateway, total: int, every: int, max_seconds: float) -> dict:
    """RSS of a freshly started target after every ``every`` JSON requests at c=16 (counted
    from its start: its start-up probe is the first), up to ``total``."""
    samples = [{"requests": 1, "rss_mb": round(rss_mb(target.proc.pid), 1)}]
    served = 1
    while served < total:
        n = min(every - served % every, total - served)
        m = measure(target, gateway, "json", FLAT["concurrency"], n, max_seconds, warmup=0)
        served += m["requests"]
        samples.append({"requests": served, "rss_mb": m["rss_mb"], "rps": m["rps"], "failures": m["failures"],
                        "connections_per_1000": m["connections_per_1000"]})
        if m["requests"] < n:
            break  # it hit max_seconds: report what it reached
    result = {"samples": samples, "concurrency": FLAT["concurrency"]}
    first = next((s for s in samples if s["requests"] >= every), None)
    if first and samples[-1]["requests"] > first["requests"]:
        result["growth_mb"] = round(samples[-1]["rss_mb"] - first["rss_mb"], 1)
        result["from_to"] = [first["requests"], samples[-1]["requests"]]
    return result


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def run_levels(targets: list[Target], gateway: Gateway, levels: tuple, requests: dict, max_seconds: float,
               warmup: int | None, modes: tuple = ("json", "sse")) -> dict:
    results: dict = {t.name: {} for t in targets}
    for i, concurrency in enumerate(levels):
        for mode in modes:
            order = targets if i % 2 == 0 else targets[::-1]
            for target in order:
                n = requests[concurrency]
                log(f"{target.name}: {mode} c={concurrency} x{n}")
                m = measure(target, gateway, mode, concurrency, n, max_seconds, warmup=warmup)
                results[target.name][f"{mode}_c{concurrency}"] = m
                if m["failures"]:
                    log(f"  {m['failures']} failed, first: {m['first_failure']}")
    return results


def ratios_vs(results: dict, name: str, base: str) -> dict:
    out = {}
    for key, m in results.get(name, {}).items():
        b = results.get(base, {}).get(key)
        if b:
            out[key] = {"rps": ratio(m["rps"], b["rps"]), "p50": ratio(m["p50_ms"], b["p50_ms"]),
                        "p99": ratio(m["p99_ms"], b["p99_ms"])}
    return out


def goals(results: dict) -> dict:
    """The issue's goals, met or not (reported, never asserted)."""
    py = results.get("python", {})
    levels = py.get("levels", {})
    vs_relay = py.get("ratios", {}).get("python_vs_relay", {})
    vs_litellm = py.get("ratios", {}).get("python_vs_litellm", {})
    out: dict = {}
    for key, r in vs_relay.items():
        if key.endswith(("_c16", "_c64")):
            out[f"rps >= 0.8x relay, {key}"] = {"value": r["rps"], "met": bool(r["rps"] and r["rps"] >= 0.8)}
            out[f"p99 <= 1.5x relay, {key}"] = {"value": r["p99"], "met": bool(r["p99"] and r["p99"] <= 1.5)}
    for key, r in vs_litellm.items():
        out[f"ahead of LiteLLM (rps), {key}"] = {"value": r["rps"], "met": bool(r["rps"] and r["rps"] > 1)}
    pool = py.get("pool", {}).get("max_connections")
    for key, m in levels.get("python", {}).items():
        out[f"connections per 1,000 <= pool ({pool}), {key}"] = {
            "value": m["connections_per_1000"], "met": m["connections_per_1000"] <= (pool or 100)}
    flat = results.get("flat", {}).get("python", {})
    if "growth_mb" in flat:
        out[f"RSS flat within 20 MB, {flat['from_to'][0]} -> {flat['from_to'][1]} requests"] = {
            "value": flat["growth_mb"], "met": abs(flat["growth_mb"]) <= 20}
    for key, r in results.get("worker", {}).get("ratios", {}).get("worker_vs_plain_fetch", {}).items():
        out[f"Worker >= 0.9x plain fetch (rps), {key}"] = {"value": r["rps"], "met": bool(r["rps"] and r["rps"] >= 0.9)}
    return out


def profile_summary(path: Path, top: int = 25) -> dict:
    """The heaviest functions of a cProfile dump: by own time and by cumulative time."""
    import pstats

    stats = pstats.Stats(str(path))
    total = stats.total_tt

    def rows(key: int) -> list[dict]:
        ranked = sorted(stats.stats.items(), key=lambda kv: -kv[1][key])[:top]
        return [{"function": f"{Path(file).name}:{line}({name})", "calls": nc, "own_s": round(tt, 3),
                 "cumulative_s": round(ct, 3), "cumulative_share": round(ct / total, 3) if total else None}
                for (file, line, name), (_cc, nc, tt, ct, _callers) in ranked]

    by_package: dict[str, float] = {}
    for (file, _line, _name), (_cc, _nc, tt, _ct, _callers) in stats.stats.items():
        by_package[package_of_file(file)] = by_package.get(package_of_file(file), 0.0) + tt
    shares = {k: round(v / total, 3) for k, v in sorted(by_package.items(), key=lambda kv: -kv[1])[:15]}
    return {"total_s": round(total, 2), "own_time_share_by_package": shares,
            "by_own_time": rows(2), "by_cumulative_time": rows(3)}


def package_of_file(file: str) -> str:
    """Whose code a profiled function is: a site-packages distribution, the rendered package
    (``src/<package>``), a stdlib module (``stdlib:asyncio``), or ``builtins`` (C functions)."""
    parts = Path(file).parts
    if "site-packages" in parts:
        return parts[parts.index("site-packages") + 1].removesuffix(".py")
    if "src" in parts and parts.index("src") + 1 < len(parts) - 1:
        return f"service:{parts[parts.index('src') + 1]}"
    if file.startswith(("~", "<")):
        return "builtins"
    for i, part in enumerate(parts):
        if part.startswith("python3.") and i + 1 < len(parts):
            return f"stdlib:{parts[i + 1].removesuffix('.py')}"
    return file


def pool_limits(project: Path | None) -> dict:
    """The rendered service's upstream pool limits (its documented defaults), if it has them."""
    if not project:
        return {}
    text = "\n".join(p.read_text() for p in (project / "src" / package_of(project)).glob("*.py"))
    found = {}
    for setting, key, default in (("UPSTREAM_MAX_CONNECTIONS", "max_connections", 100),
                                  ("UPSTREAM_MAX_KEEPALIVE", "max_keepalive", 100)):
        if setting.lower() in text.lower():
            found[key] = default
    return found or {"max_connections": 100, "note": "no pool setting in the service: httpx's default"}


# ---------------------------------------------------------------------------------------------
# Report


def fmt(v, spec=".0f") -> str:
    return "–" if v is None else format(v, spec)


def level_table(results: dict, labels: dict, base: str, extra_base: str | None = None) -> str:
    names = [n for n in labels if n in results]
    head = ["target", "level", "req/s", "p50 ms", "p99 ms", "CPU ms/req", "RSS MB after", "gw conns/1k req",
            f"req/s vs {base}", f"p99 vs {base}"]
    if extra_base:
        head.append(f"req/s vs {extra_base}")
    rows = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    keys = list(next(iter(results.values())).keys()) if results else []
    for key in keys:
        for name in names:
            m = results[name].get(key)
            if not m:
                continue
            b = results.get(base, {}).get(key)
            cells = [labels[name], key.replace("_c", " c="), fmt(m["rps"]), fmt(m["p50_ms"], ".1f"),
                     fmt(m["p99_ms"], ".1f"), fmt(m.get("cpu_ms_per_request"), ".2f"), fmt(m.get("rss_mb")),
                     fmt(m["connections_per_1000"], ".1f")
                     + (f" ({m['failures']} failed)" if m["failures"] else ""),
                     fmt(ratio(m["rps"], b and b["rps"]), ".2f") + "×" if name != base else "",
                     fmt(ratio(m["p99_ms"], b and b["p99_ms"]), ".2f") + "×" if name != base else ""]
            if extra_base:
                e = results.get(extra_base, {}).get(key)
                cells.append(fmt(ratio(m["rps"], e and e["rps"]), ".2f") + "×" if name != extra_base else "")
            rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def report(results: dict) -> str:
    out = []
    py = results.get("python")
    if py:
        labels = {t: py["labels"][t] for t in (*PYTHON_TARGETS, "python-callers", "ceiling")
                  if t in py["labels"]}
        out.append(level_table(py["levels"], labels, "relay", "litellm" if "litellm" in py["levels"] else None))
    flat = results.get("flat")
    if flat:
        out.append("\n| RSS (MB) after N requests, c=16 JSON, fresh process | "
                   + " | ".join(f"{s['requests']}" for s in next(iter(flat.values()))["samples"]) + " | growth |")
        out.append("|" + " --- |" * (len(next(iter(flat.values()))["samples"]) + 2))
        for name, f in flat.items():
            out.append(f"| {name} | " + " | ".join(fmt(s["rss_mb"]) for s in f["samples"])
                       + f" | {fmt(f.get('growth_mb'), '+.1f')} MB |")
    prof = (py or {}).get("profile")
    if prof:
        out.append(f"\nService profile (cProfile, {prof['total_s']} s of CPU); own time by package: "
                   + ", ".join(f"{k} {v:.0%}" for k, v in prof["own_time_share_by_package"].items()))
        out.append("Top by cumulative time:")
        out += [f"  {r['cumulative_share']:6.1%} {r['cumulative_s']:8.3f} s  own {r['own_s']:7.3f} s  "
                f"{r['calls']:>8}  {r['function']}" for r in prof["by_cumulative_time"]]
    worker = results.get("worker")
    if worker:
        out.append("")
        base = "plain-fetch-worker" if "plain-fetch-worker" in worker["levels"] else "worker"
        out.append(level_table(worker["levels"], worker["labels"], base))
    g = results.get("goals")
    if g:
        out.append("\n| goal | value | met |\n| --- | --- | --- |")
        for name, v in g.items():
            out.append(f"| {name} | {v['value']} | {'yes' if v['met'] else '**no**'} |")
    return "\n".join(out)


def cell(m: dict | None) -> str:
    if not m:
        return "–"
    return (f"{fmt(m['rps'])} req/s, {fmt(m['p50_ms'], '.1f')} / {fmt(m['p99_ms'], '.1f')} ms, "
            f"{fmt(m.get('cpu_ms_per_request'), '.1f')} ms CPU, {fmt(m['connections_per_1000'], '.0f')} conn/1k")


def compare(before: dict, after: dict) -> str:
    """Two runs side by side (--compare BEFORE AFTER): the goals, then each level's numbers."""
    goals_b, goals_a = before.get("goals", {}), after.get("goals", {})
    out = [(f"before: commit {before['meta']['template_commit']} ({before['meta']['started_utc']}); "
           f"after: commit {after['meta']['template_commit']} ({after['meta']['started_utc']})"), "",
           "| goal | before | after | met after |", "| --- | --- | --- | --- |"]
    for name in dict.fromkeys([*goals_b, *goals_a]):
        b, a = goals_b.get(name, {}), goals_a.get(name, {})
        out.append(f"| {name} | {b.get('value', '–')} | {a.get('value', '–')} | "
                   f"{'–' if not a else 'yes' if a['met'] else '**no**'} |")
    for section, base in (("python", ("relay", "litellm")), ("worker", ("plain-fetch-worker",))):
        lb, la = before.get(section, {}).get("levels", {}), after.get(section, {}).get("levels", {})
        main_name = "python" if section == "python" else "worker"
        if not (lb or la):
            continue
        names = [n for n in base if n in la or n in lb]
        out += ["", f"| {section} level | {main_name} before | {main_name} after | "
                + " | ".join(f"{n} (after run)" for n in names) + " |",
                "|" + " --- |" * (3 + len(names))]
        for key in dict.fromkeys([*lb.get(main_name, {}), *la.get(main_name, {})]):
            out.append(f"| {key.replace('_c', ' c=')} | {cell(lb.get(main_name, {}).get(key))} | "
                       f"{cell(la.get(main_name, {}).get(key))} | "
                       + " | ".join(cell((la.get(n) or lb.get(n) or {}).get(key)) for n in names) + " |")
    for name in ("python", "relay"):
        fb, fa = before.get("flat", {}).get(name), after.get("flat", {}).get(name)
        if fb or fa:
            out.append("")
            for label, f in (("before", fb), ("after", fa)):
                if f:
                    series = ", ".join(f"{s['requests']}: {fmt(s['rss_mb'])}" for s in f["samples"])
                    out.append(f"- RSS (MB) of {name} {label}, after N requests: {series}")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------


def versions(*names: str) -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="every measurement, few requests")
    parser.add_argument("--only", help=f"comma-separated sections ({','.join(SECTIONS)}); default all")
    parser.add_argument("--targets", help=f"comma-separated Python targets ({','.join(PYTHON_TARGETS)})")
    parser.add_argument("--worker-targets", help="comma-separated Worker targets "
                        f"({','.join(WORKER_TARGETS)},worker-callers,worker-callers-no-rate; default the first two)")
    parser.add_argument("--levels", help="comma-separated concurrencies (default 1,16,64; Worker 1,16)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every request count")
    parser.add_argument("--max-seconds", type=float, help="cap per measurement (default 20 quick, 120 full)")
    parser.add_argument("--worktree", action="store_true", help="render the working tree, not HEAD")
    parser.add_argument("--project", type=Path, help="a python-app already rendered (default answers, "
                        f"caller_auth api-key, account id {ACCOUNT_ID}) instead of a render")
    parser.add_argument("--profile", action="store_true", help="run the service under cProfile (its "
                        "numbers are then not comparable) and report where its CPU went")
    parser.add_argument("--warmup", type=int, help="warm-up requests per measurement (default 2 x c)")
    parser.add_argument("--json", type=Path, help="where to write the JSON (default benchmarks/results/)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"),
                        help="print two runs' JSON side by side (no measurement)")
    args = parser.parse_args(argv)
    if args.compare:
        print(compare(*(json.loads(p.read_text()) for p in args.compare)))
        return 0
    sections = tuple(s.strip() for s in args.only.split(",")) if args.only else SECTIONS
    if set(sections) - set(SECTIONS):
        parser.error(f"unknown sections: {', '.join(sorted(set(sections) - set(SECTIONS)))}")
    mode = 0 if args.quick else 1
    targets = tuple(t.strip() for t in args.targets.split(",")) if args.targets else PYTHON_TARGETS
    worker_names = (tuple(t.strip() for t in args.worker_targets.split(",")) if args.worker_targets
                    else WORKER_TARGETS)
    requests = {c: max(1, round(v[mode] * args.scale)) for c, v in REQUESTS.items()}
    max_seconds = args.max_seconds or MAX_SECONDS[mode]
    flat_total = max(2, round(FLAT["total"][mode] * args.scale))
    flat_every = max(2, round(FLAT["every"][mode] * args.scale))
    levels = {k: v for k, v in LEVELS.items()}
    if args.levels:
        chosen = tuple(int(c) for c in args.levels.split(","))
        levels = {"python": chosen, "worker": tuple(c for c in chosen if c in (1, 16)) or (1,)}
        for c in chosen:
            requests.setdefault(c, requests[64])

    started = time.time()
    work = Path(tempfile.mkdtemp(prefix="aig-load-"))
    python = str(ROOT / ".venv" / "bin" / "python")
    results: dict = {"meta": {
        "quick": args.quick, "sections": list(sections), "requests": requests, "max_seconds": max_seconds,
        "flat": {"total": flat_total, "every": flat_every, "concurrency": FLAT["concurrency"]},
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "loadavg_at_start": os.getloadavg()},
        "template_commit": bench.git("rev-parse", "--short", "HEAD", cwd=ROOT),
        "rendered_from": "working tree" if args.worktree else "HEAD",
        "client": "raw asyncio HTTP/1.1, keep-alive (see _drive)",
        "profiled": args.profile,
        "versions": versions("fastapi", "starlette", "uvicorn", "httpx", "httpcore", "openai", "h11"),
    }}
    running: list[Target] = []
    gateway = Gateway(python, work / "gateway.log")
    try:
        log(f"scratch {work}; loopback gateway on {gateway.port}")
        need_python = {"flat", "python"} & set(sections)
        project = args.project or (render(work, "python-app", args.worktree) if need_python else None)
        if need_python and "litellm" in targets and "python" in sections and not ensure_litellm():
            targets = tuple(t for t in targets if t != "litellm")

        if "flat" in sections:
            results["flat"] = {}
            for name in ("python", "relay"):
                if name not in targets:
                    continue
                target = python_target(name, gateway, work, project)
                target.start()
                running.append(target)
                log(f"flat: {name} x{flat_total} at c={FLAT['concurrency']}, RSS every {flat_every}")
                results["flat"][name] = flat_run(target, gateway, flat_total, flat_every, max_seconds * 3)
                target.stop()
                running.remove(target)

        if "python" in sections:
            py_targets = []
            profile = work / "python.prof" if args.profile else None
            for name in targets:
                target = python_target(name, gateway, work, project, profile if name == "python" else None)
                log(f"starting {target.label}")
                target.start()
                running.append(target)
                py_targets.append(target)
            labels = {t.name: t.label for t in py_targets}
            ceiling = Target("ceiling", "client ceiling (load client -> gateway directly)",
                             f"{gateway.url}/{ACCOUNT_ID}/{GATEWAY_ID}/openai/chat/completions",
                             chat_bodies(True), {"json": b'"pong"', "sse": b"data: [DONE]"}, [], work,
                             {}, work / "none.log")
            levels_out = run_levels(py_targets, gateway, levels["python"], requests, max_seconds, args.warmup)
            levels_out["ceiling"] = {}
            for concurrency in levels["python"]:
                for m in ("json", "sse"):
                    levels_out["ceiling"][f"{m}_c{concurrency}"] = measure(
                        ceiling, gateway, m, concurrency, requests[concurrency], max_seconds, pid=gateway.proc.pid,
                        warmup=args.warmup)
            labels["ceiling"] = ceiling.label
            results["python"] = {
                "labels": labels,
                "startup_seconds": {t.name: round(t.started_seconds, 2) for t in py_targets},
                "levels": levels_out,
                "ratios": {"python_vs_relay": ratios_vs(levels_out, "python", "relay"),
                           "callers_vs_python": ratios_vs(levels_out, "python-callers", "python"),
                           "python_vs_litellm": ratios_vs(levels_out, "python", "litellm"),
                           "relay_vs_litellm": ratios_vs(levels_out, "relay", "litellm")},
                "pool": pool_limits(project),
                "litellm_version": litellm_version() if "litellm" in targets else None,
            }
            for target in py_targets:
                target.stop()
                running.remove(target)
            if profile and profile.exists():
                results["python"]["profile"] = profile_summary(profile)

        if "worker" in sections:
            w_targets = worker_targets(gateway, work, args.worktree, worker_names)
            for target in w_targets:
                log(f"starting {target.label} (wrangler dev --local)")
                target.start()
                running.append(target)
            levels_out = run_levels(w_targets, gateway, levels["worker"], requests, max_seconds, args.warmup)
            sdk = w_targets[0].cwd
            results["worker"] = {
                "labels": {t.name: t.label for t in w_targets},
                "versions": {"node": bench.run(["node", "--version"], env=w_targets[0].env).stdout.strip(),
                             **{p: json.loads((sdk / "node_modules" / p / "package.json").read_text())["version"]
                                for p in ("wrangler", "openai")}},
                "startup_seconds": {t.name: round(t.started_seconds, 2) for t in w_targets},
                "levels": levels_out,
                "ratios": {"worker_vs_plain_fetch": ratios_vs(levels_out, "worker", "plain-fetch-worker"),
                           "callers_vs_worker": ratios_vs(levels_out, "worker-callers", "worker"),
                           "callers_no_rate_vs_worker": ratios_vs(levels_out, "worker-callers-no-rate", "worker")},
            }
        results["goals"] = goals(results)
        log("done")
    finally:
        for target in running:
            target.stop()
        gateway.close()
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    results["meta"]["seconds"] = round(time.time() - started, 1)
    results["meta"]["loadavg_at_end"] = os.getloadavg()
    out = bench.save_results(results, args.json, started, quick=args.quick, prefix="load-")
    print(report(results))
    print(f"\n{'quick' if args.quick else 'full'} run: {results['meta']['seconds']:.0f} s, "
          f"commit {results['meta']['template_commit']} ({results['meta']['rendered_from']}); JSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
