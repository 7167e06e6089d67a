"""A loopback HTTP server that plays Cloudflare AI Gateway for the tests and the offline evals.

It records every request (method, path, headers, JSON body) and answers like the
gateway, in the format of the provider the path names: OpenAI chat completions
(also Workers AI's and the AI REST API's), Anthropic messages, Gemini
generateContent; server-sent events when asked to stream. Every answer carries
the gateway's ``cf-aig-log-id`` and ``cf-aig-cache-status`` headers.

Hostile gateways for the safety tests: ``redirect_to`` answers every request with a
307 to that URL; ``drip_seconds`` sends the answer's headers and then one byte every
so many seconds, never finishing in time; ``html_page`` answers 200 with that page as
``text/html`` (a captive portal, a login page); ``endless`` answers 200 and never stops
sending (JSON, or server-sent events when asked to stream); ``hold`` streams one delta and
then keeps the stream open, with a comment line every 20 ms, until the client hangs up;
``stream_pause`` sends a stream's events that many seconds apart (a reply seen growing).

A request can also pick its own misbehaviour by its last message (``by_prompt``):
"redirect", "drip", "fail" (a 500 whose message echoes the gateway token, which a service
must never pass on), "endless" or "trickle" (a stream of one delta every 0.1 s): one server
then answers a whole table of cases sent through a service running in another process.
OpenAI-compatible answers follow the request (``/v1``'s pass-through): with ``tools``, the model
calls the first tool with ``{"q": <the last message>}`` (streamed as tool-call deltas);
after a ``tool`` message it answers "The tool answered: <its content>"; a ``response_format``
of JSON gets ``{"answer": <the reply>}``; ``.../embeddings`` gets one vector per input.
``echo`` answers the last message instead of ``reply``, or X for "Reply with exactly: X"
(deterministic answers for the evals).
A PATCH plays the Cloudflare API's log feedback (``api_url``), recorded like the rest.
``numbered_log_ids`` gives the answer to the n-th request the log id ``LOGn``, and
``stream_usage`` ends OpenAI streams with the usage chunk. Endless answers stop after 64 MiB,
held and trickling ones after 60 s: a test that goes wrong still ends.

It speaks HTTP/1.1 with keep-alive: ``connections`` counts the connections it accepted;
``open_answers`` counts the endless, held and trickling answers being sent right now, and
``hang_ups`` (and the ``hung_up`` event) those a client closed before their end.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOG_ID = "01JTESTLOGID0000000000000"
USAGE = {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
PROMPTS = ("redirect", "drip", "fail", "endless", "trickle")  # what by_prompt understands
ENDLESS_BYTES = 64 * 1024 * 1024  # where an "endless" answer stops after all
HELD_SECONDS = 60.0  # where a held or trickling answer stops after all
DRIP_SECONDS = 30.0  # where a dripping answer stops: far past any deadline under test


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: dict

    def __getitem__(self, name: str):
        """``request["path"]`` reads ``request.path`` (for code written for dicts)."""
        return getattr(self, name)


@dataclass
class FakeGateway:
    """Start with ``with FakeGateway() as gateway:``; ``gateway.url`` is the base URL."""

    reply: str = "Hello from the gateway"
    status: int = 200  # set to e.g. 429 or 500 to make every answer fail
    redirect_to: str | None = None
    drip_seconds: float | None = None
    html_page: str | None = None
    endless: bool = False
    hold: bool = False
    stream_pause: float = 0.0
    requests: list[Recorded] = field(default_factory=list)
    connections: int = 0
    hung_up: threading.Event = field(default_factory=threading.Event)
    by_prompt: bool = False
    numbered_log_ids: bool = False
    stream_usage: bool = False
    echo: bool = False
    usage: dict = field(default_factory=lambda: dict(USAGE))
    open_answers: int = 0
    hang_ups: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __enter__(self) -> FakeGateway:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True  # a dripping answer must not hold up the close
        self._server.block_on_close = False
        # shutdown() waits for the serve loop to poll: 10 ms instead of the default 0.5 s.
        serve = threading.Thread(target=self._server.serve_forever, args=(0.01,), daemon=True)
        serve.start()
        return self

    def reset(self) -> None:
        """Back to a well-behaved gateway with no requests recorded (one server, many tests)."""
        self.reply = "Hello from the gateway"
        self.status = 200
        self.echo = False
        self.redirect_to = None
        self.drip_seconds = None
        self.html_page = None
        self.endless = False
        self.hold = False
        self.stream_pause = 0.0
        self.requests.clear()
        self.connections = 0
        self.hang_ups = 0
        self.hung_up.clear()

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        """Stands in for https://gateway.ai.cloudflare.com/v1 (AI_GATEWAY_BASE_URL)."""
        return f"{self.origin}/v1"

    @property
    def api_url(self) -> str:
        """Stands in for https://api.cloudflare.com/client/v4 (CLOUDFLARE_API_BASE_URL)."""
        return f"{self.origin}/client/v4"

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def log_id(self) -> str:
        """The log id of the answer to the latest request."""
        return f"LOG{len(self.requests)}" if self.numbered_log_ids else LOG_ID

    def misbehaviour(self, body: dict) -> str | None:
        """What ``by_prompt`` makes of this request: one of PROMPTS, or None."""
        messages = body.get("messages") if self.by_prompt else None
        last = messages[-1] if isinstance(messages, list) and messages else None
        prompt = last.get("content") if isinstance(last, dict) else None
        return prompt if prompt in PROMPTS else None

    def count_open(self, change: int) -> None:
        with self._lock:
            self.open_answers += change

    def count_hang_up(self) -> None:
        with self._lock:
            self.hang_ups += 1
        self.hung_up.set()


def completion(reply: str, model: str, usage: dict = USAGE) -> dict:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 1700000000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply},
                "finish_reason": "stop",
            }
        ],
        "usage": usage,
    }


def anthropic_message(reply: str, model: str) -> dict:
    return {
        "id": "msg_test",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": reply}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 3, "output_tokens": 4},
    }


def gemini_content(reply: str, path: str = "") -> dict:
    model = path.rsplit("/models/", 1)[-1].split(":", 1)[0] if "/models/" in path else ""
    return {
        "candidates": [
            {
                "content": {"role": "model", "parts": [{"text": reply}]},
                "finishReason": "STOP",
                "index": 0,
            }
        ],
        "modelVersion": model,
    }


def echoed(body: dict) -> str:
    """``echo``'s reply: X for "Reply with exactly: X", else the last message's text."""
    messages = body.get("messages") or [{}]
    text = messages[-1].get("content")
    text = text if isinstance(text, str) else json.dumps(text)
    asked = re.search(r"reply with exactly: (.+)$", text, re.IGNORECASE | re.MULTILINE)
    return asked.group(1).strip() if asked else text


def tool_call(body: dict) -> dict | None:
    """The call the fake model makes: the first tool, unless a tool already answered."""
    messages = body.get("messages") or [{}]
    if not body.get("tools") or messages[-1].get("role") == "tool":
        return None
    name = body["tools"][0]["function"]["name"]
    arguments = json.dumps({"q": messages[-1].get("content")})
    return {"id": "call_1", "type": "function", "function": {"name": name, "arguments": arguments}}


def openai_reply(body: dict, reply: str) -> str:
    messages = body.get("messages") or [{}]
    if messages[-1].get("role") == "tool":
        reply = f"The tool answered: {messages[-1].get('content')}"
    if (body.get("response_format") or {}).get("type") in ("json_object", "json_schema"):
        reply = json.dumps({"answer": reply})
    return reply


def embeddings_answer(body: dict) -> dict:
    inputs = body["input"] if isinstance(body.get("input"), list) else [body.get("input")]
    data = [
        {"object": "embedding", "index": i, "embedding": [float(len(str(text))), 0.5, -0.5]}
        for i, text in enumerate(inputs)
    ]
    usage = {"prompt_tokens": 3, "total_tokens": 3}
    return {"object": "list", "data": data, "model": body.get("model", ""), "usage": usage}


def tool_call_answer(call: dict, model: str, stream: bool) -> tuple[str, bytes]:
    head = {"id": "chatcmpl-test", "created": 1700000000, "model": model}
    if not stream:
        message = {"role": "assistant", "content": None, "tool_calls": [call]}
        choice = {"index": 0, "message": message, "finish_reason": "tool_calls"}
        answer = {**head, "object": "chat.completion", "choices": [choice], "usage": USAGE}
        return "application/json", json.dumps(answer).encode()
    arguments = call["function"]["arguments"]
    first = {**call, "index": 0, "function": {"name": call["function"]["name"], "arguments": ""}}
    deltas = [
        {"role": "assistant", "content": None, "tool_calls": [first]},
        {"tool_calls": [{"index": 0, "function": {"arguments": arguments[:5]}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": arguments[5:]}}]},
        {},
    ]
    chunks = [
        {
            **head,
            "object": "chat.completion.chunk",
            "choices": [
                {"index": 0, "delta": delta, "finish_reason": None if delta else "tool_calls"}
            ],
        }
        for delta in deltas
    ]
    events = [f"data: {json.dumps(chunk)}\n\n" for chunk in chunks]
    return "text/event-stream", "".join([*events, "data: [DONE]\n\n"]).encode()


def answer_for(
    path: str, body: dict, reply: str, usage: dict = USAGE, stream_usage: bool = False
) -> tuple[str, bytes]:
    """Content type and payload in the format of the provider the path names."""
    model = body.get("model", "")
    if path.endswith("/embeddings"):
        return "application/json", json.dumps(embeddings_answer(body)).encode()
    if path.endswith("/anthropic/v1/messages"):
        if body.get("stream"):
            return "text/event-stream", anthropic_stream(reply, model)
        return "application/json", json.dumps(anthropic_message(reply, model)).encode()
    if ":streamGenerateContent" in path:
        event = json.dumps(gemini_content(reply, path))
        return "text/event-stream", f"data: {event}\n\n".encode()
    if ":generateContent" in path:
        return "application/json", json.dumps(gemini_content(reply, path)).encode()
    call = tool_call(body)
    if call is not None:
        return tool_call_answer(call, model, bool(body.get("stream")))
    reply = openai_reply(body, reply)
    if body.get("stream"):
        return "text/event-stream", stream_events(reply, model, usage if stream_usage else None)
    return "application/json", json.dumps(completion(reply, model, usage)).encode()


def anthropic_stream(reply: str, model: str) -> bytes:
    message = {**anthropic_message("", model), "content": []}
    events = [
        ("message_start", {"type": "message_start", "message": message}),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": reply},
            },
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("message_stop", {"type": "message_stop"}),
    ]
    return "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events).encode()


def stream_events(reply: str, model: str, usage: dict | None = None) -> bytes:
    """The reply split in words, as OpenAI's server-sent events; with ``usage``, the
    usage chunk OpenAI sends last when asked (``stream_options.include_usage``)."""
    head = {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": model,
    }
    words = reply.split(" ")
    chunks: list[dict] = [
        {
            **head,
            "choices": [
                {
                    "index": 0,
                    "delta": {"content": word if i == 0 else " " + word},
                    "finish_reason": None,
                }
            ],
        }
        for i, word in enumerate(words)
    ]
    if usage is not None:
        chunks.append({**head, "choices": [], "usage": usage})
    events = [f"data: {json.dumps(chunk)}\n\n" for chunk in chunks]
    return "".join([*events, "data: [DONE]\n\n"]).encode()


class _Handler(BaseHTTPRequestHandler):
    """The fake's HTTP side; ``gateway`` is the FakeGateway it records into."""

    gateway: FakeGateway
    protocol_version = "HTTP/1.1"  # keep-alive: one connection serves many requests
    disable_nagle_algorithm = True  # headers and body go out at once, not 40 ms apart

    def setup(self) -> None:
        self.gateway.connections += 1
        super().setup()

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        length = int(self.headers.get("content-length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        headers = {name.lower(): value for name, value in self.headers.items()}
        gateway = self.gateway
        gateway.requests.append(Recorded("POST", self.path, headers, body))
        asked = gateway.misbehaviour(body)
        if gateway.redirect_to or asked == "redirect":
            self.send_response(307)
            elsewhere = f"{gateway.origin}/elsewhere{self.path}"  # by_prompt: this server
            self.send_header("location", gateway.redirect_to or elsewhere)
            self.send_header("content-length", "0")
            self.end_headers()
        elif gateway.drip_seconds or asked == "drip":
            self._drip(gateway.drip_seconds or 0.5)
        elif gateway.endless or gateway.hold or asked in ("endless", "trickle"):
            kind = "hold" if gateway.hold else asked or "endless"
            stream = bool(body.get("stream")) or kind != "endless"
            self._forever(kind, stream, model=body.get("model", ""))
        elif asked == "fail":
            token = headers.get("cf-aig-authorization", "")
            error = {"error": {"message": f"upstream detail, sent with {token}"}}
            self._answer(500, "application/json", json.dumps(error).encode())
        elif gateway.html_page:
            self._answer(200, "text/html", gateway.html_page.encode())
        elif gateway.status != 200:
            error = {"error": {"message": "upstream failed", "type": "server_error"}}
            self._answer(gateway.status, "application/json", json.dumps(error).encode())
        else:
            reply = echoed(body) if gateway.echo else gateway.reply
            content_type, payload = answer_for(
                self.path, body, reply, gateway.usage, gateway.stream_usage
            )
            if self.gateway.stream_pause and content_type == "text/event-stream":
                self._paced(payload, self.gateway.stream_pause)
            else:
                self._answer(200, content_type, payload)

    def do_PATCH(self) -> None:  # noqa: N802 - http.server's naming
        """The Cloudflare API's log feedback (``{api_url}/accounts/.../logs/<id>``): recorded,
        answered as the API does; ``status`` fails it as it fails the gateway."""
        length = int(self.headers.get("content-length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        headers = {name.lower(): value for name, value in self.headers.items()}
        self.gateway.requests.append(Recorded("PATCH", self.path, headers, body))
        ok = self.gateway.status == 200 and "/ai-gateway/gateways/" in self.path
        errors = [] if ok else [{"code": 7002, "message": "Not Found"}]
        answer = {"success": ok, "errors": errors, "messages": [], "result": {} if ok else None}
        self._answer(200 if ok else 404, "application/json", json.dumps(answer).encode())

    def _answer(self, status: int, content_type: str, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(payload)))
        self.send_header("cf-aig-log-id", self.gateway.log_id())
        if status == 200:  # a failed answer is never a cache hit or miss
            self.send_header("cf-aig-cache-status", "MISS")
        self.end_headers()
        self.wfile.write(payload)

    def _paced(self, payload: bytes, pause: float) -> None:
        """A whole stream, one event every ``pause`` seconds."""
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.send_header("cf-aig-log-id", self.gateway.log_id())
        self.send_header("cf-aig-cache-status", "MISS")
        self.end_headers()
        try:
            for event in payload.split(b"\n\n")[:-1]:
                self._chunk(event + b"\n\n")
                time.sleep(pause)
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            self.gateway.hung_up.set()  # the client went away mid-stream

    def _drip(self, seconds: float) -> None:
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", "1000")
        self.end_headers()
        self.close_connection = True
        try:
            for _ in range(min(1000, int(DRIP_SECONDS / seconds))):
                self.wfile.write(b" ")
                self.wfile.flush()
                time.sleep(seconds)
        except OSError:
            pass  # the client gave up: that is the point

    def _forever(self, kind: str, stream: bool, model: str) -> None:
        """An answer that never ends ("endless", up to ENDLESS_BYTES), or a stream held open
        with a comment line every 20 ms ("hold") or a delta every 0.1 s ("trickle"), up to
        HELD_SECONDS. The body ends when the connection closes (no length, not chunked),
        so a client that stops reading can only hang up."""
        self.send_response(200)
        self.send_header("content-type", "text/event-stream" if stream else "application/json")
        self.send_header("connection", "close")
        self.send_header("cf-aig-log-id", self.gateway.log_id())
        self.send_header("cf-aig-cache-status", "MISS")
        self.end_headers()
        self.close_connection = True
        first, chunk, pause = _endless_parts(kind, stream, model)
        chunks = ENDLESS_BYTES // len(chunk) if kind == "endless" else int(HELD_SECONDS / pause)
        self.gateway.count_open(+1)
        try:
            self.wfile.write(first)
            for _ in range(chunks):
                self.wfile.write(chunk)
                self.wfile.flush()
                time.sleep(pause)
        except OSError:
            self.gateway.count_hang_up()  # the client closed the answer: that is the point
        finally:
            self.gateway.count_open(-1)

    def _chunk(self, data: bytes) -> None:
        if data:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep test output clean


def _endless_parts(kind: str, stream: bool, model: str) -> tuple[bytes, bytes, float]:
    """(what is sent first, the chunk sent again and again, the pause between chunks)."""

    def first_event(text: str) -> bytes:
        return stream_events(text, model).split(b"\n\n")[0] + b"\n\n"

    if kind == "hold":
        return first_event("Hello"), b": keep-alive\n\n", 0.02
    if kind == "trickle":
        return b"", first_event("x" * 1000), 0.1
    if stream:
        return b"", first_event("x" * 1000) * 64, 0
    return b'{"choices": [{"message": {"content": "', b"x" * 65536, 0


def _handler_for(gateway: FakeGateway) -> type[BaseHTTPRequestHandler]:
    return type("Handler", (_Handler,), {"gateway": gateway})


FAKE_SETTINGS = {
    "CLOUDFLARE_ACCOUNT_ID": "0123456789abcdef0123456789abcdef",
    "CF_AIG_TOKEN": "fake-gateway-token",
    "OPENAI_API_KEY": "fake-openai-key",
    "ANTHROPIC_API_KEY": "fake-anthropic-key",
    "GOOGLE_API_KEY": "fake-google-key",
    "CLOUDFLARE_API_TOKEN": "fake-api-token",
}


def main(argv: list[str]) -> int:
    """``python3 fake_gateway.py [--echo] -- COMMAND...``: COMMAND run against this fake
    (AI_GATEWAY_BASE_URL and CLOUDFLARE_API_BASE_URL set to it, stand-ins for every secret and
    id); its exit code (CI's evals)."""
    import os
    import subprocess

    command = argv[argv.index("--") + 1 :] if "--" in argv else []
    if not command:
        print("usage: fake_gateway.py [--echo] -- COMMAND...", file=sys.stderr)
        return 2
    with FakeGateway(echo="--echo" in argv[: argv.index("--")]) as gateway:
        # Stand-ins for every secret and id: no real token goes even to this fake.
        env = {**os.environ, **FAKE_SETTINGS, "AI_GATEWAY_BASE_URL": gateway.url}
        env["CLOUDFLARE_API_BASE_URL"] = gateway.api_url
        return subprocess.run(command, env=env, check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
