"""A throwaway kopf operator for the emulator's tests: Widget -> owned ConfigMap + status.

Run by test_kopf.py as a real `kopf run` process against the emulator.
"""

from __future__ import annotations

from typing import Any

import kopf
import kubernetes

# The client accepts plain dicts as bodies; its stubs do not say so.
_config: Any = kubernetes.config
_client: Any = kubernetes.client


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    """Load the kubeconfig once at start-up, not inside the first handler."""
    settings.posting.enabled = False
    _config.load_kube_config()


@kopf.on.create("emulator.example.com", "v1", "widgets")
def create_fn(spec: Any, name: str, namespace: str | None, body: Any,
              **_: Any) -> dict[str, Any]:
    """Create a ConfigMap owned by the Widget; the result lands in status.create_fn."""
    child: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap",
                             "metadata": {"name": f"{name}-child"},
                             "data": {"size": str(spec.get("size"))}}
    kopf.adopt(child, owner=body)
    _client.CoreV1Api().create_namespaced_config_map(namespace, child)
    return {"child": child["metadata"]["name"]}


@kopf.on.delete("emulator.example.com", "v1", "widgets")
def delete_fn(name: str, namespace: str | None, **_: Any) -> None:
    """Delete the child (no garbage collector here); kopf then releases its finalizer."""
    _client.CoreV1Api().delete_namespaced_config_map(f"{name}-child", namespace)
