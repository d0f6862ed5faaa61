"""The ModelDeployment that owns the children: identity, ownerReference, child metadata."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelplane_operator.spec import API_VERSION, KIND, InvalidSpec, validate_name


@dataclass(frozen=True)
class Owner:
    """Name, namespace and uid of a ModelDeployment."""

    name: str
    namespace: str
    uid: str

    @classmethod
    def from_object(cls, md: dict[str, Any]) -> Owner:
        """Read the owner from a ModelDeployment object; the name must fit every child."""
        meta = md.get("metadata") or {}
        name = meta.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidSpec("metadata.name", "required")
        validate_name(name)
        uid = meta.get("uid")
        if not isinstance(uid, str) or not uid:
            # The API server always sets it; ownerReferences without a uid are rejected.
            raise InvalidSpec("metadata.uid", "required (set by the API server)")
        return cls(name=name, namespace=str(meta.get("namespace") or "default"), uid=uid)

    def reference(self) -> dict[str, Any]:
        """ownerReference making the ModelDeployment the controller of a child.

        blockOwnerDeletion keeps a foreground delete of the ModelDeployment waiting until
        the garbage collector has removed the child.
        """
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }

    def metadata(
        self, name: str, labels: dict[str, str], annotations: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """metadata of a child in the owner's namespace."""
        meta: dict[str, Any] = {
            "name": name,
            "namespace": self.namespace,
            "labels": dict(labels),
        }
        if annotations:
            meta["annotations"] = dict(annotations)
        meta["ownerReferences"] = [self.reference()]
        return meta
