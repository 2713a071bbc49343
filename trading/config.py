"""Configuration of the trade module and the backtester: one frozen struct per component, units in names."""

from __future__ import annotations

from typing import Literal

import msgspec

from jobs.pipeline import PipelineConfig
from market.config import Config
from market.timeutil import parse_interval


class InstrumentLimits(Config, frozen=True):
    max_position_lots: int = 50  # |position| after the order, in contracts
    max_notional_usd: float = 5_000_000.0  # |position| x mid x point value, in USD

    def __post_init__(self) -> None:
        if self.max_position_lots <= 0 or self.max_notional_usd <= 0:
            raise ValueError("instrument limits must be > 0")


class RiskConfig(Config, frozen=True):
    """Risk score in [0, 1] = the largest utilisation of the limits below (see trading/risk.py)."""

    auto_threshold: float = 0.8  # score < this executes automatically; otherwise the order waits for approval
    stale_quote_ms: int = 2000  # no order is priced or sent on a quote older than this (event time)
    max_total_notional_usd: float = 20_000_000.0  # gross over every instrument
    max_venue_notional_usd: float = 10_000_000.0  # gross over the instruments of one venue
    default_limits: InstrumentLimits = msgspec.field(default_factory=InstrumentLimits)
    limits: dict[str, InstrumentLimits] = {}  # instrument id -> limits overriding default_limits
    vol_bar_interval: str = "1s"  # bars the volatility estimate is computed from
    vol_window_bars: int = 120
    min_vol_bars: int = 20  # fewer returns than this: volatility is unknown and scores unknown_vol_score
    max_vol_bps: float = 150.0  # per-minute volatility that scores 1.0 (volatility parks orders, never rejects)
    unknown_vol_score: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 < self.auto_threshold <= 1.0:
            raise ValueError("auto_threshold must be in (0, 1]")
        if self.stale_quote_ms < 0 or self.vol_window_bars < 2 or not 2 <= self.min_vol_bars <= self.vol_window_bars:
            raise ValueError("need stale_quote_ms >= 0 and 2 <= min_vol_bars <= vol_window_bars")
        if min(self.max_total_notional_usd, self.max_venue_notional_usd, self.max_vol_bps) <= 0:
            raise ValueError("notional and volatility limits must be > 0")
        if not 0.0 <= self.unknown_vol_score <= 1.0:
            raise ValueError("unknown_vol_score must be in [0, 1]")
        parse_interval(self.vol_bar_interval)

    def limits_for(self, instrument_id: str) -> InstrumentLimits:
        return self.limits.get(instrument_id, self.default_limits)


class ExecutionConfig(Config, frozen=True):
    # aggressive: IOC limit at the far touch +- slippage_ticks (takes liquidity);
    # passive: limit at the near touch, queues behind the displayed size, re-priced after passive_timeout_ms
    style: Literal["aggressive", "passive"] = "aggressive"
    slippage_ticks: int = 1
    retry_ms: int = 1000  # an instrument off its target is re-checked this often
    max_retry_ms: int = 60_000  # consecutive risk rejections back off exponentially up to this
    passive_timeout_ms: int = 5000

    def __post_init__(self) -> None:
        if self.slippage_ticks < 0 or self.retry_ms <= 0 or self.max_retry_ms < self.retry_ms:
            raise ValueError("need slippage_ticks >= 0 and 0 < retry_ms <= max_retry_ms")
        if self.passive_timeout_ms <= 0:
            raise ValueError("passive_timeout_ms must be > 0")


class ArbitrageStrategyConfig(Config, frozen=True):
    notional_usd: float = 1_000_000.0  # per leg; both legs hold about the same canonical quantity
    min_net_edge_bps: float = 0.0  # opens weaker than this are ignored (the pipeline's entry_bps applies first)

    def __post_init__(self) -> None:
        if self.notional_usd <= 0:
            raise ValueError("notional_usd must be > 0")


class CrashStrategyConfig(Config, frozen=True):
    mode: Literal["flat", "short"] = "short"  # flat: only cut long positions; short: also go short
    short_notional_usd: float = 500_000.0
    cooldown_s: int = 300  # back to flat this long after the warning (a new warning restarts it)

    def __post_init__(self) -> None:
        if self.short_notional_usd <= 0 or self.cooldown_s <= 0:
            raise ValueError("short_notional_usd and cooldown_s must be > 0")


class TradeConfig(Config, frozen=True):
    risk: RiskConfig = msgspec.field(default_factory=RiskConfig)
    execution: ExecutionConfig = msgspec.field(default_factory=ExecutionConfig)
    arbitrage: ArbitrageStrategyConfig = msgspec.field(default_factory=ArbitrageStrategyConfig)
    crash: CrashStrategyConfig = msgspec.field(default_factory=CrashStrategyConfig)


class VenueConfig(Config, frozen=True):
    fee_bps: float = 0.0  # exchange fee on each fill's notional, in the instrument's quote currency
    expected_orders: int = 256  # initial capacity of each book

    def __post_init__(self) -> None:
        if self.fee_bps < 0:
            raise ValueError("fee_bps must be >= 0")


class BacktestConfig(Config, frozen=True):
    trade: TradeConfig = msgspec.field(default_factory=TradeConfig)
    pipeline: PipelineConfig = msgspec.field(default_factory=PipelineConfig)
    venue: VenueConfig = msgspec.field(default_factory=VenueConfig)
    # parked orders (risk score >= auto_threshold): a simulated human approves or rejects them after a delay
    approval: Literal["approve", "reject"] = "approve"
    approval_delay_ms: int = 5000
    batch_rows: int = 65_536  # pipeline batch size (outputs do not depend on it)
    sample_s: int = 60  # equity sampling period (Sharpe is computed from per-sample P&L)
    mark_ms: int = 1000  # while a position is open, the equity curve (chart, drawdown) is also marked this often

    def __post_init__(self) -> None:
        if self.approval_delay_ms < 0 or self.batch_rows <= 0 or self.sample_s <= 0 or self.mark_ms <= 0:
            raise ValueError("need approval_delay_ms >= 0 and batch_rows, sample_s, mark_ms > 0")
