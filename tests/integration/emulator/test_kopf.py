"""A real kopf operator process gets through create, reconcile, status and finalized deletion."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.kube import KubeApi, Kubectl
from tests.fixtures.polling import eventually
from tests.fixtures.processes import stop_process
from tests.integration.emulator.conftest import widget
from tests.integration.emulator.test_kubectl import watches_opened

OPERATOR = Path(__file__).with_name("kopf_widgets.py")


@pytest.fixture
def kopf_operator(kube_api: KubeApi, kube_namespace: str, widgets_crd: Any,
                  tmp_path: Path) -> Iterator[Path]:
    """`kopf run` on the test's namespace, started once it watches widgets; its log path."""
    log = tmp_path / "kopf.log"
    before = watches_opened(kube_api)
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kopf", "run", "--standalone", "--verbose",
             "--namespace", kube_namespace, str(OPERATOR)],
            stdout=out, stderr=subprocess.STDOUT, env=kube_api.env())
    try:
        eventually(lambda: watches_opened(kube_api) > before or proc.poll() is not None,
                   timeout=60, interval=0.02, what="kopf's watch")
        assert proc.poll() is None, log.read_text()
        yield log
    finally:
        stop_process(proc, deadline_s=20, logs=log.read_text, what="kopf run")


def test_kopf_reconciles_a_custom_resource(kopf_operator: Path, kube_api: KubeApi,
                                           kubectl: Kubectl, kube_namespace: str) -> None:
    kubectl.apply(widget("k", kube_namespace, size="big"))

    def reconciled() -> bool:
        obj = kube_api.object("emulator.example.com", "widgets", kube_namespace, "k")
        return bool(obj and obj.get("status", {}).get("create_fn"))

    eventually(reconciled, timeout=30, interval=0.02, what="the kopf reconcile")
    owner = kube_api.object("emulator.example.com", "widgets", kube_namespace, "k")
    child = kube_api.object("", "configmaps", kube_namespace, "k-child")
    assert child["data"] == {"size": "big"}
    assert [(r["kind"], r["name"], r["uid"]) for r in child["metadata"]["ownerReferences"]] == [
        ("Widget", "k", owner["metadata"]["uid"])]
    assert owner["status"]["create_fn"] == {"child": "k-child"}
    assert owner["metadata"]["finalizers"] == ["kopf.zalando.org/KopfFinalizerMarker"]

    kubectl("delete", "widget", "k", "-n", kube_namespace, "--timeout=30s")
    assert kube_api.object("emulator.example.com", "widgets", kube_namespace, "k") is None
    assert kube_api.object("", "configmaps", kube_namespace, "k-child") is None
    log = kopf_operator.read_text()
    assert "JSON-patching the resource" in log  # finalizers: JSON patch testing resourceVersion
    assert "Traceback" not in log
