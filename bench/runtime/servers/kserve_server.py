"""KServe's Python model server (``kserve`` from PyPI) serving the SavedModel: v1 over HTTP,
and v2 over gRPC when the benchmark turns gRPC on (bench.runtime.unary).

The documented custom-model pattern: a ``kserve.Model`` subclass whose ``load`` opens the
SavedModel and whose ``predict`` takes ``{"instances": ...}`` (v1) or an ``InferRequest``
(v2, what KServe's gRPC servicer hands the model); ``kserve.ModelServer`` serves it with
its defaults. KServe reads its own flags (``--http_port``, ``--enable_grpc``,
``--grpc_port``...) from the command line. Usage: ``python kserve_server.py --model_dir DIR
--model_name NAME --http_port PORT --enable_grpc false``.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import kserve  # type: ignore[import-not-found]
import tensorflow as tf


class SavedModelPredictor(kserve.Model):  # type: ignore[misc]
    """Calls the SavedModel's serving signature once per request."""

    def __init__(self, name: str, model_dir: str) -> None:
        super().__init__(name)
        self.model_dir = model_dir
        self.serving: Any = None

    def load(self) -> bool:
        """Open the SavedModel and mark the model ready."""
        self.serving = tf.saved_model.load(self.model_dir).signatures["serving_default"]
        self.ready = True
        return True

    def predict(
        self, payload: dict[str, Any] | Any, headers: dict[str, str] | None = None
    ) -> dict[str, Any] | Any:
        """v1: ``instances`` rows in, ``predictions`` rows out; v2: tensors in and out."""
        if isinstance(payload, kserve.InferRequest):
            batch = tf.constant(payload.inputs[0].as_numpy().astype(np.float32))
            result = self.serving(inputs=batch)["outputs"].numpy()
            output = kserve.InferOutput("outputs", list(result.shape), "FP32")
            output.set_data_from_numpy(result, binary_data=False)
            return kserve.InferResponse(
                response_id=payload.id, model_name=self.name, infer_outputs=[output]
            )
        batch = tf.constant(np.asarray(payload["instances"], dtype=np.float32))
        outputs = self.serving(inputs=batch)["outputs"].numpy()
        return {"predictions": outputs.tolist()}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(parents=[kserve.model_server.parser])
    parser.add_argument("--model_dir", required=True)
    args, _ = parser.parse_known_args()
    model = SavedModelPredictor(args.model_name, args.model_dir)
    model.load()
    kserve.ModelServer().start([model])
