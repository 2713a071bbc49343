"""Create a Flink TableEnvironment from one frozen settings object (parallelism, checkpoints, connector jars)."""

from __future__ import annotations

import sys
from pathlib import Path

from pyflink.common import Configuration
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.table import EnvironmentSettings, StreamTableEnvironment, TableEnvironment

from market.config import Config


class FlinkSettings(Config, frozen=True):
    parallelism: int = 1  # bars equal the embedded kernel's only with one ordered input split (see bars_sql)
    checkpoint_dir: str = ""  # "" = checkpointing off; else a path or URI (file:///..., s3://...)
    checkpoint_interval_ms: int = 10_000
    jars: tuple[str, ...] = ()  # connector jars (absolute paths), e.g. from flink-conf/resolve_jars.sh
    watermark_interval_ms: int = 200  # periodic watermark emission; only latency depends on it, not results
    local_time_zone: str = "UTC"  # window boundaries are epoch-aligned in UTC, as in the embedded kernel
    state_backend: str = "hashmap"  # or "rocksdb" for state larger than the heap
    job_name: str = "commodex-bars"
    # Latency knobs (results never depend on them): a network buffer is sent when full or after buffer_timeout_ms
    # (Flink's default 100 ms, paid at every exchange of the plan); Python operators process a bundle of rows for
    # at most python_bundle_time_ms (Flink's default 1000 ms) before their output moves on.
    buffer_timeout_ms: int = 10
    python_bundle_time_ms: int = 50
    object_reuse: bool = True  # chained SQL operators pass rows without copying them

    def __post_init__(self) -> None:
        if self.parallelism < 1:
            raise ValueError("parallelism must be >= 1")
        if self.checkpoint_interval_ms <= 0:
            raise ValueError("checkpoint_interval_ms must be > 0")
        if self.buffer_timeout_ms < 0 or self.python_bundle_time_ms <= 0:
            raise ValueError("buffer_timeout_ms must be >= 0 and python_bundle_time_ms > 0")
        if self.watermark_interval_ms < 0:
            raise ValueError("watermark_interval_ms must be >= 0")
        for jar in self.jars:
            if not Path(jar).is_absolute():
                raise ValueError(f"jar paths must be absolute, got {jar!r}")

    def options(self) -> dict[str, str]:
        """The Flink configuration keys this object sets."""
        opts = {
            "parallelism.default": str(self.parallelism),
            "table.exec.resource.default-parallelism": str(self.parallelism),
            "pipeline.auto-watermark-interval": f"{self.watermark_interval_ms} ms",
            "table.local-time-zone": self.local_time_zone,
            "state.backend.type": self.state_backend,
            "pipeline.name": self.job_name,
            "execution.buffer-timeout.interval": f"{self.buffer_timeout_ms} ms",
            "python.fn-execution.bundle.time": str(self.python_bundle_time_ms),
            "pipeline.object-reuse": str(self.object_reuse).lower(),
        }
        if self.jars:
            opts["pipeline.jars"] = jar_urls(self.jars)
        if self.checkpoint_dir:
            opts["execution.checkpointing.interval"] = f"{self.checkpoint_interval_ms} ms"
            opts["execution.checkpointing.dir"] = _uri(self.checkpoint_dir)
            opts["execution.checkpointing.mode"] = "EXACTLY_ONCE"
        return opts


def _uri(path: str) -> str:
    return path if "://" in path else Path(path).resolve().as_uri()


def jar_urls(jars: tuple[str, ...] | list[str]) -> str:
    """pipeline.jars value: file URLs joined by ';'."""
    return ";".join(Path(j).as_uri() for j in jars)


def jars_in(cache_dir: str | Path) -> tuple[str, ...]:
    """Every jar resolve_jars.sh copied into `cache_dir`, sorted (absolute paths)."""
    d = Path(cache_dir).expanduser().resolve()
    if not d.is_dir():
        raise FileNotFoundError(f"no jar cache at {d}: run flink-conf/resolve_jars.sh {d}")
    return tuple(str(p) for p in sorted(d.glob("*.jar")))


def create_table_env(settings: FlinkSettings, streaming: bool = True) -> TableEnvironment:
    env_settings = (EnvironmentSettings.in_streaming_mode() if streaming
                    else EnvironmentSettings.in_batch_mode())
    t_env = TableEnvironment.create(env_settings)
    conf = t_env.get_config()
    for key, value in settings.options().items():
        conf.set(key, value)
    return t_env


def create_stream_table_env(settings: FlinkSettings) -> StreamTableEnvironment:
    """A StreamTableEnvironment (SQL + DataStream in one job) with the same options as create_table_env. Python
    DataStream workers run this interpreter (PyFlink's default, `python`, may lack the project's packages)."""
    conf = Configuration()
    for key, value in settings.options().items():
        conf.set_string(key, value)
    conf.set_string("python.executable", sys.executable)
    conf.set_string("python.client.executable", sys.executable)
    env = StreamExecutionEnvironment.get_execution_environment(conf)
    env.set_python_executable(sys.executable)
    env.set_parallelism(settings.parallelism)
    t_env = StreamTableEnvironment.create(env, EnvironmentSettings.in_streaming_mode())
    t_conf = t_env.get_config()
    for key, value in settings.options().items():
        t_conf.set(key, value)
    return t_env
