"""Scale to zero, scale from zero, suspend and resume: the operator, a real balancer and
real runtimes against the API emulator.

No kubelet, Deployment controller or EndpointSlice controller runs here, so ``Replicas``
plays them through the real API: when it sees the runtime Deployment's ``spec.replicas``
go from 0 to 1 it starts a real ``modelplane serve`` process on 127.0.0.2 (what the
kubelet would start), and once that answers ready it writes the Pod, the Deployment's
rollout status and the EndpointSlice of ``<name>-replicas`` (what the kubelet and the
EndpointSlice controller would write); when it sees 1 -> 0 it empties the slice, deletes
the Pod and stops the process with SIGTERM. The balancer (a real ``modelplane balancer``
on 127.0.0.1) is reached directly, as the Service ``<name>`` would reach it.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from modelplane_balancer import contract as balancer_contract
from modelplane_runtime.demo_model import demo_predict

from tests.fixtures.kube import KubeApi, Kubectl
from tests.fixtures.polling import eventually
from tests.fixtures.runtime_server import metric_value
from tests.integration.balancer.conftest import BalancerProcess, launch_balancer
from tests.integration.operator.conftest import Cluster, OperatorProcess
from tests.integration.operator.kubelet import FakePod, Kubelet
from tests.integration.operator.test_live_load import MODEL, runtime

pytestmark = pytest.mark.timeout(600)

NAME = MODEL  # the name test_live_load.runtime serves under
HOST = "127.0.0.2"
ROWS = np.arange(8, dtype=np.float32).reshape(1, 8) / 10
IDLE_S = 5


def model_deployment(namespace: str, **spec: Any) -> dict[str, Any]:
    """The demo model scaling to zero after IDLE_S without a request."""
    fields: dict[str, Any] = {
        "model": {"uri": "demo://seed-mlp"},
        "autoscaling": {"minReplicas": 0, "maxReplicas": 2, "idleSeconds": IDLE_S,
                        "targetInFlightPerReplica": 16},
        **spec,
    }
    return {"apiVersion": "modelplane.io/v1alpha1", "kind": "ModelDeployment",
            "metadata": {"name": NAME, "namespace": namespace}, "spec": fields}


class Replicas:
    """The kubelet and the controllers for the stable runtime Deployment (see the module
    docstring): follows ``spec.replicas`` between 0 and 1 with a real runtime process."""

    def __init__(self, kube_api: KubeApi, kubectl: Kubectl, namespace: str,
                 model_dir: Path, logs: Path, track: str = "stable", host: str = HOST,
                 port: int | None = None) -> None:
        self.kubelet = Kubelet(kube_api, kubectl, namespace)
        self.kube_api = kube_api
        self.model_dir = model_dir
        self.logs = logs
        self.deployment = NAME if track == "stable" else f"{NAME}-{track}"
        self.service = (balancer_contract.replicas_service(NAME) if track == "stable"
                        else balancer_contract.canary_replicas_service(NAME))
        self.port = port or _free_port(host)
        self.pod = FakePod(f"{self.deployment}-5f7d9-0", host)
        self.url = f"http://{host}:{self.port}"
        self.running: ExitStack | None = None
        self.starts: list[tuple[float, float]] = []
        """(replicas 0 -> 1 seen, runtime ready) of each start, monotonic seconds."""
        self.stops = 0
        self.paused = threading.Event()
        self.failure: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="replicas")

    def _wanted(self) -> int | None:
        deployment = self.kubelet.deployment(self.deployment)
        if deployment is None:
            return None
        replicas = deployment["spec"].get("replicas")
        return 1 if replicas is None else int(replicas)  # the API server defaults it to 1

    def _start(self) -> None:
        seen = time.monotonic()
        stack = ExitStack()
        stack.enter_context(runtime(self.model_dir, self.pod.ip, self.port,
                                    self.logs / f"{self.deployment}-{len(self.starts)}.log"))
        self.starts.append((seen, time.monotonic()))
        self.running = stack
        deployment = self.kubelet.deployment(self.deployment)
        assert deployment is not None
        self.kubelet.run_pod(deployment, self.pod)
        self.kubelet.rollout(self.deployment, 1)
        self.kubelet.endpoints(self.service, [self.pod], self.port)

    def _stop_runtime(self) -> None:
        self.kubelet.endpoints(self.service, [], self.port)
        self.kubelet.delete_pod(self.pod.name)
        self.kubelet.rollout(self.deployment, 0)
        assert self.running is not None
        self.running.close()  # SIGTERM; the runtime drains and exits 0 (checked)
        self.running = None
        self.stops += 1

    def _run(self) -> None:
        try:
            while not self._stop.wait(0.1):
                if self.paused.is_set():
                    continue
                wanted = self._wanted()
                if wanted and self.running is None:
                    self._start()
                elif wanted == 0 and self.running is not None:
                    self._stop_runtime()
        except BaseException as exc:  # surfaced by the test through check()
            self.failure = exc

    def check(self) -> None:
        """Fail the test with what went wrong in the thread, if anything."""
        if self.failure is not None:
            raise AssertionError(f"the kubelet stand-in failed: {self.failure!r}")

    def requests_served(self) -> float:
        """v1 predictions the running runtime answered (0 when none runs)."""
        if self.running is None:
            return 0.0
        text = httpx.get(self.url + "/metrics", timeout=10).text
        return metric_value(text, "modelplane_requests_total", protocol="v1")

    def __enter__(self) -> Replicas:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=120)
        if self.running is not None:
            self.running.close()


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@contextmanager
def cluster_balancer(kube_api: KubeApi, namespace: str, logs: Path,
                     **settings: str) -> Iterator[BalancerProcess]:
    """A real balancer for NAME watching the emulator (``settings``: its variables)."""
    env = kube_api.env(MODELPLANE_BALANCER_POD_NAME=f"{NAME}-balancer-0", **settings)
    with launch_balancer(logs, ["--model", NAME, "--namespace", namespace,
                                "--drain-timeout-s", "10"], env=env) as process:
        yield process


def register_balancer(kubelet: Kubelet, lb: BalancerProcess) -> None:
    """The balancer's pod, ready (the operator scrapes it and moves the Service to it)."""
    deployment = eventually(lambda: kubelet.deployment(f"{NAME}-balancer"),
                            what="the balancer Deployment")
    kubelet.run_pod(deployment, FakePod(f"{NAME}-balancer-0", "127.0.0.1"))
    kubelet.rollout(f"{NAME}-balancer", 1)


async def _burst(url: str, n: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(base_url=url, timeout=180, limits=limits) as client:
        body = {"instances": ROWS.tolist()}
        return await asyncio.gather(*(client.post(f"/v1/models/{NAME}:predict", json=body,
                                                  headers={"X-Request-Id": f"burst-{i}"})
                                      for i in range(n)))


def _status(cluster: Cluster) -> dict[str, Any]:
    found: dict[str, Any] = (cluster.get("md", NAME) or {}).get("status", {})
    return found


def _ready(cluster: Cluster) -> tuple[str, str]:
    cond = cluster.condition(NAME) or {}
    return str(cond.get("status")), str(cond.get("reason"))


def test_idle_to_zero_then_200_requests_wake_it_and_all_are_answered(
        start_operator: Callable[..., OperatorProcess], kube_api: KubeApi, kubectl: Kubectl,
        cluster: Cluster, kube_namespace: str, demo_model_dir: Path, tmp_path: Path) -> None:
    ns = kube_namespace
    kubelet = Kubelet(kube_api, kubectl, ns)
    with ExitStack() as stack:
        replicas = stack.enter_context(Replicas(kube_api, kubectl, ns, demo_model_dir,
                                                tmp_path))
        lb = stack.enter_context(cluster_balancer(kube_api, ns, tmp_path))
        settings = {"MODELPLANE_OPERATOR_SCRAPE_PORT": str(replicas.port),
                    "MODELPLANE_OPERATOR_BALANCER_SCRAPE_PORT": str(lb.port)}
        operator = start_operator(ns, **settings)
        kubectl.apply(model_deployment(ns))
        register_balancer(kubelet, lb)
        # Awake at first: one replica (the HPA's floor), requests answered.
        eventually(lambda: replicas.check() or replicas.running is not None, timeout=120,
                   what="the first replica")
        eventually(lambda: _ready(cluster) == ("True", "AllReplicasReady"), timeout=60,
                   what="Ready")
        assert cluster.get("hpa", NAME)["spec"]["minReplicas"] == 1  # type: ignore[index]
        with lb.client() as client:
            answer = client.post(f"/v1/models/{NAME}:predict", json={"instances": ROWS.tolist()})
        assert answer.status_code == 200, answer.text

        # No request for IDLE_S: scaled to zero, the HPA gone, still Ready, 0/0.
        eventually(lambda: replicas.check() or replicas.stops == 1, timeout=60,
                   what="scaled to zero")
        eventually(lambda: _ready(cluster) == ("True", "ScaledToZero"), what="ScaledToZero")
        assert cluster.get("hpa", NAME) is None
        assert _status(cluster)["ready"] == "0/0"
        assert "scaledToZeroAt" in _status(cluster)["scaling"]
        table = kubectl("get", "md", NAME, "-n", ns).stdout.splitlines()
        assert table[1].split()[1] == "0/0"
        assert [e for e in cluster.events(NAME) if e["reason"] == "ScaledToZero"]

        # An operator restart keeps it at zero (the state is in status.scaling).
        assert operator.stop() == 0
        operator = start_operator(ns, **settings)
        eventually(lambda: operator.metric("modelplane_operator_status_rounds_total") >= 3,
                   what="three status rounds after the restart")
        assert kubelet.deployment(NAME)["spec"]["replicas"] == 0  # type: ignore[index]
        assert replicas.running is None and len(replicas.starts) == 1
        assert _ready(cluster) == ("True", "ScaledToZero")

        # 200 concurrent requests at zero: held, the model wakes, all answered, once each.
        started = time.monotonic()
        answers = asyncio.run(_burst(lb.url, 200))
        elapsed = time.monotonic() - started
        replicas.check()
        assert [a.status_code for a in answers] == [200] * 200, answers[0].text
        for answer in answers:
            np.testing.assert_allclose(np.asarray(answer.json()["predictions"], np.float32),
                                       demo_predict(ROWS), rtol=1e-5, atol=1e-6)
        assert sorted(a.headers["x-request-id"] for a in answers) == sorted(
            f"burst-{i}" for i in range(200))
        assert replicas.requests_served() == 200  # none lost, none sent twice
        seen, ready = replicas.starts[1]
        status = eventually(lambda: (s := _status(cluster)).get("lastColdStartSeconds")
                            and s, what="status.lastColdStartSeconds")
        cold = status["lastColdStartSeconds"]
        assert ready - seen <= cold <= elapsed + 1, (seen, ready, cold, elapsed)
        assert operator.metric("modelplane_operator_cold_start_seconds_count") == 1
        assert operator.metric("modelplane_operator_wake_ups_total") == 1
        wake = lb.metrics()
        assert metric_value(wake, balancer_contract.METRIC_WAKE + "_count") == 1
        # Woken through the wake Lease the balancer renewed (its only write).
        waking = [e for e in cluster.events(NAME) if e["reason"] == "WakingUp"]
        assert waking and f"{NAME}-balancer-0 holds requests" in waking[0]["message"]
        lease = cluster.get("lease", f"{NAME}-wake")
        assert lease["spec"]["holderIdentity"] == f"{NAME}-balancer-0"  # type: ignore[index]
        eventually(lambda: _ready(cluster) == ("True", "AllReplicasReady"), what="awake")
        print(f"200 requests at zero answered in {elapsed:.2f}s; runtime start-to-ready "
              f"{ready - seen:.2f}s; status.lastColdStartSeconds {cold}")

        # Idle again: back to zero.
        eventually(lambda: replicas.check() or replicas.stops == 2, timeout=60,
                   what="scaled to zero again")
    assert not kube_api.internal_errors()


def test_the_held_queue_is_bounded_and_clients_deadlines_are_kept(
        kube_api: KubeApi, kubectl: Kubectl, kube_namespace: str, tmp_path: Path,
        modelplane_crd: Any) -> None:
    """Beyond max_waiting: 503 with Retry-After at once; a held request whose client's
    deadline passes: 503 then. No replica exists here (and none is started)."""
    kubectl.apply(model_deployment(kube_namespace))
    with cluster_balancer(kube_api, kube_namespace, tmp_path,
                          MODELPLANE_BALANCER_MAX_WAITING="5") as lb:
        eventually(lambda: lb.client().get("/readyz").status_code == 200,
                   what="ready (holding for a model at zero)")

        async def burst() -> list[tuple[httpx.Response, float]]:
            async with httpx.AsyncClient(base_url=lb.url, timeout=30) as client:
                async def one(i: int) -> tuple[httpx.Response, float]:
                    await asyncio.sleep(0.05 * i)  # arrival order: 0..7
                    start = time.monotonic()
                    answer = await client.post(
                        f"/v1/models/{NAME}:predict", json={"instances": ROWS.tolist()},
                        headers={balancer_contract.DEADLINE_HEADER: "2000"})
                    return answer, time.monotonic() - start
                return await asyncio.gather(*(one(i) for i in range(8)))

        results = asyncio.run(burst())
    held, refused = results[:5], results[5:]
    for answer, took in refused:
        assert answer.status_code == 503 and took < 1.0, (answer.text, took)
        assert "waiting" in answer.json()["error"]
        assert int(answer.headers["retry-after"]) >= 1
    for answer, took in held:
        assert answer.status_code == 503 and 1.5 <= took <= 4.0, (answer.text, took)
        assert answer.json()["error"] == "no replica is available"
        assert answer.headers["retry-after"]


def test_suspend_frees_every_replica_and_resume_restores_the_count(
        start_operator: Callable[..., OperatorProcess], kube_api: KubeApi, kubectl: Kubectl,
        cluster: Cluster, kube_namespace: str, tmp_path: Path) -> None:
    ns = kube_namespace
    kubelet = Kubelet(kube_api, kubectl, ns)
    autoscaled = {"autoscaling": {"minReplicas": 1, "maxReplicas": 6}}
    with cluster_balancer(kube_api, ns, tmp_path) as lb:
        start_operator(ns, MODELPLANE_OPERATOR_BALANCER_SCRAPE_PORT=str(lb.port))
        kubectl.apply(model_deployment(ns, **autoscaled))
        eventually(lambda: cluster.get("hpa", NAME), what="the HPA")
        # The HPA scaled the model to 3 (as it would under load).
        kubectl("patch", "deployment", NAME, "-n", ns, "--type=merge", "-p",
                '{"spec": {"replicas": 3}}')
        eventually(lambda: kubelet.deployment(NAME)["spec"]["replicas"] == 3,  # type: ignore[index]
                   what="three replicas")
        kubelet.rollout(NAME, 3)

        kubectl.apply(model_deployment(ns, suspend=True, **autoscaled))
        eventually(lambda: kubelet.deployment(NAME)["spec"]["replicas"] == 0,  # type: ignore[index]
                   what="every replica gone")
        eventually(lambda: cluster.get("hpa", NAME) is None, what="the HPA gone")
        kubelet.rollout(NAME, 0)
        eventually(lambda: _ready(cluster) == ("False", "Suspended"), what="Ready=False Suspended")
        assert _status(cluster)["scaling"]["replicasBeforeSuspend"] == {NAME: 3}
        assert [e for e in cluster.events(NAME) if e["reason"] == "Suspended"]
        eventually(lambda: lb.client().post(f"/v1/models/{NAME}:predict",
                                            json={"instances": []}).status_code == 503,
                   what="the balancer answering 503")
        with lb.client() as client:
            answer = client.post(f"/v1/models/{NAME}:predict", json={"instances": ROWS.tolist()})
        assert answer.status_code == 503
        assert answer.json() == {"error": "model suspended"}
        assert answer.headers["retry-after"]

        kubectl.apply(model_deployment(ns, **autoscaled))
        eventually(lambda: kubelet.deployment(NAME)["spec"]["replicas"] == 3,  # type: ignore[index]
                   what="the three replicas back")
        eventually(lambda: cluster.get("hpa", NAME), what="the HPA back")
        eventually(lambda: "scaling" not in _status(cluster), what="status.scaling cleared")
        assert [e for e in cluster.events(NAME) if e["reason"] == "Resumed"]


@pytest.mark.slow
def test_with_a_canary_both_tracks_sleep_and_the_stable_one_wakes_first(
        start_operator: Callable[..., OperatorProcess], kube_api: KubeApi, kubectl: Kubectl,
        cluster: Cluster, kube_namespace: str, demo_model_dir: Path, tmp_path: Path) -> None:
    """Both tracks idle: both at zero. A burst wakes the stable track alone; the canary
    scales up once a stable replica is ready, so the held burst lands on the known-good
    model, never wholly on the canary (sleep.py says why)."""
    ns = kube_namespace
    kubelet = Kubelet(kube_api, kubectl, ns)
    with ExitStack() as stack:
        stable = stack.enter_context(Replicas(kube_api, kubectl, ns, demo_model_dir, tmp_path))
        canary = stack.enter_context(Replicas(kube_api, kubectl, ns, demo_model_dir, tmp_path,
                                              track="canary", host="127.0.0.3",
                                              port=stable.port))
        lb = stack.enter_context(cluster_balancer(kube_api, ns, tmp_path))
        start_operator(ns, MODELPLANE_OPERATOR_SCRAPE_PORT=str(stable.port),
                       MODELPLANE_OPERATOR_BALANCER_SCRAPE_PORT=str(lb.port))
        kubectl.apply(model_deployment(ns, canary={"model": {"uri": "demo://seed-mlp"},
                                                   "trafficPercent": 20}))
        register_balancer(kubelet, lb)
        eventually(lambda: stable.check() or canary.check() or (
            stable.running is not None and canary.running is not None), timeout=150,
            what="both tracks up")
        eventually(lambda: stable.check() or canary.check() or (
            stable.stops == 1 and canary.stops == 1), timeout=90, what="both tracks at zero")
        eventually(lambda: _ready(cluster) == ("True", "ScaledToZero"), what="ScaledToZero")

        answers = asyncio.run(_burst(lb.url, 20))
        assert [a.status_code for a in answers] == [200] * 20, answers[0].text
        _, stable_ready = stable.starts[1]
        canary_seen = eventually(lambda: canary.check() or (
            len(canary.starts) == 2 and canary.starts[1]), timeout=150,
            what="the canary back")[0]
        assert canary_seen >= stable_ready, (stable.starts, canary.starts)
        assert stable.requests_served() == 20  # the whole held burst went to the stable
