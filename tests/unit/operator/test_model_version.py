"""status.modelVersion follows what the runtime serves (its version states), not what it
once loaded: the runtime's own Metrics class writes the exposition the operator parses."""

from __future__ import annotations

from modelplane_operator.load import Snapshot, aggregate, parse_snapshot
from modelplane_runtime.metrics import Metrics


def _snapshot(states: list[dict[int, str]], loads: tuple[int, ...] = ()) -> Snapshot:
    metrics = Metrics()
    for version in loads:
        metrics.observe_load("m", version, 1.5)
    for change in states:
        metrics.observe_versions("m", change)
    return parse_snapshot(metrics.render().decode(), 1.0)


def test_available_versions_are_served() -> None:
    snap = _snapshot([{1: "AVAILABLE"}, {1: "AVAILABLE", 2: "LOADING"},
                      {1: "UNLOADING", 2: "AVAILABLE"}, {1: "END", 2: "AVAILABLE"}],
                     loads=(1, 2))
    assert snap.versions == frozenset({"2"})


def test_a_failed_version_is_not_served() -> None:
    snap = _snapshot([{2: "AVAILABLE"}, {2: "AVAILABLE", 3: "LOADING"},
                      {2: "AVAILABLE", 3: "END"}], loads=(2,))
    assert snap.versions == frozenset({"2"})


def test_versions_across_replicas_in_numeric_order() -> None:
    one = _snapshot([{2: "AVAILABLE", 10: "AVAILABLE"}])
    two = _snapshot([{2: "AVAILABLE"}])
    load = aggregate({}, {"a": one, "b": two})
    assert load is not None
    assert load.model_version == "2,10"


def test_nothing_available_reports_no_version() -> None:
    snap = _snapshot([{1: "LOADING"}], loads=())
    assert snap.versions == frozenset()
    load = aggregate({}, {"a": snap})
    assert load is not None and load.model_version is None


def test_a_runtime_without_version_states_falls_back_to_its_loads() -> None:
    snap = _snapshot([], loads=(1, 3))
    assert snap.versions == frozenset({"1", "3"})
