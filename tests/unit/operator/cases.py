"""Representative ModelDeployment objects shared by the operator's unit tests."""

from __future__ import annotations

import copy
from typing import Any

from modelplane_operator.builders.defaults import RenderDefaults

DEFAULTS = RenderDefaults(
    runtime_image="ghcr.io/modelplane/modelplane-runtime:0.1.0",
    runtime_gpu_image="ghcr.io/modelplane/modelplane-runtime:0.1.0-gpu",
)


def md(spec: dict[str, Any], name: str = "seed-mlp", namespace: str = "ml") -> dict[str, Any]:
    """A ModelDeployment object as the API server would hand it to the operator."""
    return {
        "apiVersion": "modelplane.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": "6f1c1c2e-9d1b-4c55-8d1e-0c7a1b2c3d4e",
            "generation": 1,
        },
        "spec": copy.deepcopy(spec),
    }


SPECS: dict[str, dict[str, Any]] = {
    "demo": {"model": {"uri": "demo://seed-mlp"}, "replicas": 1},
    "gpu": {
        "model": {"uri": "https://models.example.com/resnet.tar.gz", "format": "savedmodel"},
        "replicas": 2,
        "resources": {"cpu": "4", "memory": "16Gi", "gpu": 1},
        "scheduling": {
            "nodeSelector": {"nvidia.com/gpu.present": "true"},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ml",
                             "effect": "NoSchedule"}],
            "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 100, "podAffinityTerm": {
                    "topologyKey": "kubernetes.io/hostname",
                    "labelSelector": {"matchLabels": {"app.kubernetes.io/instance": "x"}}}}]}},
            "priorityClassName": "high-priority",
        },
        "runtime": {"batching": {"maxBatchSize": 64, "maxLatencyMs": 5}},
    },
    "autoscaling": {
        "model": {"uri": "s3://models/seed", "credentialsSecret": "s3-credentials"},
        "autoscaling": {
            "minReplicas": 2,
            "maxReplicas": 10,
            "targetCPUUtilization": 70,
            "targetInFlightPerReplica": 8,
            "targetRequestsPerSecondPerReplica": 2.5,
        },
        "resources": {"cpu": "500m", "memory": "1Gi"},
    },
    "pvc": {
        "model": {"uri": "pvc://model-store/churn/classifier", "format": "savedmodel",
                  "version": 3},
        "replicas": 3,
    },
    "http-archive": {
        "model": {"uri": "https://models.example.com/sentiment.zip", "format": "auto"},
        "replicas": 3,
        "runtime": {
            "logLevel": "warning",
            "env": [{"name": "TF_NUM_INTRAOP_THREADS", "value": "2"},
                    {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
            "signatureName": "serving_default",
            "preprocessing": {"text": {"dtype": "float32", "shape": [-1, 8], "mean": [0.5],
                                       "std": [2.0]}},
            "postprocessing": {"scores": {"labels": ["neg", "pos"], "topK": 1,
                                          "keep": False}},
        },
        "routing": {"strategy": "least-request"},
        "auth": {"secretName": "tokens"},
        "tls": {"secretName": "sentiment-tls"},
    },
    "canary": {
        "model": {"uri": "gs://models/fraud/v1"},
        "replicas": 10,
        "canary": {"model": {"uri": "gs://models/fraud/v2"}, "trafficPercent": 20},
        "routing": {"strategy": "weighted"},
    },
    "scale-to-zero": {
        "model": {"uri": "demo://seed-mlp"},
        "autoscaling": {"minReplicas": 0, "maxReplicas": 4, "idleSeconds": 120,
                        "targetInFlightPerReplica": 8},
        "canary": {"model": {"uri": "demo://seed-mlp"}, "trafficPercent": 10},
    },
    "canary-autoscaling": {
        "model": {"uri": "file:///models/fraud"},
        "autoscaling": {"minReplicas": 4, "maxReplicas": 20, "targetInFlightPerReplica": 4},
        "canary": {"model": {"uri": "pvc://store/fraud-v2"}, "trafficPercent": 25},
    },
}


def by_kind(children: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """The model's own children of one kind, in render order: the runtime Deployments, the
    Service ``<name>``, HPAs and the PDB (the balancer's children and the headless
    ``-replicas`` Services are picked by name: ``named``)."""
    return [c for c in children if c["kind"] == kind
            and c["metadata"]["labels"]["app.kubernetes.io/name"] == "modelplane-runtime"
            and c["metadata"]["labels"]["app.kubernetes.io/component"] != "replicas"]


def named(children: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    """The one child of that kind and name."""
    (found,) = [c for c in children if c["kind"] == kind and c["metadata"]["name"] == name]
    return found
