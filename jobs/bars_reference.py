"""Pure-Python reference of the bar kernels (jobs/bars_kernel.py), same semantics, written for reading.

Windows live in dicts keyed by (instrument, interval position) then window index; arithmetic is Python ints,
so VWAP here is round_half_even(sum(price * size) / volume) computed exactly with Fraction, an independent
check of the kernel's two-limb accumulator. Rules (documented in jobs/bars.py):
- every row advances the global watermark = max ts_event - out_of_orderness; only trades update windows;
- a trade is late (reported, excluded everywhere) if for ANY interval its window end + lateness <= watermark;
- when the watermark crosses window ends, due windows are emitted by (interval position, instrument, start);
- a trade into a window that is already due emits it at once (revision + 1 if it was emitted before).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from market.columns import KIND_TRADE

I64_MAX = 2**63 - 1
LIMB = 2**62


@dataclass(slots=True)
class RefWindow:
    index: int  # window index w: the window is [w * interval, (w + 1) * interval)
    open: int
    open_ts: int
    high: int
    low: int
    close: int
    close_ts: int
    volume: int
    trades: int
    ref: int  # first-arriving trade's price (kept only so snapshots match the kernel's)
    notional: int  # sum(price * size), exact
    fired: bool = False
    revision: int = 0

    def vwap(self) -> int:
        if self.volume <= 0:
            return self.close
        return round(Fraction(self.notional, self.volume))  # round() on Fraction is half to even


@dataclass(frozen=True, slots=True)
class RefBar:
    instrument: int
    interval_pos: int
    start: int
    open: int
    high: int
    low: int
    close: int
    volume: int
    vwap: int
    trades: int
    revision: int
    trigger_row: int
    ts_recv: int


@dataclass(slots=True)
class RefBatchResult:
    bars: list[RefBar]
    late_rows: list[int]


class ReferenceBars:
    def __init__(self, intervals_ns: list[int], ooo_ns: int, lateness_ns: int, n_instruments: int) -> None:
        self.intervals = list(intervals_ns)
        self.ooo = ooo_ns
        self.lateness = lateness_ns
        self.n_instruments = n_instruments
        self.windows: dict[tuple[int, int], dict[int, RefWindow]] = {}
        self.seen = False
        self.flushed = False
        self.max_ts = 0
        self.wm = 0
        self.max_ts_recv = 0

    def _bar(self, inst: int, pos: int, win: RefWindow, row: int, ts_recv: int) -> RefBar:
        return RefBar(inst, pos, win.index * self.intervals[pos], win.open, win.high, win.low, win.close,
                      win.volume, win.vwap(), win.trades, win.revision, row, ts_recv)

    def _fire_due(self, pos: int, row: int, ts_recv: int, out: list[RefBar]) -> None:
        iv = self.intervals[pos]
        for inst in range(self.n_instruments):
            wins = self.windows.get((inst, pos), {})
            for w in sorted(wins):
                win = wins[w]
                if not win.fired and (w + 1) * iv <= self.wm:
                    win.fired = True
                    out.append(self._bar(inst, pos, win, row, ts_recv))
            for w in [w for w in wins if (w + 1) * iv + self.lateness <= self.wm]:
                del wins[w]  # dead: any trade for it would be late

    def process(self, instrument: list[int], kind: list[int], ts_event: list[int], ts_recv: list[int],
                price: list[int], size: list[int]) -> RefBatchResult:
        out: list[RefBar] = []
        late: list[int] = []
        for r, ts in enumerate(ts_event):
            self.max_ts_recv = ts_recv[r] if not self.seen else max(self.max_ts_recv, ts_recv[r])
            if not self.seen or ts > self.max_ts:
                first = not self.seen
                self.seen = True
                self.max_ts = ts
                if not self.flushed:
                    old_wm = self.wm
                    self.wm = ts - self.ooo
                    for pos, iv in enumerate(self.intervals):
                        if not first and self.wm // iv != old_wm // iv:  # crossed a window end
                            self._fire_due(pos, r, ts_recv[r], out)
            if any((ts // iv + 1) * iv + self.lateness <= self.wm for iv in self.intervals):
                late.append(r)
                continue
            if kind[r] != KIND_TRADE:
                continue
            inst, p, q = instrument[r], price[r], size[r]
            for pos, iv in enumerate(self.intervals):
                w = ts // iv
                wins = self.windows.setdefault((inst, pos), {})
                win = wins.get(w)
                if win is None:
                    win = wins[w] = RefWindow(w, p, ts, p, p, p, ts, q, 1, p, p * q)
                else:
                    if ts < win.open_ts:
                        win.open, win.open_ts = p, ts
                    if ts >= win.close_ts:
                        win.close, win.close_ts = p, ts
                    win.high = max(win.high, p)
                    win.low = min(win.low, p)
                    win.volume += q
                    win.trades += 1
                    win.notional += p * q
                if (w + 1) * iv <= self.wm:
                    if win.fired:
                        win.revision += 1
                    win.fired = True
                    out.append(self._bar(inst, pos, win, r, ts_recv[r]))
        return RefBatchResult(out, late)

    def flush(self) -> list[RefBar]:
        out: list[RefBar] = []
        for pos in range(len(self.intervals)):
            for inst in range(self.n_instruments):
                wins = self.windows.get((inst, pos), {})
                for w in sorted(wins):
                    if not wins[w].fired:
                        wins[w].fired = True
                        out.append(self._bar(inst, pos, wins[w], -1, self.max_ts_recv))
        self.flushed = True
        self.wm = I64_MAX
        self.windows.clear()
        return out

    # Snapshot rows use the kernel's layout: (instrument, interval pos, window index, open, open_ts, high, low,
    # close, close_ts, volume, trades, ref, acc_hi, acc_lo, fired, revision), acc = notional - ref * volume.
    def live_windows(self) -> list[list[int]]:
        rows = []
        for (inst, pos), wins in sorted(self.windows.items()):
            iv = self.intervals[pos]
            for w in sorted(wins):
                win = wins[w]
                if (w + 1) * iv + self.lateness > self.wm:
                    hi, lo = divmod(win.notional - win.ref * win.volume, LIMB)
                    rows.append([inst, pos, w, win.open, win.open_ts, win.high, win.low, win.close, win.close_ts,
                                 win.volume, win.trades, win.ref, hi, lo, int(win.fired), win.revision])
        return rows

    def load_windows(self, rows: list[list[int]]) -> None:
        self.windows.clear()
        for (inst, pos, w, o, o_ts, h, lo_, c, c_ts, vol, n, ref, acc_hi, acc_lo, fired, rev) in rows:
            notional = ref * vol + acc_hi * LIMB + acc_lo
            self.windows.setdefault((inst, pos), {})[w] = RefWindow(
                w, o, o_ts, h, lo_, c, c_ts, vol, n, ref, notional, bool(fired), rev)


@dataclass(frozen=True, slots=True)
class RefFileBar:
    instrument: int
    start: int
    open: int
    high: int
    low: int
    close: int
    volume: int
    vwap: int
    trades: int


def batch_bars_reference(instrument: list[int], ts: list[int], price: list[int], size: list[int],
                         interval: int) -> list[RefFileBar]:
    """Bars of a whole file, any row order: open = earliest ts (first arrival on ties), close = latest ts
    (last arrival on ties); sorted by (instrument, start)."""
    groups: dict[tuple[int, int], RefWindow] = {}
    for r in range(len(ts)):
        key = (instrument[r], ts[r] // interval)
        p, q, t = price[r], size[r], ts[r]
        win = groups.get(key)
        if win is None:
            groups[key] = RefWindow(key[1], p, t, p, p, p, t, q, 1, p, p * q)
            continue
        if t < win.open_ts:
            win.open, win.open_ts = p, t
        if t >= win.close_ts:
            win.close, win.close_ts = p, t
        win.high = max(win.high, p)
        win.low = min(win.low, p)
        win.volume += q
        win.trades += 1
        win.notional += p * q
    return [RefFileBar(inst, w * interval, win.open, win.high, win.low, win.close, win.volume, win.vwap(),
                       win.trades)
            for (inst, w), win in sorted(groups.items())]
