"""Kafka in and out of the Flink job (Flink SQL Kafka connector, flink-conf/connectors.txt).

Source: the validated ticks topic (codec JSON `trade.v1` / `quote.v1`, one partition) read with the `raw`
format, one STRING per record, parsed field by field with JSON_VALUE. A record that is not a tick of a known
instrument becomes a dead-letter row with its reason (malformed / unknown_instrument) instead of failing the
job (the `json` format) or vanishing ('json.ignore-parse-errors'). arrival = the record's offset.

Sinks: one Kafka table whose `topic` metadata column routes every output record (bars per interval, signals per
kind, late ticks, dead letters) to its `market.topics` name behind the run's namespace; value = codec JSON
built in SQL (so stack.sinks decodes it unchanged), key = instrument id, headers = wire version and record type
(as stack.kafka_io writes them). With `exactly_once` the sink writes in Kafka transactions committed at
checkpoints (consumers must read_committed, librdkafka's default); a restored job aborts the killed run's
open transactions by their id prefix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pyflink.table import StatementSet, Table, TableEnvironment

from jobs.flink.bars_sql import sql_interval
from market import topics
from market.codec import WIRE_VERSION
from market.columns import KIND_QUOTE, KIND_TRADE
from market.events import SignalKind
from market.rejects import DETAIL, Reason

SOURCE = "flink.kafka"  # DeadLetter.source of the records the source rejects
LATE_SOURCE = "bars"  # as the embedded pipeline: late dead letters are the same records
OUT_COLUMNS = ("topic", "k", "payload", "type")  # what every output row is turned into before the sink
# F1's plan_market: signals (kind, instrument_id, ts_event, payload) and dead letters (reason, ..., payload)
SIGNAL_COLUMNS = ("kind", "instrument_id", "ts_event", "payload")
DEAD_LETTER_COLUMNS = ("reason", "instrument_id", "ts_event", "payload")
QUOTE_COLUMNS = ("bid", "ask", "bid_size", "ask_size")  # extra source columns (NULL for trades)


def _q(s: str) -> str:
    """A SQL string literal."""
    return "'" + s.replace("'", "''") + "'"


def _jv(field: str) -> str:
    # JSON_VALUE cannot return BIGINT; a non-integer (1.5, "x", an object) casts to NULL = mistyped
    return f"TRY_CAST(JSON_VALUE(payload, '$.{field}' NULL ON EMPTY NULL ON ERROR) AS BIGINT)"


@dataclass(frozen=True)
class KafkaTickSource:
    """bars_sql.TickSource over the ticks topic (one partition). `bounded`: stop at the offsets that are the
    latest when the job starts (a replay); else read forever. `instrument_ids`: the registry; other ids are
    unknown_instrument dead letters (empty: no check)."""

    topic: str
    bootstrap: str
    group_id: str = "commodex-flink"
    bounded: bool = False
    instrument_ids: tuple[str, ...] = ()
    start_offset: int = -1  # -1: the earliest offset; else the offset of partition 0 to start at

    def register(self, t_env: TableEnvironment, name: str, watermark_lag_ms: int) -> None:
        opts = ["'scan.startup.mode' = 'earliest-offset'"] if self.start_offset < 0 else [
            "'scan.startup.mode' = 'specific-offsets'",
            f"'scan.startup.specific-offsets' = 'partition:0,offset:{self.start_offset}'"]
        if self.bounded:
            opts.append("'scan.bounded.mode' = 'latest-offset'")
        more = ", ".join(opts)
        # ts_event is NULL for a record that does not parse: COALESCE keeps the watermark expression defined;
        # such rows never reach a window (the view below drops them)
        t_env.execute_sql(f"""CREATE TEMPORARY TABLE {name}_raw (
  payload STRING,
  arrival BIGINT METADATA FROM 'offset' VIRTUAL,
  kafka_ts TIMESTAMP_LTZ(3) METADATA FROM 'timestamp' VIRTUAL,
  `type` AS JSON_VALUE(payload, '$.type' NULL ON EMPTY NULL ON ERROR),
  instrument_id AS JSON_VALUE(payload, '$.instrument_id' NULL ON EMPTY NULL ON ERROR),
  ts_event AS {_jv("ts_event")}, ts_recv AS {_jv("ts_recv")}, seq AS {_jv("seq")},
  price AS {_jv("price")}, size AS {_jv("size")},
  bid AS {_jv("bid")}, ask AS {_jv("ask")}, bid_size AS {_jv("bid_size")}, ask_size AS {_jv("ask_size")},
  rowtime AS TO_TIMESTAMP_LTZ(COALESCE({_jv("ts_event")}, 0) / 1000000, 3),
  proc AS PROCTIME(),
  WATERMARK FOR rowtime AS rowtime - {sql_interval(watermark_lag_ms)}
) WITH (
  'connector' = 'kafka', 'topic' = {_q(self.topic)}, 'properties.bootstrap.servers' = {_q(self.bootstrap)},
  'properties.group.id' = {_q(self.group_id)}, 'properties.isolation.level' = 'read_committed',
  'format' = 'raw', 'raw.charset' = 'UTF-8', {more}
)""")
        kind = f"CASE WHEN `type` = 'trade.v1' THEN {KIND_TRADE} ELSE {KIND_QUOTE} END"
        t_env.execute_sql(f"""CREATE TEMPORARY VIEW {name}_checked AS SELECT *, {self._reason_sql()} AS reason
  FROM {name}_raw""")
        # TickColumns' convention: a trade's quote fields and a quote's price/size are 0
        zeros = ", ".join(f"COALESCE({c}, CAST(0 AS BIGINT)) AS {c}" for c in ("price", "size", *QUOTE_COLUMNS))
        t_env.execute_sql(f"""CREATE TEMPORARY VIEW {name} AS SELECT arrival, instrument_id, {kind} AS kind,
  ts_event, ts_recv, COALESCE(seq, CAST(0 AS BIGINT)) AS seq, {zeros}, rowtime, proc, payload
  FROM {name}_checked WHERE reason = ''""")

    def _reason_sql(self) -> str:
        trade_ok = "price IS NOT NULL AND size IS NOT NULL"
        quote_ok = "bid IS NOT NULL AND ask IS NOT NULL AND bid_size IS NOT NULL AND ask_size IS NOT NULL"
        known = (f" WHEN instrument_id NOT IN ({', '.join(_q(i) for i in self.instrument_ids)})"
                 f" THEN {_q(Reason.UNKNOWN_INSTRUMENT.label)}") if self.instrument_ids else ""
        return f"""CASE
    WHEN payload IS NULL OR NOT (payload IS JSON OBJECT) THEN 'malformed: not a JSON object'
    WHEN `type` IS NULL OR `type` NOT IN ('trade.v1', 'quote.v1') THEN 'malformed: not a tick type'
    WHEN instrument_id IS NULL OR ts_event IS NULL OR ts_recv IS NULL THEN 'malformed: missing or mistyped field'
    WHEN `type` = 'trade.v1' AND NOT ({trade_ok}) THEN 'malformed: missing or mistyped trade field'
    WHEN `type` = 'quote.v1' AND NOT ({quote_ok}) THEN 'malformed: missing or mistyped quote field'{known}
    ELSE '' END"""

    def rejects(self, t_env: TableEnvironment, name: str) -> Table:
        """DEAD_LETTER_COLUMNS of the records `register` kept out of `name`, payload = codec `deadletter.v1`
        (raw = the record, detail names topic/offset, ts_recv = the Kafka timestamp)."""
        reason = "CASE WHEN reason LIKE 'malformed%' THEN 'malformed' ELSE reason END"
        detail = (f"CASE WHEN reason LIKE 'malformed%' THEN SUBSTRING(reason FROM 12) "
                  f"ELSE {_q(DETAIL[Reason.UNKNOWN_INSTRUMENT])} END || ' (' || {_q(self.topic)} || '[0]@' || "
                  "CAST(arrival AS STRING) || ')'")
        return t_env.sql_query(f"""SELECT r AS reason, iid AS instrument_id, te AS ts_event,
  JSON_OBJECT('type' VALUE 'deadletter.v1', 'source' VALUE {_q(SOURCE)}, 'reason' VALUE r, 'detail' VALUE d,
    'raw' VALUE COALESCE(payload, ''), 'ts_recv' VALUE tr, 'instrument_id' VALUE iid, 'ts_event' VALUE te) AS payload
FROM (SELECT {reason} AS r, {detail} AS d, COALESCE(instrument_id, '') AS iid, COALESCE(ts_event, 0) AS te,
    {_epoch_ns("kafka_ts")} AS tr, payload
  FROM {name}_checked WHERE reason <> '')""")


def _epoch_ns(col: str) -> str:
    """ns since the epoch of a TIMESTAMP_LTZ(3) column (ms precision): whole seconds by TIMESTAMPDIFF, plus the ms (MOD
    keeps them whether EXTRACT counts ms within the second or within the minute)."""
    return (f"(CAST(TIMESTAMPDIFF(SECOND, TO_TIMESTAMP_LTZ(0, 3), {col}) AS BIGINT) * 1000000000 + "
            f"CAST(MOD(EXTRACT(MILLISECOND FROM {col}), 1000) AS BIGINT) * 1000000)")


# -- outputs as (topic, key, payload) rows ------------------------------------------------------------------------


@dataclass(frozen=True)
class OutputTopics:
    """market.topics names behind a namespace prefix (stack.kafka_io.Topics without the Kafka client)."""

    namespace: str = ""

    def bars(self, interval_ns: int) -> str:
        return self.namespace + topics.bars(interval_ns)

    def signals(self, kind: str) -> str:
        return self.namespace + topics.signals(kind)

    @property
    def dlq(self) -> str:
        return self.namespace + topics.DLQ

    @property
    def late(self) -> str:
        return self.namespace + topics.LATE

    def all(self, intervals_ns: Sequence[int]) -> list[str]:
        """Every topic the job may write."""
        return [*(self.bars(iv) for iv in intervals_ns), *(self.signals(k.value) for k in SignalKind), self.dlq,
                self.late]


def bar_rows(intervals_ns: Sequence[int], names: OutputTopics) -> str:
    """SQL over view `bars_out` (bars_sql.BAR_COLUMNS) -> OUT_COLUMNS; payload = codec `bar.v1` (revision 0)."""
    topic = "CASE interval_ns " + " ".join(f"WHEN {iv} THEN {_q(names.bars(iv))}" for iv in intervals_ns) + " END"
    payload = ("JSON_OBJECT('type' VALUE 'bar.v1', 'instrument_id' VALUE instrument_id, 'interval_ns' VALUE "
               "interval_ns, 'start' VALUE `start`, 'open' VALUE `open`, 'high' VALUE high, 'low' VALUE low, "
               "'close' VALUE `close`, 'volume' VALUE volume, 'vwap' VALUE vwap, 'trades' VALUE trades, "
               "'ts_event' VALUE `start` + interval_ns, 'ts_recv' VALUE ts_recv, 'revision' VALUE 0)")
    return f"SELECT {topic} AS topic, instrument_id AS k, {payload} AS payload, 'bar.v1' AS `type` FROM bars_out"


def late_rows(marked: str, names: OutputTopics) -> str:
    """SQL over bars_sql's marked-ticks view (source columns + late flag) -> OUT_COLUMNS: each late tick as the
    embedded pipeline's LATE DeadLetter (jobs.bars.late_dead_letters: same source, detail and raw)."""
    payload = (f"JSON_OBJECT('type' VALUE 'deadletter.v1', 'source' VALUE {_q(LATE_SOURCE)}, 'reason' VALUE "
               f"{_q(Reason.LATE.label)}, 'detail' VALUE {_q(DETAIL[Reason.LATE] + ': ts_event ')} || "
               f"{_iso('ts_event')}, 'raw' VALUE payload, 'ts_recv' VALUE ts_recv, 'instrument_id' VALUE "
               "instrument_id, 'ts_event' VALUE ts_event)")
    return (f"SELECT {_q(names.late)} AS topic, instrument_id AS k, {payload} AS payload, 'deadletter.v1' AS `type` "
            f"FROM {marked} WHERE late")


def _iso(col: str) -> str:
    """market.timeutil.to_iso in SQL: 'YYYY-MM-DDTHH:MM:SS[.fffffffff]Z', trailing zeros of the ns dropped."""
    secs = f"DATE_FORMAT(TO_TIMESTAMP_LTZ({col} / 1000000000, 0), 'yyyy-MM-dd''T''HH:mm:ss')"
    frac = f"MOD({col}, 1000000000)"
    return (f"({secs} || CASE WHEN {frac} = 0 THEN '' ELSE '.' || "
            f"REGEXP_REPLACE(LPAD(CAST({frac} AS STRING), 9, '0'), '0+$', '') END || 'Z')")


def signal_rows(view: str, names: OutputTopics) -> str:
    """SQL over a SIGNAL_COLUMNS view -> OUT_COLUMNS (payload passed through)."""
    topic = "CASE kind " + " ".join(f"WHEN {_q(k.value)} THEN {_q(names.signals(k.value))}" for k in SignalKind)
    typ = "CASE kind " + " ".join(f"WHEN {_q(k.value)} THEN {_q(f'signal.{k.value}.v1')}" for k in SignalKind)
    return (f"SELECT {topic} ELSE {_q(names.dlq)} END AS topic, instrument_id AS k, payload, "
            f"{typ} ELSE 'unknown' END AS `type` FROM {view}")


def dead_letter_rows(view: str, names: OutputTopics) -> str:
    """SQL over a DEAD_LETTER_COLUMNS view -> OUT_COLUMNS: late ticks to the late topic, the rest to dlq."""
    return (f"SELECT CASE WHEN reason = {_q(Reason.LATE.label)} THEN {_q(names.late)} ELSE {_q(names.dlq)} END "
            f"AS topic, instrument_id AS k, payload, 'deadletter.v1' AS `type` FROM {view}")


@dataclass(frozen=True)
class KafkaOutputs:
    """The job's one Kafka sink. exactly_once: transactional writes committed at checkpoints (checkpointing
    must be on); else at-least-once (records visible at once: the latency mode)."""

    bootstrap: str
    names: OutputTopics
    exactly_once: bool = True
    transactional_id_prefix: str = "commodex-flink"
    transaction_timeout_ms: int = 600_000  # must stay below the broker's transaction.max.timeout.ms (15 min)
    linger_ms: int = 5

    def register(self, t_env: TableEnvironment, topic_names: Sequence[str], name: str = "kafka_out") -> str:
        if self.exactly_once:
            guarantee = (f"'sink.delivery-guarantee' = 'exactly-once', "
                         f"'sink.transactional-id-prefix' = {_q(self.transactional_id_prefix)}, "
                         f"'properties.transaction.timeout.ms' = '{self.transaction_timeout_ms}'")
        else:
            guarantee = "'sink.delivery-guarantee' = 'at-least-once'"
        # 'topic' lists every output topic; the writable `topic` metadata column routes each row to one of them
        t_env.execute_sql(f"""CREATE TEMPORARY TABLE {name} (
  topic STRING METADATA,
  headers MAP<STRING, BYTES> METADATA,
  k STRING,
  payload STRING
) WITH (
  'connector' = 'kafka', 'topic' = {_q(';'.join(topic_names))}, 'properties.bootstrap.servers' = {_q(self.bootstrap)},
  'key.format' = 'raw', 'key.fields' = 'k', 'value.format' = 'raw', 'value.fields-include' = 'EXCEPT_KEY',
  'properties.linger.ms' = '{self.linger_ms}', 'properties.enable.idempotence' = 'true',
  {guarantee}
)""")
        return name

    def insert_sql(self, name: str, rows_sql: str) -> str:
        headers = (f"MAP['commodex-wire-version', CAST('{WIRE_VERSION}' AS BYTES), "
                   "'commodex-type', CAST(`type` AS BYTES)]")
        return f"INSERT INTO {name} SELECT topic, {headers}, k, payload FROM ({rows_sql})"

    def add(self, stmts: StatementSet, t_env: TableEnvironment, parts: Sequence[str],
            intervals_ns: Sequence[int]) -> None:
        """One INSERT of the UNION ALL of the OUT_COLUMNS queries `parts` (one sink operator, one producer)."""
        name = self.register(t_env, self.names.all(intervals_ns))
        stmts.add_insert_sql(self.insert_sql(name, "\nUNION ALL\n".join(parts)))

