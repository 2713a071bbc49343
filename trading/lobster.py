"""LOBSTER replay checker: drive the order book with LOBSTER messages and compare it with LOBSTER's snapshots.

Message k is applied to the book that matched snapshot k-1 and the result is compared with snapshot k on the
price range visible in both snapshots (a level-N file shows only the best N levels, and only the events inside
them). The book is order-level, so it also checks queue priority: a visible execution (type 4) of order X while
an older order rests at the same price and side is a priority violation (counted only when every event at the
visible levels is in the file and levels stay in view, i.e. on level-10 files; see `check_priority`).

Orders that predate the file are unknown: the book is seeded from the first snapshot (with the first message
undone when it is an add) as one synthetic order per level, and cancels/executions of unknown ids are taken
out of the synthetic quantity at their price. Levels that come into view (a level-N file hides deeper ones)
are resynced from the snapshot: synthetic quantity is added at the back of the queue or removed,
synthetic orders first. Executions of the order at the head of the best level go through the matching
engine as an IOC order from the other side, and the engine's execution must be exactly that one fill.
Prices are LOBSTER's integer dollars x 10000, used as ticks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import numpy as np

from trading.book import Impl, OrderBook
from trading.book_types import BookConfig, OrderType, RejectReason, Side

SYNTH_BASE = 10**15  # ids of synthetic orders and engine takers (LOBSTER ids are far below)
DUMMY_PRICE = 9_999_999_999  # LOBSTER fills empty levels with +-this and size 0
MAX_EXAMPLES = 10
ADD, PARTIAL_CANCEL, DELETE, EXECUTE, EXECUTE_HIDDEN, CROSS, HALT = 1, 2, 3, 4, 5, 6, 7
TYPE_NAMES = {ADD: "add", PARTIAL_CANCEL: "partial_cancel", DELETE: "delete", EXECUTE: "execute_visible",
              EXECUTE_HIDDEN: "execute_hidden", CROSS: "cross", HALT: "halt"}


class LevelMismatch(msgspec.Struct, frozen=True):
    row: int  # 0-based message/snapshot row
    side: str  # "bid" | "ask"
    level: int  # 1-based level in the snapshot
    expected: tuple[int, int] | None  # (price, size) in the snapshot, None = no level
    got: tuple[int, int] | None  # (price, size) in the book


class PriorityViolation(msgspec.Struct, frozen=True):
    row: int
    order_id: int
    price: int
    side: str
    ahead: list[int]  # ids resting ahead of it (synthetic ids >= SYNTH_BASE stand for pre-file orders)


class LobsterReport(msgspec.Struct, kw_only=True):
    messages_csv: str
    orderbook_csv: str
    file_levels: int
    levels: int  # levels compared
    messages: int
    by_type: dict[str, int]
    compared_rows: int
    mismatched_rows: int
    mismatches_per_level: dict[str, list[int]]  # side -> count per level (1..levels)
    mismatch_examples: list[LevelMismatch]
    priority_checked: bool
    executions_checked: int  # type-4 executions of known orders checked for priority
    priority_violations: int
    priority_examples: list[PriorityViolation]
    engine_executions: int  # executions sent through the matching engine as IOC takers
    engine_mismatches: int  # engine fills that differed from the message
    unknown: dict[str, int]  # handling of ids that predate the file
    resync: dict[str, int]  # levels that came into view and their quantity corrections
    rejected_adds: dict[str, int]  # adds the book refused, by reason
    size_mismatches: int  # cancel/delete/execute sizes larger than the known order's open quantity

    @property
    def ok(self) -> bool:
        return self.mismatched_rows == 0 and self.priority_violations == 0 and self.engine_mismatches == 0

    def to_json(self) -> bytes:
        return msgspec.json.encode(self)


@dataclass(slots=True)
class _Counts:
    by_type: dict[str, int] = field(default_factory=dict)
    per_level: dict[str, list[int]] = field(default_factory=dict)
    examples: list[LevelMismatch] = field(default_factory=list)
    mismatched_rows: int = 0
    compared_rows: int = 0
    executions_checked: int = 0
    violations: list[PriorityViolation] = field(default_factory=list)
    n_violations: int = 0
    engine_executions: int = 0
    engine_mismatches: int = 0
    unknown: dict[str, int] = field(default_factory=lambda: {
        "partial_cancel": 0, "delete": 0, "execute": 0, "unmatched_qty": 0, "qty_from_known_orders": 0})
    resync: dict[str, int] = field(default_factory=lambda: {
        "levels_set": 0, "qty_added": 0, "qty_removed": 0, "qty_from_known_orders": 0, "after_mismatch": 0})
    rejected_adds: dict[str, int] = field(default_factory=dict)
    size_mismatches: int = 0


def _read(path: Path, dtype: type) -> np.ndarray:
    with path.open() as fh:
        first = fh.readline()
    try:
        float(first.split(",")[0])
        skip = 0
    except ValueError:  # the AMZN sample carries a header row the original LOBSTER files do not have
        skip = 1
    return np.loadtxt(path, delimiter=",", dtype=dtype, skiprows=skip, ndmin=2)


def load(messages_csv: Path | str, orderbook_csv: Path | str) -> tuple[np.ndarray, np.ndarray]:
    """(messages (n, 5) int64: type, id, size, price, direction; books (n, 4 * levels) int64)."""
    msg = _read(Path(messages_csv), np.float64)
    books = _read(Path(orderbook_csv), np.int64)
    if msg.shape[0] != books.shape[0]:
        raise ValueError(f"{msg.shape[0]} messages but {books.shape[0]} orderbook rows")
    if msg.shape[1] < 6 or books.shape[1] % 4:
        raise ValueError("not LOBSTER files: messages need 6 columns, orderbook rows 4 per level")
    return msg[:, 1:6].round().astype(np.int64), books


def _snapshot_side(row: np.ndarray, side: Side, n: int) -> list[tuple[int, int]]:
    """Visible levels of one side, best first: (price, size)."""
    off = 2 if side == Side.BUY else 0
    out = []
    for i in range(n):
        px, sz = int(row[4 * i + off]), int(row[4 * i + off + 1])
        if sz <= 0 or abs(px) >= DUMMY_PRICE:
            break
        out.append((px, sz))
    return out


def _bound(levels: list[tuple[int, int]], n: int) -> int | None:
    """Worst visible price when the side is full (deeper levels are hidden), None when all of it is shown."""
    return levels[n - 1][0] if len(levels) >= n else None


def _inside(px: int, side: Side, bound: int | None) -> bool:
    return bound is None or (px >= bound if side == Side.BUY else px <= bound)


def _tighter(side: Side, a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b) if side == Side.BUY else min(a, b)


class _Replayer:
    def __init__(self, n_levels: int, impl: Impl, check_priority: bool) -> None:
        self.n = n_levels
        self.book = OrderBook(BookConfig(max_span_ticks=1 << 22), impl=impl)
        self.check_priority = check_priority
        self.c = _Counts()
        self.next_synth = SYNTH_BASE

    # ------------------------------------------------------------ book edits

    def _synth_id(self) -> int:
        self.next_synth += 1
        return self.next_synth

    def _add_synthetic(self, side: Side, px: int, qty: int) -> None:
        r = self.book.submit(self._synth_id(), side, px, qty, OrderType.POST_ONLY)
        if not r.ok:
            name = RejectReason(r.reason).label
            self.c.rejected_adds[f"synthetic_{name}"] = self.c.rejected_adds.get(f"synthetic_{name}", 0) + 1

    def _reduce(self, oid: int, px: int, open_qty: int, by: int) -> None:
        if by >= open_qty:
            self.book.cancel(oid)
        else:
            self.book.replace(oid, px, open_qty - by)  # size down keeps queue priority

    def _reduce_level(self, side: Side, px: int, qty: int, counter: dict[str, int]) -> int:
        """Take qty out of the level: synthetic orders first (head first), then known orders from the back
        (those are stale: the level was out of view while they left; counted in counter["qty_from_known_orders"]).
        Returns what could not be taken."""
        queue = self.book.level_orders(side, px)
        order = [o for o in queue if o.order_id >= SYNTH_BASE] + [
            o for o in reversed(queue) if o.order_id < SYNTH_BASE]
        for o in order:
            if qty <= 0:
                break
            take = min(qty, o.qty)
            self._reduce(o.order_id, px, o.qty, take)
            qty -= take
            if o.order_id < SYNTH_BASE:
                counter["qty_from_known_orders"] += take
        return qty

    def _set_level(self, side: Side, px: int, target: int) -> None:
        cur = sum(o.qty for o in self.book.level_orders(side, px))
        if cur == target:
            return
        self.c.resync["levels_set"] += 1
        if target > cur:
            self._add_synthetic(side, px, target - cur)
            self.c.resync["qty_added"] += target - cur
        else:
            self.c.resync["qty_removed"] += cur - target - self._reduce_level(side, px, cur - target, self.c.resync)

    def _resync(self, side: Side, snap: list[tuple[int, int]], lo: int | None, hi: int | None) -> None:
        """Make the book equal the snapshot on prices beyond `lo` (exclusive; None = from the top) up to `hi`
        (inclusive; None = the whole side)."""
        def region(px: int) -> bool:
            beyond_lo = lo is None or (px < lo if side == Side.BUY else px > lo)
            return beyond_lo and _inside(px, side, hi)
        want = {px: sz for px, sz in snap if region(px)}
        m = self.n + 2
        while True:  # book levels down to `hi` (usually only a few)
            top = self.book.depth(side, m)
            if len(top) < m or not _inside(top[-1].price, side, hi):
                break
            m *= 4
        have = {lv.price for lv in top if region(lv.price)}
        for px in sorted(have | set(want)):
            self._set_level(side, px, want.get(px, 0))

    # ------------------------------------------------------------ messages

    def seed(self, snap: dict[Side, list[tuple[int, int]]]) -> None:
        for side in (Side.BUY, Side.SELL):
            for px, sz in snap[side]:
                self._add_synthetic(side, px, sz)

    def apply(self, row: int, typ: int, oid: int, size: int, px: int, direction: int) -> None:
        name = TYPE_NAMES.get(typ, f"type_{typ}")
        self.c.by_type[name] = self.c.by_type.get(name, 0) + 1
        side = Side.BUY if direction == 1 else Side.SELL
        if typ == ADD:
            r = self.book.submit(oid, side, px, size, OrderType.POST_ONLY)
            if not r.ok:
                label = RejectReason(r.reason).label
                self.c.rejected_adds[label] = self.c.rejected_adds.get(label, 0) + 1
            return
        if typ not in (PARTIAL_CANCEL, DELETE, EXECUTE):
            return  # hidden executions, crosses and halts do not change the visible book
        o = self.book.order(oid)
        if o is None or o.side != side or o.price != px:
            key = "execute" if typ == EXECUTE else name
            self.c.unknown[key] += 1
            self.c.unknown["unmatched_qty"] += self._reduce_level(side, px, size, self.c.unknown)
            return
        if typ == EXECUTE:
            self._execute_known(row, oid, side, px, size, o.qty)
            return
        if size > o.qty:
            self.c.size_mismatches += 1
        if typ == DELETE:
            self.book.cancel(oid)
            if size > o.qty:
                self.c.unknown["unmatched_qty"] += self._reduce_level(side, px, size - o.qty, self.c.unknown)
        else:
            self._reduce(oid, px, o.qty, size)
            if size > o.qty:
                self.c.unknown["unmatched_qty"] += self._reduce_level(side, px, size - o.qty, self.c.unknown)

    def _execute_known(self, row: int, oid: int, side: Side, px: int, size: int, open_qty: int) -> None:
        queue = self.book.level_orders(side, px)
        head = queue[0].order_id if queue else None
        if self.check_priority:
            self.c.executions_checked += 1
            if head != oid:
                self.c.n_violations += 1
                if len(self.c.violations) < MAX_EXAMPLES:
                    ahead = []
                    for q in queue:
                        if q.order_id == oid:
                            break
                        ahead.append(q.order_id)
                    label = "bid" if side == Side.BUY else "ask"
                    self.c.violations.append(PriorityViolation(row, oid, px, label, ahead))
        best = self.book.best_bid() if side == Side.BUY else self.book.best_ask()
        if head == oid and best == px and open_qty >= size:
            # the matching engine does the fill: an IOC from the other side must take exactly this order
            taker = self._synth_id()
            r = self.book.submit(taker, Side(1 - side), px, size, OrderType.IOC)
            self.c.engine_executions += 1
            if [(e.maker_id, e.price, e.qty) for e in r.executions] != [(oid, px, size)] or r.cancels:
                self.c.engine_mismatches += 1
            return
        if size > open_qty:
            self.c.size_mismatches += 1
        self._reduce(oid, px, open_qty, size)
        if size > open_qty:
            self.c.unknown["unmatched_qty"] += self._reduce_level(side, px, size - open_qty, self.c.unknown)

    # ------------------------------------------------------------ snapshots

    def compare(self, row: int, snap: dict[Side, list[tuple[int, int]]],
                prev_bound: dict[Side, int | None]) -> None:
        self.c.compared_rows += 1
        bad = False
        for side in (Side.BUY, Side.SELL):
            label = "bid" if side == Side.BUY else "ask"
            bound_now = _bound(snap[side], self.n)
            bound = _tighter(side, prev_bound[side], bound_now)
            want = [lv for lv in snap[side] if _inside(lv[0], side, bound)]
            got = [(lv.price, lv.qty) for lv in self.book.depth(side, self.n + 1) if _inside(lv.price, side, bound)]
            for i in range(max(len(want), len(got))):
                w = want[i] if i < len(want) else None
                g = got[i] if i < len(got) else None
                if w != g:
                    bad = True
                    counts = self.c.per_level.setdefault(label, [0] * self.n)
                    counts[min(i, self.n - 1)] += 1
                    if len(self.c.examples) < MAX_EXAMPLES:
                        self.c.examples.append(LevelMismatch(row, label, i + 1, w, g))
            if bad:  # do not let one error cascade: take the whole visible side from the snapshot
                self._resync(side, snap[side], None, bound_now)
            elif bound != bound_now:  # levels that just came into view
                self._resync(side, snap[side], bound, bound_now)
        if bad:
            self.c.mismatched_rows += 1
            self.c.resync["after_mismatch"] += 1


def replay_lobster(messages_csv: Path | str, orderbook_csv: Path | str, levels: int | None = None,
                   impl: Impl = "numba", check_priority: bool | None = None) -> LobsterReport:
    """Replay a LOBSTER message file against its orderbook file. `levels`: compare only the best N levels
    (default: all in the file). `check_priority`: default on for files with >= 10 levels."""
    msgs, books = load(messages_csv, orderbook_csv)
    file_levels = books.shape[1] // 4
    n = file_levels if levels is None else levels
    if not 1 <= n <= file_levels:
        raise ValueError(f"levels must be in 1..{file_levels}")
    rep = _Replayer(n, impl, file_levels >= 10 if check_priority is None else check_priority)

    def snap_of(k: int) -> dict[Side, list[tuple[int, int]]]:
        return {s: _snapshot_side(books[k], s, n) for s in (Side.BUY, Side.SELL)}

    first = snap_of(0)
    start = 0
    if msgs.shape[0] and msgs[0, 0] == ADD:  # undo the first add so that order is a known one
        typ, oid, size, px, direction = msgs[0].tolist()
        side = Side.BUY if direction == 1 else Side.SELL
        seed = dict(first)
        seed[side] = [(p, s - size if p == px else s) for p, s in first[side] if p != px or s > size]
    else:  # seed from the state after message 0 and start at message 1
        seed = first
        start = 1
    rep.seed(seed)
    bound = {s: _bound(first[s], n) for s in (Side.BUY, Side.SELL)}
    for k in range(start, msgs.shape[0]):
        typ, oid, size, px, direction = msgs[k].tolist()
        rep.apply(k, typ, oid, size, px, direction)
        snap = first if k == 0 else snap_of(k)
        rep.compare(k, snap, bound)
        bound = {s: _bound(snap[s], n) for s in (Side.BUY, Side.SELL)}
    c = rep.c
    return LobsterReport(
        messages_csv=str(messages_csv), orderbook_csv=str(orderbook_csv), file_levels=file_levels, levels=n,
        messages=int(msgs.shape[0]), by_type=c.by_type, compared_rows=c.compared_rows,
        mismatched_rows=c.mismatched_rows,
        mismatches_per_level={s: c.per_level.get(s, [0] * n) for s in ("bid", "ask")},
        mismatch_examples=c.examples, priority_checked=rep.check_priority,
        executions_checked=c.executions_checked, priority_violations=c.n_violations,
        priority_examples=c.violations, engine_executions=c.engine_executions,
        engine_mismatches=c.engine_mismatches, unknown=c.unknown, resync=c.resync,
        rejected_adds=c.rejected_adds, size_mismatches=c.size_mismatches,
    )
