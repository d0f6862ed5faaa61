"""Request bodies and answer parsing for the two protocols every contender speaks.

v1 is TF Serving's REST API (``{"instances": ...}`` -> ``{"predictions": ...}``); v2 is the
Open Inference Protocol's JSON form (``inputs`` tensors -> ``outputs`` tensors).
"""

from __future__ import annotations

import json
from typing import Any, Literal

import numpy as np

from bench.runtime.models import INPUT_NAME, BenchModel, sample_rows

Protocol = Literal["v1", "v2"]


def request_path(protocol: Protocol, model: BenchModel) -> str:
    """The predict/infer URL path of ``model``."""
    if protocol == "v1":
        return f"/v1/models/{model.name}:predict"
    return f"/v2/models/{model.name}/infer"


def request_body(protocol: Protocol, model: BenchModel, rows: int = 1) -> bytes:
    """One request's JSON body with ``rows`` rows."""
    data = sample_rows(model, rows)
    if protocol == "v1":
        return json.dumps({"instances": data}).encode()
    tensor = {
        "name": INPUT_NAME,
        "shape": [rows, model.features],
        "datatype": "FP32",
        "data": [v for row in data for v in row],
    }
    return json.dumps({"inputs": [tensor]}).encode()


def answer_array(protocol: Protocol, answer: dict[str, Any]) -> np.ndarray:
    """The prediction carried by an answer, as a float array of shape ``[rows, outputs]``."""
    if protocol == "v1":
        return np.asarray(answer["predictions"], dtype=np.float32)
    output = answer["outputs"][0]
    return np.asarray(output["data"], dtype=np.float32).reshape(output["shape"])
