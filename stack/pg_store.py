"""PostgreSQL storage for bars, signals and dead letters: COPY into staging tables, then upsert on natural keys.

Every write is idempotent (re-delivering a Kafka batch changes nothing): bars keep the highest revision per
(instrument, interval, start); signals and dead letters are keyed by the blake2b id of their codec bytes,
the same ids the ClickHouse store uses. One `write()` is one transaction. Schema: sql/postgres/*.sql.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import psycopg

from commodex.embedded.storage import record_id
from market import codec
from market.events import ArbitrageSignal, Bar, DeadLetter, Signal, signal_instrument, signal_kind

_REPO_SQL_DIR = Path(__file__).resolve().parents[1] / "sql" / "postgres"

BAR_COLUMNS = Bar.__struct_fields__  # table columns = Bar fields, in order (rows are built by position)
_BAR_TYPES = ["text"] + ["int8"] * 11 + ["int4"]
_BAR_KEY = ("instrument_id", "interval_ns", "start")
_SIGNAL_COLUMNS = ("signal_id", "kind", "instrument", "instruments", "ts_event", "ts_recv", "payload")
_SIGNAL_TYPES = ["text", "text", "text", "text[]", "int8", "int8", "text"]
_DEAD_COLUMNS = ("dead_letter_id", "source", "reason", "detail", "raw", "instrument_id", "ts_event", "ts_recv")
_DEAD_TYPES = ["text"] * 6 + ["int8", "int8"]
if len(BAR_COLUMNS) != len(_BAR_TYPES) or BAR_COLUMNS[:3] != _BAR_KEY or BAR_COLUMNS[-1] != "revision":
    raise RuntimeError("bars table columns out of step with market.events.Bar")

_STAGE_DDL = (
    "CREATE TEMP TABLE IF NOT EXISTS stage_bars (instrument_id text, interval_ns int8, start int8, open int8, "
    "high int8, low int8, close int8, volume int8, vwap int8, trades int8, ts_event int8, ts_recv int8, "
    "revision int4) ON COMMIT DELETE ROWS",
    "CREATE TEMP TABLE IF NOT EXISTS stage_signals (signal_id text, kind text, instrument text, instruments text[], "
    "ts_event int8, ts_recv int8, payload text) ON COMMIT DELETE ROWS",
    "CREATE TEMP TABLE IF NOT EXISTS stage_dead_letters (dead_letter_id text, source text, reason text, detail text, "
    "raw text, instrument_id text, ts_event int8, ts_recv int8) ON COMMIT DELETE ROWS",
)
_cols = ", ".join(BAR_COLUMNS)
_updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in BAR_COLUMNS[3:])
# DISTINCT ON: one batch may hold several revisions of a bar; ON CONFLICT may touch a row only once per statement
_UPSERT_BARS = (
    f"INSERT INTO bars ({_cols}) SELECT DISTINCT ON (instrument_id, interval_ns, start) {_cols} FROM stage_bars "
    "ORDER BY instrument_id, interval_ns, start, revision DESC "
    f"ON CONFLICT (instrument_id, interval_ns, start) DO UPDATE SET {_updates} WHERE bars.revision < EXCLUDED.revision"
)
_UPSERT_SIGNALS = (
    f"INSERT INTO signals ({', '.join(_SIGNAL_COLUMNS)}) SELECT DISTINCT ON (signal_id) signal_id, kind, instrument, "
    "instruments, ts_event, ts_recv, payload::jsonb FROM stage_signals ON CONFLICT (signal_id) DO NOTHING"
)
_UPSERT_DEAD = (
    f"INSERT INTO dead_letters ({', '.join(_DEAD_COLUMNS)}) SELECT DISTINCT ON (dead_letter_id) "
    f"{', '.join(_DEAD_COLUMNS)} FROM stage_dead_letters ON CONFLICT (dead_letter_id) DO NOTHING"
)


class PgMigrationError(RuntimeError):
    """A schema file is missing, or was edited after it was applied."""


class PgCounts(msgspec.Struct, frozen=True):
    bars: int
    signals: int
    dead_letters: int


@dataclass(frozen=True, slots=True)
class _Migration:
    name: str
    sha256: str
    text: str


def sql_dir(override: str | Path | None = None) -> Path:
    candidates = [Path(override)] if override else [_REPO_SQL_DIR, Path.cwd() / "sql" / "postgres"]
    for c in candidates:
        if c.is_dir():
            return c
    raise PgMigrationError(f"no PostgreSQL schema folder at {', '.join(map(str, candidates))}")


def _migrations(folder: Path) -> list[_Migration]:
    out = []
    for path in sorted(folder.glob("*.sql")):
        text = path.read_text()
        out.append(_Migration(path.name, hashlib.sha256(text.encode()).hexdigest(), text))
    return out


def _month(ns: int) -> tuple[int, int]:
    d = datetime.fromtimestamp(ns // 1_000_000_000, UTC)
    return d.year, d.month


def _text(s: str) -> str:
    """PostgreSQL text cannot hold NUL: a raw message that carried one is kept with it escaped."""
    return s.replace("\0", "\\x00") if "\0" in s else s


def _signal_instruments(sig: Signal) -> list[str]:
    if isinstance(sig, ArbitrageSignal):
        return [sig.pair_id, sig.buy_instrument_id, sig.sell_instrument_id]
    return [sig.instrument_id]


class PgStore:
    """One connection, opened lazily and dropped by `reset()` after a connection error (the next call
    reconnects). Not thread-safe: one store per thread."""

    def __init__(self, dsn: str, sql_folder: str | Path | None = None, connect_timeout_s: int = 3) -> None:
        self.dsn = dsn
        self._sql_folder = sql_folder
        self._connect_timeout_s = connect_timeout_s
        self._conn: psycopg.Connection[Any] | None = None
        self._months: set[tuple[int, int]] = set()

    # ---- lifecycle -------------------------------------------------------------------------------------------

    def conn(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=self._connect_timeout_s)
            with self._conn.cursor() as cur:
                for ddl in _STAGE_DDL:
                    cur.execute(ddl)
        return self._conn

    def reset(self) -> None:
        """Forget the connection (after an OperationalError); the next call opens a new one."""
        if self._conn is not None:
            self._conn.close()
        self._conn = None

    close = reset

    def __enter__(self) -> PgStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def migrate(self) -> list[str]:
        """Apply pending schema files, in order, each in its own transaction. Returns the names applied now."""
        conn = self.conn()
        done = []
        for m in _migrations(sql_dir(self._sql_folder)):
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(hashtext('commodex_migrate'))")
                conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (name text PRIMARY KEY, "
                             "sha256 text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
                row = conn.execute("SELECT sha256 FROM schema_migrations WHERE name = %s", (m.name,)).fetchone()
                if row is not None:
                    if row[0] != m.sha256:
                        raise PgMigrationError(f"{m.name} changed after it was applied; add a new numbered file")
                    continue
                conn.execute(m.text.encode())  # several statements: sent as one simple query
                conn.execute("INSERT INTO schema_migrations (name, sha256) VALUES (%s, %s)", (m.name, m.sha256))
            done.append(m.name)
        return done

    def timescale(self) -> bool:
        """True when the bars table is a TimescaleDB hypertable, False for native partitioning."""
        row = self.conn().execute("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')")
        return bool(row.fetchone()[0])  # type: ignore[index]

    def bar_partitions(self) -> list[str]:
        rows = self.conn().execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'bars' ORDER BY 1"
        ).fetchall()
        return [r[0] for r in rows]

    # ---- writes ----------------------------------------------------------------------------------------------

    def write(self, bars: Sequence[Bar] = (), signals: Sequence[Signal] = (),
              dead_letters: Sequence[DeadLetter] = ()) -> PgCounts:
        """Everything in one transaction. Returns rows inserted or changed (a replayed batch gives zeros)."""
        conn = self.conn()
        n_bars = n_sig = n_dead = 0
        with conn.transaction(), conn.cursor() as cur:
            if bars:
                self._ensure_partitions(cur, bars)
                with cur.copy(f"COPY stage_bars ({_cols}) FROM STDIN (FORMAT BINARY)") as cp:
                    cp.set_types(_BAR_TYPES)
                    for b in bars:
                        cp.write_row(msgspec.structs.astuple(b))
                n_bars = cur.execute(_UPSERT_BARS).rowcount
            if signals:
                with cur.copy(f"COPY stage_signals ({', '.join(_SIGNAL_COLUMNS)}) FROM STDIN (FORMAT BINARY)") as cp:
                    cp.set_types(_SIGNAL_TYPES)
                    for s in signals:
                        data = codec.encode(s)
                        cp.write_row((record_id(data), signal_kind(s).value, signal_instrument(s),
                                      _signal_instruments(s), s.ts_event, s.ts_recv, data.decode()))
                n_sig = cur.execute(_UPSERT_SIGNALS).rowcount
            if dead_letters:
                with cur.copy(f"COPY stage_dead_letters ({', '.join(_DEAD_COLUMNS)}) FROM STDIN (FORMAT BINARY)") as cp:
                    cp.set_types(_DEAD_TYPES)
                    for d in dead_letters:
                        cp.write_row((record_id(codec.encode(d)), d.source, d.reason, _text(d.detail),
                                      _text(d.raw), d.instrument_id, d.ts_event, d.ts_recv))
                n_dead = cur.execute(_UPSERT_DEAD).rowcount
        return PgCounts(bars=n_bars, signals=n_sig, dead_letters=n_dead)

    def _ensure_partitions(self, cur: psycopg.Cursor[Any], bars: Sequence[Bar]) -> None:
        months = {_month(b.start) for b in bars}
        if months <= self._months:
            return
        lo = min(b.start for b in bars)
        hi = max(b.start for b in bars)
        cur.execute("SELECT commodex_ensure_bar_partitions(%s, %s)", (lo, hi))
        self._months |= months

    # ---- reads -----------------------------------------------------------------------------------------------

    def bars(self, instrument_id: str | None = None, interval_ns: int | None = None) -> list[Bar]:
        """Ordered by (instrument, interval, start)."""
        where, params = self._where(("instrument_id", instrument_id), ("interval_ns", interval_ns))
        rows = self.conn().execute(
            f"SELECT {_cols} FROM bars{where} ORDER BY instrument_id, interval_ns, start", params
        ).fetchall()
        return [Bar(*r) for r in rows]

    def signals(self, kind: str | None = None) -> list[Signal]:
        """Ordered by (ts_event, signal_id)."""
        where, params = self._where(("kind", kind))
        rows = self.conn().execute(f"SELECT payload::text FROM signals{where} ORDER BY ts_event, signal_id",
                                   params).fetchall()
        out: list[Signal] = []
        for (payload,) in rows:
            ev = codec.decode(payload)
            if not isinstance(ev, Signal):
                raise TypeError(f"signals table holds a {type(ev).__name__}, not a signal")
            out.append(ev)
        return out

    def signal_ids(self) -> set[str]:
        return {r[0] for r in self.conn().execute("SELECT signal_id FROM signals").fetchall()}

    def dead_letters(self, reason: str | None = None) -> list[DeadLetter]:
        where, params = self._where(("reason", reason))
        rows = self.conn().execute(
            f"SELECT source, reason, detail, raw, ts_recv, instrument_id, ts_event FROM dead_letters{where} "
            "ORDER BY ts_recv, dead_letter_id", params
        ).fetchall()
        return [DeadLetter(*r) for r in rows]

    def counts(self) -> PgCounts:
        row = self.conn().execute(
            "SELECT (SELECT count(*) FROM bars), (SELECT count(*) FROM signals), (SELECT count(*) FROM dead_letters)"
        ).fetchone()
        assert row is not None
        return PgCounts(*(int(v) for v in row))

    @staticmethod
    def _where(*conds: tuple[str, object]) -> tuple[str, list[object]]:
        used = [(c, v) for c, v in conds if v is not None]
        if not used:
            return "", []
        return " WHERE " + " AND ".join(f"{c} = %s" for c, _ in used), [v for _, v in used]
