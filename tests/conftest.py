"""Shared fixtures: render this template (the working tree, uncommitted changes included).

Also how the suite runs in parallel (pytest-xdist; `tools/run_tests.py` passes ``-n auto``
and pytest.ini ``--dist loadgroup``): tests that share an expensive fixture stay on one
worker (see ``xdist_groups``), and the heaviest groups start first.
"""
from __future__ import annotations

import atexit
import inspect
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
from copier import run_copy

TEMPLATE_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TEMPLATE_ROOT / "tools"))

from cases import ACCOUNT_ID, AUTH_MODES, BASE_ANSWERS  # noqa: F401 - the shared test data
from testkit import Result, free_port, run  # noqa: F401 - the shared test kit

# Tests commit rendered projects and template clones: give git an identity that does
# not depend on the machine's configuration.
for _key, _value in {
    "GIT_AUTHOR_NAME": "template tests",
    "GIT_AUTHOR_EMAIL": "tests@ai-gateway-starter.invalid",
    "GIT_COMMITTER_NAME": "template tests",
    "GIT_COMMITTER_EMAIL": "tests@ai-gateway-starter.invalid",
}.items():
    os.environ.setdefault(_key, _value)


_plain_template: Path | None = None


def plain_template() -> Path:
    """This process's plain (non-git) copy of the working tree, uncommitted changes included.

    Rendering from it skips the git clone of the working tree Copier makes for every copy
    from a repository (about a third of a render's CPU). Tests about versions, ``_commit``
    or ``copier update`` render from their own template releases (tests/template_repo.py).
    """
    global _plain_template
    if _plain_template is None:
        from template_repo import template_dir

        root = Path(tempfile.mkdtemp(prefix="aig-template-"))
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        _plain_template = template_dir(root / "ai-gateway-starter")
    return _plain_template


def render(dst: Path, **answers) -> Path:
    """Render the template (the working tree as it is) into ``dst``; return ``dst``."""
    data = {**BASE_ANSWERS, **answers}
    run_copy(
        str(plain_template()),
        str(dst),
        data=data,
        defaults=True,
        unsafe=True,  # the template has a (copy-only, opt-in) task
        quiet=True,
    )
    return dst


def rendered_files(root: Path) -> set[str]:
    """All files under ``root`` as POSIX paths relative to it."""
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


# The Worker variants' session fixtures, one instance per run for every module that builds a
# Worker (test_worker_target, test_http_contract): defined in tests/worker_toolchain.py.
from worker_toolchain import npm_env, rendered, worker_project  # noqa: F401


@pytest.fixture
def render_project(tmp_path):
    """Factory fixture: ``render_project(**answers)`` renders into a fresh folder."""
    counter = iter(range(1000))

    def _render(**answers) -> Path:
        return render(tmp_path / f"project-{next(counter)}", **answers)

    return _render


# ---------------------------------------------------------------------------------------------
# Parallel runs (pytest-xdist with --dist loadgroup)
#
# A worker process builds its own module- and session-scoped fixtures. So that an expensive
# one (an npm install per Worker variant, a template release, a batch of refused copies) is
# built once per run, not once per worker, every test that uses it carries the same
# ``xdist_group`` and loadgroup sends the whole group to one worker:
#   - a test parametrized with a key of its module's ``VARIANTS`` table: one group per variant
#     (so each Worker variant is rendered and npm-installed once, on one worker);
#   - any other test using a module-, package- or session-scoped fixture defined in tests/:
#     one group per module and set of such fixtures that tests share.
# (xdist_groups has the details.) Everything else is scheduled test by test. Groups start heaviest first: by the seconds each
# test took in the last run (kept in pytest's cache), else by their number of tests.

DURATIONS_KEY = "ai-gateway-starter/durations"
_SHARED_SCOPES = {"module", "package", "session", "class"}


def _shared_fixtures(item: pytest.Item, names) -> list[str]:
    """Those of ``names`` that are module-, package- or session-scoped fixtures of this suite."""
    info = getattr(item, "_fixtureinfo", None)
    found = []
    for name in names:
        definitions = info.name2fixturedefs.get(name) if info else None
        if not definitions or definitions[-1].scope not in _SHARED_SCOPES:
            continue
        try:
            source = Path(inspect.getfile(definitions[-1].func)).resolve()
        except (TypeError, OSError):
            continue
        # The suite's own fixtures (not pytest's or a plugin's, such as tmp_path_factory).
        if source.is_relative_to(item.config.rootpath) and "site-packages" not in source.parts:
            found.append(name)
    return sorted(found)


def _variant_group(item: pytest.Item) -> str | None:
    """``<module>:<variant>`` for a test parametrized with a key of its module's VARIANTS."""
    variants = getattr(getattr(item, "module", None), "VARIANTS", None)
    callspec = getattr(item, "callspec", None)
    if isinstance(variants, dict) and callspec is not None:
        for value in callspec.params.values():
            if isinstance(value, str) and value in variants:
                return f"{Path(str(item.fspath)).stem}:{value}"
    return None


def xdist_groups(items: list[pytest.Item]) -> dict[int, str]:
    """``id(item) -> xdist_group`` for the tests that share an expensive fixture.

    Tests of one module that share a module-/session-scoped fixture of tests/ (the ones they
    ask for by name, else the ones they get through other fixtures) are joined into one
    group, transitively; tests whose fixtures do not overlap stay in separate groups, so one
    module's different expensive fixtures can be built side by side, each once.
    """
    groups: dict[int, str] = {}
    parent: dict[tuple[str, str], tuple[str, str]] = {}

    def find(key):
        while parent.setdefault(key, key) != key:
            key = parent[key]
        return key

    uses: dict[int, list[tuple[str, str]]] = {}
    for item in items:
        variant = _variant_group(item)
        if variant:
            groups[id(item)] = variant
            continue
        info = getattr(item, "_fixtureinfo", None)
        shared = _shared_fixtures(item, info.argnames if info else ()) or _shared_fixtures(
            item, item.fixturenames
        )
        if shared:
            stem = Path(str(item.fspath)).stem
            keys = [(stem, name) for name in shared]
            find(keys[0])
            for key in keys[1:]:
                parent[find(key)] = find(keys[0])
            uses[id(item)] = keys
    members: dict[tuple[str, str], set[str]] = {}
    for key in list(parent):
        members.setdefault(find(key), set()).add(key[1])
    for item_id, keys in uses.items():
        root = find(keys[0])
        groups[item_id] = f"{root[0]}:{'+'.join(sorted(members[root]))}"
    return groups


def _test_key(fspath: str, domain: str) -> str:
    return f"{Path(fspath).as_posix()}::{domain}"


def _heaviest_first(items: list[pytest.Item], durations: dict[str, float]) -> list[pytest.Item]:
    scope_of: dict[int, str] = {}
    weight: dict[str, float] = {}
    for item in items:
        marker = item.get_closest_marker("xdist_group")
        scope = f"@{marker.args[0]}" if marker and marker.args else item.nodeid
        scope_of[id(item)] = scope
        # Unknown tests (first run, new tests) count one second each.
        weight[scope] = weight.get(scope, 0.0) + durations.get(_test_key(*item.location[::2]), 1.0)
    position = {scope: i for i, scope in reversed(list(enumerate(scope_of[id(it)] for it in items)))}
    return sorted(items, key=lambda it: (-weight[scope_of[id(it)]], position[scope_of[id(it)]]))


@pytest.hookimpl(wrapper=True)  # marks before xdist reads them, its node ids checked after
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]):
    groups = xdist_groups(items)
    for item in items:
        if item.get_closest_marker("xdist_group") is None and id(item) in groups:
            item.add_marker(pytest.mark.xdist_group(groups[id(item)]))
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:  # an xdist worker: every worker sorts the same way
        items[:] = _heaviest_first(items, workerinput.get("aig_durations", {}))
    result = yield
    if workerinput is not None and getattr(config.option, "loadgroup", False):
        _group_suffixes(items)
    return result


def _group_suffixes(items: list[pytest.Item]) -> None:
    """Give each grouped test the ``@<group>`` node-id suffix loadgroup schedules by.

    pytest-xdist 3.8 writes it to ``item._nodeid``, which pytest 9.2's structured node ids no
    longer read, so every group would be silently split across workers
    (https://github.com/pytest-dev/pytest-xdist/issues/1386). Where the suffix is missing,
    this sets it the way pytest 9.2 stores a node id; where xdist managed, it does nothing.
    """
    for item in items:
        names = {str(m.args[0] if m.args else m.kwargs.get("name", "default"))
                 for m in item.iter_markers("xdist_group")}
        nodeid = item.nodeid
        if not names or nodeid.rfind("@") > nodeid.rfind("]"):
            continue
        suffixed = f"{nodeid}@{'_'.join(sorted(names))}"
        if hasattr(item, "_id"):
            from _pytest.nodeid import NodeId

            item._id = NodeId.parse(suffixed)
        else:
            item._nodeid = suffixed


@pytest.hookimpl(optionalhook=True)  # an xdist hook
def pytest_configure_node(node) -> None:
    """xdist controller -> each worker: the last run's durations (read once, so that every
    worker collects in the same order even if another run writes the cache meanwhile)."""
    config = node.config
    if not hasattr(config, "_aig_durations"):
        cache = getattr(config, "cache", None)  # None with -p no:cacheprovider
        config._aig_durations = cache.get(DURATIONS_KEY, {}) if cache else {}
    node.workerinput["aig_durations"] = config._aig_durations


_seconds: dict[str, float] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    key = _test_key(report.location[0], report.location[2])
    _seconds[key] = _seconds.get(key, 0.0) + report.duration


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    cache = getattr(config, "cache", None)  # None with -p no:cacheprovider
    if hasattr(config, "workerinput") or not _seconds or cache is None:
        return
    durations = {**cache.get(DURATIONS_KEY, {}), **{k: round(v, 2) for k, v in _seconds.items()}}
    cache.set(DURATIONS_KEY, durations)
