-- commodex core tables (PostgreSQL 15+). Applied once, in file-name order, by stack.pg_store.PgStore.migrate()
-- inside one transaction. Timestamps: bigint UTC nanoseconds. Prices: bigint fixed point, 9 decimals.
-- One file serves both layouts: TimescaleDB (hypertable + continuous aggregate) when the extension is
-- available on the server, native range partitioning by time otherwise.

DO $ext$
BEGIN
    -- the extension only loads when preloaded (shared_preload_libraries); installed alone it cannot be created
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')
       AND position('timescaledb' IN current_setting('shared_preload_libraries')) > 0 THEN
        CREATE EXTENSION IF NOT EXISTS timescaledb;
    END IF;
END
$ext$;

-- Bars: one row per (instrument, interval, window start) holding the latest revision. A late tick re-emits
-- a bar with revision + 1; the upsert keeps the highest revision, so re-delivery is a no-op.
DO $bars$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        CREATE TABLE IF NOT EXISTS bars (
            instrument_id text NOT NULL,
            interval_ns bigint NOT NULL,
            start bigint NOT NULL,
            open bigint NOT NULL,
            high bigint NOT NULL,
            low bigint NOT NULL,
            close bigint NOT NULL,
            volume bigint NOT NULL,
            vwap bigint NOT NULL,
            trades bigint NOT NULL,
            ts_event bigint NOT NULL,
            ts_recv bigint NOT NULL,
            revision integer NOT NULL,
            PRIMARY KEY (instrument_id, interval_ns, start)
        );
        -- integer time column: chunks of one day, and a "now" in ns for the aggregate's refresh window
        PERFORM create_hypertable('bars', 'start', chunk_time_interval => 86400000000000::bigint,
                                  if_not_exists => true);
        CREATE OR REPLACE FUNCTION commodex_now_ns() RETURNS bigint LANGUAGE sql STABLE
            AS $f$ SELECT (extract(epoch FROM now()) * 1000000000)::bigint $f$;
        PERFORM set_integer_now_func('bars', 'commodex_now_ns', replace_if_exists => true);
        -- hourly bars rolled up from 1-minute bars, maintained incrementally by TimescaleDB
        EXECUTE $cagg$
            CREATE MATERIALIZED VIEW IF NOT EXISTS bars_1h_from_1m WITH (timescaledb.continuous) AS
            SELECT instrument_id,
                   time_bucket(3600000000000::bigint, start) AS bucket_start,
                   first(open, start) AS open,
                   max(high) AS high,
                   min(low) AS low,
                   last(close, start) AS close,
                   sum(volume) AS volume,
                   sum(trades) AS trades
            FROM bars
            WHERE interval_ns = 60000000000
            GROUP BY instrument_id, time_bucket(3600000000000::bigint, start)
            WITH NO DATA
        $cagg$;
        PERFORM add_continuous_aggregate_policy('bars_1h_from_1m',
            start_offset => 604800000000000::bigint, end_offset => 3600000000000::bigint,
            schedule_interval => interval '5 minutes', if_not_exists => true);
    ELSE
        CREATE TABLE IF NOT EXISTS bars (
            instrument_id text NOT NULL,
            interval_ns bigint NOT NULL,
            start bigint NOT NULL,
            open bigint NOT NULL,
            high bigint NOT NULL,
            low bigint NOT NULL,
            close bigint NOT NULL,
            volume bigint NOT NULL,
            vwap bigint NOT NULL,
            trades bigint NOT NULL,
            ts_event bigint NOT NULL,
            ts_recv bigint NOT NULL,
            revision integer NOT NULL,
            PRIMARY KEY (instrument_id, interval_ns, start)
        ) PARTITION BY RANGE (start);
    END IF;
END
$bars$;

-- Monthly (UTC) partitions of the natively partitioned bars table, created on demand by the writer for the
-- window starts of each batch (no DEFAULT partition: a row outside every partition is an error, not a
-- silent catch-all that would block creating its month later). On a hypertable it does nothing.
CREATE OR REPLACE FUNCTION commodex_ensure_bar_partitions(lo_ns bigint, hi_ns bigint) RETURNS integer
LANGUAGE plpgsql AS $fn$
DECLARE
    m timestamp;
    last_m timestamp;
    part text;
    created integer := 0;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid
                   WHERE c.relname = 'bars' AND c.relnamespace = current_schema()::regnamespace) THEN
        RETURN 0;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('commodex_ensure_bar_partitions'));
    m := date_trunc('month', to_timestamp(floor(lo_ns::numeric / 1000000000)::double precision) AT TIME ZONE 'UTC');
    last_m := date_trunc('month', to_timestamp(floor(hi_ns::numeric / 1000000000)::double precision) AT TIME ZONE 'UTC');
    WHILE m <= last_m LOOP
        part := 'bars_p' || to_char(m, 'YYYYMM');
        IF NOT EXISTS (SELECT 1 FROM pg_class WHERE relname = part
                       AND relnamespace = current_schema()::regnamespace) THEN
            EXECUTE format('CREATE TABLE %I PARTITION OF bars FOR VALUES FROM (%s) TO (%s)', part,
                           (extract(epoch FROM m)::bigint * 1000000000),
                           (extract(epoch FROM m + interval '1 month')::bigint * 1000000000));
            created := created + 1;
        END IF;
        m := m + interval '1 month';
    END LOOP;
    RETURN created;
END
$fn$;

CREATE INDEX IF NOT EXISTS bars_interval_start ON bars (interval_ns, start);

-- Signals: the full codec JSON in `payload`; signal_id = blake2b-128 of the codec bytes (the same id the
-- ClickHouse store uses), so re-delivery collapses to one row. `instruments` lists every instrument a signal
-- concerns (both legs and the pair id for arbitrage).
CREATE TABLE IF NOT EXISTS signals (
    signal_id text PRIMARY KEY,
    kind text NOT NULL,
    instrument text NOT NULL,
    instruments text[] NOT NULL,
    ts_event bigint NOT NULL,
    ts_recv bigint NOT NULL,
    payload jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS signals_kind_time ON signals (kind, ts_event);
CREATE INDEX IF NOT EXISTS signals_instruments ON signals USING gin (instruments);

-- Dead letters: rejected inputs with their reason; dead_letter_id = blake2b-128 of the codec bytes.
CREATE TABLE IF NOT EXISTS dead_letters (
    dead_letter_id text PRIMARY KEY,
    source text NOT NULL,
    reason text NOT NULL,
    detail text NOT NULL,
    raw text NOT NULL,
    instrument_id text NOT NULL,
    ts_event bigint NOT NULL,
    ts_recv bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_letters_reason_time ON dead_letters (reason, ts_recv);
