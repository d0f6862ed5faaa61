"""The real operator process against the emulated API server, and helpers to watch it.

- ``start_operator``: starts ``modelplane operator --namespace NS --standalone`` as a
  subprocess with KUBECONFIG pointing at the emulator; returns an ``OperatorProcess``
  (its metrics, health, logs; stopped with SIGTERM at the end of the test).
- ``operator``: one running operator watching the test's own namespace.
- ``fault_proxy``: a fault-injecting proxy in front of the emulator (``through=`` above).

Waiting is ``tests.fixtures.polling.eventually``; stopping, ``tests.fixtures.processes``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.faults import FaultProxy
from tests.fixtures.kube import KubeApi, Kubectl
from tests.fixtures.polling import eventually
from tests.fixtures.processes import kill_process, stop_process

TEST_IMAGE = "registry.example.test/modelplane/runtime:9.9.9"
"""The operator's default runtime image in these tests (so the test sees it came from there)."""


class OperatorProcess:
    """A running ``modelplane operator``."""

    def __init__(self, process: subprocess.Popen[bytes], log_path: Path) -> None:
        self.process = process
        self.log_path = log_path
        self.url = ""
        self.killed = False

    def logs(self) -> str:
        """Everything the operator logged so far."""
        return self.log_path.read_text(errors="replace")

    def wait_listening(self, timeout: float = 30.0) -> None:
        """Wait for the health endpoint's log line, then for /healthz to answer 200."""
        def port() -> str | None:
            if self.process.poll() is not None:
                raise AssertionError(f"operator exited with {self.process.returncode}:\n"
                                     f"{self.logs()}")
            found = re.search(r"health and metrics on http://[^:]+:(\d+)", self.logs())
            return found.group(1) if found else None

        self.url = f"http://127.0.0.1:{eventually(port, timeout=timeout, what='operator start')}"
        eventually(lambda: httpx.get(self.url + "/healthz").status_code == 200,
                   timeout=timeout, what="/healthz")

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """The operator's own metrics: {(sample name, sorted labels): value}."""
        text = httpx.get(self.url + "/metrics").text
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples
        }

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of ``name`` whose labels include ``labels``."""
        return sum(value for (sample, sample_labels), value in self.metrics().items()
                   if sample == name and all(dict(sample_labels).get(k) == v
                                             for k, v in labels.items()))

    def kill(self) -> None:
        """kill -9, as a node failure or the OOM killer would end it."""
        kill_process(self.process)
        self.killed = True

    def stop(self) -> int:
        """SIGTERM, and wait for a clean exit (a kill and a failure after 30 s)."""
        return stop_process(self.process, logs=self.logs, what="the operator")


@pytest.fixture
def start_operator(kube_api: KubeApi, modelplane_crd: list[dict[str, Any]],
                   tmp_path: Path) -> Iterator[Callable[..., OperatorProcess]]:
    """Start operator processes for one namespace; all are stopped when the test ends."""
    started: list[OperatorProcess] = []

    def start(namespace: str, through: FaultProxy | None = None, **env: str) -> OperatorProcess:
        log_path = tmp_path / f"operator-{len(started)}.log"
        settings = {
            "MODELPLANE_OPERATOR_HTTP_PORT": "0",
            "MODELPLANE_OPERATOR_HTTP_HOST": "127.0.0.1",
            "MODELPLANE_OPERATOR_RUNTIME_IMAGE": TEST_IMAGE,
            "MODELPLANE_OPERATOR_SCRAPE_INTERVAL_S": "1",
            "MODELPLANE_OPERATOR_SCRAPE_TIMEOUT_S": "1",
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        argv = [sys.executable, "-m", "modelplane_runtime.cli", "operator",
                "--namespace", namespace, "--standalone"]
        with log_path.open("wb") as log:
            environment = kube_api.env(**settings)
            if through is not None:  # the operator's API traffic goes through the proxy
                environment = through.env(environment)
            process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, env=environment,
                                       cwd=os.getcwd())
        operator = OperatorProcess(process, log_path)
        started.append(operator)
        operator.wait_listening()
        return operator

    yield start
    for operator in started:
        if operator.killed:
            continue
        code = operator.stop()
        assert code == 0, f"operator exited with {code}; logs:\n{operator.logs()}"


@pytest.fixture
def fault_proxy(kube_api: KubeApi, tmp_path: Path) -> Iterator[FaultProxy]:
    """A fault-injecting proxy in front of the emulator (tests/fixtures/faults.py); start an
    operator with ``start_operator(namespace, through=fault_proxy)`` to put it behind."""
    proxy = FaultProxy(kube_api.url, tmp_path).start()
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture
def operator(start_operator: Callable[..., OperatorProcess], kube_namespace: str,
             ) -> OperatorProcess:
    """One operator watching the test's namespace."""
    return start_operator(kube_namespace)


class Cluster:
    """Reading objects of one namespace through kubectl."""

    def __init__(self, kubectl: Kubectl, namespace: str) -> None:
        self.kubectl = kubectl
        self.namespace = namespace

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        """One object, or None if it does not exist."""
        done = self.kubectl("get", kind, name, "-n", self.namespace, "-o", "json", check=False)
        if done.returncode != 0:
            if "NotFound" in done.stderr or "not found" in done.stderr:
                return None
            raise AssertionError(done.stderr)
        import json

        result: dict[str, Any] = json.loads(done.stdout)
        return result

    def items(self, kind: str) -> list[dict[str, Any]]:
        """Every object of a kind in the namespace."""
        found: list[dict[str, Any]] = self.kubectl.json("get", kind, "-n", self.namespace)["items"]
        return found

    def condition(self, name: str, kind: str = "Ready") -> dict[str, Any] | None:
        """A condition of a ModelDeployment's status."""
        md = self.get("md", name) or {}
        for cond in md.get("status", {}).get("conditions", []):
            if cond.get("type") == kind:
                return dict(cond)
        return None

    def events(self, name: str) -> list[dict[str, Any]]:
        """Events about one ModelDeployment."""
        return [e for e in self.items("events")
                if e.get("involvedObject", {}).get("name") == name
                and e.get("involvedObject", {}).get("kind") == "ModelDeployment"]


@pytest.fixture
def cluster(kubectl: Kubectl, kube_namespace: str) -> Cluster:
    """kubectl reads scoped to the test's namespace."""
    return Cluster(kubectl, kube_namespace)
