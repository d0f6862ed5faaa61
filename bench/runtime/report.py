"""Medians over repeats, ratios against the best peer and the floor, the printed table."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

Row = dict[str, Any]
_KEY = ("model", "connections", "contender")
_NUMBERS = ("rps", "p50_ms", "p99_ms", "cpu_us_per_req", "peak_rss_mb", "cold_start_s", "errors")


def medians(samples: Iterable[Row]) -> list[Row]:
    """One row per (model, connections, contender): the median of each number over repeats."""
    groups: dict[tuple[Any, ...], list[Row]] = defaultdict(list)
    for sample in samples:
        groups[tuple(sample[k] for k in _KEY)].append(sample)
    rows: list[Row] = []
    for key, group in groups.items():
        row: Row = dict(zip(_KEY, key, strict=True))
        row["kind"] = group[0]["kind"]
        row["repeats"] = len(group)
        for number in _NUMBERS:
            values = [g[number] for g in group if g.get(number) is not None]
            row[number] = statistics.median(values) if values else None
        row["rps_spread"] = (
            (max(g["rps"] for g in group) - min(g["rps"] for g in group)) / row["rps"]
            if row["rps"] else None
        )
        rows.append(row)
    _add_ratios(rows)
    return rows


def _add_ratios(rows: list[Row]) -> None:
    by_case: dict[tuple[Any, ...], list[Row]] = defaultdict(list)
    for row in rows:
        by_case[(row["model"], row["connections"])].append(row)
    for case in by_case.values():
        peers = [r for r in case if r["kind"] == "peer" and r["rps"]]
        best = max(peers, key=lambda r: r["rps"], default=None)
        floor = next((r for r in case if r["kind"] == "floor" and r["rps"]), None)
        for row in case:
            row["best_peer"] = best["contender"] if best else None
            row["x_best_peer"] = row["rps"] / best["rps"] if best and row["rps"] else None
            row["p99_vs_best_p99"] = (
                row["p99_ms"] / min(p["p99_ms"] for p in peers)
                if peers and row["p99_ms"] else None
            )
            row["x_floor"] = row["rps"] / floor["rps"] if floor and row["rps"] else None


def _fmt(value: Any, spec: str) -> str:
    if value is None:
        width = int(spec.split(".")[0] or 1)
        return "-".rjust(width)
    return format(value, spec)


def table(rows: list[Row]) -> str:
    """A fixed-width text table, grouped by model and connections."""
    head = (f"{'model':<5} {'conn':>4} {'contender':<22} {'req/s':>9} {'±%':>4} "
            f"{'p50 ms':>8} {'p99 ms':>8} {'cpu us':>6} {'err':>5} {'RSS MB':>7} {'cold s':>6} "
            f"{'x peer':>6} {'x floor':>7}")
    lines = [head, "-" * len(head)]
    order = {"runtime": 0, "peer": 1, "floor": 2, "reference": 3, "ceiling": 4}
    rows = sorted(rows, key=lambda r: (r["model"], r["connections"], order.get(r["kind"], 9),
                                       r["contender"]))
    last = None
    for row in rows:
        case = (row["model"], row["connections"])
        if last is not None and case != last:
            lines.append("")
        last = case
        spread = row.get("rps_spread")
        spread_pct = spread * 100 if spread is not None else None
        lines.append(
            f"{row['model']:<5} {row['connections']:>4} {row['contender']:<22} "
            f"{_fmt(row['rps'], '9.0f')} {_fmt(spread_pct, '4.0f')} "
            f"{_fmt(row['p50_ms'], '8.2f')} {_fmt(row['p99_ms'], '8.2f')} "
            f"{_fmt(row.get('cpu_us_per_req'), '6.0f')} {_fmt(row['errors'], '5.0f')} "
            f"{_fmt(row['peak_rss_mb'], '7.0f')} "
            f"{_fmt(row['cold_start_s'], '6.1f')} {_fmt(row.get('x_best_peer'), '6.2f')} "
            f"{_fmt(row.get('x_floor'), '7.2f')}"
        )
    return "\n".join(lines)
