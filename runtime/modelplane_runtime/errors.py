"""Runtime errors carry their HTTP status; one handler turns them into ``{"error": ...}``."""

from __future__ import annotations


class ModelplaneError(Exception):
    """Base of every error a client may see; ``status_code`` is the HTTP answer."""

    status_code = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(ModelplaneError):
    """The request is malformed: bad JSON, wrong shape or dtype, unknown input name."""

    status_code = 400


class ModelNotFound(ModelplaneError):
    """No such model, version or label."""

    status_code = 404


class PayloadTooLarge(ModelplaneError):
    """The body is over the configured limit."""

    status_code = 413


class UnsupportedMediaType(ModelplaneError):
    """The body's content type cannot be read."""

    status_code = 415


class ModelNotReady(ModelplaneError):
    """The model exists but is loading, failed to load, or the server is draining."""

    status_code = 503


class RequestTimeout(ModelplaneError):
    """The request was not answered within the configured timeout."""

    status_code = 503


class ModelLoadError(Exception):
    """A model could not be loaded; raised at start-up, never to a client."""
