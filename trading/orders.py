"""The trade module: strategy targets -> order intents -> risk -> venue commands; approvals and kill switch.

Logic only, no I/O and no clock: every call carries the event time `now_ns`. A runtime (the backtester, or a
live gateway) delivers signals, bars and venue reports, sends `drain()`'s commands to the venue, and calls
`on_timer()` at `next_wakeup()`.

Per instrument the module keeps at most one order in flight (parked, sent or working):
  target = strategies applied in order (trading/strategies.py); delta = target - position
  - a target change supersedes a parked order and cancels a working one (the new delta follows)
  - with nothing in flight and delta != 0: a new order for |delta| lots, scored by trading/risk.py:
      blocked (kill switch, stale/missing quote, hard limit) -> REJECTED, retried with exponential back-off
      score <  auto_threshold -> SENT (priced from the board now; the venue sees it after the runtime's latency)
      score >= auto_threshold -> PARKED until approve(order_id) / reject(order_id)
  - a filled order, or one we cancelled (target change, passive re-pricing after passive_timeout_ms), is
    followed at once by the next order for the remaining delta; an IOC rest or a venue reject by a re-check
    after retry_ms
A human rejection holds the instrument until its target changes (the same order is not asked for again).
The kill switch cancels every working order, rejects every parked one and blocks new ones until `resume()`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import msgspec

from market.events import Bar, Signal
from market.instruments import Registry, default_registry
from market.timeutil import NS_PER_MS
from market.units import UnitTable, default_units
from trading.config import TradeConfig
from trading.positions import Fill, PositionBook
from trading.risk import QuoteBoard, RiskAssessment, RiskEngine, VolatilityTracker
from trading.strategies import Sizer, Strategy


class OrderStatus(StrEnum):
    PARKED = "parked"  # waiting for human approval
    SENT = "sent"  # on its way to the venue
    WORKING = "working"  # resting at the venue
    FILLED = "filled"
    CANCELLED = "cancelled"  # IOC rest, our cancel, superseded or killed (see detail)
    REJECTED = "rejected"  # by risk, by a human, or by the venue (see detail)


TERMINAL = frozenset({OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED})


@dataclass(slots=True)
class Order:
    order_id: int
    instrument_id: str
    side: str  # "buy" | "sell"
    qty: int
    tif: str  # "ioc" (aggressive) | "day" (passive, rests)
    strategy: str
    created_ns: int
    risk: RiskAssessment
    status: OrderStatus
    price: int | None = None  # fixed-point limit, set when sent
    filled: int = 0
    approved: bool = False  # sent after a human approval
    sent_ns: int | None = None
    done_ns: int | None = None
    cancel_sent: bool = False
    detail: str = ""

    @property
    def signed_open(self) -> int:
        left = self.qty - self.filled
        return left if self.side == "buy" else -left

    @property
    def live(self) -> bool:
        return self.status in (OrderStatus.SENT, OrderStatus.WORKING)


class VenueCommand(msgspec.Struct, frozen=True, kw_only=True):
    action: str  # "new" | "cancel"
    order_id: int
    instrument_id: str
    ts_event: int  # decision time
    side: str = ""
    qty: int = 0
    price: int = 0  # fixed point, on the instrument's tick grid
    tif: str = ""


class VenueUpdate(msgspec.Struct, frozen=True, kw_only=True):
    """A venue's answer about one order (fills travel separately as trading.positions.Fill)."""

    order_id: int
    status: str  # "working" | "cancelled" | "rejected" | "cancel_rejected"
    ts_event: int
    detail: str = ""


class KillSwitch(msgspec.Struct, kw_only=True):
    engaged: bool = False
    reason: str = ""
    since_ns: int = 0


def round_to_grid(price: int, tick: int, side: str) -> int:
    """A limit price on the tick grid, rounded in the conservative direction: a buy never pays more than
    asked, a sell never receives less (down for buys, up for sells)."""
    q, r = divmod(price, tick)
    if r == 0:
        return price
    return q * tick if side == "buy" else (q + 1) * tick


class TradeModule:
    def __init__(self, config: TradeConfig, strategies: Sequence[Strategy], registry: Registry | None = None,
                 units: UnitTable | None = None, board: QuoteBoard | None = None) -> None:
        self.config = config
        self.strategies = list(strategies)
        self.registry = registry or default_registry()
        self.units = units or default_units()
        self.board = board or QuoteBoard(self.registry)
        self.vol = VolatilityTracker(config.risk)
        self.risk = RiskEngine(config.risk, self.registry, self.units, self.board, self.vol)
        self.sizer = Sizer(self.registry, self.units, self.board)
        self.positions = PositionBook(self.registry, self.units)
        self.kill_switch = KillSwitch()
        self.orders: dict[int, Order] = {}
        self.fills: list[Fill] = []
        self.signals_seen = 0
        self._outbox: list[VenueCommand] = []
        self._active: dict[str, int] = {}  # instrument -> its order in flight
        self._targets: dict[str, int] = {}
        self._retry_at: dict[str, int] = {}
        self._backoff_ms: dict[str, int] = {}
        self._held: dict[str, int] = {}  # instrument -> target a human rejected (no new order until it changes)
        self._next_id = 1
        self._retry_ns = config.execution.retry_ms * NS_PER_MS

    # -- inputs ---------------------------------------------------------------------------------------------

    def on_signal(self, signal: Signal, now_ns: int) -> None:
        self.signals_seen += 1
        changed = False
        for s in self.strategies:
            changed |= s.on_signal(signal, now_ns, self.sizer)
        if changed:
            self._retarget(now_ns)

    def on_bar(self, bar: Bar) -> None:
        self.vol.on_bar(bar)

    def on_timer(self, now_ns: int) -> None:
        changed = False
        for s in self.strategies:
            changed |= s.on_timer(now_ns)
        if changed:
            self._retarget(now_ns)
        timeout = self.config.execution.passive_timeout_ms * NS_PER_MS
        for oid in list(self._active.values()):
            o = self.orders[oid]
            if o.status == OrderStatus.WORKING and not o.cancel_sent and o.sent_ns is not None \
                    and now_ns - o.sent_ns >= timeout:
                self._cancel(o, now_ns)  # re-priced at the touch once the cancel is confirmed
        for iid in sorted(i for i, t in self._retry_at.items() if t <= now_ns):
            del self._retry_at[iid]
            self._reconcile(iid, now_ns)

    def on_fill(self, fill: Fill) -> None:
        o = self.orders[fill.order_id]
        self.positions.apply(fill)
        self.fills.append(fill)
        o.filled += fill.qty
        if o.filled > o.qty:
            raise ValueError(f"order {o.order_id} overfilled: {o.filled} > {o.qty}")
        if o.filled == o.qty:
            self._finish(o, OrderStatus.FILLED, fill.ts_event, "")

    def on_update(self, update: VenueUpdate) -> None:
        o = self.orders[update.order_id]
        if o.status in TERMINAL:
            return  # e.g. a cancel confirmation racing the last fill
        if update.status == "working":
            o.status = OrderStatus.WORKING
        elif update.status == "cancelled":
            self._finish(o, OrderStatus.CANCELLED, update.ts_event, update.detail)
        elif update.status == "rejected":
            self._finish(o, OrderStatus.REJECTED, update.ts_event, f"venue: {update.detail}")
        elif update.status == "cancel_rejected":
            o.cancel_sent = False
        else:
            raise ValueError(f"unknown venue update status {update.status!r}")

    # -- human controls ---------------------------------------------------------------------------------------

    def pending_approvals(self) -> list[Order]:
        return sorted((o for o in self.orders.values() if o.status == OrderStatus.PARKED), key=lambda o: o.order_id)

    def approve(self, order_id: int, now_ns: int) -> Order:
        """Send a parked order. Still refused (REJECTED) when the kill switch is on or its quote is stale."""
        o = self._parked(order_id)
        o.approved = True
        problem = f"kill switch: {self.kill_switch.reason}" if self.kill_switch.engaged else \
            self.risk.quote_problem(o.instrument_id, now_ns)
        if problem:
            self._finish(o, OrderStatus.REJECTED, now_ns, f"approved but not sent: {problem}")
        else:
            self._send(o, now_ns)
        return o

    def reject(self, order_id: int, now_ns: int, reason: str = "rejected by user") -> Order:
        o = self._parked(order_id)
        self._finish(o, OrderStatus.REJECTED, now_ns, reason)
        self._held[o.instrument_id] = self._targets.get(o.instrument_id, 0)
        return o

    def kill(self, now_ns: int, reason: str = "kill switch") -> None:
        self.kill_switch = KillSwitch(engaged=True, reason=reason, since_ns=now_ns)
        for oid in list(self._active.values()):
            o = self.orders[oid]
            if o.status == OrderStatus.PARKED:
                self._finish(o, OrderStatus.REJECTED, now_ns, f"kill switch: {reason}")
            elif o.live and not o.cancel_sent:
                self._cancel(o, now_ns)
        self._retry_at.clear()

    def resume(self, now_ns: int) -> None:
        self.kill_switch = KillSwitch()
        self._backoff_ms.clear()
        for iid in self._instruments():
            self._reconcile(iid, now_ns)

    # -- outputs ----------------------------------------------------------------------------------------------

    def drain(self) -> list[VenueCommand]:
        out, self._outbox = self._outbox, []
        return out

    def next_wakeup(self) -> int | None:
        times = [t for s in self.strategies if (t := s.next_wakeup()) is not None]
        times += self._retry_at.values()
        timeout = self.config.execution.passive_timeout_ms * NS_PER_MS
        times += [o.sent_ns + timeout for o in (self.orders[i] for i in self._active.values())
                  if o.status == OrderStatus.WORKING and not o.cancel_sent and o.sent_ns is not None]
        return min(times, default=None)

    def targets(self) -> dict[str, int]:
        return dict(self._targets)

    # -- internals --------------------------------------------------------------------------------------------

    def _instruments(self) -> list[str]:
        ids = set(self._targets) | set(self.positions.instruments()) | set(self._active)
        return [i for i in self.registry.ids if i in ids]

    def _retarget(self, now_ns: int) -> None:
        new: dict[str, int] = {}
        for s in self.strategies:
            new = s.apply(new)
        old, self._targets = self._targets, {k: v for k, v in new.items() if v}
        for iid in self.registry.ids:
            if old.get(iid, 0) == self._targets.get(iid, 0):
                continue
            self._held.pop(iid, None)
            self._backoff_ms.pop(iid, None)
            oid = self._active.get(iid)
            if oid is not None:
                o = self.orders[oid]
                if o.status == OrderStatus.PARKED:
                    self._finish(o, OrderStatus.CANCELLED, now_ns, "superseded: target changed")
                elif o.live and o.tif == "day" and not o.cancel_sent:  # an IOC in flight ends by itself
                    self._cancel(o, now_ns)
            self._reconcile(iid, now_ns)

    def _reconcile(self, iid: str, now_ns: int) -> None:
        if iid in self._active or self.kill_switch.engaged:
            return
        target = self._targets.get(iid, 0)
        if self._held.get(iid) == target:
            return
        delta = target - self.positions.qty(iid)
        if delta == 0:
            self._backoff_ms.pop(iid, None)
            return
        open_qty = {self.orders[i].instrument_id: self.orders[i].signed_open for i in self._active.values()}
        risk = self.risk.assess(iid, delta, now_ns, self.positions, open_qty)
        passive = self.config.execution.style == "passive"
        o = Order(order_id=self._next_id, instrument_id=iid, side="buy" if delta > 0 else "sell", qty=abs(delta),
                  tif="day" if passive else "ioc", strategy="+".join(s.name for s in self.strategies),
                  created_ns=now_ns, risk=risk, status=OrderStatus.PARKED)
        self._next_id += 1
        self.orders[o.order_id] = o
        if risk.blocked:
            o.status, o.done_ns, o.detail = OrderStatus.REJECTED, now_ns, f"risk: {risk.blocked}"
            self._schedule_retry(iid, now_ns, backoff=True)
            return
        self._active[iid] = o.order_id
        if risk.score < self.config.risk.auto_threshold:
            self._send(o, now_ns)
        else:
            o.detail = f"risk score {risk.score:.2f} >= auto threshold {self.config.risk.auto_threshold}"

    def _send(self, o: Order, now_ns: int) -> None:
        i = self.registry.index_of(o.instrument_id)
        tick = self.registry.get(o.instrument_id).tick_fixed
        ex = self.config.execution
        if ex.style == "passive":
            raw = int(self.board.bid[i]) if o.side == "buy" else int(self.board.ask[i])
        else:
            slip = ex.slippage_ticks * tick
            raw = int(self.board.ask[i]) + slip if o.side == "buy" else int(self.board.bid[i]) - slip
        o.price = round_to_grid(raw, tick, o.side)
        o.status, o.sent_ns = OrderStatus.SENT, now_ns
        self._active[o.instrument_id] = o.order_id
        self._outbox.append(VenueCommand(action="new", order_id=o.order_id, instrument_id=o.instrument_id,
                                         ts_event=now_ns, side=o.side, qty=o.qty, price=o.price, tif=o.tif))

    def _cancel(self, o: Order, now_ns: int) -> None:
        o.cancel_sent = True
        self._outbox.append(VenueCommand(action="cancel", order_id=o.order_id, instrument_id=o.instrument_id,
                                         ts_event=now_ns))

    def _finish(self, o: Order, status: OrderStatus, now_ns: int, detail: str) -> None:
        o.status, o.done_ns = status, now_ns
        if detail:
            o.detail = detail
        if self._active.get(o.instrument_id) == o.order_id:
            del self._active[o.instrument_id]
        if detail.startswith("superseded"):
            return  # _retarget reconciles right after
        if status == OrderStatus.FILLED or (status == OrderStatus.CANCELLED and o.cancel_sent):
            # done, or cancelled by us (target changed / passive re-price): the next order follows at once
            self._backoff_ms.pop(o.instrument_id, None)
            self._reconcile(o.instrument_id, now_ns)
        elif not self.kill_switch.engaged:
            self._schedule_retry(o.instrument_id, now_ns, backoff=status == OrderStatus.REJECTED)

    def _schedule_retry(self, iid: str, now_ns: int, backoff: bool) -> None:
        ex = self.config.execution
        wait = ex.retry_ms
        if backoff:
            wait = self._backoff_ms.get(iid, ex.retry_ms)
            self._backoff_ms[iid] = min(2 * wait, ex.max_retry_ms)
        t = now_ns + wait * NS_PER_MS
        self._retry_at[iid] = min(self._retry_at.get(iid, t), t)

    def _parked(self, order_id: int) -> Order:
        o = self.orders.get(order_id)
        if o is None:
            raise KeyError(f"unknown order {order_id}")
        if o.status != OrderStatus.PARKED:
            raise ValueError(f"order {order_id} is {o.status.value}, not parked")
        return o
