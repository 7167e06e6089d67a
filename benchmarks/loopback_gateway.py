#!/usr/bin/env python3
"""A fast loopback gateway for benchmarks/load.py: HTTP/1.1 with keep-alive, and counters.

    python benchmarks/loopback_gateway.py     # prints {"port": P, "control_port": Q} on stdout

It answers like tools/testkit.py's FakeGateway (the same OpenAI chat completion saying "pong",
with a usage object as OpenAI's has, the same stream of chunks "Hello", " there" and usage, the same ``cf-aig-log-id`` and
``cf-aig-cache-status`` headers), for every POST. Why not FakeGateway itself:
``http.server`` speaks HTTP/1.0, so it closes every connection after one answer (connections
per request would read 1.0 for every client, however well it pools) and costs a thread per
connection. This one is one asyncio protocol in its own process (no GIL shared with the load
client), keeps connections open, and counts what load.py reports: connections accepted
(``connections``), connections open now (``open``), and requests answered (``requests``),
read from ``GET /`` on ``control_port`` (a second port, so reading them changes none).
A stream is sent with a content-length, so it keeps the connection as a JSON answer does.
"""
from __future__ import annotations

import asyncio
import json
import sys

CHUNK = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini"}
STREAM = "".join(f"data: {data}\n\n" for data in [*map(json.dumps, [
    {**CHUNK, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hello"}}]},
    {**CHUNK, "choices": [{"index": 0, "delta": {"content": " there"}}]},
    {**CHUNK, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    {**CHUNK, "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}},
]), "[DONE]"]).encode()
ANSWER = json.dumps({
    "id": "c", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "pong"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}).encode()
STATS = {"connections": 0, "open": 0, "requests": 0, "streams": 0, "bad_requests": 0}


def head(status: str, content_type: str, length: int, keep_alive: bool) -> bytes:
    STATS["requests"] += 1
    return (f"HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {length}\r\n"
            f"cf-aig-log-id: LOG{STATS['requests']}\r\ncf-aig-cache-status: MISS\r\n"
            f"connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n").encode()


class Gateway(asyncio.Protocol):
    def connection_made(self, transport):
        STATS["connections"] += 1
        STATS["open"] += 1
        self.transport = transport
        self.buffer = bytearray()

    def connection_lost(self, exc):
        STATS["open"] -= 1

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.buffer and not self.transport.is_closing():
            request = self.take_request()
            if request is None:
                return
            self.answer(*request)

    def take_request(self):
        """(request line, headers, body) when a whole request is buffered, else None."""
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return None
        lines = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        start = end + 4
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body, at = bytearray(), start
            while True:
                line_end = self.buffer.find(b"\r\n", at)
                if line_end < 0:
                    return None
                size = int(bytes(self.buffer[at:line_end]).split(b";")[0], 16)
                if len(self.buffer) < line_end + 2 + size + 2:
                    return None
                body += self.buffer[line_end + 2:line_end + 2 + size]
                at = line_end + 2 + size + 2
                if size == 0:
                    break
        else:
            at = start + int(headers.get("content-length") or 0)
            if len(self.buffer) < at:
                return None
            body = self.buffer[start:at]
        del self.buffer[:at]
        return lines[0], headers, bytes(body)

    def answer(self, request_line: str, headers: dict, body: bytes) -> None:
        version = request_line.rsplit(" ", 1)[-1]
        keep_alive = headers.get("connection", "").lower() != "close" and version == "HTTP/1.1"
        try:
            stream = json.loads(body or b"null").get("stream") is True
        except (ValueError, AttributeError):
            STATS["bad_requests"] += 1
            stream = False
        if stream:
            STATS["streams"] += 1
            self.transport.write(head("200 OK", "text/event-stream", len(STREAM), keep_alive) + STREAM)
        else:
            self.transport.write(head("200 OK", "application/json", len(ANSWER), keep_alive) + ANSWER)
        if not keep_alive:
            self.transport.close()


class Control(asyncio.Protocol):
    def connection_made(self, transport):
        out = json.dumps(STATS).encode()
        transport.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                        b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(out), out))
        transport.close()


async def main() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Gateway, "127.0.0.1", 0, backlog=1024)
    control = await loop.create_server(Control, "127.0.0.1", 0)
    print(json.dumps({"port": server.sockets[0].getsockname()[1],
                      "control_port": control.sockets[0].getsockname()[1]}), flush=True)
    await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes stdin or exits


if __name__ == "__main__":
    asyncio.run(main())
