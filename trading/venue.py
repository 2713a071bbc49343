"""Simulated venues: one OrderBook per instrument, its liquidity rebuilt from the replayed quotes and trades.

Prices in the books are integer ticks of the instrument's tick size (BookConfig(tick_size=1)); fixed-point
prices convert with `market.fixedpoint.ticks_from_fixed`, off-grid quotes round outward (bid down, ask up:
never a better market than quoted). Three kinds of owner trade in a book:

  market maker (MM)  the displayed quote: resting orders at the quoted bid and ask for the quoted sizes
  tape               the replayed trades, as IOC orders that hit resting liquidity
  strategy           the trade module's orders

Queue-position model (what decides when a resting strategy order fills):
  - A strategy order joining a price level queues behind the MM size displayed there when it arrives.
  - Each quote re-syncs the MM orders: a side whose price changed is cancelled and re-placed at the new price
    (behind anything already resting there); at an unchanged price a larger size is added as a new MM order at
    the back of the queue (behind the strategy order), and a smaller size is taken off the BACK of the queue
    (MM orders that joined last first). Cancellations therefore never move a strategy order forward: only
    trades do (conservative).
  - A replayed trade at price p that could reach a resting strategy order (a sell of ours at or below p, a buy
    at or above p) is replayed as an IOC for the traded size at p: it consumes, in price-time priority, the MM
    liquidity at better prices and ahead in the queue first, then the strategy order.
  - A quote whose price moves through a resting strategy order (a new bid at or above our ask) fills it at its
    limit price, up to the new quote's size.
  - A strategy order that arrives marketable takes the displayed size at the touch (one level is known: the
    rest of an IOC is cancelled, the rest of a day order rests). The next quote restores the displayed size:
    the replayed market does not react to our trades (no market impact beyond the displayed size).
Instruments without a resting strategy order are not replayed through their book (only the quote board is
updated, vectorised); their book is re-synced from the board when an order arrives.
"""

from __future__ import annotations

from decimal import Decimal

import numpy as np

from market.columns import KIND_QUOTE, KIND_TRADE, TickColumns
from market.fixedpoint import PRICE_SCALE, ticks_from_fixed
from market.instruments import Registry
from market.units import UnitTable
from trading.book import OrderBook
from trading.book_types import BookConfig, CommandResult, OrderType, RejectReason, Side
from trading.config import VenueConfig
from trading.orders import VenueCommand, VenueUpdate
from trading.positions import Fill, point_value, usd_rate
from trading.risk import QuoteBoard

OWNER_MM = 1
OWNER_TAPE = 2
OWNER_STRATEGY = 3
_INTERNAL_ID0 = 1 << 40  # MM and tape order ids live above every strategy order id

VenueEvent = Fill | VenueUpdate


def to_ticks(price: int, tick: int, rounding: str = "exact") -> int:
    """Fixed-point price -> ticks. rounding: "exact" (raises off grid), "down" or "up"."""
    if rounding == "exact":
        return ticks_from_fixed(price, tick)
    q, r = divmod(price, tick)
    return q + 1 if r and rounding == "up" else q


class _Market:
    """One instrument's book and the MM orders that represent its displayed quote."""

    def __init__(self, tick: int, config: VenueConfig) -> None:
        self.tick = tick
        self.book = OrderBook(BookConfig(tick_size=1), expected_orders=config.expected_orders)
        self.mm: dict[Side, list[int]] = {Side.BUY: [], Side.SELL: []}  # queue order (oldest first)
        self.mm_px: dict[Side, int | None] = {Side.BUY: None, Side.SELL: None}
        self.ours: dict[int, Side] = {}  # resting strategy orders


class SimVenue:
    def __init__(self, registry: Registry, units: UnitTable, board: QuoteBoard,
                 config: VenueConfig | None = None) -> None:
        self.registry = registry
        self.units = units
        self.board = board
        self.config = config or VenueConfig()
        self._markets: dict[int, _Market] = {}
        self._next_internal = _INTERNAL_ID0
        self._next_fill = 1
        self._fee = Decimal(str(self.config.fee_bps)) / 10_000
        self._money = {i.index: point_value(i, units) / PRICE_SCALE for i in registry}
        self._now = 0

    # -- market data ------------------------------------------------------------------------------------------

    def book(self, instrument_id: str) -> OrderBook | None:
        """The simulated book of an instrument (None before its first order)."""
        m = self._markets.get(self.registry.index_of(instrument_id))
        return None if m is None else m.book

    def resting_instruments(self) -> list[int]:
        return [i for i, m in self._markets.items() if m.ours]

    def advance(self, cols: TickColumns, lo: int, hi: int, clock: np.ndarray,
                stop_on_fill: bool = False) -> tuple[list[VenueEvent], int]:
        """Replay rows [lo, hi) (delivery order; clock = event-time clock per row). Returns the events and the
        row it stopped before: hi, or with stop_on_fill the row after the first one that filled a strategy
        order (the caller reacts to the fill before the market moves on)."""
        if hi <= lo:
            return [], lo
        inst = cols.instrument[lo:hi]
        active = self.resting_instruments()
        slow = np.isin(inst, np.asarray(active, dtype=inst.dtype)) if active else np.zeros(hi - lo, bool)
        fast = ~slow & (cols.kind[lo:hi] == KIND_QUOTE)
        events: list[VenueEvent] = []
        prev = lo
        for r in (np.flatnonzero(slow) + lo).tolist():
            self._quotes(cols, fast, lo, prev, r)  # other instruments' quotes up to this row first
            prev = r + 1
            i = int(cols.instrument[r])
            self._now = int(clock[r])
            new: list[VenueEvent] = []
            if cols.kind[r] == KIND_QUOTE:
                if self.board.update(i, int(cols.bid[r]), int(cols.ask[r]), int(cols.bid_size[r]),
                                     int(cols.ask_size[r]), int(cols.ts_event[r])):
                    new = self._sync(i)
            elif cols.kind[r] == KIND_TRADE:
                new = self._tape(i, int(cols.price[r]), int(cols.size[r]))
            events += new
            if stop_on_fill and any(isinstance(e, Fill) for e in new):
                return events, r + 1
        self._quotes(cols, fast, lo, prev, hi)
        return events, hi

    def _quotes(self, cols: TickColumns, fast: np.ndarray, lo: int, a: int, b: int) -> None:
        """Board update (vectorised) from the quote rows in [a, b) of instruments not replayed through a book."""
        if b <= a:
            return
        idx = np.flatnonzero(fast[a - lo:b - lo]) + a
        if idx.shape[0]:
            self.board.update_many(cols.instrument[idx].astype(np.int64), cols.bid[idx], cols.ask[idx],
                                   cols.bid_size[idx], cols.ask_size[idx], cols.ts_event[idx])

    def _market(self, i: int) -> _Market:
        m = self._markets.get(i)
        if m is None:
            m = self._markets[i] = _Market(self.registry.by_index(i).tick_fixed, self.config)
        return m

    def _sync(self, i: int) -> list[VenueEvent]:
        """Make the MM orders of instrument i match the board's quote (see the queue-position model)."""
        m = self._market(i)
        if not self.board.has(i):
            return []
        want = {Side.BUY: (to_ticks(int(self.board.bid[i]), m.tick, "down"), int(self.board.bid_size[i])),
                Side.SELL: (to_ticks(int(self.board.ask[i]), m.tick, "up"), int(self.board.ask_size[i]))}
        for side in (Side.BUY, Side.SELL):  # first clear the sides whose price moved
            m.mm[side] = [oid for oid in m.mm[side] if m.book.order(oid) is not None]
            if m.mm_px[side] != want[side][0]:
                for oid in m.mm[side]:
                    m.book.cancel(oid)
                m.mm[side], m.mm_px[side] = [], want[side][0]
        events: list[VenueEvent] = []
        for side in (Side.BUY, Side.SELL):
            px, size = want[side]
            live = [(oid, o.qty) for oid in m.mm[side] if (o := m.book.order(oid)) is not None]
            have = sum(q for _, q in live)
            if size > have:
                oid = self._internal_id()
                r = m.book.submit(oid, side, px, size - have, OrderType.LIMIT, owner=OWNER_MM)
                events += self._maker_fills(i, m, r)
                if m.book.order(oid) is not None:
                    live.append((oid, 0))
            elif size < have:
                cut = have - size
                for oid, q in reversed(live):
                    take = min(q, cut)
                    if take == q:
                        m.book.cancel(oid)
                    else:
                        m.book.replace(oid, px, q - take)  # smaller qty at the same price keeps priority
                    cut -= take
                    if not cut:
                        break
            m.mm[side] = [oid for oid, _ in live if m.book.order(oid) is not None]
        return events

    def _tape(self, i: int, price: int, size: int) -> list[VenueEvent]:
        m = self._markets.get(i)
        if m is None or not m.ours or size <= 0:
            return []
        ours = [m.book.order(oid) for oid in m.ours]
        lo, hi = to_ticks(price, m.tick, "down"), to_ticks(price, m.tick, "up")
        if any(o is not None and o.side == Side.SELL and o.price <= lo for o in ours):
            side, px = Side.BUY, lo  # a buyer lifted offers up to p: ours among them
        elif any(o is not None and o.side == Side.BUY and o.price >= hi for o in ours):
            side, px = Side.SELL, hi
        else:
            return []
        r = m.book.submit(self._internal_id(), side, px, size, OrderType.IOC, owner=OWNER_TAPE)
        return self._maker_fills(i, m, r)

    # -- strategy orders --------------------------------------------------------------------------------------

    def submit(self, cmd: VenueCommand, now_ns: int) -> list[VenueEvent]:
        i = self.registry.index_of(cmd.instrument_id)
        if i < 0:
            return [VenueUpdate(order_id=cmd.order_id, status="rejected", ts_event=now_ns,
                                detail=f"unknown instrument {cmd.instrument_id}")]
        self._now = now_ns
        m = self._market(i)
        events = self._sync(i)
        side = Side.BUY if cmd.side == "buy" else Side.SELL
        try:
            px = to_ticks(cmd.price, m.tick)
        except ValueError as err:
            return [*events, VenueUpdate(order_id=cmd.order_id, status="rejected", ts_event=now_ns, detail=str(err))]
        otype = OrderType.IOC if cmd.tif == "ioc" else OrderType.LIMIT
        r = m.book.submit(cmd.order_id, side, px, cmd.qty, otype, owner=OWNER_STRATEGY)
        if not r.ok:
            return [*events, VenueUpdate(order_id=cmd.order_id, status="rejected", ts_event=now_ns,
                                         detail=r.reason.label)]
        for e in r.executions:
            events.append(self._fill(i, m, cmd.order_id, cmd.side, e.qty, e.price, "taker"))
            self._touch_mm(m, e.maker_id)
        unfilled = sum(c.qty for c in r.cancels if c.order_id == cmd.order_id)
        if m.book.order(cmd.order_id) is not None:
            m.ours[cmd.order_id] = side
            events.append(VenueUpdate(order_id=cmd.order_id, status="working", ts_event=now_ns))
        elif unfilled:
            events.append(VenueUpdate(order_id=cmd.order_id, status="cancelled", ts_event=now_ns,
                                      detail=f"ioc: {unfilled} of {cmd.qty} unfilled"))
        return events

    def cancel(self, cmd: VenueCommand, now_ns: int) -> list[VenueEvent]:
        i = self.registry.index_of(cmd.instrument_id)
        m = self._markets.get(i)
        if m is None:
            return [VenueUpdate(order_id=cmd.order_id, status="cancel_rejected", ts_event=now_ns,
                                detail="unknown order")]
        r = m.book.cancel(cmd.order_id)
        m.ours.pop(cmd.order_id, None)
        if r.reason == RejectReason.OK:
            return [VenueUpdate(order_id=cmd.order_id, status="cancelled", ts_event=now_ns, detail="cancelled")]
        return [VenueUpdate(order_id=cmd.order_id, status="cancel_rejected", ts_event=now_ns, detail=r.reason.label)]

    def execute(self, cmd: VenueCommand, now_ns: int) -> list[VenueEvent]:
        if cmd.action == "new":
            return self.submit(cmd, now_ns)
        if cmd.action == "cancel":
            return self.cancel(cmd, now_ns)
        raise ValueError(f"unknown venue command {cmd.action!r}")

    # -- helpers ----------------------------------------------------------------------------------------------

    def _internal_id(self) -> int:
        self._next_internal += 1
        return self._next_internal

    def _touch_mm(self, m: _Market, maker_id: int) -> None:
        if m.book.order(maker_id) is None:
            for side in (Side.BUY, Side.SELL):
                if maker_id in m.mm[side]:
                    m.mm[side].remove(maker_id)

    def _maker_fills(self, i: int, m: _Market, r: CommandResult) -> list[VenueEvent]:
        """Fills of resting strategy orders hit by a MM or tape order."""
        out: list[VenueEvent] = []
        for e in r.executions:
            side = m.ours.get(e.maker_id)
            if side is None:
                continue
            out.append(self._fill(i, m, e.maker_id, "buy" if side == Side.BUY else "sell", e.qty, e.price, "maker"))
            if e.maker_remaining == 0:
                del m.ours[e.maker_id]
        return out

    def _fill(self, i: int, m: _Market, order_id: int, side: str, qty: int, px_ticks: int, liq: str) -> Fill:
        price = px_ticks * m.tick
        inst = self.registry.by_index(i)
        fee = (abs(qty * price * self._money[i]) * self._fee).normalize() if self._fee else Decimal(0)
        fill = Fill(fill_id=self._next_fill, order_id=order_id, instrument_id=inst.id, side=side, qty=qty,
                    price=price, ts_event=self._now, liquidity=liq, fee=fee,
                    usd_per_quote=usd_rate(inst, self.units, self.board.fx_rates(self.units)))
        self._next_fill += 1
        return fill
