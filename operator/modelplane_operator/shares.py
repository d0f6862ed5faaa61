"""Traffic as the balancers see it, from two scrapes of their /metrics: pure maths, no I/O.

A ``BalancerSnapshot`` is one balancer pod's counters at one instant: requests and the
latency histogram per replica (the ``replica`` label, ``host:port``), requests it answered
itself (``replica=""``: suspended, no replica, queue full), and the requests it holds for a
replica (``waiting``). Two snapshots of the same balancer give a window; windows of every
balancer of a ModelDeployment add up to each replica's share of the traffic, its rate and
its latency as the balancer measured it (picking the replica to the end of its answer),
which ``status.pods`` shows beside each pod. A counter that went down means the balancer
restarted; as in PromQL's ``rate()``, the new value is then the whole increase.

The same windows say when the model last saw a request (``requests`` includes the
balancer's own answers), which is what scale-to-zero's idle timer counts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from modelplane_balancer import contract as balancer
from prometheus_client.parser import text_string_to_metric_families

from modelplane_operator.load import Buckets, histogram_quantile, merge_buckets

_BUCKET = balancer.METRIC_LATENCY + "_bucket"


@dataclass(frozen=True)
class ReplicaCounts:
    """One replica's counters in one balancer."""

    requests: float = 0.0
    buckets: Buckets = ()


@dataclass(frozen=True)
class BalancerSnapshot:
    """One balancer pod's counters at one instant (``taken_at`` in monotonic seconds)."""

    taken_at: float
    replicas: Mapping[str, ReplicaCounts] = field(default_factory=dict)
    """By ``host:port``."""
    own_answers: float = 0.0
    """Requests the balancer answered itself (no replica got them)."""
    waiting: float = 0.0
    """Requests held for a replica right now."""
    in_flight: float = 0.0
    """Requests on replicas right now."""

    @property
    def requests(self) -> float:
        """Every request this balancer answered, by a replica or itself."""
        return self.own_answers + sum(r.requests for r in self.replicas.values())


def parse_balancer(text: str, taken_at: float) -> BalancerSnapshot:
    """Read a balancer's metrics from the Prometheus text format (ValueError if not that)."""
    requests: dict[str, float] = {}
    cumulative: dict[str, dict[float, float]] = {}
    own = waiting = in_flight = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name, labels = sample.name, sample.labels
            if name == balancer.METRIC_REQUESTS:
                replica = labels.get("replica", "")
                if replica:
                    requests[replica] = requests.get(replica, 0.0) + sample.value
                else:
                    own += sample.value
            elif name == _BUCKET:
                per = cumulative.setdefault(labels.get("replica", ""), {})
                bound = float(labels["le"])
                per[bound] = per.get(bound, 0.0) + sample.value
            elif name == balancer.METRIC_WAITING:
                waiting += sample.value
            elif name == balancer.METRIC_IN_FLIGHT:
                in_flight += sample.value
    replicas = {
        key: ReplicaCounts(requests.get(key, 0.0), tuple(sorted(cumulative.get(key, {}).items())))
        for key in requests.keys() | (cumulative.keys() - {""})
    }
    return BalancerSnapshot(taken_at, replicas, own, waiting, in_flight)


@dataclass(frozen=True)
class ReplicaTraffic:
    """One replica over a window, across every balancer."""

    requests_per_second: float
    share: float
    """Its part of the requests the replicas answered, 0 to 1."""
    latency_p99_ms: float | None


@dataclass(frozen=True)
class Traffic:
    """A ModelDeployment's traffic through its balancers over the last window."""

    replicas: Mapping[str, ReplicaTraffic]
    """By replica host (the pod IP)."""
    requests: float
    """Requests the balancers answered in the window (replicas' and their own)."""
    waiting: float
    in_flight: float


def _increase(now: float, before: float) -> float:
    return now if now < before else now - before


def _bucket_increase(now: Buckets, before: Buckets) -> Buckets:
    if [b for b, _ in now] != [b for b, _ in before] or any(
            n < p for (_, n), (_, p) in zip(now, before, strict=True)):
        return now  # restarted
    return tuple((b, n - p) for (b, n), (_, p) in zip(now, before, strict=True))


def host_of(replica: str) -> str:
    """The host of a ``host:port`` or ``[v6]:port`` replica key."""
    host = replica.rsplit(":", 1)[0]
    return host[1:-1] if host.startswith("[") else host


def traffic(previous: Mapping[str, BalancerSnapshot],
            current: Mapping[str, BalancerSnapshot]) -> Traffic | None:
    """The traffic of the balancers scraped now (keyed by pod uid) against their previous
    scrapes; None until some balancer has two scrapes."""
    rates: dict[str, float] = {}
    increases: dict[str, list[Buckets]] = {}
    requests = 0.0
    windows = 0
    for key, now in current.items():
        before = previous.get(key)
        if before is None or now.taken_at <= before.taken_at:
            continue
        windows += 1
        seconds = now.taken_at - before.taken_at
        requests += _increase(now.requests, before.requests)
        for replica, counts in now.replicas.items():
            old = before.replicas.get(replica, ReplicaCounts())
            host = host_of(replica)
            rates[host] = rates.get(host, 0.0) + _increase(counts.requests,
                                                            old.requests) / seconds
            increases.setdefault(host, []).append(
                _bucket_increase(counts.buckets, old.buckets) if old.buckets else counts.buckets)
    if not windows:
        return None
    total = sum(rates.values())
    replicas = {}
    for host, rate in rates.items():
        p99 = histogram_quantile(0.99, merge_buckets(increases.get(host, [])))
        replicas[host] = ReplicaTraffic(
            requests_per_second=rate, share=rate / total if total > 0 else 0.0,
            latency_p99_ms=None if p99 is None else p99 * 1000.0)
    return Traffic(replicas, requests, sum(s.waiting for s in current.values()),
                   sum(s.in_flight for s in current.values()))


def busy(snapshots: Iterable[BalancerSnapshot]) -> bool:
    """Whether any balancer holds or forwards a request right now."""
    return any(s.waiting > 0 or s.in_flight > 0 for s in snapshots)
