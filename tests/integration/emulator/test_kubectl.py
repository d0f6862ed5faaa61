"""Real kubectl 1.35 against the emulated API server: what operator tests will rely on."""

from __future__ import annotations

import subprocess
import threading
from typing import Any

import httpx

from tests.fixtures.kube import KubeApi, Kubectl
from tests.fixtures.polling import eventually
from tests.fixtures.processes import kill_process
from tests.integration.emulator.conftest import WIDGETS, widget

WIDGETS_KEY = ("emulator.example.com", "widgets")


def deployment(name: str, image: str) -> dict[str, Any]:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "main", "image": image,
                                         "ports": [{"containerPort": 8080}]}]}}}}




def watches_opened(kube_api: KubeApi) -> int:
    """Watches ever opened on widgets: grows when a new client starts watching."""
    count: int = kube_api.call(lambda api: api.hub.opened(WIDGETS_KEY))
    return count


def read_until(proc: subprocess.Popen[str], needle: str, timeout: float = 20) -> list[str]:
    """Lines of a running process's stdout up to the first containing `needle`."""
    assert proc.stdout is not None
    killer = threading.Timer(timeout, proc.kill)  # a stuck stream fails instead of hanging
    killer.start()
    lines: list[str] = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if needle in line:
                return lines
        raise AssertionError(f"{needle!r} never came; got {lines}")
    finally:
        killer.cancel()


def test_apply_get_delete_core_kinds(kubectl: Kubectl, kube_namespace: str) -> None:
    ns = ("-n", kube_namespace)
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
               "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80}]}}
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web"},
              "data": {"a": "1"}}
    kubectl.apply([deployment("web", "nginx:1"), service, config], *ns)
    names = kubectl("get", "deployments,services,configmaps", "-o", "name", *ns).stdout.split()
    assert names == ["deployment.apps/web", "service/web", "configmap/web"]
    kubectl.apply(deployment("web", "nginx:2"), *ns)  # a strategic merge patch of containers
    container = kubectl.json("get", "deployment", "web", *ns)["spec"]["template"]["spec"][
        "containers"][0]
    assert container == {"name": "main", "image": "nginx:2",
                         "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                         "imagePullPolicy": "IfNotPresent",  # the API server's defaults
                         "terminationMessagePath": "/dev/termination-log",
                         "terminationMessagePolicy": "File"}
    kubectl("delete", "deployment,service,configmap", "web", *ns)
    assert kubectl("get", "deployments,services,configmaps", "-o", "name", *ns).stdout == ""


def test_server_side_apply(kubectl: Kubectl, kube_namespace: str) -> None:
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"},
              "data": {"a": "1"}}
    kubectl.apply(config, "--server-side", "-n", kube_namespace)
    assert kubectl.json("get", "configmap", "ssa", "-n", kube_namespace)["data"] == {"a": "1"}


def test_custom_resource_kind_and_printer_columns(kubectl: Kubectl, kube_namespace: str,
                                                  widgets_crd: Any, http: httpx.Client) -> None:
    ns = ("-n", kube_namespace)
    assert "No resources found" in kubectl("get", "widgets", *ns).stderr
    kubectl.apply(widget("w", kube_namespace, size="large", replicas=2))
    http.patch(f"{WIDGETS}/namespaces/{kube_namespace}/widgets/w/status",
               headers={"Content-Type": "application/merge-patch+json"},
               json={"status": {"conditions": [{"type": "Ready", "status": "True"}]}})
    header, row = kubectl("get", "wd", *ns).stdout.splitlines()
    assert header.split() == ["NAME", "SIZE", "REPLICAS", "READY", "AGE"]
    assert row.split()[:4] == ["w", "large", "2", "True"]


def test_kubectl_scale_custom_resource(kubectl: Kubectl, kube_namespace: str,
                                       widgets_crd: Any) -> None:
    kubectl.apply(widget("s", kube_namespace, replicas=1))
    kubectl("scale", "widget/s", "--replicas=3", "-n", kube_namespace)
    assert kubectl.json("get", "widget", "s", "-n", kube_namespace)["spec"]["replicas"] == 3


def test_kubectl_wait_returns_when_condition_is_patched(
        kubectl: Kubectl, kube_api: KubeApi, kube_namespace: str, widgets_crd: Any,
        http: httpx.Client) -> None:
    kubectl.apply(widget("r", kube_namespace))
    before = watches_opened(kube_api)
    waiting = kubectl.popen("wait", "--for=condition=Ready", "widget/r", "-n", kube_namespace,
                            "--timeout=30s")
    try:
        eventually(lambda: watches_opened(kube_api) > before, interval=0.02, what="kubectl's watch")
        assert waiting.poll() is None
        http.patch(f"{WIDGETS}/namespaces/{kube_namespace}/widgets/r/status",
                   headers={"Content-Type": "application/merge-patch+json"},
                   json={"status": {"conditions": [{"type": "Ready", "status": "True"}]}})
        out, err = waiting.communicate(timeout=20)
    finally:
        kill_process(waiting)  # exited already unless the test failed
    assert waiting.returncode == 0, err
    assert "condition met" in out


def test_kubectl_get_watch_receives_events(kubectl: Kubectl, kube_api: KubeApi,
                                           kube_namespace: str, widgets_crd: Any,
                                           http: httpx.Client) -> None:
    before = watches_opened(kube_api)
    watching = kubectl.popen("get", "widgets", "-w", "-n", kube_namespace)
    try:
        eventually(lambda: watches_opened(kube_api) > before, interval=0.02, what="kubectl's watch")
        http.post(f"{WIDGETS}/namespaces/{kube_namespace}/widgets",
                  json=widget("seen", kube_namespace, size="tiny"))
        lines = read_until(watching, "seen")
    finally:
        kill_process(watching)  # `get -w` never ends by itself
        watching.communicate()
    assert lines[-1].split()[:2] == ["seen", "tiny"]


def test_kubectl_label_selector(kubectl: Kubectl, kube_namespace: str) -> None:
    objects = [{"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": name, "labels": {"tier": tier}}}
               for name, tier in (("a", "web"), ("b", "db"))]
    kubectl.apply(objects, "-n", kube_namespace)
    out = kubectl("get", "configmaps", "-l", "tier=web", "-o", "name", "-n", kube_namespace)
    assert out.stdout.split() == ["configmap/a"]


def test_kubectl_delete_waits_for_finalizers(kubectl: Kubectl, kube_namespace: str,
                                             widgets_crd: Any) -> None:
    body = widget("f", kube_namespace)
    body["metadata"]["finalizers"] = ["example.com/hold"]
    kubectl.apply(body)
    ns = ("-n", kube_namespace)
    kubectl("delete", "widget", "f", "--wait=false", *ns)
    assert kubectl.json("get", "widget", "f", *ns)["metadata"]["deletionTimestamp"]
    kubectl("patch", "widget", "f", "--type=merge", "-p", '{"metadata":{"finalizers":null}}',
            *ns)
    missing = kubectl("get", "widget", "f", *ns, check=False)
    assert missing.returncode == 1
    assert "NotFound" in missing.stderr


def test_protobuf_bodies_are_refused_clearly(kubectl: Kubectl, kube_namespace: str) -> None:
    done = kubectl("create", "configmap", "pb", "-n", kube_namespace, check=False)
    assert done.returncode == 1
    assert "unknown format (application/vnd.kubernetes.protobuf)" in done.stderr


def test_builtin_printer_columns(kubectl: Kubectl, kube_namespace: str,
                                 http: httpx.Client) -> None:
    ns = ("-n", kube_namespace)
    kubectl.apply(deployment("shown", "nginx:1"), *ns)
    http.patch(f"/apis/apps/v1/namespaces/{kube_namespace}/deployments/shown/status",
               headers={"Content-Type": "application/merge-patch+json"},
               json={"status": {"readyReplicas": 1, "updatedReplicas": 1,
                                "availableReplicas": 1}})
    header, row = kubectl("get", "deployment", "shown", *ns).stdout.splitlines()
    assert header.split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert row.split()[:4] == ["shown", "1/1", "1", "1"]
