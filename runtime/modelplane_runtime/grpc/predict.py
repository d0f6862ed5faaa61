"""TF Serving's ``tensorflow.serving.PredictionService``: Predict and GetModelMetadata here;
Classify, Regress and MultiInference in examples.py.

Predict reads ``model_spec`` as TF Serving does (``version`` or ``version_label``; no
``signature_name`` means ``serving_default``), decodes the TensorProto inputs (codecs/
tfproto.py), submits them to the one data plane (so they batch with HTTP requests), and
answers the signature's outputs (only those in ``output_filter`` when it is set) with the
response ``model_spec`` filled in: the name, the version that served, the signature used.
Dtypes are strict: a float64 tensor for a float32 input is INVALID_ARGUMENT, as TF Serving
answers "Expects arg[0] to be float but double is provided".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import grpc
from google.protobuf import any_pb2
from tensorflow.core.framework import tensor_shape_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from modelplane_runtime.codecs.tfproto import dtype_enum, read_tensor, write_tensor
from modelplane_runtime.errors import InvalidInput
from modelplane_runtime.grpc import examples
from modelplane_runtime.grpc.modelspec import fill_model_spec, resolve
from modelplane_runtime.grpc.rpc import Calls, traced_submit
from modelplane_runtime.serving import Runtime
from modelplane_runtime.signature import SignatureSpec

if TYPE_CHECKING:
    from modelplane_runtime.tracing import RequestTrace

SERVICE: Final = "tensorflow.serving.PredictionService"
PREDICT: Final = f"/{SERVICE}/Predict"
SIGNATURE_DEF: Final = "signature_def"
"""The one ``metadata_field`` GetModelMetadata serves, as in TF Serving."""


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):  # type: ignore[misc]
    """Predict, GetModelMetadata, and the tf.Example methods over the data plane."""

    def __init__(self, runtime: Runtime, calls: Calls) -> None:
        self.runtime = runtime
        self.calls = calls
        self.examples = examples.ExampleMethods(runtime)

    async def Predict(
        self, request: predict_pb2.PredictRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> predict_pb2.PredictResponse:
        """Run the signature on the request's tensors (batched with other requests)."""
        return await self.calls.run(
            context, PREDICT, request.model_spec.name, lambda trace: self._predict(request, trace)
        )

    async def _predict(
        self, request: predict_pb2.PredictRequest, trace: RequestTrace | None
    ) -> predict_pb2.PredictResponse:
        runtime = self.runtime
        dataplane = runtime.dataplane
        model_spec = request.model_spec
        name = model_spec.name
        version = resolve(runtime, model_spec)
        spec = dataplane.signature(name, version, model_spec.signature_name or None)
        wanted = _output_filter(request.output_filter, spec)
        limit = runtime.settings.max_body_bytes
        if trace is None:
            inputs = {k: read_tensor(tensor, k, limit) for k, tensor in request.inputs.items()}
            outputs = await dataplane.submit(name, version, spec.name, inputs,
                                             strict_dtypes=True)
        else:
            trace.decoding()
            inputs = {k: read_tensor(tensor, k, limit) for k, tensor in request.inputs.items()}
            trace.decoded()
            outputs = await traced_submit(dataplane, trace, name, version, spec.name, inputs)
            trace.encoding()
        response = predict_pb2.PredictResponse()
        fill_model_spec(response.model_spec, name, version, spec.name)
        tensors = response.outputs
        for key in wanted or outputs:
            write_tensor(tensors[key], outputs[key])
        if trace is not None:
            trace.encoded()
        return response

    async def GetModelMetadata(
        self,
        request: get_model_metadata_pb2.GetModelMetadataRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        """The model's signatures (``signature_def``), as TF Serving's metadata answer."""
        return await self.calls.run(
            context, f"/{SERVICE}/GetModelMetadata", request.model_spec.name,
            lambda trace: self._metadata(request),
        )

    async def _metadata(
        self, request: get_model_metadata_pb2.GetModelMetadataRequest
    ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        fields = list(request.metadata_field)
        if not fields:
            raise InvalidInput("GetModelMetadataRequest must name a metadata_field (signature_def)")
        for field in fields:
            if field != SIGNATURE_DEF:
                raise InvalidInput(f"metadata field {field[:64]!r} is not supported")
        name = request.model_spec.name
        version = resolve(self.runtime, request.model_spec)
        signatures = self.runtime.dataplane.signatures(name, version)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = name
        response.model_spec.version.value = version
        defs = get_model_metadata_pb2.SignatureDefMap()
        for key, spec in signatures.items():
            signature_def(defs.signature_def[key], spec)
        packed = any_pb2.Any()
        packed.Pack(defs)
        response.metadata[SIGNATURE_DEF].CopyFrom(packed)
        return response

    async def Classify(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        """Classify tf.Examples with a classification signature (examples.py)."""
        return await self.calls.run(
            context, f"/{SERVICE}/Classify", request.model_spec.name,
            lambda trace: self.examples.classify(request),
        )

    async def Regress(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        """Regress tf.Examples with a regression signature (examples.py)."""
        return await self.calls.run(
            context, f"/{SERVICE}/Regress", request.model_spec.name,
            lambda trace: self.examples.regress(request),
        )

    async def MultiInference(
        self, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> Any:
        """Several classify/regress signatures on the same tf.Examples (examples.py)."""
        name = request.tasks[0].model_spec.name if request.tasks else ""
        return await self.calls.run(
            context, f"/{SERVICE}/MultiInference", name,
            lambda trace: self.examples.multi_inference(request),
        )


def _output_filter(names: Any, spec: SignatureSpec) -> list[str]:
    """The outputs a request's ``output_filter`` keeps (all when empty), checked."""
    wanted: list[str] = []
    for name in names:
        if spec.output(name) is None:
            known = ", ".join(t.name for t in spec.outputs)
            raise InvalidInput(
                f"output_filter names {name[:64]!r}, which signature '{spec.name}' does not "
                f"return (outputs: {known})"
            )
        if name in wanted:
            raise InvalidInput(f"output_filter names {name[:64]!r} twice")
        wanted.append(name)
    return wanted


def signature_def(target: meta_graph_pb2.SignatureDef, spec: SignatureSpec) -> None:
    """Fill a ``SignatureDef`` (inputs, outputs with dtype and shape, method name)."""
    for tensors, specs in ((target.inputs, spec.inputs), (target.outputs, spec.outputs)):
        for tensor in specs:
            info = tensors[tensor.name]
            info.name = tensor.name
            info.dtype = dtype_enum(tensor.dtype)
            info.tensor_shape.CopyFrom(
                tensor_shape_pb2.TensorShapeProto(
                    dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=size) for size in tensor.shape]
                )
            )
    target.method_name = spec.method_name
