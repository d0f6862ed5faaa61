"""The balancer's Prometheus exposition, rendered from its live state on each scrape.

No client library on the request path: counters are plain integers on the replicas and
the balancer, and the text is built here only when ``/metrics`` is read.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from modelplane_balancer import contract
from modelplane_balancer.replica import LATENCY_BUCKETS, STATES

if TYPE_CHECKING:
    from modelplane_balancer.balancer import Balancer

_TICK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _labels(**labels: str) -> str:
    inner = ",".join(
        f'{key}="{value}"'.replace("\\", "\\\\").replace("\n", "\\n")
        for key, value in labels.items()
    )
    return "{" + inner + "}"


def _number(value: float) -> str:
    return repr(float(value)) if isinstance(value, float) else str(value)


def render(balancer: Balancer, pid: int) -> bytes:
    """Every metric of contract.py in the text format (version 0.0.4)."""
    lines: list[str] = []

    def family(name: str, kind: str, help_text: str) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")

    fleet = balancer.fleet
    replicas = sorted(fleet.replicas(), key=lambda r: (r.track, r.key))
    model = balancer.settings.model

    family(contract.METRIC_REQUESTS, "counter", "Answered requests by replica and status.")
    for r in replicas:
        for code, count in sorted(r.requests.items()):
            lines.append(f"{contract.METRIC_REQUESTS}"
                         f"{_labels(model=model, replica=r.key, track=r.track, code=str(code))} "
                         f"{count}")
    for (code, track), count in sorted(balancer.own_answers.items()):
        lines.append(f"{contract.METRIC_REQUESTS}"
                     f"{_labels(model=model, replica='', track=track, code=str(code))} {count}")

    family(contract.METRIC_LATENCY, "histogram",
           "Seconds from picking a replica to the end of its answer.")
    for r in replicas:
        base = {"model": model, "replica": r.key, "track": r.track}
        cumulative = 0
        for bound, count in zip((*LATENCY_BUCKETS, float("inf")), r.buckets, strict=True):
            cumulative += count
            le = "+Inf" if bound == float("inf") else repr(bound)
            lines.append(f"{contract.METRIC_LATENCY}_bucket{_labels(**base, le=le)} {cumulative}")
        lines.append(f"{contract.METRIC_LATENCY}_sum{_labels(**base)} {r.latency_sum!r}")
        lines.append(f"{contract.METRIC_LATENCY}_count{_labels(**base)} {cumulative}")

    family(contract.METRIC_IN_FLIGHT, "gauge", "Requests on each replica now.")
    for r in replicas:
        lines.append(f"{contract.METRIC_IN_FLIGHT}"
                     f"{_labels(model=model, replica=r.key, track=r.track)} {r.in_flight}")

    family(contract.METRIC_REPLICA_UP, "gauge",
           "1 for the state each replica is in (active takes new requests).")
    for r in replicas:
        for state in STATES:
            lines.append(f"{contract.METRIC_REPLICA_UP}"
                         f"{_labels(model=model, replica=r.key, track=r.track, state=state)} "
                         f"{1 if r.state == state else 0}")

    family(contract.METRIC_LATENCY_EWMA, "gauge", "Peak-EWMA latency of each replica.")
    for r in replicas:
        lines.append(f"{contract.METRIC_LATENCY_EWMA}"
                     f"{_labels(model=model, replica=r.key, track=r.track)} {r.ewma!r}")

    family(contract.METRIC_UPSTREAM_CONNECTIONS, "gauge", "Open connections to each replica.")
    for r in replicas:
        for state, count in (("idle", len(r.idle)), ("busy", r.busy)):
            lines.append(f"{contract.METRIC_UPSTREAM_CONNECTIONS}"
                         f"{_labels(model=model, replica=r.key, track=r.track, state=state)} "
                         f"{count}")

    family(contract.METRIC_EJECTIONS, "counter", "Outlier ejections of each replica.")
    for (key, track), count in sorted(fleet.ejections.items()):
        lines.append(f"{contract.METRIC_EJECTIONS}"
                     f"{_labels(model=model, replica=key, track=track)} {count}")

    family(contract.METRIC_RETRIES, "counter", "Requests sent again to another replica.")
    for reason in ("connect", "refused", "overflow"):
        lines.append(f"{contract.METRIC_RETRIES}{_labels(model=model, reason=reason)} "
                     f"{balancer.retries.get(reason, 0)}")
    family(contract.METRIC_RETRIES_DENIED, "counter", "Retries the retry budget refused.")
    lines.append(f"{contract.METRIC_RETRIES_DENIED}{_labels(model=model)} "
                 f"{balancer.retries_denied}")

    family(contract.METRIC_WAITING, "gauge", "Requests waiting for a replica.")
    lines.append(f"{contract.METRIC_WAITING}{_labels(model=model)} {len(fleet.waiters)}")

    family(contract.METRIC_WAKE, "summary",
           "Seconds from the first request held with no replica to a replica taking it.")
    lines.append(f"{contract.METRIC_WAKE}_count{_labels(model=model)} {fleet.wakes}")
    lines.append(f"{contract.METRIC_WAKE}_sum{_labels(model=model)} {fleet.wake_seconds!r}")

    family(contract.METRIC_TRACK_REQUESTS, "counter", "Requests routed to each track.")
    for track, count in sorted(fleet.routed.items()):
        labels = _labels(model=model, track=track)
        lines.append(f"{contract.METRIC_TRACK_REQUESTS}{labels} {count}")
    family(contract.METRIC_CANARY_PERCENT, "gauge", "Configured canary share, percent.")
    lines.append(f"{contract.METRIC_CANARY_PERCENT}{_labels(model=model)} {fleet.split.percent}")
    family(contract.METRIC_STRATEGY, "gauge", "The strategy in force.")
    labels = _labels(model=model, strategy=fleet.strategy_name)
    lines.append(f"{contract.METRIC_STRATEGY}{labels} 1")

    rss, cpu = _process(pid)
    family(contract.METRIC_RSS, "gauge", "Resident memory of the balancer process.")
    lines.append(f"{contract.METRIC_RSS} {rss}")
    family(contract.METRIC_CPU, "counter", "CPU time of the balancer process.")
    lines.append(f"{contract.METRIC_CPU} {cpu!r}")
    return ("\n".join(lines) + "\n").encode()


def _process(pid: int) -> tuple[int, float]:
    """(resident bytes, user+system CPU seconds) from /proc; zeros where there is none."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        statm = Path(f"/proc/{pid}/statm").read_text().split()
    except OSError:
        return 0, 0.0
    return int(statm[1]) * _PAGE, (int(fields[11]) + int(fields[12])) / _TICK
