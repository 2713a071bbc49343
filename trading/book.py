"""OrderBook: one instrument's limit order book with price-time priority (numba engine or pure-Python reference).

    book = OrderBook(BookConfig(tick_size=10_000_000), impl="numba")   # prices are fixed-point ints on the grid
    r = book.submit(1, Side.BUY, 101_230_000_000, 5)                   # -> CommandResult(reason, executions, cancels)
    book.replace(1, 101_220_000_000, 3); book.cancel(1)
    out = book.process(cmds)                                           # COMMAND_DTYPE batch -> results + EVENT_DTYPE

Both implementations give identical results, events and books (tests/test_book.py runs every test on both).
Rules: see trading/book_types.py (reject codes, STP, price band) and the kernel docstring (layout).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from trading import book_kernel as bk
from trading.book_reference import ReferenceBook
from trading.book_types import (
    COMMAND_DTYPE,
    EVENT_DTYPE,
    NO_OWNER,
    RESTING_DTYPE,
    BookConfig,
    CommandResult,
    Level,
    Op,
    OrderState,
    OrderType,
    RejectReason,
    RestingOrder,
    Side,
    as_matrix,
    as_records,
    events_to_result,
)
from trading.journal import Journal

Impl = Literal["numba", "python"]


class _Core(Protocol):
    def process(self, cmds: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...
    def execute(self, op: int, otype: int, side: int, oid: int, price: int, qty: int,
                owner: int) -> tuple[int, np.ndarray]: ...
    def resting(self) -> np.ndarray: ...
    def depth(self, side: int, n: int) -> np.ndarray: ...
    def level_orders(self, side: int, t: int) -> np.ndarray: ...
    def lookup(self, oid: int) -> np.ndarray: ...
    def id_states(self) -> tuple[np.ndarray, np.ndarray]: ...
    def count(self) -> int: ...


def _aligned(shape: tuple[int, int], fill: int = 0) -> np.ndarray:
    """int64 matrix whose rows start on 64-byte boundaries (an order row is exactly one cache line)."""
    n = shape[0] * shape[1]
    raw = np.empty(n + 8, np.int64)
    off = (-raw.ctypes.data % 64) // 8
    out = raw[off:off + n].reshape(shape)
    out.fill(fill)
    return out


def _next_pow2(x: int) -> int:
    return 1 << max(0, int(x) - 1).bit_length()


class NumbaBook:
    """Owns the kernel's arrays and grows them when a command asks (then re-runs that command)."""

    def __init__(self, config: BookConfig, orders: int = 1024, ids: int = 4096, window: int = 4096,
                 events: int = 4096) -> None:
        self.st = np.zeros(bk.S_LEN, np.int64)
        st = self.st
        st[bk.S_BID] = st[bk.S_ASK] = st[bk.S_LO] = st[bk.S_HI] = -1
        st[bk.S_TICK] = config.tick_size
        st[bk.S_STP] = int(config.stp)
        st[bk.S_MAXSPAN] = config.max_span_ticks
        self.pool = _aligned((0, bk.P_LEN))
        st[bk.S_FREE] = -1
        self._grow_pool(max(orders, 16))
        cap = _next_pow2(max(ids, 64))
        self.ht = _aligned((cap, 2), bk.HT_EMPTY)
        st[bk.S_HTSHIFT] = 64 - (cap.bit_length() - 1)
        w = _next_pow2(max(window, 64))
        self.lv = self._empty_levels(w)
        self.bm = np.zeros(w // 64, np.uint64)
        st[bk.S_W] = w
        self.ev = np.zeros((max(events, 64), 9), np.int64)
        self._lat = np.zeros(0, np.int64)
        self._buf = np.zeros((2, 7), np.int64)
        self._res = np.zeros(1, np.int8)
        self._no_events = np.zeros((0, 9), np.int64)

    # ------------------------------------------------------------ growth

    @staticmethod
    def _empty_levels(w: int) -> np.ndarray:
        lv = _aligned((w, bk.L_LEN))
        lv[:, bk.L_HEAD] = -1
        lv[:, bk.L_TAIL] = -1
        return lv

    def _grow_pool(self, extra: int) -> None:
        old = self.pool.shape[0]
        pool = _aligned((old + extra, bk.P_LEN))
        pool[:old] = self.pool
        new = np.arange(old, old + extra, dtype=np.int64)
        pool[new, bk.P_NEXT] = new + 1
        pool[old + extra - 1, bk.P_NEXT] = self.st[bk.S_FREE]
        self.st[bk.S_FREE] = old
        self.pool = pool

    def _grow_ids(self) -> None:
        cap = self.ht.shape[0] * 2
        new = _aligned((cap, 2), bk.HT_EMPTY)
        shift = 64 - (cap.bit_length() - 1)
        bk.ht_rehash(self.ht, new, shift, self.pool)
        self.ht = new
        self.st[bk.S_HTSHIFT] = shift

    def _grow_window(self, t: int) -> None:
        """Re-place the dense level window so it covers every resting level and tick t, with slack both sides."""
        st = self.st
        base, w = int(st[bk.S_BASE]), int(st[bk.S_W])
        if st[bk.S_NORD] > 0:
            lo, hi = int(st[bk.S_LO]), int(st[bk.S_HI])
            mn, mx = min(base + lo, t), max(base + hi, t)
        else:
            lo = hi = -1
            mn = mx = t
        span = mx - mn + 1
        new_w = max(w, 2 * _next_pow2(span))
        new_base = mn - (new_w - span) // 2
        lv = self._empty_levels(new_w) if (new_w != w or lo >= 0) else self.lv
        if lo >= 0:
            shift = base - new_base
            lv[lo + shift:hi + 1 + shift] = self.lv[lo:hi + 1]
            for k in (bk.S_BID, bk.S_ASK, bk.S_LO, bk.S_HI):
                if st[k] >= 0:
                    st[k] += shift
        bm = np.zeros(new_w // 64, np.uint64)
        live = np.flatnonzero(lv[:, bk.L_CNT] > 0)
        np.bitwise_or.at(bm, live >> 6, np.left_shift(np.uint64(1), (live & 63).astype(np.uint64)))
        self.lv, self.bm = lv, bm
        st[bk.S_BASE], st[bk.S_W] = new_base, new_w

    def _grow(self) -> None:
        need = int(self.st[bk.S_NEED])
        if need == bk.NEED_POOL:
            self._grow_pool(self.pool.shape[0])
        elif need == bk.NEED_IDS:
            self._grow_ids()
        elif need == bk.NEED_WINDOW:
            self._grow_window(int(self.st[bk.S_NEEDTICK]))
        elif need == bk.NEED_EVENTS:
            ev = np.zeros((max(2 * self.ev.shape[0], int(self.st[bk.S_NEV] + self.st[bk.S_NORD]) + 64), 9), np.int64)
            ev[: self.ev.shape[0]] = self.ev
            self.ev = ev
        else:
            raise RuntimeError(f"book kernel stopped without a known need ({need})")
        self.st[bk.S_NEED] = bk.NEED_NONE

    # ------------------------------------------------------------ commands

    def process(self, cmds: np.ndarray, lat: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        n = cmds.shape[0]
        results = np.zeros(n, np.int8)
        timed = lat is not None
        lat_arr = lat if lat is not None else self._lat
        self.st[bk.S_NEV] = 0
        i = 0
        while True:
            i = bk.process_batch(self.st, self.pool, self.lv, self.bm, self.ht, self.ev, cmds, i, results, lat_arr,
                                timed)
            if i >= n:
                break
            self._grow()
        nev = int(self.st[bk.S_NEV])
        return results, self.ev[:nev].copy()

    def execute(self, op: int, otype: int, side: int, oid: int, price: int, qty: int,
                owner: int) -> tuple[int, np.ndarray]:
        while True:
            r = bk.process_one(self.st, self.pool, self.lv, self.bm, self.ht, self.ev, self._buf, self._res, op, otype,
                               side, oid, price, qty, owner)
            if r >= 0:
                nev = r >> 8
                return r & 255, (self.ev[:nev] if nev else self._no_events)
            self._grow()

    # ------------------------------------------------------------ read-only views

    def resting(self) -> np.ndarray:
        return bk.dump_resting(self.st, self.pool, self.lv, self.bm)

    def depth(self, side: int, n: int) -> np.ndarray:
        return bk.depth(self.st, self.lv, self.bm, side, n)

    def level_orders(self, side: int, t: int) -> np.ndarray:
        return bk.level_orders(self.st, self.pool, self.lv, side, t)

    def lookup(self, oid: int) -> np.ndarray:
        return bk.lookup(self.st, self.pool, self.ht, oid)

    def id_states(self) -> tuple[np.ndarray, np.ndarray]:
        keys = self.ht[:, 0]
        used = keys != bk.HT_EMPTY
        ids, vals = keys[used], self.ht[used, 1]
        states = np.where(vals >= 0, OrderState.LIVE, np.where(vals == bk.HT_FILLED, OrderState.FILLED,
                                                                   OrderState.CANCELLED)).astype(np.int64)
        order = np.argsort(ids, kind="stable")
        return ids[order], states[order]

    def count(self) -> int:
        return int(self.st[bk.S_NORD])


@dataclass(frozen=True, slots=True)
class BatchResult:
    results: np.ndarray  # int8 RejectReason per command
    events: np.ndarray  # EVENT_DTYPE records in the order they happened (cmd = index of the command)

    @property
    def accepted(self) -> np.ndarray:
        return self.results == RejectReason.OK

    @property
    def trades(self) -> np.ndarray:
        return self.events[self.events["kind"] == 0]


@dataclass(frozen=True, slots=True)
class BookSnapshot:
    """Everything that makes two books behave the same from now on."""

    resting: np.ndarray  # RESTING_DTYPE, priority order
    ids: np.ndarray  # every id ever accepted, sorted
    states: np.ndarray  # OrderState of each id

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BookSnapshot):
            return NotImplemented
        return (np.array_equal(self.resting, other.resting) and np.array_equal(self.ids, other.ids)
                and np.array_equal(self.states, other.states))

    __hash__ = None  # type: ignore[assignment]


class OrderBook:
    """The public book. Same API and results for impl="numba" (fast) and impl="python" (reference)."""

    def __init__(self, config: BookConfig | None = None, impl: Impl = "numba", journal: Journal | None = None,
                 expected_orders: int = 1024) -> None:
        self.config = config or BookConfig()
        self.impl = impl
        if impl == "numba":
            self._core: _Core = NumbaBook(self.config, orders=expected_orders, ids=4 * expected_orders)
        elif impl == "python":
            self._core = ReferenceBook(self.config)
        else:
            raise ValueError(f"impl must be 'numba' or 'python', not {impl!r}")
        if journal is not None and journal.config != self.config:
            raise ValueError("journal was written for a different BookConfig")
        self.journal = journal

    # ------------------------------------------------------------ commands

    def submit(self, order_id: int, side: Side, price: int, qty: int, order_type: OrderType = OrderType.LIMIT,
               owner: int = NO_OWNER) -> CommandResult:
        return self._one(Op.NEW, order_type, side, order_id, price, qty, owner)

    def cancel(self, order_id: int) -> CommandResult:
        return self._one(Op.CANCEL, 0, 0, order_id, 0, 0, NO_OWNER)

    def replace(self, order_id: int, price: int, qty: int) -> CommandResult:
        """New price and open qty. Same price and qty <= open keeps priority; otherwise the order goes to the back
        (a new price may trade first, as a taker)."""
        return self._one(Op.REPLACE, 0, 0, order_id, price, qty, NO_OWNER)

    def _one(self, op: int, otype: int, side: int, oid: int, price: int, qty: int, owner: int) -> CommandResult:
        r, ev = self._core.execute(int(op), int(otype), int(side), int(oid), int(price), int(qty), int(owner))
        if r == RejectReason.OK and self.journal is not None:
            rec = np.zeros(1, COMMAND_DTYPE)
            rec[0] = (int(op), int(otype), int(side), oid, price, qty, owner)
            self.journal.append(rec)
        return events_to_result(r, ev)

    def execute_raw(self, op: int, otype: int, side: int, oid: int, price: int, qty: int,
                    owner: int = NO_OWNER) -> tuple[int, np.ndarray]:
        """Lowest-overhead one-command path: (reason, (m, 9) int64 event rows valid until the next call)."""
        r, ev = self._core.execute(op, otype, side, oid, price, qty, owner)
        if r == 0 and self.journal is not None:
            rec = np.zeros(1, COMMAND_DTYPE)
            rec[0] = (op, otype, side, oid, price, qty, owner)
            self.journal.append(rec)
        return r, ev

    def process(self, commands: np.ndarray) -> BatchResult:
        """Run a COMMAND_DTYPE batch in order (one kernel call for impl="numba")."""
        if commands.dtype != COMMAND_DTYPE:
            raise TypeError(f"commands must have dtype COMMAND_DTYPE, got {commands.dtype}")
        results, ev = self._core.process(as_matrix(commands))
        if self.journal is not None:
            self.journal.append(commands[results == RejectReason.OK])
        return BatchResult(results, as_records(ev, EVENT_DTYPE))

    # ------------------------------------------------------------ views

    def best_bid(self) -> int | None:
        d = self._core.depth(Side.BUY, 1)
        return int(d[0, 0]) if d.shape[0] else None

    def best_ask(self) -> int | None:
        d = self._core.depth(Side.SELL, 1)
        return int(d[0, 0]) if d.shape[0] else None

    def depth(self, side: Side, levels: int = 10) -> list[Level]:
        return [Level(p, q, c) for p, q, c in self._core.depth(int(side), levels).tolist()]

    def level_orders(self, side: Side, price: int) -> list[RestingOrder]:
        """Orders resting at one price, in queue order (head first)."""
        if price % self.config.tick_size:
            return []
        rows = self._core.level_orders(int(side), price // self.config.tick_size)
        return [RestingOrder(o, Side(s), p, q, w) for s, p, o, q, w in rows.tolist()]

    def order(self, order_id: int) -> RestingOrder | None:
        st, side, price, qty, owner = self._core.lookup(int(order_id)).tolist()
        return RestingOrder(int(order_id), Side(side), price, qty, owner) if st == OrderState.LIVE else None

    def order_state(self, order_id: int) -> OrderState:
        return OrderState(int(self._core.lookup(int(order_id))[0]))

    def resting(self) -> np.ndarray:
        """RESTING_DTYPE records: bids best->worst, then asks best->worst, FIFO within each level."""
        return as_records(self._core.resting(), RESTING_DTYPE)

    def snapshot(self) -> BookSnapshot:
        ids, states = self._core.id_states()
        return BookSnapshot(self.resting(), ids, states)

    def __len__(self) -> int:
        return self._core.count()


def replay(journal: Journal, impl: Impl = "numba") -> OrderBook:
    """Rebuild a book from its journal of accepted commands (the result is journal-less)."""
    book = OrderBook(journal.config, impl=impl)
    cmds = journal.commands()
    if cmds.shape[0]:
        out = book.process(cmds)
        bad = np.flatnonzero(~out.accepted)
        if bad.size:
            raise ValueError(f"journal replay rejected command {int(bad[0])}: "
                             f"{RejectReason(int(out.results[bad[0]])).name}")
    return book
