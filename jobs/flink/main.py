"""Run the Flink market job on Kafka: `python -m jobs.flink.main --bootstrap HOST:PORT --ticks-topic T ...`.

One process = one job on a local Flink mini-cluster (what `flink run` would submit to a cluster). It reads the
validated ticks topic, computes bars (and signals, when `jobs.flink.job.plan_market` exists) and writes every
output to Kafka (jobs/flink/kafka.py). Progress goes to stdout as JSON lines (`stack.flink_runner` reads them):
{"event": "submitted", "job_id": ...} once the job runs, {"event": "finished", ...} when a bounded job ends.

Checkpoints: with --checkpoint-dir they are taken every --checkpoint-interval-ms and retained when the job is
cancelled or killed (<dir>/<job_id>/chk-N); --restore PATH starts from one of them (same job graph: same SQL).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from collections.abc import Sequence

import msgspec
from pyflink.common import Configuration
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.table import EnvironmentSettings, StatementSet, StreamTableEnvironment

from jobs.bars import BarsConfig
from jobs.flink import bars_sql
from jobs.flink.kafka import (
    KafkaOutputs,
    KafkaTickSource,
    OutputTopics,
    bar_rows,
    dead_letter_rows,
    late_rows,
    signal_rows,
)
from jobs.flink.runtime import FlinkSettings, jars_in
from market import topics
from market.instruments import default_registry

TICKS = "ticks"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m jobs.flink.main", description=__doc__.split("\n")[0])
    p.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers")
    p.add_argument("--namespace", default="", help="prefix of every topic name (stack.kafka_io.Topics)")
    p.add_argument("--ticks-topic", default="", help="default: <namespace>md.ticks")
    p.add_argument("--group-id", default="commodex-flink")
    p.add_argument("--start-offset", type=int, default=-1, help="offset of the ticks topic to start at "
                                                                   "(default: the earliest)")
    p.add_argument("--bounded", action="store_true", help="stop at the ticks topic's end as of the job start")
    p.add_argument("--job", choices=["auto", "bars", "market"], default="auto",
                   help="bars: bars + late ticks only; market: + signals (jobs.flink.job); auto: market if present")
    p.add_argument("--jar-dir", required=True, help="connector jars (flink-conf/resolve_jars.sh)")
    p.add_argument("--checkpoint-dir", default="", help="default: a temporary dir (exactly-once needs checkpoints)")
    p.add_argument("--checkpoint-interval-ms", type=int, default=1000)
    p.add_argument("--restore", default="", help="a retained checkpoint (chk-N dir) to start from")
    p.add_argument("--delivery", choices=["exactly-once", "at-least-once"], default="exactly-once")
    p.add_argument("--transactional-id-prefix", default="commodex-flink")
    p.add_argument("--transaction-timeout-ms", type=int, default=600_000,
                   help="Kafka transaction timeout (>= the checkpoint interval, <= the broker's max)")
    p.add_argument("--watermark-interval-ms", type=int, default=200)
    p.add_argument("--buffer-timeout-ms", type=int, default=10, help="network buffer flush interval (latency)")
    p.add_argument("--python-bundle-time-ms", type=int, default=50, help="Python operator bundle time (latency)")
    p.add_argument("--bars-config", default="{}", help="BarsConfig as JSON (default: the embedded defaults)")
    p.add_argument("--job-name", default="commodex-market")
    return p.parse_args(argv)


def _emit(event: str, **fields: object) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def market_job_available() -> bool:
    return importlib.util.find_spec("jobs.flink.job") is not None


def plan(t_env: StreamTableEnvironment, args: argparse.Namespace, bars: BarsConfig) -> tuple[StatementSet, str]:
    """Plan source -> job -> Kafka sink on t_env; returns the statement set and which job it is."""
    names = OutputTopics(args.namespace)
    source = KafkaTickSource(args.ticks_topic or args.namespace + topics.TICKS, args.bootstrap, args.group_id,
                             bounded=args.bounded, instrument_ids=tuple(default_registry().ids),
                             start_offset=args.start_offset)
    kind = args.job if args.job != "auto" else ("market" if market_job_available() else "bars")
    if kind == "market":
        from jobs.flink import job as market  # bars, late ticks and signals (late ticks in its dead letters)
        from jobs.pipeline import PipelineConfig

        tables = market.plan_market(t_env, source, market.FlinkMarketConfig(pipeline=PipelineConfig(bars=bars)))
        t_env.create_temporary_view("bars_out", tables.bars)
        t_env.create_temporary_view("signals_out", tables.signals)
        t_env.create_temporary_view("job_dead_letters", tables.dead_letters)
        parts = [signal_rows("signals_out", names), dead_letter_rows("job_dead_letters", names)]
    else:
        t_env.create_temporary_view("bars_out", bars_sql.plan(t_env, source, bars).bars)
        parts = [late_rows(bars_sql.MARKED, names)]
    t_env.create_temporary_view("source_rejects", source.rejects(t_env, TICKS))
    parts += [bar_rows(bars.intervals_ns, names), dead_letter_rows("source_rejects", names)]
    outputs = KafkaOutputs(args.bootstrap, names, exactly_once=args.delivery == "exactly-once",
                           transactional_id_prefix=args.transactional_id_prefix,
                           transaction_timeout_ms=args.transaction_timeout_ms)
    stmts = t_env.create_statement_set()
    outputs.add(stmts, t_env, parts, bars.intervals_ns)
    return stmts, kind


def create_env(settings: FlinkSettings, extra: dict[str, str]) -> StreamTableEnvironment:
    """runtime.create_stream_table_env plus `extra` options, set before the environment exists (the restore path
    and checkpoint retention must be in the configuration the job is submitted with)."""
    conf = Configuration()
    options = {**settings.options(), **extra}
    for key, value in options.items():
        conf.set_string(key, value)
    conf.set_string("python.executable", sys.executable)  # Python operators run in this venv
    conf.set_string("python.client.executable", sys.executable)
    env = StreamExecutionEnvironment.get_execution_environment(conf)
    env.set_parallelism(settings.parallelism)
    t_env = StreamTableEnvironment.create(env, EnvironmentSettings.in_streaming_mode())
    t_conf = t_env.get_config()
    for key, value in options.items():
        t_conf.set(key, value)
    return t_env


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    bars = msgspec.json.decode(args.bars_config.encode(), type=BarsConfig)
    tmp = None
    if not args.checkpoint_dir:
        tmp = tempfile.TemporaryDirectory(prefix="commodex-flink-chk-")
        args.checkpoint_dir = tmp.name
    settings = FlinkSettings(parallelism=1, checkpoint_dir=args.checkpoint_dir,
                             checkpoint_interval_ms=args.checkpoint_interval_ms, jars=jars_in(args.jar_dir),
                             watermark_interval_ms=args.watermark_interval_ms, job_name=args.job_name,
                             buffer_timeout_ms=args.buffer_timeout_ms, python_bundle_time_ms=args.python_bundle_time_ms)
    # a killed or cancelled job leaves its checkpoints for a restart (--restore)
    extra = {"execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
             "execution.checkpointing.num-retained": "3"}
    if args.restore:
        extra["execution.state-recovery.path"] = args.restore
    t0 = time.perf_counter()
    t_env = create_env(settings, extra)
    stmts, kind = plan(t_env, args, bars)
    result = stmts.execute()
    client = result.get_job_client()
    job_id = str(client.get_job_id()) if client is not None else ""
    _emit("submitted", job_id=job_id, job=kind, checkpoint_dir=args.checkpoint_dir, restore=args.restore,
          plan_s=round(time.perf_counter() - t0, 3))
    t1 = time.perf_counter()
    result.wait()  # a bounded job ends at the topic's end; an unbounded one runs until killed
    _emit("finished", job_id=job_id, run_s=round(time.perf_counter() - t1, 3))
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
