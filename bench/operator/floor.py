"""The framework's floor: a bare kopf operator with one async handler and one child.

    KUBECONFIG=... python -m bench.operator.floor

For every ModelDeployment it creates one Deployment (owned by it, POSTed with aiohttp like
ours) and writes ``status.observedGeneration``, so the benchmark's convergence test is the
same as for the real operator minus two children. kopf settings match the operator's
(``handlers.configure``): status-stored diff base and progress, standalone, no Events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import Any

import aiohttp
import kopf
import orjson
import yaml


def _server() -> tuple[str, dict[str, str]]:
    """The API server URL and auth header of the kubeconfig's current context."""
    config = yaml.safe_load(Path(os.environ["KUBECONFIG"]).read_text())
    context = next(c["context"] for c in config["contexts"]
                   if c["name"] == config["current-context"])
    cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
    user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
    return cluster["server"].rstrip("/"), {"Authorization": f"Bearer {user['token']}",
                                            "Content-Type": "application/json"}


def _child(body: kopf.Body) -> dict[str, Any]:
    name, labels = body["metadata"]["name"], {"app": body["metadata"]["name"]}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": labels, "ownerReferences": [{
            "apiVersion": body["apiVersion"], "kind": body["kind"], "name": name,
            "uid": body["metadata"]["uid"], "controller": True,
            "blockOwnerDeletion": True}]},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            "spec": {"containers": [{"name": "server", "image": "busybox"}]}}},
    }


async def run() -> None:
    """Run the floor operator until interrupted."""
    server, headers = _server()
    session = aiohttp.ClientSession(headers=headers)
    registry = kopf.OperatorRegistry()

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.diffbase_storage = kopf.StatusDiffBaseStorage()
        settings.persistence.progress_storage = kopf.StatusProgressStorage()
        settings.peering.standalone = True

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=server, token=headers["Authorization"][7:])

    @kopf.on.create("modelplane.io", "v1alpha1", "modeldeployments", registry=registry)
    async def create(body: kopf.Body, patch: kopf.Patch, namespace: str | None,
                     **_: Any) -> None:
        url = f"{server}/apis/apps/v1/namespaces/{namespace}/deployments"
        async with session.post(url, data=orjson.dumps(_child(body))) as resp:
            if resp.status not in (201, 409):
                raise kopf.TemporaryError(f"HTTP {resp.status}: {await resp.text()}", delay=1)
        patch.status["observedGeneration"] = body["metadata"].get("generation")

    try:
        await kopf.operator(registry=registry, standalone=True, clusterwide=True)
    finally:
        await session.close()


def main() -> int:
    """Log like the operator (kopf at WARNING) and run."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kopf").setLevel(logging.WARNING)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
