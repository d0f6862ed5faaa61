"""Open Inference Protocol (v2) against real server processes, through tritonclient's HTTP
client unchanged (JSON and binary tensors) and plain HTTP; every answer is compared with the
same model called in-process."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.fixtures.models import call_saved_model, demo_predict
from tests.fixtures.runtime_server import RuntimeServer


def _client(server: RuntimeServer) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(server.url.removeprefix("http://"))


def _input(name: str, array: np.ndarray, datatype: str, binary: bool) -> triton.InferInput:
    tensor = triton.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array, binary_data=binary)
    return tensor


def test_health_and_server_metadata(demo_server: RuntimeServer) -> None:
    client = _client(demo_server)
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("demo")
    assert client.is_model_ready("demo", "1")
    assert not client.is_model_ready("absent")
    metadata = client.get_server_metadata()
    assert metadata["name"] == "modelplane"
    assert "binary_tensor_data" in metadata["extensions"]
    assert metadata["devices"] == ["CPU:0"]  # where TensorFlow placed the model


def test_model_metadata(demo_server: RuntimeServer) -> None:
    metadata = _client(demo_server).get_model_metadata("demo")
    assert metadata["name"] == "demo"
    assert metadata["versions"] == ["1"]
    assert metadata["inputs"] == [{"name": "inputs", "datatype": "FP32", "shape": [-1, 8]}]
    assert metadata["outputs"] == [{"name": "outputs", "datatype": "FP32", "shape": [-1, 1]}]


@pytest.mark.parametrize("binary_in", [False, True])
@pytest.mark.parametrize("binary_out", [False, True])
def test_demo_infer_json_and_binary(
    demo_server: RuntimeServer, binary_in: bool, binary_out: bool
) -> None:
    rows = np.random.default_rng(3).normal(0, 3, size=(5, 8)).astype(np.float32)
    result = _client(demo_server).infer(
        "demo",
        [_input("inputs", rows, "FP32", binary_in)],
        outputs=[triton.InferRequestedOutput("outputs", binary_data=binary_out)],
        request_id="req-1",
    )
    np.testing.assert_allclose(result.as_numpy("outputs"), demo_predict(rows), rtol=1e-6)
    response = result.get_response()
    assert response["id"] == "req-1"
    assert response["model_name"] == "demo"
    assert response["model_version"] == "1"


def test_two_inputs_two_outputs_requested_subset(
    two_io_server: RuntimeServer, two_io_model_dir: Path
) -> None:
    a = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.float32)
    b = np.array([[1, 1], [0.5, 0.25]], dtype=np.float32)
    client = _client(two_io_server)
    inputs = [_input("a", a, "FP32", True), _input("b", b, "FP32", False)]
    every = client.infer("two_io", inputs, model_version="1")  # no outputs: all, binary
    want = call_saved_model(two_io_model_dir / "1", {"a": a, "b": b})
    for name in ("total", "scaled"):
        np.testing.assert_allclose(every.as_numpy(name), want[name], rtol=1e-6)
    only = client.infer(
        "two_io", inputs, outputs=[triton.InferRequestedOutput("scaled", binary_data=False)]
    )
    assert [o["name"] for o in only.get_response()["outputs"]] == ["scaled"]
    want_2 = call_saved_model(two_io_model_dir / "2", {"a": a, "b": b})
    np.testing.assert_allclose(only.as_numpy("scaled"), want_2["scaled"], rtol=1e-6)


@pytest.mark.parametrize("binary", [False, True])
def test_int64_model(int_server: RuntimeServer, int_model_dir: Path, binary: bool) -> None:
    x = np.array([[1, 2, 3, 4], [-(2**40), 0, 5, 6]], dtype=np.int64)
    result = _client(int_server).infer("ints", [_input("x", x, "INT64", binary)])
    want = call_saved_model(int_model_dir / "1", {"x": x})
    np.testing.assert_array_equal(result.as_numpy("doubled"), want["doubled"])
    np.testing.assert_array_equal(result.as_numpy("total"), want["total"])


@pytest.mark.parametrize("binary", [False, True])
def test_bytes_model(string_server: RuntimeServer, string_model_dir: Path, binary: bool) -> None:
    text = np.array([b"hello", "caf\u00e9".encode(), b""], dtype=object)
    result = _client(string_server).infer(
        "strings",
        [_input("text", text, "BYTES", binary)],
        outputs=[
            triton.InferRequestedOutput("upper", binary_data=binary),
            triton.InferRequestedOutput("length", binary_data=binary),
        ],
    )
    want = call_saved_model(string_model_dir / "1", {"text": text})
    np.testing.assert_array_equal(result.as_numpy("length"), want["length"])
    upper = [u if isinstance(u, bytes) else u.encode() for u in result.as_numpy("upper").tolist()]
    assert upper == want["upper"].tolist()


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_compressed_requests(demo_server: RuntimeServer, algorithm: str) -> None:
    rows = np.random.default_rng(5).normal(size=(3, 8)).astype(np.float32)
    result = _client(demo_server).infer(
        "demo",
        [_input("inputs", rows, "FP32", True)],
        request_compression_algorithm=algorithm,
        response_compression_algorithm=algorithm,
    )
    np.testing.assert_allclose(result.as_numpy("outputs"), demo_predict(rows), rtol=1e-6)


def test_client_sees_errors_as_exceptions(demo_server: RuntimeServer) -> None:
    client = _client(demo_server)
    wrong_dtype = _input("inputs", np.zeros((1, 8), np.float64), "FP64", True)
    with pytest.raises(InferenceServerException, match="FP64"):
        client.infer("demo", [wrong_dtype])
    wrong_shape = _input("inputs", np.zeros((1, 3), np.float32), "FP32", False)
    with pytest.raises(InferenceServerException, match="shape"):
        client.infer("demo", [wrong_shape])
    with pytest.raises(InferenceServerException, match="absent"):
        client.infer("absent", [_input("inputs", np.zeros((1, 8), np.float32), "FP32", True)])
    assert client.is_server_ready()


def test_plain_http_json_with_nested_data(demo_server: RuntimeServer) -> None:
    rows = np.arange(16, dtype=np.float32).reshape(2, 8) / 10
    body = {
        "id": "plain",
        "inputs": [{"name": "inputs", "shape": [2, 8], "datatype": "FP32", "data": rows.tolist()}],
    }
    with demo_server.client() as client:
        response = client.post("/v2/models/demo/versions/1/infer", json=body)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    output = response.json()["outputs"][0]
    assert output["shape"] == [2, 1]
    np.testing.assert_allclose(
        np.array(output["data"], np.float32).reshape(2, 1), demo_predict(rows), rtol=1e-6
    )
    assert response.json()["id"] == "plain"
