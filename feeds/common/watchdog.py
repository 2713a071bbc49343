"""Heartbeat schedule and staleness check for one connection (clock injectable, no I/O, no timers).

`stale()`: nothing received for longer than stale_after_ms (a silent venue: the runner reconnects).
`heartbeat_due()`: nothing sent for heartbeat_ms (the runner asks the protocol for a heartbeat frame).
"""

from __future__ import annotations

import time
from collections.abc import Callable

NS_PER_MS = 1_000_000


class Watchdog:
    def __init__(self, stale_after_ms: int, heartbeat_ms: int,
                 clock: Callable[[], int] = time.monotonic_ns) -> None:
        if heartbeat_ms <= 0 or stale_after_ms <= 0:
            raise ValueError("heartbeat_ms and stale_after_ms must be positive")
        self.stale_after_ns = stale_after_ms * NS_PER_MS
        self.heartbeat_ns = heartbeat_ms * NS_PER_MS
        self._clock = clock
        now = clock()
        self._last_recv = now
        self._last_send = now

    def reset(self) -> None:
        """A new connection: both timers start now."""
        now = self._clock()
        self._last_recv = now
        self._last_send = now

    def on_receive(self) -> None:
        self._last_recv = self._clock()

    def on_send(self) -> None:
        self._last_send = self._clock()

    def silent_ms(self) -> float:
        return (self._clock() - self._last_recv) / NS_PER_MS

    def stale(self) -> bool:
        return self._clock() - self._last_recv > self.stale_after_ns

    def heartbeat_due(self) -> bool:
        return self._clock() - self._last_send >= self.heartbeat_ns

    def next_check_s(self) -> float:
        """Seconds until the earlier of: the next heartbeat, the moment the connection turns stale."""
        now = self._clock()
        hb = self._last_send + self.heartbeat_ns - now
        st = self._last_recv + self.stale_after_ns - now + 1  # +1 ns: stale() is a strict comparison
        return max(0.0, min(hb, st) / 1e9)
