"""JSON log lines on stderr, one object per line, carrying the current request id.

The request id lives in a context variable set by the HTTP middleware, so anything logged
while serving a request (the data plane included) is tagged with it without passing it on.
"""

from __future__ import annotations

import contextvars
import itertools
import logging
import secrets
import sys
import time
from typing import Any, Final, TextIO

import orjson

REQUEST_ID: Final[contextvars.ContextVar[str | None]] = contextvars.ContextVar(
    "modelplane_request_id", default=None
)
"""The id of the request being served (``X-Request-Id``, or one generated for it)."""



class RequestIds:
    """Ids for requests that bring no ``X-Request-Id``: a random per-process prefix and a
    counter (unique across pods and restarts in practice, and ~10x cheaper than uuid4)."""

    def __init__(self) -> None:
        self._prefix = secrets.token_hex(8) + "-"
        self._counter = itertools.count(1)

    def next(self) -> str:
        """A new id."""
        return f"{self._prefix}{next(self._counter):x}"


LEVELS: Final = {
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
}

# Attributes every LogRecord has; anything else was passed with ``extra=`` and is logged.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "color_message",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object: time, level, logger, message, request id, extras."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a single JSON line."""
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = REQUEST_ID.get()
        if request_id is not None:
            entry["request_id"] = request_id
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        try:
            return orjson.dumps(entry, default=str).decode()
        except orjson.JSONEncodeError:
            # A client's lone surrogate ("\ud800") in a message or field: replace it rather
            # than let logging print a non-JSON "--- Logging error ---" traceback.
            return orjson.dumps(_scrubbed(entry), default=str).decode()


def _scrubbed(value: Any) -> Any:
    """``value`` with every string made valid UTF-8 (lone surrogates replaced)."""
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, dict):
        return {_scrubbed(key): _scrubbed(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_scrubbed(item) for item in value]
    return value


def configure_logging(level: str, stream: TextIO | None = None) -> None:
    """Route every logger (ours, uvicorn's, TensorFlow's Python side) to JSON lines on stderr."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(LEVELS.get(level, logging.INFO))
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        named = logging.getLogger(name)
        named.handlers.clear()
        named.propagate = True
