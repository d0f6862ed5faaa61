"""Simulated replicas for the balancer's tests and benchmark: one process, many ports.

Each replica has a number of slots (requests served at once; more wait in line, in
order) and a service time (constant, or exponential around a mean), and answers
``{"replica": NAME, "ms": SERVICE_MS}``; ``/v2/health/ready`` answers at once. It stands
in for a runtime whose speed a test needs to choose (a slow replica, an overloaded one)
without TensorFlow, and is cheap enough to simulate thousands of requests a second.

    python -m tests.integration.balancer.replicas --replica 0:5:4:fast --replica 0:20:4:slow \
        --port-file ports.json [--dist exp] [--seed 1]

``--replica PORT:MEAN_MS:SLOTS[:NAME]``; port 0 picks a free one; the ports bound are
written to ``--port-file`` as JSON (a list, in order) once every replica listens.

``/echo...`` answers at once with what arrived: method, target, the header fields in
order as (name, value) pairs, and the body (base64), so tests can see what a proxy sent.
``/status/NNN`` answers status NNN at once.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import random
import signal
from collections import deque
from pathlib import Path

import httptools
import uvloop

_READY = b"/v2/health/ready"


class Replica:
    """One simulated replica's slots and queue."""

    def __init__(self, name: str, mean_s: float, slots: int, dist: str, rng: random.Random,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.name = name
        self.mean_s = mean_s
        self.free = slots
        self.dist = dist
        self.rng = rng
        self.loop = loop
        self.line: deque[Connection] = deque()
        self.served = 0

    def service_s(self) -> float:
        """One request's service time."""
        if self.dist == "exp":
            return self.rng.expovariate(1.0 / self.mean_s)
        return self.mean_s

    def arrive(self, connection: Connection) -> None:
        """A request is in: serve it when a slot is free."""
        if self.free > 0:
            self.free -= 1
            self._serve(connection)
        else:
            self.line.append(connection)

    def _serve(self, connection: Connection) -> None:
        seconds = self.service_s()
        self.loop.call_later(seconds, self._done, connection, seconds)

    def _done(self, connection: Connection, seconds: float) -> None:
        self.served += 1
        connection.answer(200, b'{"replica":"%s","ms":%.3f}' % (self.name.encode(), seconds * 1e3))
        if self.line:
            self._serve(self.line.popleft())
        else:
            self.free += 1


class Connection(asyncio.Protocol):
    """One client connection of a simulated replica (requests answered in order)."""

    def __init__(self, replica: Replica) -> None:
        self.replica = replica
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.keep_alive = True
        self.fields: list[list[str]] = []
        self.body = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.close()

    def on_message_begin(self) -> None:
        self.url = b""
        self.fields = []
        self.body = bytearray()

    def on_header(self, name: bytes, value: bytes) -> None:
        self.fields.append([name.decode("latin-1"), value.decode("latin-1")])

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_message_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()
        if self.url == _READY:
            self.answer(200, b'{"ready":true}')
        elif self.url.startswith(b"/echo"):
            self.answer(200, json.dumps({
                "replica": self.replica.name, "method": self.parser.get_method().decode(),
                "target": self.url.decode("latin-1"), "fields": self.fields,
                "body": base64.b64encode(bytes(self.body)).decode(),
            }).encode())
        elif self.url.startswith(b"/status/"):
            status = int(self.url.rsplit(b"/", 1)[1])
            self.answer(status, b"" if status in (204, 304) else b'{"error":"as asked"}')
        else:
            self.replica.arrive(self)

    def answer(self, status: int, body: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        transport.write(b"HTTP/1.1 %d OK\r\ncontent-type: application/json\r\n"
                        b"content-length: %d\r\n%s\r\n%s" % (
                            status, len(body), b"" if self.keep_alive else b"connection: close\r\n",
                            body))
        if not self.keep_alive:
            transport.close()


async def _main(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    rng = random.Random(args.seed)
    servers, ports = [], []
    for index, spec in enumerate(args.replica):
        parts = spec.split(":")
        port, mean_ms, slots = int(parts[0]), float(parts[1]), int(parts[2])
        name = parts[3] if len(parts) > 3 else f"r{index}"
        replica = Replica(name, mean_ms / 1000.0, slots, args.dist, rng, loop)
        server = await loop.create_server(lambda r=replica: Connection(r), args.host, port,
                                          backlog=4096)
        servers.append(server)
        ports.append(server.sockets[0].getsockname()[1])
    Path(args.port_file).write_text(json.dumps(ports))  # noqa: ASYNC240 (once, at start)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for server in servers:
        server.close()


def main() -> None:
    """Command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replica", action="append", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--dist", choices=["const", "exp"], default="const")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--port-file", required=True)
    uvloop.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
