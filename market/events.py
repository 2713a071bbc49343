"""Typed event records. Prices are fixed-point ints (market.fixedpoint, 1e-9); timestamps UTC ns.

Every record carries ts_event (when it happened at the source) and ts_recv (when commodex received it,
or for derived records, when it was produced). The wire tag names the record and its schema version.
"""

from __future__ import annotations

from enum import StrEnum

import msgspec


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"
    NONE = "none"


class TradeTick(msgspec.Struct, frozen=True, tag="trade.v1", tag_field="type"):
    instrument_id: str
    price: int
    size: int
    ts_event: int
    ts_recv: int
    seq: int = 0  # per-instrument publisher sequence; 0 = not sequenced
    aggressor: Side = Side.NONE


class QuoteTick(msgspec.Struct, frozen=True, tag="quote.v1", tag_field="type"):
    instrument_id: str
    bid: int
    ask: int
    bid_size: int
    ask_size: int
    ts_event: int
    ts_recv: int
    seq: int = 0


class QuoteSample(msgspec.Struct, frozen=True, tag="sample.v1", tag_field="type"):
    """The last quote of an instrument as of an event-time sampling boundary (bar-rate input to signal logic)."""

    instrument_id: str
    bid: int
    ask: int
    quote_ts_event: int  # when that quote happened; ts_event - quote_ts_event is its age
    ts_event: int  # the sampling boundary
    ts_recv: int


class Bar(msgspec.Struct, frozen=True, tag="bar.v1", tag_field="type"):
    instrument_id: str
    interval_ns: int
    start: int  # window start, UTC ns; ts_event = start + interval_ns
    open: int
    high: int
    low: int
    close: int
    volume: int
    vwap: int
    trades: int
    ts_event: int
    ts_recv: int
    revision: int = 0  # >0: a corrected re-emission caused by late ticks within the allowed lateness


class SignalKind(StrEnum):
    ARBITRAGE = "arbitrage"
    ANOMALY = "anomaly"
    CRASH = "crash"
    FORECAST = "forecast"


class AnomalyType(StrEnum):
    RETURN_ZSCORE = "return_zscore"
    VOLUME_SPIKE = "volume_spike"
    STALE_FEED = "stale_feed"
    CROSSED_MARKET = "crossed_market"
    TRADE_OUTSIDE_QUOTE = "trade_outside_quote"
    SEQUENCE_GAP = "sequence_gap"


class ArbitrageSignal(msgspec.Struct, frozen=True, tag="signal.arbitrage.v1", tag_field="type"):
    pair_id: str  # "<buy leg>/<sell leg>" as configured
    buy_instrument_id: str  # leg to buy (cheaper in canonical terms)
    sell_instrument_id: str
    state: str  # "open" when the edge opens, "close" when it closes
    gross_spread: int  # canonical currency per canonical unit, fixed point
    net_edge: int  # gross spread less configured costs, fixed point
    net_edge_bps: float
    canonical_unit: str
    canonical_currency: str
    ts_event: int
    ts_recv: int
    duration_ns: int = 0  # how long the edge has been open (on close: total)
    detail: str = ""  # why it opened / closed (e.g. "stale quote: USDINR.FX age 6000 ms > 5000 ms")


class AnomalySignal(msgspec.Struct, frozen=True, tag="signal.anomaly.v1", tag_field="type"):
    instrument_id: str
    anomaly: AnomalyType
    value: float
    threshold: float
    detail: str
    ts_event: int
    ts_recv: int


class CrashWarning(msgspec.Struct, frozen=True, tag="signal.crash.v1", tag_field="type"):
    instrument_id: str
    drawdown_pct: float  # positive number: 3.5 means the price fell 3.5 % from the window high
    window_ns: int
    volume_ratio: float  # window volume / baseline volume
    peak: int
    last: int
    source: str  # "rule" now; model-based warnings set their model name
    ts_event: int
    ts_recv: int


class Forecast(msgspec.Struct, frozen=True, tag="signal.forecast.v1", tag_field="type"):
    instrument_id: str
    horizon_ns: int
    predicted: int
    model: str
    ts_event: int
    ts_recv: int
    lower: int = 0
    upper: int = 0


Signal = ArbitrageSignal | AnomalySignal | CrashWarning | Forecast

SIGNAL_KIND: dict[type, SignalKind] = {
    ArbitrageSignal: SignalKind.ARBITRAGE,
    AnomalySignal: SignalKind.ANOMALY,
    CrashWarning: SignalKind.CRASH,
    Forecast: SignalKind.FORECAST,
}


def signal_kind(sig: Signal) -> SignalKind:
    return SIGNAL_KIND[type(sig)]


def signal_instrument(sig: Signal) -> str:
    return sig.pair_id if isinstance(sig, ArbitrageSignal) else sig.instrument_id


class Alert(msgspec.Struct, frozen=True, tag="alert.v1", tag_field="type"):
    alert_id: str  # deterministic: one alert per (subscriber, signal) so redelivery is idempotent
    subscriber_id: str
    signal: Signal
    ts_event: int
    ts_recv: int


class DeadLetter(msgspec.Struct, frozen=True, tag="deadletter.v1", tag_field="type"):
    """A rejected input, kept with the reason. `raw` holds the original bytes or a repr of the record."""

    source: str  # where it was rejected: "codec", "validate", "bars", ...
    reason: str  # machine-readable code: "malformed", "unknown_instrument", "nan_price", ...
    detail: str  # human-readable explanation
    raw: str
    ts_recv: int
    instrument_id: str = ""
    ts_event: int = 0


Tick = TradeTick | QuoteTick
Event = (
    TradeTick | QuoteTick | QuoteSample | Bar | ArbitrageSignal | AnomalySignal | CrashWarning | Forecast
    | Alert | DeadLetter
)
