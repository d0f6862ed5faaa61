"""The gRPC front end, a sibling of ``http/``: TF Serving's PredictionService and
ModelService, the Open Inference Protocol's GRPCInferenceService, grpc.health.v1 and
reflection, on one ``grpc.aio`` server sharing the HTTP server's loop and data plane.

Message classes and servicer bases come from maintained generated packages, so the wire
format is exactly the one their clients speak: ``tensorflow-serving-api`` (TF Serving's own
protos; installed without its ``tensorflow`` pin, ``tensorflow-cpu`` provides the module),
``tritonclient.grpc`` (Triton's ``inference`` package, the v2 protocol plus Triton's
extensions, which answer UNIMPLEMENTED here), ``grpcio-health-checking`` and
``grpcio-reflection``. No generated code lives in this repository.

Modules: ``server`` (build, start, drain), ``rpc`` (the request rules of one call),
``predict``/``examples``/``modelspec`` (PredictionService), ``models`` (ModelService),
``inference`` (v2), ``health``.
"""
