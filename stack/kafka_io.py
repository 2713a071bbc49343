"""Kafka in and out of the jobs (confluent-kafka): a producer, a `Sink` that publishes job outputs, a tick
source that yields `Ingested` batches, and the batch consumer the sink loops share.

Every message: value = the codec's JSON bytes of one event, key = its instrument (so one instrument's records
stay in one partition, in order; murmur2 partitioning as the Java clients and Flink use), headers = wire
format version and record type. The producer is idempotent with acks=all, lz4-compressed and batched
(linger). Topic names come from `market.topics` (plus an optional namespace prefix, see `Topics`).

Tick batch messages (`publish_tick_batches`, opt-in for the ticks topic): one Kafka message carries up to a
few thousand ticks in delivery order as one Arrow IPC stream (schema `TICK_BATCH_SCHEMA`: instrument id
dictionary-encoded, kind int8 0 trade / 1 quote, then int64 ts_event, ts_recv, seq, price, size, bid, ask,
bid_size, ask_size; fixed-point prices, UTC ns), header commodex-type = "ticks.v1". One Python call per
few thousand ticks instead of one per tick: the only way past ~0.2-0.5M msgs/s from one Python process
(produce() alone costs 1-3 us). `decode_ticks` reads both kinds of message, in order. The Flink jobs read
per-tick JSON only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np
import pyarrow as pa
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec

from jobs.bars import BarsConfig
from jobs.edge import Ingested, ingest_ticks
from jobs.sink import Sink
from market import codec, topics
from market.columns import KIND_QUOTE, KIND_TRADE, TickColumns
from market.config import Config
from market.events import (
    Bar,
    DeadLetter,
    Event,
    QuoteTick,
    Signal,
    SignalKind,
    TradeTick,
    signal_instrument,
    signal_kind,
)
from market.instruments import Registry, default_registry
from market.rejects import DETAIL, Reason

log = logging.getLogger("commodex.kafka")

HEADER_VERSION = "commodex-wire-version"
HEADER_TYPE = "commodex-type"
_VERSION_BYTES = str(codec.WIRE_VERSION).encode()
SOURCE = "kafka"
Headers = list[tuple[str, str | bytes | None]]


# ---- topics ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Topics:
    """market.topics names behind an optional namespace prefix ("" in production; tests give each run its own
    so runs sharing one broker do not read each other's records)."""

    namespace: str = ""

    @property
    def ticks(self) -> str:
        return self.namespace + topics.TICKS

    @property
    def dlq(self) -> str:
        return self.namespace + topics.DLQ

    @property
    def late(self) -> str:
        return self.namespace + topics.LATE

    @property
    def quote_samples(self) -> str:
        return self.namespace + topics.QUOTE_SAMPLES

    @property
    def alerts(self) -> str:
        return self.namespace + topics.ALERTS

    def bars(self, interval_ns: int) -> str:
        return self.namespace + topics.bars(interval_ns)

    def signals(self, kind: SignalKind | str) -> str:
        return self.namespace + topics.signals(kind)

    def all_bars(self, bars: BarsConfig | None = None) -> list[str]:
        return [self.bars(n) for n in (bars or BarsConfig()).intervals_ns]

    def all_signals(self) -> list[str]:
        return [self.namespace + t for t in topics.all_signal_topics()]

    def outputs(self, bars: BarsConfig | None = None) -> list[str]:
        """What a job publishes and the store sinks consume: bars, signals, dead letters, late ticks."""
        return [*self.all_bars(bars), *self.all_signals(), self.dlq, self.late]

    def standard(self, bars: BarsConfig | None = None, tick_partitions: int = 1) -> dict[str, int]:
        """Topic -> partitions. Ticks default to one partition: the embedded pipeline's watermark is global,
        so its output depends on the order across instruments, which only one partition keeps."""
        out = {self.ticks: tick_partitions, self.quote_samples: 1, self.alerts: 1}
        out.update({t: 1 for t in self.outputs(bars)})
        return out


def _client_conf(bootstrap: str, **extra: Any) -> dict[str, Any]:
    # reconnect within 2 s of a broker coming back (librdkafka backs off up to 10 s by default)
    return {"bootstrap.servers": bootstrap, "logger": log, "reconnect.backoff.max.ms": 2000, **extra}


def ensure_topics(bootstrap: str, wanted: dict[str, int], timeout_s: float = 30.0) -> list[str]:
    """Create missing topics (replication 1: the local stack has one broker). Returns those created now."""
    admin = AdminClient(_client_conf(bootstrap))
    existing = set(admin.list_topics(timeout=timeout_s).topics)
    new = [NewTopic(t, num_partitions=n, replication_factor=1) for t, n in wanted.items() if t not in existing]
    if not new:
        return []
    created = []
    for name, fut in admin.create_topics(new, operation_timeout=timeout_s, request_timeout=timeout_s).items():
        try:
            fut.result()
            created.append(name)
        except KafkaException as e:
            if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:  # a concurrent creator won: fine
                raise
    # metadata propagates asynchronously; producing before it does gives UNKNOWN_TOPIC errors
    deadline = time.monotonic() + timeout_s
    while not set(wanted) <= set(admin.list_topics(timeout=timeout_s).topics):
        if time.monotonic() > deadline:
            raise TimeoutError(f"topics {sorted(set(wanted))} not visible after {timeout_s} s")
        time.sleep(0.1)
    return created


_HEADERS: dict[type, Headers] = {}


def headers_for(event: Event) -> Headers:
    """Wire version and record tag (e.g. b"bar.v1"): consumers can route or refuse without decoding."""
    tp = type(event)
    h = _HEADERS.get(tp)
    if h is None:
        h = _HEADERS[tp] = [(HEADER_VERSION, _VERSION_BYTES), (HEADER_TYPE, str(tp.__struct_config__.tag).encode())]
    return h


# ---- producing ------------------------------------------------------------------------------------------------

class ProducerConfig(Config, frozen=True):
    linger_ms: int = 5  # wait this long to fill a batch: fewer, larger requests
    batch_size_bytes: int = 1_048_576
    batch_num_messages: int = 10_000  # librdkafka's cap on records per batch (with batch_size_bytes)
    compression: str = "lz4"  # lz4 | zstd | snappy | gzip | none
    queue_max_messages: int = 500_000  # local buffer; produce() blocks (polls) while it is full
    poll_every: int = 4096  # serve error callbacks every this many records (a power of two)
    # a broker restart must not fail in-flight records: retry for up to 5 minutes
    message_timeout_ms: int = 300_000
    idempotent: bool = True  # with acks=all: no duplicates or reordering from retries
    acks: str = "all"

    def __post_init__(self) -> None:
        if self.compression not in ("lz4", "zstd", "snappy", "gzip", "none"):
            raise ValueError(f"unknown compression {self.compression!r}")
        if self.idempotent and self.acks != "all":
            raise ValueError("an idempotent producer needs acks=all")
        if self.poll_every < 1 or self.poll_every & (self.poll_every - 1):
            raise ValueError("poll_every must be a power of two")


class DeliveryError(RuntimeError):
    """Records the broker did not accept (listed in the message); raised by `flush()`, never dropped."""


class KafkaPublisher:
    """Asynchronous producer; `flush()` waits for every record and raises if any delivery failed."""

    def __init__(self, bootstrap: str, config: ProducerConfig | None = None, client_id: str = "commodex",
                 **overrides: object) -> None:
        self.config = cfg = config or ProducerConfig()
        conf = _client_conf(
            bootstrap,
            **{
                "client.id": client_id,
                "enable.idempotence": cfg.idempotent,
                "acks": cfg.acks,
                "compression.type": cfg.compression,
                "linger.ms": cfg.linger_ms,
                "batch.size": cfg.batch_size_bytes,
                "batch.num.messages": cfg.batch_num_messages,
                "queue.buffering.max.messages": cfg.queue_max_messages,
                "message.timeout.ms": cfg.message_timeout_ms,
                "partitioner": "murmur2_random",  # the Java clients' partitioner: same key -> same partition
                "error_cb": self._on_error,
                # a Python callback per record costs more than the produce call: report failures only
                "delivery.report.only.error": True,
                "on_delivery": self._on_delivery,
            },
        )
        conf.update(overrides)
        self._producer = Producer(conf)
        self._poll_mask = cfg.poll_every - 1
        self.sent = 0
        self.failures: list[str] = []
        self.fatal: KafkaError | None = None

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            self.fatal = err
        log.warning("kafka producer: %s", err)

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self.failures.append(f"{msg.topic()}[{msg.partition()}] key={msg.key()!r}: {err}")

    def send(self, topic: str, value: bytes, key: bytes | None = None, headers: Headers | None = None) -> None:
        produce = self._producer.produce
        try:
            produce(topic, value, key, headers=headers)
        except BufferError:  # local queue full: serve delivery reports until there is room
            while True:
                self._producer.poll(0.05)
                try:
                    produce(topic, value, key, headers=headers)
                    break
                except BufferError:
                    continue
        self.sent += 1
        if not self.sent & self._poll_mask:  # serve error callbacks now and then, not per record
            self._producer.poll(0)

    def _produce_waiting(self, topic: str, value: bytes, key: bytes | None, headers: Headers | None,
                         partition: int) -> None:
        """The local queue is full: serve delivery reports until there is room."""
        while True:
            self._producer.poll(0.05)
            try:
                if headers is None:
                    self._producer.produce(topic, value, key, partition)
                else:
                    self._producer.produce(topic, value, key, partition, headers=headers)
                return
            except BufferError:
                continue

    def send_many(self, topic: str, values: Iterable[bytes], keys: Iterable[bytes | None],
                  headers: Headers | None = None, partition: int = -1,
                  headers_each: Iterable[Headers] | None = None) -> int:
        """The fast path: pre-encoded records, one positional produce() each (keyword arguments and headers
        cost the C extension more than the record itself), poll(0) every `poll_every`. partition -1: by key.
        `headers`: the same for every record; `headers_each`: one per record."""
        produce = self._producer.produce
        poll = self._producer.poll
        mask = self._poll_mask
        n = self.sent
        if headers_each is not None:
            for value, key, hs in zip(values, keys, headers_each, strict=True):
                try:
                    produce(topic, value, key, partition, headers=hs)
                except BufferError:
                    self._produce_waiting(topic, value, key, hs, partition)
                n += 1
                if not n & mask:
                    poll(0)
        else:
            for value, key in zip(values, keys, strict=True):
                try:
                    if headers is None:
                        produce(topic, value, key, partition)
                    else:
                        produce(topic, value, key, partition, headers=headers)
                except BufferError:
                    self._produce_waiting(topic, value, key, headers, partition)
                n += 1
                if not n & mask:
                    poll(0)
        done = n - self.sent
        self.sent = n
        return done

    def publish(self, topic: str, event: Event, key: str) -> None:
        self.send(topic, codec.encode(event), key.encode(), headers_for(event))

    def poll(self, timeout_s: float = 0.0) -> int:
        return int(self._producer.poll(timeout_s))

    def flush(self, timeout_s: float = 120.0) -> None:
        left = self._producer.flush(timeout_s)
        if self.fatal is not None:
            raise DeliveryError(f"producer failed fatally: {self.fatal}")
        if self.failures:
            failed, self.failures = self.failures, []
            raise DeliveryError(f"{len(failed)} records not delivered, first: {failed[:3]}")
        if left:
            raise DeliveryError(f"{left} records still undelivered after {timeout_s} s")

    def __len__(self) -> int:
        """Records not yet acknowledged."""
        return len(self._producer)


_KEYS: dict[str, bytes] = {}


def _key(instrument_id: str) -> bytes:
    k = _KEYS.get(instrument_id)
    if k is None:
        k = _KEYS[instrument_id] = instrument_id.encode()
    return k


def publish_ticks(publisher: KafkaPublisher, ticks: Iterable[TradeTick | QuoteTick], topic: str,
                  headers: bool = True) -> int:
    """One JSON message per tick, keyed by instrument. headers=False leaves out the wire-version/type headers
    (the value's "type" tag, e.g. "trade.v1", names both; consumers accept messages without headers): about
    twice the rate, since librdkafka copies headers per record."""
    ticks = ticks if isinstance(ticks, list) else list(ticks)
    if not ticks:
        return 0
    enc = codec.encode
    values = [enc(t) for t in ticks]
    keys = [_key(t.instrument_id) for t in ticks]
    if not headers:
        return publisher.send_many(topic, values, keys)
    return publisher.send_many(topic, values, keys, headers_each=[headers_for(t) for t in ticks])


# ---- tick batch messages ----------------------------------------------------------------------------------------

TICK_BATCH_TYPE = b"ticks.v1"
TICK_BATCH_ROWS = 4096  # ~320 KB of Arrow per message: under librdkafka's 1 MB message.max.bytes
_BATCH_INT_COLUMNS = ("ts_event", "ts_recv", "seq", "price", "size", "bid", "ask", "bid_size", "ask_size")
TICK_BATCH_SCHEMA = pa.schema(
    [("instrument_id", pa.dictionary(pa.int32(), pa.string())), ("kind", pa.int8())]
    + [(c, pa.int64()) for c in _BATCH_INT_COLUMNS]
)
_BATCH_HEADERS: Headers = [(HEADER_VERSION, _VERSION_BYTES), (HEADER_TYPE, TICK_BATCH_TYPE)]


class TickBatchError(ValueError):
    """A tick batch message that does not hold TICK_BATCH_SCHEMA."""


def encode_tick_batch(cols: TickColumns, registry: Registry) -> bytes:
    """Rows with an unknown instrument (-1) are refused: dead-letter them at the edge before publishing."""
    if len(cols) and int(cols.instrument.min()) < 0:
        raise ValueError("tick batch has rows with an unknown instrument; dead-letter them before publishing")
    ids = pa.array(list(registry.ids), pa.string())
    arrays = [pa.DictionaryArray.from_arrays(pa.array(cols.instrument, pa.int32()), ids),
              pa.array(cols.kind, pa.int8())]
    arrays += [pa.array(getattr(cols, c), pa.int64()) for c in _BATCH_INT_COLUMNS]
    batch = pa.RecordBatch.from_arrays(arrays, schema=TICK_BATCH_SCHEMA)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, TICK_BATCH_SCHEMA) as writer:
        writer.write_batch(batch)
    return sink.getvalue().to_pybytes()  # type: ignore[no-any-return]


def decode_tick_batch(data: bytes, registry: Registry, ts_recv_default: int = 0, where: str = "") -> Ingested:
    """A batch message back to columns in its row order. Rows with an instrument outside the registry or a
    kind other than trade/quote become dead letters; ts_recv 0 is replaced by ts_recv_default (the Kafka
    timestamp). Raises TickBatchError when the payload is not a tick batch at all."""
    try:
        table = pa.ipc.open_stream(data).read_all()
    except (pa.ArrowInvalid, OSError) as e:
        raise TickBatchError(f"not an Arrow IPC stream: {e}") from e
    if not table.schema.equals(TICK_BATCH_SCHEMA):
        raise TickBatchError(f"schema {table.schema.to_string(show_schema_metadata=False)!r} is not ticks.v1")
    if any(col.null_count for col in table.columns):
        raise TickBatchError("tick batch columns must not hold nulls")
    n = table.num_rows
    out = TickColumns.empty(n)
    inst = table.column("instrument_id").combine_chunks()
    if n:
        lut = np.array([registry.index_of(s) for s in inst.dictionary.to_pylist()] or [-1], dtype=np.int32)
        out.instrument[:] = lut[inst.indices.to_numpy(zero_copy_only=False)]
    out.kind[:] = table.column("kind").to_numpy()
    for c in _BATCH_INT_COLUMNS:
        getattr(out, c)[:] = table.column(c).to_numpy()
    if ts_recv_default:
        out.ts_recv[out.ts_recv == 0] = ts_recv_default
    bad = (out.instrument < 0) | ((out.kind != KIND_TRADE) & (out.kind != KIND_QUOTE))
    if not bad.any():
        return Ingested(out, [])
    names = inst.dictionary.to_pylist()
    codes = inst.indices.to_numpy(zero_copy_only=False)
    dead = []
    for i in np.flatnonzero(bad).tolist():
        iid = str(names[codes[i]])
        unknown = out.instrument[i] < 0
        reason = Reason.UNKNOWN_INSTRUMENT if unknown else Reason.MALFORMED
        detail = DETAIL[reason] if unknown else f"kind {int(out.kind[i])} is neither trade (0) nor quote (1)"
        row = {"instrument_id": iid, "kind": int(out.kind[i]), **{c: int(getattr(out, c)[i])
                                                                    for c in _BATCH_INT_COLUMNS}}
        dead.append(DeadLetter(SOURCE, reason.label, f"{detail} (row {i} of {where or 'a tick batch'})",
                               msgspec.json.encode(row).decode(), int(out.ts_recv[i]), iid, int(out.ts_event[i])))
    return Ingested(out.take(~bad), dead)


def publish_tick_batches(publisher: KafkaPublisher, cols: TickColumns, topic: str, registry: Registry,
                         rows_per_message: int = TICK_BATCH_ROWS, partition: int = 0) -> int:
    """`cols` in delivery order as Arrow tick batch messages (returns how many). A message holds several
    instruments in their delivery order, so it goes to one partition (default 0: the ticks topic has one,
    which the global watermark needs) instead of being keyed by instrument."""
    if rows_per_message < 1:
        raise ValueError("rows_per_message must be >= 1")
    n = len(cols)
    values = (encode_tick_batch(cols.take(slice(lo, lo + rows_per_message)), registry)
              for lo in range(0, n, rows_per_message))
    return publisher.send_many(topic, values, (None for _ in range(0, n, rows_per_message)), _BATCH_HEADERS,
                               partition)


class KafkaSink(Sink):
    """Job outputs to Kafka: bars by interval, signals by kind, late ticks to `md.late`, other dead letters to
    `dlq`. Call `flush()` before treating outputs as durable (the tick source does, before committing)."""

    def __init__(self, publisher: KafkaPublisher, names: Topics | None = None) -> None:
        self.publisher = publisher
        self.names = names or Topics()
        self._bar_topics: dict[int, str] = {}

    def bars(self, bars: list[Bar]) -> None:
        for b in bars:
            topic = self._bar_topics.get(b.interval_ns)
            if topic is None:
                topic = self._bar_topics[b.interval_ns] = self.names.bars(b.interval_ns)
            self.publisher.publish(topic, b, b.instrument_id)

    def signals(self, signals: list[Signal]) -> None:
        for s in signals:
            self.publisher.publish(self.names.signals(signal_kind(s)), s, signal_instrument(s))

    def dead_letters(self, letters: list[DeadLetter]) -> None:
        for d in letters:
            topic = self.names.late if d.reason == Reason.LATE.label else self.names.dlq
            self.publisher.publish(topic, d, d.instrument_id)

    def flush(self, timeout_s: float = 120.0) -> None:
        self.publisher.flush(timeout_s)


# ---- consuming ------------------------------------------------------------------------------------------------

@dataclass
class ConsumerStats:
    messages: int = 0
    batches: int = 0
    errors: int = 0  # transient client errors (broker down, ...); the client retries by itself
    commit_failures: int = 0
    commits: int = 0
    last_error: str = ""
    dead_letters: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)


class BatchConsumer:
    """A group member that polls batches, commits explicit offsets and can tell whether it has caught up."""

    def __init__(self, bootstrap: str, group_id: str, topic_names: list[str], client_id: str = "commodex",
                 **overrides: object) -> None:
        conf = _client_conf(
            bootstrap,
            **{
                "group.id": group_id,
                "client.id": client_id,
                "enable.auto.commit": False,  # offsets move only after the batch's results are durable
                "auto.offset.reset": "earliest",
                # KIP-848 (Kafka >= 4.0): no stop-the-world JoinGroup; after a broker restart the classic
                # protocol held the rejoin for ~10 s. Pass {"group.protocol": "classic"} for older brokers.
                "group.protocol": "consumer",
                "error_cb": self._on_error,
            },
        )
        conf.update(overrides)
        if conf.get("group.protocol") == "classic":
            conf.setdefault("session.timeout.ms", 10_000)
            conf.setdefault("heartbeat.interval.ms", 1_000)
        self._incremental = conf.get("group.protocol") == "consumer" or "cooperative" in str(
            conf.get("partition.assignment.strategy", ""))
        self.stats = ConsumerStats()
        self.topic_names = list(topic_names)
        self._consumer = Consumer(conf)
        self._assigned: list[TopicPartition] = []
        self._pending: dict[tuple[str, int], int] = {}  # offsets to commit (next offset to read)
        self._carry: list[Message] = []  # messages taken by idle(): handed out by the next poll()
        self._next: dict[tuple[str, int], int] = {}  # offset after the last message handed out, per partition
        self._bootstrap = bootstrap
        self._admin_client: AdminClient | None = None
        self._consumer.subscribe(self.topic_names, on_assign=self._on_assign, on_revoke=self._on_revoke)

    def _on_error(self, err: KafkaError) -> None:
        self.stats.errors += 1
        self.stats.last_error = str(err)
        if err.fatal():
            raise KafkaException(err)

    def _on_assign(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        # A partition we already read from in this process (e.g. re-assigned after a broker restart) continues
        # after the last message handed out, not at the committed offset: a stateful job has seen those.
        for tp in parts:
            nxt = self._next.get((tp.topic, tp.partition))
            if nxt is not None:
                tp.offset = nxt
        if self._incremental:  # KIP-848 / cooperative: `parts` is what is added to the assignment
            consumer.incremental_assign(parts)
            self._assigned += parts
        else:
            consumer.assign(parts)
            self._assigned = list(parts)

    def _on_revoke(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        gone = {(p.topic, p.partition) for p in parts}
        self._assigned = [p for p in self._assigned if (p.topic, p.partition) not in gone]

    def poll(self, max_messages: int, timeout_s: float) -> list[Message]:
        """Up to max_messages data messages. Transient errors are counted; fatal or unknown-topic ones raise."""
        out, self._carry = self._carry, []
        for m in self._consumer.consume(max(1, max_messages - len(out)), timeout_s if not out else 0):
            err = m.error()
            if err is None:
                out.append(m)
                self._next[_tp(m)] = _next_offset(m)
                continue
            if err.code() == KafkaError._PARTITION_EOF:
                continue
            if err.fatal() or err.code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError.TOPIC_AUTHORIZATION_FAILED):
                raise KafkaException(err)
            self.stats.errors += 1
            self.stats.last_error = str(err)
        if out:
            self.stats.messages += len(out)
            self.stats.batches += 1
        return out

    def mark(self, messages: list[Message]) -> None:
        """Remember the batch's offsets; `commit()` sends them."""
        for m in messages:
            key = _tp(m)
            off = _next_offset(m)
            if off > self._pending.get(key, -1):
                self._pending[key] = off

    def rewind(self, messages: list[Message]) -> None:
        """Hand these messages out again on the next poll(): seek each still-assigned partition back to the
        batch's first offset (a batch that was taken but not written must not be skipped by later commits)."""
        first: dict[tuple[str, int], int] = {}
        for m in messages:
            key, off = _tp(m), _next_offset(m) - 1
            first[key] = min(off, first.get(key, off))
        assigned = {(tp.topic, tp.partition) for tp in self._assigned}
        self._carry = [m for m in self._carry if _tp(m) not in first]
        for (topic, part), off in first.items():
            if (topic, part) in assigned:  # a revoked partition is re-read by its new owner from the commit
                self._consumer.seek(TopicPartition(topic, part, off))
                self._next[(topic, part)] = off

    def commit(self) -> bool:
        """Synchronous commit of the marked offsets. False (and kept for the next try) when the broker is
        unreachable: commits are cumulative, and re-delivery after a restart is harmless to idempotent sinks."""
        if not self._pending:
            return True
        offsets = [TopicPartition(t, p, o) for (t, p), o in self._pending.items()]
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as e:
            self.stats.commit_failures += 1
            self.stats.last_error = str(e)
            return False
        self._pending.clear()
        self.stats.commits += 1
        return True

    def commit_with_retry(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.commit():
            if time.monotonic() > deadline:
                raise KafkaException(KafkaError(KafkaError._TIMED_OUT, f"offset commit failed for {timeout_s} s: "
                                                                       f"{self.stats.last_error}"))
            time.sleep(0.5)  # not poll(): that would take (and lose) a message

    def caught_up(self) -> bool:
        """True when every assigned partition has been read to its end (its high watermark right now)."""
        if not self._assigned:
            return False
        parts = [TopicPartition(tp.topic, tp.partition) for tp in self._assigned]
        try:
            # the admin client asks on its own connection: the consumer's would queue it behind a pending fetch
            futures = self._admin().list_offsets({tp: OffsetSpec.latest() for tp in parts}, request_timeout=5)
            high = {(tp.topic, tp.partition): f.result().offset for tp, f in futures.items()}
            positions = self._consumer.position(parts)
            unread = [tp for tp in positions if tp.offset < 0]
            committed = {(tp.topic, tp.partition): tp.offset
                         for tp in (self._consumer.committed(unread, timeout=5) if unread else [])}
            # never read and nothing committed: reading would start at the earliest offset
            fresh = [tp for tp in unread if committed[(tp.topic, tp.partition)] < 0]
            if fresh:
                lows = self._admin().list_offsets({tp: OffsetSpec.earliest() for tp in fresh}, request_timeout=5)
                committed.update({(tp.topic, tp.partition): f.result().offset for tp, f in lows.items()})
        except KafkaException as e:  # broker unreachable: cannot tell, so not caught up
            self.stats.errors += 1
            self.stats.last_error = str(e)
            return False
        for tp in positions:
            key = (tp.topic, tp.partition)
            pos = tp.offset if tp.offset >= 0 else committed[key]
            if pos < high[key]:
                return False
        return True

    def _admin(self) -> AdminClient:
        if self._admin_client is None:
            self._admin_client = AdminClient(_client_conf(self._bootstrap))
        return self._admin_client

    def pause(self) -> None:
        if self._assigned:
            self._consumer.pause(list(self._assigned))

    def resume(self) -> None:
        if self._assigned:
            self._consumer.resume(list(self._assigned))

    def idle(self, timeout_s: float) -> None:
        """Serve group callbacks while paused (a consumer that stops polling is dropped from its group). A
        message from a partition assigned meanwhile (so not paused) is kept for the next poll()."""
        for m in self._consumer.consume(1, timeout_s):
            if m.error() is None:
                self._carry.append(m)
                self._next[_tp(m)] = _next_offset(m)

    def close(self) -> None:
        self._consumer.close()


def _ts_ns(msg: Message) -> int:
    _, ms = msg.timestamp()
    return int(ms) * 1_000_000 if ms and ms > 0 else 0


def _tp(msg: Message) -> tuple[str, int]:
    return str(msg.topic()), int(msg.partition() or 0)


def _next_offset(msg: Message) -> int:
    return int(msg.offset() or 0) + 1


def _headers(msg: Message) -> tuple[str, bool]:
    """(version reject, is a tick batch): reject is "" when the headers name our wire version (or none:
    foreign producers may not set headers)."""
    hs = msg.headers() or []
    reject, batch = "", False
    for k, v in hs.items() if isinstance(hs, dict) else hs:
        if k == HEADER_VERSION and v != _VERSION_BYTES:
            reject = f"wire version {v!r}, this build reads {codec.WIRE_VERSION}"
        elif k == HEADER_TYPE and v == TICK_BATCH_TYPE:
            batch = True
    return reject, batch


def _where(msg: Message) -> str:
    return f"{msg.topic()}[{msg.partition()}]@{msg.offset()}"


def decode_ticks(messages: list[Message], registry: Registry) -> Ingested:
    """Tick messages (one JSON tick, or a tick batch) -> one Ingested batch in message order. Undecodable
    messages become "malformed" dead letters that name their topic/partition/offset; a tick with ts_recv 0
    (a feed that leaves receive stamping to us) gets the Kafka timestamp."""
    ticks: list[TradeTick | QuoteTick] = []
    dead: list[DeadLetter] = []
    parts: list[TickColumns] = []

    def flush_ticks() -> None:
        if ticks:
            ing = ingest_ticks(ticks, registry)
            parts.append(ing.columns)
            dead.extend(ing.dead_letters)
            ticks.clear()

    for m in messages:
        value = m.value() or b""
        ts = _ts_ns(m)
        bad_version, is_batch = _headers(m)
        if bad_version:
            dead.append(DeadLetter(SOURCE, Reason.MALFORMED.label, f"{bad_version} ({_where(m)})",
                                   value.decode("utf-8", "backslashreplace")[:4096], ts))
            continue
        if is_batch:
            flush_ticks()  # keeps message order: ticks before this batch come first
            try:
                ing = decode_tick_batch(value, registry, ts, _where(m))
            except TickBatchError as e:
                dead.append(DeadLetter(SOURCE, Reason.MALFORMED.label, f"{e} ({_where(m)})",
                                       value[:3072].hex(), ts))
                continue
            parts.append(ing.columns)
            dead.extend(ing.dead_letters)
            continue
        t = codec.decode_tick_or_dead_letter(value, ts, source=SOURCE)
        if isinstance(t, DeadLetter):
            dead.append(msgspec.structs.replace(t, detail=f"{t.detail} ({_where(m)})"))
            continue
        if t.ts_recv == 0 and ts:
            t = msgspec.structs.replace(t, ts_recv=ts)
        ticks.append(t)
    if not parts:  # JSON ticks only: one screening pass, dead letters of decoding first (as always)
        ing = ingest_ticks(ticks, registry)
        return Ingested(ing.columns, dead + ing.dead_letters)
    flush_ticks()
    return Ingested(TickColumns.concat(parts), dead)


class KafkaTickSource:
    """Iterable of `Ingested` batches from the ticks topic, for `jobs.market_job.build(source, sink)`.

    Offsets of a batch are committed when the next batch is asked for (the job has then processed it), after
    `before_commit()` (pass the KafkaSink's flush so outputs are durable before inputs are marked done).
    Iteration ends once `until()` is true and the topic has been read to its end, or after `idle_timeout_s`
    without messages; with neither it runs until closed."""

    def __init__(self, bootstrap: str, group_id: str, names: Topics | None = None, registry: Registry | None = None,
                 *, batch_max: int = 20_000, poll_timeout_s: float = 0.2, until: Callable[[], bool] | None = None,
                 idle_timeout_s: float | None = None, before_commit: Callable[[], None] | None = None) -> None:
        self.names = names or Topics()
        self.registry = registry or default_registry()
        self.consumer = BatchConsumer(bootstrap, group_id, [self.names.ticks], client_id="commodex-ticks")
        self.batch_max = batch_max
        self.poll_timeout_s = poll_timeout_s
        self.until = until
        self.idle_timeout_s = idle_timeout_s
        self.before_commit = before_commit

    @property
    def stats(self) -> ConsumerStats:
        return self.consumer.stats

    def _commit(self, final: bool) -> None:
        if self.before_commit is not None:
            self.before_commit()
        if final:
            self.consumer.commit_with_retry()
        else:
            self.consumer.commit()

    def __iter__(self) -> Iterator[Ingested]:
        last_data = time.monotonic()
        while True:
            msgs = self.consumer.poll(self.batch_max, self.poll_timeout_s)
            if msgs:
                last_data = time.monotonic()
                ing = decode_ticks(msgs, self.registry)
                self.stats.dead_letters += len(ing.dead_letters)
                for d in ing.dead_letters:
                    self.stats.by_reason[d.reason] = self.stats.by_reason.get(d.reason, 0) + 1
                self.consumer.mark(msgs)
                yield ing
                self._commit(final=False)
                continue
            if self.until is not None and self.until() and self.consumer.caught_up():
                break
            if self.idle_timeout_s is not None and time.monotonic() - last_data > self.idle_timeout_s:
                break
        self._commit(final=True)

    def close(self) -> None:
        self.consumer.close()
