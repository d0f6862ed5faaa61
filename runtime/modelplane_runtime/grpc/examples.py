"""TF Serving's tf.Example methods: Classify, Regress and MultiInference.

They serve SavedModel signatures whose ``method_name`` says classify or regress (TF1's
``classification_signature_def`` / ``regression_signature_def``): one string input that
takes serialized ``tf.Example`` protos, and ``classes``/``scores`` (classify) or
``outputs`` (regress). As in TF Serving's classifier.cc and regressor.cc: a request without
``signature_name`` uses ``serving_default``; a signature of another method is
INVALID_ARGUMENT ("Expected classification signature method_name ..."); an
``ExampleListWithContext`` sends each example merged with the context (the serialized
context followed by the serialized example, which protobuf parses as a merge); an empty
input is INVALID_ARGUMENT. The serialized examples go through the data plane like any
Predict, so they batch with other requests for the same signature.

MultiInference runs several such signatures of one model on the same input; a task whose
method is neither classify nor regress is UNIMPLEMENTED, as in TF Serving.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

import numpy as np
from tensorflow_serving.apis import (
    classification_pb2,
    inference_pb2,
    regression_pb2,
)

from modelplane_runtime.errors import InvalidInput, Unimplemented
from modelplane_runtime.grpc.modelspec import fill_model_spec, resolve
from modelplane_runtime.serving import Runtime
from modelplane_runtime.signature import CLASSIFY_METHOD, REGRESS_METHOD, SignatureSpec

CLASSES: Final = "classes"
SCORES: Final = "scores"
REGRESSION_OUTPUT: Final = "outputs"
_KIND: Final = {CLASSIFY_METHOD: "classification", REGRESS_METHOD: "regression"}


def serialized_examples(source: Any) -> np.ndarray:
    """The request's ``Input`` as a 1-D object array of serialized tf.Examples."""
    kind = source.WhichOneof("kind")
    if kind == "example_list":
        items = [example.SerializeToString() for example in source.example_list.examples]
    elif kind == "example_list_with_context":
        listed = source.example_list_with_context
        context = listed.context.SerializeToString()
        items = [context + example.SerializeToString() for example in listed.examples]
    else:
        items = []
    if not items:
        raise InvalidInput("the input is empty: send example_list or example_list_with_context")
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array


class ExampleMethods:
    """Classify, Regress and MultiInference over the data plane."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def classify(self, request: Any) -> Any:
        """A ClassificationResponse for a ClassificationRequest."""
        examples = serialized_examples(request.input)
        response = classification_pb2.ClassificationResponse()
        await self._run(request.model_spec, CLASSIFY_METHOD, examples, response.model_spec,
                        response.result)
        return response

    async def regress(self, request: Any) -> Any:
        """A RegressionResponse for a RegressionRequest."""
        examples = serialized_examples(request.input)
        response = regression_pb2.RegressionResponse()
        await self._run(request.model_spec, REGRESS_METHOD, examples, response.model_spec,
                        response.result)
        return response

    async def multi_inference(self, request: Any) -> Any:
        """A MultiInferenceResponse: each task's result, in the tasks' order."""
        tasks = list(request.tasks)
        if not tasks:
            raise InvalidInput("MultiInferenceRequest has no tasks")
        names = {task.model_spec.name for task in tasks}
        if len(names) > 1:
            raise InvalidInput("every task of a MultiInferenceRequest must name the same model")
        seen: set[str] = set()
        for task in tasks:
            if task.method_name not in _KIND:
                raise Unimplemented(
                    f"unsupported signature method_name {task.method_name[:64]!r} (MultiInference "
                    f"serves {CLASSIFY_METHOD} and {REGRESS_METHOD})"
                )
            signature = task.model_spec.signature_name or "serving_default"
            if signature in seen:
                raise InvalidInput(f"signature {signature[:64]!r} is evaluated twice")
            seen.add(signature)
        examples = serialized_examples(request.input)
        response = inference_pb2.MultiInferenceResponse()
        results = [response.results.add() for _ in tasks]
        await asyncio.gather(*[
            self._run(
                task.model_spec, task.method_name, examples, result.model_spec,
                result.classification_result if task.method_name == CLASSIFY_METHOD
                else result.regression_result,
            )
            for task, result in zip(tasks, results, strict=True)
        ])
        return response

    async def _run(
        self, model_spec: Any, method: str, examples: np.ndarray, spec_out: Any, result: Any
    ) -> None:
        dataplane = self.runtime.dataplane
        name = model_spec.name
        version = resolve(self.runtime, model_spec)
        spec = dataplane.signature(name, version, model_spec.signature_name or None)
        if spec.method_name != method:
            raise InvalidInput(
                f"expected {_KIND[method]} signature method_name to be {method}; "
                f"signature '{spec.name}' has {spec.method_name}"
            )
        if len(spec.inputs) != 1 or spec.inputs[0].dtype != "string":
            raise InvalidInput(
                f"signature '{spec.name}' must take one string input (serialized tf.Examples)"
            )
        outputs = await dataplane.submit(
            name, version, spec.name, {spec.inputs[0].name: examples}, strict_dtypes=True
        )
        fill_model_spec(spec_out, name, version, spec.name)
        if method == CLASSIFY_METHOD:
            _classifications(result, outputs, len(examples), spec)
        else:
            _regressions(result, outputs, len(examples), spec)


def _classifications(
    result: Any, outputs: dict[str, np.ndarray], count: int, spec: SignatureSpec
) -> None:
    classes, scores = outputs.get(CLASSES), outputs.get(SCORES)
    if classes is None and scores is None:
        raise InvalidInput(
            f"classification signature '{spec.name}' returns neither classes nor scores"
        )
    for array, what in ((classes, CLASSES), (scores, SCORES)):
        if array is not None and (array.ndim != 2 or array.shape[0] != count):
            raise InvalidInput(
                f"expected {what} of shape [{count}, num_classes], the model returned "
                f"{list(array.shape)}"
            )
    if classes is not None and scores is not None and classes.shape != scores.shape:
        raise InvalidInput(
            f"classes {list(classes.shape)} and scores {list(scores.shape)} disagree"
        )
    width = (classes if classes is not None else scores).shape[1]  # type: ignore[union-attr]
    for row in range(count):
        entries = result.classifications.add().classes
        for column in range(width):
            entry = entries.add()
            if classes is not None:
                label = classes[row, column]
                entry.label = label.decode("utf-8", "replace") if isinstance(label, bytes) else str(
                    label
                )
            if scores is not None:
                entry.score = float(scores[row, column])


def _regressions(
    result: Any, outputs: dict[str, np.ndarray], count: int, spec: SignatureSpec
) -> None:
    values = outputs.get(REGRESSION_OUTPUT)
    if values is None:
        raise InvalidInput(f"regression signature '{spec.name}' returns no '{REGRESSION_OUTPUT}'")
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim != 1 or values.shape[0] != count:
        raise InvalidInput(
            f"expected outputs of shape [{count}] or [{count}, 1], the model returned "
            f"{list(outputs[REGRESSION_OUTPUT].shape)}"
        )
    for value in values.tolist():
        result.regressions.add().value = float(value)
