"""Request bodies and answer parsing for the two protocols every contender speaks.

v1 is TF Serving's REST API (``{"instances": ...}`` -> ``{"predictions": ...}``); v2 is the
Open Inference Protocol's JSON form (``inputs`` tensors -> ``outputs`` tensors).
"""

from __future__ import annotations

import json
from typing import Any, Literal

import numpy as np

from bench.runtime.models import INPUT_NAME, BenchModel, sample_rows

Protocol = Literal["v1", "v2", "v2-binary"]
"""``v2-binary``: v2 with the input as raw float32 after a JSON header (Triton's binary
tensor extension, what tritonclient sends by default); outputs still come back as JSON."""


def request_path(protocol: Protocol, model: BenchModel) -> str:
    """The predict/infer URL path of ``model``."""
    if protocol == "v1":
        return f"/v1/models/{model.name}:predict"
    return f"/v2/models/{model.name}/infer"


def request_body(protocol: Protocol, model: BenchModel, rows: int = 1) -> bytes:
    """One request's body with ``rows`` rows."""
    data = sample_rows(model, rows)
    if protocol == "v1":
        return json.dumps({"instances": data}).encode()
    tensor: dict[str, Any] = {
        "name": INPUT_NAME,
        "shape": [rows, model.features],
        "datatype": "FP32",
    }
    if protocol == "v2":
        tensor["data"] = [v for row in data for v in row]
        return json.dumps({"inputs": [tensor]}).encode()
    raw = np.asarray(data, dtype="<f4").tobytes()
    tensor["parameters"] = {"binary_data_size": len(raw)}
    return json.dumps({"inputs": [tensor]}).encode() + raw


def request_headers(protocol: Protocol, body: bytes) -> dict[str, str]:
    """The headers a request with ``body`` needs besides its Content-Length."""
    if protocol != "v2-binary":
        return {"Content-Type": "application/json"}
    header = body[: body.index(b"}]}") + 3]  # the JSON part, before the raw tensor
    return {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(header)),
    }


def answer_array(protocol: Protocol, answer: dict[str, Any]) -> np.ndarray:
    """The prediction carried by an answer, as a float array of shape ``[rows, outputs]``."""
    if protocol == "v1":
        return np.asarray(answer["predictions"], dtype=np.float32)
    output = answer["outputs"][0]
    return np.asarray(output["data"], dtype=np.float32).reshape(output["shape"])
