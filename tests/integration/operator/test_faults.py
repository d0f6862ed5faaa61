"""Issue 16's reproductions, each with the real operator behind the fault-injecting proxy
(tests/fixtures/faults.py) and one ModelDeployment: what failed then, and must hold now.

1. The status converges to the children's state whatever happens to a status write.
2. A watch never dies silently: an oversized event is read, and a watch that keeps
   failing is logged and fails /healthz until it works again.
3. Hostile quantities and nesting become InvalidSpec at once (or are refused by the CRD).
4. A child the API server refuses gives Ready=False ChildRejected and an Event.
5. Restoring and deleting children are retried until done, honouring Retry-After.
6. InvalidSpec messages are bounded.
7. Strict types; a child stripped of its ownerReference is re-adopted.

Specs the current CRD refuses reach the operator through ``lenient_crd``: an older CRD
without the bounds (helm never upgrades CRDs, so clusters do run old ones).
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from modelplane_operator.builders.defaults import RenderDefaults

from tests.fixtures.faults import FaultMix, FaultProxy, Rule
from tests.fixtures.kube import CRD_DIR, KubeApi, Kubectl
from tests.fixtures.polling import eventually
from tests.integration.operator.conftest import TEST_IMAGE, Cluster, OperatorProcess
from tests.integration.operator.convergence import (
    Rollouts,
    condition,
    model_deployment,
    problems,
)

DEFAULTS = RenderDefaults(runtime_image=TEST_IMAGE)
STATUS = r"/modeldeployments/[^/]+/status$"
pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def behind_proxy(start_operator: Callable[..., OperatorProcess], kube_namespace: str,
                 fault_proxy: FaultProxy) -> Callable[..., OperatorProcess]:
    """Start the operator with all its API traffic through the fault proxy."""
    def start(**env: str) -> OperatorProcess:
        return start_operator(kube_namespace, through=fault_proxy, **env)
    return start


@pytest.fixture
def lenient_crd(kubectl: Kubectl, modelplane_crd: list[dict[str, Any]]) -> Iterator[None]:
    """The ModelDeployment CRD with a free-form spec (as an old CRD would let through);
    the real one is applied again afterwards."""
    (path,) = sorted(CRD_DIR.glob("*.yaml"))
    crd = yaml.safe_load(path.read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    schema["properties"]["spec"] = {"type": "object",
                                    "x-kubernetes-preserve-unknown-fields": True}
    kubectl.apply(crd)
    try:
        yield
    finally:
        kubectl.apply(path)


def converged(kube_api: KubeApi, namespace: str) -> Callable[[], bool]:
    """A probe: the namespace has no problem left (see convergence.problems)."""
    last: dict[str, Any] = {}

    def probe() -> bool:
        last.clear()
        last.update(problems(kube_api, namespace, DEFAULTS))
        return not last
    return probe


def md_of(kube_api: KubeApi, namespace: str, name: str = "seed-mlp") -> dict[str, Any]:
    found: dict[str, Any] | None = kube_api.object("modelplane.io", "modeldeployments",
                                                   namespace, name)
    assert found is not None
    return found


def child(kube_api: KubeApi, namespace: str, kind: str, name: str = "seed-mlp") -> Any:
    group, plural = {"Deployment": ("apps", "deployments"), "Service": ("", "services"),
                     "HorizontalPodAutoscaler": ("autoscaling", "horizontalpodautoscalers"),
                     "PodDisruptionBudget": ("policy", "poddisruptionbudgets")}[kind]
    return kube_api.object(group, plural, namespace, name)


def ready_is(kube_api: KubeApi, namespace: str, status: str,
             name: str = "seed-mlp") -> Callable[[], dict[str, Any] | None]:
    def probe() -> dict[str, Any] | None:
        cond = condition(md_of(kube_api, namespace, name))
        return cond if cond is not None and cond["status"] == status else None
    return probe


# ---- 1. status converges whatever happens to a status write ---------------------------------

@pytest.mark.parametrize("fault", ["reset", "reset_after"])
def test_a_reset_on_the_operators_status_write_does_not_leave_the_status_wrong(
        behind_proxy: Callable[..., OperatorProcess], fault_proxy: FaultProxy,
        kubectl: Kubectl, kube_api: KubeApi, kube_namespace: str, fault: str) -> None:
    behind_proxy()
    kubectl.apply(model_deployment("seed-mlp", kube_namespace))
    eventually(ready_is(kube_api, kube_namespace, "False"), what="Ready=False (0/1)")
    # The operator's own write (not kopf's) reports the rollout: break its connection.
    fault_proxy.add(Rule(fault, method="PATCH", path=STATUS,  # type: ignore[arg-type]
                         agent="modelplane-operator"))
    with Rollouts(kube_api, kube_namespace) as rollouts:
        rollouts.ready.add("seed-mlp")
        eventually(ready_is(kube_api, kube_namespace, "True"), timeout=30,
                   what="Ready=True after the reset")
        eventually(converged(kube_api, kube_namespace), timeout=30, what="convergence")
    assert fault_proxy.count(fault) == 1


def test_kopfs_status_write_landing_late_is_corrected_and_kubectl_wait_returns(
        behind_proxy: Callable[..., OperatorProcess], fault_proxy: FaultProxy,
        kubectl: Kubectl, kube_api: KubeApi, kube_namespace: str) -> None:
    behind_proxy()
    # kopf's first status write (the reconcile's 0/1) is held 3 s; meanwhile the
    # Deployment becomes ready and the operator writes 1/1; then kopf's 0/1 lands.
    fault_proxy.add(Rule("delay", method="PATCH", path=STATUS, agent="kopf", delay_s=3))
    with Rollouts(kube_api, kube_namespace) as rollouts:
        rollouts.ready.add("seed-mlp")
        kubectl.apply(model_deployment("seed-mlp", kube_namespace))
        waiting = kubectl.popen("wait", "--for=condition=Ready", "md/seed-mlp", "-n",
                                kube_namespace, "--timeout=60s")
        eventually(lambda: [e for e in fault_proxy.entries(agent="kopf")
                            if e.outcome == "delay"], timeout=30, what="kopf's late write")
        eventually(converged(kube_api, kube_namespace), timeout=30,
                   what="the status after kopf's late write")
        out, err = waiting.communicate(timeout=60)
    assert waiting.returncode == 0, err
    assert "condition met" in out
    assert condition(md_of(kube_api, kube_namespace))["status"] == "True"  # type: ignore[index]


def test_a_conflict_on_kopfs_status_write_is_written_by_the_operator(
        behind_proxy: Callable[..., OperatorProcess], fault_proxy: FaultProxy,
        kubectl: Kubectl, kube_api: KubeApi, kube_namespace: str) -> None:
    operator = behind_proxy()
    fault_proxy.add(Rule("status", status=409, method="PATCH", path=STATUS, agent="kopf"))
    kubectl.apply(model_deployment("seed-mlp", kube_namespace))
    eventually(lambda: fault_proxy.count("status:409"), what="the 409")
    # kopf gives up on a 409; after the hand-over's grace period the operator writes it.
    eventually(converged(kube_api, kube_namespace), timeout=40, what="the first status")
    assert "has not arrived; writing it" in operator.logs()
    with Rollouts(kube_api, kube_namespace) as rollouts:
        rollouts.ready.add("seed-mlp")
        eventually(ready_is(kube_api, kube_namespace, "True"), timeout=30, what="Ready=True")


@pytest.mark.slow
def test_status_writes_refused_for_a_minute_converge_afterwards(
        behind_proxy: Callable[..., OperatorProcess], fault_proxy: FaultProxy,
        kubectl: Kubectl, kube_api: KubeApi, kube_namespace: str) -> None:
    behind_proxy()
    # 55 s of 503 (Retry-After: 1) on every status write, longer than kopf retries (54 s).
    fault_proxy.add(Rule("status", status=503, retry_after_s=1, method="PATCH", path=STATUS,
                         times=None, for_s=55))
    with Rollouts(kube_api, kube_namespace) as rollouts:
        kubectl.apply(model_deployment("seed-mlp", kube_namespace))
        eventually(lambda: child(kube_api, kube_namespace, "Deployment"), what="Deployment")
        rollouts.ready.add("seed-mlp")
        started = time.monotonic()
        eventually(converged(kube_api, kube_namespace), timeout=120,
                   what="the status after the outage")
    assert time.monotonic() - started > 40, "converged during the outage: no fault happened?"
    assert fault_proxy.count("status:503") > 5


KOPF_RETRY_WRITES = {
    # kopf stores a failed handler's retry in the status (status.kopf.progress, "delayed")
    "storing the retry": r'"delayed":\s*"',
    # and, the delay over, wakes it by "touching" the object (status.kopf.dummy).
    "the touch waking the retry": r'"dummy":\s*"',
}


@pytest.mark.parametrize("write", sorted(KOPF_RETRY_WRITES))
def test_a_retry_kopf_lost_to_a_failed_write_is_reconciled_by_the_operator(
        behind_proxy: Callable[..., OperatorProcess], fault_proxy: FaultProxy,
        kubectl: Kubectl, kube_api: KubeApi, kube_namespace: str, write: str) -> None:
    # Seen at scale (test_faults_at_scale): a child's create failed, so the reconcile
    # failed; then one of kopf's own writes for the retry failed (kopf does not retry a
    # 409), and kopf never handled the object again: no status, a child missing, forever.
    operator = behind_proxy(MODELPLANE_OPERATOR_LOST_AFTER_S="2")
    fault_proxy.add(
        # 409 on create, and the PDB is not there: the reconcile fails, kopf retries in 1 s.
        Rule("status", status=409, method="POST", path="/poddisruptionbudgets$"),
        Rule("status", status=409, method="PATCH", path=STATUS, agent="kopf",
             body=KOPF_RETRY_WRITES[write]))
    kubectl.apply(model_deployment("seed-mlp", kube_namespace))
    eventually(lambda: fault_proxy.count("status:409") == 2, what="both faults")
    eventually(converged(kube_api, kube_namespace), timeout=30,
               what="the object kopf lost, reconciled by the operator")
    assert "kopf lost its retry" in operator.logs()
    assert operator.metric("modelplane_operator_reconciles_total", trigger="resync",
                           result="ok") == 1
    with Rollouts(kube_api, kube_namespace) as rollouts:
        rollouts.ready.add("seed-mlp")
        eventually(ready_is(kube_api, kube_namespace, "True"), timeout=30, what="Ready=True")


def test_a_restart_rederives_every_status(
        start_operator: Callable[..., OperatorProcess], kubectl: Kubectl, kube_api: KubeApi,
        kube_namespace: str) -> None:
    first = start_operator(kube_namespace)
    kubectl.apply(model_deployment("seed-mlp", kube_namespace))
    eventually(converged(kube_api, kube_namespace), what="convergence")
    assert first.stop() == 0
    # While no operator runs, the status is made wrong and the Deployment becomes ready.
    kubectl("patch", "md", "seed-mlp", "-n", kube_namespace, "--subresource=status",
            "--type=merge", "-p", json.dumps({"status": {"ready": "7/7", "conditions": None}}))
    Rollouts(kube_api, kube_namespace).complete(child(kube_api, kube_namespace, "Deployment"))
    start_operator(kube_namespace)
    eventually(converged(kube_api, kube_namespace), timeout=30, what="the re-derived status")
    assert md_of(kube_api, kube_namespace)["status"]["ready"] == "1/1"


def test_a_writer_fighting_the_status_meets_backoff_not_a_write_loop(
        operator: OperatorProcess, kubectl: Kubectl, kube_api: KubeApi,
        kube_namespace: str) -> None:
    kubectl.apply(model_deployment("seed-mlp", kube_namespace))
    eventually(converged(kube_api, kube_namespace), what="convergence")
    before = operator.metric("modelplane_operator_status_writes_total")
    path = f"/apis/modelplane.io/v1alpha1/namespaces/{kube_namespace}/modeldeployments/seed-mlp"
    with httpx.Client(base_url=kube_api.url) as client:
        for _ in range(20):  # someone else sets the same wrong value, 20 times in 4 s
            client.patch(path + "/status", json={"status": {"ready": "9/9"}},
                         headers={"Content-Type": "application/merge-patch+json"})
            time.sleep(0.2)  # the fighter's pace (the scenario), not a wait for a result
    writes = operator.metric("modelplane_operator_status_writes_total") - before
    assert 2 <= writes <= 8, writes
    assert "keeps changing back after our writes" in operator.logs()
    eventually(converged(kube_api, kube_namespace), timeout=30, what="convergence after")


# ---- 2. watches never die silently ----------------------------------------------------------

def test_an_oversized_deployment_event_does_not_stop_the_watch(
        behind_proxy: Callable[..., OperatorProcess], kubectl: Kubectl, kube_api: KubeApi,
        kube_namespace: str, tmp_path: Path) -> None:
    operator = behind_proxy()
    # A 700 KB Deployment carrying the operator's label: its watch event is one 700 KB line.
    container = {"name": "c", "image": "busybox", "env": [{"name": "BIG", "value": "x" * 700_000}]}
    big = {"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": "big", "namespace": kube_namespace,
                        "labels": {"app.kubernetes.io/managed-by": "modelplane-operator"}},
           "spec": {"selector": {"matchLabels": {"app": "big"}},
                    "template": {"metadata": {"labels": {"app": "big"}},
                                 "spec": {"containers": [container]}}}}
    path = tmp_path / "big.json"
    path.write_text(json.dumps(big))
    kubectl("create", "-f", str(path))
    # The watch still works after it: a new object's Deployment is seen (status 1/1) and a
    # deleted Service is restored.
    with Rollouts(kube_api, kube_namespace) as rollouts:
        rollouts.ready.add("seed-mlp")
        kubectl.apply(model_deployment("seed-mlp", kube_namespace))
        eventually(ready_is(kube_api, kube_namespace, "True"), timeout=30, what="Ready=True")
    kubectl("delete", "service", "seed-mlp", "-n", kube_namespace)
    eventually(lambda: child(kube_api, kube_namespace, "Service"), timeout=30,
               what="the Service restored")
    assert "watch of Deployment" not in operator.logs()
    assert httpx.get(operator.url + "/healthz").status_code == 200


def test_a_failing_watch_is_logged_and_fails_healthz_until_it_works(
        behind_proxy: Callable[..., OperatorProcess], fault_proxy: FaultProxy,
        kubectl: Kubectl, kube_api: KubeApi, kube_namespace: str) -> None:
    # Streams are cut every 1-2 s, so the watches keep reconnecting; then every request
    # for Deployments fails.
    fault_proxy.set_mix(FaultMix(watch_cut_s=(1.0, 2.0)))
    operator = behind_proxy(MODELPLANE_OPERATOR_UNHEALTHY_AFTER_S="3")
    fault_proxy.add(Rule("status", status=500, method="GET", path="/deployments$",
                         times=None))

    def health() -> httpx.Response | None:
        answer = httpx.get(operator.url + "/healthz")
        return answer if answer.status_code == 503 else None

    answer = eventually(health, timeout=60, what="/healthz to fail")
    assert any("watch of Deployment" in p for p in answer.json()["problems"]), answer.text
    assert "watch of Deployment" in operator.logs()
    fault_proxy.quiet()
    eventually(lambda: httpx.get(operator.url + "/healthz").status_code == 200, timeout=60,
               what="/healthz to recover")
    assert "watch of Deployment" in operator.logs() and "works again" in operator.logs()
    kubectl.apply(model_deployment("seed-mlp", kube_namespace))
    eventually(converged(kube_api, kube_namespace), timeout=30, what="convergence after")


# ---- 3, 6, 7. hostile specs -----------------------------------------------------------------

DEEP: dict[str, Any] = {}
_node = DEEP
for _ in range(300):
    _node["x"] = {}
    _node = _node["x"]


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"resources": {"cpu": "1e999000"}}, "spec.resources.cpu"),
        ({"resources": {"cpu": "1e999999"}}, "spec.resources.cpu"),
        ({"resources": {"cpu": "9" * 4000}}, "spec.resources.cpu"),
        ({"scheduling": {"affinity": {"nodeAffinity": DEEP}}},
         "spec.scheduling.affinity.nodeAffinity"),
        ({"scheduling": {"nodeSelector": {"bad key!": "x"}}},
         'spec.scheduling.nodeSelector["bad key!"]'),
        ({"scheduling": {"tolerations": [{"key": "a", "effect": "NoExecute",
                                          "tolerationSeconds": "30"}]}},
         "spec.scheduling.tolerations[0].tolerationSeconds"),
        ({"replicas": "3"}, "spec.replicas"),
        ({"replicas": True}, "spec.replicas"),
        ({"runtime": {"postprocessing": {"p": {"labels": [{"bad": i} for i in range(5000)]}}}},
         "spec.runtime.postprocessing.p.labels[0]"),
    ],
    ids=["cpu-1e999000", "cpu-1e999999", "cpu-4000-digits", "affinity-300-deep",
         "node-selector-key", "toleration-seconds-string", "replicas-string",
         "replicas-true", "5000-bad-labels"],
)
def test_hostile_specs_become_invalid_spec_at_once_and_create_nothing(
        lenient_crd: None, operator: OperatorProcess, kubectl: Kubectl, cluster: Cluster,
        kube_api: KubeApi, kube_namespace: str, tmp_path: Path, spec: dict[str, Any],
        field: str) -> None:
    hostile = model_deployment("hostile", kube_namespace, **spec)
    path = tmp_path / "hostile.json"
    path.write_text(json.dumps(hostile))  # JSON: no YAML parser between us and the server
    kubectl("apply", "-f", str(path))
    ready = eventually(lambda: cluster.condition("hostile"), timeout=20, what="a condition")
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert ready["message"].startswith(field), ready["message"]
    assert len(ready["message"]) < 4000
    event = eventually(lambda: [e for e in cluster.events("hostile")
                                if e["reason"] == "InvalidSpec"], what="an InvalidSpec Event")
    assert event[0]["type"] == "Warning"
    # Nothing was created, and the operator is still responsive.
    kubectl.apply(model_deployment("after", kube_namespace))
    eventually(lambda: child(kube_api, kube_namespace, "Deployment", "after"), timeout=20,
               what="the next object's Deployment")
    for kind in ("Deployment", "Service", "PodDisruptionBudget"):
        assert child(kube_api, kube_namespace, kind, "hostile") is None
    assert operator.process.poll() is None


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ({"resources": {"cpu": "1e999000"}}, "spec.resources.cpu"),
        ({"resources": {"cpu": "9" * 4000}}, "spec.resources.cpu: Too long"),
        ({"scheduling": {"tolerations": [{"key": "a", "tolerationSeconds": "30"}]}},
         "tolerationSeconds"),
        ({"replicas": "3"}, "spec.replicas"),
        ({"runtime": {"env": [{"name": "A", "value": "x" * 40_000}]}}, "spec.runtime.env[0]"),
    ],
    ids=["cpu-exponent", "cpu-length", "toleration-seconds", "replicas", "env-value"],
)
def test_the_crd_refuses_hostile_specs_before_the_operator_sees_them(
        modelplane_crd: Any, kubectl: Kubectl, kube_namespace: str, tmp_path: Path,
        spec: dict[str, Any], fragment: str) -> None:
    path = tmp_path / "hostile.json"
    path.write_text(json.dumps(model_deployment("hostile", kube_namespace, **spec)))
    done = kubectl("apply", "-f", str(path), check=False)
    assert done.returncode != 0
    assert "invalid" in done.stderr.lower() and fragment in done.stderr, done.stderr


# ---- 4. a child the API server refuses ------------------------------------------------------

def test_a_refused_child_is_reported_and_the_rest_explained(
        behind_proxy: Callable[..., OperatorProcess], fault_proxy: FaultProxy,
        kubectl: Kubectl, cluster: Cluster, kube_api: KubeApi, kube_namespace: str) -> None:
    behind_proxy(MODELPLANE_OPERATOR_REFUSED_RETRY_S="2")
    refusal = ('Deployment.apps "seed-mlp" is invalid: spec.template.spec.containers[0]'
               '.resources.limits: Forbidden: exceeds the namespace quota')
    fault_proxy.add(Rule("status", status=422, method="POST", path="/deployments$",
                         message=refusal, times=None))
    md = model_deployment("seed-mlp", kube_namespace)
    kubectl.apply(md)
    ready = eventually(lambda: (c := cluster.condition("seed-mlp")) and c["reason"]
                       == "ChildRejected" and c, timeout=30, what="ChildRejected")
    assert "refused Deployment seed-mlp" in ready["message"]
    assert "exceeds the namespace quota" in ready["message"]
    assert "refused Deployment seed-mlp-balancer" in ready["message"]  # every POST refused
    applied = ready["message"].split("applied: ", 1)[1].split(", ")
    assert applied == ["ServiceAccount seed-mlp-balancer", "Role seed-mlp-balancer",
                       "RoleBinding seed-mlp-balancer", "PodDisruptionBudget seed-mlp-balancer",
                       "Service seed-mlp-replicas", "Service seed-mlp",
                       "PodDisruptionBudget seed-mlp"]
    event = eventually(lambda: [e for e in cluster.events("seed-mlp")
                                if e["reason"] == "ChildRejected"], what="the Event")
    assert event[0]["type"] == "Warning"
    assert child(kube_api, kube_namespace, "Deployment") is None
    # A change of the spec is handled at once (and refused again while the cause lasts).
    md["spec"]["replicas"] = 2
    kubectl.apply(md)
    eventually(lambda: md_of(kube_api, kube_namespace)["status"].get("observedGeneration")
               == 2, timeout=20, what="the new generation handled")
    assert cluster.condition("seed-mlp")["reason"] == "ChildRejected"  # type: ignore[index]
    # Once the cause is gone (a quota raised), the slow retry brings the Deployment.
    fault_proxy.quiet()
    eventually(converged(kube_api, kube_namespace), timeout=30, what="convergence")
    assert cluster.condition("seed-mlp")["reason"] != "ChildRejected"  # type: ignore[index]


# ---- 5. repairs and cleanup are retried -----------------------------------------------------

def test_restoring_children_is_retried_until_they_are_back(
        behind_proxy: Callable[..., OperatorProcess], fault_proxy: FaultProxy,
        kubectl: Kubectl, kube_api: KubeApi, kube_namespace: str) -> None:
    operator = behind_proxy()
    kubectl.apply(model_deployment("seed-mlp", kube_namespace, replicas=None,
                                   autoscaling={"minReplicas": 1, "maxReplicas": 3}))
    eventually(converged(kube_api, kube_namespace), what="convergence")
    # More failures than one call's own retries: the repair loop must go on.
    for plural in ("services", "horizontalpodautoscalers"):
        fault_proxy.add(Rule("status", status=503, retry_after_s=1, method="POST",
                             path=f"/{plural}$", times=8))
    kubectl("delete", "service,hpa", "seed-mlp", "-n", kube_namespace)
    eventually(converged(kube_api, kube_namespace), timeout=60, what="both restored")
    assert fault_proxy.count("status:503") == 16
    assert "could not restore Service" in operator.logs()


def test_cleanup_is_retried_through_errors_and_conflicts(
        behind_proxy: Callable[..., OperatorProcess], fault_proxy: FaultProxy,
        kubectl: Kubectl, kube_api: KubeApi, kube_namespace: str) -> None:
    operator = behind_proxy()
    # Without the balancer: one Deployment meets all eight failures (kube.py retries each
    # call four times, so two Deployments deleted at once would share them out).
    kubectl.apply(model_deployment("seed-mlp", kube_namespace, routing={"balancer": False}))
    eventually(converged(kube_api, kube_namespace), what="convergence")
    fault_proxy.add(Rule("status", status=503, method="DELETE", path="/deployments/", times=8),
                    Rule("status", status=409, method="DELETE", path="/services/"))
    kubectl("delete", "md", "seed-mlp", "-n", kube_namespace)
    for kind in ("Deployment", "Service", "PodDisruptionBudget"):
        eventually(lambda kind=kind: child(kube_api, kube_namespace, kind) is None,
                   timeout=60, what=f"the {kind} deleted")
    logs = operator.logs()
    assert "could not delete Deployment" in logs
    assert "changed while being deleted; reading it again" in logs


def test_retry_after_is_honoured(
        behind_proxy: Callable[..., OperatorProcess], fault_proxy: FaultProxy,
        kubectl: Kubectl, kube_api: KubeApi, kube_namespace: str) -> None:
    behind_proxy()
    fault_proxy.add(Rule("status", status=429, retry_after_s=2, method="POST",
                         path="/poddisruptionbudgets$", times=2))
    # Without the balancer, whose PDB would be a second POST to the same path.
    kubectl.apply(model_deployment("seed-mlp", kube_namespace, routing={"balancer": False}))
    eventually(converged(kube_api, kube_namespace), timeout=30, what="convergence")
    attempts = [e.at for e in fault_proxy.entries(method="POST", path="/poddisruptionbudgets$")]
    assert len(attempts) == 3
    assert attempts[1] - attempts[0] >= 1.9 and attempts[2] - attempts[1] >= 1.9, attempts


# ---- 7. re-adoption -------------------------------------------------------------------------

def test_a_child_stripped_of_its_owner_reference_is_re_adopted(
        operator: OperatorProcess, kubectl: Kubectl, kube_api: KubeApi,
        kube_namespace: str) -> None:
    kubectl.apply(model_deployment("seed-mlp", kube_namespace))
    eventually(converged(kube_api, kube_namespace), what="convergence")
    uid = md_of(kube_api, kube_namespace)["metadata"]["uid"]
    for kind in ("deployment", "service"):
        kubectl("patch", kind, "seed-mlp", "-n", kube_namespace, "--type=json", "-p",
                '[{"op": "remove", "path": "/metadata/ownerReferences"}]')
    for kind in ("Deployment", "Service"):
        refs = eventually(lambda kind=kind: (child(kube_api, kube_namespace, kind) or {}).get(
            "metadata", {}).get("ownerReferences"), timeout=20, what=f"{kind} re-adopted")
        assert [r["uid"] for r in refs] == [uid]
    # Deleting the owner now deletes them too.
    kubectl("delete", "md", "seed-mlp", "-n", kube_namespace)
    eventually(lambda: child(kube_api, kube_namespace, "Deployment") is None, timeout=30,
               what="the re-adopted Deployment deleted with its owner")


def test_invalid_spec_message_is_bounded_in_the_status_and_event(
        lenient_crd: None, operator: OperatorProcess, kubectl: Kubectl, cluster: Cluster,
        tmp_path: Path, kube_namespace: str) -> None:
    spec = copy.deepcopy(model_deployment("many", kube_namespace))
    spec["spec"]["runtime"] = {"env": [{"name": f"V{i}", "value": i} for i in range(200)]}
    path = tmp_path / "many.json"
    path.write_text(json.dumps(spec))
    kubectl("apply", "-f", str(path))
    ready = eventually(lambda: cluster.condition("many"), timeout=20, what="a condition")
    assert ready["reason"] == "InvalidSpec"
    assert ready["message"].endswith("; and 190 more problems"), ready["message"][-200:]
    assert len(ready["message"]) < 4000
