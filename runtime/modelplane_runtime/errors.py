"""Runtime errors carry their answer: the HTTP status, and the gRPC code for the same case.

One handler per front door turns them into ``{"error": ...}`` (HTTP) or a status with the
message (gRPC); see rules.error_status. The gRPC codes follow TF Serving and the Open
Inference Protocol: unknown model or version NOT_FOUND, bad input INVALID_ARGUMENT, not
ready or draining UNAVAILABLE.
"""

from __future__ import annotations


class ModelplaneError(Exception):
    """Base of every error a client may see; ``status_code`` is the HTTP answer."""

    status_code = 500
    grpc_code = "INTERNAL"
    """The name of the ``grpc.StatusCode`` member for this error."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(ModelplaneError):
    """The request is malformed: bad JSON, wrong shape or dtype, unknown input name."""

    status_code = 400
    grpc_code = "INVALID_ARGUMENT"


class Unauthenticated(ModelplaneError):
    """No bearer token, or one that is not accepted."""

    status_code = 401
    grpc_code = "UNAUTHENTICATED"


class ModelNotFound(ModelplaneError):
    """No such model, version or label."""

    status_code = 404
    grpc_code = "NOT_FOUND"


class PayloadTooLarge(ModelplaneError):
    """The body is over the configured limit."""

    status_code = 413
    grpc_code = "RESOURCE_EXHAUSTED"


class UnsupportedMediaType(ModelplaneError):
    """The body's content type cannot be read."""

    status_code = 415
    grpc_code = "INVALID_ARGUMENT"


class Unimplemented(ModelplaneError):
    """The request asks for something this server does not do (a method TF Serving has but
    the model cannot serve, such as MultiInference with a predict signature)."""

    status_code = 501
    grpc_code = "UNIMPLEMENTED"


class ModelNotReady(ModelplaneError):
    """The model exists but is loading, failed to load, or the server is draining."""

    status_code = 503
    grpc_code = "UNAVAILABLE"


class ShuttingDown(ModelNotReady):
    """The server is draining after SIGTERM: new requests are refused."""


class RequestTimeout(ModelplaneError):
    """The request was not answered within the configured timeout."""

    status_code = 503
    grpc_code = "DEADLINE_EXCEEDED"


def too_many_rows(count: int, max_rows: int) -> InvalidInput:
    """More rows (the batch dimension) than ``max_rows_per_request`` allows."""
    return InvalidInput(
        f"the request has {count} rows; at most {max_rows} are accepted per request"
    )


class ModelLoadError(Exception):
    """A model could not be loaded; raised at start-up, never to a client."""
