"""Per-feed counters and receive lag (ts_recv - ts_event) quantiles over a window of recent ticks.

The protocol object counts what it decodes; the runner counts connections, stalls and heartbeats sent.
`snapshot()` is a frozen record for status endpoints and tests.
"""

from __future__ import annotations

import msgspec
import numpy as np

NS_PER_MS = 1_000_000


class FeedMetricsSnapshot(msgspec.Struct, frozen=True, tag="feed_metrics.v1", tag_field="type"):
    feed: str
    frames: int  # frames received
    ticks: int  # ticks delivered downstream
    dead_letters: int  # dead letters emitted (every reason, gap records included)
    decode_errors: int  # frames that did not decode into a venue message
    rejected: int  # decoded messages refused (unknown symbol, bad snapshot, implausible seq, ...)
    control: int  # acks, heartbeats, venue errors
    snapshots: int
    buffered: int  # updates held while a stream waited for its snapshot
    gaps: int  # missing ranges reported
    missing: int  # seqs in those ranges
    recovered: int  # missing seqs re-created from a snapshot
    duplicates: int
    superseded: int
    resync_requests: int
    resync_timeouts: int
    venue_errors: int
    connects: int
    reconnects: int  # connects after the first one
    connect_failures: int
    stalls: int  # connections dropped by the watchdog
    heartbeats_in: int
    heartbeats_out: int
    lag_samples: int
    lag_p50_ms: float
    lag_p99_ms: float


_COUNTERS = tuple(f for f in FeedMetricsSnapshot.__struct_fields__
                  if f not in ("feed", "lag_samples", "lag_p50_ms", "lag_p99_ms"))


class LagWindow:
    """The last `size` lags in a ring (size rounded up to a power of two); exact quantiles on demand."""

    def __init__(self, size: int = 8192) -> None:
        if size < 1:
            raise ValueError("size must be >= 1")
        self.size = 1 << (size - 1).bit_length()
        self._mask = self.size - 1
        self._ring: list[int] = []
        self.total = 0

    def add(self, lag_ns: int) -> None:
        n = self.total
        self.total = n + 1
        if n < self.size:
            self._ring.append(lag_ns)
        else:
            self._ring[n & self._mask] = lag_ns

    def add_many(self, lags_ns: np.ndarray) -> None:
        """add() of each lag in order, done as list slice operations (only the last `size` lags can stay in
        the ring, so earlier ones only advance the count)."""
        n = len(lags_ns)
        if not n:
            return
        size, ring = self.size, self._ring
        k = min(n, size)
        values = lags_ns[n - k:].tolist()
        start = self.total + n - k  # the count at which values[0] is added
        self.total += n
        if k == size:  # every slot is overwritten: the ring is `values`, rotated to where they land
            rot = start & self._mask
            ring[:] = values[size - rot:] + values[:size - rot]
            return
        if len(ring) < size:  # still growing: appends first
            grow = min(k, size - len(ring))
            ring.extend(values[:grow])
            values = values[grow:]
            start += grow
            if not values:
                return
        pos = start & self._mask
        head = min(len(values), size - pos)
        ring[pos:pos + head] = values[:head]
        ring[:len(values) - head] = values[head:]

    def __len__(self) -> int:
        return len(self._ring)

    def quantile_ns(self, q: float) -> float:
        """Nearest-rank quantile of the lags in the window (0.0 when empty)."""
        if not self._ring:
            return 0.0
        return float(np.quantile(np.asarray(self._ring, dtype=np.int64), q, method="inverted_cdf"))


class FeedMetrics:
    def __init__(self, feed: str, lag_window: int = 8192) -> None:
        self.feed = feed
        self.lag = LagWindow(lag_window)
        for name in _COUNTERS:
            setattr(self, name, 0)

    # typed counters (set in __init__ from the snapshot's field list; declared here for type checkers)
    frames: int
    ticks: int
    dead_letters: int
    decode_errors: int
    rejected: int
    control: int
    snapshots: int
    buffered: int
    gaps: int
    missing: int
    recovered: int
    duplicates: int
    superseded: int
    resync_requests: int
    resync_timeouts: int
    venue_errors: int
    connects: int
    reconnects: int
    connect_failures: int
    stalls: int
    heartbeats_in: int
    heartbeats_out: int

    def observe_lag(self, ts_event: int, ts_recv: int) -> None:
        self.lag.add(ts_recv - ts_event)

    def snapshot(self) -> FeedMetricsSnapshot:
        return FeedMetricsSnapshot(
            feed=self.feed, **{name: getattr(self, name) for name in _COUNTERS},
            lag_samples=self.lag.total,
            lag_p50_ms=self.lag.quantile_ns(0.5) / NS_PER_MS,
            lag_p99_ms=self.lag.quantile_ns(0.99) / NS_PER_MS,
        )
