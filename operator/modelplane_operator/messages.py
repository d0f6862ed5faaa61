"""InvalidSpec and its messages: pydantic's errors as field paths a user wrote.

The message of an ``InvalidSpec`` ends up in the ``Ready`` condition and an Event, so it
names the field as it appears in YAML (``spec.autoscaling.maxReplicas``), not pydantic's
location tuple. It is bounded: the first ``MAX_PROBLEMS`` problems, each cut to
``MAX_PROBLEM_CHARS``, and a count of the rest (5,000 bad list items once made a 564 KB
message, and the API server refused the status write that carried it).
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

MAX_PROBLEMS = 10
"""Problems spelled out in the message; the rest are counted."""
MAX_PROBLEM_CHARS = 300


def _cut(text: str, limit: int = MAX_PROBLEM_CHARS) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


def summary(problems: list[tuple[str, str]]) -> str:
    """The message for a list of (field, problem): the first few, and how many more."""
    shown = "; ".join(_cut(f"{field}: {message}") for field, message in problems[:MAX_PROBLEMS])
    rest = len(problems) - MAX_PROBLEMS
    return shown + (f"; and {rest} more problem{'s' if rest > 1 else ''}" if rest > 0 else "")


class InvalidSpec(ValueError):
    """A ModelDeployment is invalid; ``field`` is the path as written (``spec.replicas``)."""

    def __init__(self, field: str, message: str, more: list[tuple[str, str]] | None = None):
        self.field = field
        self.message = message
        self.problems: list[tuple[str, str]] = [(field, message), *(more or [])]
        """Every problem found, first one first; the message lists the first few."""
        super().__init__(summary(self.problems))


class FieldError(ValueError):
    """Raised inside a model validator to blame one sub-field rather than the whole object."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(message)


_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def field_path(loc: tuple[int | str, ...], root: str = "spec") -> str:
    """A location as YAML spells it: ``spec.scheduling.nodeSelector["kubernetes.io/os"]``."""
    out = root
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.match(part):
            out += f".{part}"
        else:  # a map key such as a node label: quoted, so its dots read as one key
            out += f'["{part}"]'
    return out


def _message(error: Any) -> tuple[str, str]:
    """(extra path, message) for one pydantic error dict."""
    kind = error["type"]
    if kind == "missing":
        return "", "required"
    if kind == "extra_forbidden":
        return "", "unknown field"
    if kind == "value_error":
        cause = error.get("ctx", {}).get("error")
        if isinstance(cause, FieldError):
            sep = "" if cause.field.startswith("[") else "."
            return sep + cause.field, cause.message
        return "", str(cause) if cause is not None else error["msg"]
    msg: str = error["msg"]
    return "", msg[:1].lower() + msg[1:]


def _loc(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    # Pydantic puts union branch and tagged names in loc (e.g. 'function-after[...]');
    # keep only parts that name fields or list indices.
    return tuple(p for p in loc if isinstance(p, int) or not any(c in p for c in "[]( "))


def problems(error: ValidationError) -> list[tuple[str, str]]:
    """(field path, message) for every problem pydantic found, in its order."""
    found = []
    for item in error.errors():
        extra, message = _message(item)
        found.append((field_path(_loc(item["loc"])) + extra, message))
    return found
