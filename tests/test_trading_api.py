"""The trading API over a real FastAPI app (httpx ASGITransport), a real TradeModule and the simulated venue.

Also the live service's event-time loop (venue latency, module timers) and the engine -> TradingSink path on
a simulated market with an arbitrage episode.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from commodex.embedded.engine import EmbeddedEngine
from commodex.embedded.storage import StoreCounts
from commodex.embedded.trading_sink import TradingSink
from feeds.tickfile import ingest
from jobs.sink import ListSink
from market.events import ArbitrageSignal, Bar, DeadLetter, QuoteTick, Signal, TradeTick
from market.fixedpoint import to_fixed
from market.instruments import default_registry
from market.timeutil import NS_PER_MS, NS_PER_S
from market.units import default_units
from serving.auth import KEY_FILE, ApiKeyStore, AuthConfig
from serving.trading_routes import install_trading
from serving.trading_service import LiveTradingConfig, TradingService
from simulators.config import SimConfig
from simulators.market import simulate
from trading.config import ExecutionConfig, RiskConfig, TradeConfig
from trading.orders import OrderStatus
from trading.positions import point_value

REG = default_registry()
UNITS = default_units()
T0 = 1_767_571_200_000_000_000
SEC = NS_PER_S
GOLD = {"GC.COMEX": ("2650.0", "2650.2"), "GOLD.MCX": ("76000", "76002"), "USDINR.FX": ("83.9975", "84.0025")}
PARK_BELOW = 0.3  # auto threshold under the unknown-volatility score (0.5): every new order waits for a human


def quotes(ts: int, size: int = 20, prices: dict[str, tuple[str, str]] = GOLD) -> list[TradeTick | QuoteTick]:
    return [QuoteTick(i, to_fixed(b), to_fixed(a), size, size, ts, ts) for i, (b, a) in prices.items()]


def arb(state: str, ts: int) -> ArbitrageSignal:
    return ArbitrageSignal(pair_id="GC.COMEX/GOLD.MCX", buy_instrument_id="GC.COMEX", sell_instrument_id="GOLD.MCX",
                           state=state, gross_spread=to_fixed("20"), net_edge=to_fixed("15"), net_edge_bps=56.0,
                           canonical_unit="troy_oz", canonical_currency="USD", ts_event=ts, ts_recv=ts)


def service(auto: float = PARK_BELOW, style: str = "aggressive", latency_ms: int = 0) -> TradingService:
    trade = TradeConfig(risk=RiskConfig(auto_threshold=auto), execution=ExecutionConfig(style=style))  # type: ignore[arg-type]
    return TradingService("arbitrage", LiveTradingConfig(trade=trade, latency_ms=latency_ms), REG, UNITS)


def opened(svc: TradingService) -> TradingService:
    svc.on_ticks(quotes(T0))
    svc.on_signals([arb("open", T0 + 1)])
    return svc


class Api:
    def __init__(self, client: httpx.AsyncClient, trader: str, viewer: str) -> None:
        self.c, self.trader, self.viewer = client, trader, viewer

    def hdr(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.trader}"} if who == "trader" else {"X-API-Key": self.viewer}

    async def get(self, path: str, who: str = "viewer", **params: str | int) -> httpx.Response:
        return await self.c.get(f"/api/trading{path}", headers=self.hdr(who), params=params)

    async def post(self, path: str, who: str = "trader", json: object = None) -> httpx.Response:
        return await self.c.post(f"/api/trading{path}", headers=self.hdr(who), json=json)


@pytest.fixture
def keys(tmp_path: Path) -> ApiKeyStore:
    return ApiKeyStore.in_state_dir(tmp_path, AuthConfig(scrypt_n=2**10))


async def client_for(svc: TradingService, keys: ApiKeyStore) -> AsyncIterator[Api]:
    app = FastAPI()
    install_trading(app, svc, keys)
    trader, viewer = keys.add("alice", "trader"), keys.add("bob", "viewer")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
        yield Api(c, trader, viewer)


@pytest.fixture
def svc() -> TradingService:
    return opened(service())


@pytest.fixture
async def api(svc: TradingService, keys: ApiKeyStore) -> AsyncIterator[Api]:
    async for a in client_for(svc, keys):
        yield a


# -- approvals ----------------------------------------------------------------------------------------------------


async def test_parked_order_approved_via_api_fills_on_the_venue(api: Api, svc: TradingService) -> None:
    doc = (await api.get("/approvals")).json()
    parked = doc["approvals"]
    assert [o["instrument"] for o in parked] == ["GC.COMEX", "GOLD.MCX"]
    assert all(o["status"] == "parked" and o["risk"]["score"] >= doc["auto_threshold"] == PARK_BELOW for o in parked)
    assert svc.venue.book("GC.COMEX") is None  # nothing reached the venue yet
    gc = parked[0]

    r = await api.post(f"/approvals/{gc['order_id']}/approve")
    assert r.status_code == 200
    order = r.json()["order"]
    assert (order["status"], order["approved"], order["filled"]) == ("filled", True, gc["qty"])
    assert order["price"] == "2650.3"  # IOC limit: ask + 1 tick
    (fill,) = svc.fills()
    assert fill.price == to_fixed("2650.2") and fill.qty == gc["qty"]  # took the displayed ask

    pos = (await api.get("/positions")).json()
    (p,) = pos["positions"]
    pv = point_value(REG.get("GC.COMEX"), UNITS)
    unreal = gc["qty"] * (Decimal("2650.1") - Decimal("2650.2")) * pv
    assert (p["instrument"], p["position"], p["fills"], p["mark"], p["currency"]) == ("GC.COMEX", gc["qty"], 1,
                                                                                      "2650.1", "USD")
    assert Decimal(p["unrealised"]) == unreal == Decimal(p["unrealised_usd"]) == Decimal(pos["totals"]["pnl_usd"])
    assert Decimal(p["turnover_usd"]) == gc["qty"] * Decimal("2650.2") * pv
    assert [o["instrument"] for o in (await api.get("/approvals")).json()["approvals"]] == ["GOLD.MCX"]
    audit = (await api.get("/audit")).json()["audit"]
    assert [(a["actor"], a["action"], a["order_id"]) for a in audit] == [("alice", "approve", gc["order_id"])]


async def test_reject_via_api_holds_the_instrument(api: Api, svc: TradingService) -> None:
    gold = (await api.get("/approvals")).json()["approvals"][1]
    r = await api.post(f"/approvals/{gold['order_id']}/reject", json={"reason": "  basis looks wrong  "})
    assert r.status_code == 200
    o = r.json()["order"]
    assert o["status"] == "rejected" and o["detail"] == "rejected by alice: basis looks wrong"
    svc.on_ticks(quotes(T0 + 5 * SEC))  # time passes, retries would have fired
    waiting = (await api.get("/approvals")).json()["approvals"]
    assert [w["instrument"] for w in waiting] == ["GC.COMEX"]  # the rejected leg is not asked for again
    assert (await api.post(f"/approvals/{gold['order_id']}/approve")).status_code == 409


async def test_approval_on_a_stale_market_is_refused(api: Api, svc: TradingService) -> None:
    svc.advance_to(T0 + 10 * SEC)  # the feed went quiet: quotes are 10 s old in event time
    gc = (await api.get("/approvals")).json()["approvals"][0]
    o = (await api.post(f"/approvals/{gc['order_id']}/approve")).json()["order"]
    assert o["status"] == "rejected" and "stale quote" in o["detail"] and svc.fills() == []


# -- authentication and input errors ------------------------------------------------------------------------------

READS = ["/approvals", "/positions", "/orders", "/audit"]
WRITES = [("/approvals/1/approve", None), ("/approvals/1/reject", {"reason": "no"}), ("/kill", {"reason": "x"}),
          ("/resume", None)]


async def test_without_a_valid_key_401_and_viewer_403(api: Api, svc: TradingService) -> None:
    for path in READS:
        assert (await api.c.get(f"/api/trading{path}")).status_code == 401, path
        bad = await api.c.get(f"/api/trading{path}", headers={"Authorization": f"Bearer {api.trader}x"})
        assert bad.status_code == 401 and bad.headers["www-authenticate"] == "Bearer"
        assert (await api.get(path, "viewer")).status_code == 200, path
    for path, body in WRITES:
        assert (await api.c.post(f"/api/trading{path}", json=body)).status_code == 401, path
        r = await api.post(path, "viewer", body)
        assert r.status_code == 403 and "trader" in r.json()["detail"], path
    # none of it changed anything
    assert [o.status for o in svc.module.orders.values()] == [OrderStatus.PARKED, OrderStatus.PARKED]
    assert not svc.module.kill_switch.engaged and svc.fills() == []


@pytest.mark.parametrize(("path", "body", "status"), [
    ("/approvals/999/approve", None, 404),
    ("/approvals/999/reject", {"reason": "x"}, 404),
    ("/approvals/abc/approve", None, 422),
    ("/approvals/0/approve", None, 422),
    ("/approvals/1/reject", None, 422),  # reason is required
    ("/approvals/1/reject", {"reason": "   "}, 422),
    ("/approvals/1/reject", {"reason": "x" * 201}, 422),
    ("/approvals/1/reject", {"reason": "ok\u0000"}, 422),
    ("/approvals/1/reject", {"reason": "ok", "order_id": 2}, 422),  # unknown fields refused
    ("/approvals/1/reject", {"reason": 5}, 422),
    ("/kill", {}, 422),
])
async def test_bad_input(api: Api, svc: TradingService, path: str, body: object, status: int) -> None:
    r = await api.post(path, json=body)
    assert r.status_code == status, r.text
    assert len(svc.module.pending_approvals()) == 2 and not svc.module.kill_switch.engaged


async def test_bad_query(api: Api) -> None:
    r = await api.get("/orders", status="bogus")
    assert r.status_code == 422 and r.json()["param"] == "status"
    assert (await api.get("/orders", limit=0)).status_code == 422
    assert (await api.get("/orders", limit="many")).status_code == 422
    doc = (await api.get("/orders", status="parked", limit=1)).json()
    assert doc["limit"] == 1 and [o["instrument"] for o in doc["orders"]] == ["GOLD.MCX"]  # newest first


# -- kill switch --------------------------------------------------------------------------------------------------


async def test_kill_switch_cancels_working_orders_and_blocks_new_ones(keys: ApiKeyStore) -> None:
    svc = opened(service(auto=0.8, style="passive"))  # scores 0.5 < 0.8: sent at once, resting at the touch
    async for api in client_for(svc, keys):
        working = (await api.get("/orders", status="working")).json()["orders"]
        assert sorted(o["instrument"] for o in working) == ["GC.COMEX", "GOLD.MCX"]
        assert len(svc.venue.resting_instruments()) == 2

        r = await api.post("/kill", json={"reason": "fat finger"})
        assert r.status_code == 200
        doc = r.json()
        assert doc["kill_switch"]["engaged"] and doc["kill_switch"]["reason"] == "fat finger (by alice)"
        assert sorted((o["order_id"], o["status"]) for o in doc["orders"]) == sorted(
            (o["order_id"], "cancelled") for o in working)
        assert svc.venue.resting_instruments() == []  # gone from the simulated books

        # the market moves and the strategy wants new positions: nothing is sent while killed
        svc.on_ticks(quotes(T0 + 2 * SEC))
        svc.on_signals([arb("close", T0 + 2 * SEC), arb("open", T0 + 3 * SEC)])
        svc.on_ticks(quotes(T0 + 10 * SEC))
        assert len((await api.get("/orders")).json()["orders"]) == 2
        pos = (await api.get("/positions")).json()
        assert pos["kill_switch"]["engaged"] and pos["positions"] == []

        r = await api.post("/resume")
        assert r.status_code == 200 and not r.json()["kill_switch"]["engaged"]
        assert sorted((o["instrument"], o["status"]) for o in r.json()["orders"]) == [
            ("GC.COMEX", "working"), ("GOLD.MCX", "working")]
        actions = [a["action"] for a in (await api.get("/audit")).json()["audit"]]
        assert actions == ["resume", "kill"]


async def test_kill_switch_rejects_parked_orders(api: Api, svc: TradingService) -> None:
    r = await api.post("/kill", json={"reason": "stop"})
    assert sorted(o["status"] for o in r.json()["orders"]) == ["rejected", "rejected"]
    assert (await api.get("/approvals")).json()["approvals"] == []
    assert (await api.post("/approvals/1/approve")).status_code == 409


# -- secrets ------------------------------------------------------------------------------------------------------


async def test_keys_are_stored_hashed_and_never_logged(keys: ApiKeyStore, tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    svc = opened(service())
    async for api in client_for(svc, keys):
        await api.post("/approvals/1/approve")
        await api.post("/approvals/2/reject", json={"reason": "no"})
        await api.c.get("/api/trading/positions", headers={"X-API-Key": api.trader[:-1] + "A"})
        await api.post("/kill", "viewer", {"reason": "x"})
        await api.post("/kill", json={"reason": "done"})
        stored = (tmp_path / KEY_FILE).read_text()
        for key in (api.trader, api.viewer):
            secret = key.split("_", 2)[2]
            assert key not in stored and secret not in stored
            assert key not in caplog.text and secret not in caplog.text
        # the logs did record the actions, by key name
        assert "approved by alice" in caplog.text and "rejected by alice" in caplog.text
        assert "kill switch engaged by alice" in caplog.text


# -- composition in serving.app ----------------------------------------------------------------------------------


class NoHistory:
    """The history store the dashboard routes need; the trading routes never read it."""

    def bars(self, *args: object) -> list[Bar]:
        return []

    def signals(self, *args: object) -> list[Signal]:
        return []

    def dead_letters(self, *args: object) -> list[DeadLetter]:
        return []

    def counts(self) -> StoreCounts:
        return StoreCounts(0, 0, 0, 0)


async def test_create_app_mounts_the_trading_api_only_when_given(keys: ApiKeyStore) -> None:
    from serving.app import Services, create_app

    if "trading" not in inspect.signature(create_app).parameters:
        pytest.skip("serving/app.py does not take a trading service yet (diff in the trading API report)")
    build: Callable[..., FastAPI] = create_app  # typed loosely: the test predates the new signature
    services = Services.build(NoHistory(), REG)
    plain = {getattr(r, "path", "") for r in build(services).routes}
    assert not any(p.startswith("/api/trading") for p in plain)
    with pytest.raises(ValueError, match="key store"):
        build(services, trading=service())
    app = build(services, trading=opened(service()), api_keys=keys)
    trader = keys.add("alice", "trader")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
        assert (await c.get("/api/trading/approvals")).status_code == 401
        auth = {"Authorization": f"Bearer {trader}"}
        assert len((await c.get("/api/trading/approvals", headers=auth)).json()["approvals"]) == 2
        assert (await c.post("/api/trading/approvals/99/approve", headers=auth)).status_code == 404
        assert (await c.get("/api/instruments")).status_code == 200  # the dashboard API is still there


# -- the live loop ------------------------------------------------------------------------------------------------


class TestLiveService:
    def test_orders_reach_the_venue_after_the_latency_in_event_time(self) -> None:
        svc = opened(service(latency_ms=100))
        gc = svc.module.pending_approvals()[0]
        svc.approve(gc.order_id, "alice")
        assert gc.status == OrderStatus.SENT and svc.fills() == []
        svc.on_ticks(quotes(T0 + 50 * NS_PER_MS))
        assert gc.status == OrderStatus.SENT
        svc.on_ticks(quotes(T0 + 150 * NS_PER_MS))
        assert gc.status == OrderStatus.FILLED
        assert [f.ts_event for f in svc.fills()] == [T0 + 1 + 100 * NS_PER_MS]  # at arrival, before the new row

    def test_ioc_rest_is_retried_when_the_clock_passes_retry_ms(self) -> None:
        svc = TradingService("arbitrage", LiveTradingConfig(), REG, UNITS)  # automatic execution
        svc.on_ticks(quotes(T0, size=3))
        svc.on_signals([arb("open", T0 + 1)])
        gc = [o for o in svc.module.orders.values() if o.instrument_id == "GC.COMEX"]
        assert [(o.filled, o.status) for o in gc] == [(3, OrderStatus.CANCELLED)]  # 3 of 4 displayed
        svc.on_ticks(quotes(T0 + 500 * NS_PER_MS, size=3))
        assert len([o for o in svc.module.orders.values() if o.instrument_id == "GC.COMEX"]) == 1
        svc.on_ticks(quotes(T0 + 1500 * NS_PER_MS, size=3))  # retry_ms (1 s) has passed
        gc = [o for o in svc.module.orders.values() if o.instrument_id == "GC.COMEX"]
        assert [(o.qty, o.status) for o in gc] == [(4, OrderStatus.CANCELLED), (1, OrderStatus.FILLED)]
        assert gc[1].created_ns == T0 + 1 + 1000 * NS_PER_MS  # the timer fired at its own time
        assert svc.module.positions.qty("GC.COMEX") == 4

    def test_bars_feed_volatility_without_moving_the_clock(self) -> None:
        svc = opened(service())
        now = svc.now_ns
        px = [to_fixed("2650") + k % 3 * to_fixed("0.5") for k in range(25)]
        end = T0 + 3600 * SEC  # e.g. an end-of-input flush: window ends beyond the data
        svc.on_bars([Bar("GC.COMEX", SEC, T0 + k * SEC, p, p, p, p, 1, p, 1, end, end) for k, p in enumerate(px)])
        assert svc.now_ns == now
        assert svc.module.vol.vol_bps_per_min("GC.COMEX") is not None  # 24 returns >= min_vol_bars

    def test_sink_acts_on_a_batch_after_its_market_data(self) -> None:
        svc = service(auto=0.8)
        sink = TradingSink(svc)
        sink.signals([arb("open", T0 + 1)])  # the engine hands signals before the batch's ticks
        assert sink.pending == 1 and svc.module.signals_seen == 0
        sink.ticks(quotes(T0 + 2))
        assert sink.pending == 0 and svc.module.signals_seen == 1
        assert {o.status for o in svc.module.orders.values()} == {OrderStatus.FILLED}
        sink.signals([arb("close", T0 + 3)])
        sink.flush()  # a batch without ticks
        assert svc.module.signals_seen == 2 and svc.module.positions.qty("GC.COMEX") == 0


async def test_engine_trades_a_simulated_arbitrage_live(keys: ApiKeyStore) -> None:
    """Simulated market -> embedded engine -> TradingSink -> trade module -> venue; read back over the API."""
    ing = ingest(simulate(SimConfig(scenarios=("arbitrage",), seed=7, duration_s=600)), REG)
    svc = service(auto=0.8)
    seen = ListSink()
    sink = TradingSink(svc)
    engine = EmbeddedEngine(None, [seen, sink], REG)
    cols = ing.columns
    for lo in range(0, len(cols), 4096):  # big batches (~15 s of market): signals must wait for their ticks
        engine.offer(cols.take(slice(lo, lo + 4096)))
    engine.finish()
    sink.flush()
    arbs = [s for s in seen.all_signals if isinstance(s, ArbitrageSignal)]
    assert [s.state for s in arbs] == ["open", "close"]
    assert svc.module.signals_seen == len(seen.all_signals)
    async for api in client_for(svc, keys):
        orders = (await api.get("/orders")).json()["orders"]
        assert orders and all(o["status"] == "filled" for o in orders)  # no stale-quote rejections
        legs = {arbs[0].buy_instrument_id, arbs[0].sell_instrument_id}
        assert {o["instrument"] for o in orders} == legs
        pos = (await api.get("/positions")).json()
        assert {p["instrument"] for p in pos["positions"]} == legs
        assert all(p["position"] == 0 for p in pos["positions"])  # the close unwound both legs
        assert pos["totals"]["fills"] == len(orders) and pos["totals"]["unrealised_usd"] == "0"
