"""The naive peer: a hand-written FastAPI app calling the SavedModel once per request.

What a team writes in an afternoon: a pydantic body, a sync handler (FastAPI runs it in its
thread pool), the signature called per request, uvicorn with its defaults (access log on).
Usage: ``python naive_fastapi.py MODEL_DIR NAME PORT``.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import numpy as np
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf


class PredictRequest(BaseModel):
    """TF Serving's row format."""

    instances: list[list[float]]


def create_app(model_dir: str, name: str) -> FastAPI:
    """An app serving ``model_dir`` under ``name`` on the v1 predict route."""
    serving = tf.saved_model.load(model_dir).signatures["serving_default"]
    app = FastAPI()

    @app.get(f"/v1/models/{name}")
    def status() -> dict[str, Any]:
        return {"model_version_status": [{"version": "1", "state": "AVAILABLE"}]}

    @app.post(f"/v1/models/{name}:predict")
    def predict(request: PredictRequest) -> dict[str, Any]:
        batch = tf.constant(np.asarray(request.instances, dtype=np.float32))
        outputs = serving(inputs=batch)["outputs"].numpy()
        return {"predictions": outputs.tolist()}

    return app


if __name__ == "__main__":
    uvicorn.run(create_app(sys.argv[1], sys.argv[2]), host="127.0.0.1", port=int(sys.argv[3]),
                loop="uvloop", http="httptools")
