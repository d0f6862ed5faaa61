"""Manifests as YAML text: block style, keys in build order, no anchors, deterministic."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import yaml


class _Dumper(yaml.SafeDumper):
    """SafeDumper that never writes anchors/aliases (kubectl reads them, people do not)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump(obj: Any) -> str:
    """One manifest as YAML."""
    return yaml.dump(obj, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=100)


def dump_all(objs: Iterable[Any]) -> str:
    """Several manifests as one multi-document YAML stream."""
    return yaml.dump_all(
        list(objs),
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        explicit_start=True,
        width=100,
    )
