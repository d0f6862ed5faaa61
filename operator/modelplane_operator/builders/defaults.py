"""Operator-wide choices the spec leaves open, passed into rendering by the caller."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_RUNTIME_IMAGE = "ghcr.io/modelplane/runtime:0.1.0"
"""The runtime image when neither the spec, the operator's settings nor ``render`` name one."""


@dataclass(frozen=True)
class RenderDefaults:
    """What the operator's settings contribute to every rendered child."""

    runtime_image: str
    """Runtime image used when ``spec.runtime.image`` is unset."""
    runtime_gpu_image: str | None = None
    """Image used instead when GPUs are requested and no image is set (CUDA base)."""
    cluster_domain: str = "cluster.local"
    """DNS suffix of Service URLs."""
    run_as_user: int = 65532
    """Non-root uid (and gid, fsGroup) of runtime pods: the USER of runtime/Dockerfile."""
