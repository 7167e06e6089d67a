"""How the suite runs in parallel: which tests share a pytest-xdist worker, which start first.

The suite is cut into units; a unit runs on one worker, its tests in collection order:

- tests marked ``@pytest.mark.xdist_group("name")`` (pytest-xdist's own mark): one unit per
  name, across files. For an expensive session fixture used by several files, such as a
  Worker variant's ``npm install`` (tests/worker_toolchain.py, ``one_worker_each``);
- tests marked ``@pytest.mark.standalone``: a unit each, on any worker (they build nothing
  that another test reuses);
- every other test: one unit per file, so that the file's module-scoped fixtures (a render,
  a template release) are built once per run. A new file needs no mark to be correct.

Units start heaviest first (each unit's tests' seconds in the last run here, from pytest's
cache, else from tests/durations.json, else one second a test), and a worker takes the next
unit when it is down to its last test. Rewrite tests/durations.json after a whole-suite run
with ``--store-durations``.

xdist's controller sees only node ids. So each worker writes its tests' units to a JSON
file (named in its ``workerinput``) at the end of its collection, before it reports the
collection; the controller reads it when it schedules. Only public pytest and xdist API is
used: markers, ``pytest_configure_node``, ``pytest_xdist_make_scheduler`` and xdist's
scheduler protocol (``xdist.scheduler.protocol.Scheduling``).
"""
from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pytest

CACHE_KEY = "ai-gateway-starter/durations"
UNITS_FILE = "aig_units_file"  # the workerinput key
UNKNOWN_TEST_SECONDS = 1.0


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--store-durations", action="store_true",
                     help="write this run's test durations to tests/durations.json")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "standalone: the test shares no expensive fixture with its file's other "
        "tests; any worker may run it on its own (tests/scheduling.py)")


def durations_file(config: pytest.Config) -> Path:
    return config.rootpath / "tests" / "durations.json"


# ---- on each worker: which unit each collected test belongs to -----------------------------

def unit_of(item: pytest.Item) -> str:
    """The name of the unit ``item`` runs in (see the module's docstring)."""
    groups = sorted({str(m.args[0] if m.args else m.kwargs.get("name", "default"))
                     for m in item.iter_markers("xdist_group")})
    if groups:
        return "group:" + "_".join(groups)
    if item.get_closest_marker("standalone"):
        return "test:" + item.nodeid
    return "file:" + item.nodeid.split("::", 1)[0]


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reports the collection
def pytest_collection_finish(session: pytest.Session) -> None:
    workerinput = getattr(session.config, "workerinput", None)
    if workerinput and UNITS_FILE in workerinput:
        units = [unit_of(item) for item in session.items]
        Path(workerinput[UNITS_FILE]).write_text(json.dumps(units))


# ---- on the xdist controller ---------------------------------------------------------------

_units_dir = pytest.StashKey[Path]()


@pytest.hookimpl(optionalhook=True)  # an xdist hook: only called where xdist runs
def pytest_configure_node(node) -> None:
    config = node.config
    if _units_dir not in config.stash:
        config.stash[_units_dir] = Path(tempfile.mkdtemp(prefix="aig-units-"))
    node.workerinput[UNITS_FILE] = str(config.stash[_units_dir] / f"{node.gateway.id}.json")


def pytest_unconfigure(config: pytest.Config) -> None:
    if _units_dir in config.stash:
        shutil.rmtree(config.stash[_units_dir], ignore_errors=True)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """pytest.ini's ``--dist load``, and ``loadgroup`` (whose grouping pytest 9.2 broke,
    pytest-dev/pytest-xdist#1386): scheduled by units. ``loadfile`` and the others keep
    xdist's own schedulers."""
    if config.getoption("dist") not in ("load", "loadgroup"):
        return None
    return UnitScheduling(config, last_durations(config))


def last_durations(config: pytest.Config) -> dict[str, float]:
    """Node id -> seconds: the committed durations, updated by this machine's last runs."""
    try:
        durations = json.loads(durations_file(config).read_text())
    except (OSError, ValueError):
        durations = {}
    cache = getattr(config, "cache", None)  # None with -p no:cacheprovider
    if cache is not None:
        durations.update(cache.get(CACHE_KEY, {}))
    return durations


def heaviest_first(units: Sequence[str], ids: Sequence[str],
                   durations: dict[str, float]) -> list[list[int]]:
    """The test indices of each unit (``units[i]`` is test ``i``'s), heaviest unit first;
    units of equal weight in the order their first test was collected."""
    members: dict[str, list[int]] = {}
    for index, unit in enumerate(units):
        members.setdefault(unit, []).append(index)
    weight = {unit: sum(durations.get(ids[i], UNKNOWN_TEST_SECONDS) for i in indices)
              for unit, indices in members.items()}
    return [members[unit] for unit in sorted(members, key=lambda u: -weight[u])]


class UnitScheduling:
    """xdist's scheduler protocol: whole units to one worker each, heaviest first.

    A worker runs a test once it holds the next one (or is told to shut down), so a worker
    down to its last pending test gets the next unit; with none left, it is shut down.
    """

    def __init__(self, config: pytest.Config, durations: dict[str, float]) -> None:
        from xdist.workermanage import parse_tx_spec_config

        self.config, self.durations = config, durations
        self.numnodes = len(parse_tx_spec_config(config))
        self.node2collection: dict = {}
        self.node2pending: dict = {}
        self.collection: list[str] | None = None
        self.queue: list[list[int]] = []  # units not sent yet, in the order they start

    @property
    def nodes(self) -> list:
        return list(self.node2pending)

    @property
    def collection_is_completed(self) -> bool:
        return len(self.node2collection) >= self.numnodes

    @property
    def tests_finished(self) -> bool:
        return (self.collection_is_completed and not self.queue
                and all(len(pending) < 2 for pending in self.node2pending.values()))

    @property
    def has_pending(self) -> bool:
        return bool(self.queue) or any(self.node2pending.values())

    def add_node(self, node) -> None:
        self.node2pending[node] = []

    def add_node_collection(self, node, collection: Sequence[str]) -> None:
        if self.collection is not None and list(collection) != self.collection:
            self._report_collection_diff(node, collection)  # a late node that differs
            return
        self.node2collection[node] = list(collection)

    def mark_test_complete(self, node, item_index: int, duration: float = 0) -> None:
        self.node2pending[node].remove(item_index)
        self._feed(node)

    def mark_test_pending(self, item: str) -> None:
        self.queue.insert(0, [self.collection.index(item)])
        for node in self.nodes:
            self._feed(node)

    def remove_pending_tests_from_node(self, node, indices: Sequence[int]) -> None:
        raise NotImplementedError  # only work stealing asks a worker to give tests back

    def remove_node(self, node) -> str | None:
        """A worker ended. If it crashed, the rest of its tests go first to the others;
        returns the test it was running then."""
        pending = self.node2pending.pop(node)
        if not pending:
            return None
        if pending[1:]:
            self.queue.insert(0, pending[1:])
        for other in self.nodes:
            self._feed(other)
        return self.collection[pending[0]]

    def schedule(self) -> None:
        if self.collection is None:
            first, collection = next(iter(self.node2collection.items()))
            differing = [node for node, c in self.node2collection.items() if c != collection]
            for node in differing:
                self._report_collection_diff(node, self.node2collection[node], first)
            if differing:
                return
            self.collection = collection
            self.queue = heaviest_first(self._units(first), collection, self.durations)
            # Deal the heaviest units round the workers, one each per round.
            while self.queue and any(len(p) < 2 for p in self.node2pending.values()):
                for node in self.nodes:
                    if self.queue and len(self.node2pending[node]) < 2:
                        self._send(node, self.queue.pop(0))
        for node in self.nodes:
            self._feed(node)

    def _units(self, node) -> list[str]:
        """The unit of each test, as ``node`` wrote them; each test alone if it wrote none."""
        try:
            units = json.loads(Path(node.workerinput[UNITS_FILE]).read_text())
        except (KeyError, OSError, ValueError):
            units = None
        if not isinstance(units, list) or len(units) != len(self.collection):
            return list(self.collection)
        return units

    def _feed(self, node) -> None:
        if node.shutting_down:
            return
        while len(self.node2pending[node]) < 2 and self.queue:
            self._send(node, self.queue.pop(0))
        if not self.queue:
            node.shutdown()

    def _send(self, node, unit: list[int]) -> None:
        self.node2pending[node].extend(unit)
        node.send_runtest_some(unit)

    def _report_collection_diff(self, node, collection, first=None) -> None:
        from xdist.report import report_collection_diff

        first = first or next(iter(self.node2collection))
        message = report_collection_diff(self.node2collection[first], collection,
                                         first.gateway.id, node.gateway.id)
        self.config.hook.pytest_collectreport(report=pytest.CollectReport(
            nodeid=node.gateway.id, outcome="failed", longrepr=message, result=[]))


# ---- durations: kept in pytest's cache, and on request in tests/durations.json -------------

_SECONDS: dict[str, float] = {}  # node id -> setup + call + teardown, this run


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _SECONDS[report.nodeid] = _SECONDS.get(report.nodeid, 0.0) + report.duration


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    if hasattr(config, "workerinput") or not _SECONDS:
        return  # a worker: its reports reach the controller, which keeps them
    measured = {nodeid: round(seconds, 1) for nodeid, seconds in _SECONDS.items()}
    cache = getattr(config, "cache", None)
    if cache is not None:
        cache.set(CACHE_KEY, {**cache.get(CACHE_KEY, {}), **measured})
    if config.getoption("store_durations"):
        path = durations_file(config)
        try:
            stored = json.loads(path.read_text())
        except (OSError, ValueError):
            stored = {}
        stored = {k: v for k, v in stored.items()
                  if (config.rootpath / k.split("::", 1)[0]).is_file()}
        path.write_text(json.dumps(dict(sorted({**stored, **measured}.items())), indent=0) + "\n")
