"""Loading SavedModels and Keras files, signature introspection, and the direct call path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from modelplane_runtime.dataplane.model import LoadedModel, dummy_inputs, load_model
from modelplane_runtime.dataplane.repository import VersionSource, scan
from modelplane_runtime.errors import InvalidInput, ModelLoadError
from modelplane_runtime.signature import SignatureSpec, TensorSpec

from tests.fixtures.models import call_keras_model, call_saved_model, demo_predict


def load(path: Path, version: int = 1) -> LoadedModel:
    source = scan(path)[version]
    assert isinstance(source, VersionSource)
    return load_model(source)


def test_demo_model_signature_and_output(demo_model_dir: Path) -> None:
    model = load(demo_model_dir)
    assert model.signatures == {
        "serving_default": SignatureSpec(
            "serving_default",
            (TensorSpec("inputs", "float32", (-1, 8)),),
            (TensorSpec("outputs", "float32", (-1, 1)),),
        )
    }
    x = np.random.default_rng(3).normal(0, 3, (5, 8)).astype(np.float32)
    result = model.call("serving_default", {"inputs": x})
    np.testing.assert_allclose(result["outputs"], demo_predict(x), rtol=1e-5, atol=1e-6)


def test_demo_model_build_is_idempotent(demo_model_dir: Path) -> None:
    from modelplane_runtime.demo_model import build_demo_model

    before = (demo_model_dir / "1" / "saved_model.pb").stat().st_mtime_ns
    assert build_demo_model(demo_model_dir) == demo_model_dir
    assert (demo_model_dir / "1" / "saved_model.pb").stat().st_mtime_ns == before
    assert [p.name for p in demo_model_dir.iterdir()] == ["1"]


def test_every_signature_is_introspected(two_io_model_dir: Path) -> None:
    model = load(two_io_model_dir, 2)
    assert set(model.signatures) == {"serving_default", "scale_only"}
    default = model.signatures["serving_default"]
    assert default.inputs == (
        TensorSpec("a", "float32", (-1, 3)),
        TensorSpec("b", "float32", (-1, 2)),
    )
    assert default.outputs == (
        TensorSpec("scaled", "float32", (-1, 3)),
        TensorSpec("total", "float32", (-1,)),
    )
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.ones((2, 2), np.float32)
    got = model.call("serving_default", {"a": a, "b": b})
    want = call_saved_model(two_io_model_dir / "2", {"a": a, "b": b})
    assert set(got) == set(want)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name])
    np.testing.assert_array_equal(got["scaled"], 2 * a)  # version 2 scales by 2


def test_int_and_string_dtypes(int_model_dir: Path, string_model_dir: Path) -> None:
    ints = load(int_model_dir)
    assert ints.signatures["serving_default"].inputs == (TensorSpec("x", "int64", (-1, 4)),)
    x = np.arange(8, dtype=np.int64).reshape(2, 4)
    got = ints.call("serving_default", {"x": x})
    assert got["doubled"].dtype == np.int64
    np.testing.assert_array_equal(got["doubled"], x * 2 + 1)

    strings = load(string_model_dir)
    spec = strings.signatures["serving_default"]
    assert spec.inputs == (TensorSpec("text", "string", (-1,)),)
    assert spec.output("upper") == TensorSpec("upper", "string", (-1,))
    text = np.array([b"abc", "héllo".encode()], dtype=object)
    got = strings.call("serving_default", {"text": text})
    assert got["upper"].dtype == object
    assert list(got["upper"]) == [b"ABC", "HéLLO".encode()]
    assert got["length"].tolist() == [3, 6]


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_keras_files_load_in_safe_mode(keras_model_file: Path, tmp_path: Path, suffix: str) -> None:
    from tests.fixtures.models import build_keras_model_file

    path = keras_model_file if suffix == ".keras" else build_keras_model_file(
        tmp_path / "clf.h5"
    )
    model = load(path)
    spec = model.signatures["serving_default"]
    assert spec.inputs == (TensorSpec("features", "float32", (-1, 4)),)
    assert spec.outputs == (TensorSpec("probabilities", "float32", (-1, 3)),)
    x = np.random.default_rng(5).normal(size=(4, 4)).astype(np.float32)
    got = model.call("serving_default", {"features": x})["probabilities"]
    np.testing.assert_allclose(got, call_keras_model(path, x), rtol=1e-5, atol=1e-6)


def test_keras_lambda_layer_is_refused(tmp_path: Path) -> None:
    import keras

    inputs = keras.Input(shape=(2,), name="x")
    outputs = keras.layers.Lambda(lambda t: t * 2)(inputs)
    path = tmp_path / "lambda.keras"
    keras.Model(inputs, outputs).save(str(path))
    with pytest.raises(ModelLoadError, match="safe mode"):
        load(path)


def test_savedmodel_without_signatures_is_refused(tmp_path: Path) -> None:
    import tensorflow as tf

    tf.saved_model.save(tf.Module(), str(tmp_path / "1"))
    with pytest.raises(ModelLoadError, match="no servable signature"):
        load(tmp_path)


def test_corrupt_savedmodel_fails_with_its_path(tmp_path: Path) -> None:
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "saved_model.pb").write_bytes(b"not a protobuf")
    with pytest.raises(ModelLoadError, match=r"version 1 \(.*1\): cannot load savedmodel"):
        load(tmp_path)


def test_model_errors_become_invalid_input(checked_model_dir: Path) -> None:
    model = load(checked_model_dir)
    with pytest.raises(InvalidInput, match="input must be finite") as caught:
        model.call("serving_default", {"x": np.array([[1.0, np.nan]], np.float32)})
    assert "Detected at node" not in caught.value.message  # stack-trace noise condensed


def test_warm_up_calls_every_signature_with_one_row(two_io_model_dir: Path) -> None:
    model = load(two_io_model_dir)
    seen: list[tuple[str, dict[str, tuple[int, ...]]]] = []
    for name, call in list(model.calls.items()):
        def spy(inputs, name=name, call=call):  # type: ignore[no-untyped-def]
            seen.append((name, {k: v.shape for k, v in inputs.items()}))
            return call(inputs)
        model.calls[name] = spy
    model.warm_up()
    assert sorted(seen) == [
        ("scale_only", {"a": (1, 3)}),
        ("serving_default", {"a": (1, 3), "b": (1, 2)}),
    ]


def test_dummy_inputs_fill_unknown_dims_with_one() -> None:
    spec = SignatureSpec(
        "s",
        (TensorSpec("x", "float32", (-1, -1, 3)), TensorSpec("t", "string", (-1,))),
        (),
    )
    dummy = dummy_inputs(spec)
    assert dummy["x"].shape == (1, 1, 3)
    assert dummy["t"].tolist() == [b""]


@pytest.mark.parametrize("structure", ["list", "dict"])
def test_keras_model_with_two_inputs_and_outputs(tmp_path: Path, structure: str) -> None:
    import warnings

    import keras

    a = keras.Input(shape=(2,), name="a")
    b = keras.Input(shape=(3,), name="b")
    joined = keras.layers.Concatenate()([a, b])
    score = keras.layers.Dense(1, name="score")(joined)
    logits = keras.layers.Dense(2, name="logits")(joined)
    if structure == "dict":
        model = keras.Model({"a": a, "b": b}, {"score": score, "logits": logits})
    else:
        model = keras.Model([a, b], [score, logits])
    path = tmp_path / "two.keras"
    model.save(str(path))
    inputs = {
        "a": np.arange(4, dtype=np.float32).reshape(2, 2),
        "b": np.ones((2, 3), np.float32),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # e.g. keras' input-structure mismatch
        loaded = load(path)
        got = loaded.call("serving_default", inputs)
    spec = loaded.signatures["serving_default"]
    assert [t.name for t in spec.inputs] == ["a", "b"]
    assert {t.name: t.shape for t in spec.outputs} == {"logits": (-1, 2), "score": (-1, 1)}
    want = model({"a": inputs["a"], "b": inputs["b"]} if structure == "dict"
                 else [inputs["a"], inputs["b"]])
    want_by_name = want if structure == "dict" else {"score": want[0], "logits": want[1]}
    for name in ("score", "logits"):
        np.testing.assert_allclose(got[name], np.asarray(want_by_name[name]), rtol=1e-5)
