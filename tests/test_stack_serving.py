"""The web app on the stack, on real services: PostgreSQL 15 and Redis started on free ports under a
temporary state dir (Kafka is not needed here).

History written by the PostgreSQL writer (`PgStore`) is served by `PgHistoryStore` with the same answers
as the ClickHouse store gives for the same rows; a record published once through `RedisLiveSink` reaches
the SSE clients of two app replicas (two uvicorn servers on ephemeral ports) exactly once; a new client's
first frames are the latest ticks; `commodex stack serve` starts, answers and stops on SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg
import pyarrow as pa
import pytest
import redis
import uvicorn
from confluent_kafka import Message

from commodex.embedded.storage import ClickHouseStore, StorageConfig
from market import codec
from market.columns import TickColumns
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
from market.timeutil import parse_iso
from serving.config import LiveHubConfig, ServingConfig
from stack.cli import add_stack_parser
from stack.kafka_io import (
    HEADER_TYPE,
    HEADER_VERSION,
    TICK_BATCH_SCHEMA,
    TICK_BATCH_TYPE,
    decode_ticks,
    encode_tick_batch,
)
from stack.pg_history import PgHistoryStore
from stack.pg_store import PgStore
from stack.redis_live import RedisKeys, RedisLive, RedisLiveSink
from stack.serve import LiveFeedConfig, StackServing, build_serving, history_backend
from stack.services.base import ServiceError
from stack.services.stack import Stack
from stack.settings import StackSettings, for_state_dir, free_ports, save_settings

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
MIN = 60 * 10**9
REG = default_registry()
T0 = parse_iso("2020-04-20T18:00:00Z")

BARS = [
    Bar("CL.NYMEX", MIN, T0 + i * MIN, to_fixed(o), to_fixed(o) + 10**9, to_fixed(c) - 10**9, to_fixed(c), 10 + i,
        to_fixed(c), 3, T0 + (i + 1) * MIN, T0 + (i + 1) * MIN + 7)
    for i, (o, c) in enumerate([("18.27", "10.5"), ("10.5", "-2.25"), ("-2.25", "-37.63"), ("-37.63", "-20")])
] + [Bar("GC.COMEX", MIN, T0, to_fixed("1700"), to_fixed("1701"), to_fixed("1699"), to_fixed("1700.5"), 4,
         to_fixed("1700.2"), 2, T0 + MIN, T0 + MIN)]
# a late tick re-emitted the second CL bar: revision 1 must replace revision 0 in the answers
REVISED = Bar("CL.NYMEX", MIN, T0 + MIN, to_fixed("10.5"), to_fixed("11.5"), to_fixed("-4"), to_fixed("-2.25"), 99,
              to_fixed("1"), 4, T0 + 2 * MIN, T0 + 2 * MIN + 9, revision=1)
SIGNALS: list[Signal] = [
    CrashWarning("CL.NYMEX", 12.5, 5 * MIN, 3.1, to_fixed("18.27"), to_fixed("-37.63"), "rule", T0 + 3 * MIN, T0),
    ArbitrageSignal("GC.COMEX/GOLD.MCX", "GC.COMEX", "GOLD.MCX", "open", to_fixed("2.5"), to_fixed("1.25"), 6.1,
                    "oz", "USD", T0 + 2 * MIN, T0),
    AnomalySignal("GC.COMEX", AnomalyType.VOLUME_SPIKE, 9.0, 4.0, "1m volume", T0 + MIN, T0),
    AnomalySignal("GC.COMEX", AnomalyType.RETURN_ZSCORE, 5.5, 4.0, "z", T0 + MIN, T0 + 5),  # same ts_event: tie
]
LETTERS = [
    DeadLetter("codec", "malformed", "expected object", "{oops", T0),
    DeadLetter("bars", "late", "beyond allowed lateness", "{}", T0 + 1, "CL.NYMEX", T0 - MIN),
    DeadLetter("kafka", "malformed", "cut off", '{"type":', T0 + 2),
]


def _missing_tools() -> list[str]:
    from stack.services.postgres import bin_dir

    missing = [] if shutil.which("redis-server") else ["redis-server"]
    try:
        bin_dir()
    except ServiceError:
        missing.append("postgresql-15")
    return missing


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    """PostgreSQL and Redis of a private stack (schema applied, settings saved for the CLI); fails loudly when
    a service cannot start, skips only where the tools cannot be installed (no apt-get)."""
    missing = _missing_tools()
    if missing:
        if shutil.which("apt-get") is None:
            pytest.skip(f"stack serving needs {', '.join(missing)}; this machine has no apt-get to install them")
        pytest.fail(f"missing {', '.join(missing)}: apt-get install postgresql-15 redis-server (see .ci/run)")
    state = tempfile.mkdtemp(prefix="cdx-serve-")
    os.chmod(state, 0o755)  # PostgreSQL runs as the postgres user when we are root and must traverse it
    st = Stack(for_state_dir(state))
    try:
        st.redis.up()
        st.postgres.up()
        save_settings(st.settings)
        with PgStore(st.settings.pg_dsn) as pg:
            pg.migrate()
            pg.write(BARS, SIGNALS, LETTERS)
            pg.write([REVISED])
        yield st
    finally:
        st.down()
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="module")
def clickhouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClickHouseStore]:
    """The same rows in chdb: the reference answers."""
    ch = ClickHouseStore(StorageConfig(dsn=f"chdb://{tmp_path_factory.mktemp('serve_chdb')}"))
    ch.migrate()
    ch.insert_bars(BARS)
    ch.insert_bars([REVISED])
    ch.insert_signals(SIGNALS)
    ch.insert_dead_letters(LETTERS)
    yield ch
    ch.close()


CFG = ServingConfig(bars_limit_max=50, status_interval_s=0, live=LiveHubConfig(heartbeat_s=5))


def _serving(st: Stack, keys: RedisKeys) -> StackServing:
    return build_serving(st.settings, config=CFG, keys=keys)


# ---- history ---------------------------------------------------------------------------------------------------

def test_postgres_history_answers_like_clickhouse(stack: Stack, clickhouse: ClickHouseStore) -> None:
    with PgHistoryStore(stack.settings.pg_dsn) as pg:
        for args in [("CL.NYMEX", MIN), ("CL.NYMEX", MIN, T0 + MIN, T0 + 3 * MIN), ("CL.NYMEX", MIN, None, None, 2),
                     ("CL.NYMEX", MIN, T0 + 2 * MIN), ("GC.COMEX", MIN), ("GC.COMEX", 5 * MIN)]:
            assert pg.bars(*args) == clickhouse.bars(*args), args  # type: ignore[arg-type]
        assert REVISED in pg.bars("CL.NYMEX", MIN)
        for kw in [{}, {"kind": "anomaly"}, {"instrument": "GOLD.MCX"}, {"instrument": "GC.COMEX/GOLD.MCX"},
                   {"instrument": "GC.COMEX"}, {"since_ns": T0 + 2 * MIN}, {"limit": 2}, {"kind": "forecast"}]:
            assert pg.signals(**kw) == clickhouse.signals(**kw), kw  # type: ignore[arg-type]
        for kw in [{}, {"reason": "malformed"}, {"reason": "late", "limit": 1}, {"limit": 2}]:
            assert pg.dead_letters(**kw) == clickhouse.dead_letters(**kw), kw  # type: ignore[arg-type]
        counts = pg.counts()
        ch_counts = clickhouse.counts()
        assert (counts.bars, counts.signals, counts.dead_letters) == (ch_counts.bars, ch_counts.signals,
                                                                      ch_counts.dead_letters)
        assert counts.ticks == 0


def test_history_store_choice(stack: Stack) -> None:
    s = stack.settings
    assert history_backend(s) == "postgres"  # chdb:// is single-process: the sink loop holds it
    assert history_backend(s.replace(clickhouse_dsn="http://ch:8123")) == "clickhouse"
    assert history_backend(s.replace(clickhouse_dsn="http://ch:8123"), "postgres") == "postgres"


def test_pool_survives_a_postgres_restart(stack: Stack) -> None:
    with PgHistoryStore(stack.settings.pg_dsn, max_connections=2) as pg:
        assert len(pg.bars("CL.NYMEX", MIN)) == 4
        stack.postgres.down()
        try:
            with pytest.raises(psycopg.OperationalError):
                pg.bars("CL.NYMEX", MIN)
        finally:
            stack.postgres.up()
        assert len(pg.bars("CL.NYMEX", MIN)) == 4  # the dead connection was dropped, a new one opened


@pytest.fixture(scope="module")
def api(stack: Stack) -> Iterator[StackServing]:
    serving = _serving(stack, RedisKeys("api:latest", "api:live"))
    yield serving
    serving.close()


@pytest.fixture
async def client(api: StackServing) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api.app()), base_url="http://test") as c:
        yield c


async def test_history_endpoints_serve_what_pgstore_wrote(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/bars", params={"instrument": "CL.NYMEX", "interval": "1m"})
    assert r.status_code == 200
    bars = r.json()["bars"]
    assert [b["close"] for b in bars] == ["10.5", "-2.25", "-37.63", "-20"]
    assert bars[1]["revision"] == 1 and bars[1]["volume"] == 99  # the revised bar, once
    r = await client.get("/api/bars", params={"instrument": "CL.NYMEX", "start": "2020-04-20T18:02:00Z",
                                              "end": str(T0 + 4 * MIN), "limit": 1})
    assert [b["start_ns"] for b in r.json()["bars"]] == [T0 + 3 * MIN]  # the most recent of [start, end)

    sigs = (await client.get("/api/signals")).json()["signals"]
    assert [s["kind"] for s in sigs] == ["crash", "arbitrage", "anomaly", "anomaly"]  # newest first
    gold = (await client.get("/api/signals", params={"instrument": "GOLD.MCX"})).json()["signals"]
    assert [s["instrument"] for s in gold] == ["GC.COMEX/GOLD.MCX"]  # matched by its leg
    since = (await client.get("/api/signals", params={"since": "2020-04-20T18:02:30Z"})).json()["signals"]
    assert [s["kind"] for s in since] == ["crash"]
    assert since[0]["payload"]["drawdown_pct"] == 12.5 and since[0]["payload"]["last"] == to_fixed("-37.63")

    letters = (await client.get("/api/deadletters", params={"reason": "malformed"})).json()["dead_letters"]
    assert [d["raw"] for d in letters] == ['{"type":', "{oops"]

    status = (await client.get("/api/status")).json()
    assert status["store"] == {"bars": 5, "signals": 4, "dead_letters": 3, "ticks": 0}
    assert status["engine"]["runtime"] == "stack" and status["engine"]["history"] == "postgres"


@pytest.mark.parametrize(("path", "params", "code"), [
    ("/api/bars", {"instrument": "CL.NYMEX", "limit": "0"}, 422),
    ("/api/bars", {"instrument": "CL.NYMEX", "limit": "many"}, 422),
    ("/api/bars", {"instrument": "CL.NYMEX", "interval": "7 parsecs"}, 422),
    ("/api/bars", {"instrument": "CL.NYMEX", "start": "yesterday"}, 422),
    ("/api/bars", {"instrument": "CL.NYMEX", "start": str(T0), "end": str(T0)}, 422),
    ("/api/bars", {}, 422),
    ("/api/bars", {"instrument": "NOPE.X"}, 404),
    ("/api/signals", {"kind": "rumour"}, 422),
    ("/api/signals", {"since": "2020-04-20T18:00:00"}, 422),  # no zone: a naive time is refused
    ("/api/deadletters", {"limit": "-1"}, 422),
    ("/api/stream", {"topics": "gossip"}, 422),
])
async def test_bad_parameters_are_refused_on_the_stack_app(client: httpx.AsyncClient, path: str,
                                                           params: dict[str, str], code: int) -> None:
    r = await client.get(path, params=params)
    assert r.status_code == code, r.text


# ---- live across replicas ---------------------------------------------------------------------------------------

@dataclass
class Replica:
    serving: StackServing
    server: uvicorn.Server
    thread: threading.Thread

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.servers[0].sockets[0].getsockname()[1]}"


def _start(serving: StackServing) -> Replica:
    server = uvicorn.Server(uvicorn.Config(serving.app(), host="127.0.0.1", port=0, log_level="warning",
                                           lifespan="on", timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    _wait(lambda: server.started and serving.feed.ready.is_set(), 20, "replica up and subscribed")
    return Replica(serving, server, thread)


def _stop(r: Replica) -> None:
    r.serving.hub.close()  # SSE responses never end by themselves (serving.server.DashboardServer does this)
    r.server.should_exit = True
    r.thread.join(10)
    r.serving.close()
    assert not r.thread.is_alive()


class SSE:
    """Blocking reader of one stream: (event, data) frames; comments skipped."""

    def __init__(self, response: httpx.Response) -> None:
        self.lines = response.iter_lines()

    def next(self) -> tuple[str, Any]:
        event, data = "", None
        for line in self.lines:
            if line == "":
                if event:
                    return event, data
                continue
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
        raise EOFError("stream ended")

    def until(self, stop: Callable[[str, Any], bool]) -> list[tuple[str, Any]]:
        out = []
        while True:
            ev = self.next()
            out.append(ev)
            if stop(*ev):
                return out


def _price(frame: tuple[str, Any]) -> tuple[str, str]:
    _, d = frame
    return d["instrument"], d["price"] if d["kind"] == "trade" else d["bid"]


def test_one_publish_reaches_clients_of_two_replicas_exactly_once(stack: Stack) -> None:
    keys = RedisKeys("two:latest", "two:live")
    live = RedisLive(stack.settings.redis_url, keys)
    live.clear()
    sink = RedisLiveSink(live)
    gold = QuoteTick("GC.COMEX", to_fixed("1700.1"), to_fixed("1700.3"), 2, 3, T0 + 1, T0 + 2, 1)
    crude = TradeTick("CL.NYMEX", to_fixed("-37.63"), 5, T0 + 3, T0 + 4, 2)
    sink.ticks([gold, crude])  # in the hash before any replica starts: the first frames of new clients
    replicas = [_start(_serving(stack, keys)), _start(_serving(stack, keys))]
    try:
        with httpx.Client(timeout=10) as http:
            with http.stream("GET", replicas[0].url + "/api/stream") as r0, \
                    http.stream("GET", replicas[1].url + "/api/stream", params={"topics": "signal,bar,tick"}) as r1:
                streams = [SSE(r0), SSE(r1)]
                for s in streams:  # the latest tick per instrument from Redis, before anything live
                    assert sorted(_price(s.next()) for _ in range(2)) == [("CL.NYMEX", "-37.63"),
                                                                          ("GC.COMEX", "1700.1")]
                crash = SIGNALS[0]
                sink.signals([crash])  # once, to the channel
                sink.ticks([TradeTick("CL.NYMEX", to_fixed("-36.5"), 1, T0 + 5, T0 + 6, 3)])
                sink.bars([BARS[3]])  # sentinel: after it, everything before has been delivered
                for s in streams:
                    got = s.until(lambda ev, d: ev == "bar")
                    assert [ev for ev, _ in got] == ["signal", "tick", "bar"]
                    assert got[0][1]["kind"] == "crash" and got[0][1]["ts_event_ns"] == crash.ts_event
                    assert _price(got[1]) == ("CL.NYMEX", "-36.5")
            # a client arriving now starts from the newest price, kept current by the channel
            with http.stream("GET", replicas[1].url + "/api/stream", params={"instrument": "CL.NYMEX"}) as r2:
                assert _price(SSE(r2).next()) == ("CL.NYMEX", "-36.5")
            for rep in replicas:
                feed = http.get(rep.url + "/api/status").json()["engine"]["live_feed"]
                assert feed["subscribed"] and feed["received"] == 3 and feed["seeded"] == 2
                assert feed["rejected"] == 0 and feed["errors"] == 0
    finally:
        for rep in replicas:
            _stop(rep)
        live.close()


async def test_undecodable_channel_message_is_counted_not_streamed(stack: Stack) -> None:
    keys = RedisKeys("bad:latest", "bad:live")
    serving = _serving(stack, keys)
    raw = redis.Redis.from_url(stack.settings.redis_url)
    live = RedisLive(stack.settings.redis_url, keys)
    try:
        async with serving.live():
            await _await(serving.feed.ready.is_set, "feed subscribed")
            client = serving.hub.connect()
            raw.publish(keys.channel, b'{"type":"bar.v1","instrument_id":')  # cut off
            live.publish(others=[BARS[0]])
            await _await(lambda: serving.feed.stats().received == 2, "both messages")
            frames = client.take().split(b"\n\n")
            assert [f.split(b"\n")[0] for f in frames if f] == [b"event: bar"]
            st = serving.feed.stats()
            assert st.rejected == 1 and st.rejects[0].reason == "malformed" and st.rejects[0].source == "redis"
            assert st.rejects[0].raw == '{"type":"bar.v1","instrument_id":'
    finally:
        serving.close()
        raw.close()
        live.close()


async def test_feed_reconnects_and_reseeds_after_a_redis_restart(stack: Stack) -> None:
    keys = RedisKeys("restart:latest", "restart:live")
    serving = build_serving(stack.settings, config=CFG, keys=keys,
                            feed=LiveFeedConfig(backoff_initial_ms=50, backoff_max_ms=200))
    try:
        async with serving.live():
            await _await(serving.feed.ready.is_set, "feed subscribed")
            client = serving.hub.connect()
            await asyncio.to_thread(stack.redis.down)
            await _await(lambda: serving.feed.stats().errors >= 1, "the feed to notice")
            await asyncio.to_thread(stack.redis.up)  # empty: Redis keeps no data across restarts
            live = RedisLive(stack.settings.redis_url, keys)
            try:
                live.publish(ticks=[TradeTick("GC.COMEX", to_fixed("1701"), 1, T0, T0 + 1, 9)])  # while it retries
                await _await(serving.feed.ready.is_set, "feed subscribed again", timeout_s=20)
                live.publish(others=[BARS[4]])
                await _await(lambda: serving.feed.stats().received >= 1, "the bar after the restart")
            finally:
                live.close()
            frames: list[bytes] = []

            def seen(event: bytes) -> bool:
                frames.extend(f.split(b"\n")[0] for f in client.take().split(b"\n\n") if f)
                return event in frames

            # the re-read hash and the channel race each other after the resubscribe: wait for both, any order
            await _await(lambda: seen(b"event: bar"), "the bar reaching the client")
            await _await(lambda: seen(b"event: tick"), "the outage's tick (channel or re-read hash)")
            st = serving.feed.stats()
            assert st.reconnects == 1 and st.subscribed and "Connection" in st.last_error
    finally:
        serving.close()


# ---- the command ------------------------------------------------------------------------------------------------

def test_stack_serve_command_serves_history_and_stops_on_sigint(stack: Stack) -> None:
    port = free_ports(1)[0]
    settings: StackSettings = stack.settings
    proc = subprocess.Popen([sys.executable, "-m", "commodex.cli", "stack", "serve", "--state-dir",
                             settings.state_dir, "--port", str(port)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.communicate()
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/api/bars", params={"instrument": "GC.COMEX"}, timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "commodex stack serve did not answer"
                time.sleep(0.2)
        assert [b["close"] for b in r.json()["bars"]] == ["1700.5"]
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
        assert f"http://127.0.0.1:{port}/" in err and "postgres" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_stack_serve_fails_clearly_without_a_stack(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    save_settings(for_state_dir(tmp_path))  # nothing listens on these free ports
    parser = argparse.ArgumentParser()
    add_stack_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["stack", "serve", "--state-dir", str(tmp_path)])
    assert (args.host, args.port, args.history) == ("127.0.0.1", 8766, "auto")  # this machine only, by default
    assert args.handler(args) == 1
    assert "is the stack up?" in capsys.readouterr().err


def _wait(cond: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.02)


async def _await(cond: Callable[[], bool], what: str, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


# ---- Kafka tick batch messages (decoding needs no broker; bench/bench_stack.py round-trips them through one) ----

def _message(value: bytes, offset: int, batch: bool, ts_ms: int = 1_700_000_000_000) -> Message:
    headers: list[tuple[str, str | bytes | None]] = [(HEADER_VERSION, b"1"),
                                                     (HEADER_TYPE, TICK_BATCH_TYPE if batch else b"trade.v1")]
    return Message(topic="md.ticks", partition=0, offset=offset, value=value, headers=headers,
                   timestamp=(1, ts_ms))


def _sim_ticks(n: int) -> list[TradeTick | QuoteTick]:
    ids = REG.ids
    out: list[TradeTick | QuoteTick] = []
    for i in range(n):
        ts = T0 + i * 1_000_003
        if i % 3:
            out.append(QuoteTick(ids[i % len(ids)], to_fixed("-37.63") + i, to_fixed("-37.62") + i, 5, 7, ts, ts + 9,
                                 i + 1))
        else:
            out.append(TradeTick(ids[i % len(ids)], to_fixed("2034.1") - i, 3, ts, 0 if i == 3 else ts + 9, i + 1))
    return out


def _assert_same(a: TickColumns, b: TickColumns) -> None:
    assert len(a) == len(b)
    for name in TickColumns.DTYPES:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


@pytest.mark.parametrize("rows_per_message", [1, 7, 4096])
def test_tick_batches_decode_like_one_json_message_per_tick(rows_per_message: int) -> None:
    ticks = _sim_ticks(500)
    as_json = decode_ticks([_message(codec.encode(t), i, batch=False) for i, t in enumerate(ticks)], REG)
    cols = TickColumns.from_ticks(ticks, REG)
    batches = [encode_tick_batch(cols.take(slice(lo, lo + rows_per_message)), REG)
               for lo in range(0, len(cols), rows_per_message)]
    as_batches = decode_ticks([_message(b, i, batch=True) for i, b in enumerate(batches)], REG)
    assert as_json.dead_letters == as_batches.dead_letters == []
    _assert_same(as_batches.columns, as_json.columns)
    assert as_batches.columns.ts_recv[3] == 1_700_000_000_000 * 1_000_000  # ts_recv 0: the Kafka timestamp


def test_mixed_messages_keep_order_and_bad_rows_become_dead_letters() -> None:
    ticks = _sim_ticks(6)
    table = pa.table({
        "instrument_id": pa.DictionaryArray.from_arrays(pa.array([0, 1, 0], pa.int32()),
                                                        pa.array(["GC.COMEX", "NOPE.X"])),
        "kind": pa.array([0, 0, 7], pa.int8()),
        **{c: pa.array([T0 + 1, T0 + 2, T0 + 3], pa.int64()) for c in ("ts_event", "ts_recv")},
        **{c: pa.array([1, 2, 3], pa.int64()) for c in ("seq", "price", "size")},
        **{c: pa.array([0, 0, 0], pa.int64()) for c in ("bid", "ask", "bid_size", "ask_size")},
    }, schema=TICK_BATCH_SCHEMA)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, TICK_BATCH_SCHEMA) as w:
        w.write_table(table)
    odd = sink.getvalue().to_pybytes()
    msgs = [_message(codec.encode(ticks[0]), 0, False),
            _message(encode_tick_batch(TickColumns.from_ticks(ticks[1:4], REG), REG), 1, True),
            _message(odd, 2, True),
            _message(b"not arrow at all", 3, True),
            _message(codec.encode(ticks[4]), 4, False), _message(codec.encode(ticks[5]), 5, False)]
    ing = decode_ticks(msgs, REG)
    good_row = TradeTick("GC.COMEX", 1, 1, T0 + 1, T0 + 1, 1)  # the odd batch's only valid row
    want = [*ticks[:4], good_row, *ticks[4:]]
    _assert_same(ing.columns, decode_ticks([_message(codec.encode(t), i, False) for i, t in enumerate(want)],
                                           REG).columns)
    reasons = [(d.reason, d.instrument_id) for d in ing.dead_letters]
    assert reasons == [("unknown_instrument", "NOPE.X"), ("malformed", "GC.COMEX"), ("malformed", "")]
    assert "row 1 of md.ticks[0]@2" in ing.dead_letters[0].detail
    assert "md.ticks[0]@3" in ing.dead_letters[2].detail and "Arrow" in ing.dead_letters[2].detail


def test_tick_batch_refuses_rows_of_unknown_instruments() -> None:
    cols = TickColumns.from_ticks([TradeTick("NOPE.X", 1, 1, T0, T0)], REG)
    with pytest.raises(ValueError, match="unknown instrument"):
        encode_tick_batch(cols, REG)
