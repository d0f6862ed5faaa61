"""The Open Inference Protocol over gRPC through ``tritonclient.grpc`` (sync and asyncio)
and its generated stub (typed ``contents``, which tritonclient never sends), against the
runtime as a real process: health, metadata, infer with raw and typed tensors, requested
outputs, the request id and parameters, and the errors.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
import tritonclient.grpc.aio as triton_aio
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from tests.fixtures.models import call_saved_model, demo_predict
from tests.fixtures.runtime_server import RuntimeServer

A = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], np.float32)
B = np.array([[0.5, 0.25], [1.0, 2.0]], np.float32)


@pytest.fixture(scope="module")
def client(two_io_server: RuntimeServer) -> Iterator[triton.InferenceServerClient]:
    with triton.InferenceServerClient(two_io_server.grpc_target) as c:
        yield c


@pytest.fixture(scope="module")
def stub(two_io_server: RuntimeServer) -> Iterator[service_pb2_grpc.GRPCInferenceServiceStub]:
    with grpc.insecure_channel(two_io_server.grpc_target) as channel:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel)


def _inputs() -> list[triton.InferInput]:
    a = triton.InferInput("a", list(A.shape), "FP32")
    a.set_data_from_numpy(A)
    b = triton.InferInput("b", list(B.shape), "FP32")
    b.set_data_from_numpy(B)
    return [a, b]


def test_health_and_metadata(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("two_io")
    assert client.is_model_ready("two_io", "1")
    assert not client.is_model_ready("nope")
    assert not client.is_model_ready("two_io", "7")
    server = client.get_server_metadata(as_json=True)
    assert server["name"] == "modelplane"
    metadata = client.get_model_metadata("two_io", as_json=True)
    assert metadata["platform"] == "tensorflow"
    assert metadata["versions"] == ["2", "1"]
    assert {t["name"]: (t["datatype"], t["shape"]) for t in metadata["inputs"]} == {
        "a": ("FP32", ["-1", "3"]), "b": ("FP32", ["-1", "2"]),
    }
    with pytest.raises(InferenceServerException) as caught:
        client.get_model_metadata("nope")
    assert "NOT_FOUND" in str(caught.value.status())


def test_infer_raw_with_requested_outputs_and_id(
    client: triton.InferenceServerClient, two_io_model_dir: Path
) -> None:
    expected = call_saved_model(two_io_model_dir / "2", {"a": A, "b": B})
    result = client.infer("two_io", _inputs(), request_id="req-7")
    np.testing.assert_allclose(result.as_numpy("total"), expected["total"])
    np.testing.assert_allclose(result.as_numpy("scaled"), expected["scaled"])
    response = result.get_response()
    assert response.id == "req-7"
    assert response.model_version == "2"
    assert len(response.raw_output_contents) == 2  # raw in, raw out (as Triton answers)
    only = client.infer("two_io", _inputs(), model_version="1",
                        outputs=[triton.InferRequestedOutput("scaled")])
    assert [o.name for o in only.get_response().outputs] == ["scaled"]
    np.testing.assert_allclose(only.as_numpy("scaled"), A)


def test_infer_typed_contents_and_signature_parameter(
    stub: service_pb2_grpc.GRPCInferenceServiceStub, two_io_model_dir: Path
) -> None:
    request = service_pb2.ModelInferRequest(model_name="two_io", id="typed")
    for name, array in (("a", A), ("b", B)):
        tensor = request.inputs.add(name=name, datatype="FP32", shape=list(array.shape))
        tensor.contents.fp32_contents.extend(array.ravel().tolist())
    response = stub.ModelInfer(request, timeout=30)
    assert not response.raw_output_contents  # typed in, typed out
    outputs = {o.name: o for o in response.outputs}
    expected = call_saved_model(two_io_model_dir / "2", {"a": A, "b": B})
    assert list(outputs["total"].contents.fp32_contents) == pytest.approx(
        expected["total"].tolist()
    )
    assert list(outputs["scaled"].shape) == [2, 3]

    scale = service_pb2.ModelInferRequest(model_name="two_io", model_version="1")
    scale.parameters["signature_name"].string_param = "scale_only"
    tensor = scale.inputs.add(name="a", datatype="FP32", shape=[2, 3])
    tensor.contents.fp32_contents.extend(A.ravel().tolist())
    response = stub.ModelInfer(scale, timeout=30)
    assert [o.name for o in response.outputs] == ["scaled"]


@pytest.mark.parametrize(
    ("build", "code", "words"),
    [
        (lambda r: setattr(r, "model_name", "nope"), grpc.StatusCode.NOT_FOUND, "not found"),
        (lambda r: setattr(r, "model_version", "x"), grpc.StatusCode.INVALID_ARGUMENT,
         "non-negative integer"),
        (lambda r: r.inputs[0].__setattr__("datatype", "FP64"), grpc.StatusCode.INVALID_ARGUMENT,
         "bytes of raw_input_contents"),
        (lambda r: r.inputs[0].__setattr__("datatype", "NOPE"), grpc.StatusCode.INVALID_ARGUMENT,
         "unknown datatype"),
        (lambda r: r.raw_input_contents.pop(), grpc.StatusCode.INVALID_ARGUMENT,
         "for every input or for none"),
        (lambda r: r.outputs.add(name="nope"), grpc.StatusCode.INVALID_ARGUMENT,
         "unknown output"),
        (lambda r: r.inputs[1].__setattr__("name", "c"), grpc.StatusCode.INVALID_ARGUMENT,
         "unknown input 'c'"),
        (lambda r: r.inputs[0].shape.__setitem__(1, 4), grpc.StatusCode.INVALID_ARGUMENT,
         "needs 32 bytes"),
    ],
)
def test_infer_errors(
    stub: service_pb2_grpc.GRPCInferenceServiceStub, build: object, code: grpc.StatusCode,
    words: str,
) -> None:
    request = service_pb2.ModelInferRequest(model_name="two_io")
    for name, array in (("a", A), ("b", B)):
        request.inputs.add(name=name, datatype="FP32", shape=list(array.shape))
        request.raw_input_contents.append(array.tobytes())
    build(request)  # type: ignore[operator]
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(request, timeout=30)
    assert caught.value.code() == code, caught.value.details()
    assert words in (caught.value.details() or "")


def test_triton_client_reports_errors(client: triton.InferenceServerClient) -> None:
    wrong = triton.InferInput("a", [2, 3], "INT32")
    wrong.set_data_from_numpy(A.astype(np.int32))
    with pytest.raises(InferenceServerException) as caught:
        client.infer("two_io", [wrong, _inputs()[1]])
    assert "INVALID_ARGUMENT" in str(caught.value.status())
    assert "expected datatype FP32" in caught.value.message()


def test_strings_raw_and_typed(string_server: RuntimeServer) -> None:
    words = np.array([b"abc", b"de", b""], dtype=object)
    with triton.InferenceServerClient(string_server.grpc_target) as c:
        text = triton.InferInput("text", [3], "BYTES")
        text.set_data_from_numpy(words)
        result = c.infer("strings", [text])
        assert result.as_numpy("length").tolist() == [3, 2, 0]
        assert result.as_numpy("upper").tolist() == [b"ABC", b"DE", b""]
    with grpc.insecure_channel(string_server.grpc_target) as channel:
        typed = service_pb2.ModelInferRequest(model_name="strings")
        typed.inputs.add(name="text", datatype="BYTES", shape=[3]).contents.bytes_contents.extend(
            words.tolist()
        )
        response = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(typed, timeout=30)
        outputs = {o.name: o for o in response.outputs}
        assert list(outputs["upper"].contents.bytes_contents) == [b"ABC", b"DE", b""]


async def test_asyncio_client(demo_server: RuntimeServer) -> None:
    rows = np.random.default_rng(3).normal(size=(16, 8)).astype(np.float32)
    async with triton_aio.InferenceServerClient(demo_server.grpc_target) as c:
        assert await c.is_server_ready()
        assert await c.is_model_ready("demo")

        async def one(index: int) -> np.ndarray:
            tensor = triton_aio.InferInput("inputs", [1, 8], "FP32")
            tensor.set_data_from_numpy(rows[index : index + 1])
            result = await c.infer("demo", [tensor], request_id=str(index))
            assert result.get_response().id == str(index)
            return result.as_numpy("outputs")  # type: ignore[no-any-return]

        import asyncio

        answers = await asyncio.gather(*[one(i) for i in range(len(rows))])
    np.testing.assert_allclose(np.concatenate(answers), demo_predict(rows), rtol=1e-5, atol=1e-6)
