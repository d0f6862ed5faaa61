"""MLServer (``mlserver`` from PyPI) custom runtime serving the SavedModel over v2.

The documented custom-runtime pattern: an ``MLModel`` subclass; the benchmark writes a
``model-settings.json`` naming it (``implementation: mlserver_runtime.SavedModelRuntime``)
with ``parameters.uri`` pointing at the SavedModel and adaptive batching on or off.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf
from mlserver import MLModel  # type: ignore[import-not-found]
from mlserver.codecs import NumpyCodec  # type: ignore[import-not-found]
from mlserver.types import (  # type: ignore[import-not-found]
    InferenceRequest,
    InferenceResponse,
)


class SavedModelRuntime(MLModel):  # type: ignore[misc]
    """Decodes the first input tensor with NumpyCodec and calls the serving signature."""

    async def load(self) -> bool:
        """Open the SavedModel named by ``parameters.uri``."""
        self.serving: Any = tf.saved_model.load(self.settings.parameters.uri).signatures[
            "serving_default"
        ]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        """One model call per (possibly adaptively batched) request."""
        batch = NumpyCodec.decode_input(payload.inputs[0]).astype(np.float32)
        outputs = self.serving(inputs=tf.constant(batch))["outputs"].numpy()
        return InferenceResponse(
            model_name=self.name, outputs=[NumpyCodec.encode_output("outputs", outputs)]
        )
