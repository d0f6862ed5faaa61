"""The benchmark's two models, built here as versioned SavedModels (no downloads).

``seed`` is the runtime's demo model (8 float inputs, Dense 10 relu, Dense 1 sigmoid), built
by ``build_demo_model`` so the benchmark serves exactly what ``modelplane demo`` serves.
``wide`` is compute-bound: 256 inputs, Dense 1024 relu, Dense 1024 relu, Dense 10 softmax,
with seeded weights. Both have one ``serving_default`` signature, input ``inputs`` float32
``[-1, features]`` and output ``outputs``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

INPUT_NAME: Final = "inputs"
OUTPUT_NAME: Final = "outputs"
_WIDE_SEED: Final = 5


@dataclass(frozen=True)
class BenchModel:
    """A model the benchmark serves: its name in URLs, feature count and repository folder."""

    name: str
    features: int
    outputs: int
    base: Path

    @property
    def version_dir(self) -> Path:
        """The SavedModel folder of version 1 (peers that take one folder load this)."""
        return self.base / "1"


def _export_wide(target: Path) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    rng = np.random.default_rng(_WIDE_SEED)
    sizes = [(256, 1024), (1024, 1024), (1024, 10)]
    module = tf.Module(name="wide")
    module.kernels = [
        tf.Variable(rng.normal(0.0, 1.0 / np.sqrt(n_in), size=(n_in, n_out)).astype(np.float32))
        for n_in, n_out in sizes
    ]
    module.biases = [tf.Variable(np.zeros(n_out, dtype=np.float32)) for _, n_out in sizes]

    def serve(inputs: Any) -> dict[str, Any]:
        x = inputs
        for kernel, bias in zip(module.kernels[:-1], module.biases[:-1], strict=True):
            x = tf.nn.relu(tf.matmul(x, kernel) + bias)
        logits = tf.matmul(x, module.kernels[-1]) + module.biases[-1]
        return {OUTPUT_NAME: tf.nn.softmax(logits)}

    module.serve = tf.function(
        serve, input_signature=[tf.TensorSpec([None, 256], tf.float32, name=INPUT_NAME)]
    )
    tf.saved_model.save(module, str(target), signatures={"serving_default": module.serve})


def _build_wide(base: Path) -> None:
    target = base / "1"
    if (target / "saved_model.pb").is_file():
        return
    base.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=base))
    try:
        _export_wide(staging / "model")
        (staging / "model").rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def build_models(root: Path) -> dict[str, BenchModel]:
    """Build (if missing) both models under ``root`` and describe them."""
    from modelplane_runtime.demo_model import build_demo_model

    seed = BenchModel("seed", 8, 1, root / "seed")
    wide = BenchModel("wide", 256, 10, root / "wide")
    build_demo_model(seed.base)
    _build_wide(wide.base)
    return {seed.name: seed, wide.name: wide}


def sample_rows(model: BenchModel, rows: int = 1) -> list[list[float]]:
    """Deterministic request rows with short decimals (keeps JSON bodies realistic)."""
    rng = np.random.default_rng(7)
    values = np.round(rng.uniform(-2.0, 2.0, size=(rows, model.features)), 3)
    return [[float(v) for v in row] for row in values]
