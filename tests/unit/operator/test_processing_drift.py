"""The processing schema exists twice: the CRD's (operator/processing.py) and the runtime's
(modelplane.yaml, runtime dataplane/processing.py). The operator renders the first into
MODELPLANE_PROCESSING for the second to parse; these tests fail when the two drift."""

from __future__ import annotations

import json
from typing import Any, get_args

import pytest
from modelplane_operator import processing as operator_processing
from modelplane_operator.builders.deployment import processing_config
from modelplane_operator.spec import validate_spec
from modelplane_runtime.dataplane import processing as runtime_processing
from modelplane_runtime.signature import DTYPES


@pytest.mark.parametrize("model", ["InputProcessing", "OutputProcessing"])
def test_both_sides_have_the_same_fields(model: str) -> None:
    operator_fields = set(getattr(operator_processing, model).model_fields)
    runtime_fields = set(getattr(runtime_processing, model).model_fields)
    assert operator_fields == runtime_fields


def test_the_crd_takes_exactly_the_dtypes_the_runtime_knows() -> None:
    assert set(get_args(operator_processing.DType)) == set(DTYPES)


CONFIGS: list[dict[str, Any]] = [
    {"preprocessing": {"image": {"dtype": "uint8", "shape": [28, 28, -1], "mean": [0.5],
                                 "std": [0.25]}}},
    {"postprocessing": {"probabilities": {"labels": ["cat", "dog", "bird"], "top_k": 2,
                                          "keep": False}}},
    {"signatureName": "scores",
     "postprocessing": {"score": {"threshold": 0.5}},
     "preprocessing": {"x": {"dtype": "float64"}}},
]


@pytest.mark.parametrize("runtime", CONFIGS)
def test_what_the_operator_renders_the_runtime_reads_unchanged(runtime: dict[str, Any]) -> None:
    spec = validate_spec({"model": {"uri": "demo://seed-mlp"}, "runtime": runtime})
    rendered = processing_config(spec)
    assert rendered is not None
    parsed = runtime_processing.parse_config(json.dumps(rendered), "MODELPLANE_PROCESSING")
    read = parsed.model_dump()
    assert read["signature"] == rendered.get("signature", "serving_default")
    for section in ("inputs", "outputs"):
        assert set(read[section]) == set(rendered[section])
        for name, given in rendered[section].items():
            assert {key: read[section][name][key] for key in given} == given, (section, name)
