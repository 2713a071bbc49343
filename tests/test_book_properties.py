"""Hypothesis properties of the order book, checked against an independent quantity ledger after every command:
never crossed, quantity conserved (every unit is traded, cancelled or resting), FIFO within each level
(makers are consumed as a prefix of the level's queue), and the engine agrees with the reference."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trading.book import OrderBook
from trading.book_types import BookConfig, EventKind, Op, OrderType, RejectReason, Side, StpPolicy

Cmd = tuple[int, int, int, int, int, int, int]

commands = st.lists(
    st.tuples(
        st.sampled_from([Op.NEW] * 6 + [Op.CANCEL] * 2 + [Op.REPLACE] * 3),
        st.sampled_from([OrderType.LIMIT] * 4 + list(OrderType)),
        st.integers(0, 1),  # side
        st.integers(0, 30),  # id pick
        st.integers(97, 104),  # price (tick 1)
        st.integers(-1, 12),  # qty (<= 0 is rejected)
        st.integers(0, 3),  # owner (0 = anonymous)
    ),
    min_size=20,
    max_size=120,
)


class Ledger:
    """What the book should hold, derived only from accepted commands and the reported events."""

    def __init__(self) -> None:
        self.open: dict[int, int] = {}  # live order id -> open qty
        self.seq: dict[int, int] = {}  # priority time of live orders
        self.price: dict[int, int] = {}
        self.clock = 0

    def stamp(self, oid: int) -> None:
        self.clock += 1
        self.seq[oid] = self.clock


def _levels(rest: np.ndarray) -> dict[tuple[int, int], list[int]]:
    out: dict[tuple[int, int], list[int]] = {}
    for side, price, oid, _, _ in rest.tolist():
        out.setdefault((side, price), []).append(oid)
    return out


def _check_command(book: OrderBook, ref: OrderBook, led: Ledger, c: Cmd) -> None:
    op, otype, side, oid, price, qty, owner = c
    before = book.resting()
    queues = _levels(before)
    r, ev = book.execute_raw(*c)
    ev = ev.copy()
    r_ref, ev_ref = ref.execute_raw(*c)
    assert r == r_ref and np.array_equal(ev, ev_ref), "engine and reference disagree"
    after = book.resting()
    if r != RejectReason.OK:
        assert ev.shape[0] == 0 and np.array_equal(before, after), "a reject changed the book"
        return
    old_open = led.open.get(oid, 0)
    old_price = led.price.get(oid)
    if op == Op.NEW:
        led.open[oid] = qty
    elif op == Op.CANCEL:
        led.open[oid] = 0
    else:
        led.open[oid] = qty
    owners = dict(zip(before["order_id"].tolist(), before["owner"].tolist(), strict=True))
    taker_side = side if op == Op.NEW else (int(before[before["order_id"] == oid]["side"][0]))
    taker_owner = owner if op == Op.NEW else owners[oid]
    limit = None if op == Op.NEW and otype == OrderType.MARKET else price
    consumed: dict[tuple[int, int], list[int]] = {}
    last_px: int | None = None
    for _, kind, _, tside, taker, maker, px, q, mrem in ev.tolist():
        assert q > 0
        led.open[maker] -= q
        if kind == EventKind.TRADE:
            assert taker == oid and tside == taker_side and maker != oid
            assert taker_owner == 0 or owners[maker] != taker_owner, "self-trade"
            led.open[taker] -= q
            assert led.open[maker] == mrem and mrem >= 0 and led.open[taker] >= 0
            if limit is not None:  # never worse than the taker's limit
                assert px <= limit if taker_side == Side.BUY else px >= limit
            if last_px is not None:  # best prices first
                assert px >= last_px if taker_side == Side.BUY else px <= last_px
            last_px = px
        else:
            assert led.open[maker] == 0
        if maker != oid:
            consumed.setdefault((1 - taker_side, px), []).append(maker)
    for key, makers in consumed.items():  # makers leave a level in queue order: a prefix of it
        queue = [m for m in queues[key] if m != oid]
        uniq = list(dict.fromkeys(makers))
        assert queue[: len(uniq)] == uniq, f"priority broken at {key}: {uniq} vs queue {queue}"
    # priority time: new resting orders, moved orders and size-ups go to the back
    live_after = set(after["order_id"].tolist())
    if oid in live_after and op != Op.CANCEL and (op == Op.NEW or price != old_price or qty > old_open):
        led.stamp(oid)
    if oid in live_after:
        led.price[oid] = price
    for k in [k for k, v in led.open.items() if v == 0]:
        del led.open[k]
        led.seq.pop(k, None)
        led.price.pop(k, None)
    # conservation: the book holds exactly the open quantity of the ledger
    assert {o: q for o, q in zip(after["order_id"].tolist(), after["qty"].tolist(), strict=True)} == led.open
    # FIFO: within every level, priority times increase from head to tail
    for queue in _levels(after).values():
        seqs = [led.seq[o] for o in queue]
        assert seqs == sorted(seqs)
    # never crossed after matching
    bid, ask = book.best_bid(), book.best_ask()
    assert bid is None or ask is None or bid < ask


class Concretizer:
    """Turns drawn picks into commands using the current book, so cancels/replaces mostly hit live orders and
    replaces cover size down, size up and moves. NEW gets a fresh id unless its pick is small (a duplicate)."""

    def __init__(self) -> None:
        self.fresh = 100

    def __call__(self, book: OrderBook, raw: Cmd) -> Cmd:
        op, otype, side, pick, price, qty, owner = raw
        if op == Op.NEW:
            if pick > 4:
                self.fresh += 1
                pick = self.fresh
            price += -2 if side == Side.BUY else 2  # overlapping but mostly passive: deep enough queues
            return (int(op), otype, side, pick, price, qty, owner)
        live = book.resting()
        if pick <= 4 or live.shape[0] == 0:  # unknown, closed or duplicate-pick ids
            oid = pick if pick <= 4 else 100 + pick
            return (int(op), otype, side, oid, price, qty, owner)
        o = live[pick % live.shape[0]]
        oid, cur_px, cur_q = int(o["order_id"]), int(o["price"]), int(o["qty"])
        if op == Op.REPLACE:
            mode = price % 3
            if mode == 0:
                price, qty = cur_px, cur_q - 1 - qty % 3  # size down (<= 0 is a BAD_SIZE reject)
            elif mode == 1:
                price, qty = cur_px, cur_q + max(qty, 0)  # size up (or unchanged)
        return (int(op), otype, side, oid, price, qty, owner)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(commands, st.sampled_from([StpPolicy.CANCEL_RESTING, StpPolicy.CANCEL_INCOMING]))
def test_book_invariants(raw: list[Cmd], stp: StpPolicy) -> None:
    cfg = BookConfig(stp=stp)
    book, ref, led = OrderBook(cfg, impl="numba"), OrderBook(cfg, impl="python"), Ledger()
    concretize = Concretizer()
    for r in raw:
        _check_command(book, ref, led, concretize(book, r))
    assert book.snapshot() == ref.snapshot()
