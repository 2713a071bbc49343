"""Reconnect delays: exponential backoff with full jitter.

Retry n (0-based) waits uniform(0, min(max_ms, initial_ms * multiplier**n)). Full jitter spreads the
reconnects of many clients after a venue outage instead of having them retry in lockstep.
"""

from __future__ import annotations

import random


class Backoff:
    def __init__(self, initial_ms: float, max_ms: float, multiplier: float = 2.0,
                 rng: random.Random | None = None) -> None:
        if initial_ms <= 0 or max_ms < initial_ms:
            raise ValueError("need 0 < initial_ms <= max_ms")
        if multiplier < 1:
            raise ValueError("multiplier must be >= 1")
        self.initial_ms = float(initial_ms)
        self.max_ms = float(max_ms)
        self.multiplier = float(multiplier)
        self._rng = rng if rng is not None else random.Random()
        self._attempt = 0
        self._ceiling_ms = self.initial_ms

    @property
    def attempt(self) -> int:
        """Delays handed out since the last reset."""
        return self._attempt

    @property
    def ceiling_ms(self) -> float:
        """Upper bound of the next delay."""
        return self._ceiling_ms

    def next_delay_ms(self) -> float:
        delay = self._rng.uniform(0.0, self._ceiling_ms)
        self._attempt += 1
        # grow the ceiling iteratively: multiplier**attempt would overflow after enough failures
        self._ceiling_ms = min(self.max_ms, self._ceiling_ms * self.multiplier)
        return delay

    def next_delay_s(self) -> float:
        return self.next_delay_ms() / 1000.0

    def reset(self) -> None:
        """After a healthy session: the next failure starts again from initial_ms."""
        self._attempt = 0
        self._ceiling_ms = self.initial_ms
