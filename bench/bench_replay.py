"""Replay throughput through the whole signal pipeline (validate, bars, tick checks, arbitrage/anomaly/crash).

Same seeded market for both implementations: numba kernels vs the pure-Python references (ratio). The
market is dense (rate_scale 30: ~8k ticks/s over 11 instruments for 10 minutes, with a crash and an arbitrage
episode), pre-loaded in memory, fed in batches of 65,536 rows as `commodex replay --speed max` does.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from bench.common import Result, best_of
from feeds.tickfile import ingest, read_ticks, write_ticks
from jobs.pipeline import Pipeline, PipelineConfig
from market.columns import TickColumns
from market.instruments import default_registry
from simulators.config import SimConfig
from simulators.market import simulate

BATCH = 65_536


def _run(cols: TickColumns, config: PipelineConfig) -> int:
    p = Pipeline(config)
    signals = 0
    for a in range(0, len(cols), BATCH):
        signals += len(p.process(cols.take(slice(a, a + BATCH))).signals)
    signals += len(p.finish().signals)
    return signals


def run(quick: bool = False) -> list[Result]:
    reg = default_registry()
    scale = 3.0 if quick else 30.0
    table = simulate(SimConfig(scenarios=("calm", "crash", "arbitrage"), seed=1, duration_s=600, rate_scale=scale))
    cols = ingest(table, reg).columns
    n = len(cols)
    _run(cols.take(slice(0, 50_000)), PipelineConfig())  # JIT warm-up (cached after the first process)
    t_numba = best_of(lambda: _run(cols, PipelineConfig()), repeat=2 if quick else 3)
    ref_n = min(n, 60_000 if quick else 150_000)
    ref = cols.take(slice(0, ref_n))
    t_py = best_of(lambda: _run(ref, PipelineConfig(impl="python")), repeat=1)
    signals = _run(cols, PipelineConfig())
    rows = [
        Result("replay", f"pipeline ticks/s, numba ({n:,} ticks, {signals} signals)", n / t_numba, "ticks/s",
               f"pure-Python reference ({ref_n:,} ticks)", ref_n / t_py),
    ]
    # End to end as `commodex replay FILE --speed max --no-store` does it: Parquet read + edge checks + pipeline.
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "market.parquet"
        write_ticks(table, path)

        def e2e() -> None:
            _run(read_ticks(path, reg).columns, PipelineConfig())

        t0 = time.perf_counter()
        e2e()
        t_e2e = min(time.perf_counter() - t0, best_of(e2e, repeat=1 if quick else 2))
    rows.append(Result("replay", "file replay ticks/s (Parquet read + pipeline)", n / t_e2e, "ticks/s",
                       "pipeline alone (numba)", n / t_numba))
    return rows


if __name__ == "__main__":
    for r in run():
        print(r)
