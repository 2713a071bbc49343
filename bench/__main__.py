"""Run every benchmark module, print one table, write JSON.

    python -m bench [--quick] [--only bars,replay] [--out bench/results/latest.json]
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
import time
import traceback
from dataclasses import asdict
from pathlib import Path

from bench.common import Result

MODULES = [
    "bench_replay", "bench_bars", "bench_tickstages", "bench_simulator", "bench_book", "bench_fanout",
    "bench_feeds", "bench_decoders", "bench_stack", "bench_flink",
]


def _fmt(v: float) -> str:
    if v >= 1e6:
        return f"{v / 1e6:,.2f} M"
    if v >= 1e3:
        return f"{v / 1e3:,.1f} k"
    return f"{v:,.3g}"


def _table(results: list[Result]) -> str:
    rows = [("area", "measurement", "value", "unit", "baseline (same run)", "ratio")]
    for r in results:
        ratio = r.ratio
        rows.append(
            (
                r.area,
                r.name,
                _fmt(r.value),
                r.unit,
                f"{r.baseline_name} = {_fmt(r.baseline_value)}" if r.baseline_name else "",
                f"{ratio:.2f}x" if ratio is not None else "",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench")
    p.add_argument("--quick", action="store_true", help="smaller workloads (smoke run)")
    p.add_argument("--only", default="", help="comma-separated areas/modules, e.g. bars,replay")
    p.add_argument("--out", default="bench/results/latest.json")
    args = p.parse_args(argv)
    wanted = {w.strip() for w in args.only.split(",") if w.strip()}
    results: list[Result] = []
    failures: list[str] = []
    for name in MODULES:
        if wanted and name.removeprefix("bench_") not in wanted and name not in wanted:
            continue
        try:
            mod = importlib.import_module(f"bench.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"bench.{name}":
                continue
            raise
        t0 = time.perf_counter()
        try:
            rows = mod.run(quick=args.quick)
        except Exception:  # a failing benchmark is reported and fails the run, after the others ran
            failures.append(name)
            traceback.print_exc()
            continue
        print(f"[{name}: {time.perf_counter() - t0:.1f} s]", file=sys.stderr)
        results.extend(rows)
    print(_table(results))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "when_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine()},
        "quick": args.quick,
        "results": [asdict(r) | {"ratio": r.ratio} for r in results],
        "failures": failures,
    }
    out.write_text(json.dumps(doc, indent=2))
    print(f"\nwrote {out}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
