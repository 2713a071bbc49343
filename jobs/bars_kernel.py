"""Numba kernels for OHLCV bars (semantics: jobs/bars.py; pure-Python twin: jobs/bars_reference.py).

`stream_bars` is the event-time streaming kernel. State per (instrument, interval) is a ring of K window
slots, K = ceil((out_of_orderness + lateness) / interval) + 2: every window that can still change (start <=
max ts seen, end + lateness > watermark) spans at most K - 1 consecutive window indices, so window w lives
in slot w mod K and a slot holding another window when w arrives only holds a dead (purged) one.

`batch_bars` is the single-pass kernel of `commodex bars` for rows sorted by (instrument, ts).

VWAP is exact: each window accumulates sum((price - ref) * size), ref = price of its first-arriving trade,
in a two-limb signed integer (value = hi * 2**62 + lo, |lo| < 2**62), and vwap = ref + that sum / volume
rounded half to even. Exact for |price| < 2**61 (fixed point, ~2.3e9 currency units), volume per window
< 2**62 and |sum| < 2**124; a window with volume 0 (zero-size prints only) reports vwap = close.
"""

from __future__ import annotations

import numba
import numpy as np

from market.columns import KIND_TRADE

EMPTY = np.iinfo(np.int64).min  # slot field W of a slot that holds no window
I64_MAX = np.iinfo(np.int64).max
_TRADE = np.int8(KIND_TRADE)

# One int64 row per window slot, fields adjacent so one trade touches one cache line or two per interval.
F_W = 0  # window index w (start = w * interval), EMPTY if none
F_OPEN = 1
F_OPEN_TS = 2
F_HIGH = 3
F_LOW = 4
F_CLOSE = 5
F_CLOSE_TS = 6
F_VOLUME = 7
F_TRADES = 8
F_REF = 9  # price of the first-arriving trade: VWAP deviations are taken from it
F_ACC_HI = 10
F_ACC_LO = 11
F_FIRED = 12  # 1 once the bar has been emitted
F_REV = 13  # revision of the last emission
N_SLOT_FIELDS = 14

# Emitted bar rows.
O_INSTRUMENT = 0
O_INTERVAL = 1  # position of the interval in the config
O_START = 2
O_OPEN = 3
O_HIGH = 4
O_LOW = 5
O_CLOSE = 6
O_VOLUME = 7
O_VWAP = 8
O_TRADES = 9
O_REVISION = 10
O_TRIGGER = 11  # batch row that caused the emission, -1 for flush
O_TS_RECV = 12  # ts_recv of that row, or the max ts_recv seen for flush
N_OUT_FIELDS = 13

# Scalar state.
S_SEEN = 0  # any row seen yet
S_FLUSHED = 1  # flush() ran: watermark is +inf
S_MAX_TS = 2
S_WM = 3  # max ts_event seen - out_of_orderness (I64_MAX after flush)
S_MAX_TS_RECV = 4
N_SCALARS = 5

LIMB = 1 << 62
_M31 = (1 << 31) - 1


@numba.njit(cache=True, inline="always")
def _normalize(hi: int, lo: int) -> tuple[int, int]:
    if lo >= LIMB:
        return hi + 1, lo - LIMB
    if lo <= -LIMB:
        return hi - 1, lo + LIMB
    return hi, lo


@numba.njit(cache=True)
def _acc_add_slow(hi: int, lo: int, d: int, size: int) -> tuple[int, int]:
    """hi*2**62 + lo += d * size for any d, size with |d|, |size| < 2**63 (31-bit limb products)."""
    neg = (d < 0) != (size < 0)
    a = -d if d < 0 else d
    b = -size if size < 0 else size
    a0 = a & _M31
    a1 = a >> 31
    b0 = b & _M31
    b1 = b >> 31
    m = a1 * b0  # < 2**63
    n = a0 * b1
    mag_hi = (m >> 31) + (n >> 31) + a1 * b1
    mag_lo = a0 * b0  # < 2**62
    mag_hi, mag_lo = _normalize(mag_hi, mag_lo + ((m & _M31) << 31))
    mag_hi, mag_lo = _normalize(mag_hi, mag_lo + ((n & _M31) << 31))
    if neg:
        return _normalize(hi - mag_hi, lo - mag_lo)
    return _normalize(hi + mag_hi, lo + mag_lo)


@numba.njit(cache=True, inline="always")
def acc_add(hi: int, lo: int, d: int, size: int) -> tuple[int, int]:
    """Add d * size to the two-limb accumulator; one multiply when the product surely fits in 62 bits."""
    a = -d if d < 0 else d
    if 0 <= size < 32768 and a < (1 << 47) or 0 <= size < (1 << 31) and a < (1 << 31):
        return _normalize(hi, lo + d * size)
    return _acc_add_slow(hi, lo, d, size)


@numba.njit(cache=True)
def mean_from_ref(hi: int, lo: int, v: int, ref: int) -> int:
    """ref + (hi * 2**62 + lo) / v, rounded half to even (parity of the result, not of the quotient),
    for v > 0 (v < 2**62, |quotient| < 2**62)."""
    neg = hi < 0 or (hi == 0 and lo < 0)
    if neg:
        hi = -hi
        lo = -lo
    if lo < 0:
        lo += LIMB
        hi -= 1
    if hi == 0:
        q = lo // v
        r = lo - q * v
    else:  # binary long division of the low limb, remainder seeded with the high limb (hi < v)
        r = hi
        q = 0
        for bit in range(61, -1, -1):
            r = 2 * r + ((lo >> bit) & 1)
            q = 2 * q
            if r >= v:
                r -= v
                q += 1
    # ref - q and ref + q have the same parity, so one tie rule serves both signs.
    if r > v - r or (r == v - r and ((q + ref) & 1) == 1):
        q += 1
    return ref - q if neg else ref + q


@numba.njit(cache=True, inline="always")
def _vwap(slots: np.ndarray, s: int) -> int:
    vol = slots[s, F_VOLUME]
    if vol <= 0:
        return slots[s, F_CLOSE]
    return mean_from_ref(slots[s, F_ACC_HI], slots[s, F_ACC_LO], vol, slots[s, F_REF])


@numba.njit(cache=True)
def _emit(slots: np.ndarray, s: int, inst: int, j: int, interval: int, trigger: int, ts_recv: int,
          out: np.ndarray, n_out: int) -> int:
    out[n_out, O_INSTRUMENT] = inst
    out[n_out, O_INTERVAL] = j
    out[n_out, O_START] = slots[s, F_W] * interval
    out[n_out, O_OPEN] = slots[s, F_OPEN]
    out[n_out, O_HIGH] = slots[s, F_HIGH]
    out[n_out, O_LOW] = slots[s, F_LOW]
    out[n_out, O_CLOSE] = slots[s, F_CLOSE]
    out[n_out, O_VOLUME] = slots[s, F_VOLUME]
    out[n_out, O_VWAP] = _vwap(slots, s)
    out[n_out, O_TRADES] = slots[s, F_TRADES]
    out[n_out, O_REVISION] = slots[s, F_REV]
    out[n_out, O_TRIGGER] = trigger
    out[n_out, O_TS_RECV] = ts_recv
    return n_out + 1


@numba.njit(cache=True)
def _fire_due(slots: np.ndarray, n_inst: int, n_int: int, kmax: int, j: int, interval: int, k: int, wm: int,
              trigger: int, ts_recv: int, out: np.ndarray, n_out: int) -> int:
    """Emit every unfired window of interval j with end <= wm, by (instrument, start)."""
    for inst in range(n_inst):
        base = (inst * n_int + j) * kmax
        while True:  # selection by start: a jump can make several windows of one instrument due at once
            best = -1
            best_w = I64_MAX
            for t in range(k):
                w = slots[base + t, F_W]
                if w != EMPTY and slots[base + t, F_FIRED] == 0 and (w + 1) * interval <= wm and w < best_w:
                    best = base + t
                    best_w = w
            if best < 0:
                break
            slots[best, F_FIRED] = 1
            n_out = _emit(slots, best, inst, j, interval, trigger, ts_recv, out, n_out)
    return n_out


@numba.njit(cache=True)
def stream_bars(
    instrument: np.ndarray, kind: np.ndarray, ts_event: np.ndarray, ts_recv: np.ndarray, price: np.ndarray,
    size: np.ndarray, row0: int,
    intervals: np.ndarray, kslots: np.ndarray, ooo_ns: int, lateness_ns: int,
    slots: np.ndarray, scalars: np.ndarray, next_boundary: np.ndarray,
    cache_start: np.ndarray, cache_w: np.ndarray, cache_slot: np.ndarray,
    out: np.ndarray, n_out: int, late_rows: np.ndarray, n_late: int, max_emit_per_row: int,
) -> tuple[int, int, int]:
    """Process rows row0.. of a batch. Returns (next row, n_out, n_late); next row < len when `out` is too
    small for the worst case of the next row: the caller grows `out` and calls again from there."""
    n = ts_event.shape[0]
    n_int = intervals.shape[0]
    n_inst = cache_w.shape[0]
    kmax = slots.shape[0] // (n_inst * n_int)
    cap = out.shape[0]
    for r in range(row0, n):
        if n_out + max_emit_per_row > cap:
            return r, n_out, n_late
        ts = ts_event[r]
        if ts_recv[r] > scalars[S_MAX_TS_RECV] or scalars[S_SEEN] == 0:
            scalars[S_MAX_TS_RECV] = ts_recv[r]
        # Every row advances the watermark first; the row itself can never be late or due (its end > ts).
        if scalars[S_SEEN] == 0 or ts > scalars[S_MAX_TS]:
            first = scalars[S_SEEN] == 0
            scalars[S_SEEN] = 1
            scalars[S_MAX_TS] = ts
            if scalars[S_FLUSHED] == 0:
                wm = ts - ooo_ns
                scalars[S_WM] = wm
                for j in range(n_int):
                    iv = intervals[j]
                    if first:
                        next_boundary[j] = (wm // iv + 1) * iv
                    elif wm >= next_boundary[j]:
                        n_out = _fire_due(slots, n_inst, n_int, kmax, j, iv, kslots[j], wm, r, ts_recv[r],
                                          out, n_out)
                        next_boundary[j] = (wm // iv + 1) * iv
        wm = scalars[S_WM]
        # Late if any of its windows is past the allowed lateness (only possible when ts + lateness < wm);
        # a late row is excluded from every interval so all intervals aggregate the same trades. Quotes are
        # judged by the same rule so that every stage downstream sees the same accepted rows.
        if ts + lateness_ns < wm:
            late = False
            for j in range(n_int):
                iv = intervals[j]
                if (ts // iv + 1) * iv + lateness_ns <= wm:
                    late = True
                    break
            if late:
                late_rows[n_late] = r
                n_late += 1
                continue
        if kind[r] != _TRADE:
            continue
        inst = instrument[r]
        p = price[r]
        q = size[r]
        maybe_due = ts < wm
        for j in range(n_int):
            iv = intervals[j]
            cs = cache_start[inst, j]
            if ts >= cs and ts - cs < iv:
                w = cache_w[inst, j]
                s = cache_slot[inst, j]
            else:
                w = ts // iv
                s = (inst * n_int + j) * kmax + w % kslots[j]
                cache_start[inst, j] = w * iv
                cache_w[inst, j] = w
                cache_slot[inst, j] = s
            if slots[s, F_W] != w:
                slots[s, F_W] = w
                slots[s, F_OPEN] = p
                slots[s, F_OPEN_TS] = ts
                slots[s, F_HIGH] = p
                slots[s, F_LOW] = p
                slots[s, F_CLOSE] = p
                slots[s, F_CLOSE_TS] = ts
                slots[s, F_VOLUME] = q
                slots[s, F_TRADES] = 1
                slots[s, F_REF] = p
                slots[s, F_ACC_HI] = 0
                slots[s, F_ACC_LO] = 0
                slots[s, F_FIRED] = 0
                slots[s, F_REV] = 0
            else:
                if ts < slots[s, F_OPEN_TS]:
                    slots[s, F_OPEN] = p
                    slots[s, F_OPEN_TS] = ts
                if ts >= slots[s, F_CLOSE_TS]:
                    slots[s, F_CLOSE] = p
                    slots[s, F_CLOSE_TS] = ts
                if p > slots[s, F_HIGH]:
                    slots[s, F_HIGH] = p
                if p < slots[s, F_LOW]:
                    slots[s, F_LOW] = p
                slots[s, F_VOLUME] += q
                slots[s, F_TRADES] += 1
                hi, lo = acc_add(slots[s, F_ACC_HI], slots[s, F_ACC_LO], p - slots[s, F_REF], q)
                slots[s, F_ACC_HI] = hi
                slots[s, F_ACC_LO] = lo
            if maybe_due and (w + 1) * iv <= wm:
                # Window already due: first emission (it had no trades when it came due) or a revision.
                if slots[s, F_FIRED] == 1:
                    slots[s, F_REV] += 1
                slots[s, F_FIRED] = 1
                n_out = _emit(slots, s, inst, j, iv, r, ts_recv[r], out, n_out)
    return n, n_out, n_late


@numba.njit(cache=True)
def flush_bars(intervals: np.ndarray, kslots: np.ndarray, slots: np.ndarray, scalars: np.ndarray, n_inst: int,
               out: np.ndarray) -> int:
    """End of input (watermark +inf): emit every unfired window by (interval, instrument, start)."""
    n_int = intervals.shape[0]
    kmax = slots.shape[0] // (n_inst * n_int)
    n_out = 0
    for j in range(n_int):
        n_out = _fire_due(slots, n_inst, n_int, kmax, j, intervals[j], kslots[j], I64_MAX, -1,
                          scalars[S_MAX_TS_RECV], out, n_out)
    scalars[S_FLUSHED] = 1
    scalars[S_WM] = I64_MAX
    return n_out


@numba.njit(cache=True)
def is_sorted_by_key(instrument: np.ndarray, ts: np.ndarray) -> bool:
    for r in range(1, ts.shape[0]):
        if instrument[r] < instrument[r - 1] or (instrument[r] == instrument[r - 1] and ts[r] < ts[r - 1]):
            return False
    return True


@numba.njit(cache=True)
def is_nondecreasing(ts: np.ndarray) -> bool:
    for r in range(1, ts.shape[0]):  # noqa: SIM110 (numba has no generator all())
        if ts[r] < ts[r - 1]:
            return False
    return True


@numba.njit(cache=True)
def stable_order_by_key(instrument: np.ndarray, n_inst: int) -> np.ndarray:
    """Row order grouping rows by instrument, file order kept within each (a counting sort)."""
    start = np.zeros(n_inst + 1, dtype=np.int64)
    for r in range(instrument.shape[0]):
        start[instrument[r] + 1] += 1
    for k in range(n_inst):
        start[k + 1] += start[k]
    order = np.empty(instrument.shape[0], dtype=np.int64)
    for r in range(instrument.shape[0]):
        k = instrument[r]
        order[start[k]] = r
        start[k] += 1
    return order


@numba.njit(cache=True)
def count_batch_bars(instrument: np.ndarray, ts: np.ndarray, interval: int) -> int:
    """Bars `batch_bars` will produce for rows sorted by (instrument, ts)."""
    nb = 0
    cur_inst = -1
    cur_end = 0
    for r in range(ts.shape[0]):
        if instrument[r] != cur_inst or ts[r] >= cur_end:
            nb += 1
            cur_inst = instrument[r]
            cur_end = (ts[r] // interval) * interval + interval
    return nb


@numba.njit(cache=True)
def batch_bars(instrument: np.ndarray, ts: np.ndarray, price: np.ndarray, size: np.ndarray, interval: int,
               out: np.ndarray) -> int:
    """One pass over rows sorted by (instrument, ts) (ties in arrival order): one bar per (instrument,
    window) with trades, in (instrument, start) order, into `out` rows (count_batch_bars of them; columns O_*,
    revision / trigger / ts_recv unused). Returns the number of bars. The open bar lives in locals."""
    n = ts.shape[0]
    nb = 0
    if n == 0:
        return 0
    cur_inst = instrument[0]
    start = (ts[0] // interval) * interval
    end = start + interval
    o = price[0]
    h = o
    lo_ = o
    c = o
    vol = size[0]
    cnt = 1
    ref = o
    acc_hi = 0
    acc_lo = 0
    for r in range(1, n + 1):
        if r < n:
            t = ts[r]
            inst = instrument[r]
            if inst == cur_inst and t < end:
                p = price[r]
                q = size[r]
                if p > h:
                    h = p
                if p < lo_:
                    lo_ = p
                c = p
                vol += q
                cnt += 1
                acc_hi, acc_lo = acc_add(acc_hi, acc_lo, p - ref, q)
                continue
        out[nb, O_INSTRUMENT] = cur_inst
        out[nb, O_INTERVAL] = 0
        out[nb, O_START] = start
        out[nb, O_OPEN] = o
        out[nb, O_HIGH] = h
        out[nb, O_LOW] = lo_
        out[nb, O_CLOSE] = c
        out[nb, O_VOLUME] = vol
        out[nb, O_VWAP] = c if vol <= 0 else mean_from_ref(acc_hi, acc_lo, vol, ref)
        out[nb, O_TRADES] = cnt
        out[nb, O_REVISION] = 0
        out[nb, O_TRIGGER] = -1
        out[nb, O_TS_RECV] = 0
        nb += 1
        if r < n:
            cur_inst = instrument[r]
            start = (ts[r] // interval) * interval
            end = start + interval
            o = price[r]
            h = o
            lo_ = o
            c = o
            vol = size[r]
            cnt = 1
            ref = o
            acc_hi = 0
            acc_lo = 0
    return nb
