"""Pre/post-processing from modelplane.yaml: parsing, checks at start-up, served signature."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from modelplane_runtime.dataplane.processing import build_processor, read_config
from modelplane_runtime.errors import InvalidInput, ModelLoadError
from modelplane_runtime.signature import SignatureSpec, TensorSpec

from tests.fixtures.models import call_keras_model, demo_predict
from tests.unit.runtime.test_batching import plane

MODEL = SignatureSpec(
    "serving_default",
    (TensorSpec("image", "float32", (-1, 2, 2)), TensorSpec("ids", "int64", (-1,))),
    (TensorSpec("probs", "float32", (-1, 3)), TensorSpec("score", "float32", (-1, 1))),
)


def config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "modelplane.yaml"
    path.write_text(text)
    return path


def build(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    path = config(tmp_path, text)
    return build_processor(read_config(path), {"serving_default": MODEL}, path)


def test_served_signature_reflects_processing(tmp_path: Path) -> None:
    processor = build(tmp_path, """
inputs:
  image: {dtype: uint8, shape: [4], mean: 127.5, std: 127.5}
outputs:
  probs: {labels: [cat, dog, bird], top_k: 2, keep: false}
  score: {threshold: 0.7}
""")
    served = processor.served
    assert served.input("image") == TensorSpec("image", "uint8", (-1, 4))
    assert served.input("ids") == TensorSpec("ids", "int64", (-1,))
    assert [t.name for t in served.outputs] == [
        "score",
        "probs_class", "probs_label", "probs_top_k_scores", "probs_top_k_classes",
        "probs_top_k_labels",
        "score_class",
    ]
    assert served.output("probs_top_k_labels") == TensorSpec(
        "probs_top_k_labels", "string", (-1, 2)
    )

    pre = processor.preprocess({"image": np.array([[0, 255, 127, 128]], np.uint8), "ids": [1]})
    assert pre["image"].dtype == np.float32
    want = np.array([[[-1, 1], [-0.003922, 0.003922]]])
    np.testing.assert_allclose(pre["image"], want, atol=1e-5)

    post = processor.postprocess({
        "probs": np.array([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]], np.float32),
        "score": np.array([[0.9], [0.1]], np.float32),
    })
    assert "probs" not in post
    assert post["probs_class"].tolist() == [1, 0]
    assert post["probs_label"].tolist() == [b"dog", b"cat"]
    np.testing.assert_allclose(post["probs_top_k_scores"], [[0.7, 0.2], [0.5, 0.3]])
    assert post["probs_top_k_classes"].tolist() == [[1, 2], [0, 2]]
    assert post["probs_top_k_labels"].tolist() == [[b"dog", b"bird"], [b"cat", b"bird"]]
    assert post["score_class"].tolist() == [1, 0]
    np.testing.assert_allclose(post["score"], [[0.9], [0.1]])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("inputs: {image: {scale: 2}}", r"inputs\.image\.scale: Extra inputs are not permitted"),
        ("inputs: {image: {dtype: float128}}", "unknown dtype 'float128'"),
        ("outputs: {probs: {top_k: 0}}", r"outputs\.probs\.top_k"),
        ("[1, 2]", "Input should be a valid dictionary"),
        ("inputs: {image: [1,", "cannot read"),
        ("outputs: {score: {labels: [no, yes]}}", "quote YAML words like yes/no"),
    ],
)
def test_config_file_errors_name_the_field(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ModelLoadError, match=message):
        read_config(config(tmp_path, text))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("signature: other", "the model has no signature 'other'"),
        ("inputs: {pixels: {}}", r"inputs\.pixels: no such input \(inputs: image, ids\)"),
        ("outputs: {logits: {}}", r"outputs\.logits: no such output"),
        ("inputs: {image: {shape: [5]}}", "shape \\[5\\] has 5 values per row; the model's"),
        ("inputs: {ids: {mean: 1}}", "mean/std need a float model input; this one is int64"),
        ("inputs: {image: {std: 0}}", "std must not be zero"),
        ("inputs: {image: {mean: [1, 2, 3]}}", "mean has 3 values; it must broadcast"),
        ("inputs: {image: {dtype: string}}", "cannot cast string to the model's float32"),
        ("outputs: {probs: {labels: [a, b]}}", "2 labels given; the output has 3 classes"),
        ("outputs: {probs: {threshold: 0.5}}", "threshold needs a single-score output"),
        ("outputs: {probs: {top_k: 4}}", "top_k 4 is more than the 3 classes"),
        ("outputs: {score: {labels: [a, b, c]}}", "a single score needs 2 labels"),
        ("outputs: {score: {top_k: 1}}", "top_k needs an output with several classes"),
    ],
)
def test_mistakes_fail_at_start_up(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ModelLoadError, match=message) as caught:
        build(tmp_path, text)
    assert "modelplane.yaml" in str(caught.value)


def test_reshape_that_cannot_work_is_a_client_error(tmp_path: Path) -> None:
    spec = SignatureSpec(
        "serving_default", (TensorSpec("x", "float32", (-1, -1, 2)),), (),
    )
    path = config(tmp_path, "inputs: {x: {shape: [-1]}}")
    processor = build_processor(read_config(path), {"serving_default": spec}, path)
    assert processor.preprocess({"x": np.ones((1, 6))})["x"].shape == (1, 3, 2)
    with pytest.raises(InvalidInput, match=r"input 'x': cannot reshape \[5\]"):
        processor.preprocess({"x": np.ones((1, 5))})


async def test_processing_through_the_data_plane(
    demo_model_dir: Path, keras_model_file: Path, tmp_path: Path
) -> None:
    demo = tmp_path / "demo"
    shutil.copytree(demo_model_dir, demo)
    (demo / "modelplane.yaml").write_text(
        "inputs:\n  inputs: {dtype: int64, shape: [2, 4], mean: 1, std: 2}\n"
        "outputs:\n  outputs: {labels: [negative, positive], threshold: 0.4, keep: false}\n"
    )
    x = np.arange(24, dtype=np.int64).reshape(3, 2, 4) - 12
    async with plane(demo) as dp:
        spec = dp.signature("demo", 1)
        assert spec.inputs == (TensorSpec("inputs", "int64", (-1, 2, 4)),)
        assert [t.name for t in spec.outputs] == ["outputs_class", "outputs_label"]
        got = await dp.predict("demo", 1, None, {"inputs": x}, strict_dtypes=True)
    scores = demo_predict((x.reshape(3, 8) - 1) / 2)[:, 0]
    assert got["outputs_class"].tolist() == (scores >= 0.4).astype(int).tolist()
    assert got["outputs_label"].tolist() == [
        b"positive" if s >= 0.4 else b"negative" for s in scores
    ]

    folder = tmp_path / "keras"
    shutil.copytree(keras_model_file.parent, folder)
    (folder / "modelplane.yaml").write_text(
        "outputs:\n  probabilities: {labels: [red, green, blue], top_k: 2}\n"
    )
    feats = np.random.default_rng(1).normal(size=(4, 4)).astype(np.float32)
    async with plane(folder, model_name="k") as dp:
        got = await dp.predict("k", 1, None, {"features": feats})
    probs = call_keras_model(keras_model_file, feats)
    np.testing.assert_allclose(got["probabilities"], probs, rtol=1e-5, atol=1e-6)
    best = np.argsort(-probs, axis=1)[:, :2]
    assert got["probabilities_top_k_classes"].tolist() == best.tolist()
    names = np.array([b"red", b"green", b"blue"], dtype=object)
    assert got["probabilities_label"].tolist() == names[best[:, 0]].tolist()


async def test_version_folder_config_overrides_the_base(
    two_io_model_dir: Path, tmp_path: Path
) -> None:
    shutil.copytree(two_io_model_dir, tmp_path / "m")
    (tmp_path / "m" / "modelplane.yaml").write_text("inputs: {a: {mean: 1}}\n")
    (tmp_path / "m" / "2" / "modelplane.yaml").write_text("inputs: {a: {mean: 2}}\n")
    a = np.full((1, 3), 5, np.float32)
    b = np.zeros((1, 2), np.float32)
    async with plane(tmp_path / "m", model_versions="all") as dp:
        one = await dp.predict("m", 1, None, {"a": a, "b": b})
        two = await dp.predict("m", 2, None, {"a": a, "b": b})
    np.testing.assert_allclose(one["scaled"], (a - 1) * 1)
    np.testing.assert_allclose(two["scaled"], (a - 2) * 2)


async def test_a_bad_config_fails_the_version_with_its_message(
    demo_model_dir: Path, tmp_path: Path
) -> None:
    shutil.copytree(demo_model_dir, tmp_path / "d")
    (tmp_path / "d" / "modelplane.yaml").write_text("outputs: {nope: {}}\n")
    from modelplane_runtime.dataplane.plane import DataPlane
    from modelplane_runtime.settings import RuntimeSettings

    with pytest.raises(ModelLoadError, match=r"outputs\.nope: no such output"):
        await DataPlane(RuntimeSettings(model_path=tmp_path / "d")).load()


def test_the_documented_example_is_valid(tmp_path: Path) -> None:
    import modelplane_runtime.dataplane.processing as module

    doc = module.__doc__ or ""
    block = doc.split("::\n\n", 1)[1].split("\n\n", 1)[0]
    text = "\n".join(line[4:] for line in block.splitlines())
    model = SignatureSpec(
        "serving_default",
        (TensorSpec("image", "float32", (-1, 28, 28)),),
        (TensorSpec("probabilities", "float32", (-1, 3)), TensorSpec("score", "float32", (-1, 1))),
    )
    path = config(tmp_path, text)
    processor = build_processor(read_config(path), {"serving_default": model}, path)
    assert processor.served.inputs == (TensorSpec("image", "uint8", (-1, 784)),)
    assert processor.served.output("score_label") == TensorSpec("score_label", "string", (-1,))
    image = processor.preprocess({"image": np.full((1, 784), 255, np.uint8)})["image"]
    assert image.shape == (1, 28, 28)
    np.testing.assert_allclose(image, (255 - 127.5) / 64.0)
    post = processor.postprocess({
        "probabilities": np.array([[0.2, 0.3, 0.5]], np.float32),
        "score": np.array([[0.8]], np.float32),
    })
    assert post["score_label"].tolist() == [b"yes"]
    assert post["probabilities_top_k_labels"].tolist() == [[b"bird", b"dog"]]


async def test_processing_setting_wins_over_the_file(
    keras_model_file: Path, tmp_path: Path
) -> None:
    import json

    folder = tmp_path / "keras"
    shutil.copytree(keras_model_file.parent, folder)
    (folder / "modelplane.yaml").write_text("outputs: {probabilities: {top_k: 1}}\n")
    # What the operator renders from a ModelDeployment (JSON, snake_case).
    setting = json.dumps({
        "signature": "serving_default",
        "inputs": {"features": {"mean": [1.0], "std": [2.0]}},
        "outputs": {"probabilities": {"labels": ["r", "g", "b"], "keep": False}},
    })
    feats = np.random.default_rng(2).normal(size=(3, 4)).astype(np.float32)
    async with plane(folder, model_name="k", processing=setting) as dp:
        outputs = [t.name for t in dp.signature("k", 1).outputs]
        got = await dp.predict("k", 1, None, {"features": feats})
    assert outputs == ["probabilities_class", "probabilities_label"]
    best = np.argmax(call_keras_model(keras_model_file, (feats - 1) / 2), axis=1)
    assert got["probabilities_class"].tolist() == best.tolist()

    from modelplane_runtime.dataplane.plane import DataPlane
    from modelplane_runtime.settings import RuntimeSettings

    bad = RuntimeSettings(model_path=folder, processing='{"outputs": {"nope": {}}}')
    with pytest.raises(ModelLoadError, match=r"MODELPLANE_PROCESSING: outputs\.nope: no such"):
        await DataPlane(bad).load()
    bad = RuntimeSettings(model_path=folder, processing='{"inputs": 3}')
    with pytest.raises(ModelLoadError, match="MODELPLANE_PROCESSING: inputs: "):
        await DataPlane(bad).load()
