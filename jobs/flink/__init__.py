"""The Flink runtime: the same market pipeline as `jobs.pipeline`, as one PyFlink job.

- `bars_sql`: OHLCV bars in Flink SQL, kept identical to `jobs.bars.BarAggregator` (differential test);
- `samples_sql`: the tick-rate checks and the event-time quote sampling clock in SQL;
- `signals`: one keyed Python function wrapping the unchanged bar-rate logic classes (anomaly, crash, stale, arbitrage);
- `job`: `plan_market` / `build(source, sink, config)` composing them; `kafka`: Kafka source and sinks;
  `main`: the job process the stack submits (`python -m jobs.flink.main`).

Importing this package does not import pyflink; the modules above do (they need the separate Flink virtualenv,
see flink-conf/README.md).
"""
