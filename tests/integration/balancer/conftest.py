"""Fixtures of the balancer's integration tests: real balancer processes in front of real
runtimes (``modelplane serve`` on 127.0.0.2-4) or simulated replicas (replicas.py).

The balancer runs as ``python -m modelplane_balancer`` (the ``modelplane balancer`` entry
point needs the package installed; tests/integration/balancer/test_cli.py checks it) with
``--port 0``; its port comes from the ``"event": "ready"`` log line. Logs go to files, and
every balancer must exit 0 on SIGTERM.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.fixtures.polling import eventually
from tests.fixtures.processes import kill_process, stop_process
from tests.fixtures.runtime_server import RuntimeServer, launch_runtime, metric_samples

REPLICA_HOSTS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")


@dataclass
class BalancerProcess:
    """A running balancer and how to reach it."""

    url: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    verify: object = True

    def logs(self) -> str:
        """Everything the process wrote so far."""
        return self.log_path.read_text(errors="replace")

    def events(self) -> list[dict[str, object]]:
        """Its JSON log lines."""
        found = []
        for line in self.logs().splitlines():
            if line.startswith("{"):
                try:
                    found.append(json.loads(line))
                except ValueError:
                    continue
        return found

    def client(self, **kwargs: object) -> httpx.Client:
        """An HTTP client with the balancer as base URL."""
        kwargs.setdefault("verify", self.verify)
        return httpx.Client(base_url=self.url, timeout=30.0, **kwargs)  # type: ignore[arg-type]

    def metrics(self) -> str:
        """The balancer's /metrics text."""
        with self.client() as client:
            return client.get("/metrics").text

    def per_replica(self, name: str = "modelplane_balancer_requests_total",
                    **labels: str) -> dict[str, float]:
        """A metric summed by replica label (replicas the balancer answered for are "")."""
        totals: dict[str, float] = {}
        for sample_labels, value in metric_samples(self.metrics(), name):
            if all(sample_labels.get(k) == v for k, v in labels.items()):
                key = sample_labels.get("replica", "")
                totals[key] = totals.get(key, 0.0) + value
        return totals


def balancer_command(*args: str) -> list[str]:
    """``python -m modelplane_balancer --host 127.0.0.1 --port 0 ARGS``."""
    return [sys.executable, "-m", "modelplane_balancer", "--host", "127.0.0.1", "--port", "0",
            *args]


@contextmanager
def launch_balancer(log_dir: Path, args: Sequence[str], *, env: dict[str, str] | None = None,
                    verify: object = True, scheme: str = "http") -> Iterator[BalancerProcess]:
    """Run a balancer until the block ends, then SIGTERM it and check it exits 0."""
    log_path = log_dir / f"balancer-{time.monotonic_ns()}.log"
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    with log_path.open("wb") as out:
        process = subprocess.Popen(balancer_command(*args), stdout=out, stderr=subprocess.STDOUT,
                                   env=full_env, stdin=subprocess.DEVNULL)
    try:
        def ready() -> dict[str, object] | None:
            if process.poll() is not None:
                raise AssertionError(f"balancer exited with {process.returncode}:\n"
                                     + log_path.read_text(errors="replace"))
            for line in log_path.read_text(errors="replace").splitlines():
                if '"event":"ready"' in line:
                    event: dict[str, object] = json.loads(line)
                    return event
            return None

        event = eventually(ready, timeout=30, interval=0.05, what="the balancer's ready line")
        url = str(event["url"])
        assert url.startswith(scheme)
        balancer = BalancerProcess(url, int(event["port"]), process, log_path,  # type: ignore[call-overload]
                                   verify)
        yield balancer
        code = stop_process(process, logs=balancer.logs, what="balancer")
        assert code == 0, f"balancer exited with {code}:\n{balancer.logs()}"
    finally:
        if process.poll() is None:
            kill_process(process)


@pytest.fixture(scope="session")
def balancer_log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where balancer and replica processes started by tests write their logs."""
    return tmp_path_factory.mktemp("balancer-logs")


@dataclass
class SimReplicas:
    """Simulated replicas (replicas.py) in one process."""

    ports: list[int]
    process: subprocess.Popen[bytes]
    host: str = "127.0.0.1"

    @property
    def backends(self) -> list[str]:
        """``host:port`` of each replica, in order."""
        return [f"{self.host}:{port}" for port in self.ports]


@contextmanager
def launch_replicas(log_dir: Path, specs: Sequence[str], *, dist: str = "const",
                    host: str = "127.0.0.1") -> Iterator[SimReplicas]:
    """Simulated replicas, one ``PORT:MEAN_MS:SLOTS:NAME`` spec each."""
    stamp = time.monotonic_ns()
    port_file = log_dir / f"replicas-{stamp}.json"
    command = [sys.executable, "-m", "tests.integration.balancer.replicas", "--host", host,
               "--dist", dist, "--port-file", str(port_file)]
    for spec in specs:
        command += ["--replica", spec]
    with (log_dir / f"replicas-{stamp}.log").open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
    try:
        ports = eventually(lambda: port_file.is_file() and json.loads(port_file.read_text()),
                           timeout=30, what="simulated replicas")
        yield SimReplicas(list(ports), process, host)
    finally:
        stop_process(process, what="simulated replicas")


def launch_replica_runtime(model_dir: Path, log_dir: Path, host: str, *args: str,
                           port: int = 0, env: dict[str, str] | None = None,
                           verify: object = True) -> RuntimeServer:
    """Start ``modelplane serve`` on ``host`` (not a context manager: tests stop and restart
    replicas themselves); returns the running server."""
    command = [sys.executable, "-m", "modelplane_runtime.cli", "serve", str(model_dir),
               "--host", host, "--port", str(port), *args]
    manager = launch_runtime(model_dir, log_dir, command=command, env=env,
                             verify=verify)  # type: ignore[arg-type]
    server = manager.__enter__()
    server._manager = manager  # type: ignore[attr-defined]
    return server


def stop_replica(server: RuntimeServer) -> None:
    """SIGTERM a replica started by launch_replica_runtime and check it drained cleanly."""
    manager = server._manager  # type: ignore[attr-defined]
    manager.__exit__(None, None, None)


@pytest.fixture(scope="module")
def demo_replicas(demo_model_dir: Path, balancer_log_dir: Path) -> Iterator[list[RuntimeServer]]:
    """The demo model served by three runtimes on 127.0.0.2, .3 and .4."""
    servers = [launch_replica_runtime(demo_model_dir, balancer_log_dir, host, "--name", "demo")
               for host in REPLICA_HOSTS]
    try:
        yield servers
    finally:
        for server in servers:
            stop_replica(server)


def address_of(server: RuntimeServer) -> str:
    """``host:port`` of a runtime from its URL."""
    return server.url.split("://", 1)[1]


Counter = Callable[[], dict[str, float]]
