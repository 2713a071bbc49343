"""Simulator configuration: one frozen SimConfig with a scenario config holding every scenario's parameters.

Scenario timings are fractions of an "episode": the whole run when `duration_s > 0`, else one `cycle_s`
period of an endless live run (scenarios then repeat every cycle).
"""

from __future__ import annotations

import msgspec

from market.config import Config

DEFAULT_START_NS = 1_767_571_200_000_000_000  # 2026-01-05T00:00:00Z

SCENARIOS: tuple[str, ...] = ("calm", "crash", "spike", "arbitrage", "stale", "crossed", "dirty")


class CommodityParams(Config, frozen=True):
    """The canonical "world" price path of one commodity (canonical currency per canonical unit)."""

    commodity: str
    start_price: float
    vol_annual_pct: float  # GBM volatility, percent per sqrt(year)


DEFAULT_COMMODITIES: tuple[CommodityParams, ...] = (
    CommodityParams(commodity="gold", start_price=2650.0, vol_annual_pct=15.0),
    CommodityParams(commodity="crude_oil", start_price=72.0, vol_annual_pct=35.0),  # WTI; Brent via link basis
    CommodityParams(commodity="cotton", start_price=0.70, vol_annual_pct=22.0),
    CommodityParams(commodity="sugar", start_price=0.20, vol_annual_pct=30.0),
    CommodityParams(commodity="coffee", start_price=3.20, vol_annual_pct=35.0),
    CommodityParams(commodity="wheat", start_price=5.50, vol_annual_pct=28.0),
    CommodityParams(commodity="fx_usdinr", start_price=84.0, vol_annual_pct=4.0),
)


class CrashScenario(Config, frozen=True):
    commodity: str = "crude_oil"  # every venue of it falls together
    at_frac: float = 0.4
    drop_pct: float = 8.0  # total fall of the world price
    fall_s: float = 60.0
    vol_mult: float = 3.0  # volatility multiplier from the start of the fall until 30 s after it
    trade_rate_mult: float = 5.0  # trade count (and, at unchanged sizes, volume) during the fall
    quote_rate_mult: float = 3.0
    trade_size_mult: float = 1.0
    sell_prob: float = 0.8  # share of seller-initiated trades during the fall
    recover_frac: float = 0.25  # endless runs only: recover over the last part of each cycle


class SpikeScenario(Config, frozen=True):
    instrument: str = "KC.ICE"
    at_frac: float = 0.5
    jump_pct: float = 4.0
    revert_tau_s: float = 8.0  # e-folding time of the reversion


class ArbitrageScenario(Config, frozen=True):
    link: str = "GOLD:COMEX-MCX"
    at_frac: float = 0.3
    dislocation_bps: float = 100.0  # leg_b moves this far from its fair value (positive: leg_b rich)
    duration_s: float = 90.0


class StaleScenario(Config, frozen=True):
    venue: str = "MCX"
    at_frac: float = 0.5
    silence_s: float = 30.0


class CrossedScenario(Config, frozen=True):
    instrument: str = "CL.NYMEX"
    at_frac: float = 0.6
    count: int = 5
    spacing_s: float = 1.0


class DirtyScenario(Config, frozen=True):
    duplicate_pct: float = 1.0  # rows re-delivered with the same seq
    out_of_order_pct: float = 2.0  # rows whose ts_event is moved back (delivery order kept)
    out_of_order_max_ms: int = 1000
    late_count: int = 3  # per episode: rows whose ts_event is late_min_s..2*late_min_s in the past
    late_min_s: float = 30.0
    malformed_count: int = 4  # undecodable raw messages
    nan_count: int = 3
    negative_size_count: int = 3
    unknown_count: int = 3
    unknown_instrument: str = "XX.NOWHERE"
    gap_count: int = 2  # skipped seq numbers


class ScenarioConfig(Config, frozen=True):
    crash: CrashScenario = CrashScenario()
    spike: SpikeScenario = SpikeScenario()
    arbitrage: ArbitrageScenario = ArbitrageScenario()
    stale: StaleScenario = StaleScenario()
    crossed: CrossedScenario = CrossedScenario()
    dirty: DirtyScenario = DirtyScenario()


class SimConfig(Config, frozen=True):
    scenarios: tuple[str, ...] = ("calm",)
    seed: int = 0
    duration_s: float = 60.0  # <= 0: endless (live streams only)
    start_ns: int = DEFAULT_START_NS
    instruments: tuple[str, ...] = ()  # empty: every instrument of the registry
    rate_scale: float = 1.0  # multiplies every arrival rate
    quote_rate_hz: float = 10.0  # mean per instrument (before the intraday profile)
    trade_rate_hz: float = 3.0
    step_ms: int = 50  # price path and intensity grid
    block_s: int = 60  # generation chunk; part of the definition of the output
    cycle_s: float = 600.0  # scenario period of endless runs
    common_factor: float = 0.2  # correlation of every commodity with one global factor
    basis_noise_bps: float = 2.0  # stationary sd of each link leg_b's deviation from fair value (clipped at 3 sd)
    basis_tau_s: float = 10.0  # mean-reversion time of that deviation
    latency_median_us: int = 1000
    latency_min_us: int = 200
    latency_max_us: int = 5000
    commodities: tuple[CommodityParams, ...] = DEFAULT_COMMODITIES
    scenario: ScenarioConfig = ScenarioConfig()

    def __post_init__(self) -> None:
        unknown = [s for s in self.scenarios if s not in SCENARIOS]
        if unknown:
            raise ValueError(f"unknown scenario(s) {unknown}; valid: {', '.join(SCENARIOS)}")
        if self.rate_scale <= 0 or self.quote_rate_hz < 0 or self.trade_rate_hz < 0:
            raise ValueError("rates must be >= 0 and rate_scale > 0")
        if self.step_ms <= 0 or self.block_s <= 0 or (self.block_s * 1000) % self.step_ms:
            raise ValueError("step_ms and block_s must be positive and block_s a multiple of step_ms")
        if self.cycle_s <= 0:
            raise ValueError("cycle_s must be positive")
        if not 0 < self.latency_min_us <= self.latency_median_us <= self.latency_max_us:
            raise ValueError("need 0 < latency_min_us <= latency_median_us <= latency_max_us")
        if not 0 <= self.common_factor < 1:
            raise ValueError("common_factor must be in [0, 1)")

    @property
    def endless(self) -> bool:
        return self.duration_s <= 0

    @property
    def episode_s(self) -> float:
        return self.cycle_s if self.endless else self.duration_s

    def has(self, scenario: str) -> bool:
        return scenario in self.scenarios

    def replace(self, **changes: object) -> SimConfig:
        """A copy with fields changed (validated again)."""
        return msgspec.structs.replace(self, **changes)
