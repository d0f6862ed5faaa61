"""Lightweight list+watch streams for the children and the runtime Pods.

kopf handles the ModelDeployments themselves (changes, retries, diff-base). The children
only feed a cache and occasionally trigger a restore, so they do not need kopf's
per-object workers: at 500 objects those cost three quarters of the operator's time
(measured: 10 s vs 2.7 s to converge). This is the informer pattern of client-go: LIST
with a label selector, then WATCH from the list's resourceVersion with bookmarks; a 410
Gone (the watch fell out of the server's history) means list again; a LIST after a
disconnect reports objects that vanished meanwhile as deletions.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson

from modelplane_operator.kube import ApiError, KubeClient, resource_path

log = logging.getLogger(__name__)

EventFn = Callable[[str, dict[str, Any]], None]
"""Called with ``ADDED``/``MODIFIED``/``DELETED`` and the object (kind and apiVersion set)."""

WATCH_TIMEOUT_S = 300
"""Server-side watch timeout; the stream is reopened from the last resourceVersion."""
RETRY_S = (0.5, 1.0, 2.0, 5.0, 10.0)


class Gone(Exception):
    """The watch's resourceVersion is too old (HTTP 410): list again."""


class Watcher:
    """One LIST+WATCH loop for one kind in one namespace (or all namespaces)."""

    def __init__(self, client: KubeClient, *, api_version: str, kind: str,
                 namespace: str | None, selector: str, on_event: EventFn) -> None:
        self._client = client
        self._version: str | None = None
        self.api_version = api_version
        self.kind = kind
        self._namespace = namespace
        self._selector = selector
        self._on_event = on_event
        self._known: dict[tuple[str, str], dict[str, Any]] = {}
        self.listed = asyncio.Event()
        """Set once the first LIST has been delivered (the cache is primed)."""

    def relist(self) -> None:
        """Start the next round with a LIST, as after 410 Gone."""
        self._version = None

    def _stamp(self, obj: dict[str, Any]) -> dict[str, Any]:
        return {**obj, "apiVersion": self.api_version, "kind": self.kind}

    @staticmethod
    def _key(obj: dict[str, Any]) -> tuple[str, str]:
        meta = obj.get("metadata", {})
        return str(meta.get("namespace", "")), str(meta.get("name", ""))

    def _deliver(self, event_type: str, obj: dict[str, Any]) -> None:
        key = self._key(obj)
        if event_type == "DELETED":
            self._known.pop(key, None)
        else:
            self._known[key] = obj
        try:
            self._on_event(event_type, obj)
        except Exception:  # a bug in one event must not end the stream
            log.exception("handling %s %s %s/%s failed", event_type, self.kind, *key)

    async def _list(self) -> None:
        path = resource_path(self.api_version, self.kind, self._namespace)
        found = await self._client.request("GET", path, params={"labelSelector": self._selector})
        items = [self._stamp(item) for item in found.get("items") or []]
        present = {self._key(item) for item in items}
        for key, old in list(self._known.items()):
            if key not in present:  # deleted while we were not watching
                self._deliver("DELETED", old)
        for item in items:
            self._deliver("ADDED", item)
        self.listed.set()
        self._version = str(found.get("metadata", {}).get("resourceVersion", ""))

    async def _watch(self) -> None:
        path = resource_path(self.api_version, self.kind, self._namespace)
        params = {"watch": "true", "labelSelector": self._selector,
                  "resourceVersion": self._version or "",
                  "allowWatchBookmarks": "true", "timeoutSeconds": str(WATCH_TIMEOUT_S)}
        async with self._client.stream(path, params, WATCH_TIMEOUT_S + 30) as response:
            async for line in response.content:
                if not line.strip():
                    continue
                event = orjson.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise Gone(obj.get("message", ""))
                    raise ApiError(int(obj.get("code") or 500), str(obj.get("reason", "")),
                                   str(obj.get("message", "")))
                self._version = str(obj.get("metadata", {}).get("resourceVersion")
                                    or self._version)
                if kind in ("ADDED", "MODIFIED", "DELETED"):
                    self._deliver(kind, self._stamp(obj))

    async def run(self) -> None:
        """List, then watch, forever; reconnects with backoff."""
        failures = 0
        while True:
            try:
                if self._version is None:
                    await self._list()
                await self._watch()
                failures = 0
            except Gone:
                self.relist()
            except asyncio.CancelledError:
                raise
            except (ApiError, aiohttp.ClientError, TimeoutError, ValueError) as exc:
                delay = RETRY_S[min(failures, len(RETRY_S) - 1)]
                failures += 1
                log.warning("watch of %s failed (%s); again in %.1fs", self.kind, exc, delay)
                if isinstance(exc, ApiError) and exc.status == 410:
                    self.relist()
                await asyncio.sleep(delay)
