"""Open-loop load: Poisson arrivals at a fixed rate, latency measured from each request's
scheduled time (so a stalled server cannot hide its queue: no coordinated omission).

    python -m bench.balancer.loadgen --target 127.0.0.1:8080 --rate 1800 --seconds 20
    python -m bench.balancer.loadgen --informed H:P:MEAN_MS:SLOTS,... --rate 1800 --seconds 20

``--informed`` is the client that knows every replica's in-flight count and speed: it
sends each request straight to the replica with the least expected wait,
(in flight + 1) x mean / slots. Prints one JSON line: sent, ok, errors, p50/p90/p99/max ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from dataclasses import dataclass, field

import httptools
import uvloop

_REQUEST = b"GET /work HTTP/1.1\r\nHost: bench\r\n\r\n"


@dataclass
class Target:
    """One address requests go to, with its idle connections."""

    host: str
    port: int
    mean_s: float = 0.0
    slots: int = 1
    in_flight: int = 0
    idle: list[Client] = field(default_factory=list)


class Client(asyncio.Protocol):
    """One connection; one request at a time."""

    def __init__(self, target: Target, results: list[float], errors: list[int]) -> None:
        self.target = target
        self.results = results
        self.errors = errors
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.scheduled = 0.0
        self.ready: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, scheduled: float) -> None:
        self.scheduled = scheduled
        self.target.in_flight += 1
        assert self.transport is not None
        self.transport.write(_REQUEST)

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_complete(self) -> None:
        status = self.parser.get_status_code()
        self.target.in_flight -= 1
        if status == 200:
            self.results.append(time.perf_counter() - self.scheduled)
        else:
            self.errors.append(status)
        self.target.idle.append(self)

    def connection_lost(self, exc: Exception | None) -> None:
        if self in self.target.idle:
            self.target.idle.remove(self)
        elif self.scheduled:
            self.target.in_flight -= 1
            self.errors.append(0)


async def run(targets: list[Target], informed: bool, rate: float, seconds: float,
              seed: int) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    rng = random.Random(seed)
    results: list[float] = []
    errors: list[int] = []
    for target in targets:  # warm pools: no connect inside the measurement
        for _ in range(64 if not informed else 32):
            _, client = await loop.create_connection(
                lambda t=target: Client(t, results, errors), target.host, target.port)
            target.idle.append(client)
    start = time.perf_counter()
    next_at = start
    sent = 0
    while next_at - start < seconds:
        next_at += rng.expovariate(rate)
        delay = next_at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if informed:
            target = min(targets, key=lambda t: (t.in_flight + 1) * t.mean_s / t.slots)
        else:
            target = targets[0]
        if target.idle:
            target.idle.pop().send(next_at)
        else:
            _, client = await loop.create_connection(
                lambda t=target: Client(t, results, errors), target.host, target.port)
            client.send(next_at)
        sent += 1
    deadline = time.perf_counter() + 30
    while len(results) + len(errors) < sent and time.perf_counter() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    results.sort()

    def pct(p: float) -> float:
        return results[min(len(results) - 1, int(p * len(results)))] * 1000 if results else 0.0

    return {"sent": sent, "ok": len(results), "errors": sent - len(results),
            "p50_ms": pct(0.50), "p90_ms": pct(0.90), "p99_ms": pct(0.99),
            "max_ms": results[-1] * 1000 if results else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", help="HOST:PORT")
    parser.add_argument("--informed", help="HOST:PORT:MEAN_MS:SLOTS,...")
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if args.informed:
        targets = []
        for item in args.informed.split(","):
            host, port, mean, slots = item.split(":")
            targets.append(Target(host, int(port), float(mean) / 1000, int(slots)))
    else:
        host, port = args.target.rsplit(":", 1)
        targets = [Target(host, int(port))]
    print(json.dumps(uvloop.run(run(targets, bool(args.informed), args.rate, args.seconds,
                                    args.seed))))


if __name__ == "__main__":
    main()
