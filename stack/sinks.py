"""Sink loops: Kafka output topics -> PostgreSQL / ClickHouse. Batch, write durably, THEN commit offsets.

A write that fails because the database is unreachable is retried with exponential backoff; meanwhile the
consumer is paused (it keeps its group membership) and holds the same batch, so nothing is skipped. Writes
are idempotent (natural keys), so a batch re-delivered after a crash between write and commit is harmless.
A message that does not decode to the record its topic carries becomes a "malformed" DeadLetter on the dlq
topic, published (and flushed) before the offsets that passed it are committed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import msgspec
from confluent_kafka import Message

from commodex.embedded.storage import ClickHouseStore
from market import codec
from market.config import Config
from market.events import Bar, DeadLetter, Signal
from market.rejects import Reason
from market.timeutil import now_ns
from stack.kafka_io import BatchConsumer, KafkaPublisher, Topics
from stack.pg_store import PgStore


class SinkLoopConfig(Config, frozen=True):
    max_batch_messages: int = 50_000
    poll_timeout_ms: int = 200
    backoff_initial_ms: int = 100
    backoff_max_ms: int = 5_000


@dataclass(slots=True)
class SinkBatch:
    bars: list[Bar] = field(default_factory=list)
    signals: list[Signal] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.bars) + len(self.signals) + len(self.dead_letters)


class StoreWriter(Protocol):
    name: str
    transient: tuple[type[BaseException], ...]  # errors that mean "database unreachable: retry later"

    def write(self, batch: SinkBatch) -> None: ...

    def reset(self) -> None: ...


class PostgresWriter:
    """One transaction per batch (COPY + upsert)."""

    name = "postgres"

    def __init__(self, store: PgStore) -> None:
        import psycopg

        self.store = store
        self.transient: tuple[type[BaseException], ...] = (psycopg.OperationalError,)

    def write(self, batch: SinkBatch) -> None:
        self.store.write(batch.bars, batch.signals, batch.dead_letters)

    def reset(self) -> None:
        self.store.reset()


class ClickHouseWriter:
    """Three idempotent inserts (ClickHouse has no multi-table transaction; a retried batch re-inserts all)."""

    name = "clickhouse"

    def __init__(self, store: ClickHouseStore) -> None:
        from clickhouse_connect.driver.exceptions import OperationalError

        self.store = store
        self.transient: tuple[type[BaseException], ...] = (OperationalError, ConnectionError)

    def write(self, batch: SinkBatch) -> None:
        self.store.insert_dead_letters(batch.dead_letters)
        self.store.insert_bars(batch.bars)
        self.store.insert_signals(batch.signals)

    def reset(self) -> None:
        return None  # clickhouse-connect reconnects per request


@dataclass
class SinkStats:
    batches: int = 0
    bars: int = 0
    signals: int = 0
    dead_letters: int = 0
    rejects: int = 0  # messages that did not decode: sent to dlq
    write_failures: int = 0
    last_write_error: str = ""
    backoff_s: float = 0.0  # total time spent waiting for the database


class SinkLoop:
    """Consumes `topic_names` as group `group_id` and writes through `writer`. Run it with `run(stop)` in a
    thread, or `drain()` to stop once everything published so far is written."""

    def __init__(self, bootstrap: str, writer: StoreWriter, group_id: str, topic_names: list[str],
                 names: Topics | None = None, config: SinkLoopConfig | None = None,
                 dlq: KafkaPublisher | None = None) -> None:
        self.writer = writer
        self.config = config or SinkLoopConfig()
        self.names = names or Topics()
        self.consumer = BatchConsumer(bootstrap, group_id, topic_names, client_id=f"commodex-sink-{writer.name}")
        self.dlq = dlq or KafkaPublisher(bootstrap, client_id=f"commodex-sink-{writer.name}-dlq")
        self.stats = SinkStats()
        self.source = f"sink.{writer.name}"

    def _decode(self, messages: list[Message]) -> SinkBatch:
        batch = SinkBatch()
        for m in messages:
            value = m.value() or b""
            try:
                ev = codec.decode(value)
            except (msgspec.DecodeError, msgspec.ValidationError) as e:
                self._reject(m, value, f"does not decode: {e}")
                continue
            if isinstance(ev, Bar):
                batch.bars.append(ev)
            elif isinstance(ev, Signal):
                batch.signals.append(ev)
            elif isinstance(ev, DeadLetter):
                batch.dead_letters.append(ev)
            else:
                self._reject(m, value, f"a {type(ev).__name__} is not a sink record")
        return batch

    def _reject(self, m: Message, value: bytes, why: str) -> None:
        self.stats.rejects += 1
        d = DeadLetter(self.source, Reason.MALFORMED.label, f"{why} ({m.topic()}[{m.partition()}]@{m.offset()})",
                       value.decode("utf-8", "backslashreplace")[:4096], now_ns())
        self.dlq.publish(self.names.dlq, d, "")

    def _write(self, batch: SinkBatch, stop: Callable[[], bool]) -> bool:
        """Write until it succeeds (True) or stop() (False: the batch stays uncommitted, so it is re-read)."""
        backoff = self.config.backoff_initial_ms / 1000
        paused = False
        try:
            while True:
                try:
                    self.writer.write(batch)
                    return True
                except self.writer.transient as e:
                    self.stats.write_failures += 1
                    self.stats.last_write_error = f"{type(e).__name__}: {e}"
                    self.writer.reset()
                if stop():
                    return False
                if not paused:
                    self.consumer.pause()
                    paused = True
                t0 = time.monotonic()
                self.consumer.idle(backoff)
                time.sleep(max(0.0, backoff - (time.monotonic() - t0)))
                self.stats.backoff_s += time.monotonic() - t0
                backoff = min(backoff * 2, self.config.backoff_max_ms / 1000)
        finally:
            if paused:
                self.consumer.resume()

    def step(self, stop: Callable[[], bool] = lambda: False) -> int:
        """One poll -> write -> commit cycle. Returns the number of messages handled."""
        msgs = self.consumer.poll(self.config.max_batch_messages, self.config.poll_timeout_ms / 1000)
        if not msgs:
            self.consumer.commit()  # retry offsets a broker outage left uncommitted
            return 0
        batch = self._decode(msgs)
        if len(batch) and not self._write(batch, stop):
            self.consumer.rewind(msgs)  # stopped before the database came back: read this batch again
            return 0
        if self.stats.rejects:
            self.dlq.flush()
        self.stats.batches += 1
        self.stats.bars += len(batch.bars)
        self.stats.signals += len(batch.signals)
        self.stats.dead_letters += len(batch.dead_letters)
        self.consumer.mark(msgs)
        self.consumer.commit()
        return len(msgs)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.step(stop.is_set)

    def drain(self, timeout_s: float = 120.0, until: Callable[[], bool] | None = None) -> None:
        """Run until `until()` (default: always) holds and every subscribed partition is read to its end, and
        the offsets are committed. TimeoutError if that takes longer than timeout_s."""
        deadline = time.monotonic() + timeout_s

        def late() -> bool:
            return time.monotonic() > deadline

        while True:
            if self.step(late) == 0 and (until is None or until()) and self.consumer.caught_up():
                self.consumer.commit_with_retry(max(1.0, deadline - time.monotonic()))
                return
            if late():
                raise TimeoutError(f"{self.source}: not caught up after {timeout_s} s "
                                   f"(last write error: {self.stats.last_write_error or '-'}, "
                                   f"last kafka error: {self.consumer.stats.last_error or '-'})")

    def close(self) -> None:
        self.consumer.close()
        self.dlq.flush()
