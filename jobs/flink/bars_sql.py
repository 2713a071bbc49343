"""OHLCV bars in Flink SQL with the semantics of `jobs.bars.BarAggregator` (the embedded kernel).

`build(source, sink, config)` plans one job: ticks table (event-time watermark) -> late filter -> for the
smallest interval a tumbling window aggregate (high, low, volume, trades, sum(price*size)) window-joined to two
window Top-1 rankings (open = smallest (ts_event, arrival), close = largest), then exact half-to-even VWAP; every
interval that is a multiple of it cascades from those bars (`bars_parts`: bar-rate work, not another tick-rate
pipeline per interval). Sources and
sinks are pluggable: `MemorySource` + `CollectSink` for tests; the stack's Kafka source and sinks live in
jobs/flink/kafka.py.

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

`plan` leaves the MARKED view (every tick + max_ts + late) on the environment: jobs/flink/samples_sql.py and
jobs/flink/job.py (the whole market job) build on it. TICK_COLUMNS carry the quote fields for them.
"""

from __future__ import annotations

import csv
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from pyflink.table import Table, TableEnvironment

from jobs.bars import BarsConfig
from market.columns import KIND_TRADE, TickColumns
from market.config import Config
from market.events import Bar
from market.timeutil import NS_PER_MS

TICKS = "ticks"
LATE = "late_rows"
SOURCE = "flink.bars"

MARKED = "ticks_marked"  # view: the ticks + max_ts (running max ts_event, arrival order) + late flag

# Columns every source provides (before the computed rowtime/proctime): arrival orders rows (in-memory row
# number, Kafka offset); kind is KIND_TRADE / KIND_QUOTE as in TickColumns. Trades leave bid..ask_size 0,
# quotes leave price and size 0 (as TickColumns does).
TICK_COLUMNS = ("arrival", "instrument_id", "kind", "ts_event", "ts_recv", "seq", "price", "size", "bid", "ask",
                "bid_size", "ask_size")
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
             "price BIGINT, size BIGINT, bid BIGINT, ask BIGINT, bid_size BIGINT, ask_size BIGINT")


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
                        cols.bid.tolist(), cols.ask.tolist(), cols.bid_size.tolist(), cols.ask_size.tolist(),
                        strict=True))


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
    """One interval from ticks: window aggregate + Top-1 open + Top-1 close, window-joined; exact VWAP."""
    return _vwap_select(_base_sql(trades, iv), iv)


def _base_sql(trades: str, iv: int) -> str:
    """Rows (bar_time, instrument_id, st, op, high, low, cl, volume, trades, ts_recv, pv, q0) of one interval from
    ticks. bar_time (the window_time, a time attribute through the window join) lets coarser windows cascade."""
    tvf = f"TABLE(TUMBLE(TABLE {trades}, DESCRIPTOR(rowtime), {sql_interval(iv // NS_PER_MS)}))"

    def top1(order: str) -> str:
        return f"""(SELECT * FROM (SELECT window_start, window_end, instrument_id, price, ROW_NUMBER() OVER (
      PARTITION BY window_start, window_end, instrument_id ORDER BY {order}) AS rn FROM {tvf}) WHERE rn = 1)"""

    agg = f"""(SELECT window_start, window_end, window_time, instrument_id, MIN(ts_event - MOD(ts_event, {iv})) AS st,
      MAX(price) AS high, MIN(price) AS low, SUM(size) AS volume, COUNT(*) AS trades, MAX(ts_recv) AS ts_recv,
      SUM(CAST(price AS DECIMAL(38, 0)) * size) AS pv
    FROM {tvf} GROUP BY window_start, window_end, window_time, instrument_id)"""
    return f"""SELECT a.window_time AS bar_time, a.instrument_id, a.st, o.price AS op, a.high, a.low,
    c.price AS cl, a.volume, a.trades, a.ts_recv, a.pv, CAST(FLOOR(a.pv / NULLIF(a.volume, 0)) AS DECIMAL(38, 0)) AS q0
  FROM {agg} a
  JOIN {top1("ts_event ASC, arrival ASC")} o
    ON a.window_start = o.window_start AND a.window_end = o.window_end AND a.instrument_id = o.instrument_id
  JOIN {top1("ts_event DESC, arrival DESC")} c
    ON a.window_start = c.window_start AND a.window_end = c.window_end AND a.instrument_id = c.instrument_id"""


# open/close of a cascaded window = the op of its first base bar / the cl of its last: MIN/MAX of
# (index of the base bar in the window) * 10^20 + (price + 2^63), exact in DECIMAL(38, 0) (the index has < 18 digits)
_SHIFT = f"CAST('{2**63}' AS DECIMAL(38, 0))"  # literals beyond BIGINT must be cast
_SLOT = f"CAST('{10**20}' AS DECIMAL(38, 0))"


def _cascade_sql(base: str, base_iv: int, iv: int) -> str:
    """One coarser interval (a multiple of base_iv) from the base interval's rows: the kernel puts the same
    trades in every interval (a late row updates none), so high/low/volume/trades/pv/ts_recv combine and open /
    close are those of the first / last base bar by start. Bar-rate work instead of another tick-rate pipeline."""
    tvf = f"TABLE(TUMBLE(TABLE {base}, DESCRIPTOR(bar_time), {sql_interval(iv // NS_PER_MS)}))"

    def enc(px: str) -> str:
        idx = f"CAST(MOD(st, {iv}) / {base_iv} AS DECIMAL(38, 0))"
        return f"({idx} * {_SLOT} + (CAST({px} AS DECIMAL(38, 0)) + {_SHIFT}))"

    def dec(col: str) -> str:
        return f"CAST(MOD({col}, {_SLOT}) - {_SHIFT} AS BIGINT)"

    joined = f"""SELECT instrument_id, st, {dec("o_enc")} AS op, high, low, {dec("c_enc")} AS cl, volume, trades,
    ts_recv, pv, CAST(FLOOR(pv / NULLIF(volume, 0)) AS DECIMAL(38, 0)) AS q0
  FROM (SELECT instrument_id, MIN(st - MOD(st, {iv})) AS st, MIN({enc("op")}) AS o_enc, MAX({enc("cl")}) AS c_enc,
      MAX(high) AS high, MIN(low) AS low, SUM(volume) AS volume, SUM(trades) AS trades, MAX(ts_recv) AS ts_recv,
      SUM(pv) AS pv
    FROM {tvf} GROUP BY window_start, window_end, instrument_id)"""
    return _vwap_select(joined, iv)


def _vwap_select(joined: str, iv: int, extra: str = "") -> str:
    """BAR_COLUMNS (+ `extra` columns) from rows (instrument_id, st, op, high, low, cl, volume, trades, ts_recv,
    pv, q0 ~ pv/volume)."""
    # q0 may be off by one (decimal division rounds); one correction step gives floor, then round half to even
    floored = f"""SELECT *, q0 + d AS q, pv - (q0 + d) * volume AS r FROM (
    SELECT *, CASE WHEN pv - q0 * volume < 0 THEN -1 WHEN pv - q0 * volume >= volume THEN 1 ELSE 0 END AS d
    FROM ({joined}))"""
    return f"""SELECT instrument_id, CAST({iv} AS BIGINT) AS interval_ns, st AS `start`, op AS `open`, high, low,
    cl AS `close`, volume,
    CASE WHEN volume = 0 THEN cl ELSE CAST(q + CASE WHEN 2 * r > volume OR (2 * r = volume AND MOD(q, 2) <> 0)
      THEN 1 ELSE 0 END AS BIGINT) END AS vwap,
    trades, ts_recv{extra}
  FROM ({floored})"""


def first_emission_bars(t_env: TableEnvironment, config: BarsConfig, intervals_ns: Sequence[int]) -> Table:
    """BAR_COLUMNS + emit_key of each window's FIRST emission (the kernel's revision 0, what the bar-rate logic
    scores), for `intervals_ns`; needs `plan`'s MARKED view. A trade is *pre-due* when the watermark had not reached its
    window's end when it arrived (end > max_ts - out_of_orderness, max_ts including the trade: the kernel moves
    the watermark before applying a row). Revision 0 holds the pre-due trades; a window that came due empty is
    emitted on its first (non-late) trade alone. Due-ness only grows in arrival order, so pre-due trades all
    arrive before the others: Top-1 ranks pre-due trades first (open/close among them), else the first arrival.
    emit_key orders the emissions per (instrument, interval) as the kernel makes them: 2 * end for a window
    emitted when the watermark reached its end, 2 * (watermark at its first trade) + 1 for one that came due
    empty (emitted after every window whose end that watermark had reached, so the logic may find it late)."""
    ooo = config.out_of_orderness_ms * NS_PER_MS
    parts = []
    for iv in intervals_ns:
        view = f"trades_first_{iv}"
        t_env.execute_sql(f"""CREATE TEMPORARY VIEW {view} AS SELECT *,
  ts_event - MOD(ts_event, {iv}) + {iv} > max_ts - {ooo} AS pre
  FROM {MARKED} WHERE NOT late AND kind = {KIND_TRADE}""")
        parts.append(_first_bars_sql(view, iv, ooo))
    return t_env.sql_query("\nUNION ALL\n".join(parts))


def _first_bars_sql(trades: str, iv: int, ooo: int) -> str:
    tvf = f"TABLE(TUMBLE(TABLE {trades}, DESCRIPTOR(rowtime), {sql_interval(iv // NS_PER_MS)}))"

    def top1(order: str) -> str:
        return f"""(SELECT * FROM (SELECT window_start, window_end, instrument_id, price, size, ts_recv, max_ts,
      ROW_NUMBER() OVER (PARTITION BY window_start, window_end, instrument_id ORDER BY {order}) AS rn
      FROM {tvf}) WHERE rn = 1)"""

    agg = f"""(SELECT window_start, window_end, instrument_id, MIN(ts_event - MOD(ts_event, {iv})) AS st,
      COUNT(*) FILTER (WHERE pre) AS npre, MAX(price) FILTER (WHERE pre) AS high,
      MIN(price) FILTER (WHERE pre) AS low, SUM(size) FILTER (WHERE pre) AS volume,
      SUM(CAST(price AS DECIMAL(38, 0)) * size) FILTER (WHERE pre) AS pv, MAX(ts_recv) FILTER (WHERE pre) AS ts_recv
    FROM {tvf} GROUP BY window_start, window_end, instrument_id)"""
    # no pre-due trade: open = close = the first arrival, which alone is the bar
    pre_first = "CASE WHEN pre THEN 0 ELSE 1 END ASC"
    pre_ts = "CASE WHEN pre THEN ts_event ELSE 0 END"
    joined = f"""SELECT a.instrument_id, a.st, o.price AS op, c.price AS cl,
    CASE WHEN a.npre > 0 THEN a.high ELSE o.price END AS high,
    CASE WHEN a.npre > 0 THEN a.low ELSE o.price END AS low,
    CASE WHEN a.npre > 0 THEN a.volume ELSE o.size END AS volume,
    CASE WHEN a.npre > 0 THEN a.npre ELSE 1 END AS trades,
    CASE WHEN a.npre > 0 THEN a.pv ELSE CAST(o.price AS DECIMAL(38, 0)) * o.size END AS pv,
    CASE WHEN a.npre > 0 THEN a.ts_recv ELSE o.ts_recv END AS ts_recv,
    CASE WHEN a.npre > 0 THEN 2 * (a.st + {iv}) ELSE 2 * (o.max_ts - {ooo}) + 1 END AS emit_key
  FROM {agg} a
  JOIN {top1(f"{pre_first}, {pre_ts} ASC, arrival ASC")} o
    ON a.window_start = o.window_start AND a.window_end = o.window_end AND a.instrument_id = o.instrument_id
  JOIN {top1(f"{pre_first}, {pre_ts} DESC, CASE WHEN pre THEN arrival ELSE -arrival END DESC")} c
    ON a.window_start = c.window_start AND a.window_end = c.window_end AND a.instrument_id = c.instrument_id"""
    return _vwap_select(f"SELECT *, CAST(FLOOR(pv / NULLIF(volume, 0)) AS DECIMAL(38, 0)) AS q0 FROM ({joined})", iv,
                        ", emit_key")


def bars_parts(t_env: TableEnvironment, trades: str, intervals_ns: Sequence[int]) -> list[str]:
    """SQL per interval (BAR_COLUMNS). Ticks feed one pipeline, of the smallest interval; every interval that is a
    multiple of it cascades from its bars (view `bars_base`); any other interval is computed from the ticks."""
    base_iv = min(intervals_ns)
    t_env.execute_sql(f"CREATE TEMPORARY VIEW bars_base AS {_base_sql(trades, base_iv)}")
    return [_vwap_select("SELECT * FROM bars_base", iv) if iv == base_iv
            else _cascade_sql("bars_base", base_iv, iv) if iv % base_iv == 0
            else _bars_sql(trades, iv) for iv in intervals_ns]


@dataclass(frozen=True)
class BarsTables:
    t_env: TableEnvironment
    bars: Table  # BAR_COLUMNS, all intervals, append-only (one row per window with trades)
    late: Table  # TICK_COLUMNS of the late rows, in arrival order


def plan(t_env: TableEnvironment, source: TickSource, config: BarsConfig) -> BarsTables:
    source.register(t_env, TICKS, watermark_lag_ms(config))
    t_env.execute_sql(f"""CREATE TEMPORARY VIEW {MARKED} AS SELECT *, ({_late_expr(config)}) AS late FROM (
  SELECT *, MAX(ts_event) OVER (ORDER BY proc ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS max_ts
  FROM {TICKS})""")
    t_env.execute_sql(f"""CREATE TEMPORARY VIEW trades_on_time AS
  SELECT * FROM {MARKED} WHERE NOT late AND kind = {KIND_TRADE}""")
    bars = t_env.sql_query("\nUNION ALL\n".join(bars_parts(t_env, "trades_on_time", config.intervals_ns)))
    cols = ", ".join(TICK_COLUMNS)
    late = t_env.sql_query(f"SELECT {cols} FROM {MARKED} WHERE late")
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
    bid: int
    ask: int
    bid_size: int
    ask_size: int


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

