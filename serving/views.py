"""JSON documents of the HTTP API and the SSE stream (one shape for both).

Prices are exact decimal STRINGS ("-37.63", "2034.1"): fixed point 1e-9 converted without floats, so no
rounding ever shows; clients parse them (JS: Number(s)). Sizes and counts are ints. Every timestamp is
given twice: `*_ns` (int, UTC ns) and `*_iso` (UTC ISO 8601 with 'Z', nanosecond digits kept).
Signals carry `payload`: the full codec record (market.codec JSON: prices there are fixed-point ints).
"""

from __future__ import annotations

import msgspec

from market import codec
from market.events import (
    AnomalySignal,
    AnomalyType,
    ArbitrageSignal,
    Bar,
    CrashWarning,
    DeadLetter,
    Forecast,
    QuoteTick,
    Signal,
    TradeTick,
    signal_instrument,
    signal_kind,
)
from market.fixedpoint import PRICE_SCALE
from market.instruments import Instrument
from market.timeutil import format_interval, to_iso


def price_str(fixed: int) -> str:
    """Exact decimal text of a fixed-point price, trailing zeros trimmed: -37630000000 -> '-37.63'."""
    sign = "-" if fixed < 0 else ""
    whole, frac = divmod(abs(fixed), PRICE_SCALE)
    if not frac:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{frac:09d}".rstrip("0")


class InstrumentView(msgspec.Struct, frozen=True):
    id: str
    venue: str
    symbol: str
    name: str
    commodity: str
    currency: str
    quote_unit: str
    price_scale: str
    tick_size: str
    contract_size: str
    contract_unit: str
    trading_hours: str
    timezone: str


class BarView(msgspec.Struct, frozen=True):
    instrument: str
    interval: str
    interval_ns: int
    start_ns: int
    start_iso: str
    open: str
    high: str
    low: str
    close: str
    volume: int
    vwap: str
    trades: int
    ts_event_ns: int
    ts_recv_ns: int
    revision: int


class TradeView(msgspec.Struct, frozen=True, tag="trade", tag_field="kind"):
    instrument: str
    price: str
    size: int
    ts_event_ns: int
    ts_event_iso: str
    seq: int


class QuoteView(msgspec.Struct, frozen=True, tag="quote", tag_field="kind"):
    instrument: str
    bid: str
    ask: str
    bid_size: int
    ask_size: int
    ts_event_ns: int
    ts_event_iso: str
    seq: int


class SignalView(msgspec.Struct, frozen=True):
    kind: str
    instrument: str  # instrument id, or the pair id of an arbitrage signal
    instruments: list[str]  # every instrument concerned (pair id and both legs for arbitrage)
    summary: str  # one human line for lists and dashboards
    ts_event_ns: int
    ts_event_iso: str
    ts_recv_ns: int
    payload: dict  # type: ignore[type-arg]


class DeadLetterView(msgspec.Struct, frozen=True):
    source: str
    reason: str
    detail: str
    raw: str
    instrument: str
    ts_event_ns: int
    ts_recv_ns: int
    ts_recv_iso: str


def instrument_view(i: Instrument) -> InstrumentView:
    return InstrumentView(
        id=i.id, venue=i.venue, symbol=i.symbol, name=i.name, commodity=i.commodity, currency=i.price_currency,
        quote_unit=i.quote_unit, price_scale=str(i.price_scale), tick_size=str(i.tick_size),
        contract_size=str(i.contract_size), contract_unit=i.contract_unit, trading_hours=i.trading_hours,
        timezone=i.timezone,
    )


def bar_view(b: Bar) -> BarView:
    return BarView(
        instrument=b.instrument_id, interval=format_interval(b.interval_ns), interval_ns=b.interval_ns,
        start_ns=b.start, start_iso=to_iso(b.start), open=price_str(b.open), high=price_str(b.high),
        low=price_str(b.low), close=price_str(b.close), volume=b.volume, vwap=price_str(b.vwap), trades=b.trades,
        ts_event_ns=b.ts_event, ts_recv_ns=b.ts_recv, revision=b.revision,
    )


def tick_view(t: TradeTick | QuoteTick) -> TradeView | QuoteView:
    if isinstance(t, TradeTick):
        return TradeView(t.instrument_id, price_str(t.price), t.size, t.ts_event, to_iso(t.ts_event), t.seq)
    return QuoteView(t.instrument_id, price_str(t.bid), price_str(t.ask), t.bid_size, t.ask_size, t.ts_event,
                     to_iso(t.ts_event), t.seq)


def signal_instruments(s: Signal) -> list[str]:
    if isinstance(s, ArbitrageSignal):
        return [s.pair_id, s.buy_instrument_id, s.sell_instrument_id]
    return [s.instrument_id]


_PRICE_VALUED = frozenset({AnomalyType.CROSSED_MARKET, AnomalyType.TRADE_OUTSIDE_QUOTE})


def signal_summary(s: Signal) -> str:
    if isinstance(s, ArbitrageSignal):
        return (f"{s.state} {s.pair_id}: buy {s.buy_instrument_id} sell {s.sell_instrument_id}, net "
                f"{s.net_edge_bps:.1f} bps ({price_str(s.net_edge)} {s.canonical_currency}/{s.canonical_unit})")
    if isinstance(s, AnomalySignal):
        detail = f": {s.detail}" if s.detail else ""
        if s.anomaly in _PRICE_VALUED:
            # value is a fixed-point price distance (jobs.tickchecks); printed raw it would read "1e+09"
            return f"{s.anomaly.value} by {price_str(round(s.value))}{detail}"
        if s.anomaly == AnomalyType.SEQUENCE_GAP and s.detail:
            return f"{s.anomaly.value}{detail}"  # the detail names the seqs and the count; threshold 0 says nothing
        return f"{s.anomaly.value} {s.value:.3g} (threshold {s.threshold:.3g}) {s.detail}".rstrip()
    if isinstance(s, CrashWarning):
        return (f"down {s.drawdown_pct:.2f}% in {format_interval(s.window_ns)} from {price_str(s.peak)} to "
                f"{price_str(s.last)}, volume x{s.volume_ratio:.1f} ({s.source})")
    if isinstance(s, Forecast):
        band = f" [{price_str(s.lower)}, {price_str(s.upper)}]" if s.lower or s.upper else ""
        return f"{s.model}: {price_str(s.predicted)}{band} in {format_interval(s.horizon_ns)}"
    raise TypeError(f"not a signal: {type(s).__name__}")


def signal_view(s: Signal) -> SignalView:
    return SignalView(
        kind=signal_kind(s).value, instrument=signal_instrument(s), instruments=signal_instruments(s),
        summary=signal_summary(s), ts_event_ns=s.ts_event, ts_event_iso=to_iso(s.ts_event), ts_recv_ns=s.ts_recv,
        payload=codec.to_builtins(s),
    )


def dead_letter_view(d: DeadLetter) -> DeadLetterView:
    return DeadLetterView(d.source, d.reason, d.detail, d.raw, d.instrument_id, d.ts_event, d.ts_recv,
                          to_iso(d.ts_recv))
