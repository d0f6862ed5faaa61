"""The balancer's children: its Deployment, PDB, ServiceAccount, Role and RoleBinding, and
the headless Services it discovers the replicas through (builders/balancer.py, service.py)."""

from __future__ import annotations

import os
from typing import Any, get_args

import pytest
from modelplane_balancer import contract as balancer_contract
from modelplane_balancer.settings import BalancerSettings
from modelplane_operator.builders.defaults import BalancerDefaults, RenderDefaults
from modelplane_operator.builders.render import render
from modelplane_operator.routing import Strategy

from tests.integration.ship import pss

from .cases import DEFAULTS, SPECS, md, named

NAME = "seed-mlp"


def _balancer(children: list[dict[str, Any]]) -> dict[str, Any]:
    return named(children, "Deployment", f"{NAME}-balancer")


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"]}


def test_strategies_are_the_balancers() -> None:
    assert list(get_args(Strategy)) == list(balancer_contract.STRATEGIES)


def test_deployment_runs_two_balancers_apart_with_a_drain() -> None:
    deployment = _balancer(render(md(SPECS["demo"]), DEFAULTS))
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    pod = spec["template"]["spec"]
    (term,) = pod["affinity"]["podAntiAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"] == spec["selector"][
        "matchLabels"] == {"modelplane.io/balancer": NAME}
    (container,) = pod["containers"]
    assert container["image"] == DEFAULTS.balancer.image
    assert container["command"] == ["modelplane", "balancer"]
    sleep = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    drain = float(_env(container)["MODELPLANE_BALANCER_DRAIN_TIMEOUT_S"])
    assert sleep > 0 and pod["terminationGracePeriodSeconds"] > sleep + drain
    assert container["readinessProbe"]["httpGet"]["path"] == balancer_contract.READYZ_PATH
    assert container["livenessProbe"]["httpGet"]["path"] == balancer_contract.HEALTHZ_PATH
    assert container["ports"] == [{"name": "http", "containerPort": balancer_contract.HTTP_PORT,
                                   "protocol": "TCP"}]
    assert container["resources"] == {"requests": {"cpu": "100m", "memory": "96Mi"},
                                      "limits": {"memory": "256Mi"}}
    assert pss.violations(pod) == []
    assert pod["serviceAccountName"] == f"{NAME}-balancer"
    assert pod["automountServiceAccountToken"] is True


def test_balancer_pods_are_not_runtime_pods() -> None:
    """The runtime's selector label stays off balancer pods: the PDB, the scale selector,
    the headless Services and the operator's pod watch must never count them."""
    children = render(md(SPECS["canary"]), DEFAULTS)
    labels = _balancer(children)["spec"]["template"]["metadata"]["labels"]
    assert "modelplane.io/deployment" not in labels
    assert labels["modelplane.io/balancer"] == NAME
    assert labels["app.kubernetes.io/name"] == "modelplane-balancer"
    for service in ("seed-mlp-replicas", "seed-mlp-canary-replicas"):
        selector = named(children, "Service", service)["spec"]["selector"]
        assert not selector.items() <= labels.items()
    pdb = named(children, "PodDisruptionBudget", NAME)
    assert not pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_variable_is_a_balancer_setting(name: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The operator speaks the balancer's settings: each variable names a field, and the
    balancer's own settings object loads them as rendered."""
    spec = SPECS[name]
    (container,) = _balancer(render(md(spec), DEFAULTS))["spec"]["template"]["spec"][
        "containers"]
    env = _env(container)
    for variable in env:
        field = variable.removeprefix(balancer_contract.ENV_PREFIX).lower()
        assert field in BalancerSettings.model_fields, variable
    for variable in list(os.environ):
        if variable.startswith(balancer_contract.ENV_PREFIX):
            monkeypatch.delenv(variable)
    for variable, value in env.items():
        monkeypatch.setenv(variable, value)
    settings = BalancerSettings()
    assert settings.model == NAME and not settings.static
    assert settings.port == balancer_contract.HTTP_PORT
    assert settings.strategy == (spec.get("routing") or {}).get("strategy", "latency-aware")
    assert settings.upstream_tls == ("tls" in spec)


def test_tls_pins_the_models_certificate_upstream() -> None:
    pod = _balancer(render(md(SPECS["http-archive"]), DEFAULTS))["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = _env(container)
    assert env["MODELPLANE_BALANCER_TLS_CERT_FILE"] == "/etc/modelplane/tls/tls.crt"
    assert env["MODELPLANE_BALANCER_UPSTREAM_TLS"] == "true"
    assert env["MODELPLANE_BALANCER_UPSTREAM_CA_FILE"] == "/etc/modelplane/tls/tls.crt"
    assert env["MODELPLANE_BALANCER_UPSTREAM_CHECK_HOSTNAME"] == "false"
    assert pod["volumes"] == [{"name": "tls", "secret": {"secretName": "sentiment-tls"}}]
    assert container["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    # The balancer needs no tokens: Authorization passes through to the replicas.
    assert not any("AUTH" in name for name in env)


def test_access_is_exactly_the_balancer_contract() -> None:
    children = render(md(SPECS["demo"]), DEFAULTS)
    account = named(children, "ServiceAccount", f"{NAME}-balancer")
    assert account["automountServiceAccountToken"] is False
    role = named(children, "Role", f"{NAME}-balancer")
    assert role["rules"] == balancer_contract.rbac_rules(NAME)
    verbs = {verb for rule in role["rules"] for verb in rule["verbs"]}
    assert verbs == {"get", "list", "watch", "patch"}
    (md_rule,) = [r for r in role["rules"] if r["resources"] == ["modeldeployments"]]
    assert md_rule["resourceNames"] == [NAME]  # its own ModelDeployment, no other
    assert "patch" not in md_rule["verbs"]
    # Its only write: renewing its own wake Lease (the scale-from-zero demand signal).
    (lease_rule,) = [r for r in role["rules"] if r["resources"] == ["leases"]]
    assert lease_rule == {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                          "verbs": ["get", "patch"], "resourceNames": [f"{NAME}-wake"]}
    binding = named(children, "RoleBinding", f"{NAME}-balancer")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": f"{NAME}-balancer"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": f"{NAME}-balancer",
                                    "namespace": "ml"}]


def test_budget_keeps_one_balancer_up() -> None:
    pdb = named(render(md(SPECS["demo"]), DEFAULTS), "PodDisruptionBudget", f"{NAME}-balancer")
    assert pdb["spec"] == {"maxUnavailable": 1,
                           "selector": {"matchLabels": {"modelplane.io/balancer": NAME}},
                           "unhealthyPodEvictionPolicy": "AlwaysAllow"}


def test_headless_services_follow_the_discovery_contract() -> None:
    children = render(md(SPECS["canary"]), DEFAULTS)
    for track, name in (("stable", balancer_contract.replicas_service(NAME)),
                        ("canary", balancer_contract.canary_replicas_service(NAME))):
        service = named(children, "Service", name)
        assert service["spec"]["clusterIP"] == "None"
        assert service["spec"]["publishNotReadyAddresses"] is False
        assert service["spec"]["selector"] == {"modelplane.io/deployment": NAME,
                                               "modelplane.io/track": track}
        port, grpc = service["spec"]["ports"]
        assert port["name"] == balancer_contract.REPLICA_PORT_NAME
        assert grpc["name"] == "grpc"  # for gRPC clients balancing per call themselves
    assert not [c for c in render(md(SPECS["demo"]), DEFAULTS)
                if c["metadata"]["name"] == "seed-mlp-canary-replicas"]


@pytest.mark.parametrize("limit", [None, "2"])
def test_operator_settings_size_the_balancer(limit: str | None) -> None:
    defaults = RenderDefaults(runtime_image="rt:1", balancer=BalancerDefaults(
        image="registry.local/balancer:7", replicas=3, cpu_request="50m",
        memory_request="64Mi", memory_limit="128Mi", cpu_limit=limit))
    deployment = _balancer(render(md(SPECS["demo"]), defaults))
    assert deployment["spec"]["replicas"] == 3
    assert deployment["metadata"]["labels"]["app.kubernetes.io/version"] == "7"
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "registry.local/balancer:7"
    expected_limits = {"memory": "128Mi"} | ({"cpu": limit} if limit else {})
    assert container["resources"] == {"requests": {"cpu": "50m", "memory": "64Mi"},
                                      "limits": expected_limits}
