"""Loading one model version and calling it: SavedModel signatures or a Keras file.

A SavedModel is served through its signatures' concrete functions, called directly: this
skips Keras' ``predict`` loop (per-call data adapters and callbacks), which costs more than
a small model's whole forward pass. A Keras file is loaded in safe mode (no Python lambdas
or arbitrary code), then traced once into a concrete function with an input signature built
from the model's inputs, so both formats share the same fast call path.

TensorFlow is imported here, lazily and quietly (``TF_CPP_MIN_LOG_LEVEL``); the rest of the
package stays importable without it.
"""

from __future__ import annotations

import logging
import os
import re
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modelplane_runtime import errors
from modelplane_runtime.dataplane.devices import placed_devices
from modelplane_runtime.dataplane.repository import VersionSource
from modelplane_runtime.errors import ModelLoadError
from modelplane_runtime.signature import DTYPES, SignatureSpec, TensorSpec, numpy_dtype

log = logging.getLogger(__name__)

Arrays = dict[str, np.ndarray]
Call = Callable[[Mapping[str, np.ndarray]], Arrays]


def import_tensorflow() -> Any:
    """TensorFlow, imported on first use with its C++ logging turned down to errors."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    return tf


@dataclass
class LoadedModel:
    """A loaded version: its signatures (as the model declares them) and how to call them."""

    source: VersionSource
    signatures: dict[str, SignatureSpec]
    calls: dict[str, Call]
    handle: Any = field(default=None, repr=False)
    """The loaded TF object; kept referenced so its variables stay alive."""
    devices: tuple[str, ...] = ()
    """Where TensorFlow placed the model (``CPU:0``, ``GPU:0``; see devices.py)."""

    def call(self, signature: str, inputs: Mapping[str, np.ndarray]) -> Arrays:
        """Run one signature on a batch; model errors become runtime errors with a status."""
        try:
            return self.calls[signature](inputs)
        except errors.ModelplaneError:
            raise
        except Exception as exc:
            raise _as_runtime_error(exc) from exc

    def warm_up(self) -> None:
        """Call every signature once with a batch of 1, so the first request pays no tracing."""
        for name, spec in self.signatures.items():
            try:
                self.calls[name](dummy_inputs(spec))
            except Exception as exc:  # a model may reject zeros; serving can still work
                log.warning("warm-up of signature %r failed: %s", name, _condense(str(exc)))

    def close(self) -> None:
        """Drop references to the TF objects (memory is reclaimed by TF's refcounting)."""
        self.calls.clear()
        self.handle = None


def dummy_inputs(spec: SignatureSpec) -> Arrays:
    """One row of zeros (empty strings) per input, unknown dimensions set to 1."""
    batch: Arrays = {}
    for tensor in spec.inputs:
        shape = tuple(1 if dim < 0 else dim for dim in tensor.shape)
        if tensor.dtype == "string":
            batch[tensor.name] = np.full(shape, b"", dtype=object)
        else:
            batch[tensor.name] = np.zeros(shape, dtype=numpy_dtype(tensor.dtype))
    return batch


Prepare = Callable[[Any], object]
"""Called with TensorFlow once imported, before the model touches a device (devices.py)."""


def load_model(source: VersionSource, prepare: Prepare | None = None) -> LoadedModel:
    """Load a version from disk; any failure is a ModelLoadError naming the path.

    ``prepare`` gets TensorFlow first (GPU memory settings): a file refused before
    TensorFlow is needed never imports it."""
    try:
        if source.format == "savedmodel":
            return _load_savedmodel(source, prepare)
        return _load_keras(source, prepare)
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(
            f"version {source.version} ({source.path}): cannot load {source.format}: "
            f"{_condense(str(exc))}"
        ) from exc


def _tensor_spec(name: str, tensor: Any) -> TensorSpec | None:
    """A TF TensorSpec (or symbolic tensor) as our TensorSpec; None if it cannot be served."""
    dtype = tensor.dtype.name
    if dtype not in DTYPES or tensor.shape.rank is None:
        return None
    return TensorSpec(name, dtype, tuple(-1 if d is None else int(d) for d in tensor.shape))


def _spec_of(name: str, inputs: Mapping[str, Any], outputs: Mapping[str, Any]) -> SignatureSpec:
    specs_in = [_tensor_spec(key, value) for key, value in sorted(inputs.items())]
    specs_out = [_tensor_spec(key, value) for key, value in sorted(outputs.items())]
    unusable = [
        key
        for key, spec in zip(
            [*sorted(inputs), *sorted(outputs)], [*specs_in, *specs_out], strict=True
        )
        if spec is None
    ]
    if unusable:
        raise ValueError(
            f"tensor(s) {', '.join(unusable)} have an unsupported dtype or unknown rank"
        )
    return SignatureSpec(
        name,
        tuple(s for s in specs_in if s is not None),
        tuple(s for s in specs_out if s is not None),
    )


def _to_numpy(result: Mapping[str, Any]) -> Arrays:
    return {name: tensor.numpy() for name, tensor in result.items()}


def _load_savedmodel(source: VersionSource, prepare: Prepare | None) -> LoadedModel:
    tf = import_tensorflow()
    if prepare is not None:
        prepare(tf)
    loaded = tf.saved_model.load(str(source.path))
    signatures: dict[str, SignatureSpec] = {}
    calls: dict[str, Call] = {}
    for name, function in loaded.signatures.items():
        try:
            inputs = function.structured_input_signature[1]
            signatures[name] = _spec_of(name, inputs, function.structured_outputs)
        except (ValueError, TypeError, AttributeError) as exc:
            log.warning("signature %r of %s is not served: %s", name, source.path, exc)
            continue
        calls[name] = _savedmodel_call(tf, function)
    if not signatures:
        raise ModelLoadError(
            f"version {source.version} ({source.path}): the SavedModel has no servable "
            f"signature (export it with signatures={{'serving_default': ...}})"
        )
    served = [loaded.signatures[name] for name in calls]
    return LoadedModel(
        source, signatures, calls, handle=loaded, devices=placed_devices(tf, served)
    )


def _savedmodel_call(tf: Any, function: Any) -> Call:
    constant = tf.constant

    def call(inputs: Mapping[str, np.ndarray]) -> Arrays:
        return _to_numpy(function(**{name: constant(value) for name, value in inputs.items()}))

    return call


_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _not_a_keras_file(path: Path) -> str:
    """Why ``path`` cannot be a Keras file, or "" (checked by its first bytes).

    Keras reports a ``.keras`` file that is not a zip archive as "File not found", which
    sends users looking for a path problem; a ``.keras`` file is a zip archive and an
    ``.h5`` file starts with the HDF5 signature.
    """
    try:
        with path.open("rb") as file:
            start = file.read(len(_HDF5_SIGNATURE))
    except OSError as exc:
        return f"cannot read the file: {exc.strerror}"
    if path.suffix == ".keras" and not zipfile.is_zipfile(path):
        return "not a valid .keras file (a .keras model is a zip archive; this file is not)"
    if path.suffix == ".h5" and start != _HDF5_SIGNATURE:
        return "not a valid .h5 file (it does not start with the HDF5 signature)"
    return ""


def _load_keras(source: VersionSource, prepare: Prepare | None) -> LoadedModel:
    problem = _not_a_keras_file(source.path)
    if problem:
        raise ModelLoadError(f"version {source.version} ({source.path}): {problem}")
    tf = import_tensorflow()
    if prepare is not None:
        prepare(tf)
    import keras

    try:
        model = keras.saving.load_model(str(source.path), safe_mode=True, compile=False)
    except ValueError as exc:
        raise ModelLoadError(
            f"version {source.version} ({source.path}): Keras refused the file in safe mode "
            f"(no lambdas or custom code are loaded): {_condense(str(exc))}"
        ) from exc
    model_inputs = list(getattr(model, "inputs", None) or [])
    if not model_inputs:
        raise ModelLoadError(
            f"version {source.version} ({source.path}): the Keras model has no defined inputs "
            f"(build it with keras.Input before saving)"
        )
    structure = _input_structure(model)
    if isinstance(structure, Mapping) and len(structure) == len(model_inputs):
        # A model built on a dict of inputs is called with that dict: its keys are the names.
        names = [str(key) for key in structure]
        model_inputs = list(structure.values())
    else:
        names = _unique(
            [str(getattr(t, "name", "") or f"input_{i}") for i, t in enumerate(model_inputs)]
        )
    by_name = isinstance(structure, Mapping)
    input_specs = [
        tf.TensorSpec(tuple(t.shape), tf.as_dtype(t.dtype), name=name)
        for name, t in zip(names, model_inputs, strict=True)
    ]
    output_names = _unique(list(getattr(model, "output_names", None) or []))

    def serve(*args: Any) -> dict[str, Any]:
        if by_name:
            result = model(dict(zip(names, args, strict=True)), training=False)
        else:
            result = model(list(args) if len(args) > 1 else args[0], training=False)
        if isinstance(result, Mapping):
            return dict(result)
        outputs = list(result) if isinstance(result, list | tuple) else [result]
        keys = output_names if len(output_names) == len(outputs) else [
            f"output_{i}" for i in range(len(outputs))
        ]
        return dict(zip(keys, outputs, strict=True))

    function = tf.function(serve, input_signature=input_specs).get_concrete_function()
    spec = _spec_of(
        "serving_default", dict(zip(names, input_specs, strict=True)), function.structured_outputs
    )
    constant = tf.constant

    def call(inputs: Mapping[str, np.ndarray]) -> Arrays:
        return _to_numpy(function(*[constant(inputs[name]) for name in names]))

    return LoadedModel(
        source, {"serving_default": spec}, {"serving_default": call}, handle=(model, function),
        devices=placed_devices(tf, [function]),
    )


def _input_structure(model: Any) -> Any:
    try:
        return model.input  # the nested structure the model was built on
    except (AttributeError, ValueError):
        return None


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    result = []
    for name in names:
        count = seen.get(name, 0)
        seen[name] = count + 1
        result.append(name if count == 0 else f"{name}_{count}")
    return result


_NOISE = re.compile(
    r"^(Graph execution error:|Detected at node|<stack traces unavailable>|\s*\[\[\{\{node)"
)


def _condense(message: str) -> str:
    """TF error text without stack-trace boilerplate, on one line."""
    lines = [line.strip() for line in message.splitlines()]
    kept = [line for line in lines if line and not _NOISE.match(line)]
    return "; ".join(kept)[:500] or message[:500]


def _as_runtime_error(exc: Exception) -> errors.ModelplaneError:
    tf = import_tensorflow()
    message = _condense(getattr(exc, "message", None) or str(exc))
    if isinstance(exc, tf.errors.InvalidArgumentError | ValueError | TypeError):
        # TF Serving answers InvalidArgument with 400: the input, not the server, is wrong.
        return errors.InvalidInput(f"the model rejected the input: {message}")
    return errors.ModelplaneError(f"model call failed: {message}")
