"""The whole product on a real cluster: helm install, the demo model, predictions, scale, GC.

Runs with ``--e2e`` (or ``MODELPLANE_E2E=1``) against the kubeconfig's cluster, with the
images named by ``MODELPLANE_E2E_{OPERATOR,RUNTIME}_IMAGE`` already pullable (or loaded
into kind: scripts/e2e-kind.sh does all of it). Tests run in file order on one
ModelDeployment; the last one deletes it. What only a real cluster shows is checked here:
the rollout, the scale subresource, Pod Security admission, and garbage collection.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml
from modelplane_runtime.demo_model import demo_predict

from tests.fixtures.cluster import RELEASE, Cluster
from tests.fixtures.polling import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(900)]

SAMPLE = Path(__file__).resolve().parents[2] / "manifests" / "samples" / "seed-mlp.yaml"
NAME = yaml.safe_load(SAMPLE.read_text())["metadata"]["name"]
CHILD_KINDS = ("deployments,services,poddisruptionbudgets,horizontalpodautoscalers,"
               "serviceaccounts,roles,rolebindings")
SELECTOR = f"modelplane.io/deployment={NAME}"
ROWS = np.arange(24, dtype=np.float32).reshape(3, 8) / 10


@pytest.fixture(scope="module")
def model_ns(cluster: Cluster, modelplane_release: str, e2e_namespace: str) -> str:
    """seed-mlp applied in the test namespace and Ready; the namespace."""
    cluster.kubectl("apply", "-n", e2e_namespace, "-f", str(SAMPLE))
    done = cluster.kubectl(
        "wait", "--for=condition=Ready", f"md/{NAME}", "-n", e2e_namespace, "--timeout=600s",
        timeout=630, check=False,
    )
    if done.returncode != 0:
        describe = cluster.kubectl("describe", f"md/{NAME}", "-n", e2e_namespace, check=False)
        pods = cluster.kubectl("get", "pods,events", "-n", e2e_namespace, check=False)
        pytest.fail(f"{NAME} never became Ready:\n{describe.stdout}\n{pods.stdout}")
    return e2e_namespace


def _md(cluster: Cluster, namespace: str) -> dict[str, Any]:
    found: dict[str, Any] = cluster.get(f"md/{NAME}", namespace)
    return found


def test_helm_test_reports_the_operator_healthy(cluster: Cluster, modelplane_release: str) -> None:
    done = cluster.helm("test", RELEASE, "--namespace", modelplane_release, "--timeout", "3m")
    assert "Succeeded" in done.stdout  # helm itself exits non-zero when the test pod fails


def test_ready_with_children_and_printer_columns(cluster: Cluster, model_ns: str) -> None:
    md = _md(cluster, model_ns)
    conditions = {c["type"]: c for c in md["status"]["conditions"]}
    assert conditions["Ready"]["status"] == "True"
    assert md["status"]["observedGeneration"] == md["metadata"]["generation"]
    assert md["status"]["url"].startswith(f"http://{NAME}.{model_ns}.svc")
    deployment = cluster.get(f"deployment/{NAME}", model_ns)
    assert deployment["metadata"]["ownerReferences"][0]["uid"] == md["metadata"]["uid"]
    table = cluster.kubectl("get", "md", "-n", model_ns).stdout
    header, row = table.splitlines()[0].split(), table.splitlines()[1].split()
    assert header[:3] == ["NAME", "READY", "MODEL"]
    assert row[0] == NAME
    assert row[1] == "1/1"


def _predict(port: int) -> np.ndarray:
    response = httpx.post(
        f"http://127.0.0.1:{port}/v1/models/{NAME}:predict",
        json={"instances": ROWS.tolist()}, timeout=30,
    )
    assert response.status_code == 200, response.text
    return np.asarray(response.json()["predictions"], dtype=np.float32)


def _serving_through_the_balancer(cluster: Cluster, namespace: str) -> dict[str, Any]:
    """status.balancer once the Service selects the balancer pods (a balancer is ready)."""
    def serving() -> dict[str, Any] | None:
        found: dict[str, Any] = _md(cluster, namespace)["status"].get("balancer") or {}
        return found if found.get("serving") and found.get("readyReplicas", 0) >= 1 else None

    return eventually(serving, timeout=300, interval=2, what="the Service on the balancer")


def _balancer_requests(port: int) -> dict[str, float]:
    """The balancer's requests by replica, from its own /metrics (answered by the balancer
    pod behind the port-forward, never proxied)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "modelplane_balancer_requests_total" and sample.labels["replica"]:
                replica = sample.labels["replica"]
                totals[replica] = totals.get(replica, 0.0) + sample.value
    return totals


def test_the_balancer_runs_in_front_of_the_replicas(cluster: Cluster, model_ns: str) -> None:
    """Two balancer pods on their own ServiceAccount; the Service selects them."""
    balancer = _serving_through_the_balancer(cluster, model_ns)
    assert balancer["ready"].endswith("/2")
    service = cluster.get(f"service/{NAME}", model_ns)
    assert service["spec"]["selector"] == {"modelplane.io/balancer": NAME}
    headless = cluster.get(f"service/{NAME}-replicas", model_ns)
    assert headless["spec"]["clusterIP"] == "None"
    pods = cluster.get("pods", model_ns)["items"]
    balancers = [p for p in pods if p["metadata"]["labels"].get("modelplane.io/balancer") == NAME]
    assert balancers and all(p["spec"]["serviceAccountName"] == f"{NAME}-balancer"
                             for p in balancers)
    # RBAC as rendered: the balancer may read its own ModelDeployment, not write it.
    can = cluster.kubectl("auth", "can-i", "patch", f"modeldeployments/{NAME}", "-n", model_ns,
                          f"--as=system:serviceaccount:{model_ns}:{NAME}-balancer",
                          check=False)
    assert can.stdout.strip() == "no"
    can = cluster.kubectl("auth", "can-i", "watch", "endpointslices", "-n", model_ns,
                          f"--as=system:serviceaccount:{model_ns}:{NAME}-balancer",
                          check=False)
    assert can.stdout.strip() == "yes"


def test_predictions_through_the_service(cluster: Cluster, model_ns: str) -> None:
    _serving_through_the_balancer(cluster, model_ns)
    with cluster.port_forward(model_ns, f"svc/{NAME}", 8080) as port:
        before = sum(_balancer_requests(port).values())
        np.testing.assert_allclose(_predict(port), demo_predict(ROWS), rtol=1e-5, atol=1e-6)
        # The prediction went through the balancer (the pod behind the Service) to a replica.
        assert sum(_balancer_requests(port).values()) == before + 1
        v2 = httpx.post(
            f"http://127.0.0.1:{port}/v2/models/{NAME}/infer",
            json={"inputs": [{"name": "inputs", "shape": [3, 8], "datatype": "FP32",
                              "data": ROWS.flatten().tolist()}]},
            timeout=30,
        )
        assert v2.status_code == 200, v2.text
        (output,) = v2.json()["outputs"]
        np.testing.assert_allclose(
            np.asarray(output["data"], dtype=np.float32).reshape(3, 1), demo_predict(ROWS),
            rtol=1e-5, atol=1e-6,
        )
        bad = httpx.post(
            f"http://127.0.0.1:{port}/v1/models/{NAME}:predict", content=b"{not json",
            timeout=30,
        )
        assert bad.status_code == 400
        assert "error" in bad.json()


def test_grpc_through_the_headless_service(cluster: Cluster, model_ns: str) -> None:
    """TF Serving's own stubs and grpc.health.v1 on a replica's gRPC port, reached through
    the headless <name>-replicas Service that gRPC clients balance over themselves."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    _serving_through_the_balancer(cluster, model_ns)
    headless = cluster.get(f"service/{NAME}-replicas", model_ns)
    ports = {p["name"]: p for p in headless["spec"]["ports"]}
    assert ports["grpc"]["appProtocol"] == "kubernetes.io/h2c"
    with cluster.port_forward(model_ns, f"svc/{NAME}-replicas", ports["grpc"]["port"]) as port, \
            grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(),
                                                           timeout=30)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        request = predict_pb2.PredictRequest()
        request.model_spec.name = NAME
        request.inputs["inputs"].CopyFrom(tensor_pb2.TensorProto(
            dtype=types_pb2.DT_FLOAT, tensor_content=ROWS.tobytes(),
            tensor_shape=tensor_shape_pb2.TensorShapeProto(
                dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=n) for n in ROWS.shape])))
        answer = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
            request, timeout=30)
        (output,) = answer.outputs.values()
        got = np.frombuffer(output.tensor_content, dtype=np.float32) if output.tensor_content \
            else np.asarray(output.float_val, dtype=np.float32)
        np.testing.assert_allclose(got.reshape(3, 1), demo_predict(ROWS), rtol=1e-5, atol=1e-6)
        assert answer.model_spec.name == NAME


def test_status_shows_live_load(cluster: Cluster, model_ns: str) -> None:
    """Load sent through the Service appears in status.load and the RPS column."""
    stop = threading.Event()
    sent = [0]

    def load(port: int) -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                client.post(
                    f"http://127.0.0.1:{port}/v1/models/{NAME}:predict",
                    json={"instances": ROWS.tolist()},
                )
                sent[0] += 1

    def busy() -> dict[str, Any] | None:
        status_load = _md(cluster, model_ns)["status"].get("load") or {}
        rps = status_load.get("requestsPerSecond") or 0
        return status_load if rps > 0 and status_load.get("latencyP99Ms") else None

    with cluster.port_forward(model_ns, f"svc/{NAME}", 8080) as port:
        worker = threading.Thread(target=load, args=(port,), daemon=True)
        worker.start()
        try:
            seen = eventually(busy, timeout=120, interval=2, what="status.load to show requests")
        finally:
            stop.set()
            worker.join(timeout=30)
    assert sent[0] > 0
    assert seen["latencyP99Ms"] >= (seen.get("latencyP50Ms") or 0)


def test_pods_pass_restricted_pod_security(cluster: Cluster, model_ns: str) -> None:
    """The namespace enforces restricted, so admission already let only compliant pods in;
    a server-side dry run that pins the oldest supported policy version re-evaluates the
    running pods (PodSecurity warns about every existing pod a policy change would forbid)."""
    labels = cluster.get(f"namespace/{model_ns}")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    done = cluster.kubectl(
        "label", "--dry-run=server", "--overwrite", f"namespace/{model_ns}",
        "pod-security.kubernetes.io/enforce-version=v1.30",
    )
    assert "Warning" not in done.stderr, done.stderr
    pods = cluster.get("pods", model_ns)["items"]
    assert pods, "no runtime pods"
    assert all(p["metadata"]["labels"].get("modelplane.io/deployment") == NAME
               or p["metadata"]["labels"].get("modelplane.io/balancer") == NAME for p in pods)


def test_kubectl_scale_moves_the_deployment(cluster: Cluster, model_ns: str) -> None:
    cluster.kubectl("scale", f"md/{NAME}", "--replicas=2", "-n", model_ns)

    def scaled() -> bool:
        deployment = cluster.get(f"deployment/{NAME}", model_ns)
        return bool(
            deployment["spec"]["replicas"] == 2
            and deployment["status"].get("readyReplicas") == 2
        )

    eventually(scaled, timeout=300, interval=2, what="the Deployment to run 2 ready replicas")
    eventually(
        lambda: _md(cluster, model_ns)["status"].get("readyReplicas") == 2,
        timeout=120, interval=2, what="status.readyReplicas == 2",
    )
    scale = cluster.kubectl("get", "--raw",
        f"/apis/modelplane.io/v1alpha1/namespaces/{model_ns}/modeldeployments/{NAME}/scale")
    assert '"replicas":2' in scale.stdout.replace(" ", "")


def test_delete_garbage_collects_the_children(cluster: Cluster, model_ns: str) -> None:
    cluster.kubectl("delete", f"md/{NAME}", "-n", model_ns, "--wait=true", timeout=180)

    def gone() -> bool:
        left = [cluster.kubectl("get", f"{CHILD_KINDS},pods", "-n", model_ns, "-l", selector,
                                "-o", "name").stdout.split()
                for selector in (SELECTOR, f"modelplane.io/balancer={NAME}")]
        return not any(left)

    eventually(gone, timeout=180, interval=2, what=f"children of {NAME} to be garbage-collected")
    assert cluster.get(f"md/{NAME}", model_ns) is None
