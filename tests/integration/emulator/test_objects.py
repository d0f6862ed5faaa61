"""Object semantics of the emulated API server, over plain HTTP: one test per closed gap."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.integration.emulator.conftest import WIDGETS, widget

MERGE = {"Content-Type": "application/merge-patch+json"}
JSON_PATCH = {"Content-Type": "application/json-patch+json"}
STRATEGIC = {"Content-Type": "application/strategic-merge-patch+json"}
APPLY = {"Content-Type": "application/apply-patch+yaml"}


def configmap(name: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def cm_path(ns: str, name: str = "") -> str:
    return f"/api/v1/namespaces/{ns}/configmaps" + (f"/{name}" if name else "")


def wd_path(ns: str, name: str = "", sub: str = "") -> str:
    return "/".join(p for p in (f"{WIDGETS}/namespaces/{ns}/widgets", name, sub) if p)


def created(http: httpx.Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    resp = http.post(path, json=body)
    assert resp.status_code == 201, resp.text
    result: dict[str, Any] = resp.json()
    return result


def test_create_sets_server_metadata(http: httpx.Client, kube_namespace: str,
                                     widgets_crd: Any) -> None:
    obj = created(http, wd_path(kube_namespace), widget("w", kube_namespace, size="s"))
    meta = obj["metadata"]
    assert len(meta["uid"]) == 36
    assert int(meta["resourceVersion"]) > 0
    assert meta["generation"] == 1
    assert meta["creationTimestamp"].endswith("Z")
    assert http.get(wd_path(kube_namespace, "w")).json() == obj


def test_generate_name(http: httpx.Client, kube_namespace: str) -> None:
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "gen-"}}
    names = {created(http, cm_path(kube_namespace), body)["metadata"]["name"] for _ in range(3)}
    assert len(names) == 3
    assert all(n.startswith("gen-") and len(n) == 9 for n in names)


def test_create_twice_is_409_already_exists(http: httpx.Client, kube_namespace: str) -> None:
    created(http, cm_path(kube_namespace), configmap("dup"))
    resp = http.post(cm_path(kube_namespace), json=configmap("dup"))
    assert resp.status_code == 409
    assert resp.json()["reason"] == "AlreadyExists"


def test_writes_bump_resource_version_and_generation_only_on_spec(
        http: httpx.Client, kube_namespace: str, widgets_crd: Any) -> None:
    obj = created(http, wd_path(kube_namespace), widget("g", kube_namespace, size="s"))
    rv0 = int(obj["metadata"]["resourceVersion"])
    labelled = http.patch(wd_path(kube_namespace, "g"), headers=MERGE,
                          json={"metadata": {"labels": {"a": "b"}}}).json()
    assert int(labelled["metadata"]["resourceVersion"]) > rv0
    assert labelled["metadata"]["generation"] == 1
    resized = http.patch(wd_path(kube_namespace, "g"), headers=MERGE,
                         json={"spec": {"size": "m"}}).json()
    assert resized["metadata"]["generation"] == 2
    same = http.patch(wd_path(kube_namespace, "g"), headers=MERGE, json={"spec": {"size": "m"}})
    assert same.json()["metadata"]["resourceVersion"] == resized["metadata"]["resourceVersion"]


def test_stale_resource_version_is_409(http: httpx.Client, kube_namespace: str) -> None:
    obj = created(http, cm_path(kube_namespace), configmap("rv", a="1"))
    stale = obj["metadata"]["resourceVersion"]
    http.patch(cm_path(kube_namespace, "rv"), headers=MERGE, json={"data": {"a": "2"}})
    patched = http.patch(cm_path(kube_namespace, "rv"), headers=MERGE,
                         json={"metadata": {"resourceVersion": stale}, "data": {"a": "3"}})
    assert patched.status_code == 409
    assert patched.json()["reason"] == "Conflict"
    replaced = http.put(cm_path(kube_namespace, "rv"), json={**obj, "data": {"a": "4"}})
    assert replaced.status_code == 409
    assert http.get(cm_path(kube_namespace, "rv")).json()["data"] == {"a": "2"}


def test_put_replaces_the_object(http: httpx.Client, kube_namespace: str) -> None:
    obj = created(http, cm_path(kube_namespace), configmap("put", a="1", b="2"))
    obj["data"] = {"c": "3"}
    resp = http.put(cm_path(kube_namespace, "put"), json=obj)
    assert resp.status_code == 200, resp.text
    assert resp.json()["data"] == {"c": "3"}
    assert resp.json()["metadata"]["uid"] == obj["metadata"]["uid"]


def test_put_on_custom_resource_requires_resource_version(
        http: httpx.Client, kube_namespace: str, widgets_crd: Any) -> None:
    created(http, wd_path(kube_namespace), widget("p", kube_namespace, size="s"))
    resp = http.put(wd_path(kube_namespace, "p"), json=widget("p", kube_namespace, size="l"))
    assert resp.status_code == 422


def test_failed_json_patch_test_is_422(http: httpx.Client, kube_namespace: str) -> None:
    created(http, cm_path(kube_namespace), configmap("jp"))
    ops: list[dict[str, Any]] = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": "1"},
        {"op": "add", "path": "/metadata/finalizers", "value": ["x"]}]
    resp = http.patch(cm_path(kube_namespace, "jp"), headers=JSON_PATCH, json=ops)
    assert resp.status_code == 422
    assert resp.json()["reason"] == "Invalid"
    current = http.get(cm_path(kube_namespace, "jp")).json()
    ops[0]["value"] = current["metadata"]["resourceVersion"]
    resp = http.patch(cm_path(kube_namespace, "jp"), headers=JSON_PATCH, json=ops)
    assert resp.json()["metadata"]["finalizers"] == ["x"]


def test_strategic_merge_on_builtins_and_415_on_custom_resources(
        http: httpx.Client, kube_namespace: str, widgets_crd: Any) -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [
        {"name": "a", "image": "a:1", "ports": [{"containerPort": 80}]},
        {"name": "b", "image": "b:1"}]}}
    created(http, f"/api/v1/namespaces/{kube_namespace}/pods", pod)
    patch = {"spec": {"$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
                      "containers": [{"name": "a", "image": "a:2"}]}}
    merged = http.patch(f"/api/v1/namespaces/{kube_namespace}/pods/p", headers=STRATEGIC,
                        json=patch).json()
    assert [(c["name"], c["image"], c.get("ports")) for c in merged["spec"]["containers"]] == [
        ("a", "a:2", [{"containerPort": 80, "protocol": "TCP"}]), ("b", "b:1", None)]
    created(http, wd_path(kube_namespace), widget("sm", kube_namespace, size="s"))
    resp = http.patch(wd_path(kube_namespace, "sm"), headers=STRATEGIC, json={"spec": {}})
    assert resp.status_code == 415


def test_server_side_apply_creates_then_updates(http: httpx.Client, kube_namespace: str) -> None:
    path = cm_path(kube_namespace, "ssa") + "?fieldManager=test"
    body = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\ndata:\n  a: '1'\n"
    first = http.patch(path, headers=APPLY, content=body)
    assert first.status_code == 201, first.text
    second = http.patch(path, headers=APPLY, content=body.replace("'1'", "'2'"))
    assert second.status_code == 200
    assert second.json()["data"] == {"a": "2"}
    assert second.json()["metadata"]["uid"] == first.json()["metadata"]["uid"]


def test_dry_run_writes_nothing(http: httpx.Client, kube_namespace: str) -> None:
    resp = http.post(cm_path(kube_namespace) + "?dryRun=All", json=configmap("dry", a="1"))
    assert resp.status_code == 201
    assert resp.json()["data"] == {"a": "1"}
    assert http.get(cm_path(kube_namespace, "dry")).status_code == 404
    created(http, cm_path(kube_namespace), configmap("dry", a="1"))
    preview = http.patch(cm_path(kube_namespace, "dry") + "?dryRun=All", headers=MERGE,
                         json={"data": {"a": "2"}})
    assert preview.json()["data"] == {"a": "2"}
    http.delete(cm_path(kube_namespace, "dry") + "?dryRun=All")
    assert http.get(cm_path(kube_namespace, "dry")).json()["data"] == {"a": "1"}


def test_status_subresource_isolation(http: httpx.Client, kube_namespace: str,
                                      widgets_crd: Any) -> None:
    created(http, wd_path(kube_namespace), {**widget("st", kube_namespace, size="s"),
                                            "status": {"ignored": True}})
    assert "status" not in http.get(wd_path(kube_namespace, "st")).json()
    via_status = http.patch(wd_path(kube_namespace, "st", "status"), headers=MERGE,
                            json={"spec": {"size": "xl"}, "status": {"phase": "Up"}}).json()
    assert via_status["spec"] == {"size": "s"}
    assert via_status["status"] == {"phase": "Up"}
    assert via_status["metadata"]["generation"] == 1
    via_main = http.patch(wd_path(kube_namespace, "st"), headers=MERGE,
                          json={"spec": {"size": "m"}, "status": {"phase": "Down"}}).json()
    assert via_main["spec"] == {"size": "m"}
    assert via_main["status"] == {"phase": "Up"}


def test_scale_subresource_is_an_autoscaling_v1_scale(http: httpx.Client, kube_namespace: str,
                                                      widgets_crd: Any) -> None:
    created(http, wd_path(kube_namespace), widget("sc", kube_namespace, replicas=1))
    http.patch(wd_path(kube_namespace, "sc", "status"), headers=MERGE,
               json={"status": {"replicas": 1, "selector": "app=sc"}})
    scale = http.get(wd_path(kube_namespace, "sc", "scale")).json()
    assert scale["kind"] == "Scale"
    assert scale["apiVersion"] == "autoscaling/v1"
    assert scale["spec"] == {"replicas": 1}
    assert scale["status"] == {"replicas": 1, "selector": "app=sc"}
    scaled = http.patch(wd_path(kube_namespace, "sc", "scale"), headers=MERGE,
                        json={"spec": {"replicas": 4}})
    assert scaled.json()["spec"] == {"replicas": 4}
    obj = http.get(wd_path(kube_namespace, "sc")).json()
    assert obj["spec"]["replicas"] == 4
    assert obj["metadata"]["generation"] == 2


def test_finalizers_hold_deletion_until_removed(http: httpx.Client, kube_namespace: str,
                                                widgets_crd: Any) -> None:
    body = widget("fin", kube_namespace, size="s")
    body["metadata"]["finalizers"] = ["example.com/cleanup"]
    created(http, wd_path(kube_namespace), body)
    deleting = http.delete(wd_path(kube_namespace, "fin"))
    assert deleting.status_code == 200
    assert deleting.json()["metadata"]["deletionTimestamp"]
    assert http.get(wd_path(kube_namespace, "fin")).status_code == 200
    added = http.patch(wd_path(kube_namespace, "fin"), headers=MERGE,
                       json={"metadata": {"finalizers": ["example.com/cleanup", "more"]}})
    assert added.status_code == 422  # no new finalizers on an object being deleted
    released = http.patch(wd_path(kube_namespace, "fin"), headers=MERGE,
                          json={"metadata": {"finalizers": None}})
    assert released.status_code == 200
    assert http.get(wd_path(kube_namespace, "fin")).status_code == 404


@pytest.mark.parametrize(("policy", "finalizer"), [("Foreground", "foregroundDeletion"),
                                                   ("Orphan", "orphan")])
def test_propagation_policy_adds_the_gc_finalizer(http: httpx.Client, kube_namespace: str,
                                                  policy: str, finalizer: str) -> None:
    created(http, cm_path(kube_namespace), configmap("pp"))
    resp = http.request("DELETE", cm_path(kube_namespace, "pp"),
                        json={"propagationPolicy": policy})
    assert resp.json()["metadata"]["finalizers"] == [finalizer]
    assert http.get(cm_path(kube_namespace, "pp")).json()["metadata"]["deletionTimestamp"]


def test_delete_preconditions(http: httpx.Client, kube_namespace: str) -> None:
    created(http, cm_path(kube_namespace), configmap("pre"))
    resp = http.request("DELETE", cm_path(kube_namespace, "pre"),
                        json={"preconditions": {"uid": "not-the-uid"}})
    assert resp.status_code == 409
    assert http.delete(cm_path(kube_namespace, "pre")).status_code == 200
    assert http.get(cm_path(kube_namespace, "pre")).status_code == 404


def test_service_gets_a_cluster_ip(http: httpx.Client, kube_namespace: str) -> None:
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
           "spec": {"ports": [{"name": "http", "port": 80}]}}
    spec = created(http, f"/api/v1/namespaces/{kube_namespace}/services", svc)["spec"]
    assert spec["clusterIP"].startswith("10.96.")
    assert spec["type"] == "ClusterIP"


def test_generation_only_where_the_real_server_keeps_it(http: httpx.Client,
                                                        kube_namespace: str) -> None:
    assert "generation" not in created(http, cm_path(kube_namespace), configmap("gen"))[
        "metadata"]
    deploy = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
              "spec": {"selector": {"matchLabels": {"a": "d"}}, "template": {
                  "metadata": {"labels": {"a": "d"}}, "spec": {"containers": []}}}}
    path = f"/apis/apps/v1/namespaces/{kube_namespace}/deployments"
    assert created(http, path, deploy)["metadata"]["generation"] == 1


def test_namespace_must_exist(http: httpx.Client) -> None:
    resp = http.post(cm_path("no-such-namespace"), json=configmap("x"))
    assert resp.status_code == 404
    assert resp.json()["message"] == 'namespaces "no-such-namespace" not found'


def test_namespace_deletion_deletes_content_and_waits_for_finalizers(
        http: httpx.Client) -> None:
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "doomed"}}
    created(http, "/api/v1/namespaces", ns)
    created(http, cm_path("doomed"), configmap("plain"))
    held = configmap("held")
    held["metadata"]["finalizers"] = ["example.com/hold"]
    created(http, cm_path("doomed"), held)
    assert http.delete("/api/v1/namespaces/doomed").json()["status"] == {"phase": "Terminating"}
    assert http.get(cm_path("doomed", "plain")).status_code == 404
    assert http.get(cm_path("doomed", "held")).json()["metadata"]["deletionTimestamp"]
    refused = http.post(cm_path("doomed"), json=configmap("late"))
    assert refused.status_code == 403
    http.patch(cm_path("doomed", "held"), headers=MERGE,
               json={"metadata": {"finalizers": None}})
    assert http.get("/api/v1/namespaces/doomed").status_code == 404


def test_default_namespace_is_protected(http: httpx.Client) -> None:
    assert http.delete("/api/v1/namespaces/default").status_code == 403


@pytest.mark.parametrize("metadata", [
    {"name": "Upper-Case"},
    {"name": "ok", "labels": {"model": "gs://bucket/model"}},
    {"name": "ok", "labels": {"x" * 64: "v"}},
    {"name": "ok", "annotations": {"bad key!": "v"}},
])
def test_invalid_metadata_is_422(http: httpx.Client, kube_namespace: str,
                                 metadata: dict[str, Any]) -> None:
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata}
    resp = http.post(cm_path(kube_namespace), json=body)
    assert resp.status_code == 422, resp.text
    assert resp.json()["reason"] == "Invalid"


def test_service_names_are_dns_labels(http: httpx.Client, kube_namespace: str) -> None:
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "1-starts-with-digit"},
           "spec": {"ports": [{"port": 80}]}}
    resp = http.post(f"/api/v1/namespaces/{kube_namespace}/services", json=svc)
    assert resp.status_code == 422


def test_workload_selector_must_match_and_stay(http: httpx.Client, kube_namespace: str) -> None:
    path = f"/apis/apps/v1/namespaces/{kube_namespace}/deployments"
    deploy: dict[str, Any] = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "sel"},
        "spec": {"selector": {"matchLabels": {"app": "a"}}, "template": {
            "metadata": {"labels": {"app": "b"}}, "spec": {"containers": []}}}}
    assert http.post(path, json=deploy).status_code == 422
    deploy["spec"]["template"]["metadata"]["labels"] = {"app": "a", "extra": "x"}
    created(http, path, deploy)
    moved = http.patch(f"{path}/sel", headers=MERGE, json={"spec": {
        "selector": {"matchLabels": {"extra": "x"}}}})
    assert moved.status_code == 422
    assert "immutable" in moved.json()["message"]


def test_service_update_keeps_its_cluster_ip(http: httpx.Client, kube_namespace: str) -> None:
    path = f"/api/v1/namespaces/{kube_namespace}/services"
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "keep"},
           "spec": {"ports": [{"port": 80}]}}
    first = created(http, path, svc)
    replaced = http.put(f"{path}/keep", json={**svc, "metadata": {
        "name": "keep", "resourceVersion": first["metadata"]["resourceVersion"]},
        "spec": {"ports": [{"port": 81}]}}).json()
    assert replaced["spec"]["clusterIP"] == first["spec"]["clusterIP"]
    assert replaced["spec"]["ports"] == [{"port": 81, "protocol": "TCP", "targetPort": 81}]


def test_builtin_defaults_are_filled_and_rewrites_of_desired_state_are_no_ops(
        http: httpx.Client, kube_namespace: str) -> None:
    path = f"/apis/apps/v1/namespaces/{kube_namespace}/deployments"
    desired: dict[str, Any] = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "dflt"},
        "spec": {"selector": {"matchLabels": {"a": "d"}}, "template": {
            "metadata": {"labels": {"a": "d"}},
            "spec": {"containers": [{"name": "c", "image": "repo/img", "readinessProbe": {
                "httpGet": {"path": "/v2/health/ready", "port": 8080}}}]}}}}
    live = created(http, path, desired)
    spec = live["spec"]
    assert (spec["replicas"], spec["revisionHistoryLimit"], spec["progressDeadlineSeconds"]) == (
        1, 10, 600)
    assert spec["strategy"] == {"type": "RollingUpdate",
                                "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}
    pod = spec["template"]["spec"]
    assert (pod["restartPolicy"], pod["dnsPolicy"], pod["schedulerName"]) == (
        "Always", "ClusterFirst", "default-scheduler")
    container = pod["containers"][0]
    assert container["imagePullPolicy"] == "Always"  # no tag means :latest
    assert container["readinessProbe"] == {
        "httpGet": {"path": "/v2/health/ready", "port": 8080, "scheme": "HTTP"},
        "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3}
    again = http.patch(f"{path}/dflt", headers=MERGE, json={"spec": desired["spec"]}).json()
    assert again["metadata"]["resourceVersion"] == live["metadata"]["resourceVersion"]


def test_custom_resources_are_pruned_and_defaulted_by_their_schema(http: httpx.Client) -> None:
    schema = {"type": "object", "properties": {
        "spec": {"type": "object", "properties": {
            "size": {"type": "string", "default": "m"},
            "limits": {"type": "object", "properties": {"cpu": {"type": "string"}}},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            "note": {"type": "string", "nullable": True}}},
        "status": {"type": "object", "properties": {"phase": {"type": "string"}}}}}
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": "shapes.schema.example.com"},
           "spec": {"group": "schema.example.com", "scope": "Cluster",
                    "names": {"plural": "shapes", "kind": "Shape"},
                    "versions": [{"name": "v1", "served": True, "storage": True,
                                  "subresources": {"status": {}},
                                  "schema": {"openAPIV3Schema": schema}}]}}
    http.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=crd)
    path = "/apis/schema.example.com/v1/shapes"
    body = {"apiVersion": "schema.example.com/v1", "kind": "Shape", "metadata": {"name": "s"},
            "spec": {"unknown": 1, "limits": {"cpu": "1", "gpu": "2"},
                     "free": {"any": {"thing": True}}, "note": None}}
    spec = created(http, path, body)["spec"]
    assert spec == {"size": "m", "limits": {"cpu": "1"}, "free": {"any": {"thing": True}},
                    "note": None}
    status = http.patch(f"{path}/s/status", headers=MERGE,
                        json={"status": {"phase": "Up", "undeclared": "x"}}).json()["status"]
    assert status == {"phase": "Up"}


def test_custom_resources_are_validated_by_their_schema(http: httpx.Client) -> None:
    schema = {"type": "object", "required": ["spec"], "properties": {
        "spec": {"type": "object", "required": ["size"], "properties": {
            "size": {"type": "string", "enum": ["s", "m"]},
            "replicas": {"type": "integer", "minimum": 0, "maximum": 10},
            "port": {"x-kubernetes-int-or-string": True},
            "tags": {"type": "array", "maxItems": 2, "items": {"type": "string",
                                                               "pattern": "^[a-z]+$"}},
            "labels": {"type": "object", "maxProperties": 1,
                       "additionalProperties": {"type": "string"}}}}}}
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": "valids.schema.example.com"},
           "spec": {"group": "schema.example.com", "scope": "Cluster",
                    "names": {"plural": "valids", "kind": "Valid"},
                    "versions": [{"name": "v1", "served": True, "storage": True,
                                  "schema": {"openAPIV3Schema": schema}}]}}
    http.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=crd)
    path = "/apis/schema.example.com/v1/valids"

    def post(name: str, spec: Any) -> httpx.Response:
        return http.post(path, json={"apiVersion": "schema.example.com/v1", "kind": "Valid",
                                     "metadata": {"name": name}, "spec": spec})

    ok = post("ok", {"size": "s", "replicas": 3, "port": "http", "tags": ["a"]})
    assert ok.status_code == 201, ok.text
    for name, spec, fragment in [
        ("type", {"size": "s", "replicas": "3"}, "spec.replicas: Invalid value"),
        ("enum", {"size": "xl"}, "spec.size: Unsupported value"),
        ("required", {"replicas": 1}, "spec.size: Required value"),
        ("bounds", {"size": "s", "replicas": 11}, "less than or equal to 10"),
        ("items", {"size": "s", "tags": ["a", "B"]}, "spec.tags[1]: Invalid value"),
        ("properties", {"size": "s", "labels": {"a": "1", "b": "2"}},
         "spec.labels: Too many: must have at most 1 items"),
        ("quantity", {"size": "s", "port": 1.5}, "spec.port: Invalid value"),
    ]:
        resp = post(name, spec)
        assert resp.status_code == 422, (name, resp.text)
        assert fragment in resp.json()["message"], (name, resp.json()["message"])
    assert http.post(path, json={"apiVersion": "schema.example.com/v1", "kind": "Valid",
                                 "metadata": {"name": "nospec"}}).status_code == 422


def test_deeply_nested_objects_are_stored_and_served(http: httpx.Client, kube_namespace: str,
                                                     widgets_crd: Any) -> None:
    # The real API server accepts JSON nested thousands of levels deep; orjson stops at
    # 254, so the emulator must not (a 300-level affinity once reached the operator).
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(300):
        node["x"] = {}
        node = node["x"]
    created(http, wd_path(kube_namespace), widget("deep", kube_namespace, free=deep))
    stored = http.get(wd_path(kube_namespace, "deep")).json()
    depth, node = 0, stored["spec"]["free"]
    while node:
        depth, node = depth + 1, node["x"]
    assert depth == 300


def test_invalid_answers_name_each_cause(http: httpx.Client, kube_namespace: str) -> None:
    bad = configmap("x")
    bad["metadata"]["labels"] = {"bad key!": "v", "ok": "not ok!"}
    resp = http.post(cm_path(kube_namespace), json=bad)
    assert resp.status_code == 422
    causes = resp.json()["details"]["causes"]
    assert [c["field"] for c in causes] == ["metadata.labels", "metadata.labels"]
    assert all(c["reason"] == "FieldValueInvalid" and c["message"] for c in causes)
