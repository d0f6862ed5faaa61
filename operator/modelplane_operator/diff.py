"""Comparing desired and live objects, and JSON merge patches (RFC 7386) between them: pure.

The API server fills in defaults (``strategy.rollingUpdate.maxSurge``, ``clusterIP``,
``terminationMessagePath`` ...) and drops empty values on output, so "unchanged" means
every field we set has the value we set, not that the objects are equal. Writing only
when that is false is what keeps a second reconcile from touching anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _is_empty(value: Any) -> bool:
    # Go's omitempty: the API server does not return these, so absent equals them.
    return value is None or value is False or value == 0 or value == "" or value in ([], {})


def is_subset(desired: Any, live: Any) -> bool:
    """Whether every field set in ``desired`` has the same value in ``live``.

    Mappings may have extra keys in ``live`` (defaults); lists must match item by item
    (a list we set is owned whole, like a merge patch replaces it whole).
    """
    if isinstance(desired, Mapping):
        if not isinstance(live, Mapping):
            return _is_empty(desired) and _is_empty(live)
        return all(
            is_subset(value, live[key]) if key in live else _is_empty(value)
            for key, value in desired.items()
        )
    if isinstance(desired, list):
        if not isinstance(live, list):
            return not desired and _is_empty(live)
        return len(desired) == len(live) and all(
            is_subset(d, v) for d, v in zip(desired, live, strict=True)
        )
    if isinstance(desired, bool) or isinstance(live, bool):
        return desired is live or (_is_empty(desired) and _is_empty(live))
    if isinstance(desired, int | float) and isinstance(live, int | float):
        return float(desired) == float(live)
    return bool(desired == live) or (_is_empty(desired) and _is_empty(live))


def merge_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON merge patch that turns ``old`` into ``new`` (keys gone from ``new`` -> null)."""
    patch: dict[str, Any] = {}
    for key, value in new.items():
        if key not in old:
            patch[key] = value
        elif isinstance(value, Mapping) and isinstance(old[key], Mapping):
            nested = merge_diff(old[key], value)
            if nested:
                patch[key] = nested
        elif old[key] != value:
            patch[key] = value
    for key in old:
        if key not in new:
            patch[key] = None
    return patch


def removals(
    previous: Mapping[str, Any], desired: Mapping[str, Any], keep: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """Nulls for keys we set last time and no longer set (kubectl apply's three-way step).

    ``keep`` names dotted paths never nulled, such as ``spec.replicas`` once an HPA owns it:
    nulling it would make the API server default it to 1 and scale the Deployment down.
    """

    def walk(prev: Mapping[str, Any], want: Mapping[str, Any], prefix: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in prev.items():
            path = f"{prefix}{key}"
            if path in keep:
                continue
            if key not in want:
                out[key] = None
            elif isinstance(value, Mapping) and isinstance(want[key], Mapping):
                nested = walk(value, want[key], path + ".")
                if nested:
                    out[key] = nested
        return out

    return walk(previous, desired, "")


def deep_merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra`` merged in (mappings recursively; anything else replaced)."""
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
