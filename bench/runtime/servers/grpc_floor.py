"""The gRPC floor: a bare ``grpc.aio`` server on uvloop answering every ModelInfer with one
constant, serialized response (no parsing, no model): what grpcio itself costs per call.

Usage: ``python grpc_floor.py HTTP_PORT GRPC_PORT``; the HTTP port answers ``/ready`` (the
benchmark's readiness check) from a plain asyncio server on the same loop.
"""

from __future__ import annotations

import asyncio
import sys

import grpc
import uvloop
from tritonclient.grpc import service_pb2

ANSWER = service_pb2.ModelInferResponse(model_name="floor", model_version="1")
ANSWER.outputs.add(name="outputs", datatype="FP32", shape=[1, 1]).contents.fp32_contents.append(
    0.5
)
RAW = ANSWER.SerializeToString()


async def infer(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    """The constant answer (the request is not even parsed)."""
    return RAW


async def ready(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
    await writer.drain()
    writer.close()


async def main(http_port: int, grpc_port: int) -> None:
    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler(
        "inference.GRPCInferenceService",
        {"ModelInfer": grpc.unary_unary_rpc_method_handler(infer)},
    )
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{grpc_port}")
    await server.start()
    probe = await asyncio.start_server(ready, "127.0.0.1", http_port)
    async with probe:
        await server.wait_for_termination()


if __name__ == "__main__":
    uvloop.install()
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
