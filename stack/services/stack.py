"""The whole local stack: up (each service healthy, topics and schema in place), down, status."""

from __future__ import annotations

from stack.services.base import ServiceStatus
from stack.services.kafka import KafkaService
from stack.services.postgres import PostgresService
from stack.services.redis import RedisService
from stack.settings import StackSettings, save_settings


class Stack:
    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self.redis = RedisService(settings)
        self.postgres = PostgresService(settings)
        self.kafka = KafkaService(settings)

    @property
    def services(self) -> list[KafkaService | PostgresService | RedisService]:
        return [self.kafka, self.postgres, self.redis]

    def up(self, topics: bool = True, schema: bool = True) -> list[ServiceStatus]:
        """Start what is not running (idempotent); returns only once every service answers. Then create the
        standard topics and apply the PostgreSQL schema (both idempotent)."""
        save_settings(self.settings)
        for svc in (self.redis, self.postgres, self.kafka):  # fastest first: a broken install fails early
            svc.up()
        if topics:
            from stack.kafka_io import Topics, ensure_topics

            ensure_topics(self.settings.kafka_bootstrap, Topics(self.settings.topic_namespace).standard())
        if schema:
            from stack.pg_store import PgStore

            with PgStore(self.settings.pg_dsn) as pg:
                pg.migrate()
        return self.status()

    def down(self) -> list[str]:
        """Stop every service this state dir started; returns the names stopped."""
        return [svc.name for svc in (self.kafka, self.postgres, self.redis) if svc.down()]

    def status(self) -> list[ServiceStatus]:
        return [*(svc.status() for svc in self.services), clickhouse_status(self.settings)]


def clickhouse_status(settings: StackSettings) -> ServiceStatus:
    """chdb runs inside whichever process opens it: there is no server to probe, only the engine version."""
    dsn = settings.clickhouse_dsn
    if dsn.startswith("chdb://"):
        import chdb

        return ServiceStatus("clickhouse", dsn, f"chdb {chdb.__version__} (engine {chdb.engine_version})",
                             running=False, healthy=True, detail="in-process: opened by the process that uses it")
    return ServiceStatus("clickhouse", dsn, "external", running=False, healthy=False, detail="not managed by the stack")
