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


def _strategy(text: str) -> str:
    from trading.config import TradeConfig
    from trading.strategies import make_strategies

    try:
        make_strategies(text, TradeConfig())
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def _threshold(text: str) -> float:
    v = float(text)
    if not 0.0 < v <= 1.0:
        raise argparse.ArgumentTypeError("the auto threshold is a risk score in (0, 1]")
    return v


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="commodex", description="Market intelligence engine for commodity markets.")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="run the embedded engine on simulated venues and serve the dashboard")
    d.add_argument("--duration", type=float, default=0.0, help="stop after S seconds (default: run until Ctrl-C)")
    d.add_argument("--json", action="store_true", help="print a one-line JSON summary at the end")
    d.add_argument("--host", default="127.0.0.1")
    d.add_argument("--port", type=int, default=8765)
    d.add_argument("--scenario", default="", help="comma-separated simulator scenarios (default: a demo mix)")
    d.add_argument("--seed", type=int, default=1)
    d.add_argument("--state-dir", default=".commodex", help="embedded storage lives here")
    d.add_argument("--no-serve", action="store_true", help="do not start the web server")
    d.add_argument("--source", choices=["wire", "inproc"], default="wire",
                   help="wire (default): loopback ICE WebSocket, CME FIX and MCX HTTP venue simulators read by the "
                        "venue adapters; inproc: the simulator's messages straight into the engine")
    d.add_argument("--trade", type=_strategy, default=None, metavar="STRATEGY",
                   help="also run the trade module live on simulated venues: arbitrage, crash or arbitrage,crash; "
                        "orders over the risk threshold wait for approval at /api/trading (see `commodex apikey`)")
    d.add_argument("--auto-threshold", type=_threshold, default=None, metavar="SCORE",
                   help="with --trade: orders with a risk score below this in (0, 1] execute automatically "
                        "(default 0.8; 0.3 parks most new orders: shows the approval flow)")

    s = sub.add_parser("simulate", help="generate a seeded market to a Parquet tick file")
    s.add_argument("--scenario", default="calm", help="comma-separated: calm,crash,spike,arbitrage,stale,crossed,dirty")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--duration", type=float, default=600.0, help="seconds of market time")
    s.add_argument("--out", required=True, type=Path)

    r = sub.add_parser("replay", help="replay a tick file or a capture directory through the embedded engine")
    r.add_argument("file", type=Path)
    r.add_argument("--speed", type=_speed, default=0.0, help="X times real time, or 'max' (default)")
    r.add_argument("--json", action="store_true")
    r.add_argument("--state-dir", default=".commodex")
    r.add_argument("--no-store", action="store_true", help="do not persist outputs to embedded storage")
    r.add_argument("--runtime", choices=["embedded", "flink"], default="embedded",
                   help="embedded (default): this process; flink: through Kafka and a PyFlink job into PostgreSQL "
                        "and ClickHouse (needs `commodex stack up` with the same --state-dir)")

    b = sub.add_parser("bars", help="turn a tick file into OHLCV bars")
    b.add_argument("input", type=Path)
    b.add_argument("--interval", default="1m")
    b.add_argument("--out", required=True, type=Path)
    b.add_argument("--zero-size", choices=["keep", "reject"], default="keep",
                   help="ticks with size 0: keep them (prices count, volume 0) or reject them to the rejects file")
    b.add_argument("--instrument", default=None, help="instrument name when the input has no instrument column")

    k = sub.add_parser("apikey", help="manage the API keys of the trading API (stored hashed in the state dir)")
    ksub = k.add_subparsers(dest="apikey_command", required=True)
    ka = ksub.add_parser("add", help="create a key and print it (the only time it is shown)")
    ka.add_argument("name", help="who holds the key (shown in the audit trail and logs)")
    ka.add_argument("--role", choices=["viewer", "trader"], default="viewer",
                    help="viewer: read the trading API; trader: also approve, reject, kill and resume")
    kl = ksub.add_parser("list", help="list key names and roles (never the keys)")
    kr = ksub.add_parser("remove", help="revoke a key")
    kr.add_argument("name")
    for kp in (ka, kl, kr):
        kp.add_argument("--state-dir", default=".commodex")

    from feeds.capture_cli import add_capture_parser
    from stack.cli import add_stack_parser
    from trading.backtest_cli import add_backtest_parser
    from trading.cli import add_lob_parser

    add_lob_parser(sub)
    add_backtest_parser(sub)
    add_capture_parser(sub)
    add_stack_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "demo":
        from commodex.embedded.runner import run_demo

        return run_demo(args)
    if args.command == "simulate":
        from commodex.embedded.runner import run_simulate

        return run_simulate(args)
    if args.command == "replay" and args.runtime == "flink":
        from stack.flink_replay import run_replay_flink

        return int(run_replay_flink(args))
    if args.command == "replay":
        from commodex.embedded.runner import run_replay

        return run_replay(args)
    if args.command == "bars":
        from jobs.barfile import bars_file

        stats = bars_file(args.input, args.interval, args.out, default_instrument=args.instrument,
                          zero_size=args.zero_size)
        print(stats)
        return 0
    if args.command in ("lob", "capture", "stack"):
        return int(args.handler(args))
    if args.command == "apikey":
        return _apikey(args)
    if args.command == "backtest":
        from trading.backtest_cli import run_backtest_command

        return int(run_backtest_command(args))
    raise AssertionError(args.command)


def _apikey(args: argparse.Namespace) -> int:
    from serving.auth import ApiKeyStore

    keys = ApiKeyStore.in_state_dir(args.state_dir)
    if args.apikey_command == "add":
        try:
            key = keys.add(args.name, args.role)
        except ValueError as e:
            print(f"commodex apikey add: {e}", file=sys.stderr)
            return 2
        print(key)
        print(f"{args.role} key {args.name!r} stored hashed in {keys.path}; this is the only time it is shown",
              file=sys.stderr)
        return 0
    if args.apikey_command == "list":
        for k in keys.list():
            print(f"{k.name}\t{k.role.value}\tcdx_{k.key_id}_...")
        return 0
    if args.apikey_command == "remove":
        if not keys.remove(args.name):
            print(f"commodex apikey remove: no key named {args.name!r}", file=sys.stderr)
            return 1
        return 0
    raise AssertionError(args.apikey_command)


if __name__ == "__main__":
    sys.exit(main())
