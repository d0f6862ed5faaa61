"""The Deployment running the inference runtime for one track (stable or canary) of a model.

Kubernetes behaviour behind the choices here:
- Requests equal limits for cpu and memory (Guaranteed QoS): inference latency should not
  depend on what neighbours burst to, and the HPA's CPU utilization is relative to requests.
- GPUs are extended resources: only ``limits`` is set (requests default to it) and GPU nodes
  are conventionally tainted ``nvidia.com/gpu:NoSchedule``, hence the toleration.
- Rolling updates never take a ready replica away (``maxUnavailable: 0``) and surge by one
  pod only, so a rollout needs at most one extra GPU or one extra replica's memory.
- Shutdown: the pod leaves the Service's endpoints when it starts terminating, but
  kube-proxies and load balancers learn that a few seconds later. A preStop ``sleep``
  (lifecycle sleep action, GA-track since 1.30; no shell needed in the image) keeps serving
  through that window; then SIGTERM makes the runtime fail readiness and drain in-flight
  requests within its drain timeout. The grace period covers both, plus a margin.
- Restricted Pod Security Standard: non-root, no privilege escalation, all capabilities
  dropped, RuntimeDefault seccomp, read-only root filesystem with emptyDirs for the model
  and for /tmp (TensorFlow and Python write temporary files there).
"""

from __future__ import annotations

import json
from typing import Any

from modelplane_runtime import contract

from modelplane_operator.builders.defaults import RenderDefaults
from modelplane_operator.builders.labels import Track, deployment_selector, pod_labels
from modelplane_operator.builders.owner import Owner
from modelplane_operator.builders.storage import (
    credentials_volume,
    fetcher_access,
    identity_labels,
    model_volume_writable,
    runtime_env,
    runtime_mounts,
    service_account,
)
from modelplane_operator.spec import ModelDeploymentSpec, ModelSource

CONTAINER_NAME = "runtime"
INIT_CONTAINER_NAME = "fetch-model"
PORT_NAME = "http"
GRPC_PORT_NAME = "grpc"
"""The runtime's gRPC port (TF Serving's PredictionService, the v2 GRPCInferenceService,
grpc.health.v1). The probes stay on HTTP: Kubernetes' native ``grpc:`` probe cannot speak
TLS, and readiness over HTTP reports the same data plane."""
GPU_RESOURCE = "nvidia.com/gpu"
GPU_TOLERATION: dict[str, Any] = {
    "key": GPU_RESOURCE,
    "operator": "Exists",
    "effect": "NoSchedule",
}

PRESTOP_SLEEP_S = 5
"""Time for endpoint removal to reach every kube-proxy before SIGTERM."""
DRAIN_TIMEOUT_S = 30
"""How long the runtime may finish in-flight requests after SIGTERM."""
GRACE_MARGIN_S = 5
TERMINATION_GRACE_S = PRESTOP_SLEEP_S + DRAIN_TIMEOUT_S + GRACE_MARGIN_S

MODEL_VOLUME = "model"
TMP_VOLUME = "tmp"
AUTH_VOLUME = "auth"
TLS_VOLUME = "tls"
AUTH_MOUNT_PATH = "/etc/modelplane/auth"
TLS_MOUNT_PATH = "/etc/modelplane/tls"
TERMINATION_MESSAGE_POLICY = "FallbackToLogsOnError"
"""A container that fails without writing /dev/termination-log gets the end of its log
(at most 80 lines or 2 KiB, the kubelet's limit) as its termination message: the fetcher's
last line is its one-line error, which the operator turns into ``ModelLoadFailed``."""


def _contract_name(attr: str, fallback: str) -> str:
    # Variables the runtime contract does not define yet: use its name once it does, and
    # this documented fallback (the same spelling) until then.
    return str(getattr(contract, attr, fallback))


ENV_PROCESSING = _contract_name("ENV_PROCESSING", "MODELPLANE_PROCESSING")
"""The runtime's modelplane.yaml content as JSON, used instead of a file beside the model
(a pvc:// model is read-only, so the operator cannot write one there)."""
ENV_SIGNATURE_NAME = _contract_name("ENV_SIGNATURE_NAME", "MODELPLANE_SIGNATURE_NAME")
"""RuntimeSettings.signature_name, by the runtime's env-prefix convention."""
ENV_AUTH_TOKENS_DIR = _contract_name("ENV_AUTH_TOKENS_DIR", "MODELPLANE_AUTH_TOKENS_DIR")
"""Folder whose files each hold one accepted bearer token (a mounted Secret)."""
ENV_TLS_CERT_FILE = _contract_name("ENV_TLS_CERT_FILE", "MODELPLANE_TLS_CERT_FILE")
ENV_TLS_KEY_FILE = _contract_name("ENV_TLS_KEY_FILE", "MODELPLANE_TLS_KEY_FILE")


def _sorted(value: Any) -> Any:
    # Pass-through objects keep no user key order, so the same content renders the same
    # bytes however the user (or a client library) ordered it.
    if isinstance(value, dict):
        return {key: _sorted(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_sorted(item) for item in value]
    return value


def deployment_name(name: str, track: Track) -> str:
    """Name of the Deployment of one track."""
    return name if track == "stable" else f"{name}-canary"


def runtime_image(spec: ModelDeploymentSpec, defaults: RenderDefaults) -> str:
    """The image of the runtime and init containers."""
    if spec.runtime.image:
        return spec.runtime.image
    if spec.resources.gpu > 0 and defaults.runtime_gpu_image:
        return defaults.runtime_gpu_image
    return defaults.runtime_image


def model_path(model: ModelSource) -> str:
    """Where the runtime reads the model inside the container."""
    claim = model.pvc_claim
    if claim is None:
        return contract.MODEL_MOUNT_PATH
    base = f"{contract.PVC_MOUNT_ROOT}/{claim}"
    return f"{base}/{model.pvc_path}" if model.pvc_path else base


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def processing_config(spec: ModelDeploymentSpec) -> dict[str, Any] | None:
    """The runtime's processing config (modelplane.yaml, snake_case) from the spec, if any."""
    runtime = spec.runtime
    if not runtime.preprocessing and not runtime.postprocessing:
        return None
    config: dict[str, Any] = {}
    if runtime.signature_name:
        config["signature"] = runtime.signature_name
    config["inputs"] = {
        name: step.model_dump(exclude_none=True) for name, step in runtime.preprocessing.items()
    }
    config["outputs"] = {
        name: step.model_dump(exclude_none=True) for name, step in runtime.postprocessing.items()
    }
    return config


def _env(name: str, spec: ModelDeploymentSpec, model: ModelSource) -> list[dict[str, Any]]:
    values: list[tuple[str, str]] = [
        # Both tracks serve under the ModelDeployment's name, so a canary answers the same
        # URLs (/v1/models/NAME:predict) as the stable model it stands in for.
        (contract.ENV_MODEL_NAME, name),
        (contract.ENV_MODEL_PATH, model_path(model)),
        (contract.ENV_MODEL_FORMAT, model.format),
    ]
    if model.version is not None:
        values.append((contract.ENV_MODEL_VERSION, str(model.version)))
    values += [
        (contract.ENV_PORT, str(contract.HTTP_PORT)),
        (contract.ENV_GRPC_PORT, str(contract.GRPC_PORT)),
        (contract.ENV_LOG_LEVEL, spec.runtime.log_level),
        (contract.ENV_DRAIN_TIMEOUT_S, str(DRAIN_TIMEOUT_S)),
    ]
    batching = spec.runtime.batching
    if batching is not None:
        values.append((contract.ENV_MAX_BATCH_SIZE, str(batching.max_batch_size)))
        values.append((contract.ENV_MAX_LATENCY_MS, _number(batching.max_latency_ms)))
    if spec.runtime.signature_name:
        values.append((ENV_SIGNATURE_NAME, spec.runtime.signature_name))
    processing = processing_config(spec)
    if processing is not None:
        values.append((ENV_PROCESSING, json.dumps(processing, sort_keys=True)))
    if spec.auth is not None:
        values.append((ENV_AUTH_TOKENS_DIR, AUTH_MOUNT_PATH))
    if spec.tls is not None:
        values.append((ENV_TLS_CERT_FILE, f"{TLS_MOUNT_PATH}/tls.crt"))
        values.append((ENV_TLS_KEY_FILE, f"{TLS_MOUNT_PATH}/tls.key"))
    values += runtime_env(model)
    # The user's variables win: drop ours that they redefine, then append theirs in order.
    overridden = {item.name for item in spec.runtime.env}
    env = [{"name": k, "value": v} for k, v in values if k not in overridden]
    return env + [_sorted(item.manifest()) for item in spec.runtime.env]


def _resources(spec: ModelDeploymentSpec) -> dict[str, Any]:
    compute = {"cpu": spec.resources.cpu, "memory": spec.resources.memory}
    limits: dict[str, Any] = dict(compute)
    if spec.resources.gpu > 0:
        limits[GPU_RESOURCE] = str(spec.resources.gpu)  # the stored form of a quantity
    return {"requests": dict(compute), "limits": limits}


def container_security() -> dict[str, Any]:
    """The restricted Pod Security Standard's container settings, with a read-only root."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _probe(path: str, scheme: str, period: int, timeout: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": PORT_NAME, "scheme": scheme},
        "periodSeconds": period,
        "timeoutSeconds": timeout,
        "failureThreshold": failures,
        "successThreshold": 1,
    }


def _runtime_container(
    name: str, spec: ModelDeploymentSpec, model: ModelSource, image: str
) -> dict[str, Any]:
    scheme = "HTTPS" if spec.tls is not None else "HTTP"
    model_mount: dict[str, Any] = {"name": MODEL_VOLUME, "mountPath": _model_mount(model)}
    if not model_volume_writable(model):
        model_mount["readOnly"] = True
    mounts: list[dict[str, Any]] = [model_mount, {"name": TMP_VOLUME, "mountPath": "/tmp"}]
    mounts += runtime_mounts(model)
    if spec.auth is not None:
        mounts.append({"name": AUTH_VOLUME, "mountPath": AUTH_MOUNT_PATH, "readOnly": True})
    if spec.tls is not None:
        mounts.append({"name": TLS_VOLUME, "mountPath": TLS_MOUNT_PATH, "readOnly": True})
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": image,
    }
    if spec.runtime.image_pull_policy:
        container["imagePullPolicy"] = spec.runtime.image_pull_policy
    container |= {
        "command": ["modelplane", "serve", model_path(model)],
        "ports": [{"name": PORT_NAME, "containerPort": contract.HTTP_PORT, "protocol": "TCP"},
                  {"name": GRPC_PORT_NAME, "containerPort": contract.GRPC_PORT,
                   "protocol": "TCP"}],
        "env": _env(name, spec, model),
        "resources": _resources(spec),
        # Loading and warming a large model can take minutes; the startup probe holds the
        # liveness probe off until the server first answers (up to 10 minutes).
        "startupProbe": _probe(contract.LIVE_PATH, scheme, period=5, timeout=2, failures=120),
        "livenessProbe": _probe(contract.LIVE_PATH, scheme, period=10, timeout=5, failures=3),
        "readinessProbe": _probe(contract.READY_PATH, scheme, period=5, timeout=2, failures=2),
        "lifecycle": {"preStop": {"sleep": {"seconds": PRESTOP_SLEEP_S}}},
        "securityContext": container_security(),
        "terminationMessagePolicy": TERMINATION_MESSAGE_POLICY,
        "volumeMounts": mounts,
    }
    return container


def _model_mount(model: ModelSource) -> str:
    claim = model.pvc_claim
    return contract.MODEL_MOUNT_PATH if claim is None else f"{contract.PVC_MOUNT_ROOT}/{claim}"


def _init_container(
    spec: ModelDeploymentSpec, model: ModelSource, image: str
) -> dict[str, Any]:
    container: dict[str, Any] = {"name": INIT_CONTAINER_NAME, "image": image}
    if spec.runtime.image_pull_policy:
        container["imagePullPolicy"] = spec.runtime.image_pull_policy
    container["command"] = ["modelplane", "fetch", model.uri, contract.MODEL_MOUNT_PATH]
    # Storage credentials reach the fetcher; the serving container sees them only when it
    # reads the store itself (polling a remote repository; storage.py).
    access = fetcher_access(model)
    if "envFrom" in access:
        container["envFrom"] = access["envFrom"]
    if "env" in access:
        container["env"] = access["env"]
    # An init container's requests count as max(init, sum of containers), not in addition:
    # giving it the runtime's cpu/memory costs no extra scheduling room.
    compute = {"cpu": spec.resources.cpu, "memory": spec.resources.memory}
    container |= {
        "resources": {"requests": dict(compute), "limits": dict(compute)},
        "securityContext": container_security(),
        "terminationMessagePolicy": TERMINATION_MESSAGE_POLICY,
        "volumeMounts": [
            {"name": MODEL_VOLUME, "mountPath": contract.MODEL_MOUNT_PATH},
            {"name": TMP_VOLUME, "mountPath": "/tmp"},
            *access.get("volumeMounts", []),
        ],
    }
    return container


def _volumes(spec: ModelDeploymentSpec, model: ModelSource) -> list[dict[str, Any]]:
    claim = model.pvc_claim
    model_volume: dict[str, Any] = {"name": MODEL_VOLUME}
    if claim is None:
        model_volume["emptyDir"] = {}
    else:
        model_volume["persistentVolumeClaim"] = {"claimName": claim, "readOnly": True}
    volumes = [model_volume, {"name": TMP_VOLUME, "emptyDir": {}}]
    credentials = credentials_volume(model)
    if credentials is not None:
        volumes.append(credentials)
    if spec.auth is not None:
        volumes.append({"name": AUTH_VOLUME, "secret": {"secretName": spec.auth.secret_name}})
    if spec.tls is not None:
        volumes.append({"name": TLS_VOLUME, "secret": {"secretName": spec.tls.secret_name}})
    return volumes


def _tolerations(spec: ModelDeploymentSpec) -> list[dict[str, Any]]:
    tolerations = [_sorted(t.manifest()) for t in spec.scheduling.tolerations]
    if spec.resources.gpu > 0 and GPU_TOLERATION not in tolerations:
        tolerations.append(dict(GPU_TOLERATION))
    return tolerations


def pod_annotations(tls: bool) -> dict[str, str]:
    """Prometheus scrape annotations (the kubernetes-pods job convention)."""
    return {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(contract.HTTP_PORT),
        "prometheus.io/path": contract.METRICS_PATH,
        "prometheus.io/scheme": "https" if tls else "http",
    }


def _pod_spec(
    owner: Owner, spec: ModelDeploymentSpec, model: ModelSource, defaults: RenderDefaults
) -> dict[str, Any]:
    image = runtime_image(spec, defaults)
    pod: dict[str, Any] = {}
    account = service_account(model)
    if account is not None:
        # The cloud identity the model is read with (storage.py: IRSA, Workload Identity).
        pod["serviceAccountName"] = account
    pod |= {
        # The runtime never calls the Kubernetes API: no token in its pods. Cloud identity
        # webhooks mount their own audience-bound tokens.
        "automountServiceAccountToken": False,
        # Service links would put every Service of the namespace into the environment.
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": defaults.run_as_user,
            "runAsGroup": defaults.run_as_user,
            "fsGroup": defaults.run_as_user,
            # Skip the recursive chown of a large model volume when its root already fits.
            "fsGroupChangePolicy": "OnRootMismatch",
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "terminationGracePeriodSeconds": TERMINATION_GRACE_S,
    }
    if model.pvc_claim is None:
        pod["initContainers"] = [_init_container(spec, model, image)]
    pod["containers"] = [_runtime_container(owner.name, spec, model, image)]
    pod["volumes"] = _volumes(spec, model)
    scheduling = spec.scheduling
    if scheduling.node_selector:
        pod["nodeSelector"] = dict(sorted(scheduling.node_selector.items()))
    tolerations = _tolerations(spec)
    if tolerations:
        pod["tolerations"] = tolerations
    affinity = scheduling.affinity.manifest() if scheduling.affinity is not None else {}
    if affinity:
        pod["affinity"] = _sorted(affinity)
    if scheduling.priority_class_name:
        pod["priorityClassName"] = scheduling.priority_class_name
    return pod


def build_deployment(
    owner: Owner,
    spec: ModelDeploymentSpec,
    defaults: RenderDefaults,
    *,
    track: Track,
    model: ModelSource,
    replicas: int | None,
    version: str | None,
) -> dict[str, Any]:
    """The Deployment of one track; ``replicas`` None leaves the count to an HPA."""
    labels = pod_labels(owner.name, track, version)
    template_labels = {**labels, **identity_labels(model)}
    deployment_spec: dict[str, Any] = {}
    if replicas is not None:
        deployment_spec["replicas"] = replicas
    deployment_spec |= {
        "revisionHistoryLimit": 5,
        "progressDeadlineSeconds": 900,
        "selector": {"matchLabels": deployment_selector(owner.name, track)},
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
        },
        "template": {
            "metadata": {
                "labels": template_labels,
                "annotations": pod_annotations(spec.tls is not None),
            },
            "spec": _pod_spec(owner, spec, model, defaults),
        },
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": owner.metadata(deployment_name(owner.name, track), labels),
        "spec": deployment_spec,
    }
