"""`commodex lob ...` commands (wired into commodex/cli.py by `add_lob_parser`)."""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from trading.lobster import LobsterReport, replay_lobster


def add_lob_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    lob = subparsers.add_parser("lob", help="limit order book tools")
    sub = lob.add_subparsers(dest="lob_command", required=True)
    p = sub.add_parser("lobster", help="replay LOBSTER messages through the book and compare with its snapshots")
    p.add_argument("messages", help="LOBSTER *_message_N.csv")
    p.add_argument("orderbook", help="LOBSTER *_orderbook_N.csv")
    p.add_argument("--levels", type=int, default=None, help="compare only the best N levels (default: all)")
    p.add_argument("--impl", choices=("numba", "python"), default="numba")
    p.add_argument("--json", action="store_true", help="print the full report as JSON")
    p.set_defaults(handler=main_lobster)
    return lob


def main_lobster(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run the replay; exit code 0 when there are no mismatches, priority violations or engine disagreements."""
    out = out or sys.stdout
    report = replay_lobster(args.messages, args.orderbook, levels=args.levels, impl=args.impl)
    if args.json:
        out.write(report.to_json().decode() + "\n")
    else:
        out.write(summary(report) + "\n")
    return 0 if report.ok else 1


def summary(r: LobsterReport) -> str:
    prio = (f"{r.priority_violations} priority violations in {r.executions_checked} executions"
            if r.priority_checked else "priority not checked (levels hidden)")
    lines = [
        f"{r.messages:,} messages, level {r.file_levels} file, {r.levels} levels compared",
        f"mismatched snapshots: {r.mismatched_rows} of {r.compared_rows} (bid {r.mismatches_per_level['bid']}, "
        f"ask {r.mismatches_per_level['ask']})",
        prio,
        f"engine fills: {r.engine_executions} ({r.engine_mismatches} differed); unknown ids: {r.unknown}",
        "OK" if r.ok else "FAILED",
    ]
    return "\n".join(lines)
