"""The scale-out stack: Kafka produce rate from one Python process, and sink rows/s into PostgreSQL and ClickHouse.

A private broker and PostgreSQL are started under a temporary state dir on free ports (and stopped after);
ClickHouse is chdb in this process. Every number is compared with a baseline measured in the same run:
- produce: idempotent, acks=all, lz4, linger 5 ms (the stack's producer) vs unbatched produce (linger 0, each
  record awaited before the next) of the same tick messages;
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
from market.events import Bar, QuoteTick, TradeTick
from market.instruments import default_registry
from stack.kafka_io import KafkaPublisher, ProducerConfig, Topics, ensure_topics, publish_ticks
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
                  sync_each: bool) -> float:
    pub = KafkaPublisher(bootstrap, cfg, client_id="bench")
    publish_ticks(pub, ticks[:100], topic)  # connection, producer id
    pub.flush()
    t0 = time.perf_counter()
    if sync_each:
        for t in ticks:
            publish_ticks(pub, [t], topic)
            pub.flush()
    else:
        publish_ticks(pub, ticks, topic)
        pub.flush()
    return len(ticks) / (time.perf_counter() - t0)


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

        batched = max(_produce_rate(bootstrap, names.ticks, ticks, ProducerConfig(), sync_each=False)
                      for _ in range(2))
        unbatched = _produce_rate(bootstrap, names.ticks, ticks[:n_sync], ProducerConfig(linger_ms=0), sync_each=True)
        results.append(Result("stack", f"kafka produce, idempotent acks=all lz4 linger 5 ms ({n_ticks:,} ticks)",
                              batched, "msgs/s", f"unbatched: each record awaited ({n_sync:,})", unbatched))

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
