"""The read side of PostgreSQL for the HTTP API: a `serving.services.HistoryStore` over the tables that
`stack.pg_store.PgStore` writes (schema: sql/postgres/*.sql).

Same answers as `commodex.embedded.storage.ClickHouseStore` for the same rows: bars are one row per
(instrument, interval, start) already holding the latest revision (the writer's upsert keeps the highest),
the most recent `limit` in ascending order; signals newest first (ts_event, ts_recv desc, then id);
dead letters newest ts_recv first. Every query is parametrized.

The API calls the store from worker threads, several at once, and a psycopg connection serves one query at
a time: a small pool of read-only autocommit connections. A connection that failed (server restarted) is
dropped and the read retried once on a new one; reads are idempotent.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg

from commodex.embedded.storage import StoreCounts
from market import codec
from market.events import Bar, DeadLetter, Signal

__all__ = ["PgHistoryStore"]

T = TypeVar("T")

_BAR_COLS = ", ".join(Bar.__struct_fields__)
_DEAD_COLS = "source, reason, detail, raw, ts_recv, instrument_id, ts_event"  # DeadLetter's field order
if Bar.__struct_fields__[-1] != "revision" or DeadLetter.__struct_fields__ != (
        "source", "reason", "detail", "raw", "ts_recv", "instrument_id", "ts_event"):
    raise RuntimeError("history queries out of step with market.events")


class PgHistoryStore:
    """Thread-safe: connections come from a pool of at most `max_connections` (callers beyond it wait)."""

    def __init__(self, dsn: str, max_connections: int = 4, connect_timeout_s: int = 3) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be >= 1")
        self.dsn = dsn
        self._connect_timeout_s = connect_timeout_s
        self._idle: queue.LifoQueue[psycopg.Connection[Any]] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(max_connections)
        self._closed = False

    # ---- connections ------------------------------------------------------------------------------------------

    def _connect(self) -> psycopg.Connection[Any]:
        # read-only at the session level: the serving process can never change history, whatever a bug asks
        return psycopg.connect(self.dsn, autocommit=True, connect_timeout=self._connect_timeout_s,
                               options="-c default_transaction_read_only=on")

    def _run(self, read: Callable[[psycopg.Connection[Any]], T]) -> T:
        if self._closed:
            raise RuntimeError("history store is closed")
        with self._slots:
            for attempt in (1, 2):
                try:
                    conn = self._idle.get_nowait()
                except queue.Empty:
                    conn = self._connect()
                try:
                    out = read(conn)
                except psycopg.OperationalError:
                    conn.close()  # broken (server restarted, network): never back into the pool
                    if attempt == 2:
                        raise
                    continue
                except BaseException:
                    conn.close()  # state unknown after a failed query
                    raise
                self._idle.put(conn)
                return out
        raise AssertionError("unreachable")

    def ping(self) -> None:
        """Raises psycopg.OperationalError when the server is unreachable, UndefinedTable without the schema."""
        self._run(lambda c: c.execute("SELECT 1 FROM bars LIMIT 0").fetchall())

    def close(self) -> None:
        self._closed = True
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return

    def __enter__(self) -> PgHistoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- HistoryStore ------------------------------------------------------------------------------------------

    def bars(self, instrument_id: str, interval_ns: int, start_ns: int | None = None, end_ns: int | None = None,
             limit: int = 500) -> list[Bar]:
        """Bars with start in [start_ns, end_ns), ascending by start; the most recent `limit` when more match."""
        where = ["instrument_id = %s", "interval_ns = %s"]
        params: list[object] = [instrument_id, interval_ns]
        if start_ns is not None:
            where.append("start >= %s")
            params.append(start_ns)
        if end_ns is not None:
            where.append("start < %s")
            params.append(end_ns)
        params.append(int(limit))
        sql = f"SELECT {_BAR_COLS} FROM bars WHERE {' AND '.join(where)} ORDER BY start DESC LIMIT %s"
        rows = self._run(lambda c: c.execute(sql, params).fetchall())
        return [Bar(*r) for r in reversed(rows)]

    def signals(self, kind: str | None = None, instrument: str | None = None, since_ns: int | None = None,
                limit: int = 100) -> list[Signal]:
        """Newest first. `instrument` matches a signal's instrument, an arbitrage pair id or either leg."""
        where: list[str] = []
        params: list[object] = []
        if kind is not None:
            where.append("kind = %s")
            params.append(kind)
        if instrument is not None:
            where.append("instruments @> ARRAY[%s]::text[]")  # containment: served by the GIN index
            params.append(instrument)
        if since_ns is not None:
            where.append("ts_event >= %s")
            params.append(since_ns)
        params.append(int(limit))
        cond = f" WHERE {' AND '.join(where)}" if where else ""
        sql = f"SELECT payload::text FROM signals{cond} ORDER BY ts_event DESC, ts_recv DESC, signal_id LIMIT %s"
        rows = self._run(lambda c: c.execute(sql, params).fetchall())
        out: list[Signal] = []
        for (payload,) in rows:
            ev = codec.decode(payload)  # jsonb text: keys reordered, same values; the tag is found anywhere
            if not isinstance(ev, Signal):
                raise TypeError(f"signals table holds a {type(ev).__name__}, not a signal")
            out.append(ev)
        return out

    def dead_letters(self, reason: str | None = None, limit: int = 100) -> list[DeadLetter]:
        """Newest (by ts_recv) first."""
        cond, params = ("", [int(limit)]) if reason is None else (" WHERE reason = %s", [reason, int(limit)])
        sql = f"SELECT {_DEAD_COLS} FROM dead_letters{cond} ORDER BY ts_recv DESC, dead_letter_id LIMIT %s"
        rows = self._run(lambda c: c.execute(sql, params).fetchall())
        return [DeadLetter(*r) for r in rows]

    def counts(self) -> StoreCounts:
        """Ticks are archived only in ClickHouse: `ticks` is 0 here."""
        row = self._run(lambda c: c.execute(
            "SELECT (SELECT count(*) FROM bars), (SELECT count(*) FROM signals), (SELECT count(*) FROM dead_letters)"
        ).fetchone())
        if row is None:
            raise RuntimeError("count query returned no row")
        return StoreCounts(int(row[0]), int(row[1]), int(row[2]), 0)
