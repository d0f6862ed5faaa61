"""TF Serving's ``tensorflow.serving.ModelService``: GetModelStatus.

Each served version's state in TF Serving's vocabulary (START, LOADING, AVAILABLE,
UNLOADING, END) with its status (OK, or UNKNOWN and the load error), newest first; a
version or label that names no served version is NOT_FOUND, as TF Serving answers
"Could not find version N of model M". HandleReloadConfigRequest is UNIMPLEMENTED: what a
runtime serves is its settings' (the ModelDeployment's), not a config pushed at run time.
"""

from __future__ import annotations

from typing import Any, Final

import grpc
from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

from modelplane_runtime import rules
from modelplane_runtime.errors import InvalidInput, ModelNotFound, Unimplemented
from modelplane_runtime.grpc.rpc import Calls
from modelplane_runtime.serving import Runtime

SERVICE: Final = "tensorflow.serving.ModelService"
_OK: Final = 0
_UNKNOWN: Final = 2
"""tensorflow.error.Code values for a version's ``status.error_code``."""


class ModelService(model_service_pb2_grpc.ModelServiceServicer):  # type: ignore[misc]
    """GetModelStatus over the data plane's version states."""

    def __init__(self, runtime: Runtime, calls: Calls) -> None:
        self.runtime = runtime
        self.calls = calls

    async def GetModelStatus(
        self, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> Any:
        """Every served version's state (or the one the request names)."""
        return await self.calls.run(
            context, f"/{SERVICE}/GetModelStatus", request.model_spec.name,
            lambda trace: self._status(request),
        )

    async def _status(self, request: Any) -> Any:
        dataplane = self.runtime.dataplane
        model_spec = request.model_spec
        name = model_spec.name
        if not name:
            raise InvalidInput("model_spec.name is missing")
        versions = dataplane.versions(name)
        choice = model_spec.WhichOneof("version_choice")
        wanted: int | None = None
        if choice == "version":
            wanted = rules.version_number(str(model_spec.version.value))
        elif choice == "version_label":
            wanted = dataplane.resolve(name, label=model_spec.version_label)
        if wanted is not None:
            versions = [v for v in versions if v.version == wanted]
            if not versions:
                raise ModelNotFound(f"could not find version {wanted} of model '{name}'")
        response = get_model_status_pb2.GetModelStatusResponse()
        states = get_model_status_pb2.ModelVersionStatus.State
        for version in versions:
            entry = response.model_version_status.add()
            entry.version = version.version
            entry.state = states.Value(version.state)
            entry.status.error_code = _UNKNOWN if version.error else _OK
            entry.status.error_message = version.error
        return response

    async def HandleReloadConfigRequest(
        self, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> Any:
        """Not served: the runtime's models come from its settings."""

        async def refuse(trace: object) -> Any:
            raise Unimplemented(
                "HandleReloadConfigRequest is not served: the models a runtime serves come "
                "from its settings (the ModelDeployment), not from a pushed config"
            )

        return await self.calls.run(
            context, f"/{SERVICE}/HandleReloadConfigRequest", None, refuse
        )
