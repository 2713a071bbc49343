"""`commodex capture` (record raw venue traffic to a capture directory) and the hook `commodex replay` uses to
take a capture directory instead of a tick file.

    commodex capture --feeds ice,cme,mcx --duration 60 --out captures/run1
    commodex replay captures/run1
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from market.columns import Ingested
from market.instruments import Registry


def _feeds(text: str) -> tuple[str, ...]:
    from feeds.capture import FEEDS

    names = tuple(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))
    bad = [n for n in names if n not in FEEDS]
    if not names or bad:
        raise argparse.ArgumentTypeError(f"feeds are a comma-separated subset of {','.join(FEEDS)}")
    return names


def _positive(text: str) -> float:
    v = float(text)
    if not v > 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return v


def add_capture_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    c = subparsers.add_parser(
        "capture", help="record raw venue messages (ICE WebSocket, CME FIX, MCX polling) to a capture directory",
        description="Run the venue clients for a while and record every raw message with its receive time. "
                    "Without --ice-url / --cme-port / --mcx-url the loopback simulators are started (one market). "
                    "Replay the result with `commodex replay DIR`.")
    c.add_argument("--feeds", type=_feeds, default=("ice", "mcx"),
                   help="comma-separated subset of ice,cme,mcx (default ice,mcx)")
    c.add_argument("--duration", type=_positive, required=True, metavar="S", help="seconds to record")
    c.add_argument("--out", type=Path, required=True, metavar="DIR", help="new capture directory")
    c.add_argument("--ice-url", default="", help="ws:// URL of an ICE-style venue (default: loopback simulator)")
    c.add_argument("--ice-api-key-env", default="COMMODEX_ICE_API_KEY", metavar="VAR",
                   help="environment variable holding the ICE API key (never a command-line argument)")
    c.add_argument("--mcx-url", default="", help="http:// base URL of an MCX-style venue (default: simulator)")
    c.add_argument("--cme-host", default="127.0.0.1", help="host of a CME-style FIX 4.4 venue (with --cme-port)")
    c.add_argument("--cme-port", type=int, default=0, help="port of that venue (default 0: loopback simulator)")
    c.add_argument("--cme-password-env", default="COMMODEX_CME_PASSWORD", metavar="VAR",
                   help="environment variable holding the FIX Logon password (never a command-line argument)")
    c.add_argument("--poll-interval-ms", type=int, default=250, help="MCX polling interval")
    c.add_argument("--seed", type=int, default=0, help="simulators' market seed")
    c.add_argument("--scenario", default="calm", help="simulators' scenarios, comma-separated")
    c.add_argument("--rate-scale", type=_positive, default=1.0, help="simulators' message rate multiplier")
    c.add_argument("--json", action="store_true", help="print the manifest as JSON")
    c.set_defaults(handler=run_capture_command)
    return c


def run_capture_command(args: argparse.Namespace) -> int:
    import msgspec

    from feeds.capture import CaptureOptions, capture
    from feeds.common.adapter import FeedFatal

    options = CaptureOptions(
        ice_url=args.ice_url, mcx_url=args.mcx_url, cme_host=args.cme_host, cme_port=args.cme_port,
        seed=args.seed, rate_scale=args.rate_scale,
        scenarios=tuple(s.strip() for s in args.scenario.split(",") if s.strip()),
        mcx_poll_interval_ms=args.poll_interval_ms)
    key = os.environ.get(args.ice_api_key_env, "")
    if args.ice_url and "ice" in args.feeds and not key:
        print(f"commodex capture: set {args.ice_api_key_env} to the ICE API key", file=sys.stderr)
        return 2
    try:
        manifest = capture(args.feeds, args.duration, args.out, options=options, ice_api_key=key,
                           cme_password=os.environ.get(args.cme_password_env, ""))
    except FileExistsError as e:
        print(f"commodex capture: {e}", file=sys.stderr)
        return 2
    except FeedFatal as e:
        print(f"commodex capture: venue refused the session ({e}); what was recorded is in {args.out}",
              file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(msgspec.to_builtins(manifest), separators=(",", ":")))
    else:
        secs = (manifest.end_ns - manifest.start_ns) / 1e9
        for f in manifest.feeds:
            kinds = ", ".join(f"{k} {n}" for k, n in f.counts.items())
            print(f"{f.name}: {f.records} records ({kinds}) -> {args.out / f.file}")
        print(f"captured {secs:.1f} s to {args.out}", file=sys.stderr)
    return 0


def is_capture_dir(path: str | Path) -> bool:
    """True for a capture directory (what `commodex replay` then reads with read_capture)."""
    from feeds.capture import is_capture

    return is_capture(path)


def read_capture(path: str | Path, registry: Registry) -> Ingested:
    """A capture replayed through the venue protocols into one edge batch, like feeds.tickfile.read_ticks."""
    from feeds.capture import ingest_capture

    return ingest_capture(path, registry)
