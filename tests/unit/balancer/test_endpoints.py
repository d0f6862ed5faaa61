"""EndpointSlices -> members and ModelDeployment -> routing (the discovery contract)."""

from __future__ import annotations

from typing import Any

from modelplane_balancer.endpoints import Routing, members, routing_from


def _slice(service: str, endpoints: list[dict[str, Any]], port_name: str = "http",
           name: str = "s1") -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"kubernetes.io/service-name": service}},
            "ports": [{"name": port_name, "port": 8080}], "endpoints": endpoints}


def _ep(address: str, **conditions: bool) -> dict[str, Any]:
    return {"addresses": [address], "conditions": conditions,
            "targetRef": {"kind": "Pod", "name": f"pod-{address}"}, "nodeName": "node-1",
            "zone": "z1"}


def test_ready_endpoints_of_the_right_service() -> None:
    slices = [
        _slice("m-replicas", [_ep("10.0.0.1", ready=True), _ep("10.0.0.2", ready=False),
                              _ep("10.0.0.3")]),
        _slice("m-canary-replicas", [_ep("10.0.1.1", ready=True)], name="s2"),
    ]
    found = {m.address.key: m.ready for m in members(slices, "m-replicas")}
    assert found == {"10.0.0.1:8080": True, "10.0.0.2:8080": False, "10.0.0.3:8080": True}
    assert [m.address.key for m in members(slices, "m-canary-replicas")] == ["10.0.1.1:8080"]


def test_terminating_serving_endpoints_are_used_only_when_nothing_is_ready() -> None:
    draining = _ep("10.0.0.1", ready=False, serving=True, terminating=True)
    gone = _ep("10.0.0.2", ready=False, serving=False, terminating=True)
    alone = members([_slice("m-replicas", [draining, gone])], "m-replicas")
    assert {m.address.key: m.ready for m in alone} == {"10.0.0.1:8080": True,
                                                      "10.0.0.2:8080": False}
    beside = members([_slice("m-replicas", [draining, _ep("10.0.0.3", ready=True)])],
                     "m-replicas")
    assert {m.address.key: m.ready for m in beside} == {"10.0.0.1:8080": False,
                                                       "10.0.0.3:8080": True}


def test_duplicates_across_slices_prefer_ready_and_ports_need_a_name() -> None:
    slices = [_slice("m-replicas", [_ep("10.0.0.1", ready=False)], name="old"),
              _slice("m-replicas", [_ep("10.0.0.1", ready=True)], name="new"),
              {**_slice("m-replicas", [_ep("10.0.0.9")], name="ports"),
               "ports": [{"name": "grpc", "port": 9000}, {"name": "metrics", "port": 9090}]}]
    found = members(slices, "m-replicas")
    assert [(m.address.key, m.ready) for m in found] == [("10.0.0.1:8080", True)]
    single = _slice("m-replicas", [_ep("10.0.0.5")], port_name="web")
    assert [m.address.key for m in members([single], "m-replicas")] == ["10.0.0.5:8080"]


def test_weights_by_pod_node_or_zone() -> None:
    slices = [_slice("m-replicas", [_ep("10.0.0.1"), _ep("10.0.0.2")])]
    weights = {"pod/pod-10.0.0.1": 5, "zone/z1": 2}
    assert [m.weight for m in members(slices, "m-replicas", weights)] == [5, 2]
    assert [m.weight for m in members(slices, "m-replicas", {"node/node-1": 3})] == [3, 3]


def test_routing_from_a_model_deployment() -> None:
    md = {"spec": {"routing": {"strategy": "power-of-two", "weights": {"zone/a": 3}},
                   "canary": {"model": {"uri": "demo://x"}, "trafficPercent": 15},
                   "autoscaling": {"minReplicas": 0, "maxReplicas": 3}, "suspend": False}}
    assert routing_from(md) == Routing("power-of-two", 15, {"zone/a": 3}, False, True)
    assert routing_from({"spec": {}}) == Routing()
    assert routing_from({"spec": {"suspend": True}}).suspended


def test_bad_routing_values_are_ignored_not_fatal() -> None:
    md = {"spec": {"routing": {"strategy": "fastest", "weights": {"rack/1": 2, "zone/a": -1,
                                                                 "pod/p": True}},
                   "canary": {"trafficPercent": 150}}}
    assert routing_from(md) == Routing(None, 0, {}, False, False)
