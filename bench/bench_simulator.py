"""Simulator generation speed and tick-file ingest speed, each against a baseline measured in the same run."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from bench.common import Result, best_of
from feeds.tickfile import ingest, read_ticks, write_ticks
from market.codec import encode_many
from market.columns import TickColumns
from market.events import Event, Tick
from market.instruments import default_registry
from simulators.config import SimConfig
from simulators.live import wire_messages
from simulators.market import MarketGenerator, simulate

AREA = "simulator"


def run(quick: bool = False) -> list[Result]:
    reg = default_registry()
    repeat = 2 if quick else 3
    duration = 120 if quick else 600
    calm = SimConfig(duration_s=duration, rate_scale=10)
    table = simulate(calm)
    n = table.num_rows
    t_calm = best_of(lambda: simulate(calm), repeat)
    rng = np.random.default_rng(0)
    t_rng = best_of(lambda: rng.standard_normal(8 * n), repeat)
    out = [Result(AREA, "simulate calm (rate_scale 10)", n / t_calm, "ticks/s", "numpy: 8 normal draws per tick",
                  n / t_rng, notes=f"{n} ticks, {duration} s of market")]

    busy = SimConfig(duration_s=duration, rate_scale=10, scenarios=("crash", "spike", "arbitrage", "stale",
                                                                    "crossed", "dirty"))
    n_busy = simulate(busy).num_rows
    t_busy = best_of(lambda: simulate(busy), repeat)
    out.append(Result(AREA, "simulate every scenario", n_busy / t_busy, "ticks/s", "simulate calm", n / t_calm))
    crash600 = SimConfig(duration_s=600, scenarios=("crash",))
    out.append(Result(AREA, "simulate 600 s crash (rate_scale 1)", best_of(lambda: simulate(crash600), repeat), "s",
                      notes="brief: < 2 s"))

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ticks.parquet"
        write_ticks(table, path)
        t_read = best_of(lambda: read_ticks(path, reg), repeat)
        t_pq = best_of(lambda: pq.read_table(path), repeat)
    out.append(Result(AREA, "read_ticks parquet -> TickColumns", n / t_read, "rows/s", "pyarrow read_table only",
                      n / t_pq))
    t_ingest = best_of(lambda: ingest(table, reg), repeat)
    sample = ingest(table.slice(0, 50_000), reg).columns
    ticks: list[Tick] = [sample.row(i, reg) for i in range(len(sample))]
    t_obj = best_of(lambda: TickColumns.from_ticks(ticks, reg), repeat)
    out.append(Result(AREA, "ingest in-memory table", n / t_ingest, "rows/s", "TickColumns.from_ticks (objects)",
                      len(ticks) / t_obj))

    gen = MarketGenerator(SimConfig(duration_s=60))
    rows = next(gen.blocks())
    t_wire = best_of(lambda: wire_messages(rows, gen.names, gen.raw_messages), repeat)
    events: list[Event] = list(ticks[: len(rows)])
    t_enc = best_of(lambda: encode_many(events), repeat)
    out.append(Result(AREA, "live wire_messages", len(rows) / t_wire, "msgs/s", "codec.encode_many of ready ticks",
                      len(events) / t_enc))
    return out


if __name__ == "__main__":
    for r in run(quick=False):
        ratio = f"{r.ratio:.2f}x" if r.ratio else ""
        value = f"{r.value:14,.0f}" if r.value >= 100 else f"{r.value:14.3f}"
        print(f"{r.name:42s} {value} {r.unit:8s} {ratio:>8s} vs {r.baseline_name} {r.notes}")
