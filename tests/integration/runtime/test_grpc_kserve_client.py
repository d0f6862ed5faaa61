"""KServe's own v2 gRPC client (``kserve.InferenceGRPCClient``) against the runtime.

KServe generates its own ``inference.*`` protos, which cannot share a process with
tritonclient's (the protobuf descriptor pool refuses duplicate symbols), and it pins its own
versions of shared packages (protobuf 6, fastapi); so the client runs in the benchmark's
KServe virtual environment (``bash bench/setup.sh``) as a subprocess, and the test skips
with that reason where the environment is absent.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures.models import demo_predict
from tests.fixtures.runtime_server import RuntimeServer

KSERVE_PYTHON = Path(__file__).resolve().parents[3] / ".bench" / "kserve" / "bin" / "python"

SCRIPT = """
import asyncio, json, sys
import numpy as np
from kserve import InferenceGRPCClient, InferInput, InferRequest

async def main(target):
    client = InferenceGRPCClient(target)
    rows = np.asarray(json.loads(sys.argv[2]), dtype=np.float32)
    tensor = InferInput("inputs", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows)
    response = await client.infer(InferRequest("demo", [tensor], request_id="k-1"))
    print(json.dumps({
        "live": await client.is_server_live(),
        "ready": await client.is_server_ready(),
        "model_ready": await client.is_model_ready("demo"),
        "id": response.id,
        "outputs": response.outputs[0].as_numpy().tolist(),
    }))
    await client.close()

asyncio.run(main(sys.argv[1]))
"""


@pytest.mark.skipif(not KSERVE_PYTHON.exists(),
                    reason="KServe's client lives in .bench/kserve (bash bench/setup.sh)")
def test_kserve_grpc_client(demo_server: RuntimeServer) -> None:
    rows = np.random.default_rng(2).normal(size=(3, 8)).astype(np.float32)
    done = subprocess.run(
        [str(KSERVE_PYTHON), "-c", SCRIPT, demo_server.grpc_target, json.dumps(rows.tolist())],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["live"] and answer["ready"] and answer["model_ready"]
    assert answer["id"] == "k-1"
    np.testing.assert_allclose(np.asarray(answer["outputs"]), demo_predict(rows), rtol=1e-5)
