"""`commodex backtest --strategy NAME --data FILE|DIR [--latency-ms N] [--config FILE.json] --out DIR`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import msgspec

from trading.config import BacktestConfig
from trading.strategies import STRATEGY_NAMES


def add_backtest_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    p = subparsers.add_parser("backtest", help="replay tick files through the signal pipeline and a strategy")
    p.add_argument("--strategy", required=True,
                   help=f"strategy name, or a comma-separated list applied in order ({', '.join(STRATEGY_NAMES)})")
    p.add_argument("--data", required=True, type=Path, help="a tick file, or a directory of .parquet/.csv files")
    p.add_argument("--latency-ms", type=int, default=0, help="order latency in event time (default 0)")
    p.add_argument("--config", type=Path, default=None, help="JSON file with a BacktestConfig (unknown keys fail)")
    p.add_argument("--out", required=True, type=Path, help="report directory (report.json, PNGs, index.html)")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON line")
    p.set_defaults(handler=run_backtest_command)
    return p


def load_config(path: Path | None) -> BacktestConfig:
    if path is None:
        return BacktestConfig()
    return BacktestConfig.from_dict(json.loads(path.read_text()))


def run_backtest_command(args: argparse.Namespace) -> int:
    from trading.backtest import run_backtest

    try:
        config = load_config(args.config)
        report = run_backtest(args.strategy, args.data, args.latency_ms, args.out, config)
    except (FileNotFoundError, ValueError, msgspec.ValidationError) as err:
        print(f"commodex backtest: {err}", file=sys.stderr)
        return 2
    s = report.summary
    if args.json:
        print(msgspec.json.encode(s).decode())
    else:
        print(f"P&L {s.pnl_usd:,.2f} USD (realised {s.realised_usd:,.2f}), max drawdown {s.max_drawdown_usd:,.2f} USD, "
              f"{s.fills} fills / {s.orders} orders, turnover {s.turnover_usd:,.0f} USD, Sharpe {s.sharpe}")
        print(f"report: {report.files.index_html}")
    return 0
