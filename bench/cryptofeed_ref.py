"""The reference point of the adapter benchmarks: cryptofeed 2.3.2 decoding its own Coinbase capture.

Runs in its own virtualenv (`.venv-bench-ref`, `pip install cryptofeed==2.3.2`; 2.4+ cannot read the 2021
capture format) as a subprocess of bench/bench_feeds.py, and prints one JSON object on stdout:
{"messages", "seconds", "msgs_per_s", "callbacks", "cryptofeed"}.

What is timed is cryptofeed's whole per-message path, `Coinbase.message_handler(text, conn, ts)`: yapic JSON
decode with Decimal floats, symbol normalization, Decimal prices/sizes, timestamp parsing, the L2 book
(snapshot + l2update deltas into its sorted order_book), Ticker/Trade objects and the callbacks (each only
counts). The setup mirrors cryptofeed's own `raw_data_collection.playback` (symbol data served from
COINBASE.0, the subscription from its `configuration:` line) but reads the messages before the clock starts;
playback itself cannot be used on this folder because it tells capture files apart by the substring "ws"
in the whole path, which "cryptofeed_ws_captures" contains.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any


def read_capture(folder: Path, exchange: str = "COINBASE") -> tuple[list[Any], dict[str, list[str]],
                                                                      list[tuple[float, str]]]:
    """(REST symbol responses, subscription, [(receive time, message text)]) of one exchange's capture."""
    rest: list[Any] = []
    sub: dict[str, list[str]] = {}
    for line in (folder / f"{exchange}.0").read_text(encoding="utf-8").splitlines():
        if not line:
            continue
        if line.startswith("configuration: "):
            sub = json.loads(line.split(": ", 1)[1])
        rest.append(json.loads(line.split(": ", 1)[1]))
    messages: list[tuple[float, str]] = []
    for path in sorted(folder.glob(f"{exchange}.ws.*")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line or line.startswith(("wss", "http")):
                continue  # connection opened / messages the client sent
            ts, text = line.split(": ", 1)
            messages.append((float(ts), text))
    return rest, sub, messages


def _feed(rest: list[Any], sub: dict[str, list[str]], counts: dict[str, int]) -> tuple[Any, Callable[..., Any]]:
    """A Coinbase feed wired like cryptofeed's playback; returns (feed, message handler)."""
    from cryptofeed.connection import HTTPSync
    from cryptofeed.exchanges import EXCHANGE_MAP
    from cryptofeed.symbols import Symbols

    Symbols.clear()
    symbol_data = list(rest)
    HTTPSync.read = lambda *a, **k: symbol_data.pop(0)  # the symbol REST call answers from the capture

    def counter(kind: str) -> Callable[..., Any]:
        async def cb(obj: Any, receipt_timestamp: float) -> None:
            counts[kind] += 1
        return cb

    callbacks = {kind: counter(kind) for kind in sub}
    feed = EXCHANGE_MAP["COINBASE"](candle_closed_only=False, subscription=sub, callbacks=callbacks)

    class _Conn:  # the handler's connection argument; Coinbase's handler never uses it
        conn_type = "wss"
        uuid = "1"

        async def write(self, *args: Any, **kwargs: Any) -> None:
            return None

    conn = _Conn()
    handlers = []
    for _, subscribe, handler, _auth in feed.connect():
        asyncio.run(subscribe(conn))
        handlers.append(handler)
    handler = handlers[0]

    async def run_all(messages: list[tuple[float, str]]) -> None:
        for ts, text in messages:
            await handler(text, conn, ts)

    return feed, run_all


def measure(folder: Path, repeat: int = 3) -> dict[str, Any]:
    import cryptofeed

    rest, sub, messages = read_capture(folder)
    best = float("inf")
    counts: dict[str, int] = {}
    for _ in range(repeat):
        counts = defaultdict(int)
        _, run_all = _feed(rest, sub, counts)
        gc.collect()
        gc.disable()
        try:
            t0 = time.perf_counter()
            asyncio.run(run_all(messages))
            best = min(best, time.perf_counter() - t0)
        finally:
            gc.enable()
    return {"messages": len(messages), "seconds": best, "msgs_per_s": len(messages) / best,
            "callbacks": dict(counts), "cryptofeed": getattr(cryptofeed, "__version__", "2.3.2")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--capture", type=Path, required=True, help="the cryptofeed_ws_captures folder")
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)
    print(json.dumps(measure(args.capture, args.repeat)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
