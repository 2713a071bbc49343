"""Pre-trade risk: the market view orders are priced from, a volatility estimate, and the risk score.

Score of an order in [0, 1] = the largest of these utilisations, each computed on the state AFTER the order
(position + open orders + this order) and capped at 1:
    position    |lots| / max_position_lots                     (per instrument, RiskConfig.limits)
    notional    |lots| x mid x point value in USD / max_notional_usd
    total       gross USD notional over all instruments / max_total_notional_usd
    venue       gross USD notional over the order's venue / max_venue_notional_usd
    volatility  per-minute volatility (bps) of the instrument / max_vol_bps  (unknown_vol_score until known)
An order that reduces the absolute exposure of its instrument scores 0 (cutting risk is never held up).
Hard blocks (the order is rejected, not parked): kill switch, missing or stale quote (older than
stale_quote_ms in event time), missing FX rate for a non-USD instrument, and a position/notional/total/venue
utilisation above 1 for an order that increases exposure. Volatility never blocks: it only parks orders.
"""

from __future__ import annotations

import math
from collections import deque
from decimal import Decimal

import msgspec
import numpy as np

from market.events import Bar
from market.fixedpoint import PRICE_SCALE
from market.instruments import Registry
from market.timeutil import NS_PER_MS, NS_PER_S, parse_interval
from market.units import ConversionError, FxRates, UnitTable
from trading.config import RiskConfig
from trading.positions import PositionBook, point_value, usd_rate


class QuoteBoard:
    """Last valid top of book per instrument (registry index), in event time.

    A quote replaces the current one only if its ts_event is not older (late quotes never roll the market
    back) and it is not crossed or locked (bid >= ask is not a tradable market; the old quote stays and ages).
    """

    def __init__(self, registry: Registry) -> None:
        n = len(registry)
        self.registry = registry
        self.bid = np.zeros(n, np.int64)
        self.ask = np.zeros(n, np.int64)
        self.bid_size = np.zeros(n, np.int64)
        self.ask_size = np.zeros(n, np.int64)
        self.ts = np.full(n, np.iinfo(np.int64).min, np.int64)
        self.valid = np.zeros(n, bool)

    def update(self, i: int, bid: int, ask: int, bid_size: int, ask_size: int, ts_event: int) -> bool:
        if bid >= ask or (self.valid[i] and ts_event < self.ts[i]):
            return False
        self.bid[i], self.ask[i], self.bid_size[i], self.ask_size[i], self.ts[i] = bid, ask, bid_size, ask_size, \
            ts_event
        self.valid[i] = True
        return True

    def update_many(self, inst: np.ndarray, bid: np.ndarray, ask: np.ndarray, bid_size: np.ndarray,
                    ask_size: np.ndarray, ts: np.ndarray) -> None:
        """Same result as calling update() row by row (rows in delivery order)."""
        ok = bid < ask
        if not ok.all():
            inst, bid, ask, bid_size, ask_size, ts = (a[ok] for a in (inst, bid, ask, bid_size, ask_size, ts))
        if not inst.shape[0]:
            return
        # per instrument: the newest ts_event, the last delivered among equal ones
        order = np.lexsort((np.arange(inst.shape[0]), ts, inst))
        last = order[np.r_[inst[order][1:] != inst[order][:-1], True]]
        i = inst[last]
        take = ~self.valid[i] | (ts[last] >= self.ts[i])
        last, i = last[take], i[take]
        self.bid[i], self.ask[i], self.bid_size[i], self.ask_size[i], self.ts[i] = (
            bid[last], ask[last], bid_size[last], ask_size[last], ts[last])
        self.valid[i] = True

    def has(self, i: int) -> bool:
        return bool(self.valid[i])

    def mid(self, i: int) -> Decimal | None:
        """Exact mid in fixed-point units."""
        return Decimal(int(self.bid[i]) + int(self.ask[i])) / 2 if self.valid[i] else None

    def age_ns(self, i: int, now_ns: int) -> int | None:
        return now_ns - int(self.ts[i]) if self.valid[i] else None

    def fx_rates(self, units: UnitTable) -> FxRates:
        """Currency -> units per USD from the last quote of each FX instrument (exact mid), stale or not."""
        out: FxRates = {}
        for ccy, iid in units.fx_instruments.items():
            i = self.registry.index_of(iid)
            if i >= 0 and self.valid[i]:
                out[ccy] = Decimal(int(self.bid[i]) + int(self.ask[i])) / (2 * PRICE_SCALE)
        return out


class VolatilityTracker:
    """Per-instrument close-to-close returns of first-emission bars of one interval, in a rolling window."""

    def __init__(self, config: RiskConfig) -> None:
        self.config = config
        self.interval_ns = parse_interval(config.vol_bar_interval)
        self._per_min = math.sqrt(60 * NS_PER_S / self.interval_ns)
        self._last: dict[str, int] = {}
        self._returns: dict[str, deque[float]] = {}

    def on_bar(self, bar: Bar) -> None:
        if bar.interval_ns != self.interval_ns or bar.revision:
            return
        prev = self._last.get(bar.instrument_id)
        self._last[bar.instrument_id] = bar.close
        if prev is None or prev == 0:
            return
        q = self._returns.get(bar.instrument_id)
        if q is None:
            q = self._returns[bar.instrument_id] = deque(maxlen=self.config.vol_window_bars)
        q.append((bar.close - prev) / abs(prev))

    def vol_bps_per_min(self, instrument_id: str) -> float | None:
        q = self._returns.get(instrument_id)
        if q is None or len(q) < self.config.min_vol_bars:
            return None
        mean = sum(q) / len(q)
        var = sum((r - mean) ** 2 for r in q) / (len(q) - 1)
        return math.sqrt(var) * self._per_min * 1e4


class RiskAssessment(msgspec.Struct, frozen=True, kw_only=True):
    score: float  # in [0, 1]
    components: dict[str, float]  # utilisation per component (0 when not applicable)
    increases_risk: bool
    blocked: str = ""  # non-empty: the order must not be sent (why)


COMPONENTS = ("position", "notional", "total", "venue", "volatility")


class RiskEngine:
    def __init__(self, config: RiskConfig, registry: Registry, units: UnitTable, board: QuoteBoard,
                 vol: VolatilityTracker) -> None:
        self.config = config
        self.registry = registry
        self.units = units
        self.board = board
        self.vol = vol
        self._pv = {i.id: point_value(i, units) / PRICE_SCALE for i in registry}
        self._stale_ns = config.stale_quote_ms * NS_PER_MS

    def quote_problem(self, instrument_id: str, now_ns: int) -> str:
        """Why this instrument cannot be priced now ('' if it can): no quote, stale quote, no/stale FX."""
        inst = self.registry.get(instrument_id)
        age = self.board.age_ns(inst.index, now_ns)
        if age is None:
            return f"no quote for {instrument_id}"
        if age > self._stale_ns:
            return f"stale quote: {instrument_id} age {age / 1e6:.0f} ms > {self.config.stale_quote_ms} ms"
        fx_inst = self.units.fx_instruments.get(inst.price_currency)
        if inst.price_currency != "USD" and fx_inst is not None:
            fx_age = self.board.age_ns(self.registry.index_of(fx_inst), now_ns)
            if fx_age is None:
                return f"no FX rate for {inst.price_currency} ({fx_inst})"
            if fx_age > self._stale_ns:
                return f"stale FX rate: {fx_inst} age {fx_age / 1e6:.0f} ms > {self.config.stale_quote_ms} ms"
        return ""

    def usd_notional(self, instrument_id: str, lots: int, fx: FxRates) -> Decimal:
        """|lots| x mid x point value in USD (0 without a quote)."""
        i = self.registry.index_of(instrument_id)
        mid = self.board.mid(i)
        if mid is None or lots == 0:
            return Decimal(0)
        return abs(lots * mid * self._pv[instrument_id] * usd_rate(self.registry.get(instrument_id), self.units, fx))

    def assess(self, instrument_id: str, signed_qty: int, now_ns: int, positions: PositionBook,
               open_qty: dict[str, int], killed: str = "") -> RiskAssessment:
        """Risk of adding signed_qty lots of instrument_id, given positions and the signed open quantity of
        working orders per instrument."""
        zero = dict.fromkeys(COMPONENTS, 0.0)
        if killed:
            return RiskAssessment(score=1.0, components=zero, increases_risk=True, blocked=f"kill switch: {killed}")
        problem = self.quote_problem(instrument_id, now_ns)
        before = positions.qty(instrument_id) + open_qty.get(instrument_id, 0)
        after = before + signed_qty
        increases = abs(after) > abs(before)
        if problem:
            return RiskAssessment(score=1.0, components=zero, increases_risk=increases, blocked=problem)
        fx = self.board.fx_rates(self.units)
        inst = self.registry.get(instrument_id)
        limits = self.config.limits_for(instrument_id)
        try:
            exposure = {iid: self.usd_notional(iid, positions.qty(iid) + open_qty.get(iid, 0), fx)
                        for iid in sorted(set(positions.instruments()) | set(open_qty)) if iid != instrument_id}
            exposure[instrument_id] = self.usd_notional(instrument_id, after, fx)
        except ConversionError as err:
            return RiskAssessment(score=1.0, components=zero, increases_risk=increases, blocked=f"no FX: {err}")
        venue = sum((v for iid, v in exposure.items() if self.registry.get(iid).venue == inst.venue), Decimal(0))
        vol = self.vol.vol_bps_per_min(instrument_id)
        comps = {
            "position": abs(after) / limits.max_position_lots,
            "notional": float(exposure[instrument_id]) / limits.max_notional_usd,
            "total": float(sum(exposure.values(), Decimal(0))) / self.config.max_total_notional_usd,
            "venue": float(venue) / self.config.max_venue_notional_usd,
            "volatility": self.config.unknown_vol_score if vol is None else vol / self.config.max_vol_bps,
        }
        if not increases:
            return RiskAssessment(score=0.0, components={k: min(v, 1.0) for k, v in comps.items()},
                                  increases_risk=False)
        over = [k for k in COMPONENTS[:4] if comps[k] > 1.0]
        capped = {k: min(v, 1.0) for k, v in comps.items()}
        blocked = "limit: " + ", ".join(f"{k} {comps[k]:.2f} x limit" for k in over) if over else ""
        return RiskAssessment(score=max(capped.values()), components=capped, increases_risk=True, blocked=blocked)
