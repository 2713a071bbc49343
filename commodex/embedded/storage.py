"""ClickHouse storage for bars, signals, dead letters and ticks: chdb in-process or a ClickHouse server.

One code path: `clickhouse_connect.get_client(dsn=...)` returns the same client API for `chdb:///dir`
(embedded engine) and `http://host:8123` (server). chdb hosts ONE data path per process: a second path
opens only after every client of the first is closed (`ClickHouseStore.close()`).

Inserts are columnar and idempotent on natural keys (see sql/clickhouse/001_core.sql); reads use FINAL so
the latest bar revision wins even before background merges. The client serializes calls with its own lock,
so one store may be shared by the engine thread and the API's worker threads.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import clickhouse_connect
import msgspec
import numpy as np
import pyarrow as pa

from market import codec
from market.columns import TickColumns
from market.config import Config
from market.events import ArbitrageSignal, Bar, DeadLetter, Signal, signal_instrument, signal_kind
from market.instruments import Registry
from market.timeutil import now_ns

_REPO_SQL_DIR = Path(__file__).resolve().parents[2] / "sql" / "clickhouse"
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

_BAR_COLUMNS = (
    "instrument_id", "interval_ns", "start", "open", "high", "low", "close", "volume", "vwap", "trades",
    "ts_event", "ts_recv", "revision",
)
# Rows are built from and read back into the structs by field position: fail at import if they drift.
if Bar.__struct_fields__ != _BAR_COLUMNS:
    raise RuntimeError("bars table columns out of step with market.events.Bar")
_SIGNAL_COLUMNS = ("signal_id", "kind", "instrument", "instruments", "ts_event", "ts_recv", "payload")
_DEAD_LETTER_COLUMNS = (
    "dead_letter_id", "source", "reason", "detail", "raw", "instrument_id", "ts_event", "ts_recv",
)
_TICK_COLUMNS = (
    "kind", "ts_event", "ts_recv", "seq", "price", "size", "bid", "ask", "bid_size", "ask_size",
)


class StorageConfig(Config, frozen=True):
    dsn: str = ""  # "" = chdb under state_dir; or "chdb:///abs/dir", "http://user:pw@host:8123"
    state_dir: str = ".commodex"
    database: str = "commodex"
    sql_dir: str = ""  # "" = <repo>/sql/clickhouse (editable install or a checkout); set it for other layouts
    insert_batch_rows: int = 100_000  # rows per INSERT statement

    def resolved_dsn(self) -> str:
        if self.dsn:
            return self.dsn
        return f"chdb://{(Path(self.state_dir) / 'chdb').resolve()}"


class StoreCounts(msgspec.Struct, frozen=True):
    bars: int  # distinct (instrument, interval, start), latest revision only
    signals: int
    dead_letters: int
    ticks: int


class MigrationError(RuntimeError):
    """A schema file is missing, or was edited after it was applied."""


@dataclass(frozen=True, slots=True)
class Migration:
    name: str
    sha256: str
    statements: tuple[str, ...]


def sql_dir(config: StorageConfig) -> Path:
    """The folder of ClickHouse schema files (it lives at the repo root, outside any package)."""
    candidates = [Path(config.sql_dir)] if config.sql_dir else [_REPO_SQL_DIR, Path.cwd() / "sql" / "clickhouse"]
    for c in candidates:
        if c.is_dir():
            return c
    raise MigrationError(f"no ClickHouse schema folder at {', '.join(map(str, candidates))}; set StorageConfig.sql_dir")


def split_statements(text: str) -> list[str]:
    """Statements end with ';' at the end of a line; '--' comment lines are dropped."""
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in re.split(r";[ \t]*(?:\n|$)", body) if s.strip()]


def load_migrations(folder: Path) -> list[Migration]:
    out = []
    for path in sorted(folder.glob("*.sql")):
        text = path.read_text()
        out.append(Migration(path.name, hashlib.sha256(text.encode()).hexdigest(), tuple(split_statements(text))))
    return out


def record_id(data: bytes) -> str:
    """Deterministic 32-hex id of a record's codec bytes (idempotent re-insert)."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _signal_instruments(sig: Signal) -> list[str]:
    if isinstance(sig, ArbitrageSignal):
        return [sig.pair_id, sig.buy_instrument_id, sig.sell_instrument_id]
    return [sig.instrument_id]


class ClickHouseStore:
    """Bars, signals, dead letters and ticks in ClickHouse. Call `migrate()` once before use."""

    def __init__(self, config: StorageConfig | None = None) -> None:
        self.config = config or StorageConfig()
        if not _IDENT.match(self.config.database):
            raise ValueError(f"bad database name {self.config.database!r}")
        dsn = self.config.resolved_dsn()
        if dsn.startswith("chdb://"):
            Path(dsn.removeprefix("chdb://")).mkdir(parents=True, exist_ok=True)
        # No database on connect: it may not exist yet. migrate() creates and selects it.
        self.client: Any = clickhouse_connect.get_client(dsn=dsn)
        self._selected = False

    # ---- lifecycle -------------------------------------------------------------------------------------------

    def migrate(self) -> list[str]:
        """Create the database and apply pending schema files in order. Returns the names applied now."""
        db = self.config.database
        self.client.command(f"CREATE DATABASE IF NOT EXISTS {db}")
        self._select()
        self.client.command(
            "CREATE TABLE IF NOT EXISTS schema_migrations (name String, sha256 String, applied_ns Int64) "
            "ENGINE = ReplacingMergeTree ORDER BY name"
        )
        applied = dict(self.client.query("SELECT name, sha256 FROM schema_migrations FINAL").result_rows)
        done = []
        for m in load_migrations(sql_dir(self.config)):
            if m.name in applied:
                if applied[m.name] != m.sha256:
                    raise MigrationError(f"{m.name} changed after it was applied; add a new numbered file instead")
                continue
            for stmt in m.statements:
                self.client.command(stmt)
            self.client.insert(
                "schema_migrations", [[m.name], [m.sha256], [now_ns()]],
                column_names=["name", "sha256", "applied_ns"], column_oriented=True,
            )
            done.append(m.name)
        return done

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> ClickHouseStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _select(self) -> None:
        if not self._selected:
            self.client.database = self.config.database
            self._selected = True

    def _insert(self, table: str, columns: list[list[Any]], names: tuple[str, ...]) -> int:
        n = len(columns[0]) if columns else 0
        step = self.config.insert_batch_rows
        for lo in range(0, n, step):
            part = columns if n <= step else [c[lo:lo + step] for c in columns]
            self.client.insert(table, part, column_names=list(names), column_oriented=True)
        return n

    # ---- writes ----------------------------------------------------------------------------------------------

    def insert_bars(self, bars: list[Bar]) -> int:
        if not bars:
            return 0
        cols = [list(c) for c in zip(*(msgspec.structs.astuple(b) for b in bars), strict=True)]
        return self._insert("bars", cols, _BAR_COLUMNS)

    def insert_signals(self, signals: list[Signal]) -> int:
        if not signals:
            return 0
        ids, kinds, insts, inst_lists, ts_ev, ts_rc, payloads = [], [], [], [], [], [], []
        for s in signals:
            data = codec.encode(s)
            ids.append(record_id(data))
            kinds.append(signal_kind(s).value)
            insts.append(signal_instrument(s))
            inst_lists.append(_signal_instruments(s))
            ts_ev.append(s.ts_event)
            ts_rc.append(s.ts_recv)
            payloads.append(data.decode())
        return self._insert("signals", [ids, kinds, insts, inst_lists, ts_ev, ts_rc, payloads], _SIGNAL_COLUMNS)

    def insert_dead_letters(self, letters: list[DeadLetter]) -> int:
        if not letters:
            return 0
        cols: list[list[Any]] = [[] for _ in _DEAD_LETTER_COLUMNS]
        for d in letters:
            row = (record_id(codec.encode(d)), d.source, d.reason, d.detail, d.raw, d.instrument_id, d.ts_event,
                   d.ts_recv)
            for col, v in zip(cols, row, strict=True):
                col.append(v)
        return self._insert("dead_letters", cols, _DEAD_LETTER_COLUMNS)

    def insert_ticks(self, ticks: TickColumns, registry: Registry) -> int:
        """Archive a validated batch. Rows with an unknown instrument (-1) are refused, not dropped."""
        n = len(ticks)
        if n == 0:
            return 0
        if int(ticks.instrument.min()) < 0:
            raise ValueError("tick batch has rows with an unknown instrument; dead-letter them before storing")
        ids = pa.array(list(registry.ids), pa.string())
        data: dict[str, pa.Array] = {
            "instrument_id": pa.DictionaryArray.from_arrays(pa.array(ticks.instrument.astype(np.int32)), ids),
        }
        for name in _TICK_COLUMNS:
            data[name] = pa.array(getattr(ticks, name))
        table = pa.table(data)
        step = self.config.insert_batch_rows * 10  # arrow inserts are cheap per row; keep statements bounded
        for lo in range(0, n, step):
            self.client.insert_arrow("ticks", table.slice(lo, step))
        return n

    # ---- reads -----------------------------------------------------------------------------------------------

    def bars(self, instrument_id: str, interval_ns: int, start_ns: int | None = None, end_ns: int | None = None,
             limit: int = 500) -> list[Bar]:
        """Bars with start in [start_ns, end_ns), latest revision each, ascending by start. When more than
        `limit` match, the most recent `limit` are returned (what a chart wants)."""
        where = ["instrument_id = %(i)s", "interval_ns = %(n)s"]
        params: dict[str, Any] = {"i": instrument_id, "n": interval_ns, "limit": int(limit)}
        if start_ns is not None:
            where.append("start >= %(lo)s")
            params["lo"] = start_ns
        if end_ns is not None:
            where.append("start < %(hi)s")
            params["hi"] = end_ns
        rows = self.client.query(
            f"SELECT {', '.join(_BAR_COLUMNS)} FROM bars FINAL WHERE {' AND '.join(where)} "
            "ORDER BY start DESC LIMIT %(limit)s",
            parameters=params,
        ).result_rows
        return [Bar(*r) for r in reversed(rows)]

    def signals(self, kind: str | None = None, instrument: str | None = None, since_ns: int | None = None,
                limit: int = 100) -> list[Signal]:
        """Newest first. `instrument` matches a signal's instrument, an arbitrage pair id or either leg."""
        where = ["1"]
        params: dict[str, Any] = {"limit": int(limit)}
        if kind is not None:
            where.append("kind = %(k)s")
            params["k"] = kind
        if instrument is not None:
            where.append("has(instruments, %(i)s)")
            params["i"] = instrument
        if since_ns is not None:
            where.append("ts_event >= %(s)s")
            params["s"] = since_ns
        rows = self.client.query(
            f"SELECT payload FROM signals FINAL WHERE {' AND '.join(where)} "
            "ORDER BY ts_event DESC, ts_recv DESC, signal_id LIMIT %(limit)s",
            parameters=params,
        ).result_rows
        out: list[Signal] = []
        for (payload,) in rows:
            ev = codec.decode(payload)
            if not isinstance(ev, Signal):
                raise TypeError(f"signals table holds a {type(ev).__name__}, not a signal")
            out.append(ev)
        return out

    def dead_letters(self, reason: str | None = None, limit: int = 100) -> list[DeadLetter]:
        """Newest (by ts_recv) first."""
        params: dict[str, Any] = {"limit": int(limit)}
        where = "1"
        if reason is not None:
            where = "reason = %(r)s"
            params["r"] = reason
        rows = self.client.query(
            "SELECT source, reason, detail, raw, ts_recv, instrument_id, ts_event FROM dead_letters FINAL "
            f"WHERE {where} ORDER BY ts_recv DESC, dead_letter_id LIMIT %(limit)s",
            parameters=params,
        ).result_rows
        return [DeadLetter(*r) for r in rows]

    def counts(self) -> StoreCounts:
        row = self.client.query(
            "SELECT (SELECT count() FROM bars FINAL), (SELECT count() FROM signals FINAL), "
            "(SELECT count() FROM dead_letters FINAL), (SELECT count() FROM ticks)"
        ).result_rows[0]
        return StoreCounts(*(int(v) for v in row))
