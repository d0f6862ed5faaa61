"""W3C trace context through the balancer: a caller's ``traceparent`` reaches the runtime
behind it unchanged, so the runtime's spans join the caller's trace (the balancer adds no
span of its own: it has no tracer, and a hop that rewrote the header would cut the trace).
A real runtime exports over OTLP/HTTP to a receiver this test runs."""

from __future__ import annotations

import secrets
from pathlib import Path

from tests.fixtures.otlp import otlp_receiver
from tests.fixtures.polling import eventually
from tests.integration.balancer.conftest import (
    REPLICA_HOSTS,
    address_of,
    launch_balancer,
    launch_replica_runtime,
    stop_replica,
)

ROW = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]


def test_the_callers_trace_continues_in_the_runtime_behind_the_balancer(
        demo_model_dir: Path, balancer_log_dir: Path) -> None:
    with otlp_receiver() as receiver:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100"}
        runtime = launch_replica_runtime(demo_model_dir, balancer_log_dir, REPLICA_HOSTS[0],
                                         "--name", "demo", env=env)
        try:
            callers = [(secrets.token_hex(16), secrets.token_hex(8)) for _ in range(3)]
            balancer = launch_balancer(balancer_log_dir, ["--model", "demo", "--backends",
                                                          address_of(runtime)])
            with balancer as process, process.client() as client:
                for trace_id, span_id in callers:
                    answer = client.post(
                        "/v1/models/demo:predict", json={"instances": [ROW]},
                        headers={"traceparent": f"00-{trace_id}-{span_id}-01",
                                 "tracestate": "vendor=kept"})
                    assert answer.status_code == 200, answer.text

            def roots() -> dict[str, object]:
                return {span.trace_id.hex(): span for _, span in receiver.spans()
                        if span.name.startswith("POST ")}

            found = eventually(lambda: len(roots()) >= len(callers) and roots(), timeout=30,
                               what="the runtime's spans at the OTLP receiver")
        finally:
            stop_replica(runtime)
    assert set(found) == {trace_id for trace_id, _ in callers}
    for trace_id, span_id in callers:
        root = found[trace_id]
        assert root.parent_span_id.hex() == span_id  # type: ignore[attr-defined]
        assert root.trace_state == "vendor=kept"  # type: ignore[attr-defined]
