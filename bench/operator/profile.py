"""Summarize a py-spy collapsed profile (``--profile F.txt``) into where the time goes.

    python -m bench.operator.profile /tmp/op.txt [--top 15]

Samples of the event-loop thread only (idle helper threads and imports are left out), each
put in the first bucket whose frame it contains, in the order below: the operator's own
steps first, then kopf's, then everything else. Then the top functions by self time.
"""

from __future__ import annotations

import argparse
import collections
import re
import sys
from pathlib import Path

BUCKETS = (
    ("reconcile: render (validate, builders, deepcopy, last-applied JSON)", "Controller.render ("),
    ("reconcile: child writes (KubeClient, aiohttp, JSON)", "Applier.apply ("),
    ("reconcile: the rest (status, prune)", "Controller.reconcile ("),
    ("floor handler (one POST)", "run.<locals>.create ("),
    ("kopf on.event path (model_deployment_event)", "process_watching_cause ("),
    ("kopf status PATCH", "patch_and_check ("),
    ("kopf per-object machinery (causes, diff-base, kwargs)", "process_resource_event ("),
    ("own child/Pod watchers (JSON, cache, child_event)", "Watcher.run ("),
    ("status refreshes", "StatusReporter.refresh ("),
    ("kopf watch streams", "watch_objs ("),
    ("request body writes (aiohttp, loopback send)", "ClientRequest.write_bytes ("),
)
_LINE = re.compile(r":\d+\)")


def summarize(path: Path, top: int) -> str:
    """The bucket table and the top self-time functions of one collapsed profile."""
    buckets: collections.Counter[str] = collections.Counter()
    leaves: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or "Thread._bootstrap" in stack or "importlib" in stack:
            continue
        n = int(count)
        total += n
        name = next((b for b, frame in BUCKETS if frame in stack), "event loop and other")
        buckets[name] += n
        leaves[_LINE.sub(")", stack.rsplit(";", 1)[-1])] += n
    if not total:
        return f"{path}: no samples"
    out = [f"{path}: {total} event-loop samples"]
    out += [f"  {n:6d} {100 * n / total:5.1f}%  {name}" for name, n in buckets.most_common()]
    out.append("top functions by self time:")
    out += [f"  {n:6d} {100 * n / total:5.1f}%  {name[:110]}"
            for name, n in leaves.most_common(top)]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """Print the summary of each profile given."""
    parser = argparse.ArgumentParser(prog="python -m bench.operator.profile",
                                     description=__doc__)
    parser.add_argument("profiles", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args(argv)
    for path in args.profiles:
        print(summarize(path, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
