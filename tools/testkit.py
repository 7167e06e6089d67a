"""The one test kit of this repository, shared by tests/ and benchmarks/.

    from testkit import FakeGateway, Result, free_port, run

- ``run(args, cwd, env, timeout)``: run a command with captured text output, its duration
  and ``.check()``; it never raises on a non-zero exit by itself.
- ``free_port()``: a loopback TCP port nobody listens on right now.
- ``FakeGateway``: a loopback HTTP server playing the gateway and the unified API for the
  template's tests and the benchmarks: it answers like the provider the path names, records
  every request, and misbehaves on request (see its docstring). ``gateway.url`` stands in for
  ``AI_GATEWAY_BASE_URL``, ``gateway.api_url`` for ``CLOUDFLARE_API_BASE_URL``. (The rendered
  python-app carries its own, ``tests/fake_gateway.py``, for its owners' tests.)
- ``load_module(path, name)``: import a Python file that is not on ``sys.path``.
- ``clean_env(**extra)``: this environment without the rendered services' own variables.

``tests/conftest.py`` puts tools/ on ``sys.path``; the benchmarks do the same.
"""
from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Self

ROOT = Path(__file__).resolve().parents[1]
__all__ = ["ROOT", "CommandFailed", "FakeGateway", "Result", "clean_env", "free_port", "load_module",
           "run"]


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


class FakeGateway:
    """A loopback HTTP server playing the gateway and the unified API: records every request and
    answers like the provider the path names. Only 127.0.0.1, bounded by the test's lifetime.

    Hostile on request: a last message "redirect" is answered 307 to another path of this
    server, "drip" with a JSON body one byte every half second (a gateway that never finishes),
    "fail" with a 500 whose body echoes the gateway token (a service must never pass it on),
    "endless" with an answer that never ends (JSON, or with ``"stream": true`` OpenAI chunks of
    1,000 characters each, as fast as the reader takes them; about 64 MB at most), "trickle" with a
    stream of one chunk every 0.1 s for at most 60 s. ``open_answers`` counts the endless and
    trickling answers being written right now, ``hung_up`` those whose reader went away first.
    A request with ``"stream": true`` is answered with OpenAI's chunks: "Hello", " there", usage.
    """

    def __init__(self):
        import http.server
        import json
        import threading
        import time

        self.requests: list[dict] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                parsed = json.loads(body or b"null")
                outer.requests.append({
                    "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": parsed,
                })
                messages = (parsed or {}).get("messages") or [{}]
                prompt = messages[-1].get("content") if isinstance(messages[-1], dict) else None
                if prompt == "redirect":
                    self.send_response(307)
                    self.send_header("location", f"http://127.0.0.1:{outer.port}/elsewhere{self.path}")
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                if prompt == "drip":
                    self.send_response(200)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", "1000")
                    self.end_headers()
                    try:
                        for _ in range(60):  # at most 30 s, far past any deadline under test
                            self.wfile.write(b" ")
                            self.wfile.flush()
                            time.sleep(0.5)
                    except OSError:
                        outer.dropped += 1  # the Worker hung up: what a deadline should do
                    return
                if prompt in ("endless", "trickle"):
                    self.send_endless(prompt, (parsed or {}).get("stream") is True)
                    return
                if prompt == "fail":
                    token = self.headers.get("cf-aig-authorization", "")
                    self.send_json(500, {"error": {"message": f"upstream detail, sent with {token}"}})
                    return
                if (parsed or {}).get("stream") is True:
                    chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini"}
                    chunks = [
                        {**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hello"}}]},
                        {**chunk, "choices": [{"index": 0, "delta": {"content": " there"}}]},
                        {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
                        {**chunk, "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}},
                    ]
                    self.send_response(200)
                    self.send_header("content-type", "text/event-stream")
                    self.send_header("cf-aig-log-id", f"LOG{len(outer.requests)}")
                    self.send_header("cf-aig-cache-status", "MISS")
                    self.end_headers()
                    for data in [*map(json.dumps, chunks), "[DONE]"]:
                        self.wfile.write(f"data: {data}\n\n".encode())
                        self.wfile.flush()
                    self.close_connection = True
                    return
                if self.path.endswith("/anthropic/v1/messages"):
                    answer = {"id": "m", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
                              "content": [{"type": "text", "text": "pong"}], "stop_reason": "end_turn",
                              "usage": {"input_tokens": 1, "output_tokens": 1}}
                elif self.path.endswith(":generateContent"):
                    answer = {"candidates": [{"content": {"role": "model", "parts": [{"text": "pong"}]}, "index": 0}],
                              "modelVersion": "gemini-2.5-flash"}
                else:
                    answer = {"id": "c", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
                              "choices": [{"index": 0, "message": {"role": "assistant", "content": "pong"},
                                           "finish_reason": "stop"}],
                              "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}}
                self.send_json(200, answer)

            def send_json(self, status: int, payload: dict) -> None:
                """A whole JSON answer, with the log id the gateway gives each request."""
                out = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(out)))
                self.send_header("cf-aig-log-id", f"LOG{len(outer.requests)}")
                self.end_headers()
                self.wfile.write(out)

            def send_endless(self, prompt: str, stream: bool) -> None:
                """An answer that never ends (about 64 MB or 60 s at most): a bound or a hang-up must stop it."""
                text = "x" * 1000
                if stream:
                    piece = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
                             "choices": [{"index": 0, "delta": {"content": text}}]}
                    head, chunk = b"", f"data: {json.dumps(piece)}\n\n".encode()
                else:
                    head = (b'{"id": "c", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini", '
                            b'"choices": [{"index": 0, "message": {"role": "assistant", "content": "')
                    chunk = text.encode()
                self.send_response(200)
                self.send_header("content-type", "text/event-stream" if stream else "application/json")
                self.send_header("cf-aig-log-id", f"LOG{len(outer.requests)}")
                self.send_header("cf-aig-cache-status", "MISS")
                self.end_headers()
                self.close_connection = True
                trickle = prompt == "trickle"
                with outer.lock:
                    outer.open_answers += 1
                try:
                    self.wfile.write(head)
                    for _ in range(600 if trickle else 1024):
                        self.wfile.write(chunk if trickle else chunk * 64)
                        self.wfile.flush()
                        if trickle:
                            time.sleep(0.1)
                except OSError:
                    with outer.lock:
                        outer.hung_up += 1
                finally:
                    with outer.lock:
                        outer.open_answers -= 1

            def log_message(self, *args):
                pass

        self.dropped = 0
        self.open_answers = 0  # endless or trickling answers being written now
        self.hung_up = 0  # endless or trickling answers whose reader went away before the end
        self.lock = threading.Lock()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    reply = "pong"  # what every non-streamed answer says

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """Stands in for https://gateway.ai.cloudflare.com/v1 (AI_GATEWAY_BASE_URL)."""
        return f"{self.origin}/v1"

    @property
    def api_url(self) -> str:
        """Stands in for https://api.cloudflare.com/client/v4 (CLOUDFLARE_API_BASE_URL)."""
        return f"{self.origin}/client/v4"

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
