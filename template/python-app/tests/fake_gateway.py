"""A loopback HTTP server that plays Cloudflare AI Gateway for the tests.

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

It speaks HTTP/1.1 with keep-alive: ``connections`` counts the connections it accepted, and
``hung_up`` is set when a client closed an endless or held answer before its end.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOG_ID = "01JTESTLOGID0000000000000"


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: dict


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
        self.redirect_to = None
        self.drip_seconds = None
        self.html_page = None
        self.endless = False
        self.hold = False
        self.stream_pause = 0.0
        self.requests.clear()
        self.connections = 0
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
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"


def completion(reply: str, model: str) -> dict:
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
        "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
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


def gemini_content(reply: str) -> dict:
    return {
        "candidates": [
            {
                "content": {"role": "model", "parts": [{"text": reply}]},
                "finishReason": "STOP",
                "index": 0,
            }
        ]
    }


def answer_for(path: str, body: dict, reply: str) -> tuple[str, bytes]:
    """Content type and payload in the format of the provider the path names."""
    model = body.get("model", "")
    if path.endswith("/anthropic/v1/messages"):
        if body.get("stream"):
            return "text/event-stream", anthropic_stream(reply, model)
        return "application/json", json.dumps(anthropic_message(reply, model)).encode()
    if ":streamGenerateContent" in path:
        return "text/event-stream", f"data: {json.dumps(gemini_content(reply))}\n\n".encode()
    if ":generateContent" in path:
        return "application/json", json.dumps(gemini_content(reply)).encode()
    if body.get("stream"):
        return "text/event-stream", stream_events(reply, model)
    return "application/json", json.dumps(completion(reply, model)).encode()


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


def stream_events(reply: str, model: str) -> bytes:
    """The reply split in words, as OpenAI's server-sent events."""
    words = reply.split(" ")
    events = []
    for i, word in enumerate(words):
        chunk = {
            "id": "chatcmpl-test",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "delta": {"content": word if i == 0 else " " + word},
                    "finish_reason": None,
                }
            ],
        }
        events.append(f"data: {json.dumps(chunk)}\n\n")
    events.append("data: [DONE]\n\n")
    return "".join(events).encode()


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
        self.gateway.requests.append(Recorded("POST", self.path, headers, body))
        if self.gateway.redirect_to:
            self.send_response(307)
            self.send_header("location", self.gateway.redirect_to)
            self.send_header("content-length", "0")
            self.end_headers()
        elif self.gateway.drip_seconds:
            self._drip(self.gateway.drip_seconds)
        elif self.gateway.endless or self.gateway.hold:
            self._forever(stream=bool(body.get("stream")) or self.gateway.hold)
        elif self.gateway.html_page:
            self._answer(200, "text/html", self.gateway.html_page.encode())
        elif self.gateway.status != 200:
            error = {"error": {"message": "upstream failed", "type": "server_error"}}
            self._answer(self.gateway.status, "application/json", json.dumps(error).encode())
        else:
            content_type, payload = answer_for(self.path, body, self.gateway.reply)
            if self.gateway.stream_pause and content_type == "text/event-stream":
                self._paced(payload, self.gateway.stream_pause)
            else:
                self._answer(200, content_type, payload)

    def _answer(self, status: int, content_type: str, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(payload)))
        self.send_header("cf-aig-log-id", LOG_ID)
        self.send_header("cf-aig-cache-status", "MISS")
        self.end_headers()
        self.wfile.write(payload)

    def _paced(self, payload: bytes, pause: float) -> None:
        """A whole stream, one event every ``pause`` seconds."""
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.send_header("cf-aig-log-id", LOG_ID)
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
            for _ in range(1000):
                self.wfile.write(b" ")
                self.wfile.flush()
                time.sleep(seconds)
        except OSError:
            pass  # the client gave up: that is the point

    def _forever(self, stream: bool) -> None:
        """An answer that never ends (endless), or a stream held open (hold)."""
        self.send_response(200)
        self.send_header("content-type", "text/event-stream" if stream else "application/json")
        self.send_header("transfer-encoding", "chunked")
        self.send_header("cf-aig-log-id", LOG_ID)
        self.end_headers()
        self.close_connection = True
        if self.gateway.hold:
            first, chunk, pause = (
                stream_events("Hello", "m").split(b"\n\n")[0] + b"\n\n",
                b": keep-alive\n\n",
                0.02,
            )
        elif stream:
            first, chunk, pause = (
                b"",
                stream_events("x" * 65000, "m").split(b"\n\n")[0] + b"\n\n",
                0,
            )
        else:
            first, chunk, pause = b'{"choices": [{"message": {"content": "', b"x" * 65536, 0
        try:
            self._chunk(first)
            while True:
                self._chunk(chunk)
                time.sleep(pause)
        except OSError:
            self.gateway.hung_up.set()  # the client closed the answer: that is the point

    def _chunk(self, data: bytes) -> None:
        if data:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep test output clean


def _handler_for(gateway: FakeGateway) -> type[BaseHTTPRequestHandler]:
    return type("Handler", (_Handler,), {"gateway": gateway})
