"""Discovery, lists, selectors and watches of the emulated API server, over plain HTTP."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import kmock
import pytest

from tests.fixtures.apiserver import ApiServer
from tests.fixtures.apiserver.hosting import serve
from tests.fixtures.kube import KubeApi
from tests.integration.emulator.conftest import WIDGETS, widget


@pytest.fixture
async def own_api() -> AsyncIterator[tuple[ApiServer, httpx.AsyncClient]]:
    """A private emulator with tiny limits, served in this test's own loop."""
    async with ApiServer(request_log_limit=10, watch_history=3) as api, \
            kmock.Server(api) as server, \
            httpx.AsyncClient(base_url=str(server.url), timeout=10) as client:
        yield api, client


def cm(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "labels": labels}, "data": {}}


def test_core_group_version_is_v1(http: httpx.Client) -> None:
    doc = http.get("/api/v1").json()
    assert doc["groupVersion"] == "v1"
    assert {"services", "configmaps", "pods", "namespaces"} <= {r["name"] for r in doc["resources"]}
    assert http.get("/api").json()["versions"] == ["v1"]


def test_one_version_per_resource(http: httpx.Client) -> None:
    group = http.get("/apis/autoscaling").json()
    assert group["preferredVersion"]["version"] == "v2"
    assert http.get("/apis/autoscaling/v1").status_code == 404


def test_openapi_is_absent(http: httpx.Client) -> None:
    assert http.get("/openapi/v2").status_code == 404


def test_created_crd_is_discoverable_and_established(http: httpx.Client) -> None:
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": "gadgets.disco.example.com"},
           "spec": {"group": "disco.example.com", "scope": "Cluster",
                    "names": {"plural": "gadgets", "kind": "Gadget", "singular": "gadget"},
                    "versions": [{"name": "v1", "served": True, "storage": True,
                                  "schema": {"openAPIV3Schema": {"type": "object"}}}]}}
    crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    stored = http.post(crds, json=crd).json()
    conditions = {c["type"]: c["status"] for c in stored["status"]["conditions"]}
    assert conditions["Established"] == "True"
    assert "disco.example.com" in [g["name"] for g in http.get("/apis").json()["groups"]]
    resources = http.get("/apis/disco.example.com/v1").json()["resources"]
    assert [(r["name"], r["kind"], r["namespaced"]) for r in resources] == [
        ("gadgets", "Gadget", False)]
    gadget = {"apiVersion": "disco.example.com/v1", "kind": "Gadget", "metadata": {"name": "g"}}
    assert http.post("/apis/disco.example.com/v1/gadgets", json=gadget).status_code == 201
    assert http.delete(f"{crds}/gadgets.disco.example.com").status_code == 200
    assert http.get("/apis/disco.example.com/v1").status_code == 404
    assert http.get("/apis/disco.example.com/v1/gadgets/g").status_code == 404


def test_crd_with_wrong_name_is_invalid(http: httpx.Client) -> None:
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": "wrong.example.com"},
           "spec": {"group": "x.example.com", "scope": "Namespaced",
                    "names": {"plural": "xs", "kind": "X"},
                    "versions": [{"name": "v1", "served": True, "storage": True}]}}
    resp = http.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=crd)
    assert resp.status_code == 422


def test_namespaces_list(http: httpx.Client) -> None:
    doc = http.get("/api/v1/namespaces").json()
    assert doc["kind"] == "NamespaceList"
    assert {"default", "kube-system"} <= {i["metadata"]["name"] for i in doc["items"]}
    assert http.get("/api/v1/namespaces/default").json()["status"] == {"phase": "Active"}


def test_list_has_kind_and_numeric_resource_version(http: httpx.Client,
                                                    kube_namespace: str) -> None:
    http.post(f"/api/v1/namespaces/{kube_namespace}/configmaps", json=cm("one"))
    doc = http.get(f"/api/v1/namespaces/{kube_namespace}/configmaps").json()
    assert doc["kind"] == "ConfigMapList"
    assert doc["apiVersion"] == "v1"
    assert int(doc["metadata"]["resourceVersion"]) >= int(
        doc["items"][0]["metadata"]["resourceVersion"])


def test_label_and_field_selectors_filter_lists(http: httpx.Client, kube_namespace: str) -> None:
    path = f"/api/v1/namespaces/{kube_namespace}/configmaps"
    for name, tier in (("a", "web"), ("b", "db"), ("c", "web")):
        http.post(path, json=cm(name, tier=tier))
    http.post(path, json=cm("d"))

    def names(**params: str) -> list[str]:
        return [i["metadata"]["name"] for i in http.get(path, params=params).json()["items"]]

    assert names(labelSelector="tier=web") == ["a", "c"]
    assert names(labelSelector="tier!=web") == ["b", "d"]
    assert names(labelSelector="tier in (db,web),tier notin (web)") == ["b"]
    assert names(labelSelector="!tier") == ["d"]
    assert names(fieldSelector="metadata.name=b") == ["b"]
    assert names(fieldSelector="metadata.name!=b", labelSelector="tier") == ["a", "c"]
    assert http.get(path, params={"labelSelector": "a in b"}).status_code == 400


def test_list_pages_with_limit_and_continue(http: httpx.Client, kube_namespace: str) -> None:
    path = f"/api/v1/namespaces/{kube_namespace}/configmaps"
    for name in "abcde":
        http.post(path, json=cm(name))
    first = http.get(path, params={"limit": 2}).json()
    second = http.get(path, params={"limit": 10, "continue": first["metadata"]["continue"]}).json()
    assert [i["metadata"]["name"] for i in first["items"] + second["items"]] == list("abcde")


def watch_lines(http: httpx.Client, path: str, **params: Any) -> tuple[str, list[dict[str, Any]]]:
    """A whole watch stream that the server ends by timeoutSeconds."""
    with http.stream("GET", path, params={"watch": "true", **params}) as resp:
        lines = [json.loads(line) for line in resp.iter_lines() if line]
        return resp.headers["content-type"], lines


def test_watch_is_json_honours_timeout_and_resumes(http: httpx.Client,
                                                   kube_namespace: str) -> None:
    path = f"/api/v1/namespaces/{kube_namespace}/configmaps"
    first = http.post(path, json=cm("w1")).json()
    http.patch(f"{path}/w1", headers={"Content-Type": "application/merge-patch+json"},
               json={"data": {"k": "v"}})
    http.post(path, json=cm("w2"))
    started = time.monotonic()
    ctype, events = watch_lines(http, path, timeoutSeconds=1,
                                resourceVersion=first["metadata"]["resourceVersion"])
    assert time.monotonic() - started < 5
    assert ctype.startswith("application/json")
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("MODIFIED", "w1"), ("ADDED", "w2")]


def test_watch_list_ends_initial_events_with_a_bookmark(http: httpx.Client,
                                                        kube_namespace: str) -> None:
    path = f"/api/v1/namespaces/{kube_namespace}/configmaps"
    http.post(path, json=cm("i1"))
    _, events = watch_lines(http, path, timeoutSeconds=1, sendInitialEvents="true",
                            allowWatchBookmarks="true", resourceVersionMatch="NotOlderThan")
    assert [e["type"] for e in events] == ["ADDED", "BOOKMARK"]
    annotations = events[1]["object"]["metadata"]["annotations"]
    assert annotations == {"k8s.io/initial-events-end": "true"}


def test_watch_with_selector_sees_objects_leave_it(http: httpx.Client,
                                                   kube_namespace: str) -> None:
    path = f"/api/v1/namespaces/{kube_namespace}/configmaps"
    start = http.post(path, json=cm("s1", tier="web")).json()["metadata"]["resourceVersion"]
    http.post(path, json=cm("s2", tier="db"))
    http.patch(f"{path}/s1", headers={"Content-Type": "application/merge-patch+json"},
               json={"metadata": {"labels": {"tier": "db"}}})
    _, events = watch_lines(http, path, timeoutSeconds=1, resourceVersion=start,
                            labelSelector="tier=web")
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("DELETED", "s1")]


async def test_watch_from_a_compacted_version_is_410(
        own_api: tuple[ApiServer, httpx.AsyncClient]) -> None:
    _, client = own_api
    path = "/api/v1/namespaces/default/configmaps"
    first = (await client.post(path, json=cm("x0"))).json()
    for i in range(1, 6):  # more events than the history of 3 keeps
        await client.post(path, json=cm(f"x{i}"))
    # No timeoutSeconds: the server ends the stream after the 410 ERROR, as a real one does.
    resp = await asyncio.wait_for(client.get(path, params={
        "watch": "true", "resourceVersion": first["metadata"]["resourceVersion"]}), 10)
    events = [json.loads(line) for line in resp.text.splitlines() if line]
    assert events[0]["type"] == "ERROR"
    assert events[0]["object"]["code"] == 410


async def test_request_log_is_trimmed_and_lookups_stay_flat(
        own_api: tuple[ApiServer, httpx.AsyncClient]) -> None:
    api, client = own_api
    path = "/api/v1/namespaces/default/configmaps"
    timings = []
    for i in range(500):
        started = time.perf_counter()
        resp = await client.post(path, json=cm(f"n{i}", batch="b"))
        timings.append(time.perf_counter() - started)
        assert resp.status_code == 201
    assert len(list(api)) <= 2 * api.request_log_limit
    early, late = sorted(timings[10:60])[25], sorted(timings[-50:])[25]
    assert late < 3 * early + 0.002, (early, late)  # no growth with the object count
    listed = (await client.get(path, params={"labelSelector": "batch=b"})).json()
    assert len(listed["items"]) == 500


async def test_test_reactions_still_take_precedence(
        own_api: tuple[ApiServer, httpx.AsyncClient]) -> None:
    api, client = own_api
    api["post", kmock.resource("", "v1", "configmaps")][:1] << 503
    path = "/api/v1/namespaces/default/configmaps"
    assert (await client.post(path, json=cm("r"))).status_code == 503
    assert (await client.post(path, json=cm("r"))).status_code == 201


def test_widgets_served_in_storage_version(http: httpx.Client, kube_namespace: str,
                                           widgets_crd: Any) -> None:
    path = f"{WIDGETS}/namespaces/{kube_namespace}/widgets"
    obj = http.post(path, json=widget("v", kube_namespace)).json()
    assert obj["apiVersion"] == "emulator.example.com/v1"
    assert obj["kind"] == "Widget"


def test_namespaced_watch_resumes_within_its_namespace(http: httpx.Client,
                                                       kube_namespace: str) -> None:
    path = f"/api/v1/namespaces/{kube_namespace}/configmaps"
    start = http.post(path, json=cm("mine")).json()["metadata"]["resourceVersion"]
    http.post("/api/v1/namespaces/default/configmaps", json=cm(f"other-{kube_namespace}"))
    http.post(path, json=cm("mine-too"))
    _, events = watch_lines(http, path, timeoutSeconds=1, resourceVersion=start)
    assert [e["object"]["metadata"]["name"] for e in events] == ["mine-too"]


def test_crd_versions_share_one_storage(http: httpx.Client) -> None:
    schema = {"openAPIV3Schema": {"type": "object",
                                  "x-kubernetes-preserve-unknown-fields": True}}
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": "multis.versions.example.com"},
           "spec": {"group": "versions.example.com", "scope": "Cluster",
                    "names": {"plural": "multis", "kind": "Multi"},
                    "versions": [{"name": "v1beta1", "served": True, "storage": False,
                                  "schema": schema},
                                 {"name": "v1", "served": True, "storage": True,
                                  "schema": schema}]}}
    http.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=crd)
    group = http.get("/apis/versions.example.com").json()
    assert group["preferredVersion"]["version"] == "v1"
    old = {"apiVersion": "versions.example.com/v1beta1", "kind": "Multi",
           "metadata": {"name": "m"}, "spec": {"a": 1}}
    assert http.post("/apis/versions.example.com/v1beta1/multis", json=old).status_code == 201
    as_v1 = http.get("/apis/versions.example.com/v1/multis/m").json()
    assert as_v1["apiVersion"] == "versions.example.com/v1"
    assert as_v1["spec"] == {"a": 1}
    listed = http.get("/apis/versions.example.com/v1beta1/multis").json()
    assert [i["apiVersion"] for i in listed["items"]] == ["versions.example.com/v1beta1"]


def test_each_test_starts_with_an_empty_log_and_its_own_reactions(
        kube_api: KubeApi, http: httpx.Client, kube_namespace: str) -> None:
    def inject(api: ApiServer) -> int:
        seen = len(list(api))  # requests of this test so far (the namespace's creation)
        api["post", kmock.resource("", "v1", "configmaps")][:1] << 503
        return seen

    assert kube_api.call(inject) < 20
    path = f"/api/v1/namespaces/{kube_namespace}/configmaps"
    assert http.post(path, json=cm("first")).status_code == 503
    assert http.post(path, json=cm("first")).status_code == 201


def test_releasing_the_last_finalizer_is_one_deleted_event(http: httpx.Client,
                                                           kube_namespace: str) -> None:
    path = f"/api/v1/namespaces/{kube_namespace}/configmaps"
    held = cm("held")
    held["metadata"]["finalizers"] = ["example.com/hold"]
    http.post(path, json=held)
    start = http.delete(f"{path}/held").json()["metadata"]["resourceVersion"]
    http.patch(f"{path}/held", headers={"Content-Type": "application/merge-patch+json"},
               json={"metadata": {"finalizers": None}})
    _, events = watch_lines(http, path, timeoutSeconds=1, resourceVersion=start)
    assert [(e["type"], e["object"]["metadata"].get("finalizers")) for e in events] == [
        ("DELETED", None)]


def test_bad_requests_are_400_or_405(http: httpx.Client, kube_namespace: str) -> None:
    path = f"/api/v1/namespaces/{kube_namespace}/configmaps"
    http.post(path, json=cm("x"))
    assert http.get(path, params={"watch": "true", "resourceVersion": "abc"}).status_code == 400
    assert http.get(path, params={"limit": "many"}).status_code == 400
    pods = f"/api/v1/namespaces/{kube_namespace}/pods"
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "spec": {"containers": [{"name": "c", "image": "i"}]}}
    http.post(pods, json=pod)
    assert http.delete(f"{pods}/p/status").status_code == 405
    assert http.post(path, content=b"{not json", headers={
        "Content-Type": "application/json"}).status_code == 400


def test_request_counters_on_metrics(kube_api: KubeApi, http: httpx.Client,
                                     kube_namespace: str) -> None:
    def patches() -> int:
        count: int = kube_api.call(lambda api: api.metrics.count(
            verb="PATCH", resource="configmaps", code="200"))
        return count

    before = patches()
    path = f"/api/v1/namespaces/{kube_namespace}/configmaps"
    http.post(path, json=cm("counted"))
    for _ in range(2):
        http.patch(f"{path}/counted", headers={"Content-Type": "application/merge-patch+json"},
                   json={"data": {"k": "v"}})
    assert patches() == before + 2
    text = http.get("/metrics").text
    assert "# TYPE apiserver_request_total counter" in text
    assert ('apiserver_request_total{verb="POST",group="",version="v1",resource="configmaps",'
            'subresource="",scope="namespace",component="apiserver",code="201"}') in text


async def test_shutdown_ends_open_watches_promptly() -> None:
    stop = asyncio.Event()
    urls: asyncio.Queue[str] = asyncio.Queue()
    server = asyncio.create_task(serve(lambda api, url: urls.put_nowait(url), stop))
    url = await asyncio.wait_for(urls.get(), 30)
    async with httpx.AsyncClient(base_url=url, timeout=30) as client, \
            client.stream("GET", "/api/v1/namespaces", params={"watch": "true"}) as watch:
        lines = watch.aiter_lines()
        assert json.loads(await anext(lines))["type"] == "ADDED"
        started = time.monotonic()
        stop.set()
        await asyncio.wait_for(server, 30)
    assert time.monotonic() - started < 10


@pytest.mark.kmock(cls=ApiServer)
async def test_kmock_fixture_can_host_the_emulator(kmock: ApiServer) -> None:
    async with httpx.AsyncClient(base_url=str(kmock.url), timeout=10) as client:
        doc = (await client.get("/api/v1/namespaces")).json()
    assert doc["kind"] == "NamespaceList"
    assert isinstance(kmock, ApiServer)
