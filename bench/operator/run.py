"""One measured run: a fresh emulator, one operator, N ModelDeployments created at once.

Sequence: start the emulator and apply the CRD with kubectl; start the contender; create one
probe object and wait for it to converge (the operator is then listening and warm, and its
start-up traffic is behind us); snapshot the emulator's counters and the operator's CPU;
start watches, POST all N objects concurrently; the clock stops when the watches have seen
every object's children and a status whose observedGeneration matches. Then wait for the
API traffic to settle (no new request for ``SETTLE_QUIET_S``) and read peak RSS.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.operator.api import Api, Counts, Progress
from bench.operator.process import Proc, apply_crd, operator_argv, start, start_emulator
from tests.fixtures.polling import eventually_async

CHILD_KINDS = {"modelplane": ("deployments", "services", "poddisruptionbudgets"),
               "floor": ("deployments",)}
PROBE = "bench-probe"
SETTLE_QUIET_S = 2.0
SETTLE_MAX_S = 20.0


@dataclass
class Result:
    """The numbers of one run of one contender."""

    contender: str
    count: int
    converge_s: float
    p50_object_s: float
    peak_rss_mib: float
    cpu_s: float
    apiserver_cpu_s: float
    calls_per_object: float
    settled_calls_per_object: float
    calls_by_verb: dict[str, int]
    settled_calls_by_verb: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        """A plain dict for the results file."""
        return asdict(self)


def operator_calls(before: Counts, after: Counts, own: Counts) -> Counter[str]:
    """Requests the operator made between two snapshots, by "VERB resource".

    WATCH is left out: the emulator counts a watch when its stream ends, and both the
    operator's and the benchmark's streams stay open.
    """
    calls: Counter[str] = Counter()
    for key, n in (after - before).items():
        if key[0] != "WATCH":
            calls[f"{key[0]} {key[1]}"] += n - own.get(key, 0)
    return +calls


async def _converge(api: Api, names: list[str], kinds: tuple[str, ...], timeout_s: float,
                    proc: Proc, create: bool = True) -> Progress:
    progress = Progress(frozenset(names), kinds)
    stop = asyncio.Event()
    watches = [asyncio.create_task(api.watch("modeldeployments", progress.update_md, stop))]
    watches += [asyncio.create_task(api.watch(kind, functools.partial(progress.update_child,
                                                                      kind), stop))
                for kind in kinds]
    try:
        if create:
            await api.create_many(names)

        def converged() -> bool:
            for task in watches:
                if task.done():
                    task.result()  # a failed watch raises here instead of timing out
            if not proc.alive():
                raise RuntimeError(f"the operator exited:\n{proc.tail()}")
            return progress.converged

        # Polled every 20 ms: the resolution of converge_s.
        await eventually_async(converged, timeout=timeout_s, interval=0.02,
                               what=f"all {len(names)} objects to converge")
        return progress
    finally:
        stop.set()
        for task in watches:
            task.cancel()
        await asyncio.gather(*watches, return_exceptions=True)


async def _settle(api: Api) -> Counts:
    """Counters once no request has arrived for SETTLE_QUIET_S; an operator still sending
    requests after SETTLE_MAX_S fails the run (an idle operator must be quiet)."""
    def calls(counts: Counts) -> Counts:
        return Counter({k: v for k, v in counts.items() if k[0] != "WATCH"})

    last, quiet_since = await api.metrics(), time.monotonic()

    async def quiet() -> Counts:
        nonlocal last, quiet_since
        now = await api.metrics()
        if calls(now) != calls(last):
            last, quiet_since = now, time.monotonic()
        # An empty Counter is falsy: not settled yet.
        return last if time.monotonic() - quiet_since >= SETTLE_QUIET_S else Counter()

    return await eventually_async(quiet, timeout=SETTLE_MAX_S, interval=0.25,
                                  what=f"no API request for {SETTLE_QUIET_S} s")


async def _measure(contender: str, count: int, url: str, proc: Proc, emulator: Proc,
                   timeout_s: float, balancer: bool) -> Result:
    api = Api(url, balancer=balancer)
    kinds = CHILD_KINDS[contender]
    try:
        await _converge(api, [PROBE], kinds, 60.0, proc)
        before, cpu_before, api_cpu_before = await api.metrics(), proc.cpu_s(), emulator.cpu_s()
        api.own.clear()
        names = [f"md-{i:04d}" for i in range(count)]
        started = time.monotonic()
        progress = await _converge(api, names, kinds, timeout_s, proc)
        converge_s = time.monotonic() - started
        cpu_s, api_cpu_s = proc.cpu_s() - cpu_before, emulator.cpu_s() - api_cpu_before
        at_converge = await api.metrics()
        settled = await _settle(api)
        done = sorted(t - started for t in progress.done_at.values())
        calls = operator_calls(before, at_converge, api.own)
        settled_calls = operator_calls(before, settled, api.own)
        # Verify by LIST what the watches reported (after the snapshots: not counted).
        mds = {md["metadata"]["name"] for md in await api.list_names("modeldeployments")}
        for kind in kinds:
            owners = {ref["name"] for child in await api.list_names(kind)
                      for ref in child["metadata"].get("ownerReferences") or []}
            if not set(names) <= owners:
                raise RuntimeError(f"LIST {kind}: {len(set(names) - owners)} objects lack one")
        if not set(names) <= mds:
            raise RuntimeError("LIST modeldeployments: objects missing")
        return Result(
            contender=contender, count=count, converge_s=round(converge_s, 3),
            p50_object_s=round(done[len(done) // 2], 3),
            peak_rss_mib=round(proc.peak_rss_mib(), 1), cpu_s=round(cpu_s, 2),
            apiserver_cpu_s=round(api_cpu_s, 2),
            calls_per_object=round(sum(calls.values()) / count, 2),
            settled_calls_per_object=round(sum(settled_calls.values()) / count, 2),
            calls_by_verb=dict(sorted(calls.items())),
            settled_calls_by_verb=dict(sorted(settled_calls.items())),
        )
    finally:
        await api.close()


def run_once(contender: str, count: int, timeout_s: float, profile: Path | None = None,
             command: list[str] | None = None, balancer: bool = False) -> Result:
    """Start everything for one contender, measure, and stop everything."""
    with tempfile.TemporaryDirectory(prefix=f"bench-operator-{contender}-") as tmp:
        workdir = Path(tmp)
        emulator, url, kubeconfig = start_emulator(workdir)
        operator: Proc | None = None
        profiler: Proc | None = None
        try:
            apply_crd(kubeconfig)
            # HTTP port 0: other engineers' operators may hold 8081 on this machine.
            operator = start(operator_argv(contender, command), workdir / "operator.log",
                             env={"KUBECONFIG": str(kubeconfig),
                                  "MODELPLANE_OPERATOR_HTTP_PORT": "0"})
            if profile is not None:
                fmt = "raw" if profile.suffix == ".txt" else "speedscope"  # raw: collapsed
                profiler = start(["py-spy", "record", "--format", fmt, "-o",
                                  str(profile), "--pid", str(operator.pid)],
                                 workdir / "py-spy.log")
            return asyncio.run(_measure(contender, count, url, operator, emulator, timeout_s,
                                        balancer))
        except BaseException:
            if operator is not None:
                print(f"--- {contender} log tail ---\n{operator.tail()}")
            raise
        finally:
            if profiler is not None:
                with contextlib.suppress(ProcessLookupError):
                    profiler.popen.send_signal(2)  # SIGINT: py-spy writes its file
                profiler.popen.wait(60)
            if operator is not None:
                operator.stop()
            emulator.stop()
