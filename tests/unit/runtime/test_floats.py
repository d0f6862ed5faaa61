"""Narrowing floats: the small-input path and numpy's exact path agree on what overflows."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from modelplane_runtime.floats import narrowed

F32 = np.dtype(np.float32)


@pytest.mark.parametrize("values", [
    [1.0, -2.5, 3.4e38],                       # the fast path: all within float32's range
    [float("nan"), float("inf"), -float("inf"), 1.0],  # tokens sent on purpose stay
    [1e37] * 1000,                             # large: numpy's path
    [],
])
def test_values_that_fit_are_cast(values: list[float]) -> None:
    array = np.asarray(values, dtype=np.float64)
    cast = narrowed(array, F32)
    assert cast is not None and cast.dtype == F32
    np.testing.assert_array_equal(cast, array.astype(F32))


@pytest.mark.parametrize("values", [[1e300], [1.0, 3.5e38], [1e200, float("nan")],
                                    [-1e39, float("inf")], [1.0] * 999 + [1e39]])
def test_a_finite_value_that_would_become_infinite_is_refused(values: list[float]) -> None:
    with warnings.catch_warnings(record=True) as caught:  # the filters in force, recorded
        assert narrowed(np.asarray(values, dtype=np.float64), F32) is None
    assert not caught  # nothing warns on the way (logs stay clean)


def test_integers() -> None:
    ints = np.asarray([[1, 2], [2**62, -(2**62)]])
    cast = narrowed(ints, F32)
    assert cast is not None and cast.dtype == F32
    assert narrowed(np.asarray([70000]), np.dtype(np.float16)) is None  # over 65504
    fits = narrowed(np.asarray([60000]), np.dtype(np.float16))
    assert fits is not None and fits[0] == 60000
