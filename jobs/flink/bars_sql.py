"""OHLCV bars in Flink SQL with the semantics of `jobs.bars.BarAggregator` (the embedded kernel).

`build(source, sink, config)` plans one job: ticks table (event-time watermark) -> late filter -> per interval
a tumbling window aggregate (high, low, volume, trades, sum(price*size)) window-joined to two window Top-1
rankings (open = smallest (ts_event, arrival), close = largest), then exact half-to-even VWAP. Sources and
sinks are pluggable: `MemorySource` + `CollectSink` for tests, `KafkaSource` + `KafkaSink` for the stack.

How the kernel's rules map onto SQL (all verified by tests/test_flink_bars_differential.py):
- Open/close: FIRST_VALUE/LAST_VALUE follow arrival, so they are wrong under disorder. Window Top-1 ordered by
  (ts_event ns, arrival) picks the kernel's row, ties included (window dedup proper may only order by the ms
  rowtime, which loses ns order and the arrival tie-break).
- Late rows: a window operator drops them silently, per window, and SQL has no side output. So lateness is
  decided before the windows, exactly as the kernel does: watermark = running MAX(ts_event) over all rows in
  arrival order (an OVER aggregate on proctime) minus out_of_orderness; a row is late when the end of its
  window of ANY interval plus allowed_lateness <= that watermark. Late rows go to the `late` table (the side
  output, written by a second INSERT of the same statement set) and are removed from every interval.
- Flink's own watermark only fires windows: it is declared (out_of_orderness + allowed_lateness + 1 ms)
  behind the rowtime, so whatever a window operator would drop is already late by the filter (ms rounding
  included) and nothing is lost silently. Its periodic emission then changes latency only, never results.
- Allowed lateness: Flink SQL window TVFs cannot revise emitted windows. A window here fires once, when the
  watermark passes end + allowed_lateness, with the value of the kernel's LAST revision. With
  allowed_lateness_ms = 0 both emit exactly one bar per window.
- Equality holds for one ordered input split (parallelism 1, or one Kafka partition): the kernel's watermark
  is global over arrival order, and so is the OVER aggregate (it runs with parallelism 1).
"""

from __future__ import annotations

import csv
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from pyflink.table import StatementSet, Table, TableEnvironment, TableResult

from jobs.bars import BarsConfig
from market.columns import KIND_QUOTE, KIND_TRADE, TickColumns
from market.config import Config
from market.events import Bar
from market.rejects import DETAIL, Reason
from market.timeutil import NS_PER_MS, format_interval

TICKS = "ticks"
LATE = "late_rows"
SOURCE = "flink.bars"

# Columns every source provides (before the computed rowtime/proctime): arrival orders rows (in-memory row
# number, Kafka offset); kind is KIND_TRADE / KIND_QUOTE as in TickColumns.
TICK_COLUMNS = ("arrival", "instrument_id", "kind", "ts_event", "ts_recv", "seq", "price", "size")
BAR_COLUMNS = ("instrument_id", "interval_ns", "start", "open", "high", "low", "close", "volume", "vwap", "trades",
               "ts_recv")


class FlinkBarsConfig(Config, frozen=True):
    bars: BarsConfig = BarsConfig()
    job_name: str = "commodex-bars"


# -- sources ----------------------------------------------------------------------------------------------------


class TickSource(Protocol):
    def register(self, t_env: TableEnvironment, name: str, watermark_lag_ms: int) -> None:
        """Create table `name` with TICK_COLUMNS, `rowtime` (ms) with the given watermark lag, `proc`."""


def sql_interval(ms: int) -> str:
    """A day-time interval literal of `ms` milliseconds (Flink SQL has no MILLISECOND unit)."""
    sec = str(ms // 1000)
    return f"INTERVAL '{sec}.{ms % 1000:03d}' SECOND({max(2, len(sec))}, 3)"


def _rowtime_ddl(watermark_lag_ms: int) -> str:
    # rowtime is ms precision (Flink's limit); ts_event keeps ns for ordering and window starts
    return (f"rowtime AS TO_TIMESTAMP_LTZ(ts_event / 1000000, 3),\n  proc AS PROCTIME(),\n"
            f"  WATERMARK FOR rowtime AS rowtime - {sql_interval(watermark_lag_ms)}")


_TICK_DDL = ("arrival BIGINT, instrument_id STRING, kind INT, ts_event BIGINT, ts_recv BIGINT, seq BIGINT, "
             "price BIGINT, size BIGINT")


@dataclass
class MemorySource:
    """Validated `TickColumns` (arrival order) as a bounded table. The rows go through a temporary CSV file read
    by the filesystem connector: `from_elements`/VALUES tables cannot declare a watermark, and the file keeps
    the arrival order in one split. arrival = row index of `cols`."""

    cols: TickColumns
    ids: Sequence[str]  # instrument index -> id
    directory: str | None = None  # where the CSV goes (default: a fresh temporary dir, removed by close())
    _tmp: tempfile.TemporaryDirectory[str] | None = field(default=None, init=False, repr=False)

    def register(self, t_env: TableEnvironment, name: str, watermark_lag_ms: int) -> None:
        if self.directory is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="commodex-flink-")
            self.directory = self._tmp.name
        path = Path(self.directory) / f"{name}.csv"
        write_ticks_csv(self.cols, self.ids, path)
        t_env.execute_sql(f"""CREATE TEMPORARY TABLE {name} (
  {_TICK_DDL},
  {_rowtime_ddl(watermark_lag_ms)}
) WITH ('connector' = 'filesystem', 'path' = '{path.as_uri()}', 'format' = 'csv')""")

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def write_ticks_csv(cols: TickColumns, ids: Sequence[str], path: Path) -> None:
    names = np.array(list(ids), dtype=object)[cols.instrument]
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerows(zip(range(len(cols)), names.tolist(), cols.kind.tolist(), cols.ts_event.tolist(),
                        cols.ts_recv.tolist(), cols.seq.tolist(), cols.price.tolist(), cols.size.tolist(),
                        strict=True))


@dataclass(frozen=True)
class KafkaSource:
    """The validated ticks topic, codec JSON (`trade.v1` / `quote.v1`). arrival = the record's offset, so use
    one partition (or accept that the watermark is then per-partition-interleaving dependent)."""

    topic: str
    bootstrap: str
    group_id: str = "commodex-flink-bars"
    startup_mode: str = "earliest-offset"

    def register(self, t_env: TableEnvironment, name: str, watermark_lag_ms: int) -> None:
        t_env.execute_sql(f"""CREATE TEMPORARY TABLE {name}_json (
  `type` STRING, instrument_id STRING, ts_event BIGINT, ts_recv BIGINT, seq BIGINT, price BIGINT, size BIGINT,
  arrival BIGINT METADATA FROM 'offset' VIRTUAL,
  rowtime AS TO_TIMESTAMP_LTZ(ts_event / 1000000, 3),
  proc AS PROCTIME(),
  WATERMARK FOR rowtime AS rowtime - {sql_interval(watermark_lag_ms)}
) WITH (
  'connector' = 'kafka', 'topic' = '{self.topic}', 'properties.bootstrap.servers' = '{self.bootstrap}',
  'properties.group.id' = '{self.group_id}', 'scan.startup.mode' = '{self.startup_mode}',
  'format' = 'json', 'json.fail-on-missing-field' = 'false', 'json.ignore-parse-errors' = 'false'
)""")
        kind = f"CASE WHEN `type` = 'trade.v1' THEN {KIND_TRADE} ELSE {KIND_QUOTE} END"
        t_env.execute_sql(f"""CREATE TEMPORARY VIEW {name} AS SELECT arrival, instrument_id, {kind} AS kind,
  ts_event, ts_recv, seq, price, size, rowtime, proc FROM {name}_json""")


# -- the plan ---------------------------------------------------------------------------------------------------


def watermark_lag_ms(config: BarsConfig) -> int:
    """Flink's watermark lag: windows fire after end + allowed_lateness; +1 ms so that ms rounding of the rowtime
    never makes a window operator drop a row the late filter kept."""
    return config.out_of_orderness_ms + config.allowed_lateness_ms + 1


def _late_expr(config: BarsConfig) -> str:
    ooo = config.out_of_orderness_ms * NS_PER_MS
    lat = config.allowed_lateness_ms * NS_PER_MS
    # end of the row's window (ts_event >= 0) + lateness <= watermark, for any interval
    return " OR ".join(f"(ts_event - MOD(ts_event, {iv}) + {iv + lat} <= max_ts - {ooo})"
                       for iv in config.intervals_ns)


def _bars_sql(trades: str, iv: int) -> str:
    """One interval: window aggregate + Top-1 open + Top-1 close, window-joined; exact VWAP."""
    tvf = f"TABLE(TUMBLE(TABLE {trades}, DESCRIPTOR(rowtime), {sql_interval(iv // NS_PER_MS)}))"

    def top1(order: str) -> str:
        return f"""(SELECT * FROM (SELECT window_start, window_end, instrument_id, price, ROW_NUMBER() OVER (
      PARTITION BY window_start, window_end, instrument_id ORDER BY {order}) AS rn FROM {tvf}) WHERE rn = 1)"""

    agg = f"""(SELECT window_start, window_end, instrument_id, MIN(ts_event - MOD(ts_event, {iv})) AS st,
      MAX(price) AS high, MIN(price) AS low, SUM(size) AS volume, COUNT(*) AS trades, MAX(ts_recv) AS ts_recv,
      SUM(CAST(price AS DECIMAL(38, 0)) * size) AS pv
    FROM {tvf} GROUP BY window_start, window_end, instrument_id)"""
    joined = f"""SELECT a.instrument_id, a.st, o.price AS op, a.high, a.low, c.price AS cl, a.volume, a.trades,
    a.ts_recv, a.pv, CAST(FLOOR(a.pv / NULLIF(a.volume, 0)) AS DECIMAL(38, 0)) AS q0
  FROM {agg} a
  JOIN {top1("ts_event ASC, arrival ASC")} o
    ON a.window_start = o.window_start AND a.window_end = o.window_end AND a.instrument_id = o.instrument_id
  JOIN {top1("ts_event DESC, arrival DESC")} c
    ON a.window_start = c.window_start AND a.window_end = c.window_end AND a.instrument_id = c.instrument_id"""
    # q0 may be off by one (decimal division rounds); one correction step gives floor, then round half to even
    floored = f"""SELECT *, q0 + d AS q, pv - (q0 + d) * volume AS r FROM (
    SELECT *, CASE WHEN pv - q0 * volume < 0 THEN -1 WHEN pv - q0 * volume >= volume THEN 1 ELSE 0 END AS d
    FROM ({joined}))"""
    return f"""SELECT instrument_id, CAST({iv} AS BIGINT) AS interval_ns, st AS `start`, op AS `open`, high, low,
    cl AS `close`, volume,
    CASE WHEN volume = 0 THEN cl ELSE CAST(q + CASE WHEN 2 * r > volume OR (2 * r = volume AND MOD(q, 2) <> 0)
      THEN 1 ELSE 0 END AS BIGINT) END AS vwap,
    trades, ts_recv
  FROM ({floored})"""


@dataclass(frozen=True)
class BarsTables:
    t_env: TableEnvironment
    bars: Table  # BAR_COLUMNS, all intervals, append-only (one row per window with trades)
    late: Table  # TICK_COLUMNS of the late rows, in arrival order


def plan(t_env: TableEnvironment, source: TickSource, config: BarsConfig) -> BarsTables:
    source.register(t_env, TICKS, watermark_lag_ms(config))
    t_env.execute_sql(f"""CREATE TEMPORARY VIEW ticks_marked AS SELECT *, ({_late_expr(config)}) AS late FROM (
  SELECT *, MAX(ts_event) OVER (ORDER BY proc ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS max_ts
  FROM {TICKS})""")
    t_env.execute_sql(f"""CREATE TEMPORARY VIEW trades_on_time AS
  SELECT * FROM ticks_marked WHERE NOT late AND kind = {KIND_TRADE}""")
    bars = t_env.sql_query("\nUNION ALL\n".join(_bars_sql("trades_on_time", iv) for iv in config.intervals_ns))
    cols = ", ".join(TICK_COLUMNS)
    late = t_env.sql_query(f"SELECT {cols} FROM ticks_marked WHERE late")
    return BarsTables(t_env, bars, late)


# -- sinks ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BarRow:
    """One bar as Flink emitted it (revision is always 0: see the module docstring)."""

    instrument_id: str
    interval_ns: int
    start: int
    open: int
    high: int
    low: int
    close: int
    volume: int
    vwap: int
    trades: int
    ts_recv: int  # max ts_recv of the window's trades (SQL cannot see which row's watermark fired the window)

    def to_bar(self) -> Bar:
        return Bar(self.instrument_id, self.interval_ns, self.start, self.open, self.high, self.low, self.close,
                   self.volume, self.vwap, self.trades, self.start + self.interval_ns, self.ts_recv, 0)


@dataclass(frozen=True)
class LateRow:
    arrival: int
    instrument_id: str
    kind: int
    ts_event: int
    ts_recv: int
    seq: int
    price: int
    size: int


@dataclass
class CollectResult:
    bars: list[BarRow] = field(default_factory=list)
    late: list[LateRow] = field(default_factory=list)


class BarsSink(Protocol):
    def write(self, tables: BarsTables, config: BarsConfig) -> object:
        """Run the job writing both tables; returns what the sink collected (or the job's TableResult)."""


class CollectSink:
    """Collects bars and late rows into Python lists (bounded sources only: it waits for the job to end).
    Both go out as one UNION ALL stream tagged by `rec`, because one job has one collect sink."""

    def write(self, tables: BarsTables, config: BarsConfig) -> CollectResult:
        def typed(expr: str, col: str) -> str:
            return f"CAST({expr} AS {'STRING' if col == 'instrument_id' else 'BIGINT'})"

        bar_cols = ", ".join(typed(f"`{c}`", c) for c in BAR_COLUMNS)
        late_cols = ", ".join(typed(c, c) for c in TICK_COLUMNS)
        no_bar = ", ".join(typed("NULL", c) for c in BAR_COLUMNS)
        no_late = ", ".join(typed("NULL", c) for c in TICK_COLUMNS)
        t_env = tables.t_env
        t_env.create_temporary_view("bars_out", tables.bars)
        t_env.create_temporary_view("late_out", tables.late)
        union = t_env.sql_query(f"""SELECT 'bar' AS rec, {bar_cols}, {no_late} FROM bars_out
UNION ALL SELECT 'late' AS rec, {no_bar}, {late_cols} FROM late_out""")
        out = CollectResult()
        nb = len(BAR_COLUMNS)
        with union.execute().collect() as rows:
            for row in rows:
                vals = list(row)
                if vals[0] == "bar":
                    out.bars.append(BarRow(*vals[1:1 + nb]))
                else:
                    out.late.append(LateRow(*vals[1 + nb:]))
        out.late.sort(key=lambda r: r.arrival)
        return out


@dataclass(frozen=True)
class KafkaSink:
    """Bars to one topic per interval (codec JSON `bar.v1`, key = instrument), late rows to the late topic as
    `deadletter.v1` records (reason "late"), via one statement set (one job)."""

    bootstrap: str
    bar_topic_prefix: str = "md.bars."  # + format_interval(ns), as market.topics.bars
    late_topic: str = "md.late"

    def _table(self, t_env: TableEnvironment, name: str, topic: str, columns: str) -> None:
        t_env.execute_sql(f"""CREATE TEMPORARY TABLE {name} ({columns}) WITH (
  'connector' = 'kafka', 'topic' = '{topic}', 'properties.bootstrap.servers' = '{self.bootstrap}',
  'key.format' = 'raw', 'key.fields' = 'instrument_id', 'value.format' = 'json',
  'value.fields-include' = 'ALL', 'sink.delivery-guarantee' = 'at-least-once'
)""")

    def write(self, tables: BarsTables, config: BarsConfig) -> TableResult:
        t_env = tables.t_env
        t_env.create_temporary_view("bars_out", tables.bars)
        t_env.create_temporary_view("late_out", tables.late)
        stmts: StatementSet = t_env.create_statement_set()
        bar_cols = ("`type` STRING, instrument_id STRING, interval_ns BIGINT, `start` BIGINT, `open` BIGINT, "
                    "high BIGINT, low BIGINT, `close` BIGINT, volume BIGINT, vwap BIGINT, trades BIGINT, "
                    "ts_event BIGINT, ts_recv BIGINT, revision BIGINT")
        for iv in config.intervals_ns:
            name = f"bars_sink_{format_interval(iv)}"
            self._table(t_env, name, self.bar_topic_prefix + format_interval(iv), bar_cols)
            stmts.add_insert_sql(f"""INSERT INTO {name} SELECT 'bar.v1', instrument_id, interval_ns, `start`, `open`,
  high, low, `close`, volume, vwap, trades, `start` + interval_ns, ts_recv, CAST(0 AS BIGINT)
  FROM bars_out WHERE interval_ns = {iv}""")
        self._table(t_env, "late_sink", self.late_topic,
                    "`type` STRING, source STRING, reason STRING, detail STRING, raw STRING, ts_recv BIGINT, "
                    "instrument_id STRING, ts_event BIGINT")
        raw = ("JSON_OBJECT('instrument_id' VALUE instrument_id, 'ts_event' VALUE ts_event, 'ts_recv' VALUE ts_recv, "
               "'seq' VALUE seq, 'price' VALUE price, 'size' VALUE size, 'kind' VALUE kind)")
        stmts.add_insert_sql(f"""INSERT INTO late_sink SELECT 'deadletter.v1', '{SOURCE}', '{Reason.LATE.label}',
  '{DETAIL[Reason.LATE]}: ts_event ' || CAST(ts_event AS STRING), {raw}, ts_recv, instrument_id, ts_event
  FROM late_out""")
        return stmts.execute()


# -- the job ----------------------------------------------------------------------------------------------------


@dataclass
class FlinkBarsJob:
    source: TickSource  # kept alive: a MemorySource's file must outlive the job
    tables: BarsTables
    sink: BarsSink
    config: FlinkBarsConfig

    def run(self) -> object:
        return self.sink.write(self.tables, self.config.bars)

    def explain(self) -> str:
        return str(self.tables.bars.explain())


def build(source: TickSource, sink: BarsSink, config: FlinkBarsConfig | None = None,
          t_env: TableEnvironment | None = None) -> FlinkBarsJob:
    """Plan the bars job on `t_env` (default: a fresh one from runtime.FlinkSettings())."""
    cfg = config or FlinkBarsConfig()
    if t_env is None:
        from jobs.flink.runtime import FlinkSettings, create_table_env

        t_env = create_table_env(FlinkSettings(job_name=cfg.job_name))
    return FlinkBarsJob(source, plan(t_env, source, cfg.bars), sink, cfg)

