"""The operator's in-memory view of ModelDeployments, their children and their Pods.

Filled from kopf's watch events (and from the answers to our own writes), it lets a
reconcile compare desired and live state without a GET per child. Watch streams of
different resources are not ordered with each other, and an event can describe an object
older than the answer to our own write: older resourceVersions never replace newer ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modelplane_operator.builders.labels import BALANCER_LABEL, SELECTOR_LABEL
from modelplane_operator.spec import KIND

Key = tuple[str, str]
"""(namespace, name) of a ModelDeployment."""
ChildKey = tuple[str, str, str]
"""(kind, namespace, name) of a child."""


def _version(body: Mapping[str, Any]) -> int | None:
    # resourceVersions are opaque strings by contract, but every API server in use (etcd's
    # revision) makes them increasing integers; when they are not, the newest event wins.
    raw = body.get("metadata", {}).get("resourceVersion")
    return int(raw) if isinstance(raw, str) and raw.isdigit() else None


def newer(candidate: Mapping[str, Any], current: Mapping[str, Any] | None) -> bool:
    """Whether ``candidate`` is at least as new as ``current``."""
    if current is None:
        return True
    new, old = _version(candidate), _version(current)
    return new is None or old is None or new >= old


def key_of(body: Mapping[str, Any]) -> Key:
    """(namespace, name) of any namespaced object."""
    meta = body.get("metadata", {})
    return str(meta.get("namespace") or "default"), str(meta.get("name", ""))


def child_key(body: Mapping[str, Any]) -> ChildKey:
    """(kind, namespace, name) of a child."""
    namespace, name = key_of(body)
    return str(body.get("kind", "")), namespace, name


def owner_of(body: Mapping[str, Any]) -> tuple[Key, str] | None:
    """The controlling ModelDeployment's key and uid, from ownerReferences."""
    meta = body.get("metadata", {})
    for ref in meta.get("ownerReferences") or []:
        if ref.get("kind") == KIND and ref.get("controller"):
            return (str(meta.get("namespace") or "default"), str(ref.get("name"))), str(
                ref.get("uid", "")
            )
    return None


class Cache:
    """Latest known state; every method is synchronous and cheap (one event loop)."""

    def __init__(self) -> None:
        self.mds: dict[Key, dict[str, Any]] = {}
        self.children: dict[ChildKey, dict[str, Any]] = {}
        self.pods: dict[Key, dict[str, dict[str, Any]]] = {}
        self.balancer_pods: dict[Key, dict[str, dict[str, Any]]] = {}
        # Children by controlling owner, so pruning one object does not scan all of them.
        self._owned: dict[tuple[Key, str], set[ChildKey]] = {}

    def put_md(self, body: Mapping[str, Any]) -> None:
        """Remember a ModelDeployment unless we already know a newer one."""
        key = key_of(body)
        if newer(body, self.mds.get(key)):
            self.mds[key] = dict(body)

    def drop_md(self, key: Key) -> dict[str, Any] | None:
        """Forget a deleted ModelDeployment."""
        return self.mds.pop(key, None)

    def put_child(self, body: Mapping[str, Any]) -> bool:
        """Remember a child; False when it is older than what we know."""
        key = child_key(body)
        if not newer(body, self.children.get(key)):
            return False
        self.drop_child(key)
        self.children[key] = dict(body)
        owner = owner_of(body)
        if owner is not None:
            self._owned.setdefault(owner, set()).add(key)
        return True

    def drop_child(self, key: ChildKey) -> None:
        """Forget a deleted child."""
        old = self.children.pop(key, None)
        owner = owner_of(old) if old is not None else None
        if owner is not None:
            keys = self._owned.get(owner)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._owned[owner]

    def owned_children(self, key: Key, uid: str) -> list[dict[str, Any]]:
        """Children whose controlling owner is this ModelDeployment."""
        return [self.children[k] for k in sorted(self._owned.get((key, uid), ()))]

    @staticmethod
    def pod_owner(body: Mapping[str, Any], label: str = SELECTOR_LABEL) -> Key | None:
        """The ModelDeployment a Pod belongs to: a runtime pod by the selector label, a
        balancer pod by ``BALANCER_LABEL``."""
        meta = body.get("metadata", {})
        name = (meta.get("labels") or {}).get(label)
        return (str(meta.get("namespace") or "default"), str(name)) if name else None

    def _store(self, label: str) -> dict[Key, dict[str, dict[str, Any]]]:
        return self.balancer_pods if label == BALANCER_LABEL else self.pods

    def put_pod(self, body: Mapping[str, Any], label: str = SELECTOR_LABEL) -> Key | None:
        """Remember a runtime (or, by ``label``, balancer) Pod; returns its owner's key."""
        owner = self.pod_owner(body, label)
        if owner is None:
            return None
        pods = self._store(label).setdefault(owner, {})
        name = key_of(body)[1]
        if newer(body, pods.get(name)):
            pods[name] = dict(body)
        return owner

    def drop_pod(self, body: Mapping[str, Any], label: str = SELECTOR_LABEL) -> Key | None:
        """Forget a deleted Pod; returns its ModelDeployment's key."""
        owner = self.pod_owner(body, label)
        store = self._store(label)
        if owner is not None:
            pods = store.get(owner, {})
            pods.pop(key_of(body)[1], None)
            if not pods:
                store.pop(owner, None)
        return owner
