"""Bars: the streaming BarAggregator (numba vs its Python reference) and the `commodex bars` batch kernel vs
polars `group_by_dynamic` on the same pre-sorted ticks. JIT compilation and polars warm-up happen before timing.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from bench.common import Result, best_of
from jobs.barfile import FileTicks, compute_bars
from jobs.bars import BarAggregator, BarsConfig
from market.columns import KIND_QUOTE, KIND_TRADE, TickColumns

AREA = "bars"
MS = 1_000_000
T0 = 1_700_000_000_000 * MS
P = 10**9
BATCH = 4096


def stream(n: int, n_inst: int, seed: int = 3) -> TickColumns:
    """Pre-sorted (event time = arrival order), ~1 kHz over n_inst instruments, 30 % quotes."""
    rng = np.random.default_rng(seed)
    c = TickColumns.empty(n)
    c.instrument[:] = rng.integers(0, n_inst, n)
    c.kind[:] = np.where(rng.random(n) < 0.3, KIND_QUOTE, KIND_TRADE)
    c.ts_event[:] = T0 + np.cumsum(rng.integers(0, 2 * MS, n))
    c.ts_recv[:] = c.ts_event + 50_000
    c.seq[:] = np.arange(1, n + 1)
    c.price[:] = 1800 * P + np.cumsum(rng.integers(-1, 2, n)) * (P // 10)
    c.size[:] = rng.integers(1, 50, n)
    return c


def file_ticks(n: int, n_inst: int, seed: int = 5) -> FileTicks:
    """Sorted by (instrument, ts): each instrument a random walk of trades over one trading day."""
    rng = np.random.default_rng(seed)
    inst = np.sort(rng.integers(0, n_inst, n)).astype(np.int32)
    ts = np.empty(n, dtype=np.int64)
    for k in range(n_inst):
        m = np.flatnonzero(inst == k)
        ts[m] = T0 + np.cumsum(rng.integers(0, 2 * 86_400_000 * MS // max(m.size, 1), m.size))
    walk = np.cumsum(rng.integers(-1, 2, n)) * (P // 100)
    walk -= walk[np.searchsorted(inst, inst)]  # each instrument's walk starts at its own base price
    price = (1000 + 50 * inst) * P + walk
    size = rng.integers(1, 100, n)
    return FileTicks([f"I{k:02d}" for k in range(n_inst)], inst, ts, price, size)


def polars_bars(df: pl.DataFrame) -> pl.DataFrame:
    return df.group_by_dynamic("ts", every="1m", group_by="instrument").agg(
        pl.col("price").first().alias("open"), pl.col("price").max().alias("high"),
        pl.col("price").min().alias("low"), pl.col("price").last().alias("close"),
        pl.col("size").sum().alias("volume"),
        ((pl.col("price") * pl.col("size")).sum() / pl.col("size").sum()).alias("vwap"),
        pl.len().alias("trades"),
    )


def run(quick: bool = False) -> list[Result]:
    scale = 10 if quick else 1
    n_nb, n_py, n_file = 5_000_000 // scale, 200_000 // scale, 10_000_000 // scale
    repeat = 2 if quick else 3
    results: list[Result] = []

    # 1) streaming: 4 intervals (1s, 1m, 5m, 1h), 11 instruments
    config, n_inst = BarsConfig(), 11
    c = stream(n_nb, n_inst)
    c_py = c.take(slice(0, n_py))
    BarAggregator(config, n_inst).on_batch(c.take(slice(0, 1000)))  # JIT warm-up
    t_py = best_of(lambda: BarAggregator(config, n_inst, "python").on_batch(c_py), 1)
    t_nb = best_of(lambda: BarAggregator(config, n_inst).on_batch(c), repeat)

    def batched() -> None:
        agg = BarAggregator(config, n_inst)
        for a in range(0, len(c), BATCH):
            agg.on_batch(c.take(slice(a, a + BATCH)))

    t_nb_b = best_of(batched, repeat)
    n_bars = len(BarAggregator(config, n_inst).on_batch(c))
    results.append(Result(AREA, "stream numba, 1 batch (4 intervals, 11 inst, 30% quotes)", n_nb / t_nb, "ticks/s",
                          "python reference", n_py / t_py, f"{n_nb:,} ticks numba / {n_py:,} python",
                          {"bars": float(n_bars)}))
    results.append(Result(AREA, f"stream numba, batches of {BATCH}", n_nb / t_nb_b, "ticks/s",
                          "python reference", n_py / t_py))

    # 2) batch `commodex bars` kernel vs polars group_by_dynamic, 1-minute OHLCV + VWAP + count, pre-sorted ticks
    n_inst_file = 20
    ft = file_ticks(n_file, n_inst_file)
    df = pl.DataFrame({
        "instrument": ft.instrument, "ts": pl.Series(ft.ts).cast(pl.Datetime("ns")),
        "price": ft.price / P, "size": ft.size,
    }).set_sorted("instrument")
    compute_bars(FileTicks(ft.names, ft.instrument[:1000], ft.ts[:1000], ft.price[:1000], ft.size[:1000]),
                 60_000 * MS)  # JIT warm-up
    polars_bars(df.head(1000))
    t_ours = best_of(lambda: compute_bars(ft, 60_000 * MS), repeat)
    t_pl = best_of(lambda: polars_bars(df), repeat)
    ours, theirs = compute_bars(ft, 60_000 * MS), polars_bars(df)
    # same bars (polars sorts by instrument then window start, as ours); polars' VWAP is float, not compared
    same = (len(ours) == theirs.height and np.array_equal(ours.volume, theirs["volume"].to_numpy())
            and np.array_equal(ours.trades, theirs["trades"].to_numpy())
            and np.allclose(ours.open / P, theirs["open"].to_numpy()) and np.allclose(ours.close / P,
                                                                                      theirs["close"].to_numpy()))
    if not same:
        raise AssertionError("commodex bars and polars disagree on the benchmark ticks")
    results.append(Result(AREA, "commodex bars batch kernel, 1m, 20 inst (exact fixed-point VWAP)",
                          n_file / t_ours, "ticks/s", f"polars group_by_dynamic ({pl.thread_pool_size()} threads)",
                          n_file / t_pl, f"{n_file:,} pre-sorted ticks", {"bars": float(len(ours))}))
    return results


if __name__ == "__main__":
    for r in run(quick=True):
        print(r, r.ratio)
