"""The trade module running live: a TradeModule and simulated venues fed by the pipeline, and what the API calls.

Event time, like the backtester (trading/backtest.py): the service's clock is the largest ts_event of the ticks
and signals it has seen, never the wall clock. Every input runs at the clock when it arrives; module timers
(retries, passive re-pricing, crash cooldown) and order arrivals at the venue (`latency_ms` after the decision)
fire as the clock passes them, timers before arrivals at equal times. Market rows replay through the venue
(queue-position model of trading/venue.py) up to each pending event, so a timer at t sees every row with clock
<= t, and a fill is answered before the market moves on. Human actions (approve, reject, kill, resume) happen
at the current clock: approving when the feed has gone quiet is refused on a stale quote, as it should be.

Differences from the backtest, all from being live: `on_batch` applies a micro-batch's market data before the
bars and signals it produced, so a signal is acted on at the end of its batch (~50 ms in the demo) with the
batch's last quotes, where the backtest acts at the exact row that emitted it; and the embedded engine only
hands sinks its conflated ticks (last trade and quote per instrument per batch), so resting orders see fewer
tape trades than in a replay (`on_columns` takes every row when a runtime has them).

Thread and loop safety: every public method takes one re-entrant lock, so the service may be driven from any
thread. In the embedded demo both the engine (through commodex.embedded.trading_sink) and the HTTP routes call
it on the event loop thread, so the lock is never contended there; each call does work proportional to its
input (no I/O, no sleeping), which keeps the loop responsive.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from decimal import ROUND_HALF_EVEN, Decimal

import msgspec
import numpy as np

from market.columns import TickColumns
from market.config import Config
from market.events import Bar, QuoteTick, Signal, TradeTick
from market.fixedpoint import PRICE_SCALE
from market.instruments import Registry, default_registry
from market.timeutil import NS_PER_MS, to_iso
from market.units import ConversionError, UnitTable, default_units
from serving.services import InvalidQuery, NotFound, parse_limit
from serving.views import price_str
from trading.config import TradeConfig, VenueConfig
from trading.orders import TERMINAL, Order, OrderStatus, TradeModule, VenueCommand, VenueUpdate
from trading.positions import Fill, usd_rate
from trading.risk import QuoteBoard
from trading.strategies import Strategy, make_strategies
from trading.venue import SimVenue, VenueEvent

__all__ = ["LiveTradingConfig", "OrderConflict", "TradingService", "REASON_MAX_CHARS"]

log = logging.getLogger("commodex.trading")

REASON_MAX_CHARS = 200


class LiveTradingConfig(Config, frozen=True):
    trade: TradeConfig = msgspec.field(default_factory=TradeConfig)
    venue: VenueConfig = msgspec.field(default_factory=VenueConfig)
    latency_ms: int = 0  # event time from a decision to the simulated venue seeing it
    orders_limit_default: int = 100
    orders_limit_max: int = 1000
    audit_limit: int = 10_000  # the audit trail keeps this many newest entries in memory

    def __post_init__(self) -> None:
        if self.latency_ms < 0 or self.audit_limit < 1:
            raise ValueError("need latency_ms >= 0 and audit_limit >= 1")
        if not 1 <= self.orders_limit_default <= self.orders_limit_max:
            raise ValueError("need 1 <= orders_limit_default <= orders_limit_max")


class OrderConflict(ValueError):
    """A well-formed request the order's state does not allow, e.g. approving a filled order (HTTP 409)."""


# -- documents ----------------------------------------------------------------------------------------------------

class RiskView(msgspec.Struct, frozen=True):
    score: float
    components: dict[str, float]
    increases_risk: bool
    blocked: str


class OrderView(msgspec.Struct, frozen=True):
    order_id: int
    instrument: str
    side: str
    qty: int
    filled: int
    tif: str
    price: str | None  # limit, exact decimal; None until sent
    status: str
    approved: bool
    strategy: str
    risk: RiskView
    detail: str
    created_ns: int
    created_iso: str
    sent_ns: int | None
    done_ns: int | None


class KillSwitchView(msgspec.Struct, frozen=True):
    engaged: bool
    reason: str
    since_ns: int | None
    since_iso: str | None


class ApprovalsDoc(msgspec.Struct, frozen=True):
    as_of_ns: int  # the service's event-time clock
    auto_threshold: float  # orders scoring at or above this wait here
    kill_switch: KillSwitchView
    approvals: list[OrderView]


class OrdersDoc(msgspec.Struct, frozen=True):
    as_of_ns: int
    limit: int
    orders: list[OrderView]  # newest first


class PositionView(msgspec.Struct, frozen=True):
    """Money as exact-enough decimal strings (1e-6); `*_usd` converted at the FX of the moment."""

    instrument: str
    venue: str
    currency: str
    position: int  # lots, signed
    mark: str | None  # mid price the unrealised P&L is marked at
    realised: str  # quote currency, after fees
    unrealised: str
    fees: str
    pnl: str
    realised_usd: str
    unrealised_usd: str
    fees_usd: str
    pnl_usd: str
    turnover_usd: str
    fills: int


class TotalsView(msgspec.Struct, frozen=True):
    pnl_usd: str
    realised_usd: str
    unrealised_usd: str
    fees_usd: str
    fills: int


class PositionsDoc(msgspec.Struct, frozen=True):
    as_of_ns: int
    as_of_iso: str | None
    kill_switch: KillSwitchView
    positions: list[PositionView]
    totals: TotalsView


class AuditEntry(msgspec.Struct, frozen=True):
    at_ns: int  # wall clock of the action (UTC ns)
    ts_event: int  # the service's event-time clock when it took effect
    actor: str  # API key name
    action: str  # approve | reject | kill | resume
    order_id: int | None
    detail: str


class ControlDoc(msgspec.Struct, frozen=True):
    """Answer to kill/resume: the switch, and the orders the action touched (their status after it)."""

    kill_switch: KillSwitchView
    orders: list[OrderView]


_MICRO = Decimal("0.000001")


def money_str(x: Decimal) -> str:
    q = x.quantize(_MICRO, rounding=ROUND_HALF_EVEN)
    return "0" if not q else format(q.normalize(), "f")


def mark_str(mid: Decimal) -> str:
    """A mid in fixed-point units (possibly half a unit) as an exact decimal price."""
    return "0" if not mid else format((mid / PRICE_SCALE).normalize(), "f")


def order_view(o: Order) -> OrderView:
    r = o.risk
    return OrderView(
        order_id=o.order_id, instrument=o.instrument_id, side=o.side, qty=o.qty, filled=o.filled, tif=o.tif,
        price=None if o.price is None else price_str(o.price), status=o.status.value, approved=o.approved,
        strategy=o.strategy, risk=RiskView(round(r.score, 9), {k: round(v, 9) for k, v in r.components.items()},
                                           r.increases_risk, r.blocked),
        detail=o.detail, created_ns=o.created_ns, created_iso=to_iso(o.created_ns), sent_ns=o.sent_ns,
        done_ns=o.done_ns)


def clean_reason(text: str) -> str:
    """One line of human text: trimmed, 1..REASON_MAX_CHARS characters, no control characters."""
    t = " ".join(text.split())
    if not t:
        raise InvalidQuery("reason", "must not be empty")
    if len(t) > REASON_MAX_CHARS:
        raise InvalidQuery("reason", f"at most {REASON_MAX_CHARS} characters")
    if any(not ch.isprintable() for ch in t):
        raise InvalidQuery("reason", "control characters are not allowed")
    return t


# -- the service --------------------------------------------------------------------------------------------------

class TradingService:
    def __init__(self, strategies: str | Sequence[Strategy], config: LiveTradingConfig | None = None,
                 registry: Registry | None = None, units: UnitTable | None = None,
                 wall_clock: Callable[[], int] = time.time_ns) -> None:
        self.config = config or LiveTradingConfig()
        self.registry = registry or default_registry()
        self.units = units or default_units()
        strats = make_strategies(strategies, self.config.trade) if isinstance(strategies, str) else list(strategies)
        self.strategy = "+".join(s.name for s in strats)
        self.board = QuoteBoard(self.registry)  # shared: the venue updates it, the module prices from it
        self.module = TradeModule(self.config.trade, strats, self.registry, self.units, self.board)
        self.venue = SimVenue(self.registry, self.units, self.board, self.config.venue)
        self._latency_ns = self.config.latency_ms * NS_PER_MS
        self._wall = wall_clock
        self._lock = threading.RLock()
        self._now = 0
        self._arrivals: list[tuple[int, int, VenueCommand]] = []  # heap: (due, seq, command)
        self._seq = itertools.count()
        self._timer_floor = 0  # after a timer at t the next fires no earlier than t + 1 (no same-time loop)
        self._audit: list[AuditEntry] = []

    @property
    def now_ns(self) -> int:
        return self._now

    # -- pipeline inputs ------------------------------------------------------------------------------------

    def on_ticks(self, ticks: Sequence[TradeTick | QuoteTick]) -> None:
        """Ticks in delivery order (e.g. the engine's conflated last trade/quote per instrument)."""
        if ticks:
            self.on_columns(TickColumns.from_ticks(list(ticks), self.registry))

    def on_columns(self, cols: TickColumns) -> None:
        """Accepted rows in delivery order: replayed through the venue, pending events fired on the way."""
        with self._lock:
            known = cols.instrument >= 0
            if not known.all():
                cols = cols.take(known)
            n = len(cols)
            if not n:
                return
            clock = np.maximum.accumulate(np.maximum(cols.ts_event, self._now))
            lo = 0
            while lo < n:
                due = self._due()
                hi = n if due is None else int(np.searchsorted(clock, due, side="right"))
                if hi <= lo:
                    self._fire_next()  # an event due before row lo
                    continue
                events, lo = self.venue.advance(cols, lo, hi, clock, stop_on_fill=True)
                self._now = max(self._now, int(clock[lo - 1]))
                self._handle(events)  # a fill is answered before the market moves on
            self._settle()

    def on_bars(self, bars: Sequence[Bar]) -> None:
        """Volatility input only. Bars do not move the clock: an end-of-input flush emits bars whose ts_event
        (window end) lies beyond the data."""
        with self._lock:
            for b in bars:
                self.module.on_bar(b)  # the module keeps first emissions of its volatility interval

    def on_signals(self, signals: Sequence[Signal]) -> None:
        with self._lock:
            for s in signals:
                self._run_until(s.ts_event)
                self.module.on_signal(s, self._now)
                self._collect()
                self._settle()

    def on_batch(self, ticks: Sequence[TradeTick | QuoteTick], bars: Sequence[Bar], signals: Sequence[Signal]) -> None:
        """One engine batch: the market first, then the bars and signals it produced, at the batch's clock."""
        with self._lock:
            self.on_ticks(ticks)
            self.on_bars(bars)
            self.on_signals(signals)

    def advance_to(self, now_ns: int) -> None:
        """Move the clock without market data (a runtime's idle tick): due timers and arrivals fire."""
        with self._lock:
            self._run_until(now_ns)

    # -- human controls -------------------------------------------------------------------------------------

    def approve(self, order_id: int, actor: str) -> OrderView:
        with self._lock:
            self._parked(order_id)
            o = self.module.approve(order_id, self._now)
            self._audit_add(actor, "approve", order_id, o.detail if o.status == OrderStatus.REJECTED else "")
            self._collect()
            self._settle()  # with no latency the venue sees it now: the answer shows the fill
            log.info("order %d (%s %d %s) approved by %s: %s", o.order_id, o.side, o.qty, o.instrument_id, actor,
                     o.status.value)
            return order_view(o)

    def reject(self, order_id: int, actor: str, reason: str) -> OrderView:
        with self._lock:
            why = clean_reason(reason)
            self._parked(order_id)
            o = self.module.reject(order_id, self._now, f"rejected by {actor}: {why}")
            self._audit_add(actor, "reject", order_id, why)
            self._collect()
            self._settle()
            log.info("order %d rejected by %s: %s", order_id, actor, why)
            return order_view(o)

    def kill(self, actor: str, reason: str) -> ControlDoc:
        """Engage the kill switch: working orders are cancelled at the venue, parked ones rejected, new ones
        blocked until `resume`."""
        with self._lock:
            why = clean_reason(reason)
            touched = [o.order_id for o in self.module.orders.values() if o.status not in TERMINAL]
            self.module.kill(self._now, f"{why} (by {actor})")
            self._audit_add(actor, "kill", None, why)
            self._collect()
            self._settle()  # with no latency the cancels are confirmed before we answer
            log.warning("kill switch engaged by %s: %s", actor, why)
            return ControlDoc(self._kill_view(), [order_view(self.module.orders[i]) for i in touched])

    def resume(self, actor: str) -> ControlDoc:
        with self._lock:
            before = set(self.module.orders)
            self.module.resume(self._now)
            self._audit_add(actor, "resume", None, "")
            self._collect()
            self._settle()
            log.warning("kill switch released by %s", actor)
            new = sorted(set(self.module.orders) - before)
            return ControlDoc(self._kill_view(), [order_view(self.module.orders[i]) for i in new])

    # -- views ------------------------------------------------------------------------------------------------

    def approvals(self) -> ApprovalsDoc:
        with self._lock:
            return ApprovalsDoc(self._now, self.config.trade.risk.auto_threshold, self._kill_view(),
                                [order_view(o) for o in self.module.pending_approvals()])

    def orders(self, status: str | None = None, limit: int | None = None) -> OrdersDoc:
        if status is not None and status not in _STATUSES:
            raise InvalidQuery("status", f"{status!r} is not one of {', '.join(sorted(_STATUSES))}")
        n = parse_limit("limit", limit, self.config.orders_limit_default, self.config.orders_limit_max)
        with self._lock:
            picked: list[Order] = []
            for oid in sorted(self.module.orders, reverse=True):
                o = self.module.orders[oid]
                if status is None or o.status.value == status:
                    picked.append(o)
                    if len(picked) == n:
                        break
            return OrdersDoc(self._now, n, [order_view(o) for o in picked])

    def positions(self) -> PositionsDoc:
        with self._lock:
            fx = self.board.fx_rates(self.units)
            views: list[PositionView] = []
            tot = dict.fromkeys(("pnl", "realised", "unrealised", "fees"), Decimal(0))
            fills = 0
            for pos in self.module.positions:
                inst = pos.instrument
                try:
                    rate: Decimal | None = usd_rate(inst, self.units, fx)
                except ConversionError:
                    rate = None  # no FX yet: unrealised USD reads 0 (realised was converted when it happened)
                p = pos.pnl(self.board.mid(inst.index), rate)
                views.append(PositionView(
                    instrument=inst.id, venue=inst.venue, currency=p.currency, position=p.position,
                    mark=None if p.mark is None else mark_str(p.mark), realised=money_str(p.realised),
                    unrealised=money_str(p.unrealised), fees=money_str(p.fees), pnl=money_str(p.total),
                    realised_usd=money_str(p.realised_usd), unrealised_usd=money_str(p.unrealised_usd),
                    fees_usd=money_str(p.fees_usd), pnl_usd=money_str(p.total_usd),
                    turnover_usd=money_str(p.turnover_usd), fills=p.fills))
                tot["pnl"] += p.total_usd
                tot["realised"] += p.realised_usd
                tot["unrealised"] += p.unrealised_usd
                tot["fees"] += p.fees_usd
                fills += p.fills
            return PositionsDoc(
                self._now, to_iso(self._now) if self._now else None, self._kill_view(), views,
                TotalsView(money_str(tot["pnl"]), money_str(tot["realised"]), money_str(tot["unrealised"]),
                           money_str(tot["fees"]), fills))

    def audit(self, limit: int | None = None) -> list[AuditEntry]:
        """Human actions, newest first."""
        n = parse_limit("limit", limit, self.config.orders_limit_default, self.config.orders_limit_max)
        with self._lock:
            return self._audit[::-1][:n]

    def fills(self) -> list[Fill]:
        with self._lock:
            return list(self.module.fills)

    def summary(self) -> dict[str, object]:
        """For the engine's status document."""
        with self._lock:
            by_status = Counter(o.status.value for o in self.module.orders.values())
            return {"strategy": self.strategy, "clock_ns": self._now, "kill_switch": self.module.kill_switch.engaged,
                    "parked": by_status.get(OrderStatus.PARKED.value, 0), "orders_by_status": dict(sorted(
                        by_status.items())), "fills": len(self.module.fills)}

    # -- internals --------------------------------------------------------------------------------------------

    def _kill_view(self) -> KillSwitchView:
        k = self.module.kill_switch
        return KillSwitchView(k.engaged, k.reason, k.since_ns if k.engaged else None,
                              to_iso(k.since_ns) if k.engaged else None)

    def _parked(self, order_id: int) -> Order:
        o = self.module.orders.get(order_id)
        if o is None:
            raise NotFound(f"unknown order {order_id}")
        if o.status != OrderStatus.PARKED:
            raise OrderConflict(f"order {order_id} is {o.status.value}, not waiting for approval")
        return o

    def _audit_add(self, actor: str, action: str, order_id: int | None, detail: str) -> None:
        self._audit.append(AuditEntry(self._wall(), self._now, actor, action, order_id, detail))
        if len(self._audit) > self.config.audit_limit:
            del self._audit[: len(self._audit) - self.config.audit_limit]

    def _collect(self) -> None:
        """The module's venue commands reach the venue latency_ms after they were decided."""
        for cmd in self.module.drain():
            heapq.heappush(self._arrivals, (cmd.ts_event + self._latency_ns, next(self._seq), cmd))

    def _wake(self) -> int | None:
        w = self.module.next_wakeup()
        return None if w is None else max(w, self._timer_floor)

    def _due(self) -> int | None:
        w = self._wake()
        a = self._arrivals[0][0] if self._arrivals else None
        if w is None or a is None:
            return a if w is None else w
        return min(w, a)

    def _fire_next(self) -> None:
        """Run the earliest pending event (a timer before an arrival at the same time), never before the clock."""
        w = self._wake()
        a = self._arrivals[0][0] if self._arrivals else None
        if w is not None and (a is None or w <= a):
            t = self._now = max(w, self._now)
            self._timer_floor = t + 1
            self.module.on_timer(t)
        elif a is not None:
            _, _, cmd = heapq.heappop(self._arrivals)
            t = self._now = max(a, self._now)
            self._handle(self.venue.execute(cmd, t))
        self._collect()

    def _run_until(self, t: int) -> None:
        while (due := self._due()) is not None and due <= t:
            self._fire_next()
        self._now = max(self._now, t)

    def _settle(self) -> None:
        self._run_until(self._now)

    def _handle(self, events: list[VenueEvent]) -> None:
        for e in events:
            if isinstance(e, Fill):
                self.module.on_fill(e)
            elif isinstance(e, VenueUpdate):
                self.module.on_update(e)
        self._collect()


_STATUSES = frozenset(s.value for s in OrderStatus)
