"""The fault-injecting proxy (tests/fixtures/faults.py) on its own, with a real HTTP client:
each fault is what a client of a real API server would meet, and nothing else changes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.faults import FaultMix, FaultProxy, Rule
from tests.fixtures.kube import KubeApi

CONFIG_MAPS = "/api/v1/namespaces/{ns}/configmaps"


@pytest.fixture
def proxy(kube_api: KubeApi, tmp_path: Path) -> Iterator[FaultProxy]:
    started = FaultProxy(kube_api.url, tmp_path).start()
    try:
        yield started
    finally:
        started.stop()


def config_map(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
            "data": {"a": "1"}}


def stored(kube_api: KubeApi, namespace: str, name: str) -> Any:
    return kube_api.object("", "configmaps", namespace, name)


def test_forwards_requests_and_answers_unchanged(proxy: FaultProxy, kube_api: KubeApi,
                                                 kube_namespace: str) -> None:
    path = CONFIG_MAPS.format(ns=kube_namespace)
    created = httpx.post(proxy.url + path, json=config_map("plain"))
    assert created.status_code == 201
    direct = httpx.get(kube_api.url + path + "/plain").json()
    through = httpx.get(proxy.url + path + "/plain").json()
    assert through == direct
    assert [e.outcome for e in proxy.entries(path=path)] == ["forwarded", "forwarded"]


def test_rules_answer_errors_with_retry_after_for_the_first_matches(
        proxy: FaultProxy, kube_namespace: str) -> None:
    path = CONFIG_MAPS.format(ns=kube_namespace)
    proxy.add(Rule("status", method="POST", path="/configmaps$", status=503, retry_after_s=2,
                   times=2))
    answers = [httpx.post(proxy.url + path, json=config_map("later")) for _ in range(3)]
    assert [a.status_code for a in answers] == [503, 503, 201]
    assert answers[0].headers["Retry-After"] == "2"
    body = answers[0].json()
    assert (body["kind"], body["code"], body["reason"]) == ("Status", 503, "ServiceUnavailable")
    # A GET was never a match.
    assert httpx.get(proxy.url + path + "/later").status_code == 200


def test_conflicts_hit_writes_only(proxy: FaultProxy, kube_namespace: str) -> None:
    path = CONFIG_MAPS.format(ns=kube_namespace)
    proxy.set_mix(FaultMix(conflict=1.0))
    assert httpx.post(proxy.url + path, json=config_map("c")).status_code == 409
    assert httpx.get(proxy.url + path).status_code == 200
    proxy.quiet()
    assert httpx.post(proxy.url + path, json=config_map("c")).status_code == 201


def test_a_reset_before_forwarding_leaves_nothing_behind(
        proxy: FaultProxy, kube_api: KubeApi, kube_namespace: str) -> None:
    proxy.add(Rule("reset", method="POST"))
    with pytest.raises(httpx.TransportError):
        httpx.post(proxy.url + CONFIG_MAPS.format(ns=kube_namespace), json=config_map("lost"))
    assert stored(kube_api, kube_namespace, "lost") is None
    assert proxy.count("reset") == 1


def test_a_reset_after_forwarding_loses_only_the_answer(
        proxy: FaultProxy, kube_api: KubeApi, kube_namespace: str) -> None:
    proxy.add(Rule("reset_after", method="POST"))
    with pytest.raises(httpx.TransportError):
        httpx.post(proxy.url + CONFIG_MAPS.format(ns=kube_namespace), json=config_map("kept"))
    assert stored(kube_api, kube_namespace, "kept") is not None


def test_a_delay_holds_the_request(proxy: FaultProxy, kube_namespace: str) -> None:
    proxy.add(Rule("delay", method="GET", delay_s=0.5, agent="slow-client"))
    started = time.monotonic()
    answer = httpx.get(proxy.url + CONFIG_MAPS.format(ns=kube_namespace),
                       headers={"User-Agent": "slow-client/1"})
    assert answer.status_code == 200
    assert time.monotonic() - started >= 0.5
    assert [e.outcome for e in proxy.entries(agent="slow-client")] == ["delay"]


def test_watch_streams_are_cut(proxy: FaultProxy, kube_namespace: str) -> None:
    proxy.set_mix(FaultMix(watch_cut_s=(0.2, 0.4)))
    url = proxy.url + CONFIG_MAPS.format(ns=kube_namespace)
    with pytest.raises(httpx.TransportError), httpx.stream(  # noqa: PT012
            "GET", url, params={"watch": "true", "timeoutSeconds": "30"}, timeout=20) as resp:
        assert resp.status_code == 200
        for _ in resp.iter_bytes():
            pass
    assert proxy.count("cut") == 1
