"""Pure-Python reference of trading/book_kernel.py: same rules, same checks in the same order, same events.

Levels are per-side dicts tick -> {order_id: order} (dicts keep insertion order, so each is a FIFO with O(1)
removal) plus a bisect-sorted list of the ticks of each side. Written for clarity, not speed.
"""

from __future__ import annotations

from bisect import bisect_left, insort

import numpy as np

from trading.book_types import (
    BookConfig,
    CancelReason,
    EventKind,
    Op,
    OrderState,
    OrderType,
    RejectReason,
    Side,
    StpPolicy,
)

MAX_TICK = 1 << 62  # same band limit as the kernel
_BUY = int(Side.BUY)
_R = RejectReason

EventRow = tuple[int, int, int, int, int, int, int, int, int]


class _Order:
    __slots__ = ("oid", "side", "tick", "qty", "owner", "post_only")

    def __init__(self, oid: int, side: int, tick: int, qty: int, owner: int, post_only: bool) -> None:
        self.oid = oid
        self.side = side
        self.tick = tick
        self.qty = qty
        self.owner = owner
        self.post_only = post_only


class ReferenceBook:
    """The book as plain Python objects. Same core interface as the numba core in trading/book.py."""

    def __init__(self, config: BookConfig) -> None:
        self.tick_size = config.tick_size
        self.stp_resting = config.stp == StpPolicy.CANCEL_RESTING
        self.max_span = config.max_span_ticks
        self.ids: dict[int, OrderState] = {}
        self.orders: dict[int, _Order] = {}
        self.levels: tuple[dict[int, dict[int, _Order]], dict[int, dict[int, _Order]]] = ({}, {})
        self.ticks: tuple[list[int], list[int]] = ([], [])  # ascending; best bid = [-1], best ask = [0]
        self._ev: list[EventRow] = []
        self._cmd = 0

    # ------------------------------------------------------------ commands

    def process(self, cmds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """cmds: (n, 7) int64 matrix of COMMAND_FIELDS -> (results int8 (n,), events (m, 9) int64)."""
        self._ev = []
        results = np.empty(cmds.shape[0], np.int8)
        for i, row in enumerate(cmds.tolist()):
            self._cmd = i
            results[i] = self._exec(*row)
        return results, _rows(self._ev)

    def execute(self, op: int, otype: int, side: int, oid: int, price: int, qty: int,
                owner: int) -> tuple[int, np.ndarray]:
        self._ev = []
        self._cmd = 0
        r = self._exec(op, otype, side, oid, price, qty, owner)
        return r, _rows(self._ev)

    def _exec(self, op: int, otype: int, side: int, oid: int, price: int, qty: int, owner: int) -> int:
        if op == Op.REPLACE:
            return self._replace(oid, price, qty)
        if op == Op.NEW:
            return self._new(otype, side, oid, price, qty, owner)
        if op == Op.CANCEL:
            return self._cancel(oid)
        return _R.BAD_COMMAND

    def _new(self, otype: int, side: int, oid: int, price: int, qty: int, owner: int) -> int:
        if side not in (0, 1) or not OrderType.LIMIT <= otype <= OrderType.POST_ONLY:
            return _R.BAD_COMMAND
        if oid < 0:
            return _R.BAD_ORDER_ID
        if qty <= 0:
            return _R.BAD_SIZE
        if otype == OrderType.MARKET:
            t = (1 << 63) - 1 if side == _BUY else -(1 << 63)
            out_px = 0
        else:
            if price % self.tick_size:
                return _R.OFF_TICK
            t = price // self.tick_size
            out_px = price
        if oid in self.ids:
            return _R.DUPLICATE_ID
        rests = otype in (OrderType.LIMIT, OrderType.POST_ONLY)
        if rests and self._out_of_band(t):
            return _R.PRICE_OUT_OF_BAND
        if otype == OrderType.POST_ONLY and self._crosses(side, t):
            return _R.POST_ONLY_WOULD_CROSS
        if otype == OrderType.FOK and not self._fok_ok(side, t, qty, owner):
            return _R.FOK_UNFILLABLE
        q, stopped = (qty, False) if otype == OrderType.POST_ONLY else self._match(side, t, qty, oid, owner)
        if q == 0:
            self.ids[oid] = OrderState.FILLED
        elif stopped or not rests:
            why = CancelReason.STP_INCOMING if stopped else CancelReason.UNFILLED
            self._ev.append((self._cmd, EventKind.CANCEL, why, side, oid, oid, out_px, q, 0))
            self.ids[oid] = OrderState.CANCELLED
        else:
            self.ids[oid] = OrderState.LIVE
            self._rest(_Order(oid, side, t, q, owner, otype == OrderType.POST_ONLY))
        return _R.OK

    def _live(self, oid: int) -> _Order | int:
        state = self.ids.get(oid, OrderState.UNKNOWN)
        if state == OrderState.LIVE:
            return self.orders[oid]
        return {OrderState.UNKNOWN: _R.UNKNOWN_ORDER, OrderState.FILLED: _R.ORDER_FILLED,
                OrderState.CANCELLED: _R.ORDER_CANCELLED}[state]

    def _cancel(self, oid: int) -> int:
        o = self._live(oid)
        if isinstance(o, int):
            return o
        self._unrest(o)
        self.ids[oid] = OrderState.CANCELLED
        return _R.OK

    def _replace(self, oid: int, price: int, qty: int) -> int:
        o = self._live(oid)
        if isinstance(o, int):
            return o
        if qty <= 0:
            return _R.BAD_SIZE
        if price % self.tick_size:
            return _R.OFF_TICK
        t = price // self.tick_size
        if t == o.tick:
            if qty <= o.qty:  # size down keeps priority
                o.qty = qty
            else:  # size up: back of the queue
                level = self.levels[o.side][t]
                del level[oid]
                o.qty = qty
                level[oid] = o
            return _R.OK
        if self._out_of_band(t):
            return _R.PRICE_OUT_OF_BAND
        if o.post_only and self._crosses(o.side, t):
            return _R.POST_ONLY_WOULD_CROSS
        self._unrest(o)
        q, stopped = self._match(o.side, t, qty, oid, o.owner)
        if q == 0:
            self.ids[oid] = OrderState.FILLED
        elif stopped:
            self._ev.append((self._cmd, EventKind.CANCEL, CancelReason.STP_INCOMING, o.side, oid, oid, price, q, 0))
            self.ids[oid] = OrderState.CANCELLED
        else:
            o.tick = t
            o.qty = q
            self._rest(o)
        return _R.OK

    # ------------------------------------------------------------ matching

    def _match(self, side: int, lim: int, q: int, oid: int, owner: int) -> tuple[int, bool]:
        buy = side == _BUY
        ticks = self.ticks[1 - side]
        levels = self.levels[1 - side]
        while q > 0 and ticks:
            t = ticks[0] if buy else ticks[-1]
            if (buy and t > lim) or (not buy and t < lim):
                break
            level = levels[t]
            px = t * self.tick_size
            stopped = False
            while level:
                o = next(iter(level.values()))
                if owner != 0 and o.owner == owner:
                    if not self.stp_resting:
                        stopped = True
                        break
                    self._ev.append((self._cmd, EventKind.CANCEL, CancelReason.STP_RESTING, side, oid, o.oid, px,
                                     o.qty, 0))
                    self.ids[o.oid] = OrderState.CANCELLED
                elif q < o.qty:
                    o.qty -= q
                    self._ev.append((self._cmd, EventKind.TRADE, CancelReason.NONE, side, oid, o.oid, px, q, o.qty))
                    q = 0
                    break
                else:
                    self._ev.append((self._cmd, EventKind.TRADE, CancelReason.NONE, side, oid, o.oid, px, o.qty, 0))
                    q -= o.qty
                    self.ids[o.oid] = OrderState.FILLED
                del level[o.oid]
                del self.orders[o.oid]
                if q == 0:
                    break
            if not level:
                del levels[t]
                if buy:
                    del ticks[0]
                else:
                    del ticks[-1]
            if stopped:
                return q, True
        return q, False

    def _fok_ok(self, side: int, lim: int, need: int, owner: int) -> bool:
        buy = side == _BUY
        ticks = self.ticks[1 - side]
        levels = self.levels[1 - side]
        avail = 0
        for t in ticks if buy else reversed(ticks):
            if (buy and t > lim) or (not buy and t < lim):
                return False
            for o in levels[t].values():
                if owner != 0 and o.owner == owner:
                    if not self.stp_resting:
                        return False
                    continue
                avail += o.qty
                if avail >= need:
                    return True
        return False

    def _crosses(self, side: int, t: int) -> bool:
        if side == _BUY:
            asks = self.ticks[1]
            return bool(asks) and asks[0] <= t
        bids = self.ticks[0]
        return bool(bids) and bids[-1] >= t

    def _out_of_band(self, t: int) -> bool:
        if not -MAX_TICK <= t <= MAX_TICK:
            return True
        bids, asks = self.ticks
        if not bids and not asks:
            return False
        lo = bids[0] if bids else asks[0]
        hi = asks[-1] if asks else bids[-1]
        return max(hi, t) - min(lo, t) > self.max_span

    def _rest(self, o: _Order) -> None:
        levels = self.levels[o.side]
        level = levels.get(o.tick)
        if level is None:
            level = levels[o.tick] = {}
            insort(self.ticks[o.side], o.tick)
        level[o.oid] = o
        self.orders[o.oid] = o

    def _unrest(self, o: _Order) -> None:
        levels = self.levels[o.side]
        level = levels[o.tick]
        del level[o.oid]
        del self.orders[o.oid]
        if not level:
            del levels[o.tick]
            ticks = self.ticks[o.side]
            del ticks[bisect_left(ticks, o.tick)]

    # ------------------------------------------------------------ read-only views

    def _side_ticks(self, side: int) -> list[int]:
        ticks = self.ticks[side]
        return ticks[::-1] if side == _BUY else ticks

    def resting(self) -> np.ndarray:
        rows = [(side, t * self.tick_size, o.oid, o.qty, o.owner)
                for side in (0, 1) for t in self._side_ticks(side) for o in self.levels[side][t].values()]
        return np.array(rows, np.int64).reshape(len(rows), 5)

    def depth(self, side: int, n: int) -> np.ndarray:
        rows = []
        ticks = self.ticks[side]
        top = ticks[:-n - 1:-1] if side == _BUY else ticks[:n]
        for t in top if n > 0 else ():
            level = self.levels[side][t]
            rows.append((t * self.tick_size, sum(o.qty for o in level.values()), len(level)))
        return np.array(rows, np.int64).reshape(len(rows), 3)

    def level_orders(self, side: int, t: int) -> np.ndarray:
        level = self.levels[side].get(t, {})
        rows = [(side, t * self.tick_size, o.oid, o.qty, o.owner) for o in level.values()]
        return np.array(rows, np.int64).reshape(len(rows), 5)

    def lookup(self, oid: int) -> np.ndarray:
        state = self.ids.get(oid, OrderState.UNKNOWN)
        o = self.orders.get(oid)
        if o is None:
            return np.array([state, 0, 0, 0, 0], np.int64)
        return np.array([state, o.side, o.tick * self.tick_size, o.qty, o.owner], np.int64)

    def id_states(self) -> tuple[np.ndarray, np.ndarray]:
        ids = np.array(sorted(self.ids), np.int64)
        states = np.array([self.ids[i] for i in ids.tolist()], np.int64)
        return ids, states

    def count(self) -> int:
        return len(self.orders)


def _rows(ev: list[EventRow]) -> np.ndarray:
    return np.array(ev, np.int64).reshape(len(ev), 9)
