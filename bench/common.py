"""The row every benchmark reports. Throughputs are compared to a baseline measured in the same run."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Result:
    area: str  # "replay", "bars", "book", ...
    name: str  # what was measured
    value: float  # the measurement, in `unit`
    unit: str  # "ticks/s", "ops/s", "ns", "s" ...
    baseline_name: str = ""  # what it is compared with, measured in the same run
    baseline_value: float = 0.0
    notes: str = ""
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        """value / baseline_value (for throughputs: how many times faster than the baseline)."""
        if not self.baseline_value:
            return None
        return self.value / self.baseline_value


def best_of(fn: Callable[[], object], repeat: int = 3) -> float:
    """Fastest wall time of `repeat` calls, in seconds (GC off while timing: shared machines are noisy)."""
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        gc.disable()
        try:
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
        finally:
            gc.enable()
    return best
