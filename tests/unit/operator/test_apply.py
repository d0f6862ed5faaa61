"""Deciding what to write: desired-vs-live comparison, three-way patches, kept paths."""

from __future__ import annotations

import copy
import json
from typing import Any, cast

from modelplane_operator.apply import (
    DELETED_OWNERS_KEPT,
    LAST_APPLIED,
    Applier,
    apply_patch,
    field_paths,
    last_applied,
    managed_fields,
    with_last_applied,
)
from modelplane_operator.builders.render import render
from modelplane_operator.cache import Cache
from modelplane_operator.diff import is_subset, merge_diff, removals
from modelplane_operator.kube import KubeClient

from tests.unit.operator.cases import DEFAULTS, md

GPU = {
    "model": {"uri": "https://models.example.com/resnet.tar.gz"},
    "replicas": 2,
    "resources": {"cpu": "2", "memory": "4Gi", "gpu": 1},
    "scheduling": {"nodeSelector": {"pool": "gpu", "zone": "a"}},
}


def children(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["kind"] + "/" + m["metadata"]["name"]: m for m in render(md(spec), DEFAULTS)}


def as_server_returns(manifest: dict[str, Any]) -> dict[str, Any]:
    """What the API server would hand back: our fields plus defaults and bookkeeping."""
    live = copy.deepcopy(with_last_applied(manifest))
    live["metadata"].update(uid="u", resourceVersion="7", generation=1,
                            creationTimestamp="2026-11-24T03:00:00Z")
    if manifest["kind"] == "Deployment":
        live["spec"].setdefault("revisionHistoryLimit", 10)
        live["spec"].setdefault("progressDeadlineSeconds", 600)
        for container in live["spec"]["template"]["spec"]["containers"]:
            container.setdefault("terminationMessagePath", "/dev/termination-log")
        live["status"] = {"replicas": 2}
    if manifest["kind"] == "Service":
        live["spec"].setdefault("clusterIP", "10.96.0.10")
    return live


def test_desired_is_a_subset_of_what_the_server_returns() -> None:
    for name, manifest in children(GPU).items():
        assert apply_patch(manifest, as_server_returns(manifest)) is None, name


def test_empty_desired_values_match_absent_live_fields() -> None:
    assert is_subset({"a": [], "b": {}, "c": False, "d": 0, "e": None}, {})
    assert not is_subset({"a": [1]}, {})
    assert is_subset({"n": 1}, {"n": 1.0})
    assert not is_subset({"flag": True}, {"flag": 1})
    assert not is_subset({"items": [{"a": 1}]}, {"items": [{"a": 1}, {"a": 2}]})


def test_hand_edit_is_patched_back_with_only_our_fields() -> None:
    deployment = children(GPU)["Deployment/" + md(GPU)["metadata"]["name"]]
    live = as_server_returns(deployment)
    live["spec"]["template"]["spec"]["containers"][0]["image"] = "evil:latest"
    patch = apply_patch(deployment, live)
    assert patch is not None
    containers = patch["spec"]["template"]["spec"]["containers"]
    assert containers == deployment["spec"]["template"]["spec"]["containers"]
    assert "status" not in patch
    assert "name" not in patch["metadata"]


def test_a_removed_field_is_nulled_but_replicas_are_left_to_the_hpa() -> None:
    before = children(GPU)
    after_spec: dict[str, Any] = copy.deepcopy(GPU)
    after_spec["scheduling"]["nodeSelector"] = {"pool": "gpu"}
    del after_spec["replicas"]
    after_spec["autoscaling"] = {"minReplicas": 2, "maxReplicas": 5}
    after = children(after_spec)
    name = "Deployment/" + md(GPU)["metadata"]["name"]
    live = as_server_returns(before[name])
    patch = apply_patch(after[name], live)
    assert patch is not None
    assert patch["spec"]["template"]["spec"]["nodeSelector"] == {"pool": "gpu", "zone": None}
    assert "replicas" not in patch["spec"]  # the HPA owns it now; nulling would reset it to 1
    recorded = json.loads(patch["metadata"]["annotations"][LAST_APPLIED])
    assert "replicas" not in recorded["spec"]


def test_last_applied_records_field_paths_not_values() -> None:
    manifest = children(GPU)["Deployment/" + md(GPU)["metadata"]["name"]]
    raw = with_last_applied(manifest)["metadata"]["annotations"][LAST_APPLIED]
    recorded = last_applied(with_last_applied(manifest))
    assert recorded == field_paths(managed_fields(manifest))
    spec = recorded["spec"]
    # Lists and scalars are leaves (owned whole); mappings nest, down to label keys with dots.
    assert spec["replicas"] == 0
    assert spec["template"]["spec"]["containers"] == 0
    assert spec["template"]["spec"]["nodeSelector"] == {"pool": 0, "zone": 0}
    assert spec["selector"]["matchLabels"]["modelplane.io/deployment"] == 0
    assert "annotations" not in recorded["metadata"]  # not a record of itself
    # Compact and sorted: the same fields in any order give the same bytes.
    assert raw == json.dumps(recorded, sort_keys=True, separators=(",", ":"))
    shuffled = json.loads(json.dumps(manifest), object_pairs_hook=lambda p: dict(p[::-1]))
    assert with_last_applied(shuffled)["metadata"]["annotations"][LAST_APPLIED] == raw
    # No values: a fraction of the child's own size (a copy of the values doubled it).
    assert len(raw) < len(json.dumps(manifest)) / 3
    assert manifest["spec"]["template"]["spec"]["containers"][0]["image"] not in raw


def test_last_applied_reads_the_older_value_form_and_ignores_garbage() -> None:
    before = children(GPU)
    name = "Deployment/" + md(GPU)["metadata"]["name"]
    after_spec: dict[str, Any] = copy.deepcopy(GPU)
    after_spec["scheduling"]["nodeSelector"] = {"pool": "gpu"}
    live = as_server_returns(before[name])
    # A child written by an older operator recorded the values themselves.
    live["metadata"]["annotations"][LAST_APPLIED] = json.dumps(managed_fields(before[name]))
    patch = apply_patch(children(after_spec)[name], live)
    assert patch is not None
    assert patch["spec"]["template"]["spec"]["nodeSelector"] == {"pool": "gpu", "zone": None}
    assert json.loads(patch["metadata"]["annotations"][LAST_APPLIED])["spec"]["template"][
        "spec"]["nodeSelector"] == {"pool": 0}
    assert last_applied({"metadata": {"annotations": {LAST_APPLIED: "{not json"}}}) == {}
    assert last_applied({"metadata": {"annotations": {LAST_APPLIED: "[1]"}}}) == {}


def test_a_field_removed_across_a_restart_is_nulled_from_the_annotation_alone() -> None:
    # Only the live object is known (no memory of earlier renders): the record suffices.
    name = "Deployment/" + md(GPU)["metadata"]["name"]
    live = as_server_returns(children(GPU)[name])
    plain: dict[str, Any] = copy.deepcopy(GPU)
    del plain["scheduling"]
    patch = apply_patch(children(plain)[name], live)
    assert patch is not None
    assert patch["spec"]["template"]["spec"]["nodeSelector"] is None
    assert apply_patch(children(plain)[name], as_server_returns(children(plain)[name])) is None


def test_merge_diff_and_removals() -> None:
    assert merge_diff({"a": 1, "b": {"c": 2, "d": 3}}, {"a": 1, "b": {"c": 4}}) == {
        "b": {"c": 4, "d": None}}
    assert removals({"spec": {"replicas": 2, "x": 1}}, {"spec": {}},
                    frozenset({"spec.replicas"})) == {"spec": {"x": None}}


def test_deleted_owners_are_known_by_uid_and_the_oldest_forgotten() -> None:
    # Only the record of deleted owners is exercised: no write reaches the client.
    applier = Applier(cast(KubeClient, object()), Cache())

    def child(name: str, uid: str) -> dict[str, Any]:
        return {"kind": "Service", "metadata": {"name": f"{name}-replicas", "namespace": "ns",
                "ownerReferences": [{"apiVersion": "modelplane.io/v1alpha1",
                                     "kind": "ModelDeployment", "name": name, "uid": uid,
                                     "controller": True}]}}

    applier.owner_deleted(("ns", "first"), "uid-0")
    assert applier.deleted_owner_of(child("first", "uid-0")) == (("ns", "first"), "uid-0")
    # The same name made again is another object: its children are not the deleted one's.
    assert applier.deleted_owner_of(child("first", "uid-again")) is None
    assert applier.deleted_owner_of({"kind": "Service", "metadata": {"name": "x"}}) is None
    for i in range(1, DELETED_OWNERS_KEPT + 1):
        applier.owner_deleted(("ns", f"md-{i}"), f"uid-{i}")
    assert applier.deleted_owner_of(child("first", "uid-0")) is None
    assert applier.deleted_owner_of(child("md-1", "uid-1")) == (("ns", "md-1"), "uid-1")
