"""Applying rendered children: create what is missing, patch what differs, touch nothing else.

Like ``kubectl apply``: each child carries the fields we set last time in an annotation,
so a field we stop setting (a removed nodeSelector entry) is removed by the next patch,
while fields others set (defaults, the HPA's ``spec.replicas``) are left alone. A child
whose fields already have the desired values is not written at all, so reconciling twice
changes no resourceVersion.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any, Literal

from modelplane_operator.cache import Cache, ChildKey, Key, child_key, owner_of
from modelplane_operator.diff import deep_merge, is_subset, removals
from modelplane_operator.kube import ApiError, KubeClient, resource_path

log = logging.getLogger(__name__)

LAST_APPLIED = "modelplane.io/last-applied"
"""Annotation holding the managed fields as last applied (compact JSON)."""

KEEP_PATHS = frozenset({"spec.replicas"})
"""Never nulled when we stop setting them: once an HPA owns ``spec.replicas``, removing it
would make the API server default it to 1 and scale the model down until the HPA reacts."""

Outcome = Literal["created", "patched", "unchanged"]

_IDENTITY = frozenset({"apiVersion", "kind"})
_META_IDENTITY = frozenset({"name", "namespace"})


def managed_fields(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """What we own in a manifest: everything but its identity."""
    fields = {k: v for k, v in manifest.items() if k not in _IDENTITY and k != "metadata"}
    meta = {k: v for k, v in manifest.get("metadata", {}).items() if k not in _META_IDENTITY}
    if meta:
        fields["metadata"] = meta
    return fields


def with_last_applied(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest plus the annotation recording its managed fields (idempotent)."""
    if LAST_APPLIED in (manifest.get("metadata", {}).get("annotations") or {}):
        return dict(manifest)
    record = json.dumps(managed_fields(manifest), sort_keys=True, separators=(",", ":"))
    out = dict(manifest)
    meta = dict(out.get("metadata", {}))
    meta["annotations"] = {**(meta.get("annotations") or {}), LAST_APPLIED: record}
    out["metadata"] = meta
    return out


def last_applied(live: Mapping[str, Any]) -> dict[str, Any]:
    """The managed fields recorded on a live object (empty if none or unreadable)."""
    raw = (live.get("metadata", {}).get("annotations") or {}).get(LAST_APPLIED)
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def apply_patch(desired: Mapping[str, Any], live: Mapping[str, Any]) -> dict[str, Any] | None:
    """The merge patch bringing ``live`` to ``desired`` (with annotation); None if it is there."""
    wanted = with_last_applied(desired)
    if is_subset(managed_fields(wanted), live):
        return None
    fields = managed_fields(wanted)
    return deep_merge(removals(last_applied(live), managed_fields(desired), KEEP_PATHS), fields)


class Applier:
    """Writes children through the API, keeping the cache in step with its own writes."""

    def __init__(self, client: KubeClient, cache: Cache) -> None:
        self._client = client
        self._cache = cache

    async def apply(self, desired: Mapping[str, Any]) -> Outcome:
        """Make one child match ``desired``."""
        kind, namespace, name = child_key(desired)
        api_version = str(desired["apiVersion"])
        live = self._cache.children.get((kind, namespace, name))
        if live is None:
            try:
                created = await self._client.create(with_last_applied(desired))
            except ApiError as exc:
                if exc.status != 409:
                    raise
                # It exists and our watch has not told us yet (e.g. just after a restart).
                try:
                    live = await self._client.get(api_version, kind, namespace, name)
                except ApiError as gone:
                    if gone.status != 404:
                        raise
                    # Deleted in between: a conflict like any other, worth a quick retry.
                    raise ApiError(409, "Conflict", f"{kind} {name} vanished after a 409") from None
                self._cache.put_child(live)
            else:
                self._cache.put_child(created)
                return "created"
        patch = apply_patch(desired, live)
        if patch is None:
            return "unchanged"
        log.info("patching %s %s/%s: %s", kind, namespace, name, sorted(patch))
        patched = await self._client.merge_patch(api_version, kind, namespace, name, patch)
        self._cache.put_child(patched)
        return "patched"

    async def prune(self, key: Key, uid: str, wanted: set[ChildKey]) -> list[str]:
        """Delete this owner's children that are not in ``wanted``; returns their kinds."""
        deleted = []
        for child in self._cache.owned_children(key, uid):
            ck = child_key(child)
            if ck in wanted:
                continue
            try:
                await self._client.delete(str(child["apiVersion"]), *ck)
                deleted.append(ck[0])
            except ApiError as exc:
                if exc.status != 404:
                    raise
            self._cache.drop_child(ck)
        return deleted

    async def delete_owned(self, key: Key, uid: str) -> list[str]:
        """Delete the children that still name a deleted owner; returns their kinds.

        On a real cluster the garbage collector does this through the ownerReferences;
        doing it too makes deletion prompt and works where no collector runs. A child is
        re-read and deleted with uid and resourceVersion preconditions, so one that was
        orphaned meanwhile (``kubectl delete --cascade=orphan`` strips its ownerReference
        before the owner goes) is never deleted.
        """
        deleted = []
        for child in self._cache.owned_children(key, uid):
            kind, namespace, name = child_key(child)
            try:
                live = await self._client.get(str(child["apiVersion"]), kind, namespace, name)
                if owner_of(live) != (key, uid):
                    continue
                meta = live["metadata"]
                path = resource_path(str(child["apiVersion"]), kind, namespace, name)
                await self._client.request("DELETE", path, body={
                    "propagationPolicy": "Background",
                    "preconditions": {"uid": meta.get("uid"),
                                      "resourceVersion": meta.get("resourceVersion")}})
                deleted.append(kind)
            except ApiError as exc:
                if exc.status not in (404, 409):
                    log.warning("could not delete %s %s/%s: %s", kind, namespace, name, exc)
        return deleted
