"""Replicas failing under load: SIGTERM loses nothing; kill -9 fails only what was on the
killed replica, which is ejected and rejoins when it comes back on the same address."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.fixtures.polling import eventually
from tests.fixtures.processes import kill_process
from tests.fixtures.runtime_server import RuntimeServer, metric_samples
from tests.integration.balancer.conftest import (
    REPLICA_HOSTS,
    BalancerProcess,
    address_of,
    launch_balancer,
    launch_replica_runtime,
    stop_replica,
)

pytestmark = pytest.mark.slow
BODY = {"instances": [[0.5] * 8] * 4}


@dataclass
class Load:
    """Closed-loop load from a thread: every answer's status and error text."""

    url: str
    concurrency: int = 12
    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        async with httpx.AsyncClient(base_url=self.url, timeout=30) as client:
            await asyncio.gather(*(self._worker(client) for _ in range(self.concurrency)))

    async def _worker(self, client: httpx.AsyncClient) -> None:
        while not self.stop.is_set():
            try:
                answer = await client.post("/v1/models/demo:predict", json=BODY)
                self.statuses[answer.status_code] += 1
                if answer.status_code != 200:
                    self.failures.append(answer.text)
            except httpx.TransportError as exc:
                self.statuses[0] += 1
                self.failures.append(repr(exc))

    def total(self) -> int:
        return sum(self.statuses.values())


def _start(load: Load) -> threading.Thread:
    thread = threading.Thread(target=load.run, daemon=True)
    thread.start()
    eventually(lambda: load.total() > 200, timeout=60, what="load under way")
    return thread


def _state(process: BalancerProcess, replica: str) -> str:
    for labels, value in metric_samples(process.metrics(), "modelplane_balancer_replica_up"):
        if labels["replica"] == replica and value == 1:
            return labels["state"]
    return "unknown"


def test_sigterm_of_a_replica_under_load_fails_nothing(demo_model_dir: Path,
                                                       balancer_log_dir: Path) -> None:
    servers = [launch_replica_runtime(demo_model_dir, balancer_log_dir, host, "--name", "demo")
               for host in REPLICA_HOSTS]
    try:
        args = ["--model", "demo", "--backends", ",".join(address_of(s) for s in servers)]
        with launch_balancer(balancer_log_dir, args) as process:
            load = Load(process.url)
            thread = _start(load)
            stop_replica(servers[0])  # SIGTERM; the fixture checks it drained and exited 0
            before = load.total()
            eventually(lambda: load.total() > before + 300, timeout=60, what="more load")
            load.stop.set()
            thread.join(timeout=60)
            assert load.statuses[200] == load.total(), (load.statuses, load.failures[:5])
            assert _state(process, address_of(servers[0])) in ("draining", "ejected")
    finally:
        for server in servers[1:]:
            stop_replica(server)


def test_kill_9_fails_only_its_in_flight_requests_then_it_rejoins(
        demo_model_dir: Path, balancer_log_dir: Path) -> None:
    servers = [launch_replica_runtime(demo_model_dir, balancer_log_dir, host, "--name", "demo")
               for host in REPLICA_HOSTS]
    victim: RuntimeServer = servers[0]
    revived: RuntimeServer | None = None
    try:
        args = ["--model", "demo", "--backends", ",".join(address_of(s) for s in servers),
                "--eject-base-s", "0.5", "--eject-max-s", "2"]
        with launch_balancer(balancer_log_dir, args) as process:
            load = Load(process.url)
            thread = _start(load)
            kill_process(victim.process)
            killed_at = time.monotonic()
            eventually(lambda: _state(process, address_of(victim)) == "ejected", timeout=30,
                       what="the killed replica ejected")
            after_kill = load.total()
            eventually(lambda: load.total() > after_kill + 300, timeout=60, what="more load")
            failed = load.total() - load.statuses[200]
            # Only requests in flight on the victim may fail: at most one per client.
            assert failed <= load.concurrency, (load.statuses, load.failures)
            assert all("closed the connection" in f for f in load.failures), load.failures
            assert time.monotonic() - killed_at < 60

            port = int(address_of(victim).rsplit(":", 1)[1])
            revived = launch_replica_runtime(demo_model_dir, balancer_log_dir, REPLICA_HOSTS[0],
                                             "--name", "demo", port=port)
            eventually(lambda: _state(process, address_of(victim)) == "active", timeout=60,
                       what="the revived replica rejoining")
            served = process.per_replica(code="200").get(address_of(victim), 0.0)
            eventually(lambda: process.per_replica(code="200").get(address_of(victim), 0.0)
                       > served + 20, timeout=60, what="requests on the revived replica")
            load.stop.set()
            thread.join(timeout=60)
            assert load.total() - load.statuses[200] == failed, "failures after the ejection"
            ejections = metric_samples(process.metrics(), "modelplane_balancer_ejections_total")
            assert any(labels["replica"] == address_of(victim) and value >= 1
                       for labels, value in ejections)
    finally:
        if revived is not None:
            stop_replica(revived)
        for server in servers[1:]:
            stop_replica(server)
