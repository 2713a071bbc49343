"""The scale-out stack end to end, on real services: a Kafka broker (KRaft, from Maven jars), PostgreSQL 15,
Redis and chdb, all started by the session fixture on free ports under a temporary state dir.

A seeded simulated replay goes through Kafka, the embedded pipeline runs on the consumed ticks and publishes
bars/signals/dead letters back to Kafka, and the sink loops write them into PostgreSQL and ClickHouse. Every
scenario is checked against a direct in-process run of the same ticks: each bar (latest revision) and each
signal exactly once in both databases, equal to the direct run. Faults: a malformed tick message (-> dlq
with its reason), PostgreSQL stopped while a sink writes (backoff, then catch-up), and the broker killed
with SIGKILL mid-replay and restarted.

Each scenario uses its own topic namespace, PostgreSQL database and ClickHouse database, so scenarios
sharing the one broker cannot see each other's records.
"""

from __future__ import annotations

import argparse
import bisect
import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import pytest
from confluent_kafka import Consumer, KafkaError

from commodex.embedded.engine import Summary
from commodex.embedded.storage import ClickHouseStore, StorageConfig, record_id
from feeds.tickfile import ingest
from jobs.market_job import build
from jobs.pipeline import Pipeline
from jobs.sink import Sink
from market import codec
from market.columns import TickColumns
from market.events import Bar, DeadLetter, QuoteTick, Signal, TradeTick
from market.instruments import default_registry
from market.rejects import Reason
from simulators.config import SimConfig
from simulators.market import simulate
from stack.cli import add_stack_parser
from stack.kafka_io import (
    HEADER_TYPE,
    HEADER_VERSION,
    KafkaPublisher,
    KafkaSink,
    KafkaTickSource,
    Topics,
    ensure_topics,
    publish_ticks,
)
from stack.pg_store import PgStore
from stack.redis_live import RedisKeys, RedisLive, RedisLiveSink
from stack.services.stack import Stack
from stack.settings import (
    ENV_CLICKHOUSE_DSN,
    ENV_KAFKA_BOOTSTRAP,
    ENV_PG_DSN,
    ENV_REDIS_URL,
    ENV_STATE_DIR,
    load_settings,
)
from stack.sinks import ClickHouseWriter, PostgresWriter, SinkLoop, SinkLoopConfig

pytestmark = pytest.mark.slow

SIM = SimConfig(scenarios=("calm", "arbitrage", "crossed", "spike", "crash", "dirty"), seed=7, duration_s=240)
MALFORMED = b'{"type":"trade.v1","instrument_id":"GC.COMEX","price":'  # cut off mid-message
BarKey = tuple[str, int, int]
NS = 1_000_000_000


# ---- settings and the CLI ---------------------------------------------------------------------------------------

def test_settings_come_from_defaults_then_environment_then_overrides(tmp_path: Path) -> None:
    d = load_settings({})
    assert d.kafka_bootstrap == "127.0.0.1:19092" and d.pg_dsn.endswith("@127.0.0.1:15432/commodex")
    assert d.redis_url == "redis://127.0.0.1:16379/0" and d.clickhouse_dsn == f"chdb://{d.state_path / 'chdb'}"
    env = {ENV_STATE_DIR: str(tmp_path / "env"), ENV_PG_DSN: "postgresql://u@db.example:5432/x",
           ENV_KAFKA_BOOTSTRAP: "k1:9092,k2:9092", ENV_REDIS_URL: "redis://r:6379/1", ENV_CLICKHOUSE_DSN: "http://c:8123"}
    e = load_settings(env)
    assert (e.state_dir, e.pg_dsn, e.kafka_bootstrap, e.redis_url, e.clickhouse_dsn) == (
        str(tmp_path / "env"), env[ENV_PG_DSN], env[ENV_KAFKA_BOOTSTRAP], env[ENV_REDIS_URL], env[ENV_CLICKHOUSE_DSN])
    o = load_settings(env, state_dir=str(tmp_path / "flag"), postgres_port=25432)
    assert o.state_dir == str(tmp_path / "flag") and o.pg_dsn == env[ENV_PG_DSN]  # explicit env DSN kept
    assert load_settings({}, postgres_port=25432).pg_dsn.endswith(":25432/commodex")  # derived from the port
    with pytest.raises(ValueError, match="distinct"):
        load_settings({}, redis_port=19092)


def test_up_is_idempotent_and_status_shows_address_and_version(stack: Stack,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    before = {r.name: r.pid for r in stack.status()}
    rows = stack.up()  # again, now with the standard topics and the schema of the default database
    assert {r.name: r.pid for r in rows} == before  # nothing restarted
    assert all(r.healthy for r in rows)
    with PgStore(stack.settings.pg_dsn) as pg:
        assert pg.migrate() == []
    parser = argparse.ArgumentParser()
    add_stack_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["stack", "status", "--state-dir", stack.settings.state_dir, "--json"])
    assert args.handler(args) == 0
    by_name = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(by_name) == {"kafka", "postgres", "redis", "clickhouse"}
    st = stack.settings
    for name, address in (("kafka", st.kafka_bootstrap), ("postgres", f"{st.host}:{st.postgres_port}"),
                          ("redis", f"{st.host}:{st.redis_port}")):
        assert by_name[name]["running"] and by_name[name]["healthy"] and by_name[name]["address"] == address
    assert by_name["kafka"]["version"] == st.kafka_version
    assert by_name["postgres"]["version"].startswith("15.")
    assert by_name["redis"]["version"][0].isdigit()
    assert "chdb" in by_name["clickhouse"]["version"]


# ---- the replay and its direct in-process run -------------------------------------------------------------------

@dataclass
class Expected:
    ticks: list[TradeTick | QuoteTick]
    bars: dict[BarKey, Bar]  # latest revision per (instrument, interval, start)
    signal_ids: set[str]
    dead_letter_ids: set[str]  # validation / lateness rejects of the pipeline (deterministic)
    last_tick: dict[str, TradeTick | QuoteTick]  # last accepted tick per instrument, in arrival order


def _latest_bars(bars: list[Bar]) -> dict[BarKey, Bar]:
    out: dict[BarKey, Bar] = {}
    for b in bars:
        key = (b.instrument_id, b.interval_ns, b.start)
        if key not in out or b.revision > out[key].revision:
            out[key] = b
    return out


def _with_late_trades(ticks: list[TradeTick | QuoteTick], delay_ns: int = 5 * NS) -> list[TradeTick | QuoteTick]:
    """Three trades delivered `delay_ns` later than recorded (past the watermark, within the allowed lateness),
    unsequenced as a late correction would come: their bars are re-emitted with revision 1."""
    out = list(ticks)
    picks = []
    for frac in (0.3, 0.5, 0.7):
        i = int(len(out) * frac)
        while not isinstance(out[i], TradeTick):
            i += 1
        picks.append(i)
    late = [out.pop(i) for i in sorted(picks, reverse=True)]
    for t in late:
        j = bisect.bisect_left([x.ts_recv for x in out], t.ts_recv + delay_ns)
        out.insert(j, msgspec.structs.replace(t, ts_recv=out[j - 1].ts_recv, seq=0))
    return out


@pytest.fixture(scope="module")
def expected() -> Expected:
    reg = default_registry()
    cols = ingest(simulate(SIM), reg).columns
    ticks = _with_late_trades([cols.row(i, reg) for i in range(len(cols))])
    p = Pipeline()
    out = p.process(TickColumns.from_ticks(ticks, reg))
    fin = p.finish()
    acc: TickColumns = out.accepted  # type: ignore[assignment]
    last: dict[str, TradeTick | QuoteTick] = {}
    for i in range(len(acc)):  # later rows overwrite earlier ones
        last[reg.by_index(int(acc.instrument[i])).id] = acc.row(i, reg)
    return Expected(
        ticks=ticks,
        bars=_latest_bars(out.bars + fin.bars),
        signal_ids={record_id(codec.encode(s)) for s in out.signals + fin.signals},
        dead_letter_ids={record_id(codec.encode(d)) for d in out.dead_letters + fin.dead_letters},
        last_tick=last,
    )


# ---- per-scenario plumbing ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def chdb_path(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One chdb path for the module (chdb hosts one per process); released at teardown for other modules."""
    path = str(tmp_path_factory.mktemp("stack_chdb"))
    anchor = ClickHouseStore(StorageConfig(dsn=f"chdb://{path}", database="anchor"))
    yield path
    anchor.close()


@dataclass
class Scenario:
    name: str
    stack: Stack
    names: Topics
    pg_dsn: str
    ch: ClickHouseStore
    stores: list[PgStore] = field(default_factory=list)

    @property
    def bootstrap(self) -> str:
        return self.stack.settings.kafka_bootstrap

    def pg(self) -> PgStore:
        st = PgStore(self.pg_dsn)
        self.stores.append(st)
        return st

    def pg_loop(self, group: str = "pg", **cfg: int) -> SinkLoop:
        return SinkLoop(self.bootstrap, PostgresWriter(self.pg()), f"{self.name}.{group}", self.names.outputs(),
                        self.names, SinkLoopConfig(**cfg))

    def ch_loop(self, group: str = "ch") -> SinkLoop:
        return SinkLoop(self.bootstrap, ClickHouseWriter(self.ch), f"{self.name}.{group}", self.names.outputs(),
                        self.names)

    def close(self) -> None:
        for st in self.stores:
            st.close()
        self.ch.close()


def _make_scenario(stack: Stack, chdb_path: str, name: str) -> Scenario:
    """Own topics (namespace), PostgreSQL database and ClickHouse database, schemas applied."""
    names = Topics(f"{name}.")
    ensure_topics(stack.settings.kafka_bootstrap, names.standard())
    stack.postgres.ensure_database(name)
    dsn = stack.settings.pg_dsn.rsplit("/", 1)[0] + f"/{name}"
    with PgStore(dsn) as pg:
        pg.migrate()
    ch = ClickHouseStore(StorageConfig(dsn=f"chdb://{chdb_path}", database=name))
    ch.migrate()
    return Scenario(name, stack, names, dsn, ch)


@pytest.fixture
def scenario(stack: Stack, chdb_path: str) -> Iterator[Callable[[str], Scenario]]:
    made: list[Scenario] = []

    def make(name: str) -> Scenario:
        made.append(_make_scenario(stack, chdb_path, name))
        return made[-1]

    yield make
    for s in made:
        s.close()


def _produce(bootstrap: str, names: Topics, ticks: list[TradeTick | QuoteTick], extra: Sequence[bytes] = ()) -> None:
    pub = KafkaPublisher(bootstrap, client_id="test-feed")
    publish_ticks(pub, ticks, names.ticks)
    for raw in extra:
        pub.send(names.ticks, raw, b"GC.COMEX")
    pub.flush()


def _run_job(s: Scenario, until: Callable[[], bool] = lambda: True,
             extra: Sequence[Sink] = ()) -> tuple[Summary, KafkaTickSource]:
    sink = KafkaSink(KafkaPublisher(s.bootstrap, client_id="test-job"), s.names)
    source = KafkaTickSource(s.bootstrap, f"{s.name}.job", s.names, until=until, before_commit=sink.flush)
    try:
        summary = build(source, [sink, *extra]).run()
        sink.flush()  # finish() closes the open windows after the source ended
    finally:
        source.close()
    return summary, source


def _assert_stores_match(s: Scenario, exp: Expected) -> None:
    with PgStore(s.pg_dsn) as pg:
        pg_bars = pg.bars()
        assert len(pg_bars) == len({(b.instrument_id, b.interval_ns, b.start) for b in pg_bars})
        assert {(b.instrument_id, b.interval_ns, b.start): b for b in pg_bars} == exp.bars
        assert pg.signal_ids() == exp.signal_ids
        assert {record_id(codec.encode(x)) for x in pg.signals()} == exp.signal_ids  # payloads decode back equal
        pg_dead = {record_id(codec.encode(d)) for d in pg.dead_letters()}
        assert exp.dead_letter_ids <= pg_dead
        assert pg.counts().bars == len(exp.bars) and pg.counts().signals == len(exp.signal_ids)
    ch = s.ch
    counts = ch.counts()
    assert counts.bars == len(exp.bars)
    assert counts.signals == len(exp.signal_ids)
    ch_bars: dict[BarKey, Bar] = {}
    for iid, interval in {(k[0], k[1]) for k in exp.bars}:
        for b in ch.bars(iid, interval, limit=1_000_000):
            ch_bars[(b.instrument_id, b.interval_ns, b.start)] = b
    assert ch_bars == exp.bars
    assert {record_id(codec.encode(x)) for x in ch.signals(limit=1_000_000)} == exp.signal_ids
    assert exp.dead_letter_ids <= {record_id(codec.encode(d)) for d in ch.dead_letters(limit=1_000_000)}


def _read_topic(bootstrap: str, topic: str, timeout_s: float = 20.0) -> list[tuple[bytes, bytes, dict[str, bytes]]]:
    """(key, value, headers) of every record, from the start to the end of the partition."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{time.time_ns()}",
                  "auto.offset.reset": "earliest", "enable.partition.eof": True})
    c.subscribe([topic])
    out: list[tuple[bytes, bytes, dict[str, bytes]]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            err = m.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    break
                raise AssertionError(f"reading {topic}: {err}")
            raw = m.headers() or []
            headers = {k: v for k, v in (raw.items() if isinstance(raw, dict) else raw) if isinstance(v, bytes)}
            out.append((m.key() or b"", m.value() or b"", headers))
    finally:
        c.close()
    return out


# ---- scenarios ---------------------------------------------------------------------------------------------------

@dataclass
class CleanRun:
    scenario: Scenario
    summary: Summary
    source: KafkaTickSource
    live: RedisLive
    received: list[object]  # what a Redis subscriber got during the run


@pytest.fixture(scope="module")
def clean_run(stack: Stack, chdb_path: str, expected: Expected) -> Iterator[CleanRun]:
    """One replay without faults (plus one malformed tick), with Redis attached; shared by several tests."""
    s = _make_scenario(stack, chdb_path, "clean")
    live = RedisLive(stack.settings.redis_url, RedisKeys("clean:latest", "clean:live"))
    sub = live.subscribe()
    received: list[object] = []
    done = threading.Event()

    def listen() -> None:
        while not done.is_set():
            ev = sub.get(0.2)
            if ev is not None:
                received.append(ev)

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    _produce(s.bootstrap, s.names, expected.ticks, [MALFORMED])
    summary, source = _run_job(s, extra=[RedisLiveSink(live)])
    for loop in (s.pg_loop(), s.ch_loop()):
        loop.drain(60)
        loop.close()
    time.sleep(0.5)  # last pub/sub messages in flight
    done.set()
    listener.join(5)
    yield CleanRun(s, summary, source, live, received)
    sub.close()
    live.close()
    s.close()


def test_replay_through_kafka_lands_exactly_once_and_equals_direct_run(clean_run: CleanRun,
                                                                       expected: Expected) -> None:
    assert clean_run.summary.ticks_in == len(expected.ticks) + 1  # + the malformed one
    assert expected.signal_ids and expected.bars and expected.dead_letter_ids  # the replay exercises all three
    assert any(b.revision for b in expected.bars.values())  # ... and late-tick bar revisions
    _assert_stores_match(clean_run.scenario, expected)


def test_bars_table_is_natively_partitioned_by_month(clean_run: CleanRun, expected: Expected) -> None:
    months = {time.strftime("%Y%m", time.gmtime(start // NS)) for _, _, start in expected.bars}
    with PgStore(clean_run.scenario.pg_dsn) as pg:
        assert not pg.timescale()  # no TimescaleDB here: the native path of sql/postgres/001_core.sql
        assert pg.bar_partitions() == sorted(f"bars_p{m}" for m in months)
        assert pg.migrate() == []  # applied once; a second run changes nothing


def test_malformed_tick_message_goes_to_dlq_with_reason(clean_run: CleanRun, expected: Expected) -> None:
    s = clean_run.scenario
    assert clean_run.source.stats.by_reason == {Reason.MALFORMED.label: 1}
    dlq = [codec.decode(v) for _, v, _ in _read_topic(s.bootstrap, s.names.dlq)]
    bad = [d for d in dlq if isinstance(d, DeadLetter) and d.raw == MALFORMED.decode()]
    assert len(bad) == 1
    assert bad[0].reason == "malformed" and bad[0].source == "kafka"
    assert f"{s.names.ticks}[0]@{len(expected.ticks)}" in bad[0].detail  # where it was: topic, partition, offset
    with PgStore(s.pg_dsn) as pg:
        assert [d.raw for d in pg.dead_letters("malformed")] == [MALFORMED.decode()]
    assert [d.raw for d in s.ch.dead_letters("malformed")] == [MALFORMED.decode()]


def test_messages_carry_wire_version_and_instrument_key(clean_run: CleanRun) -> None:
    s = clean_run.scenario
    msgs = _read_topic(s.bootstrap, s.names.bars(60_000_000_000))
    assert msgs
    for key, value, headers in msgs:
        bar = codec.decode(value)
        assert isinstance(bar, Bar)
        assert key == bar.instrument_id.encode()
        assert headers[HEADER_VERSION] == str(codec.WIRE_VERSION).encode()
        assert headers[HEADER_TYPE] == b"bar.v1"


def test_redis_holds_latest_tick_per_instrument_and_fans_out(clean_run: CleanRun, expected: Expected) -> None:
    live = clean_run.live
    assert live.latest_all() == expected.last_tick
    gold = expected.last_tick["GC.COMEX"]
    want = gold.price if isinstance(gold, TradeTick) else (gold.bid + gold.ask) // 2
    assert live.latest_price("GC.COMEX") == want
    received = clean_run.received
    assert any(isinstance(e, Bar) for e in received)
    assert any(isinstance(e, Signal) for e in received)
    assert any(isinstance(e, TradeTick | QuoteTick) for e in received)


def test_redelivered_outputs_change_nothing(clean_run: CleanRun, expected: Expected) -> None:
    """A second consumer group re-reads every output topic from the start into the same databases."""
    s = clean_run.scenario
    again = s.pg_loop(group="pg-again")
    again.drain(60)
    again.close()
    assert again.stats.bars >= len(expected.bars)  # every revision of every bar was written again
    _assert_stores_match(s, expected)


def test_postgres_outage_sink_backs_off_and_catches_up(clean_run: CleanRun, stack: Stack,
                                                       expected: Expected) -> None:
    """The clean run's output topics are sunk again into a fresh database, in small batches. Outage 1:
    PostgreSQL stops while the loop runs; it retries with backoff and goes on once PostgreSQL is back.
    Outage 2: the loop is stopped while PostgreSQL is down (its batch unwritten), PostgreSQL comes back,
    and the same loop drains the rest: the abandoned batch is read again, not skipped."""
    base = clean_run.scenario
    stack.postgres.ensure_database("outage")
    dsn = stack.settings.pg_dsn.rsplit("/", 1)[0] + "/outage"
    with PgStore(dsn) as pg:
        pg.migrate()
    writer = PostgresWriter(PgStore(dsn))
    loop = SinkLoop(base.bootstrap, writer, "outage.pg", base.names.outputs(), base.names,
                    SinkLoopConfig(max_batch_messages=100, backoff_initial_ms=50, backoff_max_ms=400))
    stop = threading.Event()
    t = threading.Thread(target=loop.run, args=(stop,), daemon=True)
    try:
        t.start()
        _wait(lambda: loop.stats.batches >= 2, 30, "first batches")
        stack.postgres.down()
        _wait(lambda: loop.stats.write_failures >= 3, 30, "write failures while PostgreSQL is down")
        stuck = loop.stats.batches
        time.sleep(0.5)
        assert loop.stats.batches == stuck  # no batch counts as written while the database is down
        stack.postgres.up()
        _wait(lambda: loop.stats.batches > stuck + 2, 30, "batches written after PostgreSQL is back")
        assert loop.stats.backoff_s > 0 and "OperationalError" in loop.stats.last_write_error

        failures = loop.stats.write_failures
        stack.postgres.down()
        _wait(lambda: loop.stats.write_failures > failures, 30, "write failures in the second outage")
        stop.set()
        t.join(30)
        assert not t.is_alive()
        stack.postgres.up()
    finally:
        stop.set()
        if not stack.postgres.pid():
            stack.postgres.up()  # leave the stack as found for the other tests
    loop.drain(60)
    loop.close()
    writer.store.close()
    with PgStore(dsn) as pg:
        assert {(b.instrument_id, b.interval_ns, b.start): b for b in pg.bars()} == expected.bars
        assert pg.signal_ids() == expected.signal_ids
        assert expected.dead_letter_ids <= {record_id(codec.encode(d)) for d in pg.dead_letters()}


def test_broker_kill9_mid_replay_then_restart_loses_and_duplicates_nothing(
        stack: Stack, scenario: Callable[[str], Scenario], expected: Expected) -> None:
    """Feed, job and both sink loops run concurrently; the broker is SIGKILLed once the job has consumed a
    quarter of the ticks (the feed still producing), and restarted."""
    s = scenario("crash")
    ticks = expected.ticks
    produced = threading.Event()
    errors: list[BaseException] = []
    at_kill: dict[str, object] = {}

    sink = KafkaSink(KafkaPublisher(s.bootstrap, client_id="test-job"), s.names)
    source = KafkaTickSource(s.bootstrap, "crash.job", s.names, until=produced.is_set, before_commit=sink.flush)

    def feed() -> None:
        """Small chunks, no waiting for acks: records are in flight when the broker dies."""
        try:
            pub = KafkaPublisher(s.bootstrap, client_id="test-feed")
            for lo in range(0, len(ticks), 2_000):
                publish_ticks(pub, ticks[lo:lo + 2_000], s.names.ticks)
                pub.poll(0)
                time.sleep(0.1)
            pub.flush()
        except BaseException as e:  # re-raised by the test below
            errors.append(e)
        finally:
            produced.set()

    def crash() -> None:
        try:
            _wait(lambda: source.stats.messages > len(ticks) // 4, 60, "the job to consume a quarter")
            at_kill.update(consumed=source.stats.messages, produced=produced.is_set(), pid=stack.kafka.kill())
            assert not stack.kafka.pid()
            time.sleep(1.0)
            stack.kafka.up()
        except BaseException as e:  # re-raised by the test below
            errors.append(e)

    stop_sinks = threading.Event()
    pg_loop, ch_loop = s.pg_loop(), s.ch_loop()
    sinks = [threading.Thread(target=lp.run, args=(stop_sinks,), daemon=True) for lp in (pg_loop, ch_loop)]
    helpers = [threading.Thread(target=feed, daemon=True), threading.Thread(target=crash, daemon=True)]
    for th in helpers + sinks:
        th.start()
    try:
        summary = build(source, sink).run()
        sink.flush()
    finally:
        source.close()
        for th in helpers:
            th.join(120)
    assert not errors, errors
    assert at_kill["pid"] and not at_kill["produced"] and 0 < at_kill["consumed"] < len(ticks)  # type: ignore[operator]
    assert stack.kafka.pid()
    assert summary.ticks_in == len(ticks)  # no tick lost or read twice by the job
    stop_sinks.set()  # the loops ran through the crash; the rest is drained from here
    for th in sinks:
        th.join(30)
    assert not any(th.is_alive() for th in sinks)
    pg_loop.drain(90)
    ch_loop.drain(90)
    pg_loop.close()
    ch_loop.close()
    _assert_stores_match(s, expected)


def _wait(cond: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)
