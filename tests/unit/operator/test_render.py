"""render(): the children of a ModelDeployment, field by field, and their determinism."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, get_args

import pytest
from modelplane_operator.builders.defaults import RenderDefaults
from modelplane_operator.builders.document import dump_all
from modelplane_operator.builders.labels import image_version, managed_selector, selector_string
from modelplane_operator.builders.owner import Owner
from modelplane_operator.builders.render import CHILD_KINDS, Observed, render, render_spec
from modelplane_operator.builders.service import service_url
from modelplane_operator.builders.traffic import split
from modelplane_operator.spec import DType, InvalidSpec, validate_spec
from modelplane_runtime.dataplane.processing import read_config
from modelplane_runtime.signature import DTYPES
from pydantic import BaseModel

from .cases import DEFAULTS, SPECS, by_kind, md, named

OWNER_UID = md({})["metadata"]["uid"]


def _one(children: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (child,) = by_kind(children, kind)
    return child


def _pod(children: list[dict[str, Any]], index: int = 0) -> dict[str, Any]:
    spec: dict[str, Any] = by_kind(children, "Deployment")[index]["spec"]["template"]["spec"]
    return spec


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_children_kinds_and_names() -> None:
    balancer = [("ServiceAccount", "seed-mlp-balancer"), ("Role", "seed-mlp-balancer"),
                ("RoleBinding", "seed-mlp-balancer"), ("Deployment", "seed-mlp-balancer"),
                ("PodDisruptionBudget", "seed-mlp-balancer")]
    children = render(md(SPECS["demo"]), DEFAULTS)
    assert [(c["kind"], c["metadata"]["name"]) for c in children] == [
        ("Deployment", "seed-mlp"), *balancer, ("Service", "seed-mlp-replicas"),
        ("Service", "seed-mlp"), ("PodDisruptionBudget", "seed-mlp"),
    ]
    children = render(md(SPECS["canary-autoscaling"]), DEFAULTS)
    assert [(c["kind"], c["metadata"]["name"]) for c in children] == [
        ("Deployment", "seed-mlp"), ("Deployment", "seed-mlp-canary"), *balancer,
        ("Service", "seed-mlp-replicas"), ("Service", "seed-mlp-canary-replicas"),
        ("Service", "seed-mlp"), ("HorizontalPodAutoscaler", "seed-mlp"),
        ("HorizontalPodAutoscaler", "seed-mlp-canary"), ("PodDisruptionBudget", "seed-mlp"),
    ]
    direct = {**SPECS["demo"], "routing": {"balancer": False}}
    assert [(c["kind"], c["metadata"]["name"]) for c in render(md(direct), DEFAULTS)] == [
        ("Deployment", "seed-mlp"), ("Service", "seed-mlp-replicas"), ("Service", "seed-mlp"),
        ("PodDisruptionBudget", "seed-mlp"),
    ]


@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_child_is_owned_by_the_model_deployment(name: str) -> None:
    for child in render(md(SPECS[name]), DEFAULTS):
        # The operator watches, caches and asks RBAC for exactly these kinds.
        assert (child["apiVersion"], child["kind"]) in CHILD_KINDS
        meta = child["metadata"]
        assert meta["namespace"] == "ml"
        assert meta["ownerReferences"] == [{
            "apiVersion": "modelplane.io/v1alpha1", "kind": "ModelDeployment",
            "name": "seed-mlp", "uid": OWNER_UID, "controller": True,
            "blockOwnerDeletion": True,
        }]
        labels = meta["labels"]
        balancer = meta["name"] in ("seed-mlp-balancer", "seed-mlp-wake")
        assert labels["app.kubernetes.io/name"] == (
            "modelplane-balancer" if balancer else "modelplane-runtime")
        assert labels["app.kubernetes.io/instance"] == "seed-mlp"
        assert labels["app.kubernetes.io/managed-by"] == "modelplane-operator"
        key, value = managed_selector().split("=")  # what the operator's watches select
        assert labels[key] == value
        assert labels["app.kubernetes.io/part-of"] == "modelplane"
        image = DEFAULTS.balancer.image if balancer else by_kind(
            render(md(SPECS[name]), DEFAULTS), "Deployment")[0]["spec"]["template"]["spec"][
            "containers"][0]["image"]
        assert labels["app.kubernetes.io/version"] == image.rsplit(":", 1)[1]
        assert labels["app.kubernetes.io/component"]
        assert labels["modelplane.io/deployment"] == "seed-mlp"


@pytest.mark.parametrize("name", sorted(SPECS))
def test_rendering_is_deterministic(name: str) -> None:
    first = dump_all(render(md(SPECS[name]), DEFAULTS))
    # Same object with every mapping's keys in reverse order: still the same bytes.
    reordered = json.loads(json.dumps(md(SPECS[name])), object_pairs_hook=lambda p: dict(p[::-1]))
    assert dump_all(render(reordered, DEFAULTS)) == first
    assert dump_all(render(md(SPECS[name]), DEFAULTS)) == first
    assert "&id" not in first
    assert "*id" not in first


def test_children_share_no_objects_with_the_spec_or_each_other() -> None:
    obj = md(SPECS["gpu"])
    children = render(obj, DEFAULTS)
    pod = _pod(children)
    pod["affinity"]["podAntiAffinity"] = "edited"
    pod["tolerations"][0]["key"] = "edited"
    assert obj["spec"]["scheduling"]["affinity"]["podAntiAffinity"] != "edited"
    assert render(md(SPECS["gpu"]), DEFAULTS) != children
    deployment = children[0]
    deployment["metadata"]["labels"]["x"] = "y"
    assert "x" not in deployment["spec"]["template"]["metadata"]["labels"]


def _containers(value: Any, path: str, found: dict[int, list[str]]) -> dict[int, list[str]]:
    """Every dict and list reachable from ``value`` (through pydantic fields too), by id."""
    if isinstance(value, BaseModel):
        for field in type(value).model_fields:
            _containers(getattr(value, field), f"{path}.{field}", found)
    elif isinstance(value, dict | list):
        found.setdefault(id(value), []).append(path)
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            _containers(item, f"{path}.{key}", found)
    return found


@pytest.mark.parametrize("name", sorted(SPECS))
def test_no_container_is_shared_with_the_spec_another_child_or_another_render(name: str) -> None:
    obj = md(SPECS[name])
    owner, spec = Owner.from_object(obj), validate_spec(obj["spec"])
    first = render_spec(owner, spec, DEFAULTS)
    second = render_spec(owner, spec, DEFAULTS)  # kept alive, so ids cannot be reused
    ours = _containers(first, "children", {})
    assert [paths for paths in ours.values() if len(paths) > 1] == []
    spec_ids = _containers(spec, "spec", {})
    assert [ours[i] for i in ours if i in spec_ids] == []
    # A second render shares nothing either (no module-level constant handed out as is).
    again = _containers(second, "children", {})
    assert [ours[i] for i in ours if i in again] == []
    assert first == second


def test_runtime_container() -> None:
    children = render(md(SPECS["demo"]), DEFAULTS)
    pod = _pod(children)
    (container,) = pod["containers"]
    assert container["image"] == DEFAULTS.runtime_image
    assert container["command"] == ["modelplane", "serve", "/mnt/models"]
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"},
                                  {"name": "grpc", "containerPort": 8081, "protocol": "TCP"}]
    env = _env(container)
    assert env["MODELPLANE_MODEL_NAME"] == "seed-mlp"
    assert env["MODELPLANE_MODEL_PATH"] == "/mnt/models"
    assert env["MODELPLANE_MODEL_FORMAT"] == "auto"
    assert env["MODELPLANE_PORT"] == "8080"
    assert env["MODELPLANE_LOG_LEVEL"] == "info"
    assert "MODELPLANE_MODEL_VERSION" not in env
    assert container["resources"] == {
        "requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"cpu": "1", "memory": "2Gi"}}
    assert container["readinessProbe"]["httpGet"] == {
        "path": "/v2/health/ready", "port": "http", "scheme": "HTTP"}
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert container["startupProbe"]["httpGet"]["path"] == "/v2/health/live"
    # The startup probe allows minutes for loading; liveness alone would kill a slow load.
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300


def test_graceful_shutdown_covers_prestop_and_drain() -> None:
    pod = _pod(render(md(SPECS["demo"]), DEFAULTS))
    (container,) = pod["containers"]
    sleep = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    drain = int(_env(container)["MODELPLANE_DRAIN_TIMEOUT_S"])
    assert sleep > 0
    assert pod["terminationGracePeriodSeconds"] > sleep + drain


def test_rolling_update_never_removes_a_ready_replica() -> None:
    deployment = _one(render(md(SPECS["demo"]), DEFAULTS), "Deployment")
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["selector"]["matchLabels"] == {
        "modelplane.io/deployment": "seed-mlp", "modelplane.io/track": "stable"}
    template_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= template_labels.items()


def test_restricted_pod_security() -> None:
    for name in SPECS:
        pod = _pod(render(md(SPECS[name]), DEFAULTS))
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == DEFAULTS.run_as_user > 0
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        writable = set()
        volumes = {v["name"]: v for v in pod["volumes"]}
        for container in pod.get("initContainers", []) + pod["containers"]:
            ctx = container["securityContext"]
            assert ctx["allowPrivilegeEscalation"] is False
            assert ctx["capabilities"] == {"drop": ["ALL"]}
            assert ctx["readOnlyRootFilesystem"] is True
            assert ctx["runAsNonRoot"] is True
            for mount in container["volumeMounts"]:
                if not mount.get("readOnly"):
                    writable.add(mount["name"])
        # Only emptyDirs are writable: the root filesystem and model claims stay read-only.
        assert all("emptyDir" in volumes[w] for w in writable), (name, writable)
        assert "tmp" in writable


def test_prometheus_scrape_annotations() -> None:
    deployment = _one(render(md(SPECS["demo"]), DEFAULTS), "Deployment")
    assert deployment["spec"]["template"]["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true", "prometheus.io/port": "8080",
        "prometheus.io/path": "/metrics", "prometheus.io/scheme": "http"}


def test_fetched_model_uses_an_init_container_into_an_empty_dir() -> None:
    pod = _pod(render(md(SPECS["autoscaling"]), DEFAULTS))
    (init,) = pod["initContainers"]
    assert init["command"] == ["modelplane", "fetch", "s3://models/seed", "/mnt/models"]
    assert init["image"] == pod["containers"][0]["image"]
    # An object store's credentials are a mounted Secret (test_render_storage.py).
    assert {"name": "storage-credentials", "mountPath": "/etc/modelplane/storage-credentials",
            "readOnly": True} in init["volumeMounts"]
    assert "storage-credentials" not in str(pod["containers"][0])  # the fetcher's alone
    assert {"name": "model", "mountPath": "/mnt/models"} in init["volumeMounts"]
    assert {"name": "model", "emptyDir": {}} in pod["volumes"]
    assert {"name": "model", "mountPath": "/mnt/models", "readOnly": True} in (
        pod["containers"][0]["volumeMounts"])


def test_demo_model_is_fetched_like_any_other() -> None:
    (init,) = _pod(render(md(SPECS["demo"]), DEFAULTS))["initContainers"]
    assert init["command"] == ["modelplane", "fetch", "demo://seed-mlp", "/mnt/models"]
    assert "envFrom" not in init


def test_pvc_model_is_mounted_read_only_without_init_container() -> None:
    pod = _pod(render(md(SPECS["pvc"]), DEFAULTS))
    assert "initContainers" not in pod
    assert {"name": "model",
            "persistentVolumeClaim": {"claimName": "model-store", "readOnly": True}} in (
        pod["volumes"])
    (container,) = pod["containers"]
    assert {"name": "model", "mountPath": "/mnt/pvc/model-store", "readOnly": True} in (
        container["volumeMounts"])
    env = _env(container)
    assert env["MODELPLANE_MODEL_PATH"] == "/mnt/pvc/model-store/churn/classifier"
    assert container["command"][-1] == "/mnt/pvc/model-store/churn/classifier"
    assert env["MODELPLANE_MODEL_VERSION"] == "3"
    assert env["MODELPLANE_MODEL_FORMAT"] == "savedmodel"


def test_gpu_limits_toleration_image_and_scheduling() -> None:
    children = render(md(SPECS["gpu"]), DEFAULTS)
    pod = _pod(children)
    (container,) = pod["containers"]
    assert container["resources"] == {
        "requests": {"cpu": "4", "memory": "16Gi"},
        "limits": {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"}}
    assert container["image"] == DEFAULTS.runtime_gpu_image
    assert pod["tolerations"] == [
        {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"},
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
    ]
    scheduling = SPECS["gpu"]["scheduling"]
    assert pod["nodeSelector"] == scheduling["nodeSelector"]
    assert pod["affinity"] == scheduling["affinity"]
    assert pod["priorityClassName"] == "high-priority"
    env = _env(container)
    assert (env["MODELPLANE_MAX_BATCH_SIZE"], env["MODELPLANE_MAX_LATENCY_MS"]) == ("64", "5")


def test_gpu_toleration_is_not_duplicated_and_cpu_pods_get_none() -> None:
    spec = json.loads(json.dumps(SPECS["gpu"]))
    spec["scheduling"]["tolerations"] = [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    spec["runtime"]["image"] = "registry.local/runtime:gpu-7"
    pod = _pod(render(md(spec), DEFAULTS))
    assert len(pod["tolerations"]) == 1
    assert pod["containers"][0]["image"] == "registry.local/runtime:gpu-7"
    pod = _pod(render(md(SPECS["demo"]), DEFAULTS))
    assert "tolerations" not in pod
    assert "nvidia.com/gpu" not in pod["containers"][0]["resources"]["limits"]


def test_runtime_options_auth_tls_and_user_env() -> None:
    children = render(md(SPECS["http-archive"]), DEFAULTS)
    pod = _pod(children)
    (container,) = pod["containers"]
    env = _env(container)
    assert env["MODELPLANE_LOG_LEVEL"] == "warning"
    assert env["TF_NUM_INTRAOP_THREADS"] == "2"
    assert env["POD_IP"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    assert env["MODELPLANE_SIGNATURE_NAME"] == "serving_default"
    assert json.loads(env["MODELPLANE_PROCESSING"]) == {
        "signature": "serving_default",
        "inputs": {"text": {"dtype": "float32", "shape": [-1, 8], "mean": [0.5], "std": [2.0]}},
        "outputs": {"scores": {"labels": ["neg", "pos"], "top_k": 1, "keep": False}}}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["auth"] == {"name": "auth", "secret": {"secretName": "tokens"}}
    assert volumes["tls"] == {"name": "tls", "secret": {"secretName": "sentiment-tls"}}
    assert env["MODELPLANE_AUTH_TOKENS_DIR"] == "/etc/modelplane/auth"
    assert env["MODELPLANE_TLS_CERT_FILE"] == "/etc/modelplane/tls/tls.crt"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["scheme"] == "HTTPS"
    service = _one(children, "Service")
    assert service["spec"]["ports"][0]["appProtocol"] == "https"
    assert service["metadata"]["annotations"] == {
        "modelplane.io/routing-strategy": "least-request"}


def test_user_env_overrides_the_operators() -> None:
    spec = {"model": {"uri": "demo://"},
            "runtime": {"env": [{"name": "MODELPLANE_DRAIN_TIMEOUT_S", "value": "5"}]}}
    (container,) = _pod(render(md(spec), DEFAULTS))["containers"]
    names = [e["name"] for e in container["env"]]
    assert names.count("MODELPLANE_DRAIN_TIMEOUT_S") == 1
    assert _env(container)["MODELPLANE_DRAIN_TIMEOUT_S"] == "5"


def test_service() -> None:
    port = {"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP",
            "appProtocol": "http"}
    service = _one(render(md(SPECS["demo"]), DEFAULTS), "Service")
    assert service["spec"] == {
        "type": "ClusterIP",
        "selector": {"modelplane.io/balancer": "seed-mlp"},
        "ports": [port],
    }
    # Without the balancer (or until a balancer pod is ready) it selects the runtime pods;
    # its gRPC port is there only without the balancer (the balancer proxies HTTP/1.1).
    grpc = {"name": "grpc", "port": 8081, "targetPort": "grpc", "protocol": "TCP",
            "appProtocol": "kubernetes.io/h2c"}
    direct = {**SPECS["demo"], "routing": {"balancer": False}}
    waiting = render(md(SPECS["demo"]), DEFAULTS, Observed(service_on_balancer=False))
    for children, ports in ((render(md(direct), DEFAULTS), [port, grpc]), (waiting, [port])):
        assert _one(children, "Service")["spec"] == {
            "type": "ClusterIP",
            "selector": {"modelplane.io/deployment": "seed-mlp"},
            "ports": ports,
        }
    assert service_url("seed-mlp", "ml", tls=False) == (
        "http://seed-mlp.ml.svc.cluster.local:8080")
    assert selector_string("seed-mlp") == "modelplane.io/deployment=seed-mlp"


def test_autoscaling_leaves_replicas_to_the_hpa() -> None:
    children = render(md(SPECS["autoscaling"]), DEFAULTS)
    deployment = _one(children, "Deployment")
    assert "replicas" not in deployment["spec"]
    hpa = _one(children, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1", "kind": "Deployment", "name": "seed-mlp"}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 10)
    assert hpa["spec"]["metrics"] == [
        {"type": "Resource", "resource": {
            "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}},
        {"type": "Pods", "pods": {
            "metric": {"name": "modelplane_requests_in_flight"},
            "target": {"type": "AverageValue", "averageValue": "8"}}},
        {"type": "Pods", "pods": {
            "metric": {"name": "modelplane_requests_per_second"},
            "target": {"type": "AverageValue", "averageValue": "2500m"}}},
    ]


def test_autoscaling_without_targets_scales_on_cpu() -> None:
    spec = {"model": {"uri": "demo://"}, "autoscaling": {"maxReplicas": 3}}
    hpa = _one(render(md(spec), DEFAULTS), "HorizontalPodAutoscaler")
    assert hpa["spec"]["minReplicas"] == 1
    assert hpa["spec"]["metrics"] == [{"type": "Resource", "resource": {
        "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]


def test_autoscaling_ignores_spec_replicas() -> None:
    spec = {**SPECS["autoscaling"], "replicas": 7}  # e.g. left over from `kubectl scale`
    deployment = _one(render(md(spec), DEFAULTS), "Deployment")
    assert "replicas" not in deployment["spec"]


@pytest.mark.parametrize(("replicas", "count"), [(1, 1), (2, 2), (10, 10), (0, 0)])
def test_disruption_budget_never_blocks_a_drain(replicas: int, count: int) -> None:
    spec = {"model": {"uri": "demo://"}, "replicas": replicas}
    children = render(md(spec), DEFAULTS)
    pdb = _one(children, "PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["selector"] == {"matchLabels": {"modelplane.io/deployment": "seed-mlp"}}
    assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    assert "minAvailable" not in pdb["spec"]
    # The disruption controller rounds a maxUnavailable percentage up: at least one pod may go.
    percent = int(pdb["spec"]["maxUnavailable"].rstrip("%"))
    allowed = -(-count * percent // 100)
    assert allowed >= min(count, 1)
    assert _one(children, "Deployment")["spec"]["replicas"] == count


@pytest.mark.parametrize(
    ("total", "percent", "expected"),
    [(10, 20, (8, 2)), (10, 0, (10, 0)), (10, 100, (0, 10)), (4, 25, (3, 1)), (1, 5, (1, 1)),
     (2, 50, (1, 1)), (3, 50, (1, 2)), (5, 1, (4, 1)), (0, 50, (0, 0)), (20, 99, (1, 19))],
)
def test_canary_replica_split(total: int, percent: int, expected: tuple[int, int]) -> None:
    assert split(total, percent) == expected


def test_canary_runs_a_second_deployment_behind_the_same_service() -> None:
    children = render(md(SPECS["canary"]), DEFAULTS)
    stable, canary = by_kind(children, "Deployment")
    assert (stable["spec"]["replicas"], canary["spec"]["replicas"]) == (8, 2)
    assert canary["metadata"]["name"] == "seed-mlp-canary"
    stable_sel = stable["spec"]["selector"]["matchLabels"]
    canary_sel = canary["spec"]["selector"]["matchLabels"]
    assert stable_sel != canary_sel  # Deployments must never select each other's pods
    direct = render(md({**SPECS["canary"], "routing": {"balancer": False}}), DEFAULTS)
    service_sel = _one(direct, "Service")["spec"]["selector"]
    for deployment in (stable, canary):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert service_sel.items() <= labels.items()
    # With the balancer each track has its headless Service, selecting that track only.
    for deployment, service in ((stable, "seed-mlp-replicas"),
                                (canary, "seed-mlp-canary-replicas")):
        selector = named(children, "Service", service)["spec"]["selector"]
        assert selector == deployment["spec"]["selector"]["matchLabels"]
    stable_init = stable["spec"]["template"]["spec"]["initContainers"][0]
    canary_init = canary["spec"]["template"]["spec"]["initContainers"][0]
    assert stable_init["command"][2] == "gs://models/fraud/v1"
    assert canary_init["command"][2] == "gs://models/fraud/v2"
    # Both tracks answer under the same model name, so clients see one model.
    for deployment in (stable, canary):
        env = _env(deployment["spec"]["template"]["spec"]["containers"][0])
        assert env["MODELPLANE_MODEL_NAME"] == "seed-mlp"


def test_canary_with_autoscaling_gets_its_own_hpa_in_proportion() -> None:
    children = render(md(SPECS["canary-autoscaling"]), DEFAULTS)
    stable, canary = by_kind(children, "Deployment")
    assert "replicas" not in stable["spec"]
    assert "replicas" not in canary["spec"]
    assert "initContainers" not in canary["spec"]["template"]["spec"]  # pvc canary
    hpa_stable, hpa_canary = by_kind(children, "HorizontalPodAutoscaler")
    assert hpa_stable["spec"]["scaleTargetRef"]["name"] == "seed-mlp"
    assert hpa_canary["spec"]["scaleTargetRef"]["name"] == "seed-mlp-canary"
    assert (hpa_stable["spec"]["minReplicas"], hpa_stable["spec"]["maxReplicas"]) == (3, 15)
    assert (hpa_canary["spec"]["minReplicas"], hpa_canary["spec"]["maxReplicas"]) == (1, 5)


def test_image_from_spec_wins_and_version_label_follows_it() -> None:
    spec = {"model": {"uri": "demo://"}, "runtime": {"image": "example.com/rt:2.1.0",
                                                     "imagePullPolicy": "Always"}}
    deployment = _one(render(md(spec), DEFAULTS), "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "example.com/rt:2.1.0"
    assert container["imagePullPolicy"] == "Always"
    assert deployment["metadata"]["labels"]["app.kubernetes.io/version"] == "2.1.0"


@pytest.mark.parametrize(
    ("image", "version"),
    [("rt:1.2", "1.2"), ("host:5000/rt", None), ("host:5000/rt:v3", "v3"),
     ("rt@sha256:" + "a" * 64, None), ("rt", None), ("rt:" + "x" * 64, None)],
)
def test_image_version(image: str, version: str | None) -> None:
    assert image_version(image) == version


def test_cpu_default_image_when_no_gpu_image_is_configured() -> None:
    defaults = RenderDefaults(runtime_image="rt:1")
    pod = _pod(render(md(SPECS["gpu"]), defaults))
    assert pod["containers"][0]["image"] == "rt:1"


@pytest.mark.parametrize(
    ("metadata", "field"),
    [({"namespace": "ml", "uid": "u"}, "metadata.name"),
     ({"name": "Bad_Name", "uid": "u"}, "metadata.name"),
     ({"name": "x" * 60, "uid": "u"}, "metadata.name"),
     ({"name": "ok"}, "metadata.uid")],
)
def test_bad_metadata_is_an_invalid_spec(metadata: dict[str, Any], field: str) -> None:
    obj = md(SPECS["demo"])
    obj["metadata"] = metadata
    with pytest.raises(InvalidSpec) as caught:
        render(obj, DEFAULTS)
    assert caught.value.field == field


def test_invalid_spec_renders_nothing() -> None:
    obj = md({"model": {"uri": "demo://"}, "autoscaling": {"minReplicas": 4, "maxReplicas": 2}})
    with pytest.raises(InvalidSpec, match=r"spec\.autoscaling\.maxReplicas: must be >= "):
        render(obj, DEFAULTS)


@pytest.mark.parametrize(("percent", "scaled", "idle"), [(0, "seed-mlp", "seed-mlp-canary"),
                                                         (100, "seed-mlp-canary", "seed-mlp")])
def test_a_track_without_traffic_runs_no_pods_and_has_no_hpa(
    percent: int, scaled: str, idle: str
) -> None:
    spec = {"model": {"uri": "demo://"}, "autoscaling": {"minReplicas": 2, "maxReplicas": 6},
            "canary": {"model": {"uri": "demo://v2"}, "trafficPercent": percent}}
    children = render(md(spec), DEFAULTS)
    deployments = {d["metadata"]["name"]: d for d in by_kind(children, "Deployment")}
    assert deployments[idle]["spec"]["replicas"] == 0
    assert "replicas" not in deployments[scaled]["spec"]
    (hpa,) = by_kind(children, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == scaled
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)


def test_processing_config_is_what_the_runtime_parses(tmp_path: Path) -> None:
    """The env var holds the runtime's own modelplane.yaml format (JSON is YAML)."""
    (container,) = _pod(render(md(SPECS["http-archive"]), DEFAULTS))["containers"]
    path = tmp_path / "modelplane.yaml"
    path.write_text(_env(container)["MODELPLANE_PROCESSING"])
    config = read_config(path)
    assert config.signature == "serving_default"
    assert config.inputs["text"].std == [2.0]
    assert config.outputs["scores"].top_k == 1
    assert config.outputs["scores"].keep is False


def test_input_dtypes_are_the_runtimes() -> None:
    assert set(get_args(DType)) == set(DTYPES)


def test_no_processing_means_no_variable() -> None:
    (container,) = _pod(render(md(SPECS["demo"]), DEFAULTS))["containers"]
    assert "MODELPLANE_PROCESSING" not in _env(container)
