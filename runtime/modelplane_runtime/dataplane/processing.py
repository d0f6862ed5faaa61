"""Optional pre- and post-processing declared in ``modelplane.yaml`` beside the model.

The file lives in the repository's base folder; a ``modelplane.yaml`` inside a version
folder replaces it for that version. ``MODELPLANE_PROCESSING`` (the same schema as JSON,
which the operator sets from the ModelDeployment; the CRD's copy of the schema is
operator/modelplane_operator/processing.py, kept in step by
tests/unit/operator/test_processing_drift.py) wins over both, for every version. It is
data, parsed by a pydantic model: nothing in it is executed. It applies to one signature
(``serving_default`` unless it says otherwise), and the signature the runtime reports (v1
metadata, v2 model metadata) is the processed one: what clients send and receive, not what
the model sees.

Format (an example for a model taking ``image`` float32 ``[-1, 28, 28]`` and returning
``probabilities`` ``[-1, 3]`` and ``score`` ``[-1, 1]``)::

    signature: serving_default      # the signature this applies to (default serving_default)
    inputs:
      image:                        # a model input name
        dtype: uint8                # what clients send; cast to the model's dtype
        shape: [784]                # non-batch shape clients send; reshaped to the model's
        mean: 127.5                 # then (x - mean) / std, broadcast over the last axes:
        std: 64.0                   #   a number, or a list (one per last-axis entry)
    outputs:
      probabilities:                # a model output name
        labels: [cat, dog, bird]    # one per class (the output's last dimension)
        top_k: 2                    # add the k best classes per row
        keep: true                  # keep the raw output too (default true)
      score:                        # a single score per row (shape [-1] or [-1, 1])
        threshold: 0.8              # class 1 at or above, 0 below
        labels: ["no", "yes"]       # labels of class 0 and class 1 (quoted: YAML reads
                                    #   bare no/yes/on/off as booleans)

Outputs added, for an output ``o``:

- ``o_class`` (int64, ``[-1]``): the best class per row (argmax), or, with ``threshold``, 1
  where the score is at least the threshold and 0 otherwise. Added with ``labels`` or
  ``threshold``.
- ``o_label`` (string, ``[-1]``): the label of ``o_class``. Added with ``labels`` (a
  thresholded single score needs exactly two labels: below, at-or-above).
- ``o_top_k_scores`` (the output's dtype, ``[-1, k]``), ``o_top_k_classes`` (int64,
  ``[-1, k]``) and, with ``labels``, ``o_top_k_labels`` (string, ``[-1, k]``), best first.

A single-score output with ``labels`` and no ``threshold`` uses 0.5. Mistakes (an unknown
name, labels that do not match the classes, mean/std on an integer input) fail at start-up
with a message naming the file and the field.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from modelplane_runtime.errors import InvalidInput, ModelLoadError
from modelplane_runtime.signature import DTYPES, SignatureSpec, TensorSpec, numpy_dtype

Arrays = dict[str, np.ndarray]
Fail = Callable[[str], ModelLoadError]


class InputProcessing(BaseModel):
    """How one input is turned from what clients send into what the model takes."""

    model_config = ConfigDict(extra="forbid")

    dtype: str | None = None
    """The dtype clients send (TF name); cast to the model input's dtype."""
    shape: list[int] | None = None
    """The non-batch shape clients send (-1 at most once); reshaped to the model's."""
    mean: float | list[float] | None = None
    """Subtracted after casting (broadcast over the trailing axes)."""
    std: float | list[float] | None = None
    """Divided by after subtracting the mean; never zero."""

    @field_validator("dtype")
    @classmethod
    def _known_dtype(cls, value: str | None) -> str | None:
        if value is not None and value not in DTYPES:
            raise ValueError(f"unknown dtype {value!r}; one of {', '.join(DTYPES)}")
        return value


class OutputProcessing(BaseModel):
    """What is derived from one model output."""

    model_config = ConfigDict(extra="forbid")

    labels: list[str] | None = Field(default=None, min_length=1)
    top_k: int | None = Field(default=None, ge=1)
    threshold: float | None = None
    keep: bool = True

    @field_validator("labels", mode="before")
    @classmethod
    def _text_labels(cls, value: Any) -> Any:
        if isinstance(value, list):
            if any(isinstance(item, bool) for item in value):
                raise ValueError(
                    "labels must be text; quote YAML words like yes/no/on/off, which "
                    "otherwise read as booleans"
                )
            return [str(item) if isinstance(item, int | float) else item for item in value]
        return value


class ProcessingConfig(BaseModel):
    """The whole ``modelplane.yaml``."""

    model_config = ConfigDict(extra="forbid")

    signature: str = "serving_default"
    inputs: dict[str, InputProcessing] = Field(default_factory=dict)
    outputs: dict[str, OutputProcessing] = Field(default_factory=dict)


def read_config(path: Path) -> ProcessingConfig:
    """Parse a ``modelplane.yaml``; errors name the file and the field."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ModelLoadError(f"{path}: cannot read: {exc}") from exc
    return parse_config(text, str(path))


def parse_config(text: str, origin: str) -> ProcessingConfig:
    """Parse a config given as YAML or JSON text; ``origin`` (a path or a variable) leads errors."""
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ModelLoadError(f"{origin}: cannot read: {exc}") from exc
    try:
        return ProcessingConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, error['loc'])) or '(top)'}: {error['msg']}"
            for error in exc.errors()
        )
        raise ModelLoadError(f"{origin}: {problems}") from None


@dataclass(frozen=True)
class _InputStep:
    name: str
    model_dtype: np.dtype[Any]
    model_shape: tuple[int, ...] | None  # non-batch shape to reshape to, if reshaping
    mean: np.ndarray | None
    std: np.ndarray | None


@dataclass(frozen=True)
class _OutputStep:
    name: str
    labels: np.ndarray | None  # object array of bytes
    top_k: int | None
    threshold: float | None
    keep: bool


class Processor:
    """Processing bound to one signature; ``served`` is the signature clients see."""

    def __init__(
        self, signature: str, served: SignatureSpec, inputs: list[_InputStep],
        outputs: list[_OutputStep],
    ) -> None:
        self.signature = signature
        self.served = served
        self._inputs = inputs
        self._outputs = outputs

    def preprocess(self, inputs: Arrays) -> Arrays:
        """Cast, reshape and scale the inputs that have steps; others pass through."""
        result = dict(inputs)
        for step in self._inputs:
            value = result[step.name]
            if step.model_shape is not None:
                try:
                    value = value.reshape((value.shape[0], *step.model_shape))
                except ValueError as exc:
                    raise InvalidInput(
                        f"input '{step.name}': cannot reshape {list(value.shape[1:])} to the "
                        f"model's {list(step.model_shape)}"
                    ) from exc
            if value.dtype != step.model_dtype:
                value = value.astype(step.model_dtype)
            if step.mean is not None:
                value = value - step.mean
            if step.std is not None:
                value = value / step.std
            if value.dtype != step.model_dtype:
                value = value.astype(step.model_dtype)
            result[step.name] = value
        return result

    def postprocess(self, outputs: Arrays) -> Arrays:
        """Add the derived outputs; drop raw ones that are not kept."""
        result = dict(outputs)
        for step in self._outputs:
            scores = outputs[step.name]
            result.update(_derive(step, scores))
            if not step.keep:
                del result[step.name]
        return result


def _derive(step: _OutputStep, scores: np.ndarray) -> Arrays:
    derived: Arrays = {}
    single = scores.ndim == 1 or scores.shape[-1] == 1
    flat = scores.reshape(scores.shape[0], -1)
    if step.threshold is not None or (step.labels is not None and single):
        threshold = 0.5 if step.threshold is None else step.threshold
        classes = (flat[:, 0] >= threshold).astype(np.int64)
    else:
        classes = np.argmax(flat, axis=1).astype(np.int64)
    if step.labels is not None or step.threshold is not None:
        derived[f"{step.name}_class"] = classes
    if step.labels is not None:
        derived[f"{step.name}_label"] = step.labels[classes]
    if step.top_k is not None:
        order = np.argsort(-flat, axis=1, kind="stable")[:, : step.top_k].astype(np.int64)
        derived[f"{step.name}_top_k_scores"] = np.take_along_axis(flat, order, axis=1)
        derived[f"{step.name}_top_k_classes"] = order
        if step.labels is not None:
            derived[f"{step.name}_top_k_labels"] = step.labels[order]
    return derived


def build_processor(
    config: ProcessingConfig, signatures: dict[str, SignatureSpec], source: Path | str
) -> Processor:
    """Check the config against the model's signature; ``source`` names it in errors."""

    def fail(where: str, message: str) -> ModelLoadError:
        return ModelLoadError(f"{source}: {where}: {message}")

    def failing(where: str) -> Fail:
        return lambda message: fail(where, message)

    model = signatures.get(config.signature)
    if model is None:
        raise fail("signature", f"the model has no signature {config.signature!r} "
                   f"(it has: {', '.join(sorted(signatures))})")
    served_inputs = list(model.inputs)
    input_steps: list[_InputStep] = []
    for name, how_in in config.inputs.items():
        where = f"inputs.{name}"
        spec_in = model.input(name)
        if spec_in is None:
            names = ", ".join(t.name for t in model.inputs)
            raise fail(where, f"no such input (inputs: {names})")
        in_step, client_spec = _input_step(spec_in, how_in, failing(where))
        input_steps.append(in_step)
        served_inputs = [client_spec if t.name == name else t for t in served_inputs]
    served_outputs = list(model.outputs)
    output_steps: list[_OutputStep] = []
    for name, wanted in config.outputs.items():
        where = f"outputs.{name}"
        spec = model.output(name)
        if spec is None:
            names = ", ".join(t.name for t in model.outputs)
            raise fail(where, f"no such output (outputs: {names})")
        step, added = _output_step(spec, wanted, failing(where))
        output_steps.append(step)
        taken = {t.name for t in served_outputs}
        clash = [t.name for t in added if t.name in taken]
        if clash:
            raise fail(where, f"derived output {clash[0]!r} clashes with a model output")
        if not wanted.keep:
            served_outputs = [t for t in served_outputs if t.name != name]
        served_outputs.extend(added)
    served = replace(model, inputs=tuple(served_inputs), outputs=tuple(served_outputs))
    return Processor(config.signature, served, input_steps, output_steps)


def _input_step(
    spec: TensorSpec, wanted: InputProcessing, fail: Fail
) -> tuple[_InputStep, TensorSpec]:
    model_dtype = spec.dtype
    client_dtype = wanted.dtype or model_dtype
    if (client_dtype == "string") != (model_dtype == "string"):
        raise fail(f"cannot cast {client_dtype} to the model's {model_dtype}")
    scaling = wanted.mean is not None or wanted.std is not None
    if scaling and not model_dtype.startswith("float"):
        raise fail(f"mean/std need a float model input; this one is {model_dtype}")
    model_rest = spec.shape[1:]
    served_shape = spec.shape
    reshape_to: tuple[int, ...] | None = None
    if wanted.shape is not None:
        if not spec.shape or spec.shape[0] != -1:
            raise fail("shape needs a model input with a batch dimension")
        if any(d == 0 or d < -1 for d in wanted.shape) or wanted.shape.count(-1) > 1:
            raise fail(f"shape {wanted.shape}: sizes must be positive (one -1 allowed)")
        if model_rest.count(-1) > 1:
            raise fail("cannot reshape into a model input with several unknown dimensions")
        known = -1 not in model_rest and -1 not in wanted.shape
        if known and math.prod(model_rest) != math.prod(wanted.shape):
            raise fail(
                f"shape {wanted.shape} has {math.prod(wanted.shape)} values per row; the "
                f"model's {list(model_rest)} has {math.prod(model_rest)}"
            )
        reshape_to = model_rest
        served_shape = (-1, *wanted.shape)
    model_np = numpy_dtype(model_dtype)
    mean = _scale_array(wanted.mean, model_np, model_rest, "mean", fail)
    std = _scale_array(wanted.std, model_np, model_rest, "std", fail)
    if std is not None and np.any(std == 0):
        raise fail("std must not be zero")
    step = _InputStep(spec.name, model_np, reshape_to, mean, std)
    return step, TensorSpec(spec.name, client_dtype, served_shape)


def _scale_array(
    value: float | list[float] | None, dtype: np.dtype[Any], rest: tuple[int, ...],
    field: str, fail: Fail,
) -> np.ndarray | None:
    if value is None:
        return None
    array = np.asarray(value, dtype=dtype)
    if -1 not in rest:
        try:
            np.broadcast_shapes(array.shape, rest)
        except ValueError:
            raise fail(
                f"{field} has {array.size} values; it must broadcast over the model's "
                f"shape {list(rest)} (one value, or one per last-axis entry)"
            ) from None
    return array


def _output_step(
    spec: TensorSpec, wanted: OutputProcessing, fail: Fail
) -> tuple[_OutputStep, list[TensorSpec]]:
    if spec.dtype in ("string", "bool") and (wanted.labels or wanted.top_k or wanted.threshold):
        raise fail(f"labels, top_k and threshold need a numeric output; this one is {spec.dtype}")
    if len(spec.shape) not in (1, 2):
        raise fail(f"labels, top_k and threshold need an output of shape [-1] or [-1, classes]; "
                   f"this one is {list(spec.shape)}")
    classes = 1 if len(spec.shape) == 1 else spec.shape[1]
    single = classes == 1
    if wanted.threshold is not None and not single:
        raise fail(f"threshold needs a single-score output; this one has {classes} classes")
    if wanted.labels is not None:
        needed = 2 if single else classes
        if needed != -1 and len(wanted.labels) != needed:
            what = "a single score needs 2 labels (below, at-or-above the threshold)" if single \
                else f"the output has {classes} classes"
            raise fail(f"{len(wanted.labels)} labels given; {what}")
    if wanted.top_k is not None:
        if single:
            raise fail("top_k needs an output with several classes")
        if classes != -1 and wanted.top_k > classes:
            raise fail(f"top_k {wanted.top_k} is more than the {classes} classes")
    labels = None if wanted.labels is None else np.array(
        [label.encode() for label in wanted.labels], dtype=object
    )
    name = spec.name
    added: list[TensorSpec] = []
    if wanted.labels is not None or wanted.threshold is not None:
        added.append(TensorSpec(f"{name}_class", "int64", (-1,)))
    if wanted.labels is not None:
        added.append(TensorSpec(f"{name}_label", "string", (-1,)))
    if wanted.top_k is not None:
        k = wanted.top_k
        added.append(TensorSpec(f"{name}_top_k_scores", spec.dtype, (-1, k)))
        added.append(TensorSpec(f"{name}_top_k_classes", "int64", (-1, k)))
        if wanted.labels is not None:
            added.append(TensorSpec(f"{name}_top_k_labels", "string", (-1, k)))
    step = _OutputStep(name, labels, wanted.top_k, wanted.threshold, wanted.keep)
    return step, added
