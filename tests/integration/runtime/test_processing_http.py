"""``MODELPLANE_PROCESSING`` over real HTTP: the served signature and labelled answers.

The operator sets the variable from the ModelDeployment's processing section; here the demo
model's single sigmoid score gets a threshold and two labels.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures.models import demo_predict
from tests.fixtures.runtime_server import RuntimeServer, launch_runtime

THRESHOLD = 0.5
PROCESSING = {"outputs": {"outputs": {"threshold": THRESHOLD, "labels": ["low", "high"]}}}
ROWS = np.array(
    [[1, 2, 3, 4, 5, 6, 7, 8], [-8, -7, -6, -5, -4, -3, -2, -1], [0, 0, 0, 0, 0, 0, 0, 0]],
    dtype=np.float32,
)


@pytest.fixture(scope="module")
def processed_server(demo_model_dir: Path, runtime_log_dir: Path) -> Iterator[RuntimeServer]:
    env = {"MODELPLANE_PROCESSING": json.dumps(PROCESSING)}
    with launch_runtime(demo_model_dir, runtime_log_dir, ["--name", "demo"], env=env) as server:
        yield server


def _expected() -> tuple[np.ndarray, list[int], list[str]]:
    scores = demo_predict(ROWS).reshape(-1)
    classes = [int(score >= THRESHOLD) for score in scores]
    assert len(set(classes)) == 2, "the rows should fall on both sides of the threshold"
    return scores, classes, [["low", "high"][c] for c in classes]


def test_metadata_shows_the_processed_signature(processed_server: RuntimeServer) -> None:
    with processed_server.client() as client:
        v1 = client.get("/v1/models/demo/metadata").json()
        v2 = client.get("/v2/models/demo").json()
    outputs = v1["metadata"]["signature_def"]["signature_def"]["serving_default"]["outputs"]
    assert outputs["outputs_class"]["dtype"] == "DT_INT64"
    assert outputs["outputs_label"]["dtype"] == "DT_STRING"
    assert {o["name"]: o["datatype"] for o in v2["outputs"]} == {
        "outputs": "FP32", "outputs_class": "INT64", "outputs_label": "BYTES",
    }


def test_v1_predictions_carry_labels(processed_server: RuntimeServer) -> None:
    scores, classes, labels = _expected()
    with processed_server.client() as client:
        answer = client.post("/v1/models/demo:predict", json={"instances": ROWS.tolist()})
    assert answer.status_code == 200, answer.text
    predictions = answer.json()["predictions"]
    assert [p["outputs_label"] for p in predictions] == labels
    assert [p["outputs_class"] for p in predictions] == classes
    got = [p["outputs"] for p in predictions]
    np.testing.assert_allclose(got, scores.reshape(-1, 1), rtol=1e-6)


def test_v2_infer_carries_labels(processed_server: RuntimeServer) -> None:
    _, classes, labels = _expected()
    tensor = {"name": "inputs", "shape": [3, 8], "datatype": "FP32", "data": ROWS.ravel().tolist()}
    with processed_server.client() as client:
        answer = client.post("/v2/models/demo/infer", json={"inputs": [tensor]})
    assert answer.status_code == 200, answer.text
    outputs = {o["name"]: o for o in answer.json()["outputs"]}
    assert outputs["outputs_label"]["data"] == labels
    assert outputs["outputs_class"]["data"] == classes
