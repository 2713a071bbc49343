"""Order book: one test class run against both implementations, plus engine-vs-reference on random flow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from trading.book import OrderBook, replay
from trading.book_types import (
    COMMAND_DTYPE,
    BookConfig,
    CancelReason,
    Op,
    OrderState,
    OrderType,
    RejectReason,
    Side,
    StpPolicy,
    command,
)
from trading.journal import Journal

BUY, SELL = Side.BUY, Side.SELL
R = RejectReason


def random_commands(n: int, seed: int, tick: int = 1, center: int = 1000, width: int = 20, owners: int = 6,
                    far_every: int = 200) -> np.ndarray:
    """Mixed flow that trades a lot: all ops and order types, some invalid commands, STP-prone owners."""
    rng = np.random.default_rng(seed)
    cmds = np.zeros(n, COMMAND_DTYPE)
    u = rng.random(n)
    op = np.where(u < 0.55, Op.NEW, np.where(u < 0.75, Op.CANCEL, Op.REPLACE))
    otype = rng.choice(5, size=n, p=[0.6, 0.05, 0.12, 0.08, 0.15])
    side = rng.integers(0, 2, n)
    ticks = center + rng.integers(-width, width + 1, n)
    far = rng.integers(0, far_every, n) == 0  # distant prices: window growth and band rejects
    ticks = np.where(far, center + rng.integers(-5000, 5000, n), ticks)
    price = ticks * tick
    off = rng.integers(0, 100, n) == 0
    price = np.where(off & (tick > 1), price + 1, price)
    qty = rng.integers(1, 50, n)
    qty = np.where(rng.integers(0, 150, n) == 0, -rng.integers(0, 3, n), qty)
    new_ids = np.cumsum(op == Op.NEW)
    # cancels/replaces mostly target recent ids (live, filled or cancelled), some never-seen ones
    target = np.maximum(new_ids - rng.integers(0, 40, n), 0)
    target = np.where(rng.integers(0, 50, n) == 0, 10**9 + rng.integers(0, 10, n), target)
    oid = np.where(op == Op.NEW, new_ids, target)
    dup = (op == Op.NEW) & (rng.integers(0, 200, n) == 0)
    oid = np.where(dup, np.maximum(new_ids - 3, 1), oid)
    cmds["op"] = op
    cmds["otype"] = otype
    cmds["side"] = side
    cmds["order_id"] = oid
    cmds["price"] = price
    cmds["qty"] = qty
    cmds["owner"] = rng.integers(0, owners, n)
    return cmds


@pytest.fixture(params=["numba", "python"])
def impl(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _book(impl: str, **cfg: object) -> OrderBook:
    return OrderBook(BookConfig.from_dict(dict(cfg)), impl=impl)  # type: ignore[arg-type]


def _ids(book: OrderBook, side: Side, price: int) -> list[int]:
    return [o.order_id for o in book.level_orders(side, price)]


class TestBook:
    def test_limit_orders_rest_and_levels_aggregate(self, impl: str) -> None:
        b = _book(impl)
        for oid, side, px, q in [(1, BUY, 99, 5), (2, BUY, 100, 3), (3, BUY, 100, 4), (4, SELL, 102, 7),
                                 (5, SELL, 101, 1)]:
            assert b.submit(oid, side, px, q).reason == R.OK
        assert b.best_bid() == 100 and b.best_ask() == 101
        assert [(lv.price, lv.qty, lv.orders) for lv in b.depth(BUY)] == [(100, 7, 2), (99, 5, 1)]
        assert [(lv.price, lv.qty) for lv in b.depth(SELL)] == [(101, 1), (102, 7)]
        assert len(b) == 5
        o = b.order(3)
        assert o is not None and (o.side, o.price, o.qty) == (BUY, 100, 4)

    def test_price_then_time_priority(self, impl: str) -> None:
        b = _book(impl)
        b.submit(1, SELL, 101, 5)
        b.submit(2, SELL, 100, 5)
        b.submit(3, SELL, 100, 5)
        b.submit(4, SELL, 100, 5)
        r = b.submit(9, BUY, 101, 17)
        assert [(e.maker_id, e.price, e.qty, e.maker_remaining) for e in r.executions] == [
            (2, 100, 5, 0), (3, 100, 5, 0), (4, 100, 5, 0), (1, 101, 2, 3)]
        assert all(e.taker_id == 9 and e.taker_side == BUY for e in r.executions)
        assert len(b) == 1 and b.order_state(2) == OrderState.FILLED and b.order(1).qty == 3  # type: ignore[union-attr]

    def test_limit_remainder_rests_after_sweeping(self, impl: str) -> None:
        b = _book(impl)
        b.submit(1, BUY, 100, 2)
        b.submit(2, BUY, 99, 2)
        r = b.submit(3, SELL, 99, 10)
        assert r.filled == 4 and not r.cancels
        assert b.best_bid() is None and b.best_ask() == 99 and b.order(3).qty == 6  # type: ignore[union-attr]

    def test_market_order_sweeps_and_cancels_rest(self, impl: str) -> None:
        b = _book(impl)
        b.submit(1, SELL, 100, 3)
        b.submit(2, SELL, 105, 3)
        r = b.submit(3, BUY, 0, 10, OrderType.MARKET)
        assert [(e.maker_id, e.price, e.qty) for e in r.executions] == [(1, 100, 3), (2, 105, 3)]
        assert [(c.order_id, c.qty, c.reason) for c in r.cancels] == [(3, 4, CancelReason.UNFILLED)]
        assert len(b) == 0 and b.order_state(3) == OrderState.CANCELLED
        empty = b.submit(4, SELL, 0, 5, OrderType.MARKET)
        assert empty.ok and not empty.executions and empty.cancels[0].qty == 5

    def test_ioc_never_rests(self, impl: str) -> None:
        b = _book(impl)
        b.submit(1, BUY, 100, 4)
        b.submit(2, BUY, 98, 4)
        r = b.submit(3, SELL, 99, 10, OrderType.IOC)
        assert [(e.maker_id, e.qty) for e in r.executions] == [(1, 4)]
        assert [(c.order_id, c.price, c.qty) for c in r.cancels] == [(3, 99, 6)]
        assert b.best_ask() is None and b.best_bid() == 98

    def test_fok_fills_all_or_nothing(self, impl: str) -> None:
        b = _book(impl)
        b.submit(1, SELL, 100, 4)
        b.submit(2, SELL, 101, 4)
        b.submit(3, SELL, 103, 4)
        before = b.snapshot()
        assert b.submit(4, BUY, 101, 9, OrderType.FOK).reason == R.FOK_UNFILLABLE
        assert b.snapshot() == before and b.order_state(4) == OrderState.UNKNOWN
        r = b.submit(4, BUY, 101, 8, OrderType.FOK)
        assert r.ok and r.filled == 8 and not r.cancels and b.best_ask() == 103

    def test_post_only(self, impl: str) -> None:
        b = _book(impl)
        b.submit(1, SELL, 101, 5)
        before = b.snapshot()
        assert b.submit(2, BUY, 101, 5, OrderType.POST_ONLY).reason == R.POST_ONLY_WOULD_CROSS
        assert b.snapshot() == before
        assert b.submit(2, BUY, 100, 5, OrderType.POST_ONLY).ok and b.best_bid() == 100
        assert b.replace(2, 101, 5).reason == R.POST_ONLY_WOULD_CROSS  # stays post-only when moved
        assert b.replace(2, 99, 5).ok and b.best_bid() == 99

    def test_cancel_and_its_rejects(self, impl: str) -> None:
        b = _book(impl)
        b.submit(1, BUY, 100, 5)
        b.submit(2, SELL, 101, 5)
        b.submit(3, BUY, 101, 5)  # fills 2
        assert b.cancel(1).ok and len(b) == 0 and b.best_bid() is None
        assert b.cancel(1).reason == R.ORDER_CANCELLED
        assert b.cancel(2).reason == R.ORDER_FILLED
        assert b.cancel(77).reason == R.UNKNOWN_ORDER

    def test_replace_priority_rules(self, impl: str) -> None:
        b = _book(impl)
        for oid in (1, 2, 3):
            b.submit(oid, BUY, 100, 10)
        assert b.replace(1, 100, 6).ok  # size down: keeps the head of the queue
        assert _ids(b, BUY, 100) == [1, 2, 3]
        assert b.replace(2, 100, 12).ok  # size up: back of the queue
        assert _ids(b, BUY, 100) == [1, 3, 2]
        assert b.replace(1, 99, 6).ok and b.replace(1, 100, 6).ok  # away and back: loses its place
        assert _ids(b, BUY, 100) == [3, 2, 1]
        r = b.submit(9, SELL, 100, 11)
        assert [(e.maker_id, e.qty) for e in r.executions] == [(3, 10), (2, 1)]
        assert [lv.qty for lv in b.depth(BUY)] == [17]

    def test_replace_to_crossing_price_trades_as_taker(self, impl: str) -> None:
        b = _book(impl)
        b.submit(1, SELL, 101, 3)
        b.submit(2, BUY, 99, 5)
        r = b.replace(2, 101, 5)
        assert [(e.taker_id, e.maker_id, e.price, e.qty) for e in r.executions] == [(2, 1, 101, 3)]
        assert b.order(2).price == 101 and b.order(2).qty == 2  # type: ignore[union-attr]
        b.submit(3, SELL, 101, 2)
        assert b.order_state(2) == OrderState.FILLED
        assert b.replace(2, 100, 1).reason == R.ORDER_FILLED
        assert b.replace(42, 100, 1).reason == R.UNKNOWN_ORDER

    def test_stp_cancel_resting_is_default(self, impl: str) -> None:
        b = _book(impl)
        b.submit(1, SELL, 100, 5, owner=7)
        b.submit(2, SELL, 100, 5, owner=8)
        b.submit(3, SELL, 101, 5, owner=7)
        r = b.submit(4, BUY, 101, 12, owner=7)
        assert [(c.order_id, c.qty, c.reason) for c in r.cancels] == [
            (1, 5, CancelReason.STP_RESTING), (3, 5, CancelReason.STP_RESTING)]
        assert [(e.maker_id, e.qty) for e in r.executions] == [(2, 5)]
        assert b.order(4).qty == 7 and b.order_state(1) == OrderState.CANCELLED  # type: ignore[union-attr]

    def test_stp_cancel_incoming(self, impl: str) -> None:
        b = _book(impl, stp=int(StpPolicy.CANCEL_INCOMING))
        b.submit(1, SELL, 100, 5, owner=8)
        b.submit(2, SELL, 100, 5, owner=7)
        b.submit(3, SELL, 100, 5, owner=8)
        r = b.submit(4, BUY, 100, 12, owner=7)
        assert [(e.maker_id, e.qty) for e in r.executions] == [(1, 5)]
        assert [(c.order_id, c.qty, c.reason) for c in r.cancels] == [(4, 7, CancelReason.STP_INCOMING)]
        assert _ids(b, SELL, 100) == [2, 3] and b.order_state(4) == OrderState.CANCELLED
        # FOK counts only what it could take before meeting its own order
        assert b.submit(5, BUY, 100, 6, OrderType.FOK, owner=8).reason == R.FOK_UNFILLABLE

    def test_anonymous_owner_never_self_trade_prevented(self, impl: str) -> None:
        b = _book(impl)
        b.submit(1, SELL, 100, 5)
        r = b.submit(2, BUY, 100, 5)
        assert r.filled == 5 and not r.cancels

    @pytest.mark.parametrize(("cmd", "reason"), [
        ((Op.NEW, OrderType.LIMIT, BUY, 50, 100, 0, 0), R.BAD_SIZE),
        ((Op.NEW, OrderType.LIMIT, SELL, 50, 100, -3, 0), R.BAD_SIZE),
        ((Op.NEW, OrderType.LIMIT, BUY, 50, 101, 5, 0), R.OFF_TICK),
        ((Op.NEW, OrderType.IOC, SELL, 50, 97, 5, 0), R.OFF_TICK),
        ((Op.NEW, OrderType.LIMIT, BUY, 1, 100, 5, 0), R.DUPLICATE_ID),  # live id
        ((Op.NEW, OrderType.LIMIT, BUY, 3, 100, 5, 0), R.DUPLICATE_ID),  # cancelled id
        ((Op.NEW, OrderType.LIMIT, 2, 50, 100, 5, 0), R.BAD_COMMAND),
        ((Op.NEW, 9, BUY, 50, 100, 5, 0), R.BAD_COMMAND),
        ((7, 0, BUY, 50, 100, 5, 0), R.BAD_COMMAND),
        ((Op.NEW, OrderType.LIMIT, BUY, -1, 100, 5, 0), R.BAD_ORDER_ID),
        ((Op.NEW, OrderType.LIMIT, BUY, 50, 100 + 5 * 2000, 5, 0), R.PRICE_OUT_OF_BAND),
        ((Op.NEW, OrderType.POST_ONLY, BUY, 50, 110, 5, 0), R.POST_ONLY_WOULD_CROSS),
        ((Op.NEW, OrderType.FOK, BUY, 50, 110, 500, 0), R.FOK_UNFILLABLE),
        ((Op.CANCEL, 0, 0, 99, 0, 0, 0), R.UNKNOWN_ORDER),
        ((Op.CANCEL, 0, 0, 3, 0, 0, 0), R.ORDER_CANCELLED),
        ((Op.REPLACE, 0, 0, 99, 100, 5, 0), R.UNKNOWN_ORDER),
        ((Op.REPLACE, 0, 0, 4, 100, 5, 0), R.ORDER_FILLED),
        ((Op.REPLACE, 0, 0, 1, 100, 0, 0), R.BAD_SIZE),
        ((Op.REPLACE, 0, 0, 1, 102, 5, 0), R.OFF_TICK),
        ((Op.REPLACE, 0, 0, 1, 100 - 5 * 2000, 5, 0), R.PRICE_OUT_OF_BAND),
    ])
    def test_rejects_leave_book_untouched(self, impl: str, cmd: tuple[int, ...], reason: RejectReason) -> None:
        b = _book(impl, tick_size=5, max_span_ticks=1000)
        b.submit(1, BUY, 100, 10)
        b.submit(3, BUY, 95, 10)
        b.cancel(3)
        b.submit(4, SELL, 115, 5)
        b.submit(5, BUY, 115, 5)  # fills 4
        b.submit(2, SELL, 110, 10)
        before = b.snapshot()
        c = np.zeros(1, COMMAND_DTYPE)
        c[0] = cmd
        out = b.process(c)
        assert RejectReason(int(out.results[0])) == reason
        assert out.events.shape[0] == 0
        assert b.snapshot() == before

    def test_tick_grid_and_negative_prices(self, impl: str) -> None:
        tick = 10_000_000  # 0.01 in 9-decimal fixed point
        b = _book(impl, tick_size=tick)
        assert b.submit(1, BUY, -37_630_000_000, 2).ok  # WTI, April 2020
        assert b.submit(2, BUY, -37_640_000_000, 2).ok
        assert b.submit(3, BUY, -37_635_000_000, 2).reason == R.OFF_TICK
        r = b.submit(4, SELL, -37_640_000_000, 3)
        assert [(e.maker_id, e.price) for e in r.executions] == [(1, -37_630_000_000), (2, -37_640_000_000)]
        assert b.best_bid() == -37_640_000_000

    def test_distant_prices_regrow_the_window(self, impl: str) -> None:
        b = _book(impl)
        prices = [0, 500_000, -400_000, 3, 999_990 - 400_000, -400_000]
        for i, px in enumerate(prices):
            assert b.submit(i + 1, BUY if px <= 3 else SELL, px, 1).ok
        assert [lv.price for lv in b.depth(BUY)] == [3, 0, -400_000]
        assert [lv.price for lv in b.depth(SELL)] == [500_000, 599_990]
        assert b.submit(99, SELL, 600_001, 1).reason == R.PRICE_OUT_OF_BAND
        r = b.submit(7, SELL, -400_000, 10, OrderType.IOC)
        assert [e.maker_id for e in r.executions] == [4, 1, 3, 6]

    def test_deep_book_grows_and_sweeps(self, impl: str) -> None:
        # 5000 resting orders over a wide range: the numba book grows its pool, id table, level window and
        # event buffer while commands run; one market order then sweeps everything in price-time order
        rng = np.random.default_rng(3)
        n = 5000
        cmds = np.zeros(n + 1, COMMAND_DTYPE)
        cmds["order_id"][:n] = np.arange(1, n + 1)
        cmds["side"][:n] = SELL
        cmds["price"][:n] = rng.integers(-30_000, 30_000, n)
        cmds["qty"][:n] = rng.integers(1, 5, n)
        cmds[n] = (Op.NEW, OrderType.MARKET, BUY, n + 1, 0, 10**9, 0)
        out = _book(impl).process(cmds)
        assert (out.results == R.OK).all()
        trades = out.trades
        assert trades.shape[0] == n and (trades["cmd"] == n).all()
        order = np.lexsort((cmds["order_id"][:n], cmds["price"][:n]))  # price, then arrival
        assert np.array_equal(trades["maker_id"], cmds["order_id"][:n][order])
        assert trades["qty"].sum() == cmds["qty"][:n].sum()

    def test_batch_equals_one_at_a_time(self, impl: str) -> None:
        cmds = random_commands(3000, seed=5, tick=5)
        cfg = BookConfig(tick_size=5, max_span_ticks=2000)
        batch = OrderBook(cfg, impl=impl).process(cmds)  # type: ignore[arg-type]
        one = OrderBook(cfg, impl=impl)  # type: ignore[arg-type]
        events = []
        for i, c in enumerate(cmds.tolist()):
            r, ev = one.execute_raw(*c)
            assert r == batch.results[i]
            ev = ev.copy()
            ev[:, 0] = i
            events.append(ev)
        assert np.array_equal(np.concatenate(events), batch.events.view(np.int64).reshape(-1, 9))

    def test_journal_rebuilds_identical_book(self, impl: str, tmp_path: Path) -> None:
        cfg = BookConfig(tick_size=5, max_span_ticks=2000, stp=StpPolicy.CANCEL_INCOMING)
        path = tmp_path / "book.journal"
        with Journal(cfg, path) as journal:
            book = OrderBook(cfg, impl=impl, journal=journal)  # type: ignore[arg-type]
            cmds = random_commands(4000, seed=11, tick=5)
            book.process(cmds[:3000])
            for c in cmds[3000:].tolist():
                book.execute_raw(*c)
            book.submit(10**12, BUY, 5, 1)
        assert 0 < len(journal) < cmds.shape[0]
        loaded = Journal.open(path)
        assert loaded.config == cfg and np.array_equal(loaded.commands(), journal.commands())
        for target in ("numba", "python"):
            assert replay(loaded, impl=target).snapshot() == book.snapshot()  # type: ignore[arg-type]
        assert journal.rebuild().snapshot() == book.snapshot()
        loaded.close()

    def test_torn_journal_is_refused(self, impl: str, tmp_path: Path) -> None:
        path = tmp_path / "j"
        with Journal(BookConfig(), path) as j:
            OrderBook(impl=impl, journal=j).submit(1, BUY, 100, 1)  # type: ignore[arg-type]
        with path.open("ab") as fh:
            fh.write(b"\x01\x02")
        with pytest.raises(ValueError, match="torn"):
            Journal.open(path)


def _run(cmds: np.ndarray, cfg: BookConfig, impl: str) -> tuple[np.ndarray, np.ndarray, object]:
    book = OrderBook(cfg, impl=impl)  # type: ignore[arg-type]
    out = book.process(cmds)
    return out.results, out.events, book.snapshot()


@pytest.mark.parametrize(("n", "cfg", "seed"), [
    (100_000, BookConfig(max_span_ticks=3000), 1),
    (20_000, BookConfig(tick_size=5, stp=StpPolicy.CANCEL_INCOMING, max_span_ticks=8000), 2),
])
def test_engine_matches_reference_on_random_flow(n: int, cfg: BookConfig, seed: int) -> None:
    cmds = random_commands(n, seed=seed, tick=cfg.tick_size)
    res_n, ev_n, snap_n = _run(cmds, cfg, "numba")
    res_p, ev_p, snap_p = _run(cmds, cfg, "python")
    assert np.array_equal(res_n, res_p)
    assert np.array_equal(ev_n, ev_p)
    assert snap_n == snap_p
    # the flow really exercises the engine
    reasons = set(np.unique(res_n).tolist())
    assert {R.OK, R.BAD_SIZE, R.DUPLICATE_ID, R.UNKNOWN_ORDER, R.ORDER_FILLED, R.ORDER_CANCELLED,
            R.FOK_UNFILLABLE, R.POST_ONLY_WOULD_CROSS, R.PRICE_OUT_OF_BAND} <= reasons
    assert (ev_n["kind"] == 0).sum() > n // 10 and (ev_n["reason"] == CancelReason.STP_RESTING).sum() + (
        ev_n["reason"] == CancelReason.STP_INCOMING).sum() > 0


def test_command_helper_roundtrip() -> None:
    c = command(Op.NEW, 7, 100, 3, SELL, OrderType.IOC, owner=2)
    assert c.dtype == COMMAND_DTYPE and c[0]["order_id"] == 7 and c[0]["otype"] == OrderType.IOC
