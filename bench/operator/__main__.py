"""``python -m bench.operator``: the operator at scale next to a bare kopf floor (issue 3).

Each repeat runs both contenders, alternating (modelplane, then floor), each against a
fresh emulator, so a noisy neighbour hits both alike; the table shows medians and the
ratios of the medians. Results go to ``bench/operator/results/<date>.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench.operator.run import Result, run_once

CONTENDERS = ("modelplane", "floor")
RESULTS = Path(__file__).resolve().parent / "results"
TARGET_CONVERGE_S = 60.0
TARGET_RSS_MIB = 300.0
TARGET_RATIO = 2.0
COLUMNS = (("converge_s", "converge s", "{:.2f}"), ("p50_object_s", "p50/object s", "{:.2f}"),
           ("peak_rss_mib", "peak RSS MiB", "{:.1f}"), ("cpu_s", "CPU s", "{:.2f}"),
           ("apiserver_cpu_s", "API server CPU s", "{:.2f}"),
           ("calls_per_object", "calls/obj", "{:.2f}"),
           ("settled_calls_per_object", "calls/obj settled", "{:.2f}"))


def medians(results: list[Result]) -> dict[str, float]:
    """The median of every numeric column."""
    return {key: statistics.median(getattr(r, key) for r in results) for key, _, _ in COLUMNS}


def table(summary: dict[str, dict[str, float]]) -> str:
    """The summary as a fixed-width text table with an our/floor ratio row."""
    header = f"{'':<12}" + "".join(f"{title:>19}" for _, title, _ in COLUMNS)
    lines = [header]
    for contender in CONTENDERS:
        lines.append(f"{contender:<12}" + "".join(
            f"{fmt.format(summary[contender][key]):>19}" for key, _, fmt in COLUMNS))
    lines.append(f"{'ratio':<12}" + "".join(
        f"{summary['modelplane'][key] / summary['floor'][key]:>18.2f}x"
        if summary["floor"][key] else f"{'-':>19}" for key, _, _ in COLUMNS))
    return "\n".join(lines)


def verdict(summary: dict[str, dict[str, float]]) -> list[str]:
    """Issue 3's targets, each marked met or missed."""
    ours, floor = summary["modelplane"], summary["floor"]
    ratio = ours["converge_s"] / floor["converge_s"]
    checks = [(ours["converge_s"] <= TARGET_CONVERGE_S,
               f"converge {ours['converge_s']:.2f} s <= {TARGET_CONVERGE_S:.0f} s"),
              (ours["peak_rss_mib"] <= TARGET_RSS_MIB,
               f"peak RSS {ours['peak_rss_mib']:.1f} MiB <= {TARGET_RSS_MIB:.0f} MiB"),
              (ratio <= TARGET_RATIO, f"time ratio {ratio:.2f}x <= {TARGET_RATIO:.0f}x floor")]
    return [f"{'met   ' if ok else 'MISSED'} {text}" for ok, text in checks]


def main(argv: list[str] | None = None) -> int:
    """Parse options, run every repeat, print the table and write the JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.operator", description=__doc__)
    parser.add_argument("--count", type=int, default=500, help="ModelDeployments per run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per contender (median)")
    parser.add_argument("--timeout", type=float, default=180.0,
                        help="give up on a run after this many seconds")
    parser.add_argument("--only", choices=CONTENDERS, help="run one contender only")
    parser.add_argument("--profile", type=Path, metavar="FILE",
                        help="py-spy profile of the first contender's first run "
                        "(.txt: collapsed stacks, else speedscope)")
    parser.add_argument("--operator-command", type=shlex.split, metavar="CMD",
                        help="run this instead of `modelplane operator --standalone` "
                        "(A/B a candidate change; it gets the same KUBECONFIG)")
    parser.add_argument("--balancer", action="store_true",
                        help="objects with the balancer in front (the default spec: 9 "
                        "children) instead of routing.balancer: false (4 children)")
    parser.add_argument("--output", type=Path, help="results JSON (default: results/<date>.json)")
    args = parser.parse_args(argv)

    contenders = (args.only,) if args.only else CONTENDERS
    runs: dict[str, list[Result]] = {c: [] for c in contenders}
    for repeat in range(args.repeats):
        for contender in contenders:
            profile = args.profile if contender == contenders[0] and repeat == 0 else None
            result = run_once(contender, args.count, args.timeout, profile,
                              args.operator_command, args.balancer)
            runs[contender].append(result)
            print(f"repeat {repeat + 1}/{args.repeats} {contender:<10} "
                  f"converge {result.converge_s:6.2f} s  p50 {result.p50_object_s:5.2f} s  "
                  f"RSS {result.peak_rss_mib:6.1f} MiB  CPU {result.cpu_s:5.2f} s  "
                  f"calls/obj {result.calls_per_object:.2f} "
                  f"(settled {result.settled_calls_per_object:.2f})", flush=True)

    summary = {c: medians(rs) for c, rs in runs.items()}
    report: dict[str, Any] = {
        "command": shlex.join(["python", "-m", "bench.operator", *(argv or sys.argv[1:])]),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": len(__import__("os").sched_getaffinity(0)),
                    "python": platform.python_version(),
                    "loadavg_at_end": Path("/proc/loadavg").read_text().split()[:3]},
        "count": args.count, "repeats": args.repeats, "medians": summary,
        "runs": {c: [r.to_json() for r in rs] for c, rs in runs.items()},
    }
    if len(contenders) == 2:
        report["ratios"] = {key: round(summary["modelplane"][key] / summary["floor"][key], 3)
                            for key, _, _ in COLUMNS if summary["floor"][key]}
        report["paired_time_ratios"] = [
            round(a.converge_s / b.converge_s, 3)
            for a, b in zip(runs["modelplane"], runs["floor"], strict=True)]
        report["targets"] = verdict(summary)
        print()
        print(f"{args.count} objects, median of {args.repeats} (load average "
              f"{' '.join(report['machine']['loadavg_at_end'])})")
        print(table(summary))
        print("paired time ratios:", ", ".join(f"{r:.2f}x" for r in report["paired_time_ratios"]))
        for line in report["targets"]:
            print(line)
    output = args.output or RESULTS / f"{time.strftime('%Y-%m-%d-%H%M')}-n{args.count}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"results: {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
