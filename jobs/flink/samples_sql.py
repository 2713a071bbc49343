"""Tick-rate half of `jobs.tickchecks` in Flink SQL: what the bar-rate Python functions (jobs/flink/signals.py)
need, reduced from ticks to a few rows per instrument per second. Nothing here runs Python per tick.

Rules (jobs/tickchecks_kernel.py) and how they map, on the on-time rows of bars_sql's MARKED view (late rows
never reach the checker, as in jobs.pipeline):
- Sampling clock: the kernel samples when a row moves max(ts_event) into a new interval. The running max is
  bars_sql's `max_ts` (late rows never raise it: a late row is older than the max), so the row's clock epoch is
  `max_ts - MOD(max_ts, I)` and a row is a *trigger* when its epoch is larger than the previous row's (a 2-row
  OVER window). The sample of a trigger with epoch E holds each instrument's current quote as of the rows
  before it, i.e. the rows of epochs < E.
- Current quote = the quote with the largest (ts_event, arrival) so far. Per (1 s window of rowtime,
  instrument, epoch) a window Top-1 by (ts_event DESC, arrival DESC) keeps one candidate (`quote_tops`); the
  sampler folds the candidates of epochs < E by the same order. Those candidates all lie in windows ending at
  or before E, which fire once Flink's watermark reaches E - 1 ms: the sampler's event-time timer.
- CROSSED_MARKET: per instrument in arrival order (OVER on proctime), a quote is *effective* when its ts_event
  is the running max of the instrument's quote times (older quotes are ignored; a tie goes to the later
  arrival). An effective crossed quote raises the anomaly when the previous effective quote was not crossed:
  with C = running count of effective crossed quotes and C0 = C at the last effective uncrossed quote, that is
  C - C0 = 1 (C = 1 when there is none). Exact in SQL.
- TRADE_OUTSIDE_QUOTE: the current quote at a trade is the last effective quote (LAST_VALUE, which skips
  NULLs). SQL emits every trade outside an uncrossed current quote (`outside`); the cooldown (one per
  instrument per cooldown of event time, measured from the last *emitted* one) is recursive, so the keyed
  Python function applies it to these rare candidates in arrival order.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyflink.table import Table, TableEnvironment

from jobs.flink.bars_sql import MARKED, sql_interval
from jobs.tickchecks import TickChecksConfig
from market.columns import KIND_QUOTE, KIND_TRADE
from market.timeutil import NS_PER_MS

CLOCKED = "ticks_clocked"  # on-time rows + epoch + trigger flag
PER_INSTRUMENT = "ticks_current_quote"  # on-time rows + the instrument's current quote as of the row
QUOTES = "quotes_clocked"

QUOTE_TOP_COLUMNS = ("instrument_id", "epoch", "ts_event", "arrival", "bid", "ask", "bid_size", "ask_size")
TRIGGER_COLUMNS = ("epoch", "arrival", "ts_recv")
CHECK_COLUMNS = ("check_type", "instrument_id", "ts_event", "ts_recv", "arrival", "price", "bid", "ask", "ref_price",
                 "dist")
CROSSED = "crossed"
OUTSIDE = "outside"


@dataclass(frozen=True)
class TickCheckTables:
    quote_tops: Table  # QUOTE_TOP_COLUMNS, append-only (fired by the watermark)
    triggers: Table  # TRIGGER_COLUMNS, one row per sampling clock step, in arrival order
    checks: Table  # CHECK_COLUMNS: crossed anomalies and outside-quote candidates, in arrival order per instrument


def validate_config(config: TickChecksConfig, smallest_bar_interval_ns: int) -> None:
    """The quote windows must not drop a row the late filter kept: their end must not come before the end of
    the row's smallest bar window, so the sample interval is a multiple of the smallest bar interval."""
    interval = config.sample_interval_ms * NS_PER_MS
    if interval % smallest_bar_interval_ns:
        raise ValueError(f"sample_interval_ms {config.sample_interval_ms} must be a multiple of the smallest bar "
                         f"interval ({smallest_bar_interval_ns} ns) in Flink")


def plan_tickchecks(t_env: TableEnvironment, config: TickChecksConfig) -> TickCheckTables:
    """Needs bars_sql.plan's MARKED view on `t_env`."""
    iv = config.sample_interval_ms * NS_PER_MS
    t_env.execute_sql(f"""CREATE TEMPORARY VIEW {CLOCKED} AS SELECT *, cnt = 2 AND prev_epoch < epoch AS trig FROM (
  SELECT *, MIN(epoch) OVER w AS prev_epoch, COUNT(*) OVER w AS cnt FROM (
    SELECT *, max_ts - MOD(max_ts, {iv}) AS epoch FROM {MARKED})
  WINDOW w AS (ORDER BY proc ROWS BETWEEN 1 PRECEDING AND CURRENT ROW))
WHERE NOT late""")
    triggers = t_env.sql_query(f"SELECT epoch, arrival, ts_recv FROM {CLOCKED} WHERE trig")
    t_env.execute_sql(f"CREATE TEMPORARY VIEW {QUOTES} AS SELECT * FROM {CLOCKED} WHERE kind = {KIND_QUOTE}")
    tvf = f"TABLE(TUMBLE(TABLE {QUOTES}, DESCRIPTOR(rowtime), {sql_interval(config.sample_interval_ms)}))"
    cols = ", ".join(QUOTE_TOP_COLUMNS)
    quote_tops = t_env.sql_query(f"""SELECT {cols} FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start, window_end, instrument_id, epoch
                               ORDER BY ts_event DESC, arrival DESC) AS rn FROM {tvf})
WHERE rn = 1""")

    q = f"kind = {KIND_QUOTE}"
    t_env.execute_sql(f"""CREATE TEMPORARY VIEW {PER_INSTRUMENT} AS
SELECT *, cs > 0 AND cas > 0 AND cb > ca AS cur_crossed, (eff AND bid_size > 0 AND ask_size > 0 AND bid > ask) AS x
FROM (
  SELECT *,
    LAST_VALUE(CASE WHEN eff THEN bid END) OVER w AS cb, LAST_VALUE(CASE WHEN eff THEN ask END) OVER w AS ca,
    LAST_VALUE(CASE WHEN eff THEN bid_size END) OVER w AS cs,
    LAST_VALUE(CASE WHEN eff THEN ask_size END) OVER w AS cas,
    SUM(CASE WHEN eff AND bid_size > 0 AND ask_size > 0 AND bid > ask THEN 1 ELSE 0 END) OVER w AS c_crossed
  FROM (
    SELECT *, COALESCE({q} AND ts_event = qmax, FALSE) AS eff FROM (
      SELECT arrival, instrument_id, kind, ts_event, ts_recv, price, bid, ask, bid_size, ask_size, proc,
        MAX(CASE WHEN {q} THEN ts_event END) OVER w0 AS qmax
      FROM {CLOCKED}
      WINDOW w0 AS (PARTITION BY instrument_id ORDER BY proc ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)))
  WINDOW w AS (PARTITION BY instrument_id ORDER BY proc ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW))""")
    crossed = f"""SELECT '{CROSSED}' AS check_type, instrument_id, ts_event, ts_recv, arrival, price, bid, ask,
    ask AS ref_price, bid - ask AS dist
  FROM (
    SELECT *, MAX(CASE WHEN eff AND NOT x THEN c_crossed END) OVER w AS c0 FROM {PER_INSTRUMENT}
    WINDOW w AS (PARTITION BY instrument_id ORDER BY proc ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW))
  WHERE x AND c_crossed - COALESCE(c0, 0) = 1"""
    # the kernel checks the bid side first
    below = "cs > 0 AND price < cb"
    above = "cas > 0 AND price > ca"
    outside = f"""SELECT '{OUTSIDE}' AS check_type, instrument_id, ts_event, ts_recv, arrival, price, cb AS bid,
    ca AS ask,
    CASE WHEN {below} THEN cb ELSE ca END AS ref_price, CASE WHEN {below} THEN cb - price ELSE price - ca END AS dist
  FROM {PER_INSTRUMENT}
  WHERE kind = {KIND_TRADE} AND cb IS NOT NULL AND NOT cur_crossed AND (({below}) OR ({above}))"""
    checks = t_env.sql_query(f"{crossed}\nUNION ALL\n{outside}")
    return TickCheckTables(quote_tops, triggers, checks)
