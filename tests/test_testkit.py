"""The test infrastructure itself: tools/testkit.py, the xdist grouping in conftest.py and
the defaults tools/run_tests.py gives pytest."""
from __future__ import annotations

import json
import socket
import sys
import urllib.request

import pytest
from conftest import TEMPLATE_ROOT
from testkit import CommandFailed, FakeGateway, free_port, run

pytest_plugins = ["pytester"]


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
    assert body["choices"][0]["message"]["content"] == gateway.reply == "pong"
    assert log_id == "LOG1"
    (seen,) = gateway.requests
    assert (seen["path"], seen["headers"]["cf-aig-authorization"]) == (
        "/v1/acc/gw/openai/chat/completions", "Bearer t")
    assert gateway.api_url == f"http://127.0.0.1:{gateway.port}/client/v4"


# ---------------------------------------------------------------------------------------------
# conftest.py's xdist groups, on a synthetic suite that loads the real conftest

CONFTEST = f"""
import importlib.util, json, os, sys
sys.path.insert(0, {str(TEMPLATE_ROOT / "tests")!r})  # what the real conftest imports
spec = importlib.util.spec_from_file_location("aig_conftest", {str(TEMPLATE_ROOT / "tests" / "conftest.py")!r})
aig = importlib.util.module_from_spec(spec)
spec.loader.exec_module(aig)
pytest_collection_modifyitems = aig.pytest_collection_modifyitems

def pytest_collection_finish(session):
    groups = {{}}
    for item in session.items:
        mark = item.get_closest_marker("xdist_group")
        groups[item.name] = mark.args[0] if mark else None
    with open(os.environ["GROUPS_OUT"], "w") as out:
        json.dump({{"groups": groups, "order": [i.name for i in session.items]}}, out)
"""

SUITE = """
import pytest

VARIANTS = {"small": {}, "big": {}}

@pytest.fixture(scope="module")
def release():
    return 1

@pytest.fixture(scope="module")
def refusals():
    return 2

@pytest.fixture(scope="module")
def renders(release):
    return 3

@pytest.fixture
def env(release):
    return 4

@pytest.mark.parametrize("name", VARIANTS)
def test_variant(name):
    pass

def test_uses_release(release):
    pass

def test_uses_release_and_refusals(release, refusals):
    pass

def test_uses_renders(renders):
    pass

def test_through_a_function_fixture(env):
    pass

def test_alone(tmp_path):
    pass
"""


def collect(pytester, monkeypatch, tmp_path, *args: str) -> dict:
    out = tmp_path / "groups.json"
    monkeypatch.setenv("GROUPS_OUT", str(out))
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest_subprocess("--co", "-q", "-p", "no:cacheprovider", *args)
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    return json.loads(out.read_text())


def test_tests_sharing_an_expensive_fixture_share_an_xdist_group(pytester, monkeypatch, tmp_path):
    groups = collect(pytester, monkeypatch, tmp_path)["groups"]
    assert groups["test_variant[small]"] == "test_suite:small"
    assert groups["test_variant[big]"] == "test_suite:big"
    # release and refusals are asked for together: one group holds both and every test of
    # either; renders (which builds on release, but is not asked for beside it) is its own.
    joined = "test_suite:refusals+release"
    assert groups["test_uses_release"] == groups["test_uses_release_and_refusals"] == joined
    assert groups["test_through_a_function_fixture"] == joined
    assert groups["test_uses_renders"] == "test_suite:renders"
    assert groups["test_alone"] is None


def test_an_xdist_worker_starts_the_heaviest_groups_first(pytester, monkeypatch, tmp_path):
    # What an xdist worker sees: the controller's durations from the previous run.
    pytester.makepyfile(worker_input="""
import pytest

@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    config.workerinput = {"aig_durations": {"test_suite.py::test_uses_renders": 30.0,
                                            "test_suite.py::test_alone": 5.0}}
""")
    order = collect(pytester, monkeypatch, tmp_path, "-p", "worker_input")["order"]
    assert order[:2] == ["test_uses_renders", "test_alone"]
    # Then the 3-test group (unknown tests weigh one second each), then the single variants.
    assert set(order[2:5]) == {"test_uses_release", "test_uses_release_and_refusals",
                               "test_through_a_function_fixture"}


def test_under_xdist_each_group_runs_on_one_worker(pytester, monkeypatch, tmp_path):
    """The groups hold under pytest-xdist's loadgroup (also where xdist's own node-id suffix
    does not take, see conftest._group_suffixes)."""
    seen = tmp_path / "seen"
    seen.mkdir()
    monkeypatch.setenv("SEEN", str(seen))
    monkeypatch.setenv("GROUPS_OUT", str(tmp_path / "groups.json"))
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_spread="""
import os, pathlib, pytest

VARIANTS = {"red": {}, "blue": {}}

@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("i", range(6))
def test_variant(name, i):
    worker = os.environ["PYTEST_XDIST_WORKER"]
    pathlib.Path(os.environ["SEEN"], f"{name}-{i}").write_text(worker)
""")
    result = pytester.runpytest_subprocess("-n", "2", "--dist", "loadgroup", "-p", "no:cacheprovider")
    assert result.ret == 0, result.stdout.str()
    workers: dict[str, set[str]] = {}
    for path in seen.iterdir():
        workers.setdefault(path.name.split("-")[0], set()).add(path.read_text())
    assert {name: len(ids) for name, ids in workers.items()} == {"red": 1, "blue": 1}, workers
    assert len(list(seen.iterdir())) == 12


def test_run_tests_defaults_to_parallel_verbose_runs():
    sys.path.insert(0, str(TEMPLATE_ROOT / "tools"))
    try:
        from run_tests import pytest_args, workers
    finally:
        sys.path.remove(str(TEMPLATE_ROOT / "tools"))
    assert pytest_args([]) == ["-v", "-n", str(workers()), "--durations=15"]
    assert pytest_args(["-n", "0", "-q", "tests/x.py"]) == ["-n", "0", "-q", "tests/x.py", "--durations=15"]
    assert pytest_args(["-n4", "--durations=3"]) == ["-v", "-n4", "--durations=3"]
