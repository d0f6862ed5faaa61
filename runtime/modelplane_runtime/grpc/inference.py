"""The Open Inference Protocol's ``inference.GRPCInferenceService`` (KServe v2, Triton).

ServerLive and ServerReady stay open without a token and while draining (they are the
protocol's health checks, like ``/v2/health/*``); every other call needs the token when
tokens are configured. ModelReady answers ``ready: false`` for a model that is not served
or not loaded, as Triton does, rather than an error. ModelInfer reads typed ``contents`` or
``raw_input_contents`` (codecs/v2proto.py), runs through the one data plane, echoes the
request ``id``, answers the outputs the request names (all when it names none) in the form
it used, and takes the signature from the ``signature_name`` parameter (the same Modelplane
extension as the HTTP v2 body's ``parameters``). The methods Triton adds beyond the
protocol (streaming, repository, shared memory, statistics) answer UNIMPLEMENTED.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc

from modelplane_runtime import __version__, rules
from modelplane_runtime.codecs.v2 import PLATFORM, SERVER_NAME
from modelplane_runtime.codecs.v2proto import parameter, read_inputs, write_outputs
from modelplane_runtime.dataplane.versions import AVAILABLE
from modelplane_runtime.errors import InvalidInput, ModelplaneError
from modelplane_runtime.grpc.rpc import Calls, traced_submit
from modelplane_runtime.serving import Runtime
from modelplane_runtime.signature import SignatureSpec, v2_datatype

if TYPE_CHECKING:
    from modelplane_runtime.tracing import RequestTrace

SERVICE: Final = "inference.GRPCInferenceService"
SIGNATURE_PARAMETER: Final = "signature_name"


class InferenceService(service_pb2_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]
    """The v2 protocol's calls over the data plane."""

    def __init__(self, runtime: Runtime, calls: Calls) -> None:
        self.runtime = runtime
        self.calls = calls

    def _resolve(self, name: str, version: str) -> int:
        return self.runtime.dataplane.resolve(name, rules.version_number(version or None))

    async def ServerLive(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        """Always live while the process answers."""

        async def live(trace: RequestTrace | None) -> Any:
            return service_pb2.ServerLiveResponse(live=True)

        return await self.calls.run(context, f"/{SERVICE}/ServerLive", None, live, auth=False)

    async def ServerReady(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        """Ready once the model is loaded, until the drain begins."""

        async def ready(trace: RequestTrace | None) -> Any:
            return service_pb2.ServerReadyResponse(ready=self.runtime.ready)

        return await self.calls.run(context, f"/{SERVICE}/ServerReady", None, ready, auth=False)

    async def ServerMetadata(
        self, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> Any:
        """The server's name and version."""

        async def metadata(trace: RequestTrace | None) -> Any:
            return service_pb2.ServerMetadataResponse(
                name=SERVER_NAME, version=__version__, extensions=[]
            )

        return await self.calls.run(context, f"/{SERVICE}/ServerMetadata", None, metadata)

    async def ModelReady(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        """Whether the model (version) can take requests now."""

        async def ready(trace: RequestTrace | None) -> Any:
            try:
                self._resolve(request.name, request.version)
            except InvalidInput:
                raise
            except ModelplaneError:  # not served, or not loaded
                return service_pb2.ModelReadyResponse(ready=False)
            return service_pb2.ModelReadyResponse(ready=self.runtime.ready)

        return await self.calls.run(context, f"/{SERVICE}/ModelReady", request.name, ready)

    async def ModelMetadata(
        self, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> Any:
        """Name, versions, platform, and the default signature's inputs and outputs."""
        return await self.calls.run(
            context, f"/{SERVICE}/ModelMetadata", request.name,
            lambda trace: self._metadata(request),
        )

    async def _metadata(self, request: Any) -> Any:
        dataplane = self.runtime.dataplane
        name = request.name
        version = self._resolve(name, request.version)
        spec = dataplane.signature(name, version)
        response = service_pb2.ModelMetadataResponse(
            name=name,
            versions=[str(v.version) for v in dataplane.versions(name) if v.state == AVAILABLE],
            platform=PLATFORM,
        )
        for tensors, specs in ((response.inputs, spec.inputs), (response.outputs, spec.outputs)):
            for tensor in specs:
                tensors.add(name=tensor.name, datatype=v2_datatype(tensor.dtype),
                            shape=list(tensor.shape))
        return response

    async def ModelInfer(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        """Run the model on the request's tensors (batched with other requests)."""
        return await self.calls.run(
            context, f"/{SERVICE}/ModelInfer", request.model_name,
            lambda trace: self._infer(request, trace),
        )

    async def _infer(self, request: Any, trace: RequestTrace | None) -> Any:
        runtime = self.runtime
        dataplane = runtime.dataplane
        name = request.model_name
        version = self._resolve(name, request.model_version)
        spec = dataplane.signature(name, version, parameter(request.parameters,
                                                             SIGNATURE_PARAMETER))
        names = _requested(request.outputs, spec)
        if trace is None:
            inputs = read_inputs(request, runtime.settings.max_body_bytes)
            outputs = await dataplane.submit(name, version, spec.name, inputs,
                                             strict_dtypes=True)
        else:
            trace.decoding()
            inputs = read_inputs(request, runtime.settings.max_body_bytes)
            trace.decoded()
            outputs = await traced_submit(dataplane, trace, name, version, spec.name, inputs)
            trace.encoding()
        response = service_pb2.ModelInferResponse(
            model_name=name, model_version=str(version), id=request.id
        )
        write_outputs(response, outputs, names or list(outputs),
                      raw=bool(request.raw_input_contents))
        if trace is not None:
            trace.encoded()
        return response


def _requested(outputs: Any, spec: SignatureSpec) -> list[str]:
    """The outputs a request names (none: every output), checked against the signature."""
    names: list[str] = []
    for output in outputs:
        if spec.output(output.name) is None:
            known = ", ".join(t.name for t in spec.outputs)
            raise InvalidInput(
                f"unknown output {output.name[:64]!r}; the model returns: {known}"
            )
        if output.name not in names:
            names.append(output.name)
    return names
