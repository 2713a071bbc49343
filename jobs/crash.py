"""Rule-based crash warning per instrument: a deep drawdown inside a short window on heavy volume.

On each first-emission bar (revision 0) of the configured interval ending at T (= bar.start + interval):
  window    = the bars starting in [T - window_s, T)  (a deque; bars leaving it feed the baseline)
  peak      = max high in the window (monotonic deque: O(1) amortised per bar)
  drawdown  = (peak - close) / |peak| * 100           (no drawdown is measured when peak == 0)
  baseline  = R, time-weighted EWMA of the per-second volume over everything before the window, half-life
              baseline_halflife_s: a bar of L seconds and volume v counts as L seconds of v/L each, the time between
              two bars as seconds of zero volume, except gaps longer than max_gap_s (market closed or halted) which
              are skipped; bias-corrected (weights normalised), so it needs no seed. Time is absorbed bar by bar as
              bars leave the window, so empty time just before the window counts once the next bar leaves it.
  fall      = the bars from the last bar whose high is within drawdown_pct/2 % of the peak (the last time the
              price stood near the top; the re-arm level) through this bar
  volume_ratio (volume_span = "fall", the default)
            = volume of the fall / (R * seconds from the fall's first bar start to T)
  volume_ratio (volume_span = "window")
            = volume of the window / (R * window_s)
The default measures the volume of the fall itself. Whole-window volume dilutes it: a 60 s fall at 5x volume in an
otherwise normal 300 s window has a window ratio of (60*5 + 240) / 300 = 1.8 at most; so does a ratio over the
bars since the peak when the window's peak came minutes before the fall started.
A warning fires when drawdown >= drawdown_pct and volume_ratio >= volume_ratio (threshold) once the baseline
covers at least min_baseline_s seconds and is positive; once per episode, re-armed when drawdown < drawdown_pct/2.
A bar that does not start after the previous one is a "late" DeadLetter.
"""

from __future__ import annotations

from collections import deque
from typing import Literal

import msgspec

from market.codec import encode
from market.config import Config
from market.events import Bar, CrashWarning, DeadLetter
from market.timeutil import NS_PER_S, parse_interval

CRASH_SNAPSHOT_VERSION = 1


class CrashConfig(Config, frozen=True):
    drawdown_pct: float = 3.0
    window_s: int = 120  # a crash is fast: warnings can fire once window_s + min_baseline_s of data are in
    volume_ratio: float = 3.0
    baseline_halflife_s: int = 1800
    min_baseline_s: int = 60
    bar_interval: str = "1s"
    volume_span: Literal["fall", "window"] = "fall"
    max_gap_s: int = 300  # longer stretches without bars are a closed market, not zero-volume seconds

    def __post_init__(self) -> None:
        interval = parse_interval(self.bar_interval)
        if self.window_s <= 0 or (self.window_s * NS_PER_S) % interval:
            raise ValueError("window_s must be a positive multiple of bar_interval")
        if self.drawdown_pct <= 0 or self.baseline_halflife_s <= 0 or self.min_baseline_s < 0 or self.max_gap_s < 0:
            raise ValueError("drawdown_pct and baseline_halflife_s must be > 0; min_baseline_s, max_gap_s >= 0")


class WindowBar(msgspec.Struct, frozen=True):
    start: int
    high: int
    volume: int
    cum_before: int  # instrument's cumulative volume before this bar: span volumes are differences


class CrashSnapshot(msgspec.Struct, frozen=True, kw_only=True, tag="crash.state"):
    version: int
    instrument_id: str
    window: list[WindowBar]
    cum_volume: int
    last_start: int | None
    base_num: float
    base_den: float
    base_ts: int | None  # end of the last bar absorbed into the baseline
    base_s: float  # seconds absorbed
    armed: bool


class CrashLogic:
    def __init__(self, config: CrashConfig, instrument_id: str) -> None:
        self.config = config
        self.instrument_id = instrument_id
        self._interval_ns = parse_interval(config.bar_interval)
        self._interval_s = self._interval_ns / NS_PER_S
        self._window_ns = config.window_s * NS_PER_S
        self._max_gap_ns = config.max_gap_s * NS_PER_S
        self._decay_per_s = 0.5 ** (1.0 / config.baseline_halflife_s)
        self._window: deque[WindowBar] = deque()
        self._maxq: deque[WindowBar] = deque()  # highs strictly decreasing from the front
        self._cum_volume = 0
        self._last_start: int | None = None
        self._base_num = 0.0
        self._base_den = 0.0
        self._base_ts: int | None = None
        self._base_s = 0.0
        self._armed = True

    @property
    def baseline_per_s(self) -> float:
        return self._base_num / self._base_den if self._base_den > 0 else 0.0

    def on_item(self, bar: Bar) -> list[CrashWarning | DeadLetter]:
        if bar.instrument_id != self.instrument_id:
            raise ValueError(f"bar of {bar.instrument_id} fed to the crash logic of {self.instrument_id}")
        if bar.interval_ns != self._interval_ns or bar.revision > 0:
            return []
        if self._last_start is not None and bar.start <= self._last_start:
            return [DeadLetter(source="crash", reason="late",
                               detail=f"bar starting {bar.start} does not follow the last bar starting "
                                      f"{self._last_start}",
                               raw=encode(bar).decode(), ts_recv=bar.ts_recv, instrument_id=bar.instrument_id,
                               ts_event=bar.ts_event)]
        self._last_start = bar.start
        end = bar.start + self._interval_ns
        self._advance_window(end - self._window_ns)
        wb = WindowBar(bar.start, bar.high, bar.volume, self._cum_volume)
        self._push(wb)
        self._cum_volume += bar.volume

        peak_bar = self._maxq[0]
        if peak_bar.high == 0:
            return []
        drawdown = (peak_bar.high - bar.close) / abs(peak_bar.high) * 100.0
        cfg = self.config
        if not self._armed:
            if drawdown < cfg.drawdown_pct / 2:
                self._armed = True
            return []
        if drawdown < cfg.drawdown_pct:
            return []
        rate = self.baseline_per_s
        if self._base_s < cfg.min_baseline_s or rate <= 0:
            return []
        if cfg.volume_span == "fall":
            level = peak_bar.high - abs(peak_bar.high) * cfg.drawdown_pct / 200.0
            # scanned only on a candidate bar; the peak bar itself qualifies, so the loop always breaks
            first = next(wb for wb in reversed(self._window) if wb.high >= level)
            volume = self._cum_volume - first.cum_before
            seconds = (end - first.start) / NS_PER_S
        else:
            volume = self._cum_volume - self._window[0].cum_before
            seconds = float(cfg.window_s)
        ratio = volume / (rate * seconds)
        if ratio < cfg.volume_ratio:
            return []
        self._armed = False
        return [CrashWarning(instrument_id=self.instrument_id, drawdown_pct=drawdown, window_ns=self._window_ns,
                             volume_ratio=ratio, peak=peak_bar.high, last=bar.close, source="rule",
                             ts_event=bar.ts_event, ts_recv=bar.ts_recv)]

    def on_watermark(self, watermark_ns: int) -> list[CrashWarning | DeadLetter]:
        return []  # bar-driven only: no timers

    def _push(self, wb: WindowBar) -> None:
        self._window.append(wb)
        while self._maxq and self._maxq[-1].high <= wb.high:
            self._maxq.pop()
        self._maxq.append(wb)

    def _advance_window(self, window_start: int) -> None:
        """Move the bars starting before window_start into the baseline, with the empty time between them."""
        while self._window and self._window[0].start < window_start:
            old = self._window.popleft()
            if self._maxq and self._maxq[0].start == old.start:
                self._maxq.popleft()
            gap = 0 if self._base_ts is None else old.start - self._base_ts
            if 0 < gap <= self._max_gap_ns:  # seconds without trades: zero volume
                self._absorb(0.0, gap / NS_PER_S)
            self._absorb(old.volume / self._interval_s, self._interval_s)
            self._base_ts = old.start + self._interval_ns

    def _absorb(self, volume_per_s: float, seconds: float) -> None:
        w = self._decay_per_s ** seconds
        self._base_num = self._base_num * w + (1 - w) * volume_per_s
        self._base_den = self._base_den * w + (1 - w)
        self._base_s += seconds

    def snapshot(self) -> CrashSnapshot:
        return CrashSnapshot(
            version=CRASH_SNAPSHOT_VERSION, instrument_id=self.instrument_id, window=list(self._window),
            cum_volume=self._cum_volume, last_start=self._last_start, base_num=self._base_num,
            base_den=self._base_den, base_ts=self._base_ts, base_s=self._base_s, armed=self._armed)

    @classmethod
    def restore(cls, config: CrashConfig, snap: CrashSnapshot) -> CrashLogic:
        if snap.version != CRASH_SNAPSHOT_VERSION:
            raise ValueError(f"crash snapshot version {snap.version} is not {CRASH_SNAPSHOT_VERSION}")
        logic = cls(config, snap.instrument_id)
        for wb in snap.window:
            logic._push(wb)
        logic._cum_volume, logic._last_start = snap.cum_volume, snap.last_start
        logic._base_num, logic._base_den = snap.base_num, snap.base_den
        logic._base_ts, logic._base_s, logic._armed = snap.base_ts, snap.base_s, snap.armed
        return logic
