"""The embedded runtime: one process runs the pipeline and writes its outputs to storage and live clients.

Thin shell around `jobs.pipeline.Pipeline`: it owns no signal logic. It stamps wall-clock latency,
keeps the run summary, and hands bars/signals/dead letters to the sinks (chdb store, live hub).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

import msgspec
import numpy as np

from jobs.pipeline import Pipeline, PipelineConfig, PipelineOutput
from jobs.sink import Sink
from market.columns import KIND_QUOTE, KIND_TRADE, TickColumns
from market.events import DeadLetter, QuoteTick, TradeTick, signal_kind
from market.instruments import Registry, default_registry
from market.timeutil import format_interval


class Summary(msgspec.Struct, frozen=True):
    """The one-line run summary printed by `commodex demo --json` and `commodex replay --json`."""

    runtime: str
    ticks_in: int  # every message offered, accepted or not
    ticks_accepted: int
    ticks_by_venue: dict[str, int]
    ticks_by_instrument: dict[str, int]
    bars: int
    bars_by_interval: dict[str, int]
    signals: int
    signals_by_kind: dict[str, int]
    dead_letters: int
    dead_letters_by_reason: dict[str, int]
    latency_p50_ms: float | None  # tick-to-signal: wall clock from the trigger tick's arrival to the signal's emission
    latency_p99_ms: float | None
    elapsed_s: float
    busy_s: float  # wall time spent inside the engine (pipeline + sinks)
    ticks_per_busy_s: float


class EmbeddedEngine:
    def __init__(
        self,
        config: PipelineConfig | None = None,
        sinks: list[Sink] | None = None,
        registry: Registry | None = None,
        clock: Callable[[], int] = time.perf_counter_ns,
        runtime: str = "embedded",
    ) -> None:
        self.registry = registry or default_registry()
        self.pipeline = Pipeline(config, self.registry)
        self.sinks = sinks or []
        self._clock = clock
        self._runtime = runtime
        self._ticks_in = 0
        self._accepted = np.zeros(len(self.registry), dtype=np.int64)
        self._bars: Counter[str] = Counter()
        self._signals: Counter[str] = Counter()
        self._dead: Counter[str] = Counter()
        self._latencies: list[np.ndarray] = []
        self._busy_ns = 0
        self._t_start = time.perf_counter()

    def offer(self, cols: TickColumns, edge_rejects: list[DeadLetter] | None = None,
              arrival_ns: int | None = None) -> PipelineOutput:
        """Run one batch. arrival_ns (perf_counter clock) = when the batch was complete at the input;
        tick-to-signal latency is measured from there to the moment its signals reach the sinks."""
        t0 = self._clock()
        arrival = t0 if arrival_ns is None else arrival_ns
        self._ticks_in += len(cols) + len(edge_rejects or ())
        out = self.pipeline.process(cols) if len(cols) else PipelineOutput()
        if edge_rejects:
            out.dead_letters = list(edge_rejects) + out.dead_letters
        self._emit(out, arrival)
        self._busy_ns += self._clock() - t0
        return out

    def finish(self) -> PipelineOutput:
        t0 = self._clock()
        out = self.pipeline.finish()
        self._emit(out, t0)
        self._busy_ns += self._clock() - t0
        return out

    def _emit(self, out: PipelineOutput, arrival: int) -> None:
        acc = out.accepted
        if acc is not None and len(acc):
            self._accepted += np.bincount(acc.instrument, minlength=len(self._accepted))
        for b in out.bars:
            self._bars[format_interval(b.interval_ns)] += 1
        for s in out.signals:
            self._signals[signal_kind(s).value] += 1
        for d in out.dead_letters:
            self._dead[d.reason] += 1
        last = _last_ticks(acc, self.registry) if acc is not None and len(acc) else []
        for sink in self.sinks:
            if out.dead_letters:
                sink.dead_letters(out.dead_letters)
            if out.bars:
                sink.bars(out.bars)
            if out.signals:
                sink.signals(out.signals)
            if last:
                sink.ticks(last)
        if out.signals:
            done = self._clock()
            self._latencies.append(np.full(len(out.signals), done - arrival, dtype=np.int64))

    def summary(self) -> Summary:
        elapsed = time.perf_counter() - self._t_start
        by_inst = {self.registry.by_index(i).id: int(n) for i, n in enumerate(self._accepted) if n}
        by_venue: Counter[str] = Counter()
        for iid, n in by_inst.items():
            by_venue[self.registry.get(iid).venue] += n
        lat = np.concatenate(self._latencies) if self._latencies else np.zeros(0, dtype=np.int64)
        accepted = int(self._accepted.sum())
        busy_s = self._busy_ns / 1e9
        return Summary(
            runtime=self._runtime,
            ticks_in=self._ticks_in,
            ticks_accepted=accepted,
            ticks_by_venue=dict(sorted(by_venue.items())),
            ticks_by_instrument=dict(sorted(by_inst.items())),
            bars=sum(self._bars.values()),
            bars_by_interval=dict(sorted(self._bars.items())),
            signals=sum(self._signals.values()),
            signals_by_kind=dict(sorted(self._signals.items())),
            dead_letters=sum(self._dead.values()),
            dead_letters_by_reason=dict(sorted(self._dead.items())),
            latency_p50_ms=round(float(np.percentile(lat, 50)) / 1e6, 3) if len(lat) else None,
            latency_p99_ms=round(float(np.percentile(lat, 99)) / 1e6, 3) if len(lat) else None,
            elapsed_s=round(elapsed, 3),
            busy_s=round(busy_s, 3),
            ticks_per_busy_s=round(self._ticks_in / busy_s, 1) if busy_s > 0 else 0.0,
        )


def _last_ticks(acc: TickColumns, registry: Registry) -> list[TradeTick | QuoteTick]:
    """Latest trade and latest quote per instrument in a batch (what live dashboards need)."""
    out: list[TradeTick | QuoteTick] = []
    for kind in (KIND_TRADE, KIND_QUOTE):
        rows = np.flatnonzero(acc.kind == kind)
        if not len(rows):
            continue
        inst = acc.instrument[rows]
        # last occurrence of each instrument: unique on the reversed order
        _, first_rev = np.unique(inst[::-1], return_index=True)
        for r in sorted(rows[len(rows) - 1 - first_rev].tolist()):
            tick = acc.row(r, registry)
            out.append(tick)
    return out
