"""Kubernetes resource quantities: the grammar, bounds, and the form the API server stores.

A quantity is text, and text can be made to cost: ``1e999000`` is a number with a million
digits, and turning it into nanounits as the API server's canonical form needs took the
operator 22 s (``1e999999`` overflowed Decimal outright). So a quantity is checked before
any arithmetic: at most ``MAX_LENGTH`` characters and a two-digit exponent (the grammar
below, also the CRD's ``pattern``), then its exact value against the field's range. Past
those checks every number has at most about 170 digits, and the arithmetic is cheap.
"""

from __future__ import annotations

import functools
import re
from decimal import ROUND_CEILING, Decimal, localcontext

MAX_LENGTH = 64
"""Longest quantity accepted (the CRD's ``maxLength``); real ones are a few characters."""

# Kubernetes' resource.Quantity grammar (apimachinery/pkg/api/resource), non-negative only,
# with the exponent limited to two digits: 1e99 is already far beyond any resource.
PATTERN = r"^\+?([0-9]+(\.[0-9]*)?|\.[0-9]+)(([KMGTPE]i)|[numkMGTPE]|([eE][+-]?[0-9]{1,2}))?$"
QUANTITY = re.compile(PATTERN)

_DECIMAL_SUFFIXES = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12,
                     "P": 15, "E": 18}
_BINARY_SUFFIXES = ("", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei")
_PRECISION = 200
"""Decimal digits of intermediate results: exact for anything the grammar admits."""


def quantity_value(text: str) -> Decimal:
    """The exact value of a quantity; ValueError (saying why) for anything else."""
    if len(text) > MAX_LENGTH:
        raise ValueError(f"a quantity has at most {MAX_LENGTH} characters")
    match = QUANTITY.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a Kubernetes quantity such as 500m, 2 or 4Gi")
    number, suffix = match.group(1), match.group(3) or ""
    with localcontext(prec=_PRECISION):
        value = Decimal(number)
        if suffix.endswith("i"):
            return value * Decimal(1024) ** _BINARY_SUFFIXES.index(suffix)
        if suffix[:1] in ("e", "E"):
            return value.scaleb(int(suffix[1:]))
        return value.scaleb(_DECIMAL_SUFFIXES[suffix])


@functools.lru_cache(maxsize=1024)  # a cluster uses few distinct quantities; this is per object
def canonical_quantity(text: str) -> str:
    """A quantity in the canonical form the API server stores (``1024Mi`` -> ``1Gi``).

    Rendering canonical values means a re-applied child equals what the server returned,
    so reconciles write nothing. Mirrors apimachinery's ``Quantity.CanonicalizeBytes``:
    binary suffixes stay binary for integral values >= 1024; otherwise the value becomes
    an integer mantissa with a decimal suffix (exponent a multiple of 3), nano precision
    rounded up.
    """
    value = quantity_value(text)
    suffix = QUANTITY.match(text).group(3) or ""  # type: ignore[union-attr]
    exponent_form = suffix[:1] in ("e", "E")
    with localcontext(prec=_PRECISION):
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
