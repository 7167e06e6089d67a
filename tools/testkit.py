"""The one test kit of this repository, shared by tests/ and benchmarks/.

    from testkit import FakeGateway, Result, free_port, run

- ``run(args, cwd, env, timeout)``: run a command with captured text output, its duration
  and ``.check()``; it never raises on a non-zero exit by itself.
- ``free_port()``: a loopback TCP port nobody listens on right now.
- ``FakeGateway``: the rendered projects' loopback gateway (template/_shared/fake_gateway.py:
  the python-app's ``tests/fake_gateway.py``, the Worker's ``scripts/fake_gateway.py``), set up
  for the template's tests and the benchmarks: it answers like the provider the path names,
  records every request, and misbehaves when the prompt asks (see its docstring).
  ``gateway.url`` stands in for ``AI_GATEWAY_BASE_URL``, ``gateway.api_url`` for
  ``CLOUDFLARE_API_BASE_URL``.
- ``load_module(path, name)``: import a Python file that is not on ``sys.path``.
- ``clean_env(**extra)``: this environment without the rendered services' own variables.
- ``ServiceProcess(project, env, log)``: a rendered python-app's ``python -m <package> serve``
  on a free loopback port, started and stopped as a context manager.

``tests/conftest.py`` puts tools/ on ``sys.path``; the benchmarks do the same.
"""
from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Self

ROOT = Path(__file__).resolve().parents[1]
__all__ = ["ROOT", "CommandFailed", "FakeGateway", "Result", "ServiceProcess", "clean_env", "free_port",
           "load_module", "run"]


class CommandFailed(AssertionError):
    """A command exited non-zero where it had to succeed (an assertion in tests)."""


@dataclass
class Result:
    """What a command did: its exit code, output, wall time and CPU time.

    ``cpu_seconds`` is user + system CPU of the command and the processes it waited for (git
    under copier, say), from this process's children's resource usage: a busy machine
    stretches wall time, hardly CPU time. Exact only while no other child of this process
    ends meanwhile (true for sequential callers such as the benchmarks).
    """

    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    cpu_seconds: float = 0.0

    @property
    def output(self) -> str:
        """stdout, then stderr (stderr is empty when ``run(..., merge=True)``)."""
        return self.stdout + self.stderr

    def check(self) -> Result:
        """``self`` if the command exited 0, else raise with its last output."""
        if self.returncode != 0:
            raise CommandFailed(
                f"`{' '.join(self.args)}` exited {self.returncode} after {self.seconds:.1f}s:\n"
                f"{self.output[-6000:]}"
            )
        return self


def run(args, cwd: Path | str | None = None, env: dict[str, str] | None = None,
        timeout: float = 600, merge: bool = False) -> Result:
    """Run ``args`` (str or Path items) with stdin closed; ``merge`` interleaves stderr into
    stdout in the order it was written. A timeout raises ``subprocess.TimeoutExpired``."""
    argv = [str(a) for a in args]
    cpu_before = _children_cpu()
    start = time.perf_counter()
    proc = subprocess.run(
        argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if merge else subprocess.PIPE, text=True, timeout=timeout,
        check=False,
    )
    seconds = time.perf_counter() - start
    return Result(argv, proc.returncode, proc.stdout, proc.stderr or "", seconds,
                  _children_cpu() - cpu_before)


def _children_cpu() -> float:
    try:
        import resource  # POSIX only
    except ImportError:
        return 0.0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without the app's variables (a developer's shell may have them)."""
    env = {**os.environ, **extra}
    for name in ("CF_AIG_TOKEN", "OPENAI_API_KEY", "CLOUDFLARE_ACCOUNT_ID", "SERVICE_API_KEY"):
        env.pop(name, None)
    return env


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it, so parallel test
    processes do not collide the way fixed port numbers would)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServiceProcess:
    """``python -m <package> serve`` of the rendered python-app in ``project`` on a free
    loopback port, in its own process group; everything it prints goes to ``log``."""

    def __init__(self, project: Path, env: dict[str, str], log: Path, package: str = "demo_svc"):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.project, self.env, self.log, self.package = project, env, log, package

    def __enter__(self) -> Self:
        self.log_file = self.log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.package, "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=self.project, env=self.env, stdout=self.log_file, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
        give_up = time.monotonic() + 60
        while self.proc.poll() is None and time.monotonic() < give_up:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.__exit__()
        raise AssertionError(f"the service did not start:\n{self.log.read_text()[-3000:]}")

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log_file.close()


def load_module(path: Path, name: str) -> ModuleType:
    """Import the Python file ``path`` as module ``name`` (once; later calls reuse it)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


# The one fake gateway: the rendered projects' own (the python-app's tests, the Worker's evals),
# loaded from the template.
_rendered_fake = load_module(ROOT / "template" / "_shared" / "fake_gateway.py",
                             "python_app_fake_gateway")


@dataclass
class FakeGateway(_rendered_fake.FakeGateway):
    """template/_shared/fake_gateway.py's FakeGateway, set up the way this
    repository's tests and benchmarks drive a service running in another process (a Worker
    under wrangler dev, uvicorn): a request's prompt picks its misbehaviour ("redirect",
    "drip", "fail", "endless", "trickle"), the answer to the n-th request has the log id
    ``LOGn``, every answer says "Hello there" and streams end with the usage chunk. ``requests``
    holds each request (``r["path"]``, ``r["headers"]``, ``r["body"]``); ``open_answers`` and
    ``hang_ups`` count the endless and trickling answers being sent and those cut short.
    """

    reply: str = "Hello there"  # two words: a stream of two deltas
    by_prompt: bool = True
    numbered_log_ids: bool = True
    stream_usage: bool = True
    usage: dict = field(default_factory=lambda: {"prompt_tokens": 1, "completion_tokens": 2,
                                                 "total_tokens": 3})
