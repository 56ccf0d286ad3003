#!/usr/bin/env python3
"""A minimal HTTP/1.1 server that answers every request after a fixed delay, for the
async-http scenario of compare.py with --http-delay-ms (nginx answers at once).

What it owns: accepting connections on 127.0.0.1:PORT and answering each request
`GET /route/<anything>` with `200`, `Content-Type: text/plain` and the body given by
--body, any other path with 404, each after --delay-ms milliseconds, without blocking:
every answer is a timer on one asyncio event loop, so thousands of requests can wait at
once. Keep-alive: connections stay open (HTTP/1.1) until the client closes them or sends
`Connection: close`; requests pipelined on one connection are answered in order.
Requests have no body (a Content-Length other than 0 closes the connection with 400).
`GET /stats` answers at once with "connections N requests M" (counts since start, this
request excluded), which compare.py reads to show how many connections the client opened.

Cost: one asyncio Protocol callback per read and one timer per request; compare.py
records this process's CPU time per request (see bench/compare/README.md).

Invariants: binds 127.0.0.1 only; prints "ready" on stdout once listening; on SIGTERM or
SIGINT it closes the listener and exits (status 0) and writes its request count and CPU
time to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

MAX_HEAD = 16384  # bytes of request head buffered per connection before giving up


class Stats:
    requests = 0
    connections = 0


class DelayedHttp(asyncio.Protocol):
    def __init__(self, loop: asyncio.AbstractEventLoop, delay_s: float, ok: bytes, not_found: bytes):
        self.loop, self.delay_s, self.ok, self.not_found = loop, delay_s, ok, not_found
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.close_after = False
        self.pending = 0

    def connection_made(self, transport) -> None:
        self.transport = transport
        Stats.connections += 1

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > MAX_HEAD:
                    self._fail()
                break
            head, self.buf = self.buf[:end], self.buf[end + 4 :]
            lines = head.split(b"\r\n")
            parts = lines[0].split(b" ")
            lower = [ln.lower() for ln in lines[1:]]
            if any(ln.startswith(b"content-length:") and ln[15:].strip() != b"0" for ln in lower):
                self._fail()
                return
            if any(ln.startswith(b"connection:") and b"close" in ln for ln in lower) or (
                len(parts) == 3 and parts[2] == b"HTTP/1.0"
            ):
                self.close_after = True
            path = parts[1] if len(parts) >= 2 else b""
            if path == b"/stats":
                body = f"connections {Stats.connections} requests {Stats.requests}".encode()
                self.pending += 1
                self.loop.call_soon(self._answer, response("200 OK", body))
                continue
            answer = self.ok if path.startswith(b"/route/") else self.not_found
            Stats.requests += 1
            self.pending += 1
            # Timers with the same delay fire in the order they were set: answers on one
            # connection keep the order of its requests.
            self.loop.call_later(self.delay_s, self._answer, answer)

    def _answer(self, answer: bytes) -> None:
        self.pending -= 1
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.write(answer)
        if self.close_after and self.pending == 0:
            self.transport.close()

    def _fail(self) -> None:
        if self.transport is not None:
            self.transport.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            self.transport.close()

    def connection_lost(self, exc) -> None:
        self.transport = None


def response(status: str, body: bytes) -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


async def serve(args) -> None:
    loop = asyncio.get_running_loop()
    ok = response("200 OK", args.body.encode())
    nf = response("404 Not Found", b"")
    server = await loop.create_server(lambda: DelayedHttp(loop, args.delay_ms / 1000.0, ok, nf),
                                      "127.0.0.1", args.port, backlog=4096, reuse_address=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    await stop.wait()
    server.close()
    t = os.times()
    print(f"http_delay: {Stats.requests} requests, {Stats.connections} connections, "
          f"cpu {t.user + t.system:.2f} s", file=sys.stderr, flush=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--delay-ms", type=float, required=True)
    p.add_argument("--body", required=True, help="the body of every 200 answer")
    args = p.parse_args()
    if args.delay_ms < 0:
        p.error("--delay-ms must be >= 0")
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
