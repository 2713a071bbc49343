"""Numba kernel of the per-tick market checks (pure-Python twin: jobs/tickchecks_reference.py).

Input rows are validated ticks in delivery order. Per instrument the "current quote" is the latest quote by
ts_event (a tie goes to the later arrival; older quotes arriving late are ignored). A quote side with size 0
is absent: it can neither cross nor be traded through.

- CROSSED_MARKET: the current quote has bid > ask (equal is locked, not crossed); emitted once on becoming
  crossed, re-armed by the next current quote that is not crossed. value = bid - ask, ref = ask.
- TRADE_OUTSIDE_QUOTE: trade price below the current bid or above the current ask, only while the current
  quote is not crossed; at most one per instrument per cooldown of event time. value = distance outside,
  ref = the bid or ask it is outside of.
- Quote samples: the max ts_event seen over all rows is the sampling clock. When a row moves it past a
  multiple of the interval, the current quote of every instrument that has one is emitted for the latest
  boundary passed, before that row is applied (the sample holds what was known strictly before the boundary).
"""

from __future__ import annotations

import numba
import numpy as np

from market.columns import KIND_QUOTE, KIND_TRADE

CROSSED_MARKET = 0
TRADE_OUTSIDE_QUOTE = 1
_TRADE = np.int8(KIND_TRADE)
_QUOTE = np.int8(KIND_QUOTE)

# rows of the per-instrument state matrix (int64, shape (N_STATE, n_instruments))
BID, ASK, BID_SIZE, ASK_SIZE, QUOTE_TS, HAS_QUOTE, CROSSED, OUTSIDE_TS, HAS_OUTSIDE = range(9)
N_STATE = 9
# the global clock array: [max ts_event seen, 1 if any row seen]
CLOCK_MAX_TS = 0
CLOCK_STARTED = 1
# rows of the integer anomaly matrix (the values are a separate float64 array)
A_INSTRUMENT, A_TYPE, A_REF, A_ROW = range(4)
# rows of the sample matrix
S_INSTRUMENT, S_BID, S_ASK, S_BID_SIZE, S_ASK_SIZE, S_QUOTE_TS, S_TS, S_ROW = range(8)


@numba.njit(cache=True)
def check_batch(
    instrument: np.ndarray, kind: np.ndarray, ts_event: np.ndarray, price: np.ndarray,
    bid: np.ndarray, ask: np.ndarray, bid_size: np.ndarray, ask_size: np.ndarray,
    interval_ns: int, cooldown_ns: int, state: np.ndarray, clock: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Returns (anomaly int64 matrix (4, na), anomaly values (na,), sample matrix (8, ns)); updates state/clock.

    Few arguments and results on purpose: numba's per-call boxing cost dominates small batches.
    """
    n = ts_event.shape[0]
    n_inst = state.shape[1]
    # pass 1, before any state changes: reject rows that did not pass validation, size the sample output
    started = clock[CLOCK_STARTED] != 0
    cur = clock[CLOCK_MAX_TS] // interval_ns
    crossings = 0
    for i in range(n):
        if instrument[i] < 0 or instrument[i] >= n_inst:
            raise ValueError("TickChecker takes validated rows only (instrument index out of range)")
        b = ts_event[i] // interval_ns
        if not started:
            started = True
            cur = b
        elif b > cur:
            cur = b
            crossings += 1
    am = np.empty((4, n), dtype=np.int64)
    av = np.empty(n, dtype=np.float64)
    sm = np.empty((8, crossings * n_inst), dtype=np.int64)
    na = 0
    ns = 0
    started = clock[CLOCK_STARTED] != 0
    max_ts = clock[CLOCK_MAX_TS]
    cur = max_ts // interval_ns
    for i in range(n):
        t = ts_event[i]
        b = t // interval_ns
        if not started:
            started = True
            cur = b
            max_ts = t
        else:
            if b > cur:
                cur = b
                boundary = b * interval_ns
                for k in range(n_inst):
                    if state[HAS_QUOTE, k]:
                        sm[S_INSTRUMENT, ns] = k
                        sm[S_BID, ns] = state[BID, k]
                        sm[S_ASK, ns] = state[ASK, k]
                        sm[S_BID_SIZE, ns] = state[BID_SIZE, k]
                        sm[S_ASK_SIZE, ns] = state[ASK_SIZE, k]
                        sm[S_QUOTE_TS, ns] = state[QUOTE_TS, k]
                        sm[S_TS, ns] = boundary
                        sm[S_ROW, ns] = i
                        ns += 1
            if t > max_ts:
                max_ts = t
        k = instrument[i]
        if kind[i] == _QUOTE:
            if state[HAS_QUOTE, k] and t < state[QUOTE_TS, k]:
                continue
            qb = bid[i]
            qa = ask[i]
            qbs = bid_size[i]
            qas = ask_size[i]
            state[HAS_QUOTE, k] = 1
            state[BID, k] = qb
            state[ASK, k] = qa
            state[BID_SIZE, k] = qbs
            state[ASK_SIZE, k] = qas
            state[QUOTE_TS, k] = t
            if qbs > 0 and qas > 0 and qb > qa:
                if not state[CROSSED, k]:
                    state[CROSSED, k] = 1
                    am[A_INSTRUMENT, na] = k
                    am[A_TYPE, na] = CROSSED_MARKET
                    am[A_REF, na] = qa
                    am[A_ROW, na] = i
                    av[na] = float(qb - qa)
                    na += 1
            else:
                state[CROSSED, k] = 0
        elif kind[i] == _TRADE:
            if not state[HAS_QUOTE, k] or state[CROSSED, k]:
                continue
            p = price[i]
            dist = 0
            ref = 0
            if state[BID_SIZE, k] > 0 and p < state[BID, k]:
                ref = state[BID, k]
                dist = ref - p
            elif state[ASK_SIZE, k] > 0 and p > state[ASK, k]:
                ref = state[ASK, k]
                dist = p - ref
            if dist > 0 and (not state[HAS_OUTSIDE, k] or t - state[OUTSIDE_TS, k] >= cooldown_ns):
                state[HAS_OUTSIDE, k] = 1
                state[OUTSIDE_TS, k] = t
                am[A_INSTRUMENT, na] = k
                am[A_TYPE, na] = TRADE_OUTSIDE_QUOTE
                am[A_REF, na] = ref
                am[A_ROW, na] = i
                av[na] = float(dist)
                na += 1
    clock[CLOCK_MAX_TS] = max_ts
    clock[CLOCK_STARTED] = 1 if started else 0
    return am[:, :na].copy(), av[:na].copy(), sm[:, :ns].copy()
