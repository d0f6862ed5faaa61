"""The operator's LIST+WATCH streams against the emulated API server over HTTP."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
from modelplane_operator.kube import Credentials, KubeClient
from modelplane_operator.watch import Watcher

from tests.fixtures.kube import KubeApi, Kubectl
from tests.fixtures.polling import eventually_async
from tests.fixtures.ports import free_port


def config_map(name: str, namespace: str, managed: bool = True) -> dict[str, Any]:
    labels = {"app.kubernetes.io/managed-by": "modelplane-operator"} if managed else {}
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "data": {"a": "1"}}


@pytest.mark.timeout(60)
async def test_lists_watches_filters_and_reports_deletions_missed_while_away(
    kube_api: KubeApi, kubectl: Kubectl, kube_namespace: str,
) -> None:
    kubectl.apply(config_map("before", kube_namespace))
    kubectl.apply(config_map("unmanaged", kube_namespace, managed=False))
    seen: list[tuple[str, str]] = []

    def record(kind: str, obj: dict[str, Any]) -> None:
        seen.append((kind, obj["metadata"]["name"]))
    async with aiohttp.ClientSession() as session:
        client = KubeClient(Credentials(server=kube_api.url, token="t"), session)
        watcher = Watcher(client, api_version="v1", kind="ConfigMap", namespace=kube_namespace,
                          selector="app.kubernetes.io/managed-by=modelplane-operator",
                          on_event=record)
        task = asyncio.create_task(watcher.run())
        await asyncio.wait_for(watcher.listed.wait(), 10)
        assert seen == [("ADDED", "before")]  # the selector left "unmanaged" out

        await asyncio.to_thread(kubectl.apply, config_map("during", kube_namespace))
        await eventually_async(lambda: ("ADDED", "during") in seen, timeout=10)
        await asyncio.to_thread(kubectl, "delete", "configmap", "during", "-n", kube_namespace)
        await eventually_async(lambda: ("DELETED", "during") in seen, timeout=10)

        # Disconnected: a deletion happens; the next LIST reports it as DELETED.
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.to_thread(kubectl, "delete", "configmap", "before", "-n", kube_namespace)
        watcher.relist()  # what a 410 Gone leads to
        seen.clear()
        task = asyncio.create_task(watcher.run())
        await eventually_async(lambda: ("DELETED", "before") in seen, timeout=10)
        # An event through the new watch shows the stream is open before we disconnect.
        await asyncio.to_thread(kubectl.apply, config_map("after", kube_namespace))
        await eventually_async(lambda: ("ADDED", "after") in seen, timeout=10)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.mark.timeout(60)
async def test_events_larger_than_aiohttps_line_limit_are_delivered(
    kube_api: KubeApi, kubectl: Kubectl, kube_namespace: str,
) -> None:
    seen: dict[str, int] = {}

    def record(kind: str, obj: dict[str, Any]) -> None:
        seen[obj["metadata"]["name"]] = len(obj.get("data", {}).get("a", ""))
    async with aiohttp.ClientSession() as session:
        client = KubeClient(Credentials(server=kube_api.url, token="t"), session)
        watcher = Watcher(client, api_version="v1", kind="ConfigMap", namespace=kube_namespace,
                          selector="app.kubernetes.io/managed-by=modelplane-operator",
                          on_event=record)
        task = asyncio.create_task(watcher.run())
        try:
            await asyncio.wait_for(watcher.listed.wait(), 10)
            big = config_map("big", kube_namespace)
            big["data"] = {"a": "x" * 600_000}  # one 600 KB event line; aiohttp stops at 128 KiB
            # create, not apply: apply's last-applied annotation would double the body.
            await asyncio.to_thread(kubectl, "create", "-f", "-", input=json.dumps(big))
            await asyncio.to_thread(kubectl.apply, config_map("small", kube_namespace))
            await eventually_async(lambda: "small" in seen, timeout=10)
            assert seen["big"] == 600_000
            assert watcher.failing_for() == 0
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


@pytest.mark.timeout(60)
async def test_a_watch_that_cannot_connect_keeps_trying_and_says_for_how_long() -> None:
    async with aiohttp.ClientSession() as session:
        client = KubeClient(Credentials(server=f"http://127.0.0.1:{free_port()}"), session)
        watcher = Watcher(client, api_version="v1", kind="ConfigMap", namespace="x",
                          selector="a=b", on_event=lambda *_: None)
        task = asyncio.create_task(watcher.run())
        try:
            await eventually_async(lambda: watcher.failing_for() > 1.0, timeout=30,
                                   what="the watch to report that it is down")
            assert "Unreachable" in watcher.last_error
            assert not task.done()  # still trying
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
