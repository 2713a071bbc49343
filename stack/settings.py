"""One frozen settings object for the stack: where every service listens and where its data lives.

Defaults run everything on 127.0.0.1 with non-standard ports (no clash with a system Kafka/PostgreSQL/
Redis). Environment variables override the client addresses and the state dir; `for_state_dir` builds a
private stack (tests, benchmarks) on the given ports.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from pathlib import Path

import msgspec

from market.config import Config

ENV_KAFKA_BOOTSTRAP = "COMMODEX_KAFKA_BOOTSTRAP"
ENV_PG_DSN = "COMMODEX_PG_DSN"
ENV_REDIS_URL = "COMMODEX_REDIS_URL"
ENV_CLICKHOUSE_DSN = "COMMODEX_CLICKHOUSE_DSN"
ENV_STATE_DIR = "COMMODEX_STATE_DIR"
ENV_CACHE_DIR = "COMMODEX_CACHE_DIR"

DEFAULT_STATE_DIR = ".commodex/stack"
SAVED_NAME = "settings.json"  # what `up` ran with: status/down of that state dir use it


class StackSettings(Config, frozen=True):
    """Every field is resolved (no "" placeholders): build with `load_settings()` or `for_state_dir()`."""

    host: str = "127.0.0.1"
    kafka_port: int = 19092
    kafka_controller_port: int = 19093
    postgres_port: int = 15432
    redis_port: int = 16379
    state_dir: str = DEFAULT_STATE_DIR
    cache_dir: str = "~/.cache/commodex"  # resolved Kafka jars live here, shared by every state dir
    kafka_bootstrap: str = "127.0.0.1:19092"
    pg_dsn: str = "postgresql://commodex@127.0.0.1:15432/commodex"
    redis_url: str = "redis://127.0.0.1:16379/0"
    clickhouse_dsn: str = "chdb://.commodex/stack/chdb"
    clickhouse_database: str = "commodex"
    pg_user: str = "commodex"
    pg_database: str = "commodex"
    kafka_version: str = "4.2.0"
    log4j_version: str = "2.25.3"
    kafka_heap_mb: int = 512
    topic_namespace: str = ""  # prefix on every topic name (isolates runs sharing one broker); "" in production
    start_timeout_s: float = 90.0

    def __post_init__(self) -> None:
        ports = [self.kafka_port, self.kafka_controller_port, self.postgres_port, self.redis_port]
        if len(set(ports)) != len(ports) or not all(0 < p < 65536 for p in ports):
            raise ValueError(f"ports must be distinct and in 1..65535, got {ports}")
        if self.kafka_heap_mb < 128:
            raise ValueError("kafka_heap_mb must be >= 128")

    @property
    def state_path(self) -> Path:
        return Path(self.state_dir).expanduser().resolve()

    @property
    def cache_path(self) -> Path:
        return Path(self.cache_dir).expanduser().resolve()

    def replace(self, **changes: object) -> StackSettings:
        return msgspec.structs.replace(self, **changes)


def _derived(host: str, kafka_port: int, postgres_port: int, redis_port: int, state: Path, pg_user: str,
             pg_database: str) -> dict[str, str]:
    return {
        "kafka_bootstrap": f"{host}:{kafka_port}",
        "pg_dsn": f"postgresql://{pg_user}@{host}:{postgres_port}/{pg_database}",
        "redis_url": f"redis://{host}:{redis_port}/0",
        "clickhouse_dsn": f"chdb://{state / 'chdb'}",
    }


def load_settings(env: Mapping[str, str] | None = None, **overrides: object) -> StackSettings:
    """Defaults, then the COMMODEX_* environment variables, then explicit `overrides` (CLI flags, tests).

    Client addresses given neither way are derived from host, ports and state dir."""
    env = os.environ if env is None else env
    base = StackSettings()
    fields = {f: getattr(base, f) for f in StackSettings.__struct_fields__}
    from_env = {name: env[var] for name, var in (
        ("state_dir", ENV_STATE_DIR), ("cache_dir", ENV_CACHE_DIR), ("kafka_bootstrap", ENV_KAFKA_BOOTSTRAP),
        ("pg_dsn", ENV_PG_DSN), ("redis_url", ENV_REDIS_URL), ("clickhouse_dsn", ENV_CLICKHOUSE_DSN),
    ) if env.get(var)}
    fields.update(from_env)
    fields.update(overrides)
    state = Path(str(fields["state_dir"])).expanduser().resolve()
    fields["state_dir"] = str(state)
    derived = _derived(str(fields["host"]), int(fields["kafka_port"]),  # type: ignore[call-overload]
                       int(fields["postgres_port"]), int(fields["redis_port"]),  # type: ignore[call-overload]
                       state, str(fields["pg_user"]), str(fields["pg_database"]))
    for name, value in derived.items():
        if name not in overrides and name not in from_env:
            fields[name] = value
    return msgspec.convert(fields, StackSettings)


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """n distinct ports free right now (bound to port 0 and released; a private stack's ports)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def for_state_dir(state_dir: str | Path, ports: list[int] | None = None, **overrides: object) -> StackSettings:
    """A private stack under `state_dir` on the given (default: free) ports; the environment is ignored
    except COMMODEX_CACHE_DIR, so the jar cache stays shared."""
    kp, cp, pp, rp = ports if ports is not None else free_ports(4)
    env = {ENV_CACHE_DIR: os.environ[ENV_CACHE_DIR]} if os.environ.get(ENV_CACHE_DIR) else {}
    return load_settings(env, state_dir=str(state_dir), kafka_port=kp, kafka_controller_port=cp,
                         postgres_port=pp, redis_port=rp, **overrides)


def save_settings(settings: StackSettings) -> Path:
    path = settings.state_path / SAVED_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(msgspec.json.encode(settings))
    return path


def saved_settings(state_dir: str | Path) -> StackSettings | None:
    """The settings a stack in `state_dir` was brought up with, or None if it never was."""
    path = Path(state_dir).expanduser().resolve() / SAVED_NAME
    if not path.exists():
        return None
    return msgspec.json.decode(path.read_bytes(), type=StackSettings)
