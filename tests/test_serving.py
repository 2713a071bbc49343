"""HTTP API, SSE stream and dashboard over a real chdb store in a temporary directory.

httpx's ASGITransport buffers whole response bodies, which never ends for an event stream, so the SSE
tests use `StreamingASGITransport` below: it hands body chunks over as the app sends them and sends
`http.disconnect` when the client closes the response. One test also runs uvicorn on a real socket.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import AsyncIterator, Iterator, MutableMapping
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import uvicorn
from fastapi import FastAPI

from commodex.embedded.storage import ClickHouseStore, StorageConfig
from market import codec
from market.events import (
    AnomalySignal,
    AnomalyType,
    ArbitrageSignal,
    Bar,
    CrashWarning,
    DeadLetter,
    QuoteTick,
    Signal,
    TradeTick,
)
from market.fixedpoint import to_fixed
from market.instruments import default_registry
from market.timeutil import parse_iso, to_iso
from serving.app import create_app
from serving.config import LiveHubConfig, ServingConfig
from serving.live import LiveHub, StreamFilter
from serving.services import Services

MIN = 60 * 10**9
T0 = parse_iso("2020-04-20T18:00:00Z")
REG = default_registry()

BARS = [
    Bar("CL.NYMEX", MIN, T0 + i * MIN, to_fixed(o), to_fixed(o) + 10**9, to_fixed(c) - 10**9, to_fixed(c), 10 + i,
        to_fixed(c), 3, T0 + (i + 1) * MIN, T0 + (i + 1) * MIN + 7)
    for i, (o, c) in enumerate([("18.27", "10.5"), ("10.5", "-2.25"), ("-2.25", "-37.63")])
]
SIGNALS: list[Signal] = [
    CrashWarning("CL.NYMEX", 12.5, 5 * MIN, 3.1, to_fixed("18.27"), to_fixed("-37.63"), "rule", T0 + 3 * MIN, T0),
    ArbitrageSignal("GC.COMEX/GOLD.MCX", "GC.COMEX", "GOLD.MCX", "open", to_fixed("2.5"), to_fixed("1.25"), 6.1,
                    "oz", "USD", T0 + 2 * MIN, T0),
    AnomalySignal("GC.COMEX", AnomalyType.VOLUME_SPIKE, 9.0, 4.0, "1m volume", T0 + MIN, T0),
]
LETTERS = [
    DeadLetter("codec", "malformed", "expected object", "{oops", T0),
    DeadLetter("bars", "late", "beyond allowed lateness", "{}", T0 + 1, "CL.NYMEX", T0 - MIN),
]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClickHouseStore]:
    s = ClickHouseStore(StorageConfig(dsn=f"chdb://{tmp_path_factory.mktemp('chdb_serving')}"))
    s.migrate()
    s.insert_bars(BARS)
    s.insert_signals(SIGNALS)
    s.insert_dead_letters(LETTERS)
    yield s
    s.close()


def make_services(store: ClickHouseStore, **live: Any) -> Services:
    cfg = ServingConfig(bars_limit_max=50, status_interval_s=0, live=LiveHubConfig(**live))
    return Services.build(store, REG, status=lambda: {"mode": "test", "ticks_in": 42}, config=cfg)


@pytest.fixture
def services(store: ClickHouseStore) -> Services:
    return make_services(store)


@pytest.fixture
async def client(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(services)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
        yield c


# ---- REST ------------------------------------------------------------------------------------------------------

async def test_instruments_lists_the_registry(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/instruments")
    assert r.status_code == 200
    docs = r.json()["instruments"]
    assert [d["id"] for d in docs] == list(REG.ids)
    gold = next(d for d in docs if d["id"] == "GOLD.MCX")
    inst = REG.get("GOLD.MCX")
    assert (gold["venue"], gold["currency"], gold["quote_unit"], gold["tick_size"], gold["timezone"]) == (
        inst.venue, inst.price_currency, inst.quote_unit, str(inst.tick_size), inst.timezone)
    assert gold["trading_hours"] == inst.trading_hours


async def test_bars_exact_decimal_prices_and_both_timestamps(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/bars", params={"instrument": "CL.NYMEX", "interval": "1m"})
    assert r.status_code == 200
    doc = r.json()
    assert (doc["instrument"], doc["interval"], doc["interval_ns"]) == ("CL.NYMEX", "1m", MIN)
    assert [b["close"] for b in doc["bars"]] == ["10.5", "-2.25", "-37.63"]
    assert doc["bars"][2]["low"] == "-38.63"
    assert doc["bars"][0]["start_ns"] == T0
    assert doc["bars"][0]["start_iso"] == "2020-04-20T18:00:00Z"
    assert [b["volume"] for b in doc["bars"]] == [10, 11, 12]


async def test_bars_time_range_accepts_iso_and_ns(client: httpx.AsyncClient) -> None:
    iso = await client.get("/api/bars", params={"instrument": "CL.NYMEX", "start": to_iso(T0 + MIN),
                                                 "end": "2020-04-20T18:02:00Z"})
    ns = await client.get("/api/bars", params={"instrument": "CL.NYMEX", "start": str(T0 + MIN),
                                                "end": str(T0 + 2 * MIN)})
    assert [b["start_ns"] for b in iso.json()["bars"]] == [T0 + MIN]
    assert ns.json()["bars"] == iso.json()["bars"]


async def test_bars_limit_is_capped_and_validated(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/bars", params={"instrument": "CL.NYMEX", "limit": 10**6})
    assert r.status_code == 200
    assert r.json()["limit"] == 50  # ServingConfig.bars_limit_max in this test
    r = await client.get("/api/bars", params={"instrument": "CL.NYMEX", "limit": 2})
    assert [b["close"] for b in r.json()["bars"]] == ["-2.25", "-37.63"]
    assert (await client.get("/api/bars", params={"instrument": "CL.NYMEX", "limit": 0})).status_code == 422
    assert (await client.get("/api/bars", params={"instrument": "CL.NYMEX", "limit": "many"})).status_code == 422


@pytest.mark.parametrize(
    ("params", "status", "needle"),
    [
        ({"instrument": "XAU.LBMA"}, 404, "XAU.LBMA"),
        ({"instrument": "CL.NYMEX", "interval": "fortnight"}, 422, "interval"),
        ({"instrument": "CL.NYMEX", "interval": "0s"}, 422, "interval"),
        ({"instrument": "CL.NYMEX", "start": "2020-04-20T18:00:00"}, 422, "start"),  # naive time is refused
        ({"instrument": "CL.NYMEX", "start": "yesterday"}, 422, "start"),
        ({"instrument": "CL.NYMEX", "start": str(T0), "end": str(T0)}, 422, "end"),
        ({}, 422, "instrument"),
    ],
)
async def test_bars_validation(client: httpx.AsyncClient, params: dict, status: int, needle: str) -> None:
    r = await client.get("/api/bars", params=params)
    assert r.status_code == status
    assert needle in r.text


async def test_signals_newest_first_with_filters(client: httpx.AsyncClient) -> None:
    docs = (await client.get("/api/signals")).json()["signals"]
    assert [d["kind"] for d in docs] == ["crash", "arbitrage", "anomaly"]
    # payload is the full codec record: decodes back to the stored signal
    assert [codec.decode(json.dumps(d["payload"])) for d in docs] == SIGNALS
    assert "12.50%" in docs[0]["summary"] and "-37.63" in docs[0]["summary"]
    assert docs[1]["instruments"] == ["GC.COMEX/GOLD.MCX", "GC.COMEX", "GOLD.MCX"]

    async def kinds(**params: Any) -> list[str]:
        r = await client.get("/api/signals", params=params)
        assert r.status_code == 200, r.text
        return [d["kind"] for d in r.json()["signals"]]

    assert await kinds(kind="crash") == ["crash"]
    assert await kinds(instrument="GOLD.MCX") == ["arbitrage"]
    assert await kinds(instrument="GC.COMEX/GOLD.MCX") == ["arbitrage"]
    assert await kinds(instrument="GC.COMEX") == ["arbitrage", "anomaly"]
    assert await kinds(since=to_iso(T0 + 2 * MIN)) == ["crash", "arbitrage"]
    assert await kinds(limit=1) == ["crash"]
    assert (await client.get("/api/signals", params={"kind": "rumour"})).status_code == 422
    assert (await client.get("/api/signals", params={"instrument": "NOPE"})).status_code == 404
    assert (await client.get("/api/signals", params={"instrument": "GC.COMEX/NOPE"})).status_code == 404


async def test_dead_letters_with_reason_filter(client: httpx.AsyncClient) -> None:
    docs = (await client.get("/api/deadletters")).json()["dead_letters"]
    assert [d["reason"] for d in docs] == ["late", "malformed"]
    assert docs[0]["instrument"] == "CL.NYMEX" and docs[0]["ts_recv_iso"] == to_iso(T0 + 1)
    late = (await client.get("/api/deadletters", params={"reason": "malformed"})).json()["dead_letters"]
    assert [d["raw"] for d in late] == ["{oops"]
    assert (await client.get("/api/deadletters", params={"limit": -3})).status_code == 422


async def test_status_combines_engine_store_and_live(client: httpx.AsyncClient) -> None:
    doc = (await client.get("/api/status")).json()
    assert doc["engine"] == {"mode": "test", "ticks_in": 42}
    assert doc["store"] == {"bars": 3, "signals": 3, "dead_letters": 2, "ticks": 0}
    assert doc["live"]["clients"] == 0


# ---- dashboard -------------------------------------------------------------------------------------------------

async def test_dashboard_is_served_and_references_only_local_assets(client: httpx.AsyncClient) -> None:
    r = await client.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    refs = re.findall(r'(?:src|href)="([^"]+)"', r.text)
    assert "/static/app.js" in refs and "/static/app.css" in refs
    for ref in refs:
        assert ref.startswith("/static/") or ref.startswith("data:"), ref
        if ref.startswith("/static/"):
            asset = await client.get(ref)
            assert asset.status_code == 200
            assert not re.search(r"https?://", asset.text), f"{ref} reaches outside the machine"
    js = (await client.get("/static/app.js")).text
    for used in ("/api/bars", "/api/stream", "/api/signals", "/api/instruments", "EventSource", "getContext"):
        assert used in js


# ---- SSE over a streaming in-process transport -----------------------------------------------------------------

class StreamingASGITransport(httpx.AsyncBaseTransport):
    def __init__(self, app: FastAPI) -> None:
        self.app = app

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = b"".join([part async for part in request.stream])  # type: ignore[union-attr]
        sent: asyncio.Queue[MutableMapping[str, Any]] = asyncio.Queue()
        closed = asyncio.Event()
        body_given = False

        async def receive() -> MutableMapping[str, Any]:
            nonlocal body_given
            if not body_given:
                body_given = True
                return {"type": "http.request", "body": body, "more_body": False}
            await closed.wait()
            return {"type": "http.disconnect"}

        async def send(message: MutableMapping[str, Any]) -> None:
            await sent.put(message)

        scope = {
            "type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}, "http_version": "1.1",
            "method": request.method, "scheme": "http", "path": request.url.path, "raw_path": request.url.raw_path,
            "query_string": request.url.query, "root_path": "", "server": ("test", 80), "client": ("127.0.0.1", 1),
            "headers": [(k.lower(), v) for k, v in request.headers.raw],
        }
        task = asyncio.create_task(self.app(scope, receive, send))
        first = asyncio.create_task(sent.get())
        await asyncio.wait({task, first}, return_when=asyncio.FIRST_COMPLETED)
        if not first.done():
            first.cancel()
            task.result()  # raises the app's error
        start = first.result()

        class Body(httpx.AsyncByteStream):
            async def __aiter__(self) -> AsyncIterator[bytes]:
                while True:
                    m = await sent.get()
                    if m.get("body"):
                        yield m["body"]
                    if not m.get("more_body", False):
                        return

            async def aclose(self) -> None:
                closed.set()
                await asyncio.wait_for(task, 5)

        return httpx.Response(start["status"], headers=start["headers"], stream=Body())


class SSEReader:
    """Parses frames off a streaming response: (event, data) pairs; comments are kept as ('#', text)."""

    def __init__(self, response: httpx.Response) -> None:
        self.chunks = response.aiter_bytes()
        self.buf = b""

    async def next(self, timeout_s: float = 5.0) -> tuple[str, Any]:
        while b"\n\n" not in self.buf:
            self.buf += await asyncio.wait_for(self.chunks.__anext__(), timeout_s)
        raw, self.buf = self.buf.split(b"\n\n", 1)
        event, data = "message", None
        for line in raw.decode().split("\n"):
            if line.startswith(":"):
                return "#", line[1:].strip()
            key, _, value = line.partition(": ")
            if key == "event":
                event = value
            elif key == "data":
                data = json.loads(value)
        return event, data

    async def events(self, n: int) -> list[tuple[str, Any]]:
        out: list[tuple[str, Any]] = []
        while len(out) < n:
            ev = await self.next()
            if ev[0] != "#":
                out.append(ev)
        return out


def stream_client(services: Services) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=StreamingASGITransport(create_app(services)), base_url="http://test")


async def wait_for_clients(services: Services, n: int) -> None:
    for _ in range(200):
        if services.hub.stats().clients == n:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"hub has {services.hub.stats().clients} clients, expected {n}")


TICK: TradeTick = TradeTick("CL.NYMEX", to_fixed("-37.63"), 5, T0 + 10, T0 + 11, seq=3)
QUOTE: QuoteTick = QuoteTick("GC.COMEX", to_fixed("1700.1"), to_fixed("1700.3"), 2, 3, T0 + 12, T0 + 13)


async def test_stream_delivers_published_events_in_order_then_disconnects(services: Services) -> None:
    async with stream_client(services) as c, c.stream("GET", "/api/stream") as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        reader = SSEReader(r)
        assert (await reader.next())[0] == "#"  # 'connected' comment: the client is registered
        services.hub.publish(BARS[0])
        services.hub.publish_many([TICK, SIGNALS[0], QUOTE])
        services.hub.publish_status({"ticks_in": 5})
        got = await reader.events(5)
        assert [e for e, _ in got] == ["bar", "tick", "signal", "tick", "status"]
        assert got[0][1]["close"] == "10.5" and got[0][1]["interval"] == "1m"
        assert got[1][1] == {"kind": "trade", "instrument": "CL.NYMEX", "price": "-37.63", "size": 5,
                             "ts_event_ns": T0 + 10, "ts_event_iso": to_iso(T0 + 10), "seq": 3}
        assert got[2][1]["kind"] == "crash" and got[2][1]["payload"] == msgspec.to_builtins(SIGNALS[0])
        assert (got[3][1]["bid"], got[3][1]["ask"]) == ("1700.1", "1700.3")
        assert got[4][1] == {"ticks_in": 5}
        assert services.hub.stats().clients == 1
    await wait_for_clients(services, 0)
    stats = services.hub.stats()
    assert (stats.connects, stats.disconnects, stats.delivered) == (1, 1, 5)


async def test_stream_filters_by_topic_and_instrument(services: Services) -> None:
    async with stream_client(services) as c, \
            c.stream("GET", "/api/stream", params={"topics": "signal.arbitrage,bar.60s"}) as by_topic, \
            c.stream("GET", "/api/stream", params={"instrument": "GOLD.MCX,CL.NYMEX"}) as by_inst:
        readers = [SSEReader(by_topic), SSEReader(by_inst)]
        for rd in readers:
            await rd.next()
        bar_1s = msgspec.structs.replace(BARS[0], interval_ns=10**9)
        services.hub.publish_many([bar_1s, QUOTE, *SIGNALS, BARS[1], TICK])
        services.hub.publish_status({"n": 1})
        topic_events = await readers[0].events(2)
        assert [(e, d.get("kind") or d.get("interval")) for e, d in topic_events] == [("signal", "arbitrage"),
                                                                                       ("bar", "1m")]
        inst_events = await readers[1].events(6)
        # GOLD.MCX only appears as the arbitrage sell leg; status is not instrument-specific
        assert [(e, d.get("instrument", "")) for e, d in inst_events] == [
            ("bar", "CL.NYMEX"), ("signal", "CL.NYMEX"), ("signal", "GC.COMEX/GOLD.MCX"), ("bar", "CL.NYMEX"),
            ("tick", "CL.NYMEX"), ("status", ""),
        ]


@pytest.mark.parametrize(("params", "status"), [({"topics": "gossip"}, 422), ({"topics": "bar.xx"}, 422),
                                                ({"instrument": "GC.COMEX,XAU.LBMA"}, 404)])
async def test_stream_rejects_bad_filters(services: Services, params: dict, status: int) -> None:
    async with stream_client(services) as c:
        r = await c.get("/api/stream", params=params)
        assert r.status_code == status
    assert services.hub.stats().connects == 0


async def test_idle_stream_gets_heartbeats(store: ClickHouseStore) -> None:
    services = make_services(store, heartbeat_s=0.05)
    async with stream_client(services) as c, c.stream("GET", "/api/stream") as r:
        reader = SSEReader(r)
        assert (await reader.next())[1].startswith("connected")
        assert await reader.next() == ("#", "heartbeat")


async def test_status_events_are_pushed_periodically_while_clients_listen(store: ClickHouseStore) -> None:
    services = make_services(store)
    services.config = msgspec.structs.replace(services.config, status_interval_s=0.05)
    app = create_app(services)
    async with app.router.lifespan_context(app), \
            httpx.AsyncClient(transport=StreamingASGITransport(app), base_url="http://test") as c, \
            c.stream("GET", "/api/stream", params={"topics": "status"}) as r:
        (event, doc), = await SSEReader(r).events(1)
        assert event == "status"
        assert doc["engine"] == {"mode": "test", "ticks_in": 42} and doc["live"]["clients"] == 1


# ---- fan-out policy (hub without HTTP) -----------------------------------------------------------------------

async def test_lagging_client_gets_latest_tick_per_instrument_and_keeps_order() -> None:
    hub = LiveHub(LiveHubConfig(client_queue_size=100))
    c = hub.connect(StreamFilter())
    prices = ["70.1", "70.2", "70.3", "70.4"]
    hub.publish(TradeTick("CL.NYMEX", to_fixed(prices[0]), 1, T0, T0))
    hub.publish(BARS[0])
    for p in prices[1:]:
        hub.publish(TradeTick("CL.NYMEX", to_fixed(p), 1, T0, T0))
    hub.publish(QUOTE)
    hub.publish(QUOTE)
    frames = [f for f in c.take().decode().split("\n\n") if f]
    assert [f.split("\n")[0] for f in frames] == ["event: tick", "event: bar", "event: tick"]
    assert '"price":"70.4"' in frames[0]  # the slot kept its place and got the newest price
    assert c.stats().conflated == 4  # 3 CL trades and 1 GC quote were replaced before being sent
    # once sent, the next tick is queued normally again (no conflation with what was already delivered)
    hub.publish(TradeTick("CL.NYMEX", to_fixed("71"), 1, T0, T0))
    assert '"price":"71"' in c.take().decode()


async def test_full_queue_drops_oldest_reports_gap_and_spares_other_clients() -> None:
    hub = LiveHub(LiveHubConfig(client_queue_size=3))
    slow, other = hub.connect(), hub.connect(StreamFilter(keys=frozenset({"signal"})))
    bars = [msgspec.structs.replace(BARS[0], start=T0 + i * MIN) for i in range(5)]
    hub.publish_many(bars)
    hub.publish(SIGNALS[0])
    text = slow.take().decode()
    frames = [f for f in text.split("\n\n") if f]
    assert frames[0] == 'event: gap\ndata: {"dropped":3}'
    starts = [json.loads(f.split("data: ", 1)[1]).get("start_ns") for f in frames[1:]]
    assert starts == [T0 + 3 * MIN, T0 + 4 * MIN, None]  # the newest bars and the signal survived, in order
    assert slow.stats().dropped == 3
    assert other.stats().dropped == 0 and other.take().startswith(b"event: signal")
    assert hub.stats().dropped == 3


async def test_publish_without_clients_is_counted_not_queued() -> None:
    hub = LiveHub()
    hub.publish_many([BARS[0], TICK])
    hub.publish_threadsafe([TICK])  # no loop bound yet: nobody could be listening
    s = hub.stats()
    assert (s.published, s.unrouted, s.clients) == (3, 3, 0)


def test_hub_refuses_unknown_event_types() -> None:
    with pytest.raises(TypeError):
        LiveHub().publish(LETTERS[0])  # type: ignore[arg-type]


# ---- real socket -----------------------------------------------------------------------------------------------

def test_stream_over_a_real_socket_with_uvicorn(store: ClickHouseStore) -> None:
    services = make_services(store)
    server = uvicorn.Server(uvicorn.Config(create_app(services), host="127.0.0.1", port=0, log_level="warning",
                                           lifespan="on", timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=5) as http:
            assert http.get("/api/bars", params={"instrument": "CL.NYMEX"}).json()["bars"][2]["close"] == "-37.63"
            with http.stream("GET", "/api/stream", params={"instrument": "CL.NYMEX"}) as r:
                lines = r.iter_lines()
                assert next(lines).startswith("retry:")
                # the engine publishes from its own thread
                services.hub.publish_threadsafe([QUOTE, TICK, BARS[2]])
                events = []
                for line in lines:
                    if line.startswith("event: "):
                        events.append(line[7:])
                    elif line.startswith("data: ") and events[-1] == "bar":
                        assert json.loads(line[6:])["close"] == "-37.63"
                        break
                assert events == ["tick", "bar"]  # the GC.COMEX quote was filtered out
        deadline = time.monotonic() + 5
        while services.hub.stats().clients:  # the server noticed the closed socket
            assert time.monotonic() < deadline, "client not released after disconnect"
            time.sleep(0.02)
    finally:
        server.should_exit = True
        thread.join(10)
    assert not thread.is_alive()


def test_static_dir_ships_with_the_package() -> None:
    static = Path(__file__).resolve().parents[1] / "serving" / "static"
    assert {p.name for p in static.iterdir()} >= {"index.html", "app.js", "app.css"}
