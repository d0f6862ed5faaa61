"""TF Serving's ``ModelSpec``: the version a request names, and the one a response reports."""

from __future__ import annotations

from typing import Any

from modelplane_runtime import rules
from modelplane_runtime.errors import InvalidInput
from modelplane_runtime.serving import Runtime


def resolve(runtime: Runtime, model_spec: Any) -> int:
    """The version a ``ModelSpec`` names: ``version``, ``version_label``, or the newest."""
    name = model_spec.name
    if not name:
        raise InvalidInput("model_spec.name is missing")
    choice = model_spec.WhichOneof("version_choice")
    if choice == "version":
        number = rules.version_number(str(model_spec.version.value))
        return runtime.dataplane.resolve(name, number)
    if choice == "version_label":
        return runtime.dataplane.resolve(name, label=model_spec.version_label)
    return runtime.dataplane.resolve(name)


def fill_model_spec(target: Any, name: str, version: int, signature: str) -> None:
    """A response's ``model_spec`` as TF Serving fills it (MakeModelSpec): the name, the
    version that served, the signature used."""
    target.name = name
    target.version.value = version
    target.signature_name = signature
