"""The scale-out stack: Kafka, PostgreSQL, Redis (and ClickHouse through chdb or a server) around the same jobs.

`stack.settings` holds every address; `stack.services` starts and stops local services under one state
dir; `stack.kafka_io`, `stack.pg_store`, `stack.sinks` and `stack.redis_live` connect the jobs to them.
"""
