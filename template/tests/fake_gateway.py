"""A loopback HTTP server that plays Cloudflare AI Gateway for the tests.

It records every request (method, path, headers, JSON body) and answers like the
gateway: an OpenAI chat completion, or server-sent events when asked to stream,
with the gateway's ``cf-aig-log-id`` and ``cf-aig-cache-status`` headers.
"""

from __future__ import annotations

import json
import threading
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
    requests: list[Recorded] = field(default_factory=list)

    def __enter__(self) -> FakeGateway:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"


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


def _handler_for(gateway: FakeGateway) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            length = int(self.headers.get("content-length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            headers = {name.lower(): value for name, value in self.headers.items()}
            gateway.requests.append(Recorded("POST", self.path, headers, body))
            model = body.get("model", "")
            if gateway.status != 200:
                error = {"error": {"message": "upstream failed", "type": "server_error"}}
                self._answer(gateway.status, "application/json", json.dumps(error).encode())
            elif body.get("stream"):
                self._answer(200, "text/event-stream", stream_events(gateway.reply, model))
            else:
                payload = json.dumps(completion(gateway.reply, model)).encode()
                self._answer(200, "application/json", payload)

        def _answer(self, status: int, content_type: str, payload: bytes) -> None:
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(payload)))
            self.send_header("cf-aig-log-id", LOG_ID)
            self.send_header("cf-aig-cache-status", "MISS")
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass  # keep test output clean

    return Handler
