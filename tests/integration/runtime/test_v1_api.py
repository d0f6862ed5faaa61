"""TF Serving REST API (v1) over real HTTP against real server processes.

Every prediction is compared with the same model called in-process; request and response
shapes are the ones TF Serving's REST API documentation shows (api_rest.md).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures.models import call_keras_model, call_saved_model, demo_predict
from tests.fixtures.runtime_server import RuntimeServer, launch_runtime

ROWS = np.array(
    [[1, 2, 3, 4, 5, 6, 7, 8], [0.5, -1, 0, 2.25, 3, -4, 1, 0], [9, 8, 7, 6, 5, 4, 3, 2]],
    dtype=np.float32,
)


def _close(got: object, want: np.ndarray) -> None:
    np.testing.assert_allclose(np.asarray(got, dtype=want.dtype), want, rtol=1e-6, atol=1e-6)


# --- the demo model: one input, one output -------------------------------------------------


def test_status_lists_the_version_like_tf_serving(demo_server: RuntimeServer) -> None:
    with demo_server.client() as client:
        response = client.get("/v1/models/demo")
        assert response.status_code == 200
        assert response.json() == {
            "model_version_status": [
                {
                    "version": "1",
                    "state": "AVAILABLE",
                    "status": {"error_code": "OK", "error_message": ""},
                }
            ]
        }
        assert client.get("/v1/models/demo/versions/1").json() == response.json()


def test_metadata_is_get_model_metadata(demo_server: RuntimeServer) -> None:
    with demo_server.client() as client:
        metadata = client.get("/v1/models/demo/metadata").json()
    assert metadata["model_spec"] == {"name": "demo", "signature_name": "", "version": "1"}
    signature = metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert signature["inputs"]["inputs"]["dtype"] == "DT_FLOAT"
    assert [d["size"] for d in signature["inputs"]["inputs"]["tensor_shape"]["dim"]] == ["-1", "8"]
    assert signature["outputs"]["outputs"]["dtype"] == "DT_FLOAT"


def test_row_predict_matches_the_model(demo_server: RuntimeServer) -> None:
    with demo_server.client() as client:
        response = client.post("/v1/models/demo:predict", json={"instances": ROWS.tolist()})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert list(response.json()) == ["predictions"]
    _close(response.json()["predictions"], demo_predict(ROWS))


def test_columnar_predict_matches_the_model(demo_server: RuntimeServer) -> None:
    with demo_server.client() as client:
        response = client.post("/v1/models/demo/versions/1:predict", json={"inputs": ROWS.tolist()})
    assert response.status_code == 200
    _close(response.json()["outputs"], demo_predict(ROWS))


def test_signature_name_and_curl_style_body(demo_server: RuntimeServer) -> None:
    # curl -d sends form content type; TF Serving reads the body as JSON regardless.
    body = b'{"signature_name": "serving_default", "instances": [[1,2,3,4,5,6,7,8]]}'
    with demo_server.client() as client:
        response = client.post(
            "/v1/models/demo:predict",
            content=body,
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
    assert response.status_code == 200
    _close(response.json()["predictions"], demo_predict(ROWS[:1]))


def test_unknown_model_is_404_like_the_documented_example(demo_server: RuntimeServer) -> None:
    with demo_server.client() as client:
        response = client.post("/v1/models/half:predict", json={"instances": [1.0, 5.0]})
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert "half" in response.json()["error"]


def test_request_id_is_echoed_or_generated(demo_server: RuntimeServer) -> None:
    with demo_server.client() as client:
        given = client.get("/v1/models/demo", headers={"X-Request-Id": "trace-42"})
        generated = client.get("/v1/models/demo")
    assert given.headers["x-request-id"] == "trace-42"
    assert len(generated.headers["x-request-id"]) >= 16


# --- two named inputs, two outputs, two versions, labels, a second signature ---------------

A = np.array([[1, 2, 3], [-1, 0.5, 4]], dtype=np.float32)
B = np.array([[10, 20], [0.25, -3]], dtype=np.float32)


def _reference(
    two_io_model_dir: Path, version: int, signature: str = "serving_default"
) -> dict[str, np.ndarray]:
    inputs = {"a": A} if signature == "scale_only" else {"a": A, "b": B}
    return call_saved_model(two_io_model_dir / str(version), inputs, signature)


def test_named_rows_answer_objects_per_row(
    two_io_server: RuntimeServer, two_io_model_dir: Path
) -> None:
    instances = [{"a": A[i].tolist(), "b": B[i].tolist()} for i in range(2)]
    with two_io_server.client() as client:
        response = client.post("/v1/models/two_io:predict", json={"instances": instances})
    assert response.status_code == 200
    predictions = response.json()["predictions"]
    want = _reference(two_io_model_dir, 2)  # newest version by default
    assert len(predictions) == 2
    for i, row in enumerate(predictions):
        assert set(row) == {"total", "scaled"}
        _close(row["total"], want["total"][i])
        _close(row["scaled"], want["scaled"][i])


def test_named_columns_answer_an_object_of_outputs(
    two_io_server: RuntimeServer, two_io_model_dir: Path
) -> None:
    body = {"inputs": {"a": A.tolist(), "b": B.tolist()}}
    with two_io_server.client() as client:
        by_version = client.post("/v1/models/two_io/versions/1:predict", json=body)
        by_label = client.post("/v1/models/two_io/labels/canary:predict", json=body)
    want_1, want_2 = _reference(two_io_model_dir, 1), _reference(two_io_model_dir, 2)
    assert by_version.status_code == 200
    for name in ("total", "scaled"):
        _close(by_version.json()["outputs"][name], want_1[name])
        _close(by_label.json()["outputs"][name], want_2[name])


def test_second_signature_by_name(two_io_server: RuntimeServer, two_io_model_dir: Path) -> None:
    body = {"signature_name": "scale_only", "instances": A.tolist()}
    with two_io_server.client() as client:
        response = client.post("/v1/models/two_io/labels/stable:predict", json=body)
        metadata = client.get("/v1/models/two_io/versions/1/metadata").json()
    assert response.status_code == 200
    _close(response.json()["predictions"], _reference(two_io_model_dir, 1, "scale_only")["scaled"])
    signatures = metadata["metadata"]["signature_def"]["signature_def"]
    assert set(signatures) == {"serving_default", "scale_only"}
    assert set(signatures["serving_default"]["inputs"]) == {"a", "b"}


def test_status_of_versions_and_labels(two_io_server: RuntimeServer) -> None:
    with two_io_server.client() as client:
        every = client.get("/v1/models/two_io").json()["model_version_status"]
        stable = client.get("/v1/models/two_io/labels/stable").json()["model_version_status"]
        missing = client.get("/v1/models/two_io/versions/7")
        bad_label = client.get("/v1/models/two_io/labels/nope")
    assert sorted(v["version"] for v in every) == ["1", "2"]
    assert all(v["state"] == "AVAILABLE" for v in every)
    assert [v["version"] for v in stable] == ["1"]
    assert missing.status_code == 404
    assert "error" in missing.json()
    assert bad_label.status_code == 404


# --- integers, strings and b64, Keras ----------------------------------------------------


def test_integer_model(int_server: RuntimeServer, int_model_dir: Path) -> None:
    x = np.array([[1, 2, 3, 4], [-5, 0, 7, 2**40]], dtype=np.int64)
    with int_server.client() as client:
        response = client.post("/v1/models/ints:predict", json={"inputs": x.tolist()})
    assert response.status_code == 200
    want = call_saved_model(int_model_dir / "1", {"x": x})
    assert response.json()["outputs"]["doubled"] == want["doubled"].tolist()
    assert response.json()["outputs"]["total"] == want["total"].tolist()


def test_strings_and_b64(string_server: RuntimeServer, string_model_dir: Path) -> None:
    raw = [b"hello", "caf\u00e9".encode(), b"\x00\xfe binary"]
    instances: list[object] = ["hello", "caf\u00e9", {"b64": base64.b64encode(raw[2]).decode()}]
    with string_server.client() as client:
        response = client.post("/v1/models/strings:predict", json={"instances": instances})
    assert response.status_code == 200, response.text
    want = call_saved_model(string_model_dir / "1", {"text": np.array(raw, dtype=object)})
    rows = response.json()["predictions"]
    assert [row["length"] for row in rows] == want["length"].tolist()
    assert [row["upper"] for row in rows[:2]] == [u.decode() for u in want["upper"][:2]]


@pytest.fixture(scope="module")
def keras_server(keras_model_file: Path, runtime_log_dir: Path) -> Iterator[RuntimeServer]:
    with launch_runtime(keras_model_file, runtime_log_dir, ["--name", "keras"]) as server:
        yield server


def test_keras_file(keras_server: RuntimeServer, keras_model_file: Path) -> None:
    features = np.array([[1, 2, 3, 4], [0.5, -1, 0, 2]], dtype=np.float32)
    with keras_server.client() as client:
        metadata = client.get("/v1/models/keras/metadata").json()
        signature = metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]
        assert len(signature["inputs"]) == 1
        response = client.post("/v1/models/keras:predict", json={"instances": features.tolist()})
    assert response.status_code == 200, response.text
    _close(response.json()["predictions"], call_keras_model(keras_model_file, features))
