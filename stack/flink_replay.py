"""`commodex replay FILE --runtime flink`: a tick file through Kafka and the Flink job into PostgreSQL and ClickHouse.

    file -> edge ingest -> jobs.validate.Validator (here, before Flink: its dead letters -> dlq topic, its
    SEQUENCE_GAP signals -> signals topic) -> accepted ticks -> ticks topic (ONE partition: arrival = offset)
    -> Flink job, bounded at the topic's end (jobs.flink.main via stack.flink_runner; exactly-once Kafka sink)
    -> output topics -> stack.sinks.SinkLoop -> PostgreSQL + ClickHouse

The replay appends to the stack's topics: the job starts at the ticks topic's end offset as of this run, and the
summary counts exactly the output records between the output topics' end offsets before and after the run
(read_committed). Bars: Flink SQL emits one bar per window with its final value (revision 0), where the
embedded kernel emits revisions; `bars` counts windows.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import numpy as np
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from commodex.embedded.engine import Summary
from jobs.pipeline import PipelineConfig
from jobs.validate import Validator, dead_letters, gap_signals
from market import codec
from market.columns import Ingested, TickColumns
from market.config import Config
from market.events import Bar, DeadLetter, Event, Signal, signal_kind
from market.instruments import Registry, default_registry
from market.rejects import Reason
from market.timeutil import format_interval
from stack.flink_runner import FlinkJob, FlinkJobConfig, FlinkJobError, missing_flink, resolve_jars
from stack.kafka_io import KafkaPublisher, KafkaSink, Topics, ensure_topics
from stack.settings import StackSettings, saved_settings


class FlinkReplayConfig(Config, frozen=True):
    pipeline: PipelineConfig = msgspec.field(default_factory=PipelineConfig)  # validate + bars (+ signals) config
    job: str = "auto"  # auto | bars | market (jobs.flink.main --job)
    checkpoint_interval_ms: int = 1000  # exactly-once outputs become visible at checkpoints
    submit_timeout_s: float = 600.0
    job_timeout_s: float = 1200.0
    drain_timeout_s: float = 300.0
    sink_group: str = "commodex-flink-sink"  # + ".pg" / ".ch": the store loops' consumer groups


@dataclass
class Prepared:
    """What the producer side hands to Kafka: validated ticks, and the rejects/gaps validation found."""

    ticks_in: int
    accepted: TickColumns
    dead_letters: list[DeadLetter]
    gap_signals: list[Signal]


def prepare(ing: Ingested, registry: Registry, config: PipelineConfig) -> Prepared:
    """Edge rejects + one validation pass (the validator's output does not depend on batching)."""
    cols = ing.columns
    v = Validator(config.validate, len(registry), config.impl).on_batch(cols)
    ok = v.accepted
    dead = list(ing.dead_letters) + (dead_letters(v, cols, registry) if not ok.all() else [])
    gaps: list[Signal] = list(gap_signals(v, cols, registry)) if v.n_gaps else []
    return Prepared(len(cols) + len(ing.dead_letters), cols if ok.all() else cols.take(ok), dead, gaps)


def publish_ticks_columns(pub: KafkaPublisher, cols: TickColumns, registry: Registry, topic: str) -> int:
    for i in range(len(cols)):
        t = cols.row(i, registry)
        pub.publish(topic, t, t.instrument_id)
    return len(cols)


# -- reading what a run wrote -------------------------------------------------------------------------------------


_NO_LEADER_YET = (KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
                  KafkaError.UNKNOWN_TOPIC_OR_PART)


def end_offsets(bootstrap: str, topic_names: Sequence[str], timeout_s: float = 60.0) -> dict[str, int]:
    """High watermark of partition 0 of each topic (every topic here has one partition). Retries while a new
    topic has no leader yet."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + timeout_s
    while True:
        futs = admin.list_offsets({TopicPartition(t, 0): OffsetSpec.latest() for t in topic_names},
                                  request_timeout=30)
        try:
            return {tp.topic: f.result().offset for tp, f in futs.items()}
        except KafkaException as e:
            if e.args[0].code() not in _NO_LEADER_YET or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def read_range(bootstrap: str, starts: dict[str, int], ends: dict[str, int],
               timeout_s: float = 120.0) -> list[tuple[str, bytes]]:
    """(topic, value) of the committed records in [starts, ends) per topic (partition 0), in offset order."""
    wanted = {t for t in starts if ends[t] > starts[t]}
    if not wanted:
        return []
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"commodex-flink-replay-reader-{uuid.uuid4()}",
                  "enable.auto.commit": False, "enable.partition.eof": True, "isolation.level": "read_committed"})
    c.assign([TopicPartition(t, 0, starts[t]) for t in sorted(wanted)])
    out: list[tuple[str, bytes]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while wanted:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading outputs: {sorted(wanted)} not read to their end in {timeout_s} s")
            for m in c.consume(10_000, 0.5):
                err = m.error()
                topic = str(m.topic())
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        if int(m.offset() or 0) >= ends[topic]:
                            wanted.discard(topic)
                        continue
                    raise RuntimeError(f"reading {topic}: {err}")
                if int(m.offset() or 0) < ends[topic]:
                    out.append((topic, m.value() or b""))
                else:
                    wanted.discard(topic)
    finally:
        c.close()
    return out


@dataclass
class Outputs:
    """A run's output records, decoded."""

    bars: list[Bar] = field(default_factory=list)
    signals: list[Signal] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    undecodable: list[tuple[str, bytes]] = field(default_factory=list)

    @classmethod
    def decode(cls, records: list[tuple[str, bytes]]) -> Outputs:
        out = cls()
        for topic, value in records:
            try:
                ev: Event = codec.decode(value)
            except (msgspec.DecodeError, msgspec.ValidationError):
                out.undecodable.append((topic, value))
                continue
            if isinstance(ev, Bar):
                out.bars.append(ev)
            elif isinstance(ev, DeadLetter):
                out.dead_letters.append(ev)
            elif isinstance(ev, Signal):
                out.signals.append(ev)
            else:
                out.undecodable.append((topic, value))
        return out


# -- the replay -----------------------------------------------------------------------------------------------------


@dataclass
class ReplayResult:
    summary: Summary
    outputs: Outputs
    job_id: str
    job: str  # bars | market
    timings: dict[str, float]


class FlinkReplay:
    def __init__(self, settings: StackSettings, config: FlinkReplayConfig | None = None,
                 registry: Registry | None = None, work_dir: str | Path | None = None) -> None:
        self.settings = settings
        self.config = config or FlinkReplayConfig()
        self.registry = registry or default_registry()
        self.names = Topics(settings.topic_namespace)
        self.work_dir = Path(work_dir) if work_dir else settings.state_path / "flink"

    def run(self, ing: Ingested, extra_raw: Sequence[bytes] = (), store: bool = True) -> ReplayResult:
        """Replay `ing`; `extra_raw` = messages appended to the ticks topic as they are (tests: a malformed one)."""
        why = missing_flink()
        if why:
            raise RuntimeError(why)
        t_start = time.perf_counter()
        cfg, st, names = self.config, self.settings, self.names
        bootstrap = st.kafka_bootstrap
        timings: dict[str, float] = {}
        prep = prepare(ing, self.registry, cfg.pipeline)
        ensure_topics(bootstrap, names.standard(cfg.pipeline.bars))
        outputs = names.outputs(cfg.pipeline.bars)
        starts = end_offsets(bootstrap, [names.ticks, *outputs])
        jar_dir = resolve_jars(st.cache_dir)

        t0 = time.perf_counter()
        pub = KafkaPublisher(bootstrap, client_id="commodex-flink-replay")
        side = KafkaSink(pub, names)  # validation's rejects and gap signals: they never enter Flink
        side.dead_letters(prep.dead_letters)
        side.signals(prep.gap_signals)
        publish_ticks_columns(pub, prep.accepted, self.registry, names.ticks)
        for raw in extra_raw:
            pub.send(names.ticks, raw, b"")
        pub.flush()
        timings["produce_s"] = time.perf_counter() - t0

        run_id = uuid.uuid4().hex[:12]
        self.work_dir.mkdir(parents=True, exist_ok=True)
        job = FlinkJob(FlinkJobConfig(
            bootstrap=bootstrap, jar_dir=str(jar_dir), namespace=names.namespace, start_offset=starts[names.ticks],
            group_id=f"commodex-flink-replay-{run_id}", bounded=True, job=cfg.job,
            checkpoint_dir=str(self.work_dir / "checkpoints"), checkpoint_interval_ms=cfg.checkpoint_interval_ms,
            transactional_id_prefix=f"commodex-replay-{run_id}", bars=cfg.pipeline.bars,
        ), self.work_dir, name=f"replay-{run_id}")
        t0 = time.perf_counter()
        job.start()
        try:
            job_id = job.wait_submitted(cfg.submit_timeout_s)
            timings["submit_s"] = time.perf_counter() - t0
            finished = job.wait(cfg.job_timeout_s)
        finally:
            job.kill()  # no-op when it ended; never leave a JVM behind
        timings["flink_run_s"] = float(finished.get("run_s", 0.0))  # type: ignore[arg-type]
        timings["flink_total_s"] = time.perf_counter() - t0
        submitted = job.event("submitted") or {}

        ends = end_offsets(bootstrap, outputs)
        out = Outputs.decode(read_range(bootstrap, {t: starts[t] for t in outputs}, ends))
        if store:
            t0 = time.perf_counter()
            self._store(outputs)
            timings["drain_s"] = time.perf_counter() - t0
        timings["elapsed_s"] = time.perf_counter() - t_start
        summary = self._summary(prep, len(extra_raw), out, timings)
        return ReplayResult(summary, out, job_id, str(submitted.get("job", "")), timings)

    def _store(self, outputs: list[str]) -> None:
        from commodex.embedded.storage import ClickHouseStore, StorageConfig
        from stack.pg_store import PgStore
        from stack.sinks import ClickHouseWriter, PostgresWriter, SinkLoop

        st, cfg = self.settings, self.config
        pg = PgStore(st.pg_dsn)
        ch = ClickHouseStore(StorageConfig(dsn=st.clickhouse_dsn, database=st.clickhouse_database))
        try:
            pg.migrate()
            ch.migrate()
            for writer, suffix in ((PostgresWriter(pg), "pg"), (ClickHouseWriter(ch), "ch")):
                loop = SinkLoop(st.kafka_bootstrap, writer, f"{st.topic_namespace}{cfg.sink_group}.{suffix}",
                                outputs, self.names)
                try:
                    loop.drain(cfg.drain_timeout_s)
                finally:
                    loop.close()
        finally:
            pg.close()
            ch.close()

    def _summary(self, prep: Prepared, n_extra: int, out: Outputs, timings: dict[str, float]) -> Summary:
        reg = self.registry
        accepted = np.bincount(prep.accepted.instrument, minlength=len(reg)).astype(np.int64)
        for d in out.dead_letters:  # late ticks passed validation but, as in the embedded pipeline, not the bars
            if d.reason == Reason.LATE.label and reg.index_of(d.instrument_id) >= 0:
                accepted[reg.index_of(d.instrument_id)] -= 1
        by_inst = {reg.by_index(i).id: int(n) for i, n in enumerate(accepted) if n}
        by_venue: Counter[str] = Counter()
        for iid, n in by_inst.items():
            by_venue[reg.get(iid).venue] += n
        bars = Counter(format_interval(b.interval_ns) for b in out.bars)
        signals = Counter(signal_kind(s).value for s in out.signals)
        dead = Counter(d.reason for d in out.dead_letters)
        busy = timings.get("flink_run_s", 0.0)
        ticks_in = prep.ticks_in + n_extra
        return Summary(
            runtime="flink",
            ticks_in=ticks_in,
            ticks_accepted=int(accepted.sum()),
            ticks_by_venue=dict(sorted(by_venue.items())),
            ticks_by_instrument=dict(sorted(by_inst.items())),
            bars=sum(bars.values()),
            bars_by_interval=dict(sorted(bars.items())),
            signals=sum(signals.values()),
            signals_by_kind=dict(sorted(signals.items())),
            dead_letters=sum(dead.values()),
            dead_letters_by_reason=dict(sorted(dead.items())),
            latency_p50_ms=None,  # a max-speed replay has no arrival clock: see bench/bench_flink.py
            latency_p99_ms=None,
            elapsed_s=round(timings.get("elapsed_s", 0.0), 3),
            busy_s=round(busy, 3),
            ticks_per_busy_s=round(ticks_in / busy, 1) if busy > 0 else 0.0,
        )


# -- the CLI --------------------------------------------------------------------------------------------------------


def stack_settings_for(state_dir: str) -> StackSettings | None:
    """The settings `commodex stack up --state-dir D` saved: in D, or in D/stack (the stack's default place
    under the embedded state dir .commodex)."""
    for d in (Path(state_dir), Path(state_dir) / "stack"):
        st = saved_settings(d)
        if st is not None:
            return st
    return None


def _stack_is_up(settings: StackSettings) -> str:
    """"" when the broker answers; else why not."""
    try:
        AdminClient({"bootstrap.servers": settings.kafka_bootstrap}).list_topics(timeout=5)
    except KafkaException as e:
        return f"Kafka at {settings.kafka_bootstrap} does not answer ({type(e).__name__}: {e})"
    return ""


def run_replay_flink(args: argparse.Namespace) -> int:
    from feeds.capture_cli import is_capture_dir, read_capture
    from feeds.tickfile import read_ticks

    prog = "commodex replay --runtime flink"
    settings = stack_settings_for(args.state_dir)
    if settings is None:
        print(f"{prog}: no stack in {args.state_dir}: run `commodex stack up --state-dir {args.state_dir}` first",
              file=sys.stderr)
        return 2
    down = _stack_is_up(settings)
    if down:
        print(f"{prog}: the stack of {settings.state_dir} is not up: {down}; run `commodex stack up --state-dir "
              f"{settings.state_dir}`", file=sys.stderr)
        return 2
    why = missing_flink()
    if why:
        print(f"{prog}: {why}", file=sys.stderr)
        return 2
    if args.speed and args.speed > 0:
        print(f"{prog}: --speed is ignored: the ticks go to Kafka at once and the job reads them as fast as it can",
              file=sys.stderr)
    registry = default_registry()
    t0 = time.perf_counter()
    ing = read_capture(args.file, registry) if is_capture_dir(args.file) else read_ticks(args.file, registry)
    read_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory(prefix="commodex-flink-replay-") as work:
        try:
            result = FlinkReplay(settings, registry=registry, work_dir=work).run(ing, store=not args.no_store)
        except FlinkJobError as e:
            print(f"{prog}: the Flink job failed: {e}", file=sys.stderr)
            return 1
    s = result.summary
    doc = msgspec.to_builtins(s) | {
        "file": str(args.file), "read_s": round(read_s, 3), "replay_wall_s": s.elapsed_s,
        "throughput_ticks_per_s": round(s.ticks_in / s.elapsed_s, 1) if s.elapsed_s > 0 else 0.0,
        "flink_job": result.job, "flink_job_id": result.job_id,
        "timings_s": {k: round(v, 3) for k, v in result.timings.items()},
    }
    if args.json:
        print(json.dumps(doc, separators=(",", ":")))
    else:
        for k, v in doc.items():
            print(f"{k:>24}: {v}")
    return 0
