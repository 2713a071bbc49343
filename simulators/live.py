"""A live market feed: the simulator's messages as wire bytes, paced so event time tracks the wall clock.

The run starts at clock() and is generated block by block (`SimConfig.block_s` of simulated time), so an
endless run (duration_s <= 0) continues seamlessly and the same seed gives the same sequence. Each message
is released when its receive time is due: start + (ts_recv - start) / speed on the wall clock.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import msgspec
import numpy as np

from market.codec import encode
from market.events import QuoteTick, Side, TradeTick
from market.fixedpoint import PRICE_SCALE
from market.instruments import Registry
from simulators.config import SimConfig
from simulators.market import MarketGenerator, venue_subset
from simulators.microstructure import BUY, KIND_QUOTE, KIND_RAW, SELL, SimRows

_SIDE = {BUY: Side.BUY, SELL: Side.SELL}
_json = msgspec.json.Encoder()


def _fixed(x: np.ndarray) -> tuple[list[int], np.ndarray]:
    ok = np.isfinite(x)
    return np.round(np.where(ok, x, 0.0) * PRICE_SCALE).astype(np.int64).tolist(), ok


def wire_messages(rows: SimRows, names: list[str], raw_messages: list[str]) -> list[bytes]:
    """One wire message per row (ts_recv = 0: the receiver stamps it). Raw rows go out as received;
    NaN prices, which fixed point cannot carry, go out with a null price (they decode as malformed)."""
    price, ok_p = _fixed(rows.price)
    bid, ok_b = _fixed(rows.bid)
    ask, ok_a = _fixed(rows.ask)
    inst, kind, ts, seq = rows.inst.tolist(), rows.kind.tolist(), rows.ts_event.tolist(), rows.seq.tolist()
    size, bsz, asz = rows.size.tolist(), rows.bid_size.tolist(), rows.ask_size.tolist()
    aggr, raw = rows.aggressor.tolist(), rows.raw.tolist()
    out: list[bytes] = []
    for i in range(len(rows)):
        k = kind[i]
        if k == KIND_RAW:
            out.append(raw_messages[raw[i]].encode())
            continue
        iid = names[inst[i]]
        msg: TradeTick | QuoteTick
        if k == KIND_QUOTE:
            msg = QuoteTick(iid, bid[i], ask[i], bsz[i], asz[i], ts[i], 0, seq[i])
            valid = ok_b[i] and ok_a[i]
            field = "bid" if not ok_b[i] else "ask"
        else:
            msg = TradeTick(iid, price[i], size[i], ts[i], 0, seq[i], _SIDE.get(aggr[i], Side.NONE))
            valid = ok_p[i]
            field = "price"
        if valid:
            out.append(encode(msg))
        else:
            doc = msgspec.to_builtins(msg)
            doc[field] = None
            out.append(_json.encode(doc))
    return out


async def live_messages(
    config: SimConfig,
    speed: float = 1.0,
    clock: Callable[[], int] = time.time_ns,
    *,
    registry: Registry | None = None,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    epoch_ns: int = 0,
    instruments: tuple[str, ...] = (),
) -> AsyncIterator[bytes]:
    """Wire messages of a run starting now (or at `epoch_ns`, the epoch the venue simulators of the same market
    were given: what was due before now comes at once); runs for duration_s of simulated time, forever if <= 0.
    `instruments`: only these instruments' messages, cut from the whole market (simulators.market.venue_subset),
    so the stream shows the same market as the venues; () keeps every row of `config`, raw ones included."""
    if speed <= 0:
        raise ValueError("speed must be positive")
    start = epoch_ns or clock()
    gen = MarketGenerator(config.replace(start_ns=start), registry)
    keep = np.array([gen.registry.get(iid).index for iid in instruments], dtype=np.int32) if instruments else None
    if keep is not None and config.instruments:
        raise ValueError("instruments selects from the whole market: leave config.instruments empty")
    for block in gen.blocks():
        rows = block if keep is None else venue_subset(block, keep)
        msgs = wire_messages(rows, gen.names, gen.raw_messages)
        due = ((rows.ts_recv - start) / speed).tolist()  # ns after start; small numbers keep float precision
        for i, msg in enumerate(msgs):
            wait_ns = due[i] - (clock() - start)
            if wait_ns > 0:
                await sleep(wait_ns / 1e9)
            yield msg
