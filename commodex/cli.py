"""The `commodex` command: demo, simulate, replay, bars, lob, backtest."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _speed(text: str) -> float:
    if text == "max":
        return 0.0
    v = float(text)
    if v <= 0:
        raise argparse.ArgumentTypeError("speed must be > 0 or 'max'")
    return v


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="commodex", description="Market intelligence engine for commodity markets.")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="run the embedded engine on simulated feeds and serve the dashboard")
    d.add_argument("--duration", type=float, default=0.0, help="stop after S seconds (default: run until Ctrl-C)")
    d.add_argument("--json", action="store_true", help="print a one-line JSON summary at the end")
    d.add_argument("--host", default="127.0.0.1")
    d.add_argument("--port", type=int, default=8765)
    d.add_argument("--scenario", default="", help="comma-separated simulator scenarios (default: a demo mix)")
    d.add_argument("--seed", type=int, default=1)
    d.add_argument("--state-dir", default=".commodex", help="embedded storage lives here")
    d.add_argument("--no-serve", action="store_true", help="do not start the web server")

    s = sub.add_parser("simulate", help="generate a seeded market to a Parquet tick file")
    s.add_argument("--scenario", default="calm", help="comma-separated: calm,crash,spike,arbitrage,stale,crossed,dirty")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--duration", type=float, default=600.0, help="seconds of market time")
    s.add_argument("--out", required=True, type=Path)

    r = sub.add_parser("replay", help="replay a tick file through the embedded engine")
    r.add_argument("file", type=Path)
    r.add_argument("--speed", type=_speed, default=0.0, help="X times real time, or 'max' (default)")
    r.add_argument("--json", action="store_true")
    r.add_argument("--state-dir", default=".commodex")
    r.add_argument("--no-store", action="store_true", help="do not persist outputs to embedded storage")

    b = sub.add_parser("bars", help="turn a tick file into OHLCV bars")
    b.add_argument("input", type=Path)
    b.add_argument("--interval", default="1m")
    b.add_argument("--out", required=True, type=Path)
    b.add_argument("--zero-size", choices=["keep", "reject"], default="keep",
                   help="ticks with size 0: keep them (prices count, volume 0) or reject them to the rejects file")
    b.add_argument("--instrument", default=None, help="instrument name when the input has no instrument column")

    from trading.backtest_cli import add_backtest_parser
    from trading.cli import add_lob_parser

    add_lob_parser(sub)
    add_backtest_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "demo":
        from commodex.embedded.runner import run_demo

        return run_demo(args)
    if args.command == "simulate":
        from commodex.embedded.runner import run_simulate

        return run_simulate(args)
    if args.command == "replay":
        from commodex.embedded.runner import run_replay

        return run_replay(args)
    if args.command == "bars":
        from jobs.barfile import bars_file

        stats = bars_file(args.input, args.interval, args.out, default_instrument=args.instrument,
                          zero_size=args.zero_size)
        print(stats)
        return 0
    if args.command == "lob":
        return int(args.handler(args))
    if args.command == "backtest":
        from trading.backtest_cli import run_backtest_command

        return int(run_backtest_command(args))
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())
