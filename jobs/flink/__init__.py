"""The Flink runtime's tick-rate part: OHLCV bars in Flink SQL, kept identical to `jobs.bars.BarAggregator`.

Importing this package does not import pyflink; `jobs.flink.runtime` and `jobs.flink.bars_sql` do (they need
the separate Flink virtualenv, see flink-conf/README.md).
"""
