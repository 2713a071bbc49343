"""Named strategies: signals in, target positions (lots per instrument) out.

A strategy never sends orders: the trade module (trading/orders.py) moves positions toward the combined
target through risk checks. Strategies are applied in order, each transforming the target map of the ones
before it, so an overlay (crash) can override what an earlier strategy (arbitrage) wants:

  arbitrage  on an open ArbitrageSignal: long the buy leg, short the sell leg, sized to about
             ArbitrageStrategyConfig.notional_usd per leg with equal canonical quantity (e.g. troy oz) on both
             legs; on the matching close signal: both legs back to zero (unwind). Adds to the incoming targets.
  crash      on a CrashWarning for an instrument: mode "short" sets its target to short about
             short_notional_usd; mode "flat" caps it at zero (longs are cut, shorts kept). Back to the incoming
             target cooldown_s after the warning (a new warning restarts the cooldown).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Protocol

from market.events import ArbitrageSignal, CrashWarning, Signal
from market.instruments import Registry
from market.timeutil import NS_PER_S
from market.units import ConversionError, UnitTable
from trading.config import ArbitrageStrategyConfig, CrashStrategyConfig, TradeConfig
from trading.positions import canonical_per_lot, point_value, usd_rate
from trading.risk import QuoteBoard


class Sizer:
    """Turns money into lots at the current mid (board) and FX."""

    def __init__(self, registry: Registry, units: UnitTable, board: QuoteBoard) -> None:
        self.registry = registry
        self.units = units
        self.board = board

    def usd_per_lot(self, instrument_id: str) -> Decimal | None:
        inst = self.registry.get(instrument_id)
        mid = self.board.mid(inst.index)
        if mid is None or mid == 0:
            return None
        try:
            rate = usd_rate(inst, self.units, self.board.fx_rates(self.units))
        except ConversionError:
            return None
        return abs(mid / 10**9 * point_value(inst, self.units) * rate)

    def lots_for_usd(self, instrument_id: str, usd: float) -> int | None:
        per_lot = self.usd_per_lot(instrument_id)
        if per_lot is None:
            return None
        return max(1, int((Decimal(str(usd)) / per_lot).to_integral_value(ROUND_HALF_EVEN)))

    def hedge_lots(self, buy_id: str, sell_id: str, usd: float) -> tuple[int, int] | None:
        """Lots of each leg holding about `usd` of the buy leg in the same canonical quantity on both legs."""
        buy_lots = self.lots_for_usd(buy_id, usd)
        if buy_lots is None or self.usd_per_lot(sell_id) is None:
            return None
        qty = buy_lots * canonical_per_lot(self.registry.get(buy_id), self.units)
        sell_lots = qty / canonical_per_lot(self.registry.get(sell_id), self.units)
        return buy_lots, max(1, int(sell_lots.to_integral_value(ROUND_HALF_EVEN)))


class Strategy(Protocol):
    name: str

    def on_signal(self, signal: Signal, now_ns: int, sizer: Sizer) -> bool:
        """Feed a signal; True when the strategy's targets changed."""
        ...

    def on_timer(self, now_ns: int) -> bool:
        ...

    def next_wakeup(self) -> int | None:
        ...

    def apply(self, targets: dict[str, int]) -> dict[str, int]:
        """The target map after this strategy (input: the targets of the strategies before it)."""
        ...


@dataclass
class Episode:
    pair_id: str
    legs: dict[str, int]  # instrument -> signed lots
    opened_ns: int
    net_edge_bps: float


@dataclass
class ArbitrageStrategy:
    config: ArbitrageStrategyConfig
    name: str = "arbitrage"
    open: dict[str, Episode] = field(default_factory=dict)  # pair_id -> episode
    skipped: list[str] = field(default_factory=list)  # why an open signal was not traded

    def on_signal(self, signal: Signal, now_ns: int, sizer: Sizer) -> bool:
        if not isinstance(signal, ArbitrageSignal):
            return False
        if signal.state == "close":
            return self.open.pop(signal.pair_id, None) is not None
        if signal.state != "open" or signal.pair_id in self.open:
            return False
        if signal.net_edge_bps < self.config.min_net_edge_bps:
            self.skipped.append(f"{signal.pair_id}: edge {signal.net_edge_bps:.2f} bps < "
                                f"{self.config.min_net_edge_bps} bps")
            return False
        lots = sizer.hedge_lots(signal.buy_instrument_id, signal.sell_instrument_id, self.config.notional_usd)
        if lots is None:
            self.skipped.append(f"{signal.pair_id}: no price to size the legs")
            return False
        self.open[signal.pair_id] = Episode(
            signal.pair_id, {signal.buy_instrument_id: lots[0], signal.sell_instrument_id: -lots[1]}, now_ns,
            signal.net_edge_bps)
        return True

    def on_timer(self, now_ns: int) -> bool:
        return False

    def next_wakeup(self) -> int | None:
        return None

    def apply(self, targets: dict[str, int]) -> dict[str, int]:
        out = dict(targets)
        for ep in self.open.values():
            for iid, lots in ep.legs.items():
                out[iid] = out.get(iid, 0) + lots
        return out


@dataclass
class CrashStrategy:
    config: CrashStrategyConfig
    name: str = "crash"
    active: dict[str, tuple[int, int]] = field(default_factory=dict)  # instrument -> (until_ns, short lots)

    def on_signal(self, signal: Signal, now_ns: int, sizer: Sizer) -> bool:
        if not isinstance(signal, CrashWarning):
            return False
        lots = 0
        if self.config.mode == "short":
            sized = sizer.lots_for_usd(signal.instrument_id, self.config.short_notional_usd)
            if sized is None:  # cannot size a short: still cut longs
                sized = 0
            lots = sized
        prev = self.active.get(signal.instrument_id)
        self.active[signal.instrument_id] = (now_ns + self.config.cooldown_s * NS_PER_S, lots)
        return prev is None or prev[1] != lots

    def on_timer(self, now_ns: int) -> bool:
        done = [iid for iid, (until, _) in self.active.items() if until <= now_ns]
        for iid in done:
            del self.active[iid]
        return bool(done)

    def next_wakeup(self) -> int | None:
        return min((until for until, _ in self.active.values()), default=None)

    def apply(self, targets: dict[str, int]) -> dict[str, int]:
        out = dict(targets)
        for iid, (_, lots) in self.active.items():
            out[iid] = min(out.get(iid, 0), 0) if self.config.mode == "flat" else -lots
        return out


STRATEGY_NAMES = ("arbitrage", "crash")


def make_strategies(names: str | list[str] | tuple[str, ...], config: TradeConfig) -> list[Strategy]:
    """'arbitrage', 'crash' or a comma-separated list ('arbitrage,crash': crash overlays arbitrage)."""
    items = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
    out: list[Strategy] = []
    for n in items:
        if n == "arbitrage":
            out.append(ArbitrageStrategy(config.arbitrage))
        elif n == "crash":
            out.append(CrashStrategy(config.crash))
        else:
            raise ValueError(f"unknown strategy {n!r}; known: {', '.join(STRATEGY_NAMES)}")
    if not out or len(set(items)) != len(items):
        raise ValueError(f"need one or more distinct strategies, got {names!r}")
    return out
