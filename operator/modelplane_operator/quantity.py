"""Kubernetes resource quantities: the grammar, and the canonical form the API server stores."""

from __future__ import annotations

import functools
import re
from decimal import ROUND_CEILING, Decimal

# Kubernetes' resource.Quantity grammar (apimachinery/pkg/api/resource), non-negative only.
QUANTITY = re.compile(
    r"^\+?([0-9]+(\.[0-9]*)?|\.[0-9]+)(([KMGTPE]i)|[numkMGTPE]|([eE][+-]?[0-9]+))?$"
)

_DECIMAL_SUFFIXES = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12,
                     "P": 15, "E": 18}
_BINARY_SUFFIXES = ("", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei")


@functools.lru_cache(maxsize=1024)  # a cluster uses few distinct quantities; this is per object
def canonical_quantity(text: str) -> str:
    """A quantity in the canonical form the API server stores (``1024Mi`` -> ``1Gi``).

    Rendering canonical values means a re-applied child equals what the server returned,
    so reconciles write nothing. Mirrors apimachinery's ``Quantity.CanonicalizeBytes``:
    binary suffixes stay binary for integral values >= 1024; otherwise the value becomes
    an integer mantissa with a decimal suffix (exponent a multiple of 3), nano precision
    rounded up.
    """
    match = QUANTITY.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a Kubernetes quantity")
    number, suffix = match.group(1), match.group(3) or ""
    value = Decimal(number)
    exponent_form = suffix[:1] in ("e", "E")
    if suffix.endswith("i"):
        value *= 1024 ** _BINARY_SUFFIXES.index(suffix)
    elif exponent_form:
        value = value.scaleb(int(suffix[1:]))
    else:
        value = value.scaleb(_DECIMAL_SUFFIXES[suffix])
    nanos = int((value * 1_000_000_000).to_integral_value(rounding=ROUND_CEILING))
    if nanos == 0:
        return "0"
    if suffix.endswith("i") and nanos % 1_000_000_000 == 0 and nanos >= 1024 * 1_000_000_000:
        whole, power = nanos // 1_000_000_000, 0
        while whole % 1024 == 0 and power < len(_BINARY_SUFFIXES) - 1:
            whole, power = whole // 1024, power + 1
        return f"{whole}{_BINARY_SUFFIXES[power]}"
    mantissa, exponent = nanos, -9
    while mantissa % 1000 == 0 and exponent < 18:
        mantissa, exponent = mantissa // 1000, exponent + 3
    if exponent_form:
        return f"{mantissa}e{exponent}" if exponent else str(mantissa)
    decimal_suffix = next(k for k, v in _DECIMAL_SUFFIXES.items() if v == exponent)
    return f"{mantissa}{decimal_suffix}"
