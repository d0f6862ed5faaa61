"""The operator's cache: newest resourceVersion wins, children indexed by owner, pods by label."""

from __future__ import annotations

from typing import Any

from modelplane_operator.cache import Cache, owner_of


def child(name: str, rv: str, owner: str = "m", uid: str = "u1",
          kind: str = "Deployment") -> dict[str, Any]:
    return {"kind": kind, "apiVersion": "apps/v1", "metadata": {
        "name": name, "namespace": "ns", "resourceVersion": rv,
        "ownerReferences": [{"kind": "ModelDeployment", "name": owner, "uid": uid,
                             "controller": True}]}}


def test_an_older_event_never_replaces_a_newer_write() -> None:
    cache = Cache()
    assert cache.put_child(child("m", "20"))
    assert not cache.put_child(child("m", "19"))
    assert cache.children[("Deployment", "ns", "m")]["metadata"]["resourceVersion"] == "20"
    assert cache.put_child(child("m", "21"))


def test_children_are_indexed_by_owner_and_uid() -> None:
    cache = Cache()
    cache.put_child(child("m", "1"))
    cache.put_child(child("m", "1", kind="Service"))
    cache.put_child(child("other", "2", owner="other"))
    cache.put_child(child("m-old", "3", uid="u0"))  # an earlier object of the same name
    names = [(c["kind"], c["metadata"]["name"]) for c in cache.owned_children(("ns", "m"), "u1")]
    assert names == [("Deployment", "m"), ("Service", "m")]
    cache.drop_child(("Service", "ns", "m"))
    assert len(cache.owned_children(("ns", "m"), "u1")) == 1
    # Adoption: the same child now owned by another uid moves in the index.
    cache.put_child(child("m", "9", uid="u2"))
    assert cache.owned_children(("ns", "m"), "u1") == []
    assert owner_of(cache.owned_children(("ns", "m"), "u2")[0]) == (("ns", "m"), "u2")


def test_pods_belong_to_their_model_deployment_by_label() -> None:
    cache = Cache()
    pod = {"metadata": {"name": "p", "namespace": "ns", "resourceVersion": "5",
                        "labels": {"modelplane.io/deployment": "m"}}}
    assert cache.put_pod(pod) == ("ns", "m")
    assert cache.put_pod({"metadata": {"name": "stray", "namespace": "ns"}}) is None
    assert list(cache.pods[("ns", "m")]) == ["p"]
    assert cache.drop_pod(pod) == ("ns", "m")
    assert ("ns", "m") not in cache.pods
