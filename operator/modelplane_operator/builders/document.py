"""Manifests as YAML text: block style, keys in build order, no anchors, deterministic; and
YAML read the way kubectl reads it (``load_all``)."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import yaml


class _Dumper(yaml.SafeDumper):
    """SafeDumper that never writes anchors/aliases (kubectl reads them, people do not)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump(obj: Any) -> str:
    """One manifest as YAML."""
    return yaml.dump(obj, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=100)


def dump_all(objs: Iterable[Any]) -> str:
    """Several manifests as one multi-document YAML stream."""
    return yaml.dump_all(
        list(objs),
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        explicit_start=True,
        width=100,
    )


# ---- reading manifests as kubectl does -------------------------------------------------------
#
# kubectl reads YAML with sigs.k8s.io/yaml (a fork of go-yaml v2) and sends JSON. That is
# YAML 1.1 for booleans (y, yes, on, n, no, off, in any of their cases), Go's integer
# syntax (010 and 0o10 are octal, 0x hex, 0b binary, underscores ignored), no
# sexagesimal numbers and no timestamps (1:30 and 2001-12-14 stay strings), and floats
# that JSON then writes as integers when they are whole (1e3 is 1000). Map keys become
# JSON strings: an unquoted key y is "true". PyYAML's safe loader differs on each point
# (y stays "y", 1:30 is 90, 1e3 is "1e3"), so `modelplane render` would show children of
# an object other than the one kubectl stores; this loader reads what kubectl sends.

_BOOL = re.compile(r"^(?:y|Y|yes|Yes|YES|true|True|TRUE|on|On|ON"
                   r"|n|N|no|No|NO|false|False|FALSE|off|Off|OFF)$")
_TRUE = frozenset({"y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"})
_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_NUMBER = re.compile(r"^[-+.0-9][-+.0-9a-zA-Z_]*$")
_SPECIAL_FLOAT = re.compile(r"^(?:[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$")
_GO_INT = re.compile(r"^([-+]?)(0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|0[0-7]*|[1-9][0-9]*)$")
_YAML_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
_NUMBER_TAG = "tag:modelplane.io,2026:number"


class KubectlLoader(yaml.SafeLoader):
    """A safe loader resolving plain scalars the way kubectl (go-yaml v2) does."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        """Mappings with JSON keys, converted as they are read (in Python, True and 1
        are the same dict key; in JSON "true" and "1" are two)."""
        self.flatten_mapping(node)
        mapping: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            try:
                name = _json_key(key)
            except ValueError as exc:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark, str(exc),
                    key_node.start_mark) from None
            mapping[name] = self.construct_object(value_node, deep=deep)  # type: ignore[no-untyped-call]
        return mapping


KubectlLoader.yaml_implicit_resolvers = {}
KubectlLoader.add_implicit_resolver("tag:yaml.org,2002:bool", _BOOL, list("yYnNtTfFoO"))
KubectlLoader.add_implicit_resolver("tag:yaml.org,2002:null", _NULL, ["~", "n", "N", ""])
KubectlLoader.add_implicit_resolver("tag:yaml.org,2002:merge", re.compile(r"^<<$"), ["<"])
KubectlLoader.add_implicit_resolver("tag:yaml.org,2002:float", _SPECIAL_FLOAT, list("-+."))
KubectlLoader.add_implicit_resolver(_NUMBER_TAG, _NUMBER, list("-+.0123456789"))


def _go_int(text: str) -> int | None:
    # strconv.ParseInt(text, 0, 64), then ParseUint for the unsigned range above it.
    match = _GO_INT.match(text)
    if match is None:
        return None
    sign, body = match.groups()
    prefix = body[:2].lower()
    if prefix in ("0x", "0o", "0b"):
        value = int(body[2:], {"0x": 16, "0o": 8, "0b": 2}[prefix])
    elif body.startswith("0") and len(body) > 1:
        value = int(body[1:], 8)
    else:
        value = int(body)
    value = -value if sign == "-" else value
    if -(2**63) <= value < 2**63 or (not sign and value < 2**64):
        return value
    return None


def _number(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
    text = str(loader.construct_scalar(node))
    plain = text.replace("_", "")
    whole = _go_int(plain)
    if whole is not None:
        return whole
    if _YAML_FLOAT.match(plain):
        value = float(plain)
        if not math.isinf(value):
            return value
    return text  # not a number after all (2001-12-14, 1.2.3, 1e999): a string


def _special_float(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
    raise yaml.constructor.ConstructorError(
        None, None, f"{node.value} cannot be sent as JSON (kubectl refuses it too)",
        node.start_mark)


def _bool(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> bool:
    return loader.construct_scalar(node) in _TRUE


KubectlLoader.add_constructor(_NUMBER_TAG, _number)
KubectlLoader.add_constructor("tag:yaml.org,2002:bool", _bool)
KubectlLoader.add_constructor("tag:yaml.org,2002:float", _special_float)


def _go_float_key(value: float) -> str:
    # strconv.FormatFloat(value, 'g', -1, 64): shortest digits, exponent form when the
    # exponent is below -4 or at least 6 ("1e+06"), plain decimals otherwise.
    if value == 0:
        return "0"
    number = Decimal(repr(value)).normalize()
    sign, coefficient, power = number.as_tuple()
    assert isinstance(power, int)
    exp = len(coefficient) + power - 1
    minus = "-" if sign else ""
    if exp < -4 or exp >= 6:
        digits = "".join(map(str, coefficient))
        body = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{minus}{body}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    return minus + format(number.copy_abs(), "f")


def _json_key(key: Any) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, int):
        return str(key)
    if isinstance(key, float):
        return _go_float_key(key)
    raise ValueError(f"a map key of type {type(key).__name__} cannot be sent as JSON: {key!r}")


def load_all(text: str) -> list[Any]:
    """The documents of a YAML stream as kubectl sends them (empty documents dropped).

    Raises ``yaml.YAMLError`` for text kubectl would not send (bad YAML, .inf, null keys).
    """
    return [_whole(doc) for doc in yaml.load_all(text, Loader=KubectlLoader) if doc is not None]


def _whole(value: Any) -> Any:
    # JSON writes 1000.0 as 1000, which the API server reads back as an integer.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _whole(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_whole(item) for item in value]
    return value
