"""The bundled demo model: 8 float inputs, Dense(10, relu), Dense(1, sigmoid), fixed weights.

The weights come from a seeded numpy generator, so every build of the demo model is the same
model and ``demo_predict`` (plain numpy) is its exact reference. No training, no downloads.
It is exported as a SavedModel in TF Serving's versioned layout (``<base>/1/``) with one
``serving_default`` signature: input ``inputs`` float32 ``[-1, 8]``, output ``outputs``
float32 ``[-1, 1]``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Final

import numpy as np

DEMO_INPUT: Final = "inputs"
DEMO_OUTPUT: Final = "outputs"
DEMO_FEATURES: Final = 8
DEMO_HIDDEN: Final = 10
DEMO_VERSION: Final = 1
_SEED: Final = 20240611


def demo_weights() -> dict[str, np.ndarray]:
    """The demo model's fixed weights (float32), the same on every call."""
    rng = np.random.default_rng(_SEED)
    # Glorot-like scale keeps the sigmoid away from saturation for inputs of order 1..10.
    w1 = rng.normal(0.0, 0.5, size=(DEMO_FEATURES, DEMO_HIDDEN)).astype(np.float32)
    b1 = rng.normal(0.0, 0.1, size=(DEMO_HIDDEN,)).astype(np.float32)
    w2 = rng.normal(0.0, 0.3, size=(DEMO_HIDDEN, 1)).astype(np.float32)
    b2 = np.array([-0.5], dtype=np.float32)
    return {"w1": w1, "b1": b1, "w2": w2, "b2": b2}


def demo_predict(inputs: np.ndarray) -> np.ndarray:
    """The demo model computed with numpy: ``[n, 8]`` floats -> ``[n, 1]`` probabilities."""
    w = demo_weights()
    x = np.asarray(inputs, dtype=np.float32)
    hidden = np.maximum(x @ w["w1"] + w["b1"], 0.0)
    logits = hidden @ w["w2"] + w["b2"]
    probabilities: np.ndarray = (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)
    return probabilities


def _is_complete(version_dir: Path) -> bool:
    return (version_dir / "saved_model.pb").is_file() and (
        version_dir / "variables" / "variables.index"
    ).is_file()


def _export(target: Path) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    weights = demo_weights()
    module = tf.Module(name="demo")
    # Variable names follow Keras' Dense layers so the model reads like the seed's.
    module.w1 = tf.Variable(weights["w1"], name="dense/kernel")
    module.b1 = tf.Variable(weights["b1"], name="dense/bias")
    module.w2 = tf.Variable(weights["w2"], name="dense_1/kernel")
    module.b2 = tf.Variable(weights["b2"], name="dense_1/bias")

    def serve(inputs: Any) -> dict[str, Any]:
        hidden = tf.nn.relu(tf.matmul(inputs, module.w1) + module.b1)
        return {DEMO_OUTPUT: tf.sigmoid(tf.matmul(hidden, module.w2) + module.b2)}

    module.serve = tf.function(
        serve, input_signature=[tf.TensorSpec([None, DEMO_FEATURES], tf.float32, name=DEMO_INPUT)]
    )
    tf.saved_model.save(module, str(target), signatures={"serving_default": module.serve})


def build_demo_model(base: Path) -> Path:
    """Export the demo model into ``<base>/1/`` unless a complete one is there; returns ``base``.

    Builds in a hidden temporary folder beside the target and renames it into place, so a
    reader (or a second builder running at the same time) never sees a half-written model.
    """
    base = Path(base)
    target = base / str(DEMO_VERSION)
    if _is_complete(target):
        return base
    base.mkdir(parents=True, exist_ok=True)
    # Hidden name: the repository scanner ignores it while it is being written.
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=base))
    try:
        _export(staging / "model")
        if target.exists() and not _is_complete(target):
            shutil.rmtree(target)  # a leftover of an interrupted older build
        try:
            (staging / "model").rename(target)
        except OSError:
            if not _is_complete(target):  # lost a race to another builder: theirs is fine
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return base
