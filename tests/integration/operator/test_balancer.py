"""The operator, a real balancer process and real runtimes, against the API emulator.

Real ``modelplane serve`` processes on 127.0.0.2-4 stand in for the runtime pods' containers
and a real ``modelplane balancer`` (on 127.0.0.1) for the balancer pod's. No kubelet,
Deployment controller or EndpointSlice controller runs here, so the test plays them through
the real API (kubelet.py): it writes the pods with those addresses, the Deployments'
rollout status, and the EndpointSlices of the headless ``-replicas`` Services that the
balancer discovers the replicas through. Where a client would go through the Service
``<name>`` (kube-proxy), the test resolves it the way kube-proxy does: from the live
Service's selector to the pods it selects, per new connection.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
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
from tests.integration.balancer.conftest import BalancerProcess, launch_balancer
from tests.integration.operator.conftest import Cluster, OperatorProcess
from tests.integration.operator.kubelet import FakePod, Kubelet
from tests.integration.operator.test_live_load import common_free_port, runtime

pytestmark = pytest.mark.timeout(600)

NAME = "seed-mlp"  # the name test_live_load.runtime serves under
HOSTS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
ROWS = np.arange(16, dtype=np.float32).reshape(2, 8) / 10
BALANCER_POD = FakePod(f"{NAME}-balancer-0", "127.0.0.1")
RUNTIME_PODS = (FakePod(f"{NAME}-0", HOSTS[0], node="node-a"),
                FakePod(f"{NAME}-1", HOSTS[1], node="node-b"))
CANARY_POD = FakePod(f"{NAME}-canary-0", HOSTS[2], node="node-c")


def model_deployment(namespace: str, **spec: Any) -> dict[str, Any]:
    """The demo model, two replicas; ``spec`` adds or replaces fields."""
    return {"apiVersion": "modelplane.io/v1alpha1", "kind": "ModelDeployment",
            "metadata": {"name": NAME, "namespace": namespace},
            "spec": {"model": {"uri": "demo://seed-mlp"}, "replicas": 2, **spec}}


def predict(url: str, client: httpx.Client | None = None) -> httpx.Response:
    """One v1 prediction of ROWS."""
    body = {"instances": ROWS.tolist()}
    target = f"{url}/v1/models/{NAME}:predict"
    return client.post(target, json=body) if client else httpx.post(target, json=body,
                                                                      timeout=30)


def assert_correct(answer: httpx.Response) -> None:
    """A 200 whose predictions equal the model computed in-process."""
    assert answer.status_code == 200, answer.text
    got = np.asarray(answer.json()["predictions"], dtype=np.float32)
    np.testing.assert_allclose(got, demo_predict(ROWS), rtol=1e-5, atol=1e-6)


@contextmanager
def runtimes(model_dir: Path, tmp_path: Path, hosts: tuple[str, ...]) -> Iterator[int]:
    """``modelplane serve`` on each host, all on one port (as pods are); yields the port."""
    port = common_free_port(hosts)
    with ExitStack() as stack:
        for host in hosts:
            stack.enter_context(runtime(model_dir, host, port, tmp_path / f"{host}.log"))
        yield port


def metric(process: BalancerProcess, name: str, **labels: str) -> float:
    """Sum of one balancer metric's samples matching ``labels``."""
    from tests.fixtures.runtime_server import metric_samples

    return sum(value for sample, value in metric_samples(process.metrics(), name)
               if all(sample.get(k) == v for k, v in labels.items()))


def balancer_requests(kube_api: KubeApi) -> list[tuple[str, str, dict[str, str]]]:
    """(method, path, params) of every API request the balancer made (by its User-Agent)."""
    def read(api: Any) -> list[tuple[str, str, dict[str, str]]]:
        return [(str(r.method).upper().rsplit(".", 1)[-1], r.url.path, dict(r.params))
                for r in api._requests
                if "modelplane-balancer" in str(r.headers.get("User-Agent", ""))]

    found: list[tuple[str, str, dict[str, str]]] = kube_api.call(read)
    return found


def authorized(rules: list[dict[str, list[str]]], method: str, path: str,
               params: dict[str, str], namespace: str) -> bool:
    """Whether RBAC would allow one request under a Role's ``rules`` (the documented
    evaluation: the request's verb, API group and resource; ``resourceNames`` match a
    named get, or a list/watch whose field selector is ``metadata.name=<name>``)."""
    parts = path.strip("/").split("/")
    group = "" if parts[0] == "api" else parts[1]
    rest = parts[2:] if parts[0] == "api" else parts[3:]
    if rest[:2] != ["namespaces", namespace]:
        return False  # the Role lives in one namespace
    resource, name = rest[2], (rest[3] if len(rest) > 3 else None)
    if method != "GET":
        return False
    verb = "get" if name else ("watch" if params.get("watch") in ("true", "1") else "list")
    if name is None:
        selector = params.get("fieldSelector", "")
        name = selector.removeprefix("metadata.name=") if selector.startswith(
            "metadata.name=") and "," not in selector else None
    for rule in rules:
        if group in rule["apiGroups"] and resource in rule["resources"] and (
                verb in rule["verbs"]):
            names = rule.get("resourceNames")
            if not names or name in names:
                return True
    return False


@pytest.fixture(autouse=True)
def _loopback_aliases() -> None:
    import socket

    for host in HOSTS:
        with socket.socket() as probe:
            probe.bind((host, 0))


def start_balancer(stack: ExitStack, kube_api: KubeApi, namespace: str,
                   log_dir: Path) -> BalancerProcess:
    """A real balancer for NAME on 127.0.0.1 watching the emulator with a kubeconfig."""
    return stack.enter_context(launch_balancer(
        log_dir, ["--model", NAME, "--namespace", namespace, "--drain-timeout-s", "10"],
        env=kube_api.env()))


def test_operator_and_a_real_balancer_follow_the_model_deployment(
        start_operator: Callable[..., OperatorProcess], kube_api: KubeApi, kubectl: Kubectl,
        cluster: Cluster, kube_namespace: str, demo_model_dir: Path, tmp_path: Path) -> None:
    ns = kube_namespace
    kubelet = Kubelet(kube_api, kubectl, ns)
    with runtimes(demo_model_dir, tmp_path, HOSTS) as port, ExitStack() as stack:
        kubectl.apply(model_deployment(ns, routing={"strategy": "round-robin"}))
        lb = start_balancer(stack, kube_api, ns, tmp_path)
        start_operator(ns, MODELPLANE_OPERATOR_SCRAPE_PORT=str(port),
                       MODELPLANE_OPERATOR_BALANCER_SCRAPE_PORT=str(lb.port))
        runtime_deployment = eventually(lambda: kubelet.deployment(NAME), what="Deployment")
        balancer_deployment = eventually(lambda: kubelet.deployment(f"{NAME}-balancer"),
                                         what="the balancer Deployment")
        # Until a balancer pod is ready the Service still selects the runtime pods.
        service = eventually(lambda: cluster.get("service", NAME), what="Service")
        assert service["spec"]["selector"] == {"modelplane.io/deployment": NAME}
        assert cluster.get("role", f"{NAME}-balancer")["rules"] == (  # type: ignore[index]
            balancer_contract.rbac_rules(NAME))

        # The kubelet starts the runtime pods; the EndpointSlice controller lists them.
        for pod in RUNTIME_PODS:
            kubelet.run_pod(runtime_deployment, pod)
        kubelet.rollout(NAME, 2)
        kubelet.endpoints(balancer_contract.replicas_service(NAME), RUNTIME_PODS, port)
        eventually(lambda: lb.client().get("/readyz").status_code == 200, timeout=30,
                   what="the balancer ready (it found the replicas)")
        # ... and the balancer pod; once it is ready the Service moves to it.
        kubelet.run_pod(balancer_deployment, BALANCER_POD)
        kubelet.rollout(f"{NAME}-balancer", 1)
        eventually(lambda: (cluster.get("service", NAME) or {}).get("spec", {}).get(
            "selector") == {"modelplane.io/balancer": NAME}, what="the Service on the balancer")
        md = eventually(lambda: (m := cluster.get("md", NAME)) and (
            m.get("status", {}).get("balancer") or {}).get("serving") and m,
            what="status.balancer.serving")
        assert md["status"]["balancer"] == {"ready": "1/2", "readyReplicas": 1, "serving": True}
        assert [e for e in cluster.events(NAME) if e["reason"] == "BalancerReady"]

        # Predictions through the balancer equal the model's; round-robin splits evenly.
        with lb.client() as client:
            for _ in range(40):
                assert_correct(predict("", client))
        per_replica = lb.per_replica()
        assert per_replica == {f"{HOSTS[0]}:{port}": 20, f"{HOSTS[1]}:{port}": 20}
        assert 'strategy="round-robin"' in lb.metrics()

        # The operator scrapes the balancer: each pod's share of the traffic in status.
        def shares() -> dict[str, float] | None:
            with lb.client() as client:
                for _ in range(10):
                    assert_correct(predict("", client))
            pods = (cluster.get("md", NAME) or {}).get("status", {}).get("pods", [])
            found = {p["name"]: p.get("share") for p in pods}
            return found if all(v is not None and v > 0 for v in found.values()) and (
                len(found) == 2) else None

        seen = eventually(shares, timeout=60, interval=0.5, what="shares in status.pods")
        # Round-robin: half each (a scrape window may cut between two requests of a round).
        assert seen.keys() == {RUNTIME_PODS[0].name, RUNTIME_PODS[1].name}
        assert all(abs(share - 0.5) <= 0.05 for share in seen.values()), seen
        assert abs(sum(seen.values()) - 1) <= 0.011, seen
        pods = cluster.get("md", NAME)["status"]["pods"]  # type: ignore[index]
        assert all(p["requestsPerSecond"] > 0 and p["latencyP99Ms"] > 0 for p in pods)

        # Strategy and canary changes reach the balancer without a restart.
        kubectl.apply(model_deployment(ns, routing={"strategy": "least-request"},
                                       canary={"model": {"uri": "demo://seed-mlp"},
                                               "trafficPercent": 25}))
        canary_deployment = eventually(lambda: kubelet.deployment(f"{NAME}-canary"),
                                       what="the canary Deployment")
        kubelet.run_pod(canary_deployment, CANARY_POD)
        kubelet.rollout(f"{NAME}-canary", 1)
        eventually(lambda: cluster.get("service", f"{NAME}-canary-replicas"),
                   what="the canary's headless Service")
        kubelet.endpoints(balancer_contract.canary_replicas_service(NAME), [CANARY_POD], port)
        eventually(lambda: 'strategy="least-request"' in lb.metrics()
                   and metric(lb, balancer_contract.METRIC_CANARY_PERCENT) == 25,
                   timeout=30, what="strategy and canary share applied")
        eventually(lambda: metric(lb, balancer_contract.METRIC_REPLICA_UP,
                                  track="canary", state="active") == 1, timeout=30,
                   what="the canary replica known")
        before = metric(lb, balancer_contract.METRIC_TRACK_REQUESTS, track="canary")
        with lb.client() as client:
            for _ in range(400):
                assert_correct(predict("", client))
        canary = metric(lb, balancer_contract.METRIC_TRACK_REQUESTS, track="canary") - before
        assert abs(canary / 400 - 0.25) <= 0.02, canary
        assert len([e for e in lb.events() if e.get("event") == "ready"]) == 1  # no restart

        # Every API request the balancer made is one its Role allows (RBAC from the code).
        requests = balancer_requests(kube_api)
        rules = balancer_contract.rbac_rules(NAME)
        assert {p.rsplit("/", 1)[-1] for _, p, _ in requests} >= {
            "endpointslices", "modeldeployments"}
        refused = [r for r in requests if not authorized(rules, *r, ns)]
        assert refused == []


def test_rbac_check_refuses_what_a_role_would() -> None:
    """The RBAC evaluation above is not vacuous."""
    rules = balancer_contract.rbac_rules("m")
    md_path = "/apis/modelplane.io/v1alpha1/namespaces/ns/modeldeployments"
    assert authorized(rules, "GET", md_path, {"watch": "true",
                                              "fieldSelector": "metadata.name=m"}, "ns")
    assert not authorized(rules, "GET", md_path, {}, "ns")  # every object: no
    assert not authorized(rules, "GET", md_path + "/other", {}, "ns")
    assert not authorized(rules, "PATCH", md_path + "/m", {}, "ns")
    assert not authorized(rules, "GET", md_path.replace("/ns/", "/other/"), {}, "other")
    assert not authorized(rules, "GET", "/api/v1/namespaces/ns/secrets", {}, "ns")


class KubeProxy:
    """Resolves the Service ``<name>`` as kube-proxy does: the live Service's selector, the
    ready pods it selects, one picked at random per new connection. Re-read every 50 ms
    (a real kube-proxy learns of changes within a few seconds: the preStop sleep covers it)."""

    def __init__(self, kube_api: KubeApi, namespace: str) -> None:
        self.kube_api = kube_api
        self.namespace = namespace
        self.pods: dict[str, tuple[dict[str, str], str]] = {}
        """By name: labels and ``host:port``, for the pods that serve."""
        self.endpoints: list[str] = []
        self.history: list[tuple[float, str]] = []
        """(time, "balancer" | "runtime") each time the Service's target changed."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            service = self.kube_api.object("", "services", self.namespace, NAME)
            if service is None:
                continue
            selector = service["spec"]["selector"]
            self.endpoints = [address for labels, address in self.pods.values()
                              if selector.items() <= labels.items()]
            target = "balancer" if "modelplane.io/balancer" in selector else "runtime"
            if not self.history or self.history[-1][1] != target:
                self.history.append((time.monotonic(), target))

    def pick(self) -> str:
        """An endpoint for a new connection."""
        return random.choice(self.endpoints)

    def __enter__(self) -> KubeProxy:
        self._thread.start()
        eventually(lambda: self.history, what="the Service resolved")
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


class Clients:
    """Predictions through the Service, each on a new connection, until stopped."""

    def __init__(self, proxy: KubeProxy, limit: int = 20_000) -> None:
        self.proxy = proxy
        self.answers: Counter[str] = Counter()
        self.failures: list[str] = []
        self.limit = limit
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        sent = 0
        while not self._stop.is_set() and sent < self.limit:
            sent += 1
            if not self.proxy.endpoints:  # a Service without endpoints: refused
                self.failures.append("the Service had no endpoint")
                time.sleep(0.05)
                continue
            address = self.proxy.pick()
            try:
                answer = predict(f"http://{address}")
                assert_correct(answer)
                self.answers[address] += 1
            except (httpx.HTTPError, AssertionError) as exc:
                self.failures.append(f"{address}: {exc!r}"[:300])

    def __enter__(self) -> Clients:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


def test_switching_the_balancer_on_and_off_loses_no_request(
        start_operator: Callable[..., OperatorProcess], kube_api: KubeApi, kubectl: Kubectl,
        cluster: Cluster, kube_namespace: str, demo_model_dir: Path, tmp_path: Path) -> None:
    """Both ways on a live object under load: the Service moves to the balancer only once a
    balancer pod is ready, and back to the runtime pods before the balancer is deleted;
    the deleted balancer keeps serving through its preStop sleep, then drains."""
    ns = kube_namespace
    kubelet = Kubelet(kube_api, kubectl, ns)
    with runtimes(demo_model_dir, tmp_path, HOSTS[:2]) as port, ExitStack() as stack:
        kubectl.apply(model_deployment(ns, routing={"balancer": False}))
        start_operator(ns, MODELPLANE_OPERATOR_SCRAPE_PORT=str(port))
        runtime_deployment = eventually(lambda: kubelet.deployment(NAME), what="Deployment")
        proxy = stack.enter_context(KubeProxy(kube_api, ns))
        for pod in RUNTIME_PODS:
            kubelet.run_pod(runtime_deployment, pod)
            proxy.pods[pod.name] = (runtime_deployment["spec"]["template"]["metadata"][
                "labels"], f"{pod.ip}:{port}")
        kubelet.rollout(NAME, 2)
        kubelet.endpoints(balancer_contract.replicas_service(NAME), RUNTIME_PODS, port)
        eventually(lambda: proxy.endpoints, what="the Service's endpoints")
        clients = stack.enter_context(Clients(proxy))
        eventually(lambda: sum(clients.answers.values()) >= 20, what="load flowing")

        # On: the balancer Deployment appears; the Service waits for a ready balancer.
        kubectl.apply(model_deployment(ns))
        balancer_deployment = eventually(lambda: kubelet.deployment(f"{NAME}-balancer"),
                                         what="the balancer Deployment")
        # The operator has applied the change (its status reports the balancer, not serving
        # yet): with no balancer pod ready, the Service must stay on the runtime pods.
        md = eventually(lambda: (m := cluster.get("md", NAME)) and (
            m.get("status", {}).get("balancer") or {}).get("ready") and m,
            what="status.balancer")
        assert md["status"]["balancer"]["serving"] is False
        assert md["status"]["observedGeneration"] == md["metadata"]["generation"]
        assert proxy.history[-1][1] == "runtime"
        lb_stack = ExitStack()
        lb = start_balancer(lb_stack, kube_api, ns, tmp_path)
        eventually(lambda: lb.client().get("/readyz").status_code == 200, timeout=30,
                   what="the balancer ready")
        labels = balancer_deployment["spec"]["template"]["metadata"]["labels"]
        proxy.pods[BALANCER_POD.name] = (labels, f"{BALANCER_POD.ip}:{lb.port}")
        kubelet.run_pod(balancer_deployment, BALANCER_POD)
        ready_at = time.monotonic()
        kubelet.rollout(f"{NAME}-balancer", 1)
        eventually(lambda: proxy.history[-1][1] == "balancer", what="the Service on the balancer")
        assert proxy.history[-1][0] >= ready_at  # never before a balancer pod was ready
        through = sum(clients.answers.values())
        eventually(lambda: clients.answers[f"{BALANCER_POD.ip}:{lb.port}"] >= 20,
                   what="load through the balancer")

        # Off: the Service moves back first; then the balancer's children are deleted and
        # its pod, as the kubelet does, serves through the preStop sleep before SIGTERM.
        kubectl.apply(model_deployment(ns, routing={"balancer": False}))
        eventually(lambda: kubelet.deployment(f"{NAME}-balancer") is None,
                   what="the balancer Deployment deleted")
        deleted_at = time.monotonic()
        back = [t for t, target in proxy.history if target == "runtime"][-1]
        assert back <= deleted_at, proxy.history
        time.sleep(1.0)  # the preStop sleep (5 s in the pod spec)
        lb_stack.close()  # SIGTERM: it drains and exits 0 (checked)
        del proxy.pods[BALANCER_POD.name]
        for kind in ("serviceaccount", "role", "rolebinding", "pdb"):
            eventually(lambda kind=kind: cluster.get(kind, f"{NAME}-balancer") is None,
                       what=f"the balancer's {kind} pruned")
        after = sum(clients.answers.values())
        eventually(lambda: sum(clients.answers.values()) >= after + 20, what="load goes on")
    assert clients.failures == [], clients.failures[:5]
    assert through > 0 and sum(clients.answers.values()) > after
    print(f"answers per endpoint: {dict(clients.answers)}; Service history: {proxy.history}")
