"""Models in object storage through the operator (issue 12): the rendered pod's containers
run for real against real S3, GCS and Azure servers, and what they do ends up in status.

The emulator runs no kubelet, so these tests play its part (tests/fixtures/kubelet.py):
they take the pod template of the Deployment the operator created, lay out its volumes
(the credentials Secret as read back from the API, in the kubelet's mounted layout), run
its init container (`modelplane fetch`) and runtime container as processes with exactly
the command and variables rendered, and write the Pod and its status through the API as
the kubelet would: an init container that exited 1, with the FallbackToLogsOnError
termination message made from its real output, or a running, ready pod whose address is
the runtime's.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from modelplane_operator.builders.defaults import RenderDefaults
from modelplane_operator.builders.render import render
from modelplane_operator.termination import detail

from tests.fixtures.kube import Kubectl
from tests.fixtures.kubelet import (
    PodSandbox,
    init_failed_status,
    running_status,
    secret_data,
    termination_message,
)
from tests.fixtures.object_stores import MODEL, S3User, StoreServer, files
from tests.fixtures.polling import eventually
from tests.fixtures.processes import stop_process
from tests.integration.operator.conftest import TEST_IMAGE, Cluster, OperatorProcess
from tests.integration.operator.test_live_load import common_free_port

NAME = "fraud"
POD_IP = "127.0.0.2"


def secret(name: str, namespace: str, values: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "namespace": namespace}, "stringData": values}


def model_deployment(namespace: str, **model: Any) -> dict[str, Any]:
    return {"apiVersion": "modelplane.io/v1alpha1", "kind": "ModelDeployment",
            "metadata": {"name": NAME, "namespace": namespace},
            "spec": {"model": model, "replicas": 1}}


def sandbox_of(deployment: dict[str, Any], cluster: Cluster, root: Path) -> PodSandbox:
    """The kubelet's view of the Deployment's pod: Secrets as the API server stores them."""
    def read(name: str) -> dict[str, str]:
        found = cluster.get("secret", name)
        assert found is not None, f"Secret {name} missing"
        return secret_data(found)

    return PodSandbox(deployment["spec"]["template"]["spec"], root, read)


def register_pod(kubectl: Kubectl, namespace: str, deployment: dict[str, Any],
                 status: dict[str, Any]) -> str:
    """The Pod the ReplicaSet would create from the template, with the kubelet's status."""
    template = deployment["spec"]["template"]
    name = f"{NAME}-5d8c7-x2x9q"
    kubectl.apply({"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": name, "namespace": namespace,
                                "labels": template["metadata"]["labels"]},
                   "spec": template["spec"]})
    kubectl("patch", "pod", name, "-n", namespace, "--subresource=status", "--type=merge",
            "-p", json.dumps({"status": status}))
    return name


def rolled_out(kubectl: Kubectl, namespace: str, deployment: dict[str, Any]) -> None:
    """What the Deployment controller writes once the one replica is ready."""
    status = {"observedGeneration": deployment["metadata"]["generation"], "replicas": 1,
              "readyReplicas": 1, "updatedReplicas": 1, "availableReplicas": 1}
    kubectl("patch", "deployment", NAME, "-n", namespace, "--subresource=status",
            "--type=merge", "-p", json.dumps({"status": status}))


# ---- the rendered fetcher reads each store with the mounted Secret --------------------------


def test_rendered_fetcher_reads_each_store_through_the_mounted_secret(
    store: StoreServer, tmp_path: Path
) -> None:
    """s3://, gs:// and az:// with the store's variables as a Secret's keys, mounted as
    files: the rendered init container fetches the model, and prints no secret."""
    bucket = store.make_bucket()
    for key, body in MODEL.items():
        store.upload(bucket, f"m/{key}", body)
    keys = store.env()
    md = model_deployment("ml", uri=store.uri(bucket, "m"), credentialsSecret="store-keys")
    md["metadata"]["uid"] = "0b6f3f4e-2f0a-4b8e-9d4c-1a2b3c4d5e6f"  # as the API server sets
    defaults = RenderDefaults(runtime_image=TEST_IMAGE)
    (deployment,) = [c for c in render(md, defaults)
                     if c["kind"] == "Deployment" and c["metadata"]["name"] == NAME]
    sandbox = PodSandbox(deployment["spec"]["template"]["spec"], tmp_path,
                         lambda name: keys if name == "store-keys" else {})
    run = sandbox.run("fetch-model")
    assert run.returncode == 0, run.text
    assert files(sandbox.volumes["model"]) == MODEL
    for name, value in keys.items():
        if "KEY" in name or "CONNECTION" in name:  # the secret ones
            assert value not in run.text


# ---- a failed fetch is ModelLoadFailed, in the fetcher's own words ----------------------------


@pytest.fixture
def locked_bucket(s3_server: StoreServer, clean_cloud_env: dict[str, str]) -> str:
    """A bucket holding the model at its root, made before signatures are checked (moto
    recomputes SigV4 wrongly for a prefix listing; the storage tests do the same)."""
    bucket = s3_server.make_bucket()
    for key, body in MODEL.items():
        s3_server.upload(bucket, key, body)
    return bucket


@pytest.fixture
def users(locked_bucket: str, s3_auth: dict[str, S3User]) -> dict[str, S3User]:
    """IAM users once the bucket exists and signatures are checked."""
    return s3_auth


def test_failed_fetch_is_model_load_failed_with_its_message_and_no_secret(
    operator: OperatorProcess, kubectl: Kubectl, cluster: Cluster, kube_namespace: str,
    s3_server: StoreServer, locked_bucket: str, users: dict[str, S3User], tmp_path: Path,
) -> None:
    nobody, reader = users["nobody"], users["reader"]

    def keys(user: S3User) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": user.access_key_id,
                "AWS_SECRET_ACCESS_KEY": user.secret_access_key,
                "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": s3_server.endpoint}

    kubectl.apply(secret("model-reader", kube_namespace, keys(nobody)))
    kubectl.apply(model_deployment(kube_namespace, uri=f"s3://{locked_bucket}",
                                   credentialsSecret="model-reader"))
    deployment = eventually(lambda: cluster.get("deployment", NAME), what="Deployment")

    # The kubelet runs the init container: the key is refused, the fetch exits 1.
    run = sandbox_of(deployment, cluster, tmp_path / "first").run("fetch-model")
    assert run.returncode == 1, run.text
    said = detail(termination_message(run.log))
    assert said is not None and f"s3://{locked_bucket}" in said
    pod = register_pod(kubectl, kube_namespace, deployment,
                       init_failed_status(deployment["spec"]["template"]["spec"],
                                          "fetch-model", run))

    ready = eventually(lambda: (c := cluster.condition(NAME)) and c["reason"] ==
                       "ModelLoadFailed" and c, what="Ready=False ModelLoadFailed")
    assert ready["status"] == "False"
    assert ready["message"] == f"pod {pod}: fetching the model failed: {said}"
    degraded = cluster.condition(NAME, "Degraded")
    assert degraded is not None and degraded["reason"] == "ModelLoadFailed"
    event = eventually(lambda: [e for e in cluster.events(NAME)
                                if e["reason"] == "ModelLoadFailed"], what="an Event")[0]
    assert event["type"] == "Warning"
    assert said in event["message"]
    described = kubectl("describe", "md", NAME, "-n", kube_namespace).stdout
    assert "ModelLoadFailed" in described
    print(f"Ready: {ready['reason']}: {ready['message']}")

    # Credentials never reach the status, the Events, kubectl describe or the operator's log.
    status = json.dumps(cluster.get("md", NAME))
    everything = "\n".join([status, json.dumps(cluster.events(NAME)), described,
                            operator.logs()])
    for value in (nobody.secret_access_key, reader.secret_access_key):
        assert value not in everything

    # The Secret is fixed; the kubelet's next try of the init container succeeds, the pod
    # starts and turns ready, and so does the ModelDeployment.
    kubectl.apply(secret("model-reader", kube_namespace, keys(reader)))
    again = sandbox_of(deployment, cluster, tmp_path / "second")
    run = again.run("fetch-model")
    assert run.returncode == 0, run.text
    assert files(again.volumes["model"]) == MODEL
    kubectl("patch", "pod", pod, "-n", kube_namespace, "--subresource=status",
            "--type=merge", "-p", json.dumps({"status": running_status(
                deployment["spec"]["template"]["spec"], POD_IP)}))
    rolled_out(kubectl, kube_namespace, deployment)
    ready = eventually(lambda: (c := cluster.condition(NAME)) and c["status"] == "True" and c,
                       what="Ready=True")
    assert ready["reason"] == "AllReplicasReady"


# ---- status.modelVersion follows the bucket ---------------------------------------------------


@contextmanager
def runtime_of(sandbox: PodSandbox, port: int, log: Path) -> Iterator[str]:
    """The rendered runtime container as a process on the pod's address."""
    process = sandbox.start("runtime", log, {"MODELPLANE_HOST": POD_IP,
                                             "MODELPLANE_PORT": str(port)})
    url = f"http://{POD_IP}:{port}"
    try:
        def ready() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"runtime exited: {log.read_text()[-3000:]}")
            try:
                return httpx.get(url + "/v2/health/ready", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        eventually(ready, timeout=150, interval=0.3, what="the runtime container")
        yield url
    finally:
        stop_process(process, deadline_s=60, logs=log.read_text, what="runtime")


def test_model_version_follows_new_versions_in_the_bucket(
    start_operator: Any, kubectl: Kubectl, cluster: Cluster, kube_namespace: str,
    s3_server: StoreServer, clean_cloud_env: dict[str, str], demo_model_dir: Path,
    tmp_path: Path,
) -> None:
    bucket = s3_server.make_bucket()
    s3_server.upload_folder(bucket, "repo", demo_model_dir)  # repo/1/...
    port = common_free_port((POD_IP,))
    start_operator(kube_namespace, MODELPLANE_OPERATOR_SCRAPE_PORT=str(port))
    kubectl.apply(secret("store-keys", kube_namespace, s3_server.env()))
    kubectl.apply(model_deployment(kube_namespace, uri=f"s3://{bucket}/repo",
                                   credentialsSecret="store-keys", pollSeconds=1))
    deployment = eventually(lambda: cluster.get("deployment", NAME), what="Deployment")
    sandbox = sandbox_of(deployment, cluster, tmp_path / "pod")
    run = sandbox.run("fetch-model")
    assert run.returncode == 0, run.text

    with runtime_of(sandbox, port, tmp_path / "runtime.log") as url:
        register_pod(kubectl, kube_namespace, deployment,
                     running_status(deployment["spec"]["template"]["spec"], POD_IP))
        rolled_out(kubectl, kube_namespace, deployment)

        def version() -> str | None:
            return ((cluster.get("md", NAME) or {}).get("status") or {}).get("modelVersion")

        eventually(lambda: version() == "1", timeout=60, what="modelVersion 1")
        s3_server.upload_folder(bucket, "repo/2", demo_model_dir / "1")
        eventually(lambda: version() == "2", timeout=120, interval=0.5, what="modelVersion 2")
        # The runtime says the same: version 2 serves, version 1 is gone.
        states = httpx.get(f"{url}/v1/models/{NAME}", timeout=5).json()["model_version_status"]
        assert {s["version"]: s["state"] for s in states}.get("2") == "AVAILABLE"
        answer = httpx.post(f"{url}/v1/models/{NAME}:predict", timeout=10,
                            json={"instances": [[1, 2, 3, 4, 5, 6, 7, 8]]})
        assert answer.status_code == 200, answer.text
    log = (tmp_path / "runtime.log").read_text()
    assert "x" * 40 not in log  # the Secret's (moto) secret key


def test_kubelet_stand_in_keeps_the_last_two_kib_of_the_last_80_lines() -> None:
    log = b"".join(f"line {i}\n".encode() for i in range(200))
    message = termination_message(log)
    assert message.splitlines()[-1] == "line 199"
    assert len(message.splitlines()) == 80
    long_lines = b"".join(b"x" * 100 + b"\n" for _ in range(50)) + b"the end\n"
    message = termination_message(long_lines)
    assert len(message.encode()) == 2048 and message.endswith("the end\n")
