"""Applying rendered children: create what is missing, patch what differs, touch nothing else.

Like ``kubectl apply``: each child records in an annotation which fields we set last
time, so a field we stop setting (a removed nodeSelector entry) is removed by the next
patch, even after an operator restart, while fields others set (defaults, the HPA's
``spec.replicas``) are left alone. Only the field paths are recorded, not their values:
removal needs nothing more, and a copy of every value doubled each child's size (and the
bytes the operator and the API server encode, store and send). A child whose fields
already have the desired values is not written at all, so reconciling twice changes no
resourceVersion; an event carrying the very resourceVersion our own write returned is
known to match without comparing anything.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import orjson

from modelplane_operator.cache import Cache, ChildKey, Key, child_key, owner_of
from modelplane_operator.diff import deep_merge, is_subset, removals
from modelplane_operator.kube import ApiError, KubeClient
from modelplane_operator.retry import Backoff

log = logging.getLogger(__name__)

LAST_APPLIED = "modelplane.io/last-applied"
"""Annotation holding the paths of the managed fields as last applied (see ``field_paths``).

Older operators stored the values themselves; ``last_applied`` reads both forms alike,
since only the keys matter."""

KEEP_PATHS = frozenset({"spec.replicas"})
"""Never nulled when we stop setting them: once an HPA owns ``spec.replicas``, removing it
would make the API server default it to 1 and scale the model down until the HPA reacts."""

Outcome = Literal["created", "patched", "unchanged"]

CLEANUP_BACKOFF = Backoff(first_s=0.5, max_s=30.0)
"""Between attempts to delete a deleted owner's child."""
DELETED_OWNERS_KEPT = 4096
"""Deleted owners remembered, for their children that turn up after the cleanup ran."""
MAX_REJECTION_CHARS = 1000
"""The ChildRejected message quotes the API server; its answer is cut to this length."""

_IDENTITY = frozenset({"apiVersion", "kind"})
_META_IDENTITY = frozenset({"name", "namespace"})


def managed_fields(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """What we own in a manifest: everything but its identity."""
    fields = {k: v for k, v in manifest.items() if k not in _IDENTITY and k != "metadata"}
    meta = {k: v for k, v in manifest.get("metadata", {}).items() if k not in _META_IDENTITY}
    if meta:
        fields["metadata"] = meta
    return fields


def field_paths(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The shape of ``fields``: every key we set, mappings nested, any other value as 0.

    A list or scalar is owned whole (a merge patch replaces it whole), so its path is a
    leaf; an empty mapping is a leaf too, having nothing beneath to remove.
    """
    return {key: field_paths(value) if isinstance(value, Mapping) and value else 0
            for key, value in fields.items()}


def encode_paths(fields: Mapping[str, Any]) -> str:
    """The annotation's value for these managed fields: their paths as sorted, compact JSON."""
    return orjson.dumps(field_paths(fields), option=orjson.OPT_SORT_KEYS).decode()


def with_last_applied(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest plus the annotation recording its managed field paths (idempotent)."""
    if LAST_APPLIED in (manifest.get("metadata", {}).get("annotations") or {}):
        return dict(manifest)
    record = encode_paths(managed_fields(manifest))
    out = dict(manifest)
    meta = dict(out.get("metadata", {}))
    meta["annotations"] = {**(meta.get("annotations") or {}), LAST_APPLIED: record}
    out["metadata"] = meta
    return out


def last_applied(live: Mapping[str, Any]) -> dict[str, Any]:
    """The managed field paths recorded on a live object (empty if none or unreadable)."""
    raw = (live.get("metadata", {}).get("annotations") or {}).get(LAST_APPLIED)
    if not raw:
        return {}
    try:
        value = orjson.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def apply_patch(desired: Mapping[str, Any], live: Mapping[str, Any]) -> dict[str, Any] | None:
    """The merge patch bringing ``live`` to ``desired`` (with annotation); None if it is there."""
    fields = managed_fields(with_last_applied(desired))
    if is_subset(fields, live):
        return None
    return deep_merge(removals(last_applied(live), managed_fields(desired), KEEP_PATHS), fields)


def _describe(manifest: Mapping[str, Any]) -> str:
    return f"{manifest['kind']} {manifest['metadata']['name']}"


def rejection_message(refused: Sequence[tuple[Mapping[str, Any], ApiError]],
                      applied: Sequence[Mapping[str, Any]]) -> str:
    """What the ChildRejected condition says: each refused child and the server's answer,
    then the children that were applied (so that none is left unexplained)."""
    parts = [f"the API server refused {_describe(m)}: {exc.status} {exc.reason}: "
             f"{exc.message[:MAX_REJECTION_CHARS]}" for m, exc in refused]
    if applied:
        parts.append("applied: " + ", ".join(_describe(m) for m in applied))
    return "; ".join(parts)


class Applier:
    """Writes children through the API, keeping the cache in step with its own writes."""

    def __init__(self, client: KubeClient, cache: Cache) -> None:
        self._client = client
        self._cache = cache
        # Per child: the resourceVersion our last write returned and the manifest written.
        self._written: dict[ChildKey, tuple[str, Mapping[str, Any]]] = {}
        self._deleted_owners: OrderedDict[str, Key] = OrderedDict()

    def matches_own_write(self, desired: Mapping[str, Any], live: Mapping[str, Any]) -> bool:
        """Whether ``live`` is exactly what our last write of this same ``desired`` returned.

        Then it matches without a field-by-field comparison: any later change (a hand edit,
        a controller's update) carries a new resourceVersion. ``desired`` is compared by
        identity: the controller keeps one rendered manifest per generation.
        """
        written = self._written.get(child_key(desired))
        version = live.get("metadata", {}).get("resourceVersion")
        return (written is not None and written[1] is desired and version is not None
                and written[0] == version)

    def forget(self, key: ChildKey) -> None:
        """Drop what we remember of a deleted child."""
        self._written.pop(key, None)

    def _wrote(self, desired: Mapping[str, Any], result: Mapping[str, Any]) -> None:
        version = result.get("metadata", {}).get("resourceVersion")
        if version is not None:
            self._written[child_key(desired)] = (str(version), desired)

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
                self._wrote(desired, created)
                return "created"
        if self.matches_own_write(desired, live):
            return "unchanged"
        patch = apply_patch(desired, live)
        if patch is None:
            return "unchanged"
        log.info("patching %s %s/%s: %s", kind, namespace, name, sorted(patch))
        try:
            patched = await self._client.merge_patch(api_version, kind, namespace, name, patch)
        except ApiError as exc:
            if exc.status != 404:
                raise
            # Deleted since the cache saw it (its DELETED event is on the way): create it.
            self._cache.drop_child((kind, namespace, name))
            self.forget((kind, namespace, name))
            return await self.apply(desired)
        self._cache.put_child(patched)
        self._wrote(desired, patched)
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
            self.forget(ck)
        return deleted

    def owner_deleted(self, key: Key, uid: str) -> None:
        """Remember a deleted owner (see ``delete_late_child``); the oldest are forgotten."""
        self._deleted_owners[uid] = key
        while len(self._deleted_owners) > DELETED_OWNERS_KEPT:
            self._deleted_owners.popitem(last=False)

    def deleted_owner_of(self, child: Mapping[str, Any]) -> tuple[Key, str] | None:
        """The deleted owner a child still names, if we saw that owner go."""
        owner = owner_of(child)
        if owner is None or self._deleted_owners.get(owner[1]) != owner[0]:
            return None
        return owner

    async def delete_late_child(self, child: Mapping[str, Any], owner: tuple[Key, str]) -> bool:
        """Delete a child of a deleted owner (``deleted_owner_of``) that was not there when
        the owner went.

        A write in flight when the owner was deleted (a create retried under errors), or a
        child the cache learnt of only after a cut watch stream was listed again, turns up
        after ``delete_owned`` ran. The garbage collector would remove it on a real
        cluster; this makes that prompt, and done where no collector runs.
        """
        return await self._delete_child(child, *owner)

    async def delete_owned(self, key: Key, uid: str) -> list[str]:
        """Delete the children that still name a deleted owner; returns their kinds.

        On a real cluster the garbage collector does this through the ownerReferences;
        doing it too makes deletion prompt and works where no collector runs. Each child is
        deleted in its own retry loop until it is gone (see ``_delete_child``).
        """
        children = self._cache.owned_children(key, uid)
        results = await asyncio.gather(*(self._delete_child(c, key, uid) for c in children))
        return [str(child["kind"]) for child, done in zip(children, results, strict=True)
                if done]

    async def _delete_child(self, child: Mapping[str, Any], key: Key, uid: str) -> bool:
        """Delete one child of a deleted owner, retrying until it is gone; True if we did.

        The child is re-read and deleted with uid and resourceVersion preconditions, so one
        that was orphaned meanwhile (``kubectl delete --cascade=orphan`` strips its
        ownerReference before the owner goes) is never deleted; a 409 means it changed
        since the read: read it again and decide again.
        """
        kind, namespace, name = child_key(child)
        api_version = str(child["apiVersion"])
        self.forget((kind, namespace, name))
        attempt = 0
        while True:
            try:
                live = await self._client.get(api_version, kind, namespace, name)
                if owner_of(live) != (key, uid):
                    log.info("%s %s/%s no longer belongs to the deleted %s/%s; kept",
                             kind, namespace, name, *key)
                    return False
                meta = live["metadata"]
                await self._client.delete(api_version, kind, namespace, name, preconditions={
                    "uid": meta.get("uid"), "resourceVersion": meta.get("resourceVersion")})
                return True
            except ApiError as exc:
                if exc.status == 404:
                    return False  # gone already (the garbage collector, or a person)
                if exc.status == 409 and attempt == 0:
                    log.info("%s %s/%s changed while being deleted; reading it again",
                             kind, namespace, name)
                    attempt += 1
                    continue
                if exc.status == 403 and not exc.repeatable:
                    log.info("not deleting %s %s/%s: %s", kind, namespace, name, exc)
                    return False  # the namespace is going, and everything in it
                delay = CLEANUP_BACKOFF.delay(attempt, exc.retry_after)
                attempt += 1
                log.warning("could not delete %s %s/%s (%s); again in %.1fs",
                            kind, namespace, name, exc, delay)
                await asyncio.sleep(delay)
