"""The balancer of one ModelDeployment: ``<name>-balancer`` Deployment, PDB, and its access.

The balancer (balancer/, ``modelplane balancer``) picks a replica per request; the Service
``<name>`` selects its pods (service.py), and it finds the replicas by watching the
EndpointSlices of the headless ``<name>-replicas`` and ``<name>-canary-replicas`` Services
and the ModelDeployment itself (strategy, weights, canary share, suspend). It needs API
access for that, and only for that: its own ServiceAccount, bound to a Role with exactly
``modelplane_balancer.contract.rbac_rules`` (get/list/watch EndpointSlices in the
namespace, and this one ModelDeployment by name).

Kubernetes behaviour behind the choices here:
- Two replicas, spread over nodes by a *preferred* pod anti-affinity: a required one would
  leave the second pod Pending on a one-node cluster and block rolling updates on two-node
  ones; preferred still puts them apart wherever the scheduler can.
- The PDB keeps one balancer up through voluntary disruptions (``maxUnavailable: 1``);
  rolling updates never take a ready one away (``maxUnavailable: 0``).
- Shutdown as the runtime's: a preStop sleep while endpoint removal reaches every
  kube-proxy (new connections stop arriving), then SIGTERM: readiness fails, idle client
  connections close, busy ones close after their answer, within the drain timeout.
- Restricted Pod Security Standard; the token is mounted in the pod only (the
  ServiceAccount itself opts out), and the pods get small requests and no CPU limit
  (throttling a proxy delays every request through it).
"""

from __future__ import annotations

from typing import Any

from modelplane_balancer import contract as balancer

from modelplane_operator.builders.defaults import BalancerDefaults, RenderDefaults
from modelplane_operator.builders.deployment import (
    DRAIN_TIMEOUT_S,
    GRACE_MARGIN_S,
    PRESTOP_SLEEP_S,
    TLS_MOUNT_PATH,
    TLS_VOLUME,
    container_security,
)
from modelplane_operator.builders.labels import (
    balancer_labels,
    balancer_pod_labels,
    balancer_selector,
)
from modelplane_operator.builders.owner import Owner
from modelplane_operator.spec import ModelDeploymentSpec

CONTAINER_NAME = "balancer"
WAKE_LEASE_S = 10
"""A demand in the wake Lease counts this long after its last renewal (the balancer renews
it every second while it holds requests)."""
PORT_NAME = "http"
LOG_LEVEL = "info"
"""The balancer logs failures, ejections and discovery changes, never a line per request."""


CHECKOV_SKIPS = {
    "checkov.io/skip1": "CKV_K8S_38=The balancer watches EndpointSlices and its "
                        "ModelDeployment through the API: its pods need their token.",
    "checkov.io/skip2": "CKV_K8S_11=No CPU limit by design: CFS throttling of a proxy "
                        "delays every request through it; the operator setting "
                        "balancer_cpu_limit sets one where a policy demands it.",
}
"""Why two of checkov's checks do not apply to the balancer (read by checkov)."""


def balancer_name(name: str) -> str:
    """Name of the balancer's Deployment, PDB, ServiceAccount, Role and RoleBinding."""
    return f"{name}-balancer"


def _env(name: str, spec: ModelDeploymentSpec) -> list[dict[str, Any]]:
    env = balancer.env
    values: list[tuple[str, str]] = [
        (env("model"), name),
        (env("port"), str(balancer.HTTP_PORT)),
        # Only the first choice: the ModelDeployment's own strategy wins once it is read.
        (env("strategy"), spec.routing.strategy),
        (env("log_level"), LOG_LEVEL),
        (env("drain_timeout_s"), str(DRAIN_TIMEOUT_S)),
    ]
    if spec.tls is not None:
        # Clients reach the balancer over HTTPS with the model's certificate, and the
        # balancer reaches the replicas over HTTPS. Replicas are dialled by pod IP, which
        # the model's certificate does not name, so that very certificate is pinned: the
        # only one trusted, whatever names it carries.
        values += [
            (env("tls_cert_file"), f"{TLS_MOUNT_PATH}/tls.crt"),
            (env("tls_key_file"), f"{TLS_MOUNT_PATH}/tls.key"),
            (env("upstream_tls"), "true"),
            (env("upstream_ca_file"), f"{TLS_MOUNT_PATH}/tls.crt"),
            (env("upstream_check_hostname"), "false"),
        ]
    return [{"name": key, "value": value} for key, value in values]


def _probe(path: str, scheme: str, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": PORT_NAME, "scheme": scheme},
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
        "successThreshold": 1,
    }


def _resources(settings: BalancerDefaults) -> dict[str, Any]:
    limits: dict[str, str] = {"memory": settings.memory_limit}
    if settings.cpu_limit:
        limits["cpu"] = settings.cpu_limit
    return {"requests": {"cpu": settings.cpu_request, "memory": settings.memory_request},
            "limits": limits}


def _container(name: str, spec: ModelDeploymentSpec, settings: BalancerDefaults,
               ) -> dict[str, Any]:
    scheme = "HTTPS" if spec.tls is not None else "HTTP"
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": settings.image,
        "command": ["modelplane", "balancer"],
        "ports": [{"name": PORT_NAME, "containerPort": balancer.HTTP_PORT, "protocol": "TCP"}],
        "env": _env(name, spec),
        "resources": _resources(settings),
        "livenessProbe": _probe(balancer.HEALTHZ_PATH, scheme, period=10, failures=3),
        "readinessProbe": _probe(balancer.READYZ_PATH, scheme, period=2, failures=2),
        "lifecycle": {"preStop": {"sleep": {"seconds": PRESTOP_SLEEP_S}}},
        "securityContext": container_security(),
    }
    if spec.tls is not None:
        container["volumeMounts"] = [
            {"name": TLS_VOLUME, "mountPath": TLS_MOUNT_PATH, "readOnly": True}]
    return container


def _pod_spec(owner: Owner, spec: ModelDeploymentSpec, defaults: RenderDefaults,
              version: str | None) -> dict[str, Any]:
    settings = defaults.balancer
    pod: dict[str, Any] = {
        "serviceAccountName": balancer_name(owner.name),
        # The balancer watches the API: the token is mounted here, and only here.
        "automountServiceAccountToken": True,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": defaults.run_as_user,
            "runAsGroup": defaults.run_as_user,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "terminationGracePeriodSeconds": PRESTOP_SLEEP_S + DRAIN_TIMEOUT_S + GRACE_MARGIN_S,
        "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
            "weight": 100,
            "podAffinityTerm": {
                "labelSelector": {"matchLabels": balancer_selector(owner.name)},
                "topologyKey": "kubernetes.io/hostname",
            },
        }]}},
        "containers": [_container(owner.name, spec, settings)],
    }
    if spec.tls is not None:
        pod["volumes"] = [{"name": TLS_VOLUME, "secret": {"secretName": spec.tls.secret_name}}]
    return pod


def build_balancer(owner: Owner, spec: ModelDeploymentSpec, defaults: RenderDefaults,
                   version: str | None) -> dict[str, Any]:
    """The ``<name>-balancer`` Deployment."""
    name = balancer_name(owner.name)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": owner.metadata(name, balancer_labels(owner.name, version),
                                   CHECKOV_SKIPS),
        "spec": {
            "replicas": defaults.balancer.replicas,
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": balancer_selector(owner.name)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {
                "metadata": {
                    "labels": balancer_pod_labels(owner.name, version),
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(balancer.HTTP_PORT),
                        "prometheus.io/path": balancer.METRICS_PATH,
                        "prometheus.io/scheme": "https" if spec.tls is not None else "http",
                    },
                },
                "spec": _pod_spec(owner, spec, defaults, version),
            },
        },
    }


def build_balancer_budget(owner: Owner, version: str | None) -> dict[str, Any]:
    """The balancer's PodDisruptionBudget: one of its pods may be evicted at a time."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": owner.metadata(balancer_name(owner.name),
                                   balancer_labels(owner.name, version)),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": balancer_selector(owner.name)},
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }


def build_balancer_access(owner: Owner, version: str | None) -> list[dict[str, Any]]:
    """The balancer's ServiceAccount, its Role (the balancer contract's rules, nothing
    more) and the RoleBinding between them, all named ``<name>-balancer``."""
    name = balancer_name(owner.name)
    labels = balancer_labels(owner.name, version)
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": owner.metadata(name, labels),
            # Pods that need the token say so themselves (the balancer's does).
            "automountServiceAccountToken": False,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": owner.metadata(name, labels),
            "rules": balancer.rbac_rules(owner.name),
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": owner.metadata(name, labels),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name,
                          "namespace": owner.namespace}],
        },
    ]


def build_wake_lease(owner: Owner, version: str | None) -> dict[str, Any]:
    """The Lease the balancer renews while it holds requests for a model scaled to zero
    (``contract.wake_lease``): the demand signal the operator watches. Its holder and times
    are the balancer's to write; the operator sets only how long a demand stays fresh."""
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": owner.metadata(balancer.wake_lease(owner.name),
                                   balancer_labels(owner.name, version)),
        "spec": {"leaseDurationSeconds": WAKE_LEASE_S},
    }
