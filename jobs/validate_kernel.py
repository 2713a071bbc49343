"""Numba kernel of the tick validator (pure-Python twin: jobs/validate_reference.py).

Per row, first failing check wins: unknown instrument, bad trade size, bad quote sizes, event time too far
ahead of receive time, then the sequence check. Sequence state per instrument is the newest accepted seq
plus a bitmap of the `window` seqs at and below it (bit d = seq max_seq - d), as in IPsec anti-replay:
duplicates inside the window are found exactly, anything older than the window is STALE_SEQ.
Rejected rows never touch state.
"""

from __future__ import annotations

import numba
import numpy as np

from market.columns import KIND_QUOTE, KIND_TRADE
from market.rejects import Reason

OK = np.uint8(Reason.OK)
MALFORMED = np.uint8(Reason.MALFORMED)
UNKNOWN_INSTRUMENT = np.uint8(Reason.UNKNOWN_INSTRUMENT)
BAD_SIZE = np.uint8(Reason.BAD_SIZE)
BAD_QUOTE = np.uint8(Reason.BAD_QUOTE)
FUTURE_TIMESTAMP = np.uint8(Reason.FUTURE_TIMESTAMP)
DUPLICATE = np.uint8(Reason.DUPLICATE)
STALE_SEQ = np.uint8(Reason.STALE_SEQ)
_TRADE = np.int8(KIND_TRADE)
_QUOTE = np.int8(KIND_QUOTE)
GAP_INSTRUMENT, GAP_EXPECTED, GAP_GOT, GAP_ROW = range(4)  # rows of the gap matrix


def window_mask(window: int) -> np.uint64:
    """The low `window` bits set (window in 1..64)."""
    return np.uint64((1 << window) - 1)


@numba.njit(cache=True)
def validate_batch(
    instrument: np.ndarray, kind: np.ndarray, ts_event: np.ndarray, ts_recv: np.ndarray, seq: np.ndarray,
    size: np.ndarray, bid_size: np.ndarray, ask_size: np.ndarray,
    max_future_ns: int, window: int, wmask: np.uint64,
    max_seq: np.ndarray, seen: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Returns (reason per row, gap matrix (4, n_gaps): rows GAP_INSTRUMENT..GAP_ROW); updates max_seq/seen.

    Outputs are allocated here (one boxed result each) because numba's per-call overhead dominates small batches.
    """
    n = ts_event.shape[0]
    reasons = np.empty(n, dtype=np.uint8)
    gaps = np.empty((4, n), dtype=np.int64)
    n_inst = max_seq.shape[0]
    one = np.uint64(1)
    n_gaps = 0
    for i in range(n):
        k = instrument[i]
        if k < 0 or k >= n_inst:
            reasons[i] = UNKNOWN_INSTRUMENT
            continue
        kd = kind[i]
        if kd == _TRADE:
            if size[i] <= 0:
                reasons[i] = BAD_SIZE
                continue
        elif kd == _QUOTE:
            bs = bid_size[i]
            az = ask_size[i]
            if bs < 0 or az < 0 or (bs == 0 and az == 0):
                reasons[i] = BAD_QUOTE
                continue
        else:
            reasons[i] = MALFORMED
            continue
        if ts_event[i] - ts_recv[i] > max_future_ns:
            reasons[i] = FUTURE_TIMESTAMP
            continue
        s = seq[i]
        if s < 0:
            reasons[i] = MALFORMED
            continue
        if s > 0:
            m = max_seq[k]
            if m == 0:
                max_seq[k] = s
                seen[k] = one
            elif s > m:
                shift = s - m
                if shift >= 64:
                    seen[k] = one
                else:
                    seen[k] = ((seen[k] << np.uint64(shift)) | one) & wmask
                max_seq[k] = s
                if shift > 1:
                    gaps[GAP_INSTRUMENT, n_gaps] = k
                    gaps[GAP_EXPECTED, n_gaps] = m + 1
                    gaps[GAP_GOT, n_gaps] = s
                    gaps[GAP_ROW, n_gaps] = i
                    n_gaps += 1
            elif s <= m - window:
                reasons[i] = STALE_SEQ
                continue
            else:
                bit = one << np.uint64(m - s)
                if seen[k] & bit:
                    reasons[i] = DUPLICATE
                    continue
                seen[k] = seen[k] | bit
        reasons[i] = OK
    return reasons, gaps[:, :n_gaps].copy()
