"""The chart's operator Deployment, run for real: its command and environment, verbatim,
start the operator against the emulated API server; the probes' endpoint answers, and the
chart's settings (watched namespace, default runtime image) take effect.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.kube import KubeApi, Kubectl
from tests.fixtures.polling import eventually
from tests.fixtures.ports import free_port
from tests.fixtures.processes import stop_process
from tests.integration.ship.tools import CHART, SAMPLES, Doc, helm_template

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def chart_operator(
    kube_api: KubeApi, modelplane_crd: list[dict[str, Any]], kube_namespace: str,
    tmp_path: Path,
) -> Iterator[tuple[Doc, int]]:
    """The operator started exactly as the chart's Deployment says (watching one namespace)."""
    port = free_port()
    docs = helm_template(
        CHART / "ci" / "default-values.yaml",
        "--set", f"httpPort={port}", "--set", f"watchNamespaces={{{kube_namespace}}}",
    )
    (deployment,) = (d for d in docs if d["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    # The image's ENTRYPOINT is `modelplane`; the Deployment gives its arguments.
    argv = [sys.executable, "-m", "modelplane_runtime.cli", *container["args"]]
    log_path = tmp_path / "operator.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=kube_api.env(**env, PYTHONUNBUFFERED="1"),
        )
    try:
        yield container, port
    finally:
        code = stop_process(process, logs=lambda: log_path.read_text()[-4000:],
                            what="the chart's operator")
        assert code == 0, f"operator exited {code}:\n{log_path.read_text()[-4000:]}"


def _get(port: int, path: str) -> httpx.Response | None:
    try:
        return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=2)
    except httpx.HTTPError:
        return None


def test_chart_deployment_runs_and_its_probes_answer(
    chart_operator: tuple[Doc, int], kubectl: Kubectl, kube_namespace: str
) -> None:
    container, port = chart_operator
    for probe in ("livenessProbe", "readinessProbe"):
        http_get = container[probe]["httpGet"]
        named = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert named[http_get["port"]] == port
        eventually(
            lambda path=http_get["path"]: (r := _get(port, path)) is not None
            and r.status_code == 200,
            timeout=30, interval=0.2, what=f"{probe} {http_get['path']} to answer 200",
        )
    (sample,) = (p for p in SAMPLES if p.name == "seed-mlp.yaml")
    kubectl("apply", "-n", kube_namespace, "-f", str(sample))
    runtime_image = next(
        e["value"] for e in container["env"] if e["name"] == "MODELPLANE_OPERATOR_RUNTIME_IMAGE"
    )

    def child() -> Any:
        done = kubectl("get", "deployment", "seed-mlp", "-n", kube_namespace, "-o",
                       "jsonpath={.spec.template.spec.containers[0].image}", check=False)
        return done.stdout if done.returncode == 0 and done.stdout else None

    found = eventually(child, timeout=30, interval=0.2, what="the seed-mlp Deployment")
    assert found == runtime_image
    metrics = _get(port, "/metrics")
    assert metrics is not None
    assert metrics.status_code == 200
    assert "modelplane_" in metrics.text


def test_chart_operator_ignores_unwatched_namespaces(
    chart_operator: tuple[Doc, int], kubectl: Kubectl, kube_namespace: str
) -> None:
    """watchNamespaces limits the operator: a ModelDeployment elsewhere gets no children."""
    _, port = chart_operator
    eventually(lambda: (r := _get(port, "/healthz")) is not None and r.status_code == 200,
               timeout=30, interval=0.2, what="/healthz")
    other = f"{kube_namespace}-other"
    kubectl.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": other}})
    (sample,) = (p for p in SAMPLES if p.name == "seed-mlp.yaml")
    kubectl("apply", "-n", other, "-f", str(sample))
    kubectl("apply", "-n", kube_namespace, "-f", str(sample))
    # Once the watched copy has its child, the unwatched one has had the same chance.
    eventually(
        lambda: kubectl("get", "deployment", "seed-mlp", "-n", kube_namespace,
                        check=False).returncode == 0,
        timeout=30, interval=0.2, what="the watched namespace's Deployment",
    )
    assert kubectl("get", "deployment", "seed-mlp", "-n", other, check=False).returncode != 0
    kubectl("delete", "namespace", other, "--wait=false", check=False)
