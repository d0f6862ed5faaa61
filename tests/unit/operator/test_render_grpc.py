"""The runtime's gRPC port in the rendered children (issue 11's operator part)."""

from __future__ import annotations

from typing import Any

from modelplane_balancer.endpoints import members
from modelplane_operator.builders.render import render
from modelplane_runtime import contract

from .cases import DEFAULTS, SPECS, md, named


def _ports(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in service["spec"]["ports"]}


def test_the_runtime_container_serves_grpc_on_the_contract_port() -> None:
    children = render(md(SPECS["demo"]), DEFAULTS)
    (runtime,) = named(children, "Deployment", "seed-mlp")["spec"]["template"]["spec"][
        "containers"]
    ports = {p["name"]: p["containerPort"] for p in runtime["ports"]}
    assert ports == {"http": contract.HTTP_PORT, "grpc": contract.GRPC_PORT}
    env = {e["name"]: e.get("value") for e in runtime["env"]}
    assert env[contract.ENV_GRPC_PORT] == str(contract.GRPC_PORT)
    # Probes stay on HTTP (a native grpc: probe cannot speak TLS).
    assert runtime["readinessProbe"]["httpGet"]["port"] == "http"


def test_headless_services_carry_grpc_and_the_client_service_only_without_balancer() -> None:
    balanced = render(md(SPECS["demo"]), DEFAULTS)
    assert set(_ports(named(balanced, "Service", "seed-mlp"))) == {"http"}
    grpc = _ports(named(balanced, "Service", "seed-mlp-replicas"))["grpc"]
    assert grpc == {"name": "grpc", "port": contract.GRPC_PORT, "targetPort": "grpc",
                    "protocol": "TCP", "appProtocol": "kubernetes.io/h2c"}
    direct = render(md({**SPECS["demo"], "routing": {"balancer": False}}), DEFAULTS)
    assert _ports(named(direct, "Service", "seed-mlp"))["grpc"] == grpc
    assert "grpc" in _ports(named(direct, "Service", "seed-mlp-replicas"))


def test_with_tls_the_grpc_port_says_grpc_not_h2c() -> None:
    spec = {**SPECS["http-archive"], "routing": {"balancer": False}}
    children = render(md(spec, name="sentiment"), DEFAULTS)
    for name in ("sentiment", "sentiment-replicas"):
        ports = _ports(named(children, "Service", name))
        assert ports["grpc"]["appProtocol"] == "grpc"
        assert ports["http"]["appProtocol"] == "https"


def test_the_balancer_still_finds_the_http_port_in_a_two_port_slice() -> None:
    """The EndpointSlice controller writes one slice port per Service port: the balancer
    must pick ``http`` among them, never the gRPC port."""
    children = render(md(SPECS["demo"]), DEFAULTS)
    service = named(children, "Service", "seed-mlp-replicas")
    container_ports = {"http": contract.HTTP_PORT, "grpc": contract.GRPC_PORT}
    slice_ = {
        "metadata": {"name": "seed-mlp-replicas-x1", "labels": {
            "kubernetes.io/service-name": "seed-mlp-replicas"}},
        "ports": [{"name": p["name"], "port": container_ports[p["targetPort"]],
                   "protocol": "TCP"} for p in service["spec"]["ports"]],
        "endpoints": [{"addresses": ["10.0.0.7"], "conditions": {"ready": True}}],
    }
    assert len(slice_["ports"]) == 2
    found = members([slice_], "seed-mlp-replicas")
    assert [m.address.key for m in found] == [f"10.0.0.7:{contract.HTTP_PORT}"]
