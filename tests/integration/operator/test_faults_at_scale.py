"""Issue 16 at scale: 50 ModelDeployments under the whole fault mix, and a kill -9 mid-create.

The operator's API traffic goes through the fault proxy (tests/fixtures/faults.py) with
about 10 % of requests failing (500, 503 and 429 with Retry-After, 409 on writes, resets
before and after forwarding), up to 50 ms of added latency, and every watch stream cut
after 2-10 s. The test drives the objects with kubectl straight to the emulator, plays the
Deployment controller for half of them (convergence.Rollouts), changes children by hand,
then stops the faults; after a quiet period every object's status must match its
children and no child may be missing, duplicated or orphaned (convergence.problems).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from modelplane_operator.builders.defaults import RenderDefaults

from tests.fixtures.faults import FaultMix, FaultProxy
from tests.fixtures.kube import KubeApi, Kubectl
from tests.fixtures.polling import eventually
from tests.integration.operator.conftest import TEST_IMAGE, OperatorProcess
from tests.integration.operator.convergence import Rollouts, model_deployment, problems

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

DEFAULTS = RenderDefaults(runtime_image=TEST_IMAGE)
MIX = FaultMix(server_error=0.02, unavailable=0.02, throttled=0.02, retry_after_s=1,
               conflict=0.02, reset=0.02, latency_s=(0.0, 0.05), watch_cut_s=(2.0, 10.0),
               seed=16)
KEPT = 50
DELETED = (7, 21, 35, 44, 52)


def names(count: int) -> list[str]:
    return [f"md-{i:02d}" for i in range(count)]


def spec_of(i: int, generation: int = 1) -> dict[str, Any]:
    """A mix of shapes: plain, autoscaled, canaried; the second generation changes some."""
    spec: dict[str, Any] = {}
    if i % 5 == 0:
        spec = {"replicas": None, "autoscaling": {"minReplicas": 1, "maxReplicas": 3}}
    if i % 7 == 0:
        spec["canary"] = {"model": {"uri": "demo://seed-mlp-v2"}, "trafficPercent": 20}
    if generation > 1:
        if i % 3 == 0 and i % 5 != 0:
            spec["replicas"] = 2
        if i % 4 == 1:
            spec["resources"] = {"cpu": "250m", "memory": "1Gi"}
        if i % 10 == 5:  # autoscaling turned off: the HPA must go
            spec = {"replicas": 1}
    return spec


def apply_all(kubectl: Kubectl, namespace: str, count: int, generation: int) -> None:
    items = [model_deployment(name, namespace, **spec_of(i, generation))
             for i, name in enumerate(names(count))]
    kubectl.apply({"apiVersion": "v1", "kind": "List", "items": items})


def report(kube_api: KubeApi, namespace: str, deleted: list[str]) -> dict[str, list[str]]:
    found = problems(kube_api, namespace, DEFAULTS, deleted)
    print(f"{len(found)} objects not converged: {dict(list(found.items())[:5])}")
    return found


def quiet_windows(operator: OperatorProcess, kube_api: KubeApi, namespace: str,
                  tries: int = 4) -> list[dict[str, Any]]:
    """Windows of two status rounds, until one writes nothing: what each earlier one wrote."""
    def statuses() -> dict[str, Any]:
        return {md["metadata"]["name"]: md.get("status") for md in
                kube_api.objects("modelplane.io", "modeldeployments", namespace)}

    def writes() -> tuple[float, float]:
        return (operator.metric("modelplane_operator_status_writes_total"),
                operator.metric("modelplane_operator_child_writes_total"))

    def rounds() -> float:
        return operator.metric("modelplane_operator_status_rounds_total")

    late: list[dict[str, Any]] = []
    for _ in range(tries):
        before, written, start = statuses(), writes(), rounds()
        eventually(lambda: rounds() >= start + 2, what="two status rounds")  # noqa: B023
        after, now = statuses(), writes()
        if now == written:
            return late
        late.append({"status writes": now[0] - written[0], "child writes": now[1] - written[1],
                     "changed": {name: _changed(before.get(name) or {}, status or {})
                                 for name, status in after.items()
                                 if status != before.get(name)}})
    return late


def _changed(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    return {key: (old.get(key), new.get(key)) for key in sorted(set(old) | set(new))
            if old.get(key) != new.get(key)}


def test_fifty_objects_through_create_update_delete_under_faults_then_quiet(
        start_operator: Callable[..., OperatorProcess], fault_proxy: FaultProxy,
        kubectl: Kubectl, kube_api: KubeApi, kube_namespace: str) -> None:
    count = KEPT + len(DELETED)
    fault_proxy.set_mix(MIX)
    operator = start_operator(kube_namespace, through=fault_proxy)
    deleted = [f"md-{i:02d}" for i in DELETED]
    with Rollouts(kube_api, kube_namespace) as rollouts:
        rollouts.ready.update(n for i, n in enumerate(names(count)) if i % 2 == 0)
        apply_all(kubectl, kube_namespace, count, generation=1)
        eventually(lambda: len(kube_api.objects("apps", "deployments", kube_namespace)) >= 25,
                   timeout=120, what="half the Deployments, under faults")
        apply_all(kubectl, kube_namespace, count, generation=2)
        # Hand-made drift while the faults go on (on Services that exist by then: under
        # faults, 25 Deployments do not mean that these three Services were made).
        eventually(lambda: all(kube_api.object("", "services", kube_namespace, name)
                               for name in ("md-01", "md-02", "md-03")),
                   timeout=120, what="the Services to delete, under faults")
        kubectl("delete", "service", "md-01", "md-02", "md-03", "-n", kube_namespace)
        kubectl("delete", "hpa", "md-10", "-n", kube_namespace, check=False)
        for name in ("md-04", "md-06"):
            kubectl("patch", "deployment", name, "-n", kube_namespace, "--type=merge", "-p",
                    '{"spec": {"template": {"spec": {"containers": '
                    '[{"name": "runtime", "image": "evil.example/miner:1"}]}}}}',
                    check=False)
        kubectl("delete", "md", *deleted, "-n", kube_namespace)
        # Faults go on until 50 requests have met one (besides the cut watch streams), and
        # every kind the mix is about has happened at least once (a watch stream is first
        # cut 2-10 s after it opens: a fast run could reach 50 faults before that).
        eventually(lambda: fault_proxy.count() - fault_proxy.count("forwarded")
                   - fault_proxy.count("cut") >= 50
                   and all(fault_proxy.count(kind) > 0 for kind in ("reset", "cut", "status:409")),
                   timeout=240, interval=0.5, what="50 injected faults of every kind")
        injected = {outcome: fault_proxy.count(outcome) for outcome in
                    ("status:500", "status:503", "status:429", "status:409", "reset", "cut")}
        at_quiet = report(kube_api, kube_namespace, deleted)
        fault_proxy.quiet()
        quiet_started = time.monotonic()
        eventually(lambda: not report(kube_api, kube_namespace, deleted), timeout=180,
                   interval=1.0, what="every object converged after the faults")
        took = time.monotonic() - quiet_started
    mds = kube_api.objects("modelplane.io", "modeldeployments", kube_namespace)
    assert len(mds) == KEPT
    print(f"faults injected: {injected}; not converged when the faults stopped: "
          f"{len(at_quiet)} of {KEPT}; all {KEPT} converged {took:.1f}s after")
    # Converged means quiet too. A status patch that failed under the faults may still be
    # retried once after the checked fields (observedGeneration, ready, Ready) agree, so a
    # first window may write; after that, two status rounds in a row must write nothing
    # (an operator that rewrites something every round never gets there).
    late = quiet_windows(operator, kube_api, kube_namespace)
    print(f"status written after convergence: {late or 'nothing'}")
    assert len(late) <= 1, f"still writing {len(late)} windows after convergence: {late}"
    assert injected["reset"] > 0 and injected["cut"] > 0 and injected["status:409"] > 0


def test_kill_9_mid_create_then_restart_converges(
        start_operator: Callable[..., OperatorProcess], fault_proxy: FaultProxy,
        kubectl: Kubectl, kube_api: KubeApi, kube_namespace: str) -> None:
    # Latency slows creation down enough to catch the operator in the middle of it.
    fault_proxy.set_mix(FaultMix(latency_s=(0.05, 0.2), seed=9))
    first = start_operator(kube_namespace, through=fault_proxy)
    with Rollouts(kube_api, kube_namespace) as rollouts:
        rollouts.ready.update(n for i, n in enumerate(names(KEPT)) if i % 2 == 0)
        apply_all(kubectl, kube_namespace, KEPT, generation=1)
        eventually(lambda: len(kube_api.objects("apps", "deployments", kube_namespace)) >= 5,
                   timeout=60, interval=0.05, what="the first Deployments")
        first.kill()
        at_kill = report(kube_api, kube_namespace, [])
        assert at_kill, "everything was done before the kill: not mid-create"
        fault_proxy.quiet()
        start_operator(kube_namespace, through=fault_proxy)
        eventually(lambda: not report(kube_api, kube_namespace, []), timeout=180,
                   interval=1.0, what="every object converged after the restart")
    print(f"not converged at the kill: {len(at_kill)} of {KEPT}; all converged after restart")
    assert len(kube_api.objects("modelplane.io", "modeldeployments", kube_namespace)) == KEPT
