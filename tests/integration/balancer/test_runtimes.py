"""Real runtimes behind a real balancer: three ``modelplane serve`` processes of the demo
model on 127.0.0.2-4. Shares per strategy are read from the balancer's own /metrics (the
runtime's answers do not say which replica made them); predictions are compared with the
model computed in numpy; v2 binary goes through tritonclient, an off-the-shelf client.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures.models import demo_predict
from tests.fixtures.runtime_server import RuntimeServer
from tests.integration.balancer.conftest import (
    BalancerProcess,
    address_of,
    launch_balancer,
)

ROWS = np.array([[0.1 * i + j for i in range(8)] for j in range(3)], dtype=np.float32)


def _backends(servers: list[RuntimeServer]) -> str:
    return ",".join(address_of(s) for s in servers)


@pytest.fixture(scope="module")
def default_balancer(demo_replicas: list[RuntimeServer],
                     balancer_log_dir: Path) -> Iterator[BalancerProcess]:
    """The default strategy (latency-aware) over the three runtimes."""
    with launch_balancer(balancer_log_dir, ["--model", "demo", "--backends",
                                            _backends(demo_replicas)]) as process:
        yield process


def _shares(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    delta = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    total = sum(delta.values())
    return {k: v / total for k, v in delta.items() if v}


def test_v1_predictions_equal_the_model(default_balancer: BalancerProcess) -> None:
    with default_balancer.client() as client:
        for _ in range(6):  # over several replicas
            answer = client.post("/v1/models/demo:predict", json={"instances": ROWS.tolist()})
            assert answer.status_code == 200, answer.text
            np.testing.assert_allclose(answer.json()["predictions"], demo_predict(ROWS),
                                       rtol=1e-5, atol=1e-6)
            assert answer.headers["x-request-id"]


def test_v2_json_and_metadata_pass_through(default_balancer: BalancerProcess,
                                          demo_replicas: list[RuntimeServer]) -> None:
    body = {"inputs": [{"name": "inputs", "shape": list(ROWS.shape), "datatype": "FP32",
                        "data": ROWS.ravel().tolist()}]}
    with default_balancer.client() as client, demo_replicas[0].client() as direct:
        answer = client.post("/v2/models/demo/infer", json=body)
        assert answer.status_code == 200, answer.text
        output = answer.json()["outputs"][0]
        np.testing.assert_allclose(np.array(output["data"]).reshape(output["shape"]),
                                   demo_predict(ROWS), rtol=1e-5, atol=1e-6)
        for path in ("/v2/models/demo", "/v1/models/demo", "/v2/health/ready", "/v2"):
            through, straight = client.get(path), direct.get(path)
            assert through.status_code == straight.status_code == 200, path
            assert through.content == straight.content, path
        # The runtime's own 4xx passes through unchanged.
        bad = client.post("/v1/models/demo:predict", content=b"{not json")
        assert bad.status_code == 400 and "error" in bad.json()
        assert client.get("/v1/models/absent").status_code == 404


def test_v2_binary_tensors_through_tritonclient(default_balancer: BalancerProcess) -> None:
    import tritonclient.http as triton

    client = triton.InferenceServerClient(url=default_balancer.url.split("://", 1)[1])
    try:
        tensor = triton.InferInput("inputs", list(ROWS.shape), "FP32")
        tensor.set_data_from_numpy(ROWS, binary_data=True)
        wanted = triton.InferRequestedOutput("outputs", binary_data=True)
        for _ in range(4):
            result = client.infer("demo", [tensor], outputs=[wanted])
            np.testing.assert_allclose(result.as_numpy("outputs"), demo_predict(ROWS),
                                       rtol=1e-5, atol=1e-6)
    finally:
        client.close()


@pytest.mark.parametrize(("strategy", "weights", "expected"), [
    ("round-robin", None, (1 / 3, 1 / 3, 1 / 3)),
    ("weighted", "3,1,1", (0.6, 0.2, 0.2)),
])
def test_shares_within_3_points(strategy: str, weights: str | None,
                                expected: tuple[float, float, float],
                                demo_replicas: list[RuntimeServer],
                                balancer_log_dir: Path) -> None:
    args = ["--model", "demo", "--backends", _backends(demo_replicas), "--strategy", strategy]
    if weights:
        args += ["--weights", weights]
    with launch_balancer(balancer_log_dir, args) as process, process.client() as client:
        before = process.per_replica(code="200")
        for _ in range(300):
            assert client.get("/v1/models/demo").status_code == 200
        shares = _shares(before, process.per_replica(code="200"))
    for server, share in zip(demo_replicas, expected, strict=True):
        assert abs(shares[address_of(server)] - share) <= 0.03, shares


def test_random_is_roughly_uniform(demo_replicas: list[RuntimeServer],
                                   balancer_log_dir: Path) -> None:
    args = ["--model", "demo", "--backends", _backends(demo_replicas), "--strategy", "random"]
    with launch_balancer(balancer_log_dir, args) as process, process.client() as client:
        for _ in range(900):
            assert client.get("/v2/health/ready").status_code == 200
        shares = _shares({}, process.per_replica(code="200"))
    assert len(shares) == 3
    # 900 draws: each share's standard deviation is 1.6 points; 6 sigma either side.
    assert all(0.23 <= share <= 0.43 for share in shares.values()), shares
