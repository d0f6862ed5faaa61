"""Strategic merge patch directives, as kubectl and the Python client send them."""

from __future__ import annotations

from typing import Any

from tests.fixtures.apiserver.patches import strategic_merge

DEPLOYMENT: dict[str, Any] = {"spec": {
    "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
    "template": {
        "metadata": {"finalizers": ["a"]},
        "spec": {
            "containers": [{"name": "c", "image": "i:1", "env": [{"name": "A", "value": "1"}]}],
            "tolerations": [{"key": "x"}]}}}}


def test_lists_merge_by_key_and_atomic_lists_are_replaced() -> None:
    patch = {"spec": {"template": {"spec": {
        "containers": [{"name": "c", "env": [{"name": "B", "value": "2"}]},
                       {"name": "d", "image": "j:1"}],
        "tolerations": [{"key": "y"}]}}}}
    spec = strategic_merge(DEPLOYMENT, patch)["spec"]["template"]["spec"]
    assert spec["containers"] == [
        {"name": "c", "image": "i:1", "env": [{"name": "A", "value": "1"},
                                             {"name": "B", "value": "2"}]},
        {"name": "d", "image": "j:1"}]
    assert spec["tolerations"] == [{"key": "y"}]


def test_directives_delete_retain_and_never_get_stored() -> None:
    patch = {"spec": {
        "strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": None},
        "template": {
            "metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]},
            "spec": {"$setElementOrder/containers": [{"name": "c"}],
                     "containers": [{"name": "c", "$patch": "delete"}]}}}}
    merged = strategic_merge(DEPLOYMENT, patch)
    assert merged["spec"]["strategy"] == {"type": "Recreate"}
    assert merged["spec"]["template"]["metadata"] == {"finalizers": []}
    assert merged["spec"]["template"]["spec"]["containers"] == []
    assert "$" not in repr(merged)
    gone = strategic_merge(DEPLOYMENT, {"spec": {"strategy": {"$patch": "delete"}}})
    assert "strategy" not in gone["spec"]
    assert DEPLOYMENT["spec"]["strategy"]["type"] == "RollingUpdate"  # input untouched
