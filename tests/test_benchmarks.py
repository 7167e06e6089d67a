"""benchmarks/run.py --quick and benchmarks/load.py: every measurement runs and the JSON has
what the README reports.

No timing is asserted (CI machines are noisy): only that the run succeeds, that every
section and ratio is there and sane, and the request counts of `sync` and of the load
benchmark's gateway, which are exact.
Needs Node >= 22.12 like the Worker tests (tools/run_tests.py provides it).
"""
from __future__ import annotations

import json
import math
import subprocess
import sys

from conftest import TEMPLATE_ROOT, render

RUN = TEMPLATE_ROOT / "benchmarks" / "run.py"
LOAD = TEMPLATE_ROOT / "benchmarks" / "load.py"


def is_ratio(summary: dict) -> bool:
    return (
        summary["n"] >= 1
        and len(summary["samples"]) == summary["n"]
        and all(math.isfinite(v) and v > 0 for v in (summary["median"], summary["min"], summary["max"]))
        and summary["min"] <= summary["median"] <= summary["max"]
    )


def test_quick_run_writes_every_measurement(tmp_path, npm_seeds):
    out = tmp_path / "bench.json"
    # The Worker's npm install starts from this run's earlier Worker install, if one is done
    # or under way (tests/worker_toolchain.py NpmSeeds; any: each Worker variant has openai,
    # wrangler and smol-toml, all the benchmark installs): seconds instead of a full install.
    with npm_seeds.lock():
        seed = npm_seeds.best(set())
    proc = subprocess.run(
        [sys.executable, str(RUN), "--quick", "--json", str(out), *(["--npm-seed", str(seed)] if seed else [])],
        check=False, cwd=TEMPLATE_ROOT, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    assert "| measurement |" in proc.stdout  # the Markdown table
    results = json.loads(out.read_text())

    assert {"meta", "copy", "update", "worker", "python", "sync"} <= results.keys()
    assert results["meta"]["quick"] is True

    for section in ("copy", "update"):
        data = results[section]
        assert {"one-file", "python-app", "typescript-worker"} <= data.keys()
        for target in ("python-app", "typescript-worker", "python-app, trimmed repo"):
            assert is_ratio(data[target]["ratio_vs_one_file"]), (section, target)
        assert is_ratio(data["python-app"]["ratio_vs_trimmed_repo"])

    worker = results["worker"]
    for variant in ("sdk", "plain-fetch"):
        bundle = worker["bundle"][variant]
        assert bundle["kib"] > 0 and 0 < bundle["gzip_kib"] < bundle["kib"]
        assert 0 < bundle["minified"]["kib"] <= bundle["kib"]
    # The plain-fetch yardstick really has no SDK in it; the rendered Worker really has it.
    assert "openai" in worker["bundle"]["sdk"]["bytes_by_package"]
    assert "openai" not in worker["bundle"]["plain-fetch"]["bytes_by_package"]
    assert worker["bundle_ratio_sdk_vs_plain_fetch"]["kib"] > 1
    for key in ("active_ms", "window_ms"):
        assert worker["startup_profile"][f"difference_{key}"]["n"] >= 1
    for key in ("ready", "first_chat"):
        assert is_ratio(worker["wrangler_dev"][f"ratio_{key}"])
    assert worker["gateway_requests_served"] >= 2  # each variant's /chat reached the loopback gateway
    assert worker["npm_install_seeded"] is bool(seed)

    python = results["python"]
    assert is_ratio(python["chat"]["ratio_first_byte"]) and is_ratio(python["chat"]["ratio_exit"])
    assert is_ratio(python["import"]["ratio_client_vs_httpx"])
    assert is_ratio(python["import"]["ratio_cli_vs_httpx"])

    # Request counts are exact: one read, plus a write per gateway only when one is needed.
    for key, environments in (("1_env", 1), ("3_env", 3)):
        sync = results["sync"][key]
        assert len(sync["environments"]) == environments
        for run in ("first", "repeat", "after_drift"):
            assert sync[run]["requests"] == sync["minimum"][run], (key, run, sync[run])
            assert sync[run]["reported_requests"] == sync[run]["requests"]
        assert sync["repeat"]["writes"] == 0


def test_load_benchmark_drives_the_service_and_the_relay(tmp_path):
    """A tiny load.py run (rendered service and relay, c=1 and 16, JSON and SSE, the RSS
    run): every request answered, each one call at the loopback gateway, every field the
    README's table reads. LiteLLM and the Worker are left to the real runs (their start-up
    alone costs more than this test may)."""
    project = render(tmp_path / "svc", language="python-app", caller_auth="api-key")
    out = tmp_path / "load.json"
    proc = subprocess.run(
        [sys.executable, str(LOAD), "--quick", "--only", "flat,python", "--targets", "python,relay",
         "--levels", "1,16", "--scale", "0.1", "--warmup", "1", "--project", str(project), "--json", str(out)],
        check=False, cwd=TEMPLATE_ROOT, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    assert "| target | level | req/s |" in proc.stdout
    results = json.loads(out.read_text())
    levels = results["python"]["levels"]
    for target in ("python", "relay", "ceiling"):
        for key in ("json_c1", "sse_c1", "json_c16", "sse_c16"):
            m = levels[target][key]
            assert m["requests"] >= 1 and m["failures"] == 0, (target, key, m)
            # one gateway call per request (the warm-up request included), never more
            assert m["gateway_requests"] == m["requests"] + 1, (target, key, m)
            assert m["rps"] > 0 and m["p99_ms"] >= m["p50_ms"] > 0
            if target != "ceiling":
                assert m["rss_mb"] > 0 and m["cpu_ms_per_request"] >= 0
    assert results["python"]["ratios"]["python_vs_relay"]["json_c16"]["rps"] > 0
    for target in ("python", "relay"):
        samples = results["flat"][target]["samples"]
        assert samples[0]["requests"] == 1 and samples[-1]["requests"] == results["meta"]["flat"]["total"]
        assert all(s["rss_mb"] > 0 and s["failures"] == 0 for s in samples[1:])
    assert any(name.startswith("rps >= 0.8x relay") for name in results["goals"])
