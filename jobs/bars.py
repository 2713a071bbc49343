"""Event-time OHLCV bars: tumbling windows [k*I, (k+1)*I) per (instrument, interval), fired by a global watermark.

Rules (the numba kernel jobs/bars_kernel.py and the reference jobs/bars_reference.py both implement them):
- Every row, quotes too, advances the watermark = max(ts_event seen) - out_of_orderness. Only trades update bars.
- A window is emitted once the watermark reaches its end; windows without trades emit nothing. Due windows are
  emitted by (interval position in the config, instrument index, window start), so output order does not depend
  on how the input is cut into batches.
- open = price of the smallest ts_event (ties: first arrival), close = of the largest (ties: last arrival),
  high, low, volume = sum(size), trades = count, vwap = sum(price*size)/volume exactly, rounded half to even
  to 1e-9 (volume 0, i.e. zero-size prints only: vwap = close).
- A trade into a window already emitted but with end + allowed_lateness > watermark updates it and re-emits it
  at once with revision + 1 (a window that came due empty is emitted on its first trade with revision 0).
- Late: a row (trade or quote) with end + allowed_lateness <= watermark for ANY configured interval (for
  nested intervals, the smallest one) goes to `late_rows` (the caller dead-letters it as LATE) and updates
  NO interval, so all intervals aggregate exactly the same trades (1h volume == sum of its 1s volumes).
- `flush()` = end of input (watermark +inf): every open window is emitted; later trades are all late.
- ts_recv of a bar = ts_recv of the row whose arrival emitted it (max ts_recv seen for flush).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Literal

import msgspec
import numpy as np

from jobs import bars_kernel as bk
from jobs.bars_reference import RefBar, ReferenceBars
from market.codec import encode
from market.columns import TickColumns
from market.config import Config
from market.events import Bar, DeadLetter
from market.instruments import Registry
from market.rejects import DETAIL, Reason
from market.timeutil import NS_PER_MS, parse_interval, to_iso

Impl = Literal["numba", "python"]


class BarsConfig(Config, frozen=True):
    intervals: tuple[str, ...] = ("1s", "1m", "5m", "1h")
    out_of_orderness_ms: int = 2000  # watermark lag behind the newest ts_event
    allowed_lateness_ms: int = 10000  # emitted bars still take (and re-emit for) trades this long after their end

    def __post_init__(self) -> None:
        if not self.intervals:
            raise ValueError("intervals must not be empty")
        ns = [parse_interval(s) for s in self.intervals]
        if len(set(ns)) != len(ns):
            raise ValueError(f"duplicate intervals in {self.intervals}")
        if self.out_of_orderness_ms < 0 or self.allowed_lateness_ms < 0:
            raise ValueError("out_of_orderness_ms and allowed_lateness_ms must be >= 0")

    @property
    def intervals_ns(self) -> list[int]:
        return [parse_interval(s) for s in self.intervals]


@dataclass(slots=True)
class BarOutput:
    """Bars emitted by one call, in emission order (columnar), plus the rows found late."""

    instrument: np.ndarray  # int32 instrument index
    interval_ns: np.ndarray  # int64
    start: np.ndarray  # int64 window start, UTC ns
    open: np.ndarray  # int64 fixed point
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    vwap: np.ndarray
    trades: np.ndarray
    revision: np.ndarray
    trigger_row: np.ndarray  # row of the input batch whose arrival emitted the bar; -1 for flush
    ts_recv: np.ndarray  # ts_recv of that row (flush: max ts_recv seen)
    late_rows: np.ndarray  # int64 rows of the batch that were late (excluded from all bars)

    def __len__(self) -> int:
        return int(self.start.shape[0])

    @classmethod
    def empty(cls) -> BarOutput:
        return cls(**{f.name: np.zeros(0, dtype=np.int32 if f.name == "instrument" else np.int64)
                      for f in fields(cls)})


class BarSnapshot(msgspec.Struct, frozen=True, tag="bars.v1"):
    n_instruments: int
    intervals_ns: list[int]
    out_of_orderness_ns: int
    allowed_lateness_ns: int
    seen: bool
    flushed: bool
    max_ts: int
    watermark: int
    max_ts_recv: int
    # Live windows (those that can still change or are unemitted), one little-endian int64 row each, columns
    # WINDOW_COLUMNS; acc = sum((price - ref) * size) = acc_hi * 2**62 + acc_lo.
    windows: bytes


WINDOW_COLUMNS = ("instrument", "interval_pos", "window", "open", "open_ts", "high", "low", "close", "close_ts",
                  "volume", "trades", "ref", "acc_hi", "acc_lo", "fired", "revision")
_ACC_HI_COL = WINDOW_COLUMNS.index("acc_hi")
_SLOT_OF_COLUMN = (bk.F_W, bk.F_OPEN, bk.F_OPEN_TS, bk.F_HIGH, bk.F_LOW, bk.F_CLOSE, bk.F_CLOSE_TS, bk.F_VOLUME,
                   bk.F_TRADES, bk.F_REF, bk.F_ACC_HI, bk.F_ACC_LO, bk.F_FIRED, bk.F_REV)  # columns 2.. of a window row


class BarAggregator:
    """Streaming bars over validated TickColumns batches (instrument index >= 0, in [0, n_instruments))."""

    def __init__(self, config: BarsConfig, n_instruments: int, impl: Impl = "numba") -> None:
        if impl not in ("numba", "python"):
            raise ValueError(f"unknown impl {impl!r}")
        if n_instruments <= 0:
            raise ValueError("n_instruments must be > 0")
        self.config = config
        self.impl: Impl = impl
        self.n_instruments = n_instruments
        self._iv = np.array(config.intervals_ns, dtype=np.int64)
        self._ooo = config.out_of_orderness_ms * NS_PER_MS
        self._late = config.allowed_lateness_ms * NS_PER_MS
        n_int = len(self._iv)
        self._k = np.array([math.ceil((self._ooo + self._late) / int(iv)) + 2 for iv in self._iv], dtype=np.int64)
        kmax = int(self._k.max())
        # Worst case of one row: every slot comes due at once, plus one revision per interval.
        self._max_emit = n_instruments * int(self._k.sum()) + n_int
        self._slots = np.zeros((n_instruments * n_int * kmax, bk.N_SLOT_FIELDS), dtype=np.int64)
        self._slots[:, bk.F_W] = bk.EMPTY
        self._scalars = np.zeros(bk.N_SCALARS, dtype=np.int64)
        self._next_boundary = np.zeros(n_int, dtype=np.int64)
        self._reset_caches()
        self._out = np.empty((max(4096, 2 * self._max_emit), bk.N_OUT_FIELDS), dtype=np.int64)
        self._ref = ReferenceBars(self._iv.tolist(), self._ooo, self._late, n_instruments)

    def _reset_caches(self) -> None:
        # Per (instrument, interval): the window the last trade fell in, to skip a division per trade.
        shape = (self.n_instruments, len(self._iv))
        self._cache_start = np.full(shape, bk.I64_MAX, dtype=np.int64)
        self._cache_w = np.zeros(shape, dtype=np.int64)
        self._cache_slot = np.zeros(shape, dtype=np.int64)

    # -- processing -------------------------------------------------------------------------------------------

    def on_batch(self, cols: TickColumns) -> BarOutput:
        """Bars emitted while processing `cols` (validated rows) in order, and the rows that were late."""
        n = len(cols)
        if n and (int(cols.instrument.min()) < 0 or int(cols.instrument.max()) >= self.n_instruments):
            # the kernel does not bounds-check; validation upstream rejects unknown instruments
            raise ValueError(f"instrument index outside [0, {self.n_instruments}) in a bars batch")
        if self.impl == "python":
            res = self._ref.process(cols.instrument.tolist(), cols.kind.tolist(), cols.ts_event.tolist(),
                                    cols.ts_recv.tolist(), cols.price.tolist(), cols.size.tolist())
            return self._from_ref(res.bars, res.late_rows)
        late = np.empty(n, dtype=np.int64)
        row, n_out, n_late = 0, 0, 0
        while True:
            row, n_out, n_late = bk.stream_bars(
                cols.instrument, cols.kind, cols.ts_event, cols.ts_recv, cols.price, cols.size, row,
                self._iv, self._k, self._ooo, self._late, self._slots, self._scalars, self._next_boundary,
                self._cache_start, self._cache_w, self._cache_slot, self._out, n_out, late, n_late,
                self._max_emit)
            if row >= n:
                break
            grown = np.empty((2 * self._out.shape[0], bk.N_OUT_FIELDS), dtype=np.int64)
            grown[:n_out] = self._out[:n_out]
            self._out = grown
        return self._from_kernel(n_out, late[:n_late].copy())

    def flush(self) -> BarOutput:
        """End of input: emit every window not emitted yet (watermark +inf)."""
        if self.impl == "python":
            return self._from_ref(self._ref.flush(), [])
        need = self.n_instruments * int(self._k.sum())
        if self._out.shape[0] < need:
            self._out = np.empty((need, bk.N_OUT_FIELDS), dtype=np.int64)
        n_out = bk.flush_bars(self._iv, self._k, self._slots, self._scalars, self.n_instruments, self._out)
        return self._from_kernel(n_out, np.zeros(0, dtype=np.int64))

    @property
    def watermark(self) -> int | None:
        """Current watermark in ns (None before the first row; 2**63-1 after flush)."""
        if self.impl == "python":
            return self._ref.wm if self._ref.seen or self._ref.flushed else None
        return int(self._scalars[bk.S_WM]) if self._scalars[bk.S_SEEN] or self._scalars[bk.S_FLUSHED] else None

    def _from_kernel(self, n_out: int, late: np.ndarray) -> BarOutput:
        o = self._out[:n_out]
        return BarOutput(
            instrument=o[:, bk.O_INSTRUMENT].astype(np.int32), interval_ns=self._iv[o[:, bk.O_INTERVAL]],
            start=o[:, bk.O_START].copy(), open=o[:, bk.O_OPEN].copy(), high=o[:, bk.O_HIGH].copy(),
            low=o[:, bk.O_LOW].copy(), close=o[:, bk.O_CLOSE].copy(), volume=o[:, bk.O_VOLUME].copy(),
            vwap=o[:, bk.O_VWAP].copy(), trades=o[:, bk.O_TRADES].copy(), revision=o[:, bk.O_REVISION].copy(),
            trigger_row=o[:, bk.O_TRIGGER].copy(), ts_recv=o[:, bk.O_TS_RECV].copy(), late_rows=late,
        )

    def _from_ref(self, bars: list[RefBar], late: list[int]) -> BarOutput:
        def col(name: str, dtype: type = np.int64) -> np.ndarray:
            return np.array([getattr(b, name) for b in bars], dtype=dtype)

        return BarOutput(
            instrument=col("instrument", np.int32), interval_ns=self._iv[col("interval_pos")], start=col("start"),
            open=col("open"), high=col("high"), low=col("low"), close=col("close"), volume=col("volume"),
            vwap=col("vwap"), trades=col("trades"), revision=col("revision"), trigger_row=col("trigger_row"),
            ts_recv=col("ts_recv"), late_rows=np.array(late, dtype=np.int64),
        )

    # -- state --------------------------------------------------------------------------------------------------

    def snapshot(self) -> BarSnapshot:
        """State as a msgspec Struct; the same format for both impls (restore may switch impl)."""
        if self.impl == "python":
            r = self._ref
            rows = np.array(r.live_windows(), dtype=np.int64).reshape(-1, len(WINDOW_COLUMNS))
            seen, flushed, max_ts, wm, max_recv = r.seen, r.flushed, r.max_ts, r.wm, r.max_ts_recv
        else:
            sc = self._scalars
            seen, flushed = bool(sc[bk.S_SEEN]), bool(sc[bk.S_FLUSHED])
            max_ts, wm, max_recv = int(sc[bk.S_MAX_TS]), int(sc[bk.S_WM]), int(sc[bk.S_MAX_TS_RECV])
            rows = self._live_slot_rows(wm) if seen else np.zeros((0, len(WINDOW_COLUMNS)), dtype=np.int64)
        return BarSnapshot(
            n_instruments=self.n_instruments, intervals_ns=self._iv.tolist(), out_of_orderness_ns=self._ooo,
            allowed_lateness_ns=self._late, seen=seen, flushed=flushed, max_ts=max_ts, watermark=wm,
            max_ts_recv=max_recv, windows=rows.astype("<i8").tobytes(),
        )

    def _live_slot_rows(self, wm: int) -> np.ndarray:
        n_int, kmax = len(self._iv), int(self._k.max())
        slot = np.arange(self._slots.shape[0])
        inst = slot // (n_int * kmax)
        pos = (slot // kmax) % n_int
        w = self._slots[:, bk.F_W]
        occupied = w != bk.EMPTY
        # Python ints: end + lateness of a far-future window may exceed int64.
        live = np.array([bool(o) and (int(x) + 1) * int(self._iv[p]) + self._late > wm
                         for o, x, p in zip(occupied, w, pos, strict=True)], dtype=bool)
        rows = np.empty((int(live.sum()), len(WINDOW_COLUMNS)), dtype=np.int64)
        rows[:, 0] = inst[live]
        rows[:, 1] = pos[live]
        rows[:, 2:] = self._slots[live][:, list(_SLOT_OF_COLUMN)]
        # canonical limbs (0 <= acc_lo < 2**62, as divmod gives) so equal state means equal snapshot bytes
        hi, lo = rows[:, _ACC_HI_COL], rows[:, _ACC_HI_COL + 1]
        neg = lo < 0
        lo[neg] += bk.LIMB
        hi[neg] -= 1
        order = np.lexsort((rows[:, 2], rows[:, 1], rows[:, 0]))
        return rows[order]

    @classmethod
    def restore(cls, config: BarsConfig, snap: BarSnapshot, impl: Impl = "numba") -> BarAggregator:
        agg = cls(config, snap.n_instruments, impl)
        if (snap.intervals_ns != agg._iv.tolist() or snap.out_of_orderness_ns != agg._ooo
                or snap.allowed_lateness_ns != agg._late):
            raise ValueError("snapshot was taken with different intervals / out_of_orderness / lateness")
        rows = np.frombuffer(snap.windows, dtype="<i8").reshape(-1, len(WINDOW_COLUMNS)).astype(np.int64)
        if impl == "python":
            r = agg._ref
            r.seen, r.flushed, r.max_ts, r.wm, r.max_ts_recv = (snap.seen, snap.flushed, snap.max_ts,
                                                               snap.watermark, snap.max_ts_recv)
            r.load_windows(rows.tolist())
            return agg
        sc = agg._scalars
        sc[bk.S_SEEN], sc[bk.S_FLUSHED] = int(snap.seen), int(snap.flushed)
        sc[bk.S_MAX_TS], sc[bk.S_WM], sc[bk.S_MAX_TS_RECV] = snap.max_ts, snap.watermark, snap.max_ts_recv
        if snap.seen and not snap.flushed:
            agg._next_boundary[:] = (snap.watermark // agg._iv + 1) * agg._iv
        n_int, kmax = len(agg._iv), int(agg._k.max())
        for row in rows:
            inst, pos, w = int(row[0]), int(row[1]), int(row[2])
            s = (inst * n_int + pos) * kmax + w % int(agg._k[pos])
            agg._slots[s, list(_SLOT_OF_COLUMN)] = row[2:]
        return agg


# -- conversions ----------------------------------------------------------------------------------------------


def to_bars(output: BarOutput, registry: Registry | Sequence[str]) -> list[Bar]:
    """Typed Bar records (ts_event = start + interval, ts_recv from the emitting row). `registry` maps the
    instrument index to its id: a Registry, or a sequence of ids for local indices."""
    ids = registry.ids if isinstance(registry, Registry) else list(registry)
    cols = [getattr(output, n).tolist() for n in ("instrument", "interval_ns", "start", "open", "high", "low",
                                                   "close", "volume", "vwap", "trades", "ts_recv", "revision")]
    return [Bar(ids[i], iv, st, o, h, lo, c, v, vw, n, st + iv, recv, rev)
            for i, iv, st, o, h, lo, c, v, vw, n, recv, rev in zip(*cols, strict=True)]


def late_dead_letters(output: BarOutput, cols: TickColumns, registry: Registry,
                      source: str = "bars") -> list[DeadLetter]:
    """One LATE DeadLetter per late row (rows of `cols`, the batch the output came from)."""
    out = []
    for r in output.late_rows.tolist():
        tick = cols.row(r, registry)
        out.append(DeadLetter(
            source=source, reason=Reason.LATE.label,
            detail=f"{DETAIL[Reason.LATE]}: ts_event {to_iso(int(cols.ts_event[r]))}",
            raw=encode(tick).decode(), ts_recv=int(cols.ts_recv[r]), instrument_id=tick.instrument_id,
            ts_event=int(cols.ts_event[r]),
        ))
    return out

