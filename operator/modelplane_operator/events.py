"""Kubernetes Events about ModelDeployments, for ``kubectl describe`` and ``kubectl get events``.

kopf 1.45 posts none by default, so the operator posts the ones users act on: an invalid
spec, a child the API server refused, condition transitions, and children restored after
someone changed or deleted them.
Posting never blocks or fails a reconcile: an Event that cannot be posted is logged.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from modelplane_operator.kube import KubeClient, resource_path
from modelplane_operator.status import CHILD_REJECTED, INVALID_SPEC, condition_of, timestamp

log = logging.getLogger(__name__)

COMPONENT = "modelplane-operator"
ANNOUNCED_REASONS = frozenset({INVALID_SPEC, CHILD_REJECTED})
"""Ready reasons that get a Warning Event whenever their message changes."""
EventType = Literal["Normal", "Warning"]


def event_body(
    obj: Mapping[str, Any], kind: EventType, reason: str, message: str, now: datetime
) -> dict[str, Any]:
    """A core/v1 Event about ``obj`` (the fields ``kubectl describe`` shows)."""
    meta = obj.get("metadata", {})
    namespace = meta.get("namespace") or "default"
    stamp = timestamp(now)
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta.get('name', 'unknown')}.", "namespace": namespace},
        "involvedObject": {
            "apiVersion": obj.get("apiVersion"),
            "kind": obj.get("kind"),
            "name": meta.get("name"),
            "namespace": namespace,
            "uid": meta.get("uid"),
        },
        "type": kind,
        "reason": reason,
        "message": message[:1024],  # the API server caps messages at 1 KiB
        "source": {"component": COMPONENT},
        "reportingComponent": f"modelplane.io/{COMPONENT}",
        "reportingInstance": os.environ.get("HOSTNAME") or socket.gethostname(),
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


def transitions(
    old: Mapping[str, Any], new: Mapping[str, Any]
) -> list[tuple[EventType, str, str]]:
    """Events for conditions that changed between two statuses (none on the first status)."""
    out: list[tuple[EventType, str, str]] = []
    old_ready, new_ready = condition_of(old, "Ready"), condition_of(new, "Ready")
    if new_ready is not None and new_ready.get("reason") in ANNOUNCED_REASONS:
        # Something only a person can fix: say so once per distinct message.
        if old_ready is None or (old_ready.get("reason"), old_ready.get("message")) != (
            new_ready.get("reason"), new_ready.get("message")
        ):
            reason = str(new_ready["reason"])
            out.append(("Warning", reason, str(new_ready.get("message", ""))))
        return out
    if old_ready is not None and new_ready is not None:
        if old_ready.get("status") != "True" and new_ready.get("status") == "True":
            out.append(("Normal", "Ready", str(new_ready.get("message", ""))))
        elif old_ready.get("status") == "True" and new_ready.get("status") != "True":
            out.append(("Warning", "NotReady",
                        f"{new_ready.get('reason')}: {new_ready.get('message', '')}"))
    old_bad, new_bad = condition_of(old, "Degraded"), condition_of(new, "Degraded")
    if new_bad is not None and new_bad.get("status") == "True" and (
        old_bad is None or old_bad.get("status") != "True"
        or old_bad.get("reason") != new_bad.get("reason")
    ):
        out.append(("Warning", str(new_bad.get("reason")), str(new_bad.get("message", ""))))
    return out


class EventPoster:
    """Posts Events in the background; keeps references so tasks are not collected early."""

    def __init__(self, client: KubeClient) -> None:
        self._client = client
        self._tasks: set[asyncio.Task[None]] = set()

    def post(self, obj: Mapping[str, Any], kind: EventType, reason: str, message: str,
             now: datetime) -> None:
        """Queue one Event; returns at once."""
        body = event_body(obj, kind, reason, message, now)
        task = asyncio.create_task(self._send(body))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, body: dict[str, Any]) -> None:
        path = resource_path("v1", "Event", body["metadata"]["namespace"])
        try:
            await self._client.request("POST", path, body=body)
        except Exception as exc:  # an Event is best effort; never fail the caller
            log.warning("could not post Event %s: %s", body["reason"], exc)

    async def drain(self) -> None:
        """Wait for queued Events (at shutdown)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
