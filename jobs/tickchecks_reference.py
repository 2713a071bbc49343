"""Pure-Python reference of jobs/tickchecks_kernel.py (same rules, see its docstring), one object per instrument."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from jobs.tickchecks_kernel import CROSSED_MARKET, TRADE_OUTSIDE_QUOTE
from market.columns import KIND_QUOTE, KIND_TRADE


@dataclass(slots=True)
class InstrumentState:
    has_quote: bool = False
    bid: int = 0
    ask: int = 0
    bid_size: int = 0
    ask_size: int = 0
    quote_ts: int = 0
    crossed: bool = False
    has_outside: bool = False
    outside_ts: int = 0  # event time of the last TRADE_OUTSIDE_QUOTE (cooldown start)


@dataclass(slots=True)
class Clock:
    started: bool = False
    max_ts: int = 0


@dataclass(slots=True)
class Anomalies:
    instrument: list[int] = field(default_factory=list)
    type: list[int] = field(default_factory=list)
    value: list[float] = field(default_factory=list)
    ref: list[int] = field(default_factory=list)
    row: list[int] = field(default_factory=list)

    def add(self, k: int, code: int, value: float, ref: int, row: int) -> None:
        self.instrument.append(k)
        self.type.append(code)
        self.value.append(value)
        self.ref.append(ref)
        self.row.append(row)


@dataclass(slots=True)
class Samples:
    instrument: list[int] = field(default_factory=list)
    bid: list[int] = field(default_factory=list)
    ask: list[int] = field(default_factory=list)
    bid_size: list[int] = field(default_factory=list)
    ask_size: list[int] = field(default_factory=list)
    quote_ts_event: list[int] = field(default_factory=list)
    sample_ts: list[int] = field(default_factory=list)
    row: list[int] = field(default_factory=list)


def check_rows(
    instrument: Sequence[int], kind: Sequence[int], ts_event: Sequence[int], price: Sequence[int],
    bid: Sequence[int], ask: Sequence[int], bid_size: Sequence[int], ask_size: Sequence[int],
    interval_ns: int, cooldown_ns: int, states: list[InstrumentState], clock: Clock,
) -> tuple[Anomalies, Samples]:
    anomalies = Anomalies()
    samples = Samples()
    for i, t in enumerate(ts_event):
        if not clock.started:
            clock.started, clock.max_ts = True, t
        elif t // interval_ns > clock.max_ts // interval_ns:
            boundary = t // interval_ns * interval_ns
            for k, st in enumerate(states):
                if st.has_quote:
                    samples.instrument.append(k)
                    samples.bid.append(st.bid)
                    samples.ask.append(st.ask)
                    samples.bid_size.append(st.bid_size)
                    samples.ask_size.append(st.ask_size)
                    samples.quote_ts_event.append(st.quote_ts)
                    samples.sample_ts.append(boundary)
                    samples.row.append(i)
        if t > clock.max_ts:
            clock.max_ts = t
        st = states[instrument[i]]
        if kind[i] == KIND_QUOTE:
            _on_quote(st, instrument[i], i, t, bid[i], ask[i], bid_size[i], ask_size[i], anomalies)
        elif kind[i] == KIND_TRADE:
            _on_trade(st, instrument[i], i, t, price[i], cooldown_ns, anomalies)
    return anomalies, samples


def _on_quote(st: InstrumentState, k: int, i: int, t: int, bid: int, ask: int, bid_size: int, ask_size: int,
              anomalies: Anomalies) -> None:
    if st.has_quote and t < st.quote_ts:
        return  # older than the current quote: arrived late, superseded
    st.has_quote = True
    st.bid, st.ask, st.bid_size, st.ask_size, st.quote_ts = bid, ask, bid_size, ask_size, t
    is_crossed = bid_size > 0 and ask_size > 0 and bid > ask
    if is_crossed and not st.crossed:
        anomalies.add(k, CROSSED_MARKET, float(bid - ask), ask, i)
    st.crossed = is_crossed


def _on_trade(st: InstrumentState, k: int, i: int, t: int, price: int, cooldown_ns: int,
              anomalies: Anomalies) -> None:
    if not st.has_quote or st.crossed:
        return
    if st.bid_size > 0 and price < st.bid:
        dist, ref = st.bid - price, st.bid
    elif st.ask_size > 0 and price > st.ask:
        dist, ref = price - st.ask, st.ask
    else:
        return
    if st.has_outside and t - st.outside_ts < cooldown_ns:
        return
    st.has_outside, st.outside_ts = True, t
    anomalies.add(k, TRADE_OUTSIDE_QUOTE, float(dist), ref, i)
