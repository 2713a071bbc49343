"""Per-tick stages before and beside the bars: edge conversion, validation, tick checks.

Each numba kernel is compared with its pure-Python reference on the same synthetic stream (the reference runs
on a prefix, the rate is per row). JIT compilation happens before timing.
"""

from __future__ import annotations

import numpy as np

from bench.common import Result, best_of
from jobs.edge import ingest_ticks
from jobs.tickchecks import TickChecker, TickChecksConfig
from jobs.validate import ValidateConfig, Validator
from market.columns import TickColumns
from market.instruments import default_registry

AREA = "tickstages"
MS = 1_000_000
T0 = 1_700_000_000_000 * MS
P = 10**9
BATCH = 4096


def stream(n: int, n_inst: int, seed: int = 7) -> TickColumns:
    """Replay-like: ~20k ticks/s over n_inst instruments, 60 % quotes, sequenced, ~1 % of each defect."""
    rng = np.random.default_rng(seed)
    c = TickColumns.empty(n)
    c.instrument[:] = rng.integers(0, n_inst, n)
    c.kind[:] = rng.random(n) < 0.6
    c.ts_event[:] = T0 + np.cumsum(rng.integers(0, 100_000, n)) - rng.integers(0, 20 * MS, n) * (rng.random(n) < 0.02)
    c.ts_recv[:] = c.ts_event + rng.integers(10_000, 500_000, n)
    c.ts_event[rng.random(n) < 0.005] += 10_000 * MS
    seq = np.zeros(n, dtype=np.int64)
    for k in range(n_inst):
        m = np.flatnonzero(c.instrument == k)
        seq[m] = np.arange(1, m.size + 1)
    dup = rng.random(n) < 0.01
    seq[dup] = np.maximum(seq[dup] - rng.integers(0, 10, dup.sum()), 1)
    c.seq[:] = seq
    mid = np.zeros(n, dtype=np.int64)
    for k in range(n_inst):
        m = np.flatnonzero(c.instrument == k)
        mid[m] = (50 + k) * P + np.cumsum(rng.integers(-1, 2, m.size)) * (P // 100)
    c.bid[:] = mid - P // 100
    c.ask[:] = mid + P // 100
    crossed = rng.random(n) < 0.005
    c.bid[crossed] = c.ask[crossed] + P // 100
    c.bid_size[:] = rng.integers(1, 10, n)
    c.ask_size[:] = rng.integers(1, 10, n)
    c.price[:] = mid + rng.integers(-2, 3, n) * (P // 100)
    c.size[:] = rng.integers(1, 20, n)
    c.size[rng.random(n) < 0.005] = 0
    return c


def _in_batches(fn, c: TickColumns, batch: int) -> None:  # type: ignore[no-untyped-def]
    for a in range(0, len(c), batch):
        fn(c.take(slice(a, a + batch)))


def run(quick: bool = False) -> list[Result]:
    reg = default_registry()
    n_inst = len(reg)
    n = 200_000 if quick else 2_000_000
    n_py = 50_000 if quick else 200_000
    repeat = 2 if quick else 3
    c = stream(n, n_inst)
    c_py = c.take(slice(0, n_py))
    vcfg, tcfg = ValidateConfig(), TickChecksConfig()

    # JIT warm-up (compile or load from cache) outside timing
    Validator(vcfg, n_inst).on_batch(c.take(slice(0, 100)))
    TickChecker(tcfg, n_inst).on_batch(c.take(slice(0, 100)))

    results: list[Result] = []
    t_py = best_of(lambda: Validator(vcfg, n_inst, "python").on_batch(c_py), 1)
    t_nb = best_of(lambda: Validator(vcfg, n_inst, "numba").on_batch(c), repeat)
    t_nb_b = best_of(lambda: _in_batches(Validator(vcfg, n_inst, "numba").on_batch, c, BATCH), repeat)
    out = Validator(vcfg, n_inst).on_batch(c)
    rej = float(1 - out.accepted.mean())
    results.append(Result(AREA, "validate numba, one batch", n / t_nb, "rows/s", "validate python reference",
                          n_py / t_py, notes=f"{n:,} rows, {rej:.1%} rejected, {out.n_gaps} gaps; python on "
                          f"first {n_py:,}"))
    results.append(Result(AREA, f"validate numba, batches of {BATCH}", n / t_nb_b, "rows/s",
                          "validate numba, one batch", n / t_nb))

    acc = c.take(out.accepted)
    acc_py = acc.take(slice(0, n_py))
    m = len(acc)
    t_py = best_of(lambda: TickChecker(tcfg, n_inst, "python").on_batch(acc_py), 1)
    t_nb = best_of(lambda: TickChecker(tcfg, n_inst, "numba").on_batch(acc), repeat)
    t_nb_b = best_of(lambda: _in_batches(TickChecker(tcfg, n_inst, "numba").on_batch, acc, BATCH), repeat)
    tout = TickChecker(tcfg, n_inst).on_batch(acc)
    results.append(Result(AREA, "tickchecks numba, one batch", m / t_nb, "rows/s", "tickchecks python reference",
                          n_py / t_py, notes=f"{m:,} accepted rows, {tout.n_anomalies} anomalies, "
                          f"{tout.n_samples} samples; python on first {n_py:,}"))
    results.append(Result(AREA, f"tickchecks numba, batches of {BATCH}", m / t_nb_b, "rows/s",
                          "tickchecks numba, one batch", m / t_nb))

    n_edge = 20_000 if quick else 100_000
    ticks = [acc.row(i, reg) for i in range(min(n_edge, m))]
    t_edge = best_of(lambda: ingest_ticks(ticks, reg), repeat)
    t_from = best_of(lambda: TickColumns.from_ticks(ticks, reg), repeat)  # type: ignore[arg-type]
    results.append(Result(AREA, "edge ingest_ticks (typed ticks -> columns, screened)", len(ticks) / t_edge,
                          "ticks/s", "TickColumns.from_ticks (unscreened)", len(ticks) / t_from))
    return results


if __name__ == "__main__":
    for r in run(quick=True):
        ratio = f"{r.ratio:.1f}x" if r.ratio else ""
        print(f"{r.name:55s} {r.value / 1e6:8.2f} M{r.unit:7s} vs {r.baseline_name}: {ratio} {r.notes}")
