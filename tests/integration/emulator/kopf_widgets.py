"""A throwaway kopf operator for the emulator's tests: Widget -> ConfigMap child + status."""

from __future__ import annotations

from typing import Any

import kopf
import kubernetes


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    """Load the kubeconfig once at start-up, not inside the first handler."""
    settings.posting.enabled = False
    kubernetes.config.load_kube_config()


@kopf.on.create("emulator.example.com", "v1", "widgets")
def create_fn(spec: Any, name: str, namespace: str, body: Any, **_: Any) -> dict[str, Any]:
    """Create a ConfigMap owned by the Widget; the return value lands in status.create_fn."""
    child = {"apiVersion": "v1", "kind": "ConfigMap",
             "metadata": {"name": f"{name}-child"}, "data": {"size": str(spec.get("size"))}}
    kopf.adopt(child, owner=body)
    kubernetes.client.CoreV1Api().create_namespaced_config_map(namespace, child)
    return {"child": child["metadata"]["name"]}
