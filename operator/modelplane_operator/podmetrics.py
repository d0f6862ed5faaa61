"""Reading the runtime Pods' CPU and memory from the resource metrics API, once per round.

``metrics.k8s.io`` is an aggregated API: metrics-server (or an adapter) serves it when
installed, and many clusters have none. So a round asks once per watched namespace (or
once for all), with the runtime pods' label selector, a short timeout and no retries (the
next round is the retry), and any failure means "no figures this round", never an error:

- 404: the API is not served (no metrics-server); the status carries no CPU or memory;
- 503: the APIService is registered but its backend does not answer;
- 403: the operator's role lacks ``list`` on ``pods.metrics.k8s.io``;
- anything else, or a timeout: logged, tried again next round.

Each change of that state is logged once, not every round. A reading is used until
``STALE_AFTER_ROUNDS`` rounds have failed after it, so one slow answer does not make the
figures blink out of the status (and back in, two writes).
"""

from __future__ import annotations

import asyncio
import logging

from modelplane_operator.builders.labels import SELECTOR_LABEL
from modelplane_operator.kube import ApiError, KubeClient, resource_path
from modelplane_operator.usage import PodUsage, pod_usage

log = logging.getLogger(__name__)

API_VERSION = "metrics.k8s.io/v1beta1"
KIND = "PodMetrics"
TIMEOUT_S = 5.0
"""Longest one round waits for the API (metrics-server answers from memory, in ms)."""
STALE_AFTER_ROUNDS = 3

Usage = dict[tuple[str, str], PodUsage]


def _state(exc: BaseException) -> tuple[str, str]:
    if isinstance(exc, ApiError):
        if exc.status == 404:
            return "absent", ("the resource metrics API (metrics.k8s.io) is not served, "
                              "so no metrics-server: status shows no CPU or memory")
        if exc.status == 503:
            return "unavailable", ("the resource metrics API (metrics.k8s.io) does not "
                                   f"answer ({exc.message}): no CPU or memory this round")
        if exc.status in (401, 403):
            return "forbidden", ("the operator may not list pods.metrics.k8s.io (its "
                                 "ClusterRole needs it): status shows no CPU or memory")
    if isinstance(exc, TimeoutError):
        return "slow", f"the resource metrics API did not answer within {TIMEOUT_S:g}s"
    return "failing", f"reading the resource metrics API failed: {exc}"


class PodMetricsReader:
    """CPU and memory of every runtime Pod, as of the last round that could read them."""

    def __init__(self, client: KubeClient, namespaces: tuple[str, ...]) -> None:
        self._client = client
        self._namespaces: tuple[str | None, ...] = namespaces or (None,)
        self._usage: Usage | None = None
        self._failed_rounds = 0
        self.state = "unknown"
        """``available``, or why there are no figures (``absent``, ``unavailable``, ...)."""

    def usage(self) -> Usage | None:
        """The last reading, or None when there is none fresh enough to show."""
        return self._usage

    async def _read(self, namespace: str | None) -> Usage:
        path = resource_path(API_VERSION, KIND, namespace)
        answer = await asyncio.wait_for(
            self._client.request("GET", path, params={"labelSelector": SELECTOR_LABEL},
                                 retries=0), TIMEOUT_S)
        found: Usage = {}
        for item in answer.get("items") or []:
            parsed = pod_usage(item) if isinstance(item, dict) else None
            if parsed is not None:
                found[parsed[0]] = parsed[1]
        return found

    async def round(self) -> Usage | None:
        """Read every namespace once; returns (and keeps) what there is to show."""
        try:
            parts = await asyncio.gather(*(self._read(ns) for ns in self._namespaces))
        except (ApiError, TimeoutError) as exc:
            self._failed(exc)
        except Exception as exc:  # a broken answer must not stop the status round
            self._failed(exc)
        else:
            self._usage = {key: value for part in parts for key, value in part.items()}
            self._failed_rounds = 0
            if self.state != "available":
                log.info("reading CPU and memory from the resource metrics API")
            self.state = "available"
        return self._usage

    def _failed(self, exc: BaseException) -> None:
        state, message = _state(exc)
        if state != self.state:
            level = logging.INFO if state == "absent" else logging.WARNING
            log.log(level, "%s", message)
        self.state = state
        self._failed_rounds += 1
        if state == "absent" or self._failed_rounds >= STALE_AFTER_ROUNDS:
            self._usage = None
