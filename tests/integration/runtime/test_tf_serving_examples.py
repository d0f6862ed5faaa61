"""The end-to-end example of TF Serving's REST API documentation (api_rest.md), run verbatim
with curl against our runtime serving the same toy model, ``half_plus_three`` (y = x/2 + 3)
in the same folder layout (version ``00000123``): we must answer what TF Serving answers."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.binaries import require_binary
from tests.fixtures.runtime_server import RuntimeServer, launch_runtime


def _build_half_plus_three(base: Path) -> Path:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    module = tf.Module()

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def serve(x: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"y": x * 0.5 + 3.0}

    module.serve = serve
    tf.saved_model.save(module, str(base / "00000123"), signatures={"serving_default": serve})
    return base


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, runtime_log_dir: Path
) -> Iterator[RuntimeServer]:
    base = _build_half_plus_three(tmp_path_factory.mktemp("tfs") / "saved_model_half_plus_three")
    args = ["--name", "half_plus_three"]
    with launch_runtime(base, runtime_log_dir, args) as running:
        yield running


def _curl(*args: str) -> str:
    return subprocess.run(
        [require_binary("curl"), "-s", *args], capture_output=True, text=True, timeout=30,
        check=True,
    ).stdout


def _localhost(server: RuntimeServer) -> str:
    return f"http://localhost:{server.port}"


def test_model_status(server: RuntimeServer) -> None:
    answer: Any = json.loads(_curl(f"{_localhost(server)}/v1/models/half_plus_three"))
    assert answer == {
        "model_version_status": [
            {
                "version": "123",
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }
        ]
    }


def test_predict(server: RuntimeServer) -> None:
    out = _curl(
        "-d",
        '{"instances": [1.0,2.0,5.0]}',
        "-X",
        "POST",
        f"{_localhost(server)}/v1/models/half_plus_three:predict",
    )
    assert json.loads(out) == {"predictions": [3.5, 4.0, 5.5]}


def test_columnar_predict(server: RuntimeServer) -> None:
    out = _curl(
        "-d",
        '{"inputs": [1.0,2.0,5.0]}',
        f"{_localhost(server)}/v1/models/half_plus_three/versions/123:predict",
    )
    assert json.loads(out) == {"outputs": [3.5, 4.0, 5.5]}


def test_incorrect_url_is_404_json(server: RuntimeServer) -> None:
    out = _curl(
        "-i",
        "-d",
        '{"instances": [1.0,5.0]}',
        "-X",
        "POST",
        f"{_localhost(server)}/v1/models/half:predict",
    )
    head, _, body = out.replace("\r\n", "\n").partition("\n\n")
    assert head.startswith("HTTP/1.1 404")
    assert "content-type: application/json" in head.lower()
    assert "half" in json.loads(body)["error"]


def test_metadata_names_the_signature(server: RuntimeServer) -> None:
    answer: Any = json.loads(_curl(f"{_localhost(server)}/v1/models/half_plus_three/metadata"))
    assert answer["model_spec"]["version"] == "123"
    signature = answer["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert signature["inputs"]["x"]["dtype"] == "DT_FLOAT"
    assert signature["outputs"]["y"]["dtype"] == "DT_FLOAT"


# --- the documented named-input example (tag, signal, sensor), row and columnar -----------


def _build_named_inputs(base: Path) -> Path:
    """Inputs as in api_rest.md's example; ``tag_bytes`` is a binary string output."""
    import tensorflow as tf

    module = tf.Module()

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.string, name="tag"),
            tf.TensorSpec([None, 5], tf.int32, name="signal"),
            tf.TensorSpec([None, 2, 2], tf.float32, name="sensor"),
        ]
    )
    def serve(tag: tf.Tensor, signal: tf.Tensor, sensor: tf.Tensor) -> dict[str, tf.Tensor]:
        return {
            "tag_bytes": tf.strings.join([tag, tf.fill(tf.shape(tag), b"\xff")]),
            "total": tf.reduce_sum(signal, axis=1),
            "sensor_max": tf.reduce_max(sensor, axis=[1, 2]),
        }

    module.serve = serve
    tf.saved_model.save(module, str(base / "1"), signatures={"serving_default": serve})
    return base


@pytest.fixture(scope="module")
def named_server(
    tmp_path_factory: pytest.TempPathFactory, runtime_log_dir: Path
) -> Iterator[RuntimeServer]:
    base = _build_named_inputs(tmp_path_factory.mktemp("tfs") / "named")
    with launch_runtime(base, runtime_log_dir, ["--name", "named"]) as running:
        yield running


def _b64(raw: bytes) -> dict[str, str]:
    return {"b64": base64.b64encode(raw).decode()}


def test_named_rows_example(named_server: RuntimeServer) -> None:
    # api_rest.md's row example (its stray bracket after "signal" removed).
    body = """{
     "instances": [
       {"tag": "foo", "signal": [1, 2, 3, 4, 5], "sensor": [[1, 2], [3, 4]]},
       {"tag": "bar", "signal": [3, 4, 1, 2, 5], "sensor": [[4, 5], [6, 8]]}
     ]
    }"""
    out = _curl("-d", body, f"{_localhost(named_server)}/v1/models/named:predict")
    assert json.loads(out) == {
        "predictions": [
            {"tag_bytes": _b64(b"foo\xff"), "total": 15, "sensor_max": 4.0},
            {"tag_bytes": _b64(b"bar\xff"), "total": 15, "sensor_max": 8.0},
        ]
    }


def test_named_columns_example(named_server: RuntimeServer) -> None:
    body = """{
     "inputs": {
       "tag": ["foo", "bar"],
       "signal": [[1, 2, 3, 4, 5], [3, 4, 1, 2, 5]],
       "sensor": [[[1, 2], [3, 4]], [[4, 5], [6, 8]]]
     }
    }"""
    out = _curl("-d", body, f"{_localhost(named_server)}/v1/models/named:predict")
    assert json.loads(out) == {
        "outputs": {
            "tag_bytes": [_b64(b"foo\xff"), _b64(b"bar\xff")],
            "total": [15, 15],
            "sensor_max": [4.0, 8.0],
        }
    }


def test_b64_input_example(named_server: RuntimeServer) -> None:
    body = {
        "instances": [
            {
                "tag": {"b64": "aW1hZ2UgYnl0ZXM="},
                "signal": [0, 0, 0, 0, 1],
                "sensor": [[0, 0], [0, 0]],
            }
        ]
    }
    out = _curl("-d", json.dumps(body), f"{_localhost(named_server)}/v1/models/named:predict")
    assert json.loads(out)["predictions"][0]["tag_bytes"] == _b64(b"image bytes\xff")
