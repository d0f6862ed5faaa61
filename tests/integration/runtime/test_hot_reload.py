"""New model versions served without a restart (``--poll-seconds``), under steady load.

One runtime polls a repository that starts with version 1 while client threads send
requests without pause. Version 2 is renamed in: it becomes the default and version 1 is
unloaded; a broken version 3 fails to load and replaces nothing; version 4 is written a
piece per poll and is loaded only once complete. Every request of the whole run must get a
200 from the version the repository says. The two-input test model scales by its version
number (tests/fixtures/models.py), so each answer shows which version computed it.
"""

from __future__ import annotations

import shutil
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.fixtures.models import build_two_io_model
from tests.fixtures.object_stores import StoreServer, clean_env
from tests.fixtures.polling import eventually
from tests.fixtures.runtime_server import (
    RuntimeServer,
    launch_runtime,
    metric_value,
    serve_command,
)

pytestmark = pytest.mark.slow

POLL_S = 1.0  # the slow copy below writes once per poll: a second of slack on a busy machine
ROW = [1.0, 2.0, 3.0]
PREDICT = {"signature_name": "scale_only", "instances": [ROW]}


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Versions 1-3 of the test model, built outside the served repository."""
    return build_two_io_model(tmp_path_factory.mktemp("staged"), versions=(1, 2, 3))


@pytest.fixture(scope="module")
def repository(staged: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("repository") / "twoio"
    base.mkdir()
    shutil.copytree(staged / "1", base / "1")
    return base


@pytest.fixture(scope="module")
def server(repository: Path, runtime_log_dir: Path) -> Iterator[RuntimeServer]:
    args = ["--name", "twoio", "--poll-seconds", str(POLL_S)]
    with launch_runtime(repository, runtime_log_dir, args) as running:
        yield running


class Load:
    """Client threads sending predictions without pause; every answer is kept."""

    def __init__(self, url: str, clients: int = 4) -> None:
        self.url = url
        self.stop = threading.Event()
        self.statuses: Counter[int] = Counter()
        self.factors: list[float] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run) for _ in range(clients)]

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self.stop.is_set():
                reply = client.post("/v1/models/twoio:predict", json=PREDICT)
                with self.lock:
                    self.statuses[reply.status_code] += 1
                    if reply.status_code == 200:
                        scaled = np.asarray(reply.json()["predictions"][0])
                        self.factors.append(float(scaled[0] / ROW[0]))

    def latest_factor(self) -> float | None:
        with self.lock:
            return self.factors[-1] if self.factors else None

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)


def _status(server: RuntimeServer) -> dict[int, dict[str, object]]:
    with server.client() as client:
        body = client.get("/v1/models/twoio").json()
    return {int(v["version"]): v for v in body["model_version_status"]}


def _polls(server: RuntimeServer) -> float:
    with server.client() as client:
        return metric_value(client.get("/metrics").text, "modelplane_repository_polls_total")


def _wait_polls(server: RuntimeServer, count: int) -> None:
    start = _polls(server)
    eventually(lambda: _polls(server) >= start + count, timeout=30, interval=0.05,
               what=f"{count} more polls")


def test_versions_come_and_go_under_load_with_no_failed_request(
    server: RuntimeServer, repository: Path, staged: Path
) -> None:
    with Load(server.url) as load:
        eventually(lambda: load.latest_factor() == 1.0, what="answers from version 1")
        # Version 2, renamed in whole: the default within a few polls, version 1 unloaded.
        shutil.copytree(staged / "2", repository.parent / ".incoming-2")
        (repository.parent / ".incoming-2").rename(repository / "2")
        eventually(lambda: load.latest_factor() == 2.0, timeout=60, what="answers from v2")
        eventually(lambda: set(_status(server)) == {2}, timeout=60, what="version 1 unloaded")

        # A broken version 3: it fails to load and version 2 keeps serving.
        (repository / "3").mkdir()
        (repository / "3" / "saved_model.pb").write_bytes(b"not a SavedModel")
        broken = eventually(lambda: _status(server).get(3, {}).get("state") == "END"
                            and _status(server)[3], timeout=60, what="version 3 to fail")
        assert broken["status"]["error_message"]  # type: ignore[index]
        assert _status(server)[2]["state"] == "AVAILABLE"
        with server.client() as client:
            metrics = client.get("/metrics").text
        assert metric_value(metrics, "modelplane_model_load_failures_total") == 1
        assert metric_value(metrics, "modelplane_model_version_state", version="3",
                            state="END") == 1

        # Version 4 written a piece per poll (a slow copy): never loaded half-written.
        _copy_slowly(staged / "3", repository / "4", server)
        eventually(lambda: load.latest_factor() == 3.0, timeout=60, what="answers from v4")
        eventually(lambda: _status(server).get(4, {}).get("state") == "AVAILABLE",
                   timeout=60, what="version 4 AVAILABLE")
        eventually(lambda: 2 not in _status(server), timeout=60, what="version 2 unloaded")
    with server.client() as client:
        failures = metric_value(client.get("/metrics").text,
                                "modelplane_model_load_failures_total")
    assert failures == 1, "version 4 was tried before it was complete"
    assert set(load.statuses) == {200}, load.statuses
    assert sum(load.statuses.values()) > 100
    assert set(load.factors) <= {1.0, 2.0, 3.0}
    errors = [e for e in server.log_events() if e.get("level") == "error"]
    assert [e.get("version") for e in errors] == [3], errors


def _copy_slowly(source: Path, target: Path, server: RuntimeServer) -> None:
    """Copy a SavedModel the way a slow sync tool does: something changes at every poll."""
    files = sorted(p for p in source.rglob("*") if p.is_file())
    # The model's entry point first: a naive loader would try it before the variables.
    files.sort(key=lambda p: p.name != "saved_model.pb")
    for path in files:
        destination = target / path.relative_to(source)
        destination.parent.mkdir(parents=True, exist_ok=True)
        data = path.read_bytes()
        for start in range(0, max(len(data), 1), max(len(data) // 2, 1)):
            with destination.open("ab") as out:
                out.write(data[start : start + max(len(data) // 2, 1)])
            _wait_polls(server, 1)


def test_the_repository_extension_lists_unloads_and_loads(server: RuntimeServer) -> None:
    with server.client() as client:
        index = client.post("/v2/repository/index").json()
        assert {"name": "twoio", "version": "4", "state": "READY", "reason": ""} in index
        assert client.post("/v2/repository/models/other/unload").status_code == 404
        assert client.post("/v2/repository/models/twoio/unload").json() == {}
        assert client.get("/v2/health/ready").status_code == 503
        assert client.post("/v1/models/twoio:predict", json=PREDICT).status_code == 503
        assert client.post("/v2/repository/index").json()[0]["state"] == "UNAVAILABLE"
        assert client.post("/v2/repository/models/twoio/load").json() == {}
        assert client.get("/v2/health/ready").status_code == 200
        reply = client.post("/v1/models/twoio:predict", json=PREDICT)
        assert reply.json()["predictions"][0][0] == 3.0


def test_a_repository_in_s3_is_followed_the_same_way(
    s3_server: StoreServer, staged: Path, runtime_log_dir: Path, tmp_path: Path
) -> None:
    # `modelplane serve s3://...`: a local copy that follows the bucket (mirror.py).
    bucket = s3_server.make_bucket()
    s3_server.upload_folder(bucket, "twoio/1", staged / "1")
    env = {**clean_env(), **s3_server.env(), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    command = [*serve_command(Path("unused")), "--name", "twoio", "--poll-seconds", str(POLL_S)]
    command[command.index("unused")] = s3_server.uri(bucket, "twoio")
    with launch_runtime(Path("unused"), runtime_log_dir, command=command, env=env) as server, \
            Load(server.url, clients=2) as load:
        eventually(lambda: load.latest_factor() == 1.0, what="answers from version 1")
        s3_server.upload_folder(bucket, "twoio/2", staged / "2")
        eventually(lambda: load.latest_factor() == 2.0, timeout=60, what="answers from v2")
        eventually(lambda: set(_status(server)) == {2}, timeout=60, what="version 1 unloaded")
        # Version 2 deleted from the bucket: version 1 is the latest again (as TF Serving).
        for key in _keys(staged / "2", "twoio/2"):
            s3_server.delete(bucket, key)
        eventually(lambda: load.latest_factor() == 1.0, timeout=60, what="back to version 1")
        # Version 1 deleted too: the last working version keeps serving from memory.
        for key in _keys(staged / "1", "twoio/1"):
            s3_server.delete(bucket, key)
        _wait_polls(server, 3)
        assert load.latest_factor() == 1.0
        assert set(_status(server)) == {1}
    assert set(load.statuses) == {200}, load.statuses
    assert not list((tmp_path / "cache").rglob("saved_model.pb")), "copies of deleted versions"


def _keys(folder: Path, prefix: str) -> list[str]:
    return [f"{prefix}/{p.relative_to(folder).as_posix()}" for p in folder.rglob("*")
            if p.is_file()]
