"""The market job in Flink: everything `jobs.pipeline.Pipeline` computes after validation (validation stays
before Flink, in the producer: its dead letters and SEQUENCE_GAP signals come from there).

    validated ticks (TickSource) -> bars_sql.plan: late filter + OHLCV bars (SQL)                 -> bars, late
                                 -> samples_sql: clock triggers, quote candidates, crossed, outside (SQL)
    UNION ALL of (one stream, signals.IN_COLUMNS) -> signals.MarketFunction -> `signals`, `dead_letters`
      bars of the anomaly/crash intervals         key instrument: BarAnomalyLogic, CrashLogic
      clock triggers + quote candidates           one key: sampler, StaleFeedLogic, ArbitrageLogic
      crossed + outside-quote candidates          key instrument: signals, outside-quote cooldown
      late rows                                   key instrument: LATE dead letters

Tick-rate work is SQL only; Python sees bars, per-second quote candidates and rare check rows. Equality with
the embedded pipeline (tests/test_flink_signals_differential.py, allowed lateness on, bars revised) holds for
one ordered input split (parallelism 1 / one Kafka partition). Flink SQL emits each bar once, final (= the
kernel's last revision); the logic scores first emissions (bars_sql.first_emission_bars), as the embedded
pipeline does. Bars' ts_recv differ (bars_sql), so signals/dead letters made from bars carry another ts_recv.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import msgspec
from pyflink.common import Types
from pyflink.table import StreamTableEnvironment, Table

from jobs.flink import bars_sql
from jobs.flink.bars_sql import BAR_COLUMNS, TICK_COLUMNS, BarRow, LateRow, TickSource
from jobs.flink.runtime import FlinkSettings, create_stream_table_env
from jobs.flink.samples_sql import CHECK_COLUMNS, QUOTE_TOP_COLUMNS, TRIGGER_COLUMNS, plan_tickchecks, validate_config
from jobs.flink.signals import (
    BAR,
    DEAD_LETTER,
    LATE,
    N_VALUES,
    OUT_TYPE,
    SAMPLER_KEY,
    SIGNAL,
    TOP,
    TRIGGER,
    MarketFunction,
    key_of,
)
from jobs.pipeline import PipelineConfig
from market.codec import decode
from market.config import Config
from market.events import Bar, DeadLetter, Signal
from market.timeutil import parse_interval

SIGNAL_COLUMNS = ("kind", "instrument_id", "ts_event", "payload")
DEAD_LETTER_COLUMNS = ("reason", "instrument_id", "ts_event", "payload")


class FlinkMarketConfig(Config, frozen=True):
    pipeline: PipelineConfig = msgspec.field(default_factory=PipelineConfig)  # validate/impl are not used here
    job_name: str = "commodex-market"


@dataclass(frozen=True)
class MarketTables:
    """All on one StreamTableEnvironment; every table is append-only."""

    t_env: StreamTableEnvironment
    bars: Table  # bars_sql.BAR_COLUMNS
    late: Table  # bars_sql.TICK_COLUMNS of the late rows
    signals: Table  # SIGNAL_COLUMNS: SignalKind value, instrument (pair id for arbitrage), ts_event, codec JSON
    dead_letters: Table  # DEAD_LETTER_COLUMNS: reason, instrument, ts_event, codec JSON of the DeadLetter


def _values(cols: list[str]) -> str:
    """cols as v0..v{N_VALUES-1} BIGINTs, NULL-padded."""
    vals = [f"CAST({c} AS BIGINT)" for c in cols] + ["CAST(NULL AS BIGINT)"] * (N_VALUES - len(cols))
    return ", ".join(f"{v} AS v{i}" for i, v in enumerate(vals))


def plan_market(t_env: StreamTableEnvironment, source: TickSource, config: FlinkMarketConfig) -> MarketTables:
    cfg = config.pipeline
    validate_config(cfg.tickchecks, min(cfg.bars.intervals_ns))
    bt = bars_sql.plan(t_env, source, cfg.bars)
    tc = plan_tickchecks(t_env, cfg.tickchecks)
    wanted_ns = sorted({parse_interval(cfg.anomaly.bar_interval), parse_interval(cfg.crash.bar_interval)})
    # the logic scores each window's first emission (revision 0) in the kernel's emission order (emit_key); with
    # allowed_lateness 0 these equal bt.bars, but one code path (the tested one) is worth the extra window operator
    scored = bars_sql.first_emission_bars(t_env, cfg.bars, wanted_ns)
    for name, table in (("m_bars_in", scored), ("m_late_in", bt.late), ("m_tops_in", tc.quote_tops),
                        ("m_triggers_in", tc.triggers), ("m_checks_in", tc.checks)):
        t_env.create_temporary_view(name, table)
    wanted = ", ".join(map(str, wanted_ns))
    bar_vals = [f"`{c}`" for c in BAR_COLUMNS[1:]] + ["emit_key"]
    inputs = t_env.sql_query(f"""
SELECT CAST('{BAR}' AS STRING) AS rec, instrument_id, {_values(bar_vals)} FROM m_bars_in WHERE interval_ns IN ({wanted})
UNION ALL SELECT '{TOP}', instrument_id, {_values(list(QUOTE_TOP_COLUMNS[1:]))} FROM m_tops_in
UNION ALL SELECT '{TRIGGER}', '{SAMPLER_KEY}', {_values(list(TRIGGER_COLUMNS))} FROM m_triggers_in
UNION ALL SELECT check_type, instrument_id, {_values(list(CHECK_COLUMNS[2:]))} FROM m_checks_in
UNION ALL SELECT '{LATE}', instrument_id, {_values([c for c in TICK_COLUMNS if c != "instrument_id"])}
  FROM m_late_in""")
    out = (t_env.to_data_stream(inputs)
           .key_by(key_of, key_type=Types.STRING())
           .process(MarketFunction(cfg), output_type=OUT_TYPE).name("market-signals"))
    t_env.create_temporary_view("logic_out", t_env.from_data_stream(out))
    signals = t_env.sql_query(f"SELECT kind, instrument_id, ts_event, payload FROM logic_out WHERE rec = '{SIGNAL}'")
    dead = t_env.sql_query(
        f"SELECT kind AS reason, instrument_id, ts_event, payload FROM logic_out WHERE rec = '{DEAD_LETTER}'")
    return MarketTables(t_env, bt.bars, bt.late, signals, dead)


# -- sinks ------------------------------------------------------------------------------------------------------


class MarketSink(Protocol):
    def write(self, tables: MarketTables, config: FlinkMarketConfig) -> object:
        """Run the job writing its tables; returns what the sink collected (or the job's TableResult)."""


@dataclass
class MarketResult:
    bars: list[BarRow] = field(default_factory=list)
    late: list[LateRow] = field(default_factory=list)  # arrival order
    signals: list[Signal] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)

    def bar_records(self) -> list[Bar]:
        return [b.to_bar() for b in self.bars]


class CollectMarketSink:
    """Collects every table into Python lists of records (bounded sources only: waits for the job to end). One
    job has one collect sink, so the four tables go out as one UNION ALL stream tagged by `rec`."""

    def write(self, tables: MarketTables, config: FlinkMarketConfig) -> MarketResult:
        t_env = tables.t_env
        for name, table in (("m_bars", tables.bars), ("m_late", tables.late), ("m_signals", tables.signals),
                            ("m_dead", tables.dead_letters)):
            t_env.create_temporary_view(name, table)

        def typed(expr: str, col: str) -> str:
            return f"CAST({expr} AS {'STRING' if col in ('instrument_id', 'payload') else 'BIGINT'})"

        bar_cols = ", ".join(typed(f"`{c}`", c) for c in BAR_COLUMNS)
        late_cols = ", ".join(typed(c, c) for c in TICK_COLUMNS)
        no_bar = ", ".join(typed("NULL", c) for c in BAR_COLUMNS)
        no_late = ", ".join(typed("NULL", c) for c in TICK_COLUMNS)
        union = t_env.sql_query(f"""SELECT 'bar' AS rec, {bar_cols}, {no_late}, CAST(NULL AS STRING) AS payload
  FROM m_bars
UNION ALL SELECT 'late', {no_bar}, {late_cols}, CAST(NULL AS STRING) FROM m_late
UNION ALL SELECT 'signal', {no_bar}, {no_late}, payload FROM m_signals
UNION ALL SELECT 'dead', {no_bar}, {no_late}, payload FROM m_dead""")
        out = MarketResult()
        nb, nt = len(BAR_COLUMNS), len(TICK_COLUMNS)
        with union.execute().collect() as rows:
            for row in rows:
                vals = list(row)
                rec = vals[0]
                if rec == "bar":
                    out.bars.append(BarRow(*vals[1:1 + nb]))
                elif rec == "late":
                    out.late.append(LateRow(*vals[1 + nb:1 + nb + nt]))
                elif rec == "signal":
                    sig = decode(vals[-1])
                    out.signals.append(sig)  # type: ignore[arg-type]
                else:
                    dl = decode(vals[-1])
                    assert isinstance(dl, DeadLetter)
                    out.dead_letters.append(dl)
        out.late.sort(key=lambda r: r.arrival)
        return out


# -- the job ----------------------------------------------------------------------------------------------------


@dataclass
class FlinkMarketJob:
    source: TickSource  # kept alive: a MemorySource's file must outlive the job
    tables: MarketTables
    sink: MarketSink
    config: FlinkMarketConfig

    def run(self) -> object:
        return self.sink.write(self.tables, self.config)


def build(source: TickSource, sink: MarketSink, config: FlinkMarketConfig | None = None,
          settings: FlinkSettings | None = None) -> FlinkMarketJob:
    """Plan the market job on a fresh StreamTableEnvironment (default settings: runtime.FlinkSettings())."""
    cfg = config or FlinkMarketConfig()
    t_env = create_stream_table_env(settings or FlinkSettings(job_name=cfg.job_name))
    return FlinkMarketJob(source, plan_market(t_env, source, cfg), sink, cfg)
