-- commodex core tables (ClickHouse / chdb). Applied in file-name order by ClickHouseStore.migrate(),
-- inside the configured database (the client runs with that database selected, so names are unqualified).
-- Every statement is idempotent (IF NOT EXISTS). Timestamps: Int64 UTC nanoseconds; the *_time columns are
-- MATERIALIZED DateTime64(9, 'UTC') views of them for ad-hoc SQL. Prices: Int64 fixed point, 9 decimals.

-- Bars: one row per (instrument, interval, window start) and revision. A late tick re-emits the bar with
-- revision + 1; ReplacingMergeTree(revision) keeps the highest revision, and readers use FINAL so the
-- latest revision wins before background merges run. Re-inserting the same revision is a no-op.
CREATE TABLE IF NOT EXISTS bars
(
    instrument_id LowCardinality(String),
    interval_ns Int64,
    start Int64,
    open Int64,
    high Int64,
    low Int64,
    close Int64,
    volume Int64,
    vwap Int64,
    trades Int64,
    ts_event Int64,
    ts_recv Int64,
    revision UInt32,
    start_time DateTime64(9, 'UTC') MATERIALIZED fromUnixTimestamp64Nano(start, 'UTC')
)
ENGINE = ReplacingMergeTree(revision)
PARTITION BY toYYYYMM(fromUnixTimestamp64Nano(start, 'UTC'))
ORDER BY (instrument_id, interval_ns, start);

-- Signals: the full codec JSON in `payload`; signal_id = blake2b-128 of those bytes, so re-inserting the
-- same signal collapses to one row. `instruments` lists every instrument a signal concerns (both legs
-- and the pair id for arbitrage) so one filter finds it from either side.
CREATE TABLE IF NOT EXISTS signals
(
    signal_id String,
    kind LowCardinality(String),
    instrument LowCardinality(String),
    instruments Array(LowCardinality(String)),
    ts_event Int64,
    ts_recv Int64,
    payload String,
    ts_event_time DateTime64(9, 'UTC') MATERIALIZED fromUnixTimestamp64Nano(ts_event, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY (kind, instrument, ts_event, signal_id);

-- Dead letters: rejected inputs with their reason. dead_letter_id = blake2b-128 of the codec bytes, so a
-- replayed batch does not duplicate them.
CREATE TABLE IF NOT EXISTS dead_letters
(
    dead_letter_id String,
    source LowCardinality(String),
    reason LowCardinality(String),
    detail String,
    raw String,
    instrument_id LowCardinality(String),
    ts_event Int64,
    ts_recv Int64,
    ts_recv_time DateTime64(9, 'UTC') MATERIALIZED fromUnixTimestamp64Nano(ts_recv, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY (reason, ts_recv, dead_letter_id);

-- Raw ticks (optional archive, columnar insert from TickColumns). kind: 0 trade, 1 quote. Not deduplicated:
-- unsequenced ticks (seq = 0) have no natural key, so a replay into the same database appends again.
CREATE TABLE IF NOT EXISTS ticks
(
    instrument_id LowCardinality(String),
    kind Int8,
    ts_event Int64,
    ts_recv Int64,
    seq Int64,
    price Int64,
    size Int64,
    bid Int64,
    ask Int64,
    bid_size Int64,
    ask_size Int64,
    ts_event_time DateTime64(9, 'UTC') MATERIALIZED fromUnixTimestamp64Nano(ts_event, 'UTC')
)
ENGINE = MergeTree
PARTITION BY toYYYYMMDD(fromUnixTimestamp64Nano(ts_event, 'UTC'))
ORDER BY (instrument_id, ts_event, seq);
