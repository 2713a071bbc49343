"""Trade module: quote board, risk score and limits, approvals, kill switch, positions/P&L, strategies, venue."""

from __future__ import annotations

import math
from decimal import Decimal

import numpy as np
import pytest

from market.columns import TickColumns
from market.events import ArbitrageSignal, Bar, CrashWarning, QuoteTick, TradeTick
from market.fixedpoint import PRICE_SCALE, to_fixed
from market.instruments import default_registry
from market.timeutil import NS_PER_MS, NS_PER_S
from market.units import default_units
from trading.book_types import Side
from trading.config import (
    ArbitrageStrategyConfig,
    CrashStrategyConfig,
    ExecutionConfig,
    InstrumentLimits,
    RiskConfig,
    TradeConfig,
    VenueConfig,
)
from trading.orders import OrderStatus, TradeModule, VenueCommand, VenueUpdate, round_to_grid
from trading.positions import Fill, PositionBook, canonical_per_lot, point_value
from trading.risk import QuoteBoard, RiskEngine, VolatilityTracker
from trading.strategies import ArbitrageStrategy, CrashStrategy, Sizer, make_strategies
from trading.venue import SimVenue

REG = default_registry()
UNITS = default_units()
T0 = 1_767_571_200_000_000_000
SEC = NS_PER_S


def board_with(quotes: dict[str, tuple[str, str]], ts: int = T0, size: int = 20) -> QuoteBoard:
    b = QuoteBoard(REG)
    for iid, (bid, ask) in quotes.items():
        assert b.update(REG.index_of(iid), to_fixed(bid), to_fixed(ask), size, size, ts)
    return b


GOLD_QUOTES = {"GC.COMEX": ("2650.0", "2650.2"), "GOLD.MCX": ("76000", "76002"), "USDINR.FX": ("83.9975", "84.0025")}


def fill(fid: int, iid: str, side: str, qty: int, price: str, fee: str = "0", usd: str = "1",
         ts: int = T0) -> Fill:
    return Fill(fill_id=fid, order_id=fid, instrument_id=iid, side=side, qty=qty, price=to_fixed(price), ts_event=ts,
                liquidity="taker", fee=Decimal(fee), usd_per_quote=Decimal(usd))


def arb_signal(state: str, ts: int = T0, buy: str = "GC.COMEX", sell: str = "GOLD.MCX") -> ArbitrageSignal:
    return ArbitrageSignal(pair_id=f"{buy}/{sell}", buy_instrument_id=buy, sell_instrument_id=sell, state=state,
                           gross_spread=to_fixed("20"), net_edge=to_fixed("15"), net_edge_bps=56.0,
                           canonical_unit="troy_oz", canonical_currency="USD", ts_event=ts, ts_recv=ts)


# -- quote board --------------------------------------------------------------------------------------------------


class TestQuoteBoard:
    def test_late_and_crossed_quotes_do_not_replace(self) -> None:
        b = board_with({"CL.NYMEX": ("70.00", "70.01")}, ts=T0 + 10)
        i = REG.index_of("CL.NYMEX")
        assert not b.update(i, to_fixed("69"), to_fixed("69.5"), 1, 1, T0 + 5)  # older
        assert not b.update(i, to_fixed("70.02"), to_fixed("70.01"), 1, 1, T0 + 20)  # crossed
        assert b.bid[i] == to_fixed("70.00") and b.ts[i] == T0 + 10
        assert b.update(i, to_fixed("70.01"), to_fixed("70.02"), 1, 1, T0 + 10)  # same time: newer delivery wins
        assert b.bid[i] == to_fixed("70.01")

    def test_update_many_equals_row_by_row(self) -> None:
        rng = np.random.default_rng(7)
        n = 500
        inst = rng.integers(0, len(REG), n)
        ts = T0 + rng.integers(0, 50, n)  # many ties and out-of-order rows
        bid = rng.integers(100, 110, n) * 1000
        ask = bid + rng.integers(-2, 5, n) * 1000  # some crossed / locked
        bs, as_ = rng.integers(1, 9, n), rng.integers(1, 9, n)
        a, b = QuoteBoard(REG), QuoteBoard(REG)
        for k in range(n):
            a.update(int(inst[k]), int(bid[k]), int(ask[k]), int(bs[k]), int(as_[k]), int(ts[k]))
        for lo, hi in ((0, 137), (137, 138), (138, 500)):
            b.update_many(inst[lo:hi], bid[lo:hi], ask[lo:hi], bs[lo:hi], as_[lo:hi], ts[lo:hi])
        for name in ("bid", "ask", "bid_size", "ask_size", "ts", "valid"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)

    def test_fx_rate_is_exact_mid(self) -> None:
        b = board_with({"USDINR.FX": ("83.9975", "84.0025")})
        assert b.fx_rates(UNITS) == {"INR": Decimal("84")}


# -- risk ---------------------------------------------------------------------------------------------------------


def engine(config: RiskConfig, board: QuoteBoard) -> RiskEngine:
    return RiskEngine(config, REG, UNITS, board, VolatilityTracker(config))


class TestRisk:
    cfg = RiskConfig(default_limits=InstrumentLimits(max_position_lots=10, max_notional_usd=4_000_000.0),
                     max_total_notional_usd=8_000_000.0, max_venue_notional_usd=6_000_000.0, unknown_vol_score=0.1)

    def test_components_and_score(self) -> None:
        b = board_with(GOLD_QUOTES)
        r = engine(self.cfg, b).assess("GC.COMEX", 4, T0, PositionBook(REG, UNITS), {})
        notional = 4 * Decimal("2650.1") * 100  # 4 lots x mid x 100 oz, USD
        assert r.components["position"] == pytest.approx(0.4)
        assert r.components["notional"] == pytest.approx(float(notional) / 4e6)
        assert r.components["total"] == pytest.approx(float(notional) / 8e6)
        assert r.components["venue"] == pytest.approx(float(notional) / 6e6)
        assert r.components["volatility"] == pytest.approx(0.1)  # unknown yet
        assert r.score == pytest.approx(max(r.components.values())) and 0 <= r.score <= 1
        assert r.increases_risk and not r.blocked

    def test_inr_notional_goes_through_fx(self) -> None:
        b = board_with(GOLD_QUOTES)
        r = engine(self.cfg, b).assess("GOLD.MCX", -3, T0, PositionBook(REG, UNITS), {})
        # 3 lots x 76001 INR/10g x 100 (10 g per kg) / 84 INR per USD
        assert r.components["notional"] == pytest.approx(3 * 76001 * 100 / 84 / 4e6)

    def test_open_orders_and_other_instruments_count(self) -> None:
        b = board_with(GOLD_QUOTES)
        pos = PositionBook(REG, UNITS)
        pos.apply(fill(1, "GOLD.MCX", "sell", 2, "76001"))
        r = engine(self.cfg, b).assess("GC.COMEX", 1, T0, pos, {"GC.COMEX": 3})
        assert r.components["position"] == pytest.approx(0.4)  # 3 open + 1
        gold = 2 * 76001 * 100 / 84
        assert r.components["total"] == pytest.approx((4 * 2650.1 * 100 + gold) / 8e6)
        assert r.components["venue"] == pytest.approx(4 * 2650.1 * 100 / 6e6)  # COMEX only

    def test_hard_limits_block(self) -> None:
        b = board_with(GOLD_QUOTES)
        r = engine(self.cfg, b).assess("GC.COMEX", 11, T0, PositionBook(REG, UNITS), {})
        assert r.blocked.startswith("limit:") and "position" in r.blocked and r.score == 1.0
        tight = RiskConfig(max_venue_notional_usd=1_000_000.0)
        r = engine(tight, b).assess("GC.COMEX", 4, T0, PositionBook(REG, UNITS), {})
        assert "venue" in r.blocked and "position" not in r.blocked

    def test_reducing_orders_score_zero_even_over_limits(self) -> None:
        b = board_with(GOLD_QUOTES)
        pos = PositionBook(REG, UNITS)
        pos.apply(fill(1, "GC.COMEX", "buy", 15, "2650"))  # over the 10-lot limit already
        r = engine(self.cfg, b).assess("GC.COMEX", -3, T0, pos, {})
        assert r.score == 0.0 and not r.blocked and not r.increases_risk
        same = engine(self.cfg, b).assess("GC.COMEX", -30, T0, pos, {})  # long 15 -> short 15: not more
        assert not same.increases_risk and same.score == 0.0
        flip = engine(self.cfg, b).assess("GC.COMEX", -31, T0, pos, {})
        assert flip.increases_risk and flip.blocked

    def test_stale_and_missing_data_block(self) -> None:
        b = board_with({"GC.COMEX": ("2650.0", "2650.2"), "GOLD.MCX": ("76000", "76002")})
        e = engine(self.cfg, b)
        stale = self.cfg.stale_quote_ms * NS_PER_MS
        assert not e.assess("GC.COMEX", 1, T0 + stale, PositionBook(REG, UNITS), {}).blocked
        r = e.assess("GC.COMEX", 1, T0 + stale + 1, PositionBook(REG, UNITS), {})
        assert r.blocked.startswith("stale quote: GC.COMEX")
        assert e.assess("CL.NYMEX", 1, T0, PositionBook(REG, UNITS), {}).blocked == "no quote for CL.NYMEX"
        assert e.assess("GOLD.MCX", 1, T0, PositionBook(REG, UNITS), {}).blocked.startswith("no FX rate for INR")
        # reducing orders are held by stale data too: nothing is priced off a stale quote
        pos = PositionBook(REG, UNITS)
        pos.apply(fill(1, "GC.COMEX", "buy", 2, "2650"))
        assert e.assess("GC.COMEX", -2, T0 + stale + 1, pos, {}).blocked.startswith("stale quote")
        assert e.assess("GC.COMEX", 1, T0, pos, {}, killed="ops").blocked == "kill switch: ops"

    def test_volatility_from_bars_parks_but_never_blocks(self) -> None:
        cfg = RiskConfig(vol_window_bars=30, min_vol_bars=5, max_vol_bps=40.0)
        b = board_with(GOLD_QUOTES)
        e = engine(cfg, b)
        rng = np.random.default_rng(1)
        closes = (2650 * np.exp(np.cumsum(rng.normal(0, 8e-4, 40)))).round(1)
        for k, c in enumerate(closes):
            px = to_fixed(str(c))
            e.vol.on_bar(Bar("GC.COMEX", SEC, T0 + k * SEC, px, px, px, px, 1, px, 1, T0 + (k + 1) * SEC, T0))
        fixed = np.array([to_fixed(str(c)) for c in closes], dtype=np.float64)
        rets = np.diff(fixed)[-30:] / np.abs(fixed[:-1][-30:])
        expect = float(np.std(rets, ddof=1)) * math.sqrt(60) * 1e4
        assert e.vol.vol_bps_per_min("GC.COMEX") == pytest.approx(expect)
        r = e.assess("GC.COMEX", 1, T0, PositionBook(REG, UNITS), {})
        assert r.components["volatility"] == pytest.approx(min(1.0, expect / 40.0))
        assert expect > 40.0 and r.score == 1.0 and not r.blocked  # parked, not rejected


# -- trade module -------------------------------------------------------------------------------------------------


def module(auto: float = 0.8, style: str = "aggressive", quotes: dict[str, tuple[str, str]] | None = None,
           strategies: str = "arbitrage") -> TradeModule:
    cfg = TradeConfig(risk=RiskConfig(auto_threshold=auto), execution=ExecutionConfig(style=style))  # type: ignore[arg-type]
    return TradeModule(cfg, make_strategies(strategies, cfg), REG, UNITS, board_with(quotes or GOLD_QUOTES))


def expected_lots() -> tuple[int, int]:
    gc_lots = round(1_000_000 / (2650.1 * 100))
    oz = gc_lots * canonical_per_lot(REG.get("GC.COMEX"), UNITS)
    return gc_lots, round(oz / canonical_per_lot(REG.get("GOLD.MCX"), UNITS))


class TestTradeModule:
    def test_open_signal_trades_both_legs_automatically(self) -> None:
        m = module()
        m.on_signal(arb_signal("open"), T0)
        cmds = {c.instrument_id: c for c in m.drain()}
        gc, gold = expected_lots()
        assert cmds["GC.COMEX"].side == "buy" and cmds["GC.COMEX"].qty == gc
        assert cmds["GC.COMEX"].price == to_fixed("2650.3")  # ask + 1 tick
        assert cmds["GOLD.MCX"].side == "sell" and cmds["GOLD.MCX"].qty == gold
        assert cmds["GOLD.MCX"].price == to_fixed("75999")  # bid - 1 tick
        assert all(c.tif == "ioc" and c.ts_event == T0 for c in cmds.values())
        assert all(o.status == OrderStatus.SENT for o in m.orders.values())

    def test_high_score_parks_until_approved_or_rejected(self) -> None:
        m = module(auto=0.01)
        m.on_signal(arb_signal("open"), T0)
        assert m.drain() == []
        parked = m.pending_approvals()
        assert [o.instrument_id for o in parked] == ["GC.COMEX", "GOLD.MCX"]
        assert all(o.risk.score >= 0.01 for o in parked)
        sent = m.approve(parked[0].order_id, T0 + SEC)
        assert sent.status == OrderStatus.SENT and sent.approved
        (cmd,) = m.drain()
        assert cmd.order_id == sent.order_id and cmd.ts_event == T0 + SEC
        rej = m.reject(parked[1].order_id, T0 + SEC)
        assert rej.status == OrderStatus.REJECTED and m.pending_approvals() == []
        with pytest.raises(ValueError, match="not parked"):
            m.approve(rej.order_id, T0 + SEC)
        # a rejected order is not asked for again while the target stands ...
        m.on_timer(T0 + 100 * SEC)
        assert m.pending_approvals() == [] and m.drain() == []
        # ... but a new target is: the close unwinds the filled GC leg (reducing: score 0, sent at once)
        m.on_fill(Fill(fill_id=1, order_id=sent.order_id, instrument_id="GC.COMEX", side="buy", qty=sent.qty,
                       price=to_fixed("2650.2"), ts_event=T0 + SEC, liquidity="taker"))
        m.on_signal(arb_signal("close", T0 + 2 * SEC), T0 + 2 * SEC)
        (unwind,) = m.drain()
        assert unwind.instrument_id == "GC.COMEX" and unwind.side == "sell" and unwind.qty == sent.qty

    def test_approval_refused_on_stale_quote(self) -> None:
        m = module(auto=0.01)
        m.on_signal(arb_signal("open"), T0)
        o = m.pending_approvals()[0]
        late = T0 + (m.config.risk.stale_quote_ms + 1) * NS_PER_MS
        assert m.approve(o.order_id, late).status == OrderStatus.REJECTED
        assert "stale quote" in o.detail and m.drain() == []

    def test_target_change_supersedes_parked_order(self) -> None:
        m = module(auto=0.01)
        m.on_signal(arb_signal("open"), T0)
        m.on_signal(arb_signal("close", T0 + SEC), T0 + SEC)
        assert m.pending_approvals() == []
        assert {o.status for o in m.orders.values()} == {OrderStatus.CANCELLED}
        assert all(o.detail.startswith("superseded") for o in m.orders.values())

    def test_target_change_cancels_working_passive_orders(self) -> None:
        m = module(style="passive")
        m.on_signal(arb_signal("open"), T0)
        sent = m.drain()
        assert {c.price for c in sent} == {to_fixed("2650.0"), to_fixed("76002")}  # buy at bid, sell at ask
        m.on_update(VenueUpdate(order_id=sent[0].order_id, status="working", ts_event=T0))
        m.on_signal(arb_signal("close", T0 + SEC), T0 + SEC)
        cancels = m.drain()  # the working one and the one still in flight
        assert sorted(c.order_id for c in cancels) == sorted(c.order_id for c in sent)
        assert all(c.action == "cancel" for c in cancels)
        for c in cancels:
            m.on_update(VenueUpdate(order_id=c.order_id, status="cancelled", ts_event=T0 + SEC))
        assert m.drain() == [] and m.next_wakeup() is None  # flat target, nothing left to do

    def test_kill_switch_cancels_working_rejects_parked_and_blocks(self) -> None:
        m = module(style="passive")
        m.on_signal(arb_signal("open"), T0)
        cmds = m.drain()
        for c in cmds:
            m.on_update(VenueUpdate(order_id=c.order_id, status="working", ts_event=T0))
        m.kill(T0 + SEC, "operator")
        cancels = m.drain()
        assert sorted((c.action, c.order_id) for c in cancels) == sorted(("cancel", c.order_id) for c in cmds)
        for c in cancels:
            m.on_update(VenueUpdate(order_id=c.order_id, status="cancelled", ts_event=T0 + SEC))
        assert all(o.status == OrderStatus.CANCELLED for o in m.orders.values())
        m.on_signal(arb_signal("close", T0 + 2 * SEC), T0 + 2 * SEC)
        m.on_signal(arb_signal("open", T0 + 3 * SEC), T0 + 3 * SEC)
        m.on_timer(T0 + 10 * SEC)
        assert m.drain() == [] and len(m.orders) == 2  # nothing new while killed
        m.board.ts[:] = T0 + 10 * SEC  # fresh quotes
        m.resume(T0 + 10 * SEC)
        assert {c.instrument_id for c in m.drain()} == {"GC.COMEX", "GOLD.MCX"}

    def test_kill_switch_rejects_parked(self) -> None:
        m = module(auto=0.01)
        m.on_signal(arb_signal("open"), T0)
        m.kill(T0, "operator")
        assert all(o.status == OrderStatus.REJECTED and "kill switch" in o.detail for o in m.orders.values())
        assert m.pending_approvals() == []

    def test_ioc_rest_is_retried_after_retry_ms(self) -> None:
        m = module()
        m.on_signal(arb_signal("open"), T0)
        gc = next(c for c in m.drain() if c.instrument_id == "GC.COMEX")
        m.on_fill(Fill(fill_id=1, order_id=gc.order_id, instrument_id="GC.COMEX", side="buy", qty=1,
                       price=gc.price, ts_event=T0, liquidity="taker"))
        m.on_update(VenueUpdate(order_id=gc.order_id, status="cancelled", ts_event=T0, detail="ioc"))
        retry = T0 + m.config.execution.retry_ms * NS_PER_MS
        assert m.next_wakeup() == retry
        m.on_timer(retry - 1)
        assert m.drain() == []
        m.on_timer(retry)
        (again,) = m.drain()
        assert again.instrument_id == "GC.COMEX" and again.qty == gc.qty - 1

    def test_signal_without_prices_is_skipped(self) -> None:
        m = module(quotes={"GC.COMEX": ("2650.0", "2650.2")})  # no GOLD.MCX / FX quote: the legs cannot be sized
        m.on_signal(arb_signal("open"), T0)
        assert m.orders == {} and m.drain() == []
        strat = m.strategies[0]
        assert isinstance(strat, ArbitrageStrategy)
        assert strat.skipped == ["GC.COMEX/GOLD.MCX: no price to size the legs"]

    def test_risk_rejections_back_off(self) -> None:
        m = module()
        t = T0 + 10 * SEC  # every quote is 10 s old by now
        m.on_signal(arb_signal("open", t), t)
        rejected = [o for o in m.orders.values() if o.status == OrderStatus.REJECTED]
        assert {o.instrument_id for o in rejected} == {"GC.COMEX", "GOLD.MCX"}
        assert all(o.detail.startswith("risk: stale quote") for o in rejected)
        waits, now = [], t
        for _ in range(4):
            nxt = m.next_wakeup()
            assert nxt is not None
            waits.append((nxt - now) // NS_PER_MS)
            now = nxt
            m.on_timer(now)
        retry = m.config.execution.retry_ms
        assert waits == [retry, 2 * retry, 4 * retry, 8 * retry]
        assert len(m.orders) == 2 * 5 and m.drain() == []

    def test_round_to_grid_is_conservative(self) -> None:
        tick = to_fixed("0.25")
        assert round_to_grid(to_fixed("5.30"), tick, "buy") == to_fixed("5.25")
        assert round_to_grid(to_fixed("5.30"), tick, "sell") == to_fixed("5.50")
        assert round_to_grid(to_fixed("5.50"), tick, "buy") == to_fixed("5.50")
        assert round_to_grid(to_fixed("-37.63"), tick, "buy") == to_fixed("-37.75")
        assert round_to_grid(to_fixed("-37.63"), tick, "sell") == to_fixed("-37.50")


# -- positions and P&L ----------------------------------------------------------------------------------------------


class TestPositions:
    def test_point_values_from_units_table(self) -> None:
        assert point_value(REG.get("GOLD.MCX"), UNITS) == 100  # INR/10g quote, 1 kg lot
        assert point_value(REG.get("CT.ICE"), UNITS) == 500  # cents/lb, 50 000 lb
        assert point_value(REG.get("CL.NYMEX"), UNITS) == 1000

    def test_fifo_realised_and_unrealised(self) -> None:
        book = PositionBook(REG, UNITS)
        book.apply(fill(1, "CL.NYMEX", "buy", 3, "70.00"))
        book.apply(fill(2, "CL.NYMEX", "buy", 2, "71.00"))
        realised = book.apply(fill(3, "CL.NYMEX", "sell", 4, "72.00"))
        assert realised == (3 * 2 + 1 * 1) * 1000  # USD: 3 lots +2.00, 1 lot +1.00, 1000 bbl per lot
        p = book.get("CL.NYMEX").pnl(Decimal(to_fixed("70.50")), Decimal(1))
        assert p.position == 1 and p.realised == 7000 and p.unrealised == -500  # 1 lot bought at 71.00
        short = book.apply(fill(4, "CL.NYMEX", "sell", 3, "69.00"))  # closes the last long, opens 2 short
        assert short == -2000 and book.qty("CL.NYMEX") == -2

    @pytest.mark.parametrize("seed", [1, 2, 3])
    @pytest.mark.parametrize("iid", ["GOLD.MCX", "CT.ICE", "CL.NYMEX"])
    def test_pnl_equals_signed_fills_marked_to_last_price(self, seed: int, iid: str) -> None:
        rng = np.random.default_rng(seed)
        inst = REG.get(iid)
        book = PositionBook(REG, UNITS)
        fills = []
        price = to_fixed("100")
        for k in range(200):
            price += int(rng.integers(-5, 6)) * inst.tick_fixed
            side = "buy" if rng.random() < 0.5 else "sell"
            f = Fill(fill_id=k, order_id=k, instrument_id=iid, side=side, qty=int(rng.integers(1, 9)), price=price,
                     ts_event=T0 + k, liquidity="taker", fee=Decimal(int(rng.integers(0, 5000))) / 100,
                     usd_per_quote=Decimal(1) / Decimal("83.5") if inst.price_currency == "INR" else Decimal(1))
            book.apply(f)
            fills.append(f)
        mark = Decimal(price + inst.tick_fixed) / 2 + Decimal(price) / 2  # half-tick mid
        p = book.get(iid).pnl(mark, fills[-1].usd_per_quote)
        # independent: sum over fills of signed qty x (mark - price) x point value, less fees
        pv = point_value(inst, UNITS)
        expect = sum(((f.qty if f.side == "buy" else -f.qty) * (mark - f.price) for f in fills), Decimal(0))
        expect = expect * pv / PRICE_SCALE - sum((f.fee for f in fills), Decimal(0))
        assert p.realised + p.unrealised == expect
        assert p.position == sum(f.signed_qty for f in fills)
        if inst.price_currency == "USD":
            assert p.total_usd == p.total
        else:  # one FX rate throughout: USD is the quote amount at that rate
            assert abs(p.total_usd - p.total / Decimal("83.5")) < Decimal("1e-12")


# -- strategies ---------------------------------------------------------------------------------------------------


class TestStrategies:
    def sizer(self, quotes: dict[str, tuple[str, str]] | None = None) -> Sizer:
        return Sizer(REG, UNITS, board_with(quotes or GOLD_QUOTES))

    def test_arbitrage_hedges_equal_canonical_quantity_and_unwinds(self) -> None:
        s = ArbitrageStrategy(ArbitrageStrategyConfig(notional_usd=2_000_000.0))
        assert s.on_signal(arb_signal("open"), T0, self.sizer())
        t = s.apply({})
        buy, sell = t["GC.COMEX"], -t["GOLD.MCX"]
        oz_buy = buy * canonical_per_lot(REG.get("GC.COMEX"), UNITS)
        oz_lot_sell = canonical_per_lot(REG.get("GOLD.MCX"), UNITS)
        assert buy == round(2_000_000 / (2650.1 * 100))
        assert abs(oz_buy - sell * oz_lot_sell) <= oz_lot_sell / 2  # nearest whole lot
        assert not s.on_signal(arb_signal("open"), T0, self.sizer())  # already open
        assert s.on_signal(arb_signal("close", T0 + SEC), T0 + SEC, self.sizer())
        assert s.apply({"CL.NYMEX": 3}) == {"CL.NYMEX": 3}

    def test_arbitrage_min_edge(self) -> None:
        s = ArbitrageStrategy(ArbitrageStrategyConfig(min_net_edge_bps=60.0))
        assert not s.on_signal(arb_signal("open"), T0, self.sizer()) and s.apply({}) == {}
        assert s.skipped

    def crash(self, mode: str) -> CrashWarning:
        return CrashWarning(instrument_id="CL.NYMEX", drawdown_pct=4.0, window_ns=120 * SEC, volume_ratio=5.0,
                            peak=to_fixed("72"), last=to_fixed("69"), source="rule", ts_event=T0, ts_recv=T0)

    def test_crash_short_then_flat_after_cooldown(self) -> None:
        s = CrashStrategy(CrashStrategyConfig(mode="short", short_notional_usd=350_000.0, cooldown_s=60))
        sizer = self.sizer({"CL.NYMEX": ("69.99", "70.01")})
        assert s.on_signal(self.crash("short"), T0, sizer)
        assert s.apply({"CL.NYMEX": 4}) == {"CL.NYMEX": -5}  # 350k / (70 x 1000 bbl)
        assert s.next_wakeup() == T0 + 60 * SEC
        assert not s.on_timer(T0 + 59 * SEC)
        assert s.on_timer(T0 + 60 * SEC) and s.apply({"CL.NYMEX": 4}) == {"CL.NYMEX": 4}

    def test_crash_flat_mode_only_cuts_longs(self) -> None:
        s = CrashStrategy(CrashStrategyConfig(mode="flat"))
        s.on_signal(self.crash("flat"), T0, self.sizer({"CL.NYMEX": ("69.99", "70.01")}))
        assert s.apply({"CL.NYMEX": 4, "B.ICE": 2}) == {"CL.NYMEX": 0, "B.ICE": 2}
        assert s.apply({"CL.NYMEX": -3}) == {"CL.NYMEX": -3}

    def test_crash_overlays_arbitrage(self) -> None:
        m = module(quotes={"CL.NYMEX": ("69.99", "70.01"), "B.ICE": ("74.00", "74.02")},
                   strategies="arbitrage,crash")
        m.on_signal(arb_signal("open", T0, "CL.NYMEX", "B.ICE"), T0)
        assert m.targets()["CL.NYMEX"] > 0
        m.on_signal(self.crash("short"), T0)
        assert m.targets()["CL.NYMEX"] < 0 and m.targets()["B.ICE"] < 0

    def test_unknown_strategy(self) -> None:
        with pytest.raises(ValueError, match="unknown strategy"):
            make_strategies("momentum", TradeConfig())


# -- venue --------------------------------------------------------------------------------------------------------


def quote(bid: str, ask: str, bsz: int, asz: int, ts: int) -> QuoteTick:
    return QuoteTick("CL.NYMEX", to_fixed(bid), to_fixed(ask), bsz, asz, ts, ts)


def trade(price: str, size: int, ts: int) -> TradeTick:
    return TradeTick("CL.NYMEX", to_fixed(price), size, ts, ts)


class TestVenue:
    def venue(self) -> SimVenue:
        return SimVenue(REG, UNITS, QuoteBoard(REG), VenueConfig(fee_bps=1.0))

    def feed(self, v: SimVenue, ticks: list[QuoteTick | TradeTick]) -> list[object]:
        cols = TickColumns.from_ticks(ticks, REG)
        events, stop = v.advance(cols, 0, len(cols), np.maximum.accumulate(cols.ts_event))
        assert stop == len(cols)
        return events  # type: ignore[return-value]

    def queue(self, v: SimVenue, price: str) -> list[tuple[int, int]]:
        book = v.book("CL.NYMEX")
        assert book is not None
        return [(o.owner, o.qty) for o in book.level_orders(Side.BUY, to_fixed(price) // to_fixed("0.01"))]

    def test_queue_position_model(self) -> None:
        v = self.venue()
        assert self.feed(v, [quote("70.00", "70.01", 10, 10, T0)]) == []
        out = v.submit(VenueCommand(action="new", order_id=1, instrument_id="CL.NYMEX", ts_event=T0, side="buy",
                                    qty=3, price=to_fixed("70.00"), tif="day"), T0 + 1)
        assert [type(e).__name__ for e in out] == ["VenueUpdate"] and out[0].status == "working"  # type: ignore[union-attr]
        assert self.queue(v, "70.00") == [(1, 10), (3, 3)]  # behind the displayed 10
        assert self.feed(v, [quote("70.00", "70.01", 15, 10, T0 + 2)]) == []
        assert self.queue(v, "70.00") == [(1, 10), (3, 3), (1, 5)]  # added size queues behind us
        assert self.feed(v, [trade("70.00", 6, T0 + 3)]) == []  # trades eat the queue ahead first
        assert self.queue(v, "70.00") == [(1, 4), (3, 3), (1, 5)]
        assert self.feed(v, [quote("70.00", "70.01", 6, 10, T0 + 4)]) == []
        assert self.queue(v, "70.00") == [(1, 4), (3, 3), (1, 2)]  # smaller size leaves from the back
        (f1,) = self.feed(v, [trade("70.00", 5, T0 + 5)])
        assert isinstance(f1, Fill) and (f1.qty, f1.price, f1.liquidity, f1.ts_event) == (1, to_fixed("70"), "maker",
                                                                                          T0 + 5)
        assert f1.fee == Decimal(1 * 70 * 1000) / 10_000  # 1 bp of 70 000 USD
        # the offer drops onto our bid: the rest of our order fills at its limit
        (f2,) = self.feed(v, [quote("69.99", "70.00", 5, 5, T0 + 6)])
        assert isinstance(f2, Fill) and (f2.qty, f2.price, f2.side) == (2, to_fixed("70"), "buy")
        assert v.resting_instruments() == []

    def test_ioc_takes_the_displayed_size_only(self) -> None:
        v = self.venue()
        self.feed(v, [quote("70.00", "70.01", 10, 7, T0)])
        out = v.submit(VenueCommand(action="new", order_id=5, instrument_id="CL.NYMEX", ts_event=T0, side="buy",
                                    qty=20, price=to_fixed("70.02"), tif="ioc"), T0 + 1)
        fills = [e for e in out if isinstance(e, Fill)]
        assert [(f.qty, f.price, f.liquidity) for f in fills] == [(7, to_fixed("70.01"), "taker")]
        assert isinstance(out[-1], VenueUpdate) and out[-1].status == "cancelled" and "13 of 20" in out[-1].detail

    def test_off_grid_quotes_round_outward_and_off_grid_orders_are_rejected(self) -> None:
        v = self.venue()
        self.feed(v, [quote("70.005", "70.015", 10, 10, T0)])
        out = v.submit(VenueCommand(action="new", order_id=1, instrument_id="CL.NYMEX", ts_event=T0, side="buy",
                                    qty=1, price=to_fixed("70.01"), tif="ioc"), T0)
        assert [type(e).__name__ for e in out] == ["VenueUpdate"]  # the ask became 70.02: no fill at 70.01
        book = v.book("CL.NYMEX")
        assert book is not None and book.best_bid() == 7000 and book.best_ask() == 7002
        bad = v.submit(VenueCommand(action="new", order_id=2, instrument_id="CL.NYMEX", ts_event=T0, side="buy",
                                    qty=1, price=to_fixed("70.015"), tif="ioc"), T0)
        assert isinstance(bad[-1], VenueUpdate) and bad[-1].status == "rejected"
        assert "off the tick grid" in bad[-1].detail
