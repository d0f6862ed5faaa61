"""manifests/ (kustomize), the samples, and what the operator renders from them."""

from __future__ import annotations

import copy
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.integration.ship import pss
from tests.integration.ship.tools import (
    CHART,
    CRD_FILE,
    KUBE_VERSIONS,
    ROOT,
    SAMPLES,
    Doc,
    cr_errors,
    documents,
    helm_template,
    kustomize,
    render,
    validate_all,
)

pytestmark = pytest.mark.timeout(300)
SAMPLE_IDS = [p.stem for p in SAMPLES]


@pytest.fixture(scope="module")
def kustomized() -> list[Doc]:
    """`kubectl kustomize manifests/`."""
    return kustomize()


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_kustomize_output_validates(kustomized: list[Doc], version: str) -> None:
    assert validate_all(kustomized, version) == []


def test_kustomize_installs_crd_rbac_and_operator(kustomized: list[Doc]) -> None:
    kinds = sorted(d["kind"] for d in kustomized)
    assert kinds == sorted([
        "Namespace", "CustomResourceDefinition", "ServiceAccount", "ClusterRole",
        "ClusterRoleBinding", "Deployment", "Service", "NetworkPolicy",
    ])
    namespaced = [d for d in kustomized if d["kind"] in ("ServiceAccount", "Deployment", "Service")]
    assert {d["metadata"]["namespace"] for d in namespaced} == {"modelplane-system"}
    (namespace,) = (d for d in kustomized if d["kind"] == "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_operator_deployment_is_restricted(kustomized: list[Doc]) -> None:
    (deployment,) = (d for d in kustomized if d["kind"] == "Deployment")
    spec = pss.pod_spec_of(deployment)
    assert spec is not None
    assert pss.violations(spec) == []
    container = spec["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert {"requests", "limits"} <= container["resources"].keys()


def _rules(docs: list[Doc]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for doc in docs if doc["kind"] == "ClusterRole"
        for rule in doc["rules"]
        for group in rule["apiGroups"] for resource in rule["resources"] for verb in rule["verbs"]
    }


def test_chart_and_manifests_grant_the_same_permissions(kustomized: list[Doc]) -> None:
    chart = _rules(helm_template())
    assert chart == _rules(kustomized)
    assert ("", "secrets", "get") not in chart, "the operator never reads Secrets"
    assert not any(verb in ("*", "escalate", "bind", "impersonate") for _, _, verb in chart)
    assert not any("*" in (group, resource) for group, resource, _ in chart)


def test_chart_and_manifests_configure_the_operator_alike(kustomized: list[Doc]) -> None:
    """Same settings variables, probes and security in both install paths."""
    def container(docs: list[Doc]) -> Doc:
        (deployment,) = (d for d in docs if d["kind"] == "Deployment")
        found: Doc = deployment["spec"]["template"]["spec"]["containers"][0]
        return found

    ours, theirs = container(kustomized), container(helm_template())
    assert {e["name"] for e in ours["env"]} == {e["name"] for e in theirs["env"]}
    for key in ("livenessProbe", "readinessProbe", "securityContext", "ports", "args"):
        assert ours[key] == theirs[key], key


def test_chart_crds_equal_the_generated_crd() -> None:
    """charts/modelplane/crds is produced from manifests/crd (scripts/sync_crds.py)."""
    done = subprocess.run(
        [sys.executable, ROOT / "scripts" / "sync_crds.py", "--check"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stdout
    assert (CHART / "crds" / CRD_FILE.name).read_bytes() == CRD_FILE.read_bytes()


def test_samples_exist() -> None:
    names = {p.name for p in SAMPLES}
    expected = {"seed-mlp", "gpu", "autoscaling", "pvc", "http-archive", "routing",
                "scale-to-zero", "keda"}
    assert {f"{name}.yaml" for name in expected} <= names


@pytest.mark.parametrize("sample", SAMPLES, ids=SAMPLE_IDS)
def test_sample_passes_crd_schema_and_kubernetes(sample: Path) -> None:
    docs = documents(sample.read_text())
    models = [d for d in docs if d["kind"] == "ModelDeployment"]
    assert len(models) == 1
    for model in models:
        assert cr_errors(model) == []
    for version in KUBE_VERSIONS:
        assert validate_all(docs, version) == []


def test_schema_check_rejects_what_the_api_server_would() -> None:
    """The CRD schema check is not vacuous: typos, wrong types and bad enums fail."""
    (good,) = documents((ROOT / "manifests" / "samples" / "seed-mlp.yaml").read_text())
    for path, value, expected in [
        (("spec", "replica"), 2, "Additional properties"),
        (("spec", "replicas"), "two", "is not of type"),
        (("spec", "model", "format"), "onnx", "is not one of"),
        (("spec", "resources", "gpu"), -1, "minimum"),
    ]:
        bad = copy.deepcopy(good)
        target = bad
        for key in path[:-1]:
            target = target.setdefault(key, {})
        target[path[-1]] = value
        errors = cr_errors(bad)
        assert errors, path
        assert expected in errors[0], (path, errors)


@pytest.fixture(scope="module", params=SAMPLES, ids=SAMPLE_IDS)
def rendered(request: pytest.FixtureRequest) -> tuple[Path, list[Doc]]:
    """`modelplane render` of one sample."""
    sample: Path = request.param
    return sample, render(sample)


def test_sample_renders_valid_children(rendered: tuple[Path, list[Doc]]) -> None:
    sample, children = rendered
    kinds = {d["kind"] for d in children}
    assert {"Deployment", "Service"} <= kinds, sample.name
    for version in KUBE_VERSIONS:
        assert validate_all(children, version) == []


def test_rendered_pods_pass_restricted_pss(rendered: tuple[Path, list[Doc]]) -> None:
    _, children = rendered
    pods = [spec for spec in map(pss.pod_spec_of, children) if spec is not None]
    assert pods
    for spec in pods:
        assert pss.violations(spec) == []


def test_seed_mlp_serves_the_bundled_demo_model() -> None:
    (sample,) = (p for p in SAMPLES if p.name == "seed-mlp.yaml")
    (deployment,) = (d for d in render(sample)
                     if d["kind"] == "Deployment" and d["metadata"]["name"] == "seed-mlp")
    init = deployment["spec"]["template"]["spec"].get("initContainers", [])
    commands = [" ".join([*c.get("command", []), *c.get("args", [])]) for c in init]
    assert any("fetch" in c and "demo://seed-mlp" in c for c in commands), commands


def test_pss_checker_catches_violations() -> None:
    """The checker itself: a compliant spec passes, each weakened control is reported."""
    compliant: Doc = yaml.safe_load("""
securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}
containers:
  - name: c
    securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
volumes: [{name: v, emptyDir: {}}]
""")
    assert pss.violations(compliant) == []
    weakenings: dict[str, Callable[[Doc], object]] = {
        "hostNetwork": lambda s: s.update(hostNetwork=True),
        "hostPath": lambda s: s["volumes"].append({"name": "h", "hostPath": {"path": "/"}}),
        "privileged": lambda s: s["containers"][0]["securityContext"].update(privileged=True),
        "allowPrivilegeEscalation": lambda s: s["containers"][0]["securityContext"].pop(
            "allowPrivilegeEscalation"),
        "runAsNonRoot": lambda s: s["securityContext"].pop("runAsNonRoot"),
        "runAsUser": lambda s: s["containers"][0]["securityContext"].update(runAsUser=0),
        "seccompProfile": lambda s: s["securityContext"].pop("seccompProfile"),
        "capabilities.drop": lambda s: s["containers"][0]["securityContext"].pop("capabilities"),
        "capabilities.add": lambda s: s["containers"][0]["securityContext"]["capabilities"].update(
            add=["SYS_ADMIN"]),
        "hostPort": lambda s: s["containers"][0].update(
            ports=[{"containerPort": 80, "hostPort": 80}]),
    }
    for name, weaken in weakenings.items():
        spec = copy.deepcopy(compliant)
        weaken(spec)
        assert any(name.split(".")[0] in v for v in pss.violations(spec)), name


def test_rbac_matches_what_the_operator_touches(kustomized: list[Doc]) -> None:
    """The rules follow handlers.py: a new child kind or a dropped one fails here."""
    from modelplane_operator import handlers

    def group_resource(resource: tuple[str, ...]) -> tuple[str, str]:
        group = resource[0] if len(resource) == 3 else ""
        return group, resource[-1]

    expected: set[tuple[str, str, str]] = {
        ("apiextensions.k8s.io", "customresourcedefinitions", verb)
        for verb in ("get", "list", "watch")
    } | {("", "namespaces", "list"), ("", "namespaces", "watch"), ("", "events", "create")}
    md_group, md_plural = group_resource(handlers.MODEL_DEPLOYMENTS)
    # get: the status writer re-reads an object after a 409 (reporter.py).
    expected |= {(md_group, md_plural, v) for v in ("get", "list", "watch", "patch")}
    expected.add((md_group, f"{md_plural}/status", "patch"))
    for child in handlers.CHILDREN:
        group, plural = group_resource(child)
        expected |= {(group, plural, v) for v in ("get", "list", "watch", "create", "patch",
                                                   "delete")}
    pods_group, pods = group_resource(handlers.PODS)
    expected |= {(pods_group, pods, "list"), (pods_group, pods, "watch")}
    expected.add((*group_resource(handlers.POD_METRICS), "list"))  # podmetrics.py
    # What the balancers' Roles grant, the operator must hold (RBAC's escalation check).
    expected |= {(group, resource, verb) for group, resource, verbs in handlers.GRANTED
                 for verb in verbs}
    assert _rules(kustomized) == expected


def test_the_operator_holds_what_it_grants_the_balancers(kustomized: list[Doc]) -> None:
    """A rendered balancer Role grants nothing the operator's own rules lack, so the API
    server lets the operator create it without the escalate verb."""
    from modelplane_operator.builders.render import render

    from tests.unit.operator.cases import DEFAULTS, md

    held = _rules(kustomized)
    roles = [c for c in render(md({"model": {"uri": "demo://"}}), DEFAULTS) if c["kind"] == "Role"]
    assert roles
    granted = {(group, resource, verb) for role in roles for rule in role["rules"]
               for group in rule["apiGroups"] for resource in rule["resources"]
               for verb in rule["verbs"]}
    assert granted and granted <= held
