"""Which versions to load and retire as the repository changes (dataplane/versions.py)."""

from __future__ import annotations

import os
from pathlib import Path

from modelplane_runtime.dataplane.repository import VersionSource
from modelplane_runtime.dataplane.versions import (
    AVAILABLE,
    END,
    ServedVersion,
    fingerprint,
    fingerprints,
    plan_changes,
)


def _source(version: int) -> VersionSource:
    return VersionSource(version, Path(f"/models/m/{version}"), "savedmodel")


def _served(version: int, state: str = AVAILABLE, print_: tuple = ()) -> ServedVersion:  # type: ignore[type-arg]
    return ServedVersion(version, _source(version), state=state, fingerprint=print_)


P1, P2, P3 = ((("a", 1, 1),), (("a", 2, 2),), (("a", 3, 3),))


def test_a_new_version_is_loaded_once_settled_and_the_old_one_retired() -> None:
    found = {1: _source(1), 2: _source(2)}
    current = {1: _served(1)}
    unsettled = plan_changes(found, {1}, {1: P1, 2: P2}, current, "latest", None)
    assert unsettled.load == () and unsettled.retire == ()
    settled = plan_changes(found, {1, 2}, {1: P1, 2: P2}, current, "latest", None)
    assert [s.version for s in settled.load] == [2]
    assert settled.retire == (1,)


def test_a_folder_that_is_not_a_model_yet_is_waited_for() -> None:
    found = {1: _source(1), 2: "2: no model found (expected saved_model.pb ...)"}
    plan = plan_changes(found, {1, 2}, {1: P1}, {1: _served(1)}, "latest", None)
    assert plan.load == () and plan.retire == ()


def test_a_failed_version_is_retried_only_when_its_files_change() -> None:
    found = {1: _source(1), 2: _source(2)}
    current = {1: _served(1), 2: _served(2, END, P2)}
    same = plan_changes(found, {1, 2}, {1: P1, 2: P2}, current, "latest", None)
    assert same.load == ()
    assert same.retire == (1,)  # carried out only once a wanted version serves (plane.py)
    changed = plan_changes(found, {1, 2}, {1: P1, 2: P3}, current, "latest", None)
    assert [s.version for s in changed.load] == [2]


def test_policies_all_latest_n_lists_and_pinning() -> None:
    found = {v: _source(v) for v in (1, 2, 3)}
    prints = {1: P1, 2: P2, 3: P3}
    current = {1: _served(1)}
    everything = plan_changes(found, {1, 2, 3}, prints, current, "all", None)
    assert [s.version for s in everything.load] == [2, 3] and everything.retire == ()
    two = plan_changes(found, {1, 2, 3}, prints, current, "latest:2", None)
    assert [s.version for s in two.load] == [2, 3] and two.retire == (1,)
    listed = plan_changes(found, {1, 2, 3}, prints, current, "1,3,7", None)  # 7 not there yet
    assert [s.version for s in listed.load] == [3] and listed.retire == ()
    pinned = plan_changes(found, {1, 2, 3}, prints, current, "latest", 1)
    assert pinned.load == () and pinned.retire == ()


def test_removed_folders_retire_loaded_versions_and_forget_failed_ones() -> None:
    current = {1: _served(1), 2: _served(2, END, P2), 3: _served(3)}
    plan = plan_changes({3: _source(3)}, {3}, {3: P3}, current, "all", None)
    assert plan.retire == (1,)
    assert plan.forget == (2,)
    assert plan.load == ()


def test_fingerprints_change_while_a_version_is_written_and_settle_after(tmp_path: Path) -> None:
    folder = tmp_path / "4"
    (folder / "variables").mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(b"x" * 10)
    first = fingerprint(folder)
    with (folder / "variables" / "variables.data-00000-of-00001").open("ab") as data:
        data.write(b"y" * 100)
    second = fingerprint(folder)
    assert first != second
    assert fingerprint(folder) == second  # nothing changed since
    (folder / ".partial").write_bytes(b"hidden files count too")
    assert fingerprint(folder) != second
    os.utime(folder / "saved_model.pb", ns=(1, 1))
    assert fingerprint(folder) != second


def test_a_keras_version_is_fingerprinted_by_its_folder(tmp_path: Path) -> None:
    (tmp_path / "3").mkdir()
    model = tmp_path / "3" / "model.keras"
    model.write_bytes(b"zip")
    source = VersionSource(3, model, "keras")
    before = fingerprints({3: source})
    (tmp_path / "3" / "modelplane.yaml").write_text("outputs: {}")
    assert fingerprints({3: source}) != before
