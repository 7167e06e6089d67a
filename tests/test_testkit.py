"""The test infrastructure itself: tools/testkit.py, the parallel schedule of
tests/scheduling.py and the defaults tools/run_tests.py gives pytest."""
from __future__ import annotations

import json
import os
import socket
import sys
import urllib.request
from pathlib import Path

import pytest
from conftest import TEMPLATE_ROOT
from testkit import CommandFailed, FakeGateway, free_port, run


def test_run_captures_output_exit_code_and_times(tmp_path):
    code = "import sys; print('out'); print('err', file=sys.stderr); sum(range(3_000_000)); sys.exit(3)"
    result = run([sys.executable, "-c", code], cwd=tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (3, "out\n", "err\n")
    assert result.output == "out\nerr\n"
    assert result.seconds > 0 and result.cpu_seconds > 0
    with pytest.raises(CommandFailed, match=r"exited 3 after .*s:\nout\nerr"):
        result.check()
    code = "import sys; print('a', flush=True); print('b', file=sys.stderr, flush=True); print('c')"
    merged = run([sys.executable, "-c", code], merge=True)
    assert (merged.stdout, merged.stderr) == ("a\nb\nc\n", "")
    assert merged.check() is merged


def test_free_port_is_bindable():
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_fake_gateway_answers_like_the_provider_and_records_requests():
    with FakeGateway() as gateway:
        request = urllib.request.Request(
            f"{gateway.url}/acc/gw/openai/chat/completions",
            data=json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}).encode(),
            headers={"content-type": "application/json", "cf-aig-authorization": "Bearer t"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            body = json.loads(response.read())
            log_id = response.headers["cf-aig-log-id"]
    assert body["choices"][0]["message"]["content"] == gateway.reply == "Hello there"
    assert log_id == "LOG1"
    (seen,) = gateway.requests
    assert (seen["path"], seen["headers"]["cf-aig-authorization"]) == (
        "/v1/acc/gw/openai/chat/completions", "Bearer t")
    assert gateway.api_url == f"http://127.0.0.1:{gateway.port}/client/v4"


# ---------------------------------------------------------------------------------------------
# tests/scheduling.py: units and their order, on synthetic suites run with the real plugin

SUITE_A = """
import os, pathlib, pytest

def seen(name):  # which worker ran this test, for the assertions
    pathlib.Path(os.environ["SEEN"], name).write_text(os.environ.get("PYTEST_XDIST_WORKER", "-"))

@pytest.mark.parametrize("i", range(4))
def test_file_default(i):
    seen(f"a-file-{i}")

@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.xdist_group(f"npm:{n}"))
                                  for n in ("red", "blue")])
@pytest.mark.parametrize("i", range(3))
def test_variant(name, i):
    seen(f"{name}-a-{i}")

@pytest.mark.standalone
@pytest.mark.parametrize("i", range(4))
def test_alone(i):
    seen(f"a-alone-{i}")
"""
SUITE_B = """
import os, pathlib, pytest

def seen(name):
    pathlib.Path(os.environ["SEEN"], name).write_text(os.environ.get("PYTEST_XDIST_WORKER", "-"))

@pytest.mark.xdist_group("npm:red")  # the same group as test_a's red variant
@pytest.mark.parametrize("i", range(3))
def test_red_elsewhere(i):
    seen(f"red-b-{i}")

@pytest.mark.parametrize("i", range(3))
def test_file_default(i):
    seen(f"b-file-{i}")
"""


def run_suite(root: Path, *args: str) -> dict[str, str]:
    """Run SUITE_A and SUITE_B in ``root`` with tests/scheduling.py: test -> its worker."""
    seen = root / "seen"
    seen.mkdir()
    (root / "pytest.ini").write_text("[pytest]\n")
    (root / "test_a.py").write_text(SUITE_A)
    (root / "test_b.py").write_text(SUITE_B)
    # Only the plugins these runs need (hypothesis and schemathesis cost 2 CPU-s a process).
    env = {**os.environ, "SEEN": str(seen), "PYTHONPATH": str(TEMPLATE_ROOT / "tests"),
           "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    result = run([sys.executable, "-m", "pytest", "-p", "xdist", "-p", "scheduling",
                  "-p", "no:cacheprovider", "-q", *args], cwd=root, env=env, timeout=300)
    assert result.returncode == 0, result.output
    return {path.name: path.read_text() for path in seen.iterdir()}


@pytest.fixture(scope="module")
def ran_on(tmp_path_factory) -> dict[str, str]:
    """Both suites on three workers; the standalone tests weigh the most (tests/durations.json)."""
    root = tmp_path_factory.mktemp("scheduled")
    (root / "tests").mkdir()
    durations = {f"test_a.py::test_alone[{i}]": 100.0 for i in range(4)}
    (root / "tests" / "durations.json").write_text(json.dumps(durations))
    return run_suite(root, "-n", "3", "--dist", "load")


def workers_of(ran: dict[str, str], prefix: str) -> set[str]:
    return {worker for name, worker in ran.items() if name.startswith(prefix)}


def test_a_group_runs_on_one_worker_across_files(ran_on):
    assert len(ran_on) == 4 + 6 + 4 + 3 + 3
    assert len(workers_of(ran_on, "red-")) == 1  # test_a's and test_b's red tests
    assert len(workers_of(ran_on, "blue-")) == 1


def test_a_files_unmarked_tests_run_on_one_worker(ran_on):
    assert len(workers_of(ran_on, "a-file-")) == len(workers_of(ran_on, "b-file-")) == 1


def test_the_heaviest_units_start_first_one_per_worker(ran_on):
    # The four standalone tests weigh the most: the first three go one to each worker.
    assert workers_of(ran_on, "a-alone-") == {"gw0", "gw1", "gw2"}


def test_heaviest_units_start_first():
    from scheduling import heaviest_first

    ids = ["f.py::a", "f.py::b", "g.py::c", "h.py::d", "h.py::e"]
    units = ["file:f.py", "file:f.py", "group:npm", "test:h.py::d", "test:h.py::e"]
    durations = {"g.py::c": 30.0, "f.py::a": 2.5}
    # npm 30 s; f.py 2.5 s + 1 s (unknown tests weigh one second); d and e 1 s each, in
    # the order they were collected.
    assert heaviest_first(units, ids, durations) == [[2], [0, 1], [3], [4]]


def test_store_durations_writes_each_tests_seconds(tmp_path):
    (tmp_path / "tests").mkdir()
    run_suite(tmp_path, "-n", "0", "--store-durations")
    stored = json.loads((tmp_path / "tests" / "durations.json").read_text())
    assert len(stored) == 20
    assert all(isinstance(seconds, float) and seconds >= 0 for seconds in stored.values())
    assert "test_b.py::test_red_elsewhere[0]" in stored


def test_run_tests_defaults_to_parallel_verbose_runs():
    sys.path.insert(0, str(TEMPLATE_ROOT / "tools"))
    try:
        from run_tests import pytest_args, workers
    finally:
        sys.path.remove(str(TEMPLATE_ROOT / "tools"))
    assert pytest_args([]) == ["-v", "-n", str(workers()), "--durations=15"]
    assert pytest_args(["-n", "0", "-q", "tests/x.py"]) == ["-n", "0", "-q", "tests/x.py", "--durations=15"]
    assert pytest_args(["-n4", "--durations=3"]) == ["-v", "-n4", "--durations=3"]
