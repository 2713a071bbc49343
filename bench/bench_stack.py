"""The scale-out stack: Kafka produce rate from one Python process, and sink rows/s into PostgreSQL and ClickHouse.

A private broker and PostgreSQL are started under a temporary state dir on free ports (and stopped after);
ClickHouse is chdb in this process. Every number is compared with a baseline measured in the same run:
- produce: idempotent, acks=all, lz4, linger 5 ms (the stack's producer) vs unbatched produce (linger 0, each
  record awaited before the next) of the same tick messages, three ways: one JSON tick per message with the
  wire headers (the default), without headers, and Arrow tick batches of 4,096 ticks per message (read back
  and compared with the input after timing, so the rate is of data that decodes);
- PostgreSQL: COPY into a staging table + one upsert vs row-by-row INSERT ... ON CONFLICT (executemany);
- ClickHouse: columnar insert of the same bars vs the PostgreSQL COPY + upsert;
- sink loops: Kafka -> database (consume, decode, write, commit; the first batch, which pays for the group
  join, excluded) vs the direct write of the same rows.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time

import msgspec
import psycopg

from bench.common import Result
from commodex.embedded.storage import ClickHouseStore, StorageConfig
from market.columns import TickColumns
from market.events import Bar, QuoteTick, TradeTick
from market.instruments import Registry, default_registry
from stack.kafka_io import (
    TICK_BATCH_ROWS,
    BatchConsumer,
    KafkaPublisher,
    ProducerConfig,
    Topics,
    decode_ticks,
    ensure_topics,
    publish_tick_batches,
    publish_ticks,
)
from stack.pg_store import BAR_COLUMNS, PgStore
from stack.services.kafka import KafkaService
from stack.services.postgres import PostgresService
from stack.settings import for_state_dir
from stack.sinks import ClickHouseWriter, PostgresWriter, SinkLoop, SinkLoopConfig

MIN = 60_000_000_000
T0 = 1_767_571_200_000_000_000  # 2026-01-05 00:00 UTC


def _ticks(n: int) -> list[TradeTick | QuoteTick]:
    ids = default_registry().ids
    out: list[TradeTick | QuoteTick] = []
    for i in range(n):
        iid = ids[i % len(ids)]
        ts = T0 + i * 1_000_000
        if i % 3:
            out.append(QuoteTick(iid, 2_000_000_000_000 + i, 2_000_100_000_000 + i, 5, 7, ts, ts + 900_000, i + 1))
        else:
            out.append(TradeTick(iid, 2_000_050_000_000 + i, 3, ts, ts + 900_000, i + 1))
    return out


def _bars(n: int) -> list[Bar]:
    ids = default_registry().ids
    per = n // len(ids) + 1
    return [Bar(iid, MIN, T0 + k * MIN, 100, 110, 90, 105, 1000 + k, 101, 17, T0 + (k + 1) * MIN, T0 + (k + 1) * MIN)
            for iid in ids for k in range(per)][:n]


def _produce_rate(bootstrap: str, topic: str, ticks: list[TradeTick | QuoteTick], cfg: ProducerConfig,
                  sync_each: bool, headers: bool = True) -> float:
    pub = KafkaPublisher(bootstrap, cfg, client_id="bench")
    publish_ticks(pub, ticks[:100], topic)  # connection, producer id
    pub.flush()
    t0 = time.perf_counter()
    if sync_each:
        for t in ticks:
            publish_ticks(pub, [t], topic, headers)
            pub.flush()
    else:
        publish_ticks(pub, ticks, topic, headers)
        pub.flush()
    return len(ticks) / (time.perf_counter() - t0)


def _publish_rate(bootstrap: str, topic: str, ticks: list[TradeTick | QuoteTick]) -> float:
    """The per-record path KafkaSink uses (publish(): encode, keyword produce with headers), for reference."""
    pub = KafkaPublisher(bootstrap, client_id="bench-publish")
    publish_ticks(pub, ticks[:100], topic)
    pub.flush()
    t0 = time.perf_counter()
    for t in ticks:
        pub.publish(topic, t, t.instrument_id)
    pub.flush()
    return len(ticks) / (time.perf_counter() - t0)


def _batch_rate(bootstrap: str, topic: str, cols: TickColumns, registry: Registry) -> float:
    """Ticks/s of Arrow tick batch messages, from columns to acknowledged."""
    pub = KafkaPublisher(bootstrap, client_id="bench-batch")
    publish_tick_batches(pub, cols.take(slice(0, 100)), topic, registry)  # connection, producer id, pyarrow IPC
    pub.flush()
    t0 = time.perf_counter()
    publish_tick_batches(pub, cols, topic, registry)
    pub.flush()
    return len(cols) / (time.perf_counter() - t0)


def _check_batches(bootstrap: str, topic: str, cols: TickColumns, registry: Registry, runs: int) -> None:
    """Everything published as batches reads back equal to the input (the warm-up rows, then each run)."""
    want = 100 + len(cols)
    c = BatchConsumer(bootstrap, f"bench-check-{time.time_ns()}", [topic])
    parts = []
    got = 0
    deadline = time.monotonic() + 120
    try:
        while got < want * runs:
            if time.monotonic() > deadline:
                raise RuntimeError(f"read back {got} of {want * runs} batched ticks")
            msgs = c.poll(1000, 1.0)
            if msgs:
                ing = decode_ticks(msgs, registry)
                if ing.dead_letters:
                    raise RuntimeError(f"batched ticks decoded to dead letters: {ing.dead_letters[:2]}")
                parts.append(ing.columns)
                got += len(ing.columns)
    finally:
        c.close()
    back = TickColumns.concat(parts)
    for r in range(runs):
        run_cols = back.take(slice(r * want + 100, (r + 1) * want))
        for name in TickColumns.DTYPES:
            if not (getattr(run_cols, name) == getattr(cols, name)).all():
                raise RuntimeError(f"batched ticks read back differ in column {name}")


def _executemany_rate(dsn: str, bars: list[Bar]) -> float:
    cols = ", ".join(BAR_COLUMNS)
    sql = (f"INSERT INTO bars ({cols}) VALUES ({', '.join(['%s'] * len(BAR_COLUMNS))}) "
           "ON CONFLICT (instrument_id, interval_ns, start) DO NOTHING")
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT commodex_ensure_bar_partitions(%s, %s)", (min(b.start for b in bars),
                                                                      max(b.start for b in bars)))
        conn.commit()
        t0 = time.perf_counter()
        cur.executemany(sql, [msgspec.structs.astuple(b) for b in bars])
        conn.commit()
        return len(bars) / (time.perf_counter() - t0)


def _loop_rate(loop: SinkLoop, n: int) -> float:
    """Rows/s after the first batch (which also pays for the group join and the first fetch)."""
    got = first = 0
    t_first = 0.0
    while got < n:
        k = loop.step()
        if k and not first:
            first, t_first = k, time.perf_counter()
        got += k
    loop.consumer.commit_with_retry()
    return (got - first) / (time.perf_counter() - t_first)


def _fresh_db(pg: PostgresService, base_dsn: str, name: str) -> str:
    pg.ensure_database(name)
    dsn = base_dsn.rsplit("/", 1)[0] + f"/{name}"
    with PgStore(dsn) as st:
        st.migrate()
    return dsn


def run(quick: bool = False) -> list[Result]:
    n_ticks = 50_000 if quick else 300_000
    n_sync = 300 if quick else 2_000
    n_bars = 20_000 if quick else 200_000
    state = tempfile.mkdtemp(prefix="cdx-bench-stack-")
    os.chmod(state, 0o755)  # PostgreSQL runs as the postgres user when we are root
    settings = for_state_dir(state)
    kafka, pg = KafkaService(settings), PostgresService(settings)
    results: list[Result] = []
    try:
        kafka.up()
        pg.up()
        bootstrap = settings.kafka_bootstrap
        names = Topics("bench.")
        ensure_topics(bootstrap, names.standard())
        ticks = _ticks(n_ticks)
        registry = default_registry()
        cols = TickColumns.from_ticks(ticks, registry)
        batch_topic = "bench.batch." + names.ticks
        ensure_topics(bootstrap, {batch_topic: 1})

        unbatched = _produce_rate(bootstrap, names.ticks, ticks[:n_sync], ProducerConfig(linger_ms=0), sync_each=True)
        base = f"unbatched: each record awaited ({n_sync:,})"
        cfg = ProducerConfig()
        per_record = _publish_rate(bootstrap, names.ticks, ticks)
        with_headers = max(_produce_rate(bootstrap, names.ticks, ticks, cfg, sync_each=False) for _ in range(2))
        no_headers = max(_produce_rate(bootstrap, names.ticks, ticks, cfg, sync_each=False, headers=False)
                         for _ in range(2))
        batches = max(_batch_rate(bootstrap, batch_topic, cols, registry) for _ in range(2))
        _check_batches(bootstrap, batch_topic, cols, registry, runs=2)
        prod = "idempotent acks=all lz4 linger 5 ms"
        results.append(Result("stack", f"kafka produce, 1 JSON tick/message + headers, {prod} ({n_ticks:,} ticks)",
                              with_headers, "msgs/s", base, unbatched,
                              notes="publish_ticks: pre-encoded, positional produce(), poll(0) every 4,096",
                              extra={"publish_per_record_msgs_per_s": per_record}))
        results.append(Result("stack", f"kafka produce, 1 JSON tick/message, no headers, {prod} ({n_ticks:,})",
                              no_headers, "msgs/s", base, unbatched))
        results.append(Result("stack", f"kafka produce, Arrow tick batches of {TICK_BATCH_ROWS:,} ticks/message, "
                                       f"{prod} ({n_ticks:,})", batches, "ticks/s", base, unbatched,
                              notes="read back and compared with the input",
                              extra={"msgs_per_s": batches / TICK_BATCH_ROWS, "vs_headers": batches / with_headers}))

        bars = _bars(n_bars)
        warm, bars = bars[:200], bars[200:]  # first writes pay for connections, partitions, plans
        n_bars = len(bars)
        with PgStore(_fresh_db(pg, settings.pg_dsn, "bench_copy")) as st:
            st.write(warm)
            t0 = time.perf_counter()
            st.write(bars)
            pg_copy = n_bars / (time.perf_counter() - t0)
        n_many = min(n_bars, 5_000 if quick else 20_000)
        pg_many = _executemany_rate(_fresh_db(pg, settings.pg_dsn, "bench_many"), bars[:n_many])
        results.append(Result("stack", f"postgres COPY + upsert ({n_bars:,} bars)", pg_copy, "rows/s",
                              f"executemany INSERT ON CONFLICT ({n_many:,})", pg_many))

        chdb_dir = os.path.join(state, "chdb")
        ch = ClickHouseStore(StorageConfig(dsn=f"chdb://{chdb_dir}", database="bench_direct"))
        try:
            ch.migrate()
            ch.insert_bars(warm)
            t0 = time.perf_counter()
            ch.insert_bars(bars)
            ch_direct = n_bars / (time.perf_counter() - t0)
            results.append(Result("stack", f"clickhouse (chdb) insert ({n_bars:,} bars)", ch_direct, "rows/s",
                                  "postgres COPY + upsert", pg_copy))

            pub = KafkaPublisher(bootstrap, client_id="bench-bars")
            topic = names.bars(MIN)
            for b in bars:
                pub.publish(topic, b, b.instrument_id)
            pub.flush()

            loop_cfg = SinkLoopConfig(max_batch_messages=5_000)
            loop = SinkLoop(bootstrap, PostgresWriter(PgStore(_fresh_db(pg, settings.pg_dsn, "bench_loop"))),
                            "bench.pg", [topic], names, loop_cfg)
            pg_loop = _loop_rate(loop, n_bars)
            loop.close()
            results.append(Result("stack", "kafka -> postgres sink loop, 5,000-row batches (decode, COPY, commit)",
                                  pg_loop, "rows/s", "direct COPY + upsert", pg_copy))

            ch_loop_store = ClickHouseStore(StorageConfig(dsn=f"chdb://{chdb_dir}", database="bench_loop"))
            ch_loop_store.migrate()
            loop = SinkLoop(bootstrap, ClickHouseWriter(ch_loop_store), "bench.ch", [topic], names, loop_cfg)
            ch_loop = _loop_rate(loop, n_bars)
            loop.close()
            ch_loop_store.close()
            results.append(Result("stack", "kafka -> clickhouse sink loop, 5,000-row batches (decode, insert, commit)",
                                  ch_loop, "rows/s", "direct chdb insert", ch_direct))
        finally:
            ch.close()
    finally:
        kafka.down()
        pg.down()
        shutil.rmtree(state, ignore_errors=True)
    return results


if __name__ == "__main__":
    for r in run(quick=True):
        print(r)
