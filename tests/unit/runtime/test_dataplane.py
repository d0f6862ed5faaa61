"""The DataPlane facade: loading, versions and labels, signatures, predict on every model."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from modelplane_runtime.dataplane.plane import DataPlane
from modelplane_runtime.errors import InvalidInput, ModelLoadError, ModelNotFound, ModelNotReady
from modelplane_runtime.settings import RuntimeSettings

from tests.fixtures.models import call_keras_model, call_saved_model, demo_predict
from tests.unit.runtime.test_batching import Recorder, plane


async def test_load_reports_versions_and_readiness(two_io_model_dir: Path) -> None:
    recorder = Recorder()
    settings = RuntimeSettings(
        model_path=two_io_model_dir, model_versions="all", model_labels="stable=1,canary=2"
    )
    dp = DataPlane(settings, observer=recorder)
    assert not dp.ready
    import sys

    await dp.load()
    assert "tensorflow" in sys.modules  # loaded lazily, by load()
    assert dp.ready
    assert dp.model_names() == ["two_io"]
    statuses = dp.versions("two_io")
    assert [(s.version, s.state, s.labels) for s in statuses] == [
        (2, "AVAILABLE", ("canary",)),
        (1, "AVAILABLE", ("stable",)),
    ]
    assert sorted(recorder.loads) == [("two_io", 1), ("two_io", 2)]
    assert dp.resolve("two_io") == 2
    assert dp.resolve("two_io", 1) == 1
    assert dp.resolve("two_io", label="stable") == 1
    assert dp.labels("two_io") == {"stable": 1, "canary": 2}
    await dp.close()
    assert not dp.ready
    assert [s.state for s in dp.versions("two_io")] == ["END", "END"]
    with pytest.raises(ModelNotReady):
        await dp.predict("two_io", 2, None, {"a": np.ones((1, 3)), "b": np.ones((1, 2))})


async def test_unknown_names_versions_labels_signatures(two_io_model_dir: Path) -> None:
    async with plane(two_io_model_dir) as dp:  # latest: only version 2
        with pytest.raises(ModelNotFound, match="model 'other' not found"):
            dp.resolve("other")
        with pytest.raises(ModelNotFound, match="model 'other' not found"):
            dp.versions("other")
        with pytest.raises(ModelNotFound, match=r"has no version 1 \(versions: 2\)"):
            dp.resolve("two_io", 1)
        with pytest.raises(ModelNotFound, match="no version label 'gold'"):
            dp.resolve("two_io", label="gold")
        with pytest.raises(InvalidInput, match=r"signature 'nope' not found .*scale_only"):
            dp.signature("two_io", 2, "nope")
        assert dp.signature("two_io", 2).name == "serving_default"
        assert dp.signature("two_io", 2, "scale_only").inputs[0].name == "a"
        assert set(dp.signatures("two_io", 2)) == {"serving_default", "scale_only"}


async def test_a_version_that_fails_to_load_is_end_with_its_error(
    demo_model_dir: Path, tmp_path: Path
) -> None:
    shutil.copytree(demo_model_dir / "1", tmp_path / "1")
    (tmp_path / "2").mkdir()
    (tmp_path / "2" / "saved_model.pb").write_bytes(b"garbage")
    async with plane(tmp_path, model_versions="all", model_name="m") as dp:
        assert dp.ready
        states = {s.version: s for s in dp.versions("m")}
        assert states[1].state == "AVAILABLE"
        assert states[2].state == "END"
        assert "cannot load savedmodel" in states[2].error
        assert dp.resolve("m") == 1
        with pytest.raises(ModelNotReady, match=r"version 2 is END: .*cannot load"):
            dp.resolve("m", 2)


async def test_load_fails_clearly_when_nothing_loads(tmp_path: Path) -> None:
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "saved_model.pb").write_bytes(b"garbage")
    dp = DataPlane(RuntimeSettings(model_path=tmp_path, model_name="m"))
    with pytest.raises(ModelLoadError, match="model 'm': no version loaded: version 1"):
        await dp.load()
    assert not dp.ready
    with pytest.raises(ModelLoadError, match="does not exist"):
        await DataPlane(RuntimeSettings(model_path=tmp_path / "missing")).load()


async def test_predict_matches_the_model_called_in_process(
    demo_model_dir: Path, int_model_dir: Path, string_model_dir: Path, keras_model_file: Path
) -> None:
    x = np.random.default_rng(8).normal(0, 2, (3, 8))
    async with plane(demo_model_dir) as dp:
        got = await dp.predict("demo", 1, None, {"inputs": x.tolist()})  # type: ignore[dict-item]
        np.testing.assert_allclose(got["outputs"], demo_predict(x), rtol=1e-5, atol=1e-6)
        ints = np.array([[1, 2, 3, 4, 5, 6, 7, 8]] * 2)  # JSON ints into a float input: cast
        got = await dp.predict("demo", 1, None, {"inputs": ints})
        np.testing.assert_allclose(got["outputs"], demo_predict(ints), rtol=1e-5, atol=1e-6)

    async with plane(int_model_dir) as dp:
        x_int = np.arange(8, dtype=np.int64).reshape(2, 4)
        got = await dp.predict("int_model", 1, None, {"x": x_int}, strict_dtypes=True)
        want = call_saved_model(int_model_dir / "1", {"x": x_int})
        np.testing.assert_array_equal(got["doubled"], want["doubled"])
        assert got["total"].dtype == np.int64

    async with plane(string_model_dir) as dp:
        text = np.array(["abc", "Grüße"])
        got = await dp.predict("string_model", 1, None, {"text": text})
        want = call_saved_model(
            string_model_dir / "1", {"text": np.array([b"abc", "Grüße".encode()], dtype=object)}
        )
        assert list(got["upper"]) == list(want["upper"])
        assert got["length"].tolist() == want["length"].tolist()

    async with plane(keras_model_file) as dp:
        assert dp.model_names() == ["classifier"]
        feats = np.random.default_rng(9).normal(size=(5, 4)).astype(np.float32)
        got = await dp.predict("classifier", 1, None, {"features": feats}, strict_dtypes=True)
        np.testing.assert_allclose(
            got["probabilities"], call_keras_model(keras_model_file, feats), rtol=1e-5, atol=1e-6
        )


async def test_predict_rejects_bad_input_before_the_model(demo_model_dir: Path) -> None:
    recorder = Recorder()
    async with plane(demo_model_dir, recorder, max_rows_per_request=10) as dp:
        cases: list[tuple[dict[str, Any], str]] = [
            ({"inputs": np.float32(1)}, "input 'inputs' is a single value"),
            ({"inputs": np.ones((2, 7))}, "dimension 1 must be 8"),
            ({"x": np.ones((2, 8))}, "unknown input 'x'"),
            ({}, "missing input 'inputs'"),
            ({"inputs": np.ones((11, 8))}, "the request has 11 rows; at most 10"),
            ({"inputs": np.array([["a"] * 8])}, "takes numbers"),
        ]
        for inputs, message in cases:
            with pytest.raises(InvalidInput, match=message):
                await dp.predict("demo", 1, None, inputs)
        with pytest.raises(InvalidInput, match=r"expected datatype FP32 .*got FP64"):
            await dp.predict("demo", 1, None, {"inputs": np.ones((1, 8))}, strict_dtypes=True)
        assert recorder.batches == []  # nothing reached the model
        ok = await dp.predict("demo", 1, None, {"inputs": np.ones((1, 8), np.float32)})
        assert ok["outputs"].shape == (1, 1)


async def test_model_with_one_non_default_signature(tmp_path: Path) -> None:
    import tensorflow as tf

    module = tf.Module()
    module.f = tf.function(
        lambda x: {"y": x + 1.0}, input_signature=[tf.TensorSpec([None], tf.float32, name="x")]
    )
    tf.saved_model.save(module, str(tmp_path / "1"), signatures={"predict": module.f})
    async with plane(tmp_path, model_name="m") as dp:
        assert dp.signature("m", 1).name == "predict"
        assert dp.signature("m", 1, "").name == "predict"  # v1 may send an empty name
        got = await dp.predict("m", 1, None, {"x": np.array([1.0, 2.0])})
        assert got["y"].tolist() == [2.0, 3.0]
