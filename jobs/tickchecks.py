"""Per-tick market checks on validated ticks: crossed markets, trades outside the quote, quote samples.

Rules are in jobs/tickchecks_kernel.py's docstring. `TickChecker.on_batch(cols)` takes accepted rows only
and returns columnar anomalies and samples (`row` indexes `cols`); `to_anomalies` / `to_samples` make records.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import msgspec
import numpy as np

from jobs.tickchecks_kernel import (
    A_INSTRUMENT,
    A_REF,
    A_ROW,
    A_TYPE,
    ASK,
    ASK_SIZE,
    BID,
    BID_SIZE,
    CLOCK_MAX_TS,
    CLOCK_STARTED,
    CROSSED,
    CROSSED_MARKET,
    HAS_OUTSIDE,
    HAS_QUOTE,
    N_STATE,
    OUTSIDE_TS,
    QUOTE_TS,
    S_ASK,
    S_ASK_SIZE,
    S_BID,
    S_BID_SIZE,
    S_INSTRUMENT,
    S_QUOTE_TS,
    S_ROW,
    S_TS,
    TRADE_OUTSIDE_QUOTE,
    check_batch,
)
from jobs.tickchecks_reference import Clock, InstrumentState, check_rows
from market.columns import TickColumns
from market.config import Config
from market.events import AnomalySignal, AnomalyType, QuoteSample
from market.fixedpoint import to_decimal
from market.instruments import Registry

Impl = Literal["numba", "python"]
NS_PER_MS = 1_000_000
ANOMALY_TYPES: dict[int, AnomalyType] = {
    CROSSED_MARKET: AnomalyType.CROSSED_MARKET,
    TRADE_OUTSIDE_QUOTE: AnomalyType.TRADE_OUTSIDE_QUOTE,
}


class TickChecksConfig(Config, frozen=True):
    sample_interval_ms: int = 1000  # event-time quote sampling period
    outside_quote_cooldown_ms: int = 1000  # at most one TRADE_OUTSIDE_QUOTE per instrument per this much event time

    def __post_init__(self) -> None:
        if self.sample_interval_ms <= 0:
            raise ValueError("sample_interval_ms must be > 0")
        if self.outside_quote_cooldown_ms < 0:
            raise ValueError("outside_quote_cooldown_ms must be >= 0")


class TickCheckerSnapshot(msgspec.Struct, frozen=True, tag="tickchecker.v1"):
    has_quote: list[bool]
    bid: list[int]
    ask: list[int]
    bid_size: list[int]
    ask_size: list[int]
    quote_ts: list[int]
    crossed: list[bool]
    has_outside: list[bool]
    outside_ts: list[int]
    started: bool
    max_ts: int


@dataclass(slots=True)
class TickCheckOutput:
    anomaly_instrument: np.ndarray  # int32
    anomaly_type: np.ndarray  # int8: CROSSED_MARKET | TRADE_OUTSIDE_QUOTE (ANOMALY_TYPES maps to AnomalyType)
    anomaly_value: np.ndarray  # float64, fixed-point price units
    anomaly_threshold: np.ndarray  # float64
    anomaly_ref: np.ndarray  # int64: the quote price compared with (crossed: the ask; outside: the bid or ask)
    anomaly_row: np.ndarray  # int64
    sample_instrument: np.ndarray  # int32
    sample_bid: np.ndarray  # int64
    sample_ask: np.ndarray
    sample_bid_size: np.ndarray  # 0 = that side was absent
    sample_ask_size: np.ndarray
    sample_quote_ts_event: np.ndarray
    sample_ts: np.ndarray  # the boundary
    sample_row: np.ndarray  # row whose ts_event moved the clock past the boundary

    @property
    def n_anomalies(self) -> int:
        return int(self.anomaly_row.shape[0])

    @property
    def n_samples(self) -> int:
        return int(self.sample_row.shape[0])


class TickChecker:
    def __init__(self, config: TickChecksConfig, n_instruments: int, impl: Impl = "numba") -> None:
        if impl not in ("numba", "python"):
            raise ValueError(f"unknown impl {impl!r}")
        self.config = config
        self.impl: Impl = impl
        self._interval_ns = config.sample_interval_ms * NS_PER_MS
        self._cooldown_ns = config.outside_quote_cooldown_ms * NS_PER_MS
        self._state = np.zeros((N_STATE, n_instruments), dtype=np.int64)  # rows: tickchecks_kernel.BID ...
        self._clock = np.zeros(2, dtype=np.int64)

    @property
    def n_instruments(self) -> int:
        return int(self._state.shape[1])

    def on_batch(self, cols: TickColumns) -> TickCheckOutput:
        """Raises ValueError (before any state change) on rows with an instrument index out of range."""
        if self.impl == "numba":
            am, av, sm = check_batch(
                cols.instrument, cols.kind, cols.ts_event, cols.price, cols.bid, cols.ask, cols.bid_size,
                cols.ask_size, self._interval_ns, self._cooldown_ns, self._state, self._clock,
            )
            return _output(am, av, sm)
        return self._on_batch_python(cols)

    def _on_batch_python(self, cols: TickColumns) -> TickCheckOutput:
        if len(cols) and (int(cols.instrument.min()) < 0 or int(cols.instrument.max()) >= self.n_instruments):
            raise ValueError("TickChecker takes validated rows only (instrument index out of range)")
        states = _states_from_matrix(self._state)
        clock = Clock(bool(self._clock[CLOCK_STARTED]), int(self._clock[CLOCK_MAX_TS]))
        an, sm = check_rows(
            cols.instrument.tolist(), cols.kind.tolist(), cols.ts_event.tolist(), cols.price.tolist(),
            cols.bid.tolist(), cols.ask.tolist(), cols.bid_size.tolist(), cols.ask_size.tolist(),
            self._interval_ns, self._cooldown_ns, states, clock,
        )
        self._state[:] = _matrix_from_states(states)
        self._clock[:] = (clock.max_ts, int(clock.started))
        return _output(
            np.array([an.instrument, an.type, an.ref, an.row], dtype=np.int64).reshape(4, -1),
            np.array(an.value, dtype=np.float64),
            np.array([sm.instrument, sm.bid, sm.ask, sm.bid_size, sm.ask_size, sm.quote_ts_event, sm.sample_ts,
                      sm.row], dtype=np.int64).reshape(8, -1),
        )

    def snapshot(self) -> TickCheckerSnapshot:
        st = self._state
        return TickCheckerSnapshot(
            has_quote=[bool(x) for x in st[HAS_QUOTE]], bid=st[BID].tolist(), ask=st[ASK].tolist(),
            bid_size=st[BID_SIZE].tolist(), ask_size=st[ASK_SIZE].tolist(), quote_ts=st[QUOTE_TS].tolist(),
            crossed=[bool(x) for x in st[CROSSED]], has_outside=[bool(x) for x in st[HAS_OUTSIDE]],
            outside_ts=st[OUTSIDE_TS].tolist(), started=bool(self._clock[CLOCK_STARTED]),
            max_ts=int(self._clock[CLOCK_MAX_TS]),
        )

    @classmethod
    def restore(cls, config: TickChecksConfig, snap: TickCheckerSnapshot, impl: Impl = "numba") -> TickChecker:
        tc = cls(config, len(snap.bid), impl)
        st = tc._state
        st[HAS_QUOTE], st[BID], st[ASK], st[BID_SIZE], st[ASK_SIZE] = (
            snap.has_quote, snap.bid, snap.ask, snap.bid_size, snap.ask_size)
        st[QUOTE_TS], st[CROSSED], st[HAS_OUTSIDE], st[OUTSIDE_TS] = (
            snap.quote_ts, snap.crossed, snap.has_outside, snap.outside_ts)
        tc._clock[:] = (snap.max_ts, int(snap.started))
        return tc


def _output(am: np.ndarray, av: np.ndarray, sm: np.ndarray) -> TickCheckOutput:
    return TickCheckOutput(
        am[A_INSTRUMENT].astype(np.int32), am[A_TYPE].astype(np.int8), av, np.zeros(av.shape[0], np.float64),
        am[A_REF], am[A_ROW],
        sm[S_INSTRUMENT].astype(np.int32), sm[S_BID], sm[S_ASK], sm[S_BID_SIZE], sm[S_ASK_SIZE], sm[S_QUOTE_TS],
        sm[S_TS], sm[S_ROW],
    )


def _states_from_matrix(st: np.ndarray) -> list[InstrumentState]:
    return [
        InstrumentState(bool(hq), b, a, bs, az, qt, bool(cr), bool(ho), ot)
        for hq, b, a, bs, az, qt, cr, ho, ot in zip(
            *(st[r].tolist() for r in (HAS_QUOTE, BID, ASK, BID_SIZE, ASK_SIZE, QUOTE_TS, CROSSED, HAS_OUTSIDE,
                                       OUTSIDE_TS)), strict=True)
    ]


def _matrix_from_states(states: list[InstrumentState]) -> np.ndarray:
    st = np.zeros((N_STATE, len(states)), dtype=np.int64)
    for k, s in enumerate(states):
        st[:, k] = (s.bid, s.ask, s.bid_size, s.ask_size, s.quote_ts, s.has_quote, s.crossed, s.outside_ts,
                    s.has_outside)
    return st


def _px(fixed: int) -> str:
    return format(to_decimal(fixed).normalize(), "f")


def to_anomalies(out: TickCheckOutput, cols: TickColumns, registry: Registry) -> list[AnomalySignal]:
    """AnomalySignal records in row order; ts_event/ts_recv come from the row that raised them."""
    res: list[AnomalySignal] = []
    for k, code, value, thr, ref, row in zip(out.anomaly_instrument.tolist(), out.anomaly_type.tolist(),
                                             out.anomaly_value.tolist(), out.anomaly_threshold.tolist(),
                                             out.anomaly_ref.tolist(), out.anomaly_row.tolist(), strict=True):
        kind = ANOMALY_TYPES[code]
        if kind == AnomalyType.CROSSED_MARKET:
            detail = f"bid {_px(int(cols.bid[row]))} > ask {_px(ref)}"
        else:
            p = int(cols.price[row])
            detail = f"trade {_px(p)} < bid {_px(ref)}" if p < ref else f"trade {_px(p)} > ask {_px(ref)}"
        res.append(AnomalySignal(
            instrument_id=registry.by_index(k).id, anomaly=kind, value=value, threshold=thr, detail=detail,
            ts_event=int(cols.ts_event[row]), ts_recv=int(cols.ts_recv[row]),
        ))
    return res


def to_samples(out: TickCheckOutput, cols: TickColumns, registry: Registry) -> list[QuoteSample]:
    """QuoteSample records for two-sided quotes (QuoteSample cannot say a side is absent; those stay columnar)."""
    res: list[QuoteSample] = []
    ids = registry.ids
    two_sided = (out.sample_bid_size > 0) & (out.sample_ask_size > 0)
    for j in np.flatnonzero(two_sided).tolist():
        row = int(out.sample_row[j])
        res.append(QuoteSample(
            instrument_id=ids[int(out.sample_instrument[j])], bid=int(out.sample_bid[j]), ask=int(out.sample_ask[j]),
            quote_ts_event=int(out.sample_quote_ts_event[j]), ts_event=int(out.sample_ts[j]),
            ts_recv=int(cols.ts_recv[row]),
        ))
    return res
