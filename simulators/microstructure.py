"""Quotes and trades from per-instrument price grids: Poisson arrivals, tick grid, spreads, sizes, latency.

Everything is vectorised over all rows of a block. Rows come out grouped by instrument and in event-time
order inside each instrument, with per-instrument seq numbers and FIFO receive times (a feed delivers one
instrument's messages in the order they were published).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from market.columns import Columnar
from market.fixedpoint import PRICE_SCALE

KIND_RAW = -1  # an undecodable wire message (only `raw` and `ts_recv` are meaningful)
KIND_TRADE = 0  # same codes as market.columns
KIND_QUOTE = 1
BUY = 1
SELL = -1

_DTYPES: dict[str, type] = {
    "inst": np.int32,  # registry index; len(registry) = the unknown instrument; -1 on raw rows
    "kind": np.int8,
    "ts_event": np.int64,
    "ts_recv": np.int64,
    "seq": np.int64,
    "price": np.float64,
    "size": np.int64,
    "bid": np.float64,
    "ask": np.float64,
    "bid_size": np.int64,
    "ask_size": np.int64,
    "aggressor": np.int8,  # BUY/SELL on trades (not in the tick file; the wire carries it)
    "raw": np.int32,  # index into the generator's raw message list, -1 = none
}


@dataclass(slots=True)
class SimRows(Columnar):
    """Simulated messages in columns (decimal float prices, as written to tick files)."""

    DTYPES: ClassVar[dict[str, type]] = _DTYPES

    inst: np.ndarray
    kind: np.ndarray
    ts_event: np.ndarray
    ts_recv: np.ndarray
    seq: np.ndarray
    price: np.ndarray
    size: np.ndarray
    bid: np.ndarray
    ask: np.ndarray
    bid_size: np.ndarray
    ask_size: np.ndarray
    aggressor: np.ndarray
    raw: np.ndarray



@dataclass(slots=True)
class BookState:
    """What carries from one block to the next, per instrument."""

    last_bid: np.ndarray  # fixed point, of the last quote published
    last_ask: np.ndarray
    has_quote: np.ndarray  # bool
    last_seq: np.ndarray
    last_recv: np.ndarray  # FIFO: receive times never go backwards per instrument

    @classmethod
    def new(cls, n: int) -> BookState:
        z = np.zeros(n, dtype=np.int64)
        return cls(z.copy(), z.copy(), np.zeros(n, dtype=bool), z.copy(), np.full(n, np.iinfo(np.int64).min))


def intraday_profile(t_ns: np.ndarray) -> np.ndarray:
    """U-shaped activity over the UTC day with mean 1: 2x at the day's edges, 0.5x at midday."""
    u = (t_ns % (86400 * 10**9)) / (86400 * 10**9)
    return 0.5 + 1.5 * (2.0 * u - 1.0) ** 2


def arrival_times(rng: np.random.Generator, lam: np.ndarray, edges_ns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inhomogeneous Poisson arrivals with piecewise-constant intensity lam (n, G) per second on the grid.

    Returns (instrument, time ns relative to the run start) grouped by instrument, time-sorted within each
    (time change of a unit-rate process: no sorting needed).
    """
    step_s = np.diff(edges_ns) / 1e9
    cum = np.zeros((lam.shape[0], lam.shape[1] + 1))
    np.cumsum(lam * step_s[None, :], axis=1, out=cum[:, 1:])
    edges_f = edges_ns.astype(np.float64)
    insts: list[np.ndarray] = []
    times: list[np.ndarray] = []
    for i in range(lam.shape[0]):
        total = cum[i, -1]
        if total <= 0.0:
            continue
        n_guess = int(total + 6.0 * np.sqrt(total) + 16.0)
        s = np.cumsum(rng.standard_exponential(n_guess))
        while s[-1] < total:  # rare: draw more of the same unit-rate process
            s = np.concatenate([s, s[-1] + np.cumsum(rng.standard_exponential(n_guess))])
        s = s[: np.searchsorted(s, total)]
        t = np.interp(s, cum[i], edges_f).astype(np.int64)
        # the int cast may land exactly on the block end; keep the row inside the block
        np.minimum(t, edges_ns[-1] - 1, out=t)
        insts.append(np.full(t.shape[0], i, dtype=np.int32))
        times.append(t)
    if not insts:
        return np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.int64)
    return np.concatenate(insts), np.concatenate(times)


@dataclass(frozen=True, slots=True)
class BlockInputs:
    """Everything the microstructure needs for one block, indexed by registry instrument."""

    start_ns: int  # run start (absolute)
    edges_ns: np.ndarray  # (G+1,) grid edges relative to the run start
    px: np.ndarray  # (n, G) mid price in quote units per grid step
    tick_fixed: np.ndarray  # (n,) int64
    lam_quote: np.ndarray  # (n, G) per second
    lam_trade: np.ndarray
    buy_prob: np.ndarray  # (n, G)
    trade_size_mult: np.ndarray  # (n, G)
    opening_quotes: np.ndarray  # (n,) bool: publish a quote at the block start (first block)
    seq_bumps: list[tuple[int, int]]  # (instrument, rel ns): seq skips one number from this time on
    latency_us: tuple[int, int, int]  # min, median, max


def generate_block(rng: np.random.Generator, state: BookState, b: BlockInputs) -> SimRows:
    n_inst = b.px.shape[0]
    b0 = int(b.edges_ns[0])
    step_ns = int(b.edges_ns[1] - b.edges_ns[0]) if b.edges_ns.shape[0] > 1 else 1
    qi, qt = arrival_times(rng, b.lam_quote, b.edges_ns)
    ti, tt = arrival_times(rng, b.lam_trade, b.edges_ns)
    opening = np.flatnonzero(b.opening_quotes).astype(np.int32)
    if opening.shape[0]:
        # an opening snapshot quote per instrument, placed before its first arrival
        qi = np.concatenate([opening, qi])
        qt = np.concatenate([np.full(opening.shape[0], b0, dtype=np.int64), qt])
    # merge quotes and trades per instrument by time; quotes first on ties (stable sort of two sorted runs)
    span = int(b.edges_ns[-1] - b0) + 1
    key = np.concatenate([qi.astype(np.int64) * span + (qt - b0), ti.astype(np.int64) * span + (tt - b0)])
    nq = qi.shape[0]
    order = np.argsort(key, kind="stable")
    inst = np.concatenate([qi, ti])[order]
    t_rel = np.concatenate([qt, tt])[order]
    is_quote = order < nq
    n = inst.shape[0]
    rows = SimRows.empty(n)
    rows.inst[:] = inst
    rows.kind[:] = np.where(is_quote, KIND_QUOTE, KIND_TRADE)
    if n == 0:
        return rows
    g = np.minimum((t_rel - b0) // step_ns, b.px.shape[1] - 1)
    tick = b.tick_fixed[inst]

    # quotes: spread of 1-3 ticks around the mid, on the tick grid
    qpos = np.flatnonzero(is_quote)
    u = rng.random(qpos.shape[0])
    spread = np.where(u < 0.5, 1, np.where(u < 0.85, 2, 3)).astype(np.int64)
    qtick = tick[qpos]
    center = b.px[inst[qpos], g[qpos]] * PRICE_SCALE / qtick
    bid_ticks = np.floor(center - spread / 2.0 + 0.5).astype(np.int64)
    bid_fx = np.zeros(n, dtype=np.int64)
    ask_fx = np.zeros(n, dtype=np.int64)
    bid_fx[qpos] = bid_ticks * qtick
    ask_fx[qpos] = (bid_ticks + spread) * qtick
    sizes = np.maximum(1, rng.lognormal(2.5, 0.8, size=(2, qpos.shape[0])).astype(np.int64))
    rows.bid_size[qpos] = sizes[0]
    rows.ask_size[qpos] = sizes[1]

    # segments: rows are grouped by instrument
    counts = np.bincount(inst, minlength=n_inst)
    starts = np.zeros(n_inst, dtype=np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    seg_start = starts[inst]
    ar = np.arange(n, dtype=np.int64)

    # trades hit the last published quote of their instrument (this block's, else the carried one)
    tpos = np.flatnonzero(~is_quote)
    last_q = np.maximum.accumulate(np.where(is_quote, ar, -1))[tpos]
    own = last_q >= seg_start[tpos]
    t_inst = inst[tpos]
    t_bid = np.where(own, bid_fx[np.maximum(last_q, 0)], state.last_bid[t_inst])
    t_ask = np.where(own, ask_fx[np.maximum(last_q, 0)], state.last_ask[t_inst])
    if not np.all(own | state.has_quote[t_inst]):
        raise RuntimeError("trade before any quote of its instrument (opening quotes missing)")
    buy = rng.random(tpos.shape[0]) < b.buy_prob[t_inst, g[tpos]]
    rows.price[tpos] = np.where(buy, t_ask, t_bid) / PRICE_SCALE
    rows.aggressor[tpos] = np.where(buy, BUY, SELL)
    mult = b.trade_size_mult[t_inst, g[tpos]]
    rows.size[tpos] = np.maximum(1, (rng.geometric(0.35, size=tpos.shape[0]) * mult).astype(np.int64))
    rows.bid[qpos] = bid_fx[qpos] / PRICE_SCALE
    rows.ask[qpos] = ask_fx[qpos] / PRICE_SCALE

    # carry each instrument's last quote
    q_inst = inst[qpos]
    last_per_inst = np.full(n_inst, -1, dtype=np.int64)
    last_per_inst[q_inst] = qpos  # later assignments win: the last quote of each instrument
    has = last_per_inst >= 0
    state.last_bid[has] = bid_fx[last_per_inst[has]]
    state.last_ask[has] = ask_fx[last_per_inst[has]]
    state.has_quote |= has

    # seq: 1, 2, 3... per instrument over all its messages, with the injected skips
    seq = state.last_seq[inst] + 1 + (ar - seg_start)
    unhit: list[int] = []
    for bump_inst, bump_ns in b.seq_bumps:
        hit = (inst == bump_inst) & (t_rel >= bump_ns)
        if np.any(hit):
            seq[hit] += 1
        else:
            unhit.append(bump_inst)  # the skip shows on the instrument's next message
    rows.seq[:] = seq
    ends = starts + counts - 1
    has_rows = counts > 0
    state.last_seq[has_rows] = seq[ends[has_rows]]
    for i in unhit:
        state.last_seq[i] += 1

    # receive time: event time + latency, never earlier than the previous message of the instrument
    lo, med, hi = b.latency_us
    lat_us = np.clip(rng.lognormal(np.log(med), 0.6, size=n), lo, hi)
    rows.ts_event[:] = b.start_ns + t_rel
    recv = rows.ts_event + (lat_us * 1000.0).astype(np.int64)
    for j in np.flatnonzero(has_rows).tolist():
        s, e = starts[j], starts[j] + counts[j]
        seg = np.maximum.accumulate(recv[s:e])
        np.maximum(seg, state.last_recv[j], out=seg)
        recv[s:e] = seg
        state.last_recv[j] = seg[-1]
    rows.ts_recv[:] = recv
    rows.raw[:] = -1
    return rows
