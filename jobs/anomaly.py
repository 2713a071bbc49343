"""Per-instrument anomalies at bar rate: return z-score and volume spikes on bars, stale feeds on quote samples.

BarAnomalyLogic scores each first-emission bar (revision 0) of the configured interval; corrected re-emissions
(revision > 0) and other intervals are not scored (scoring a bar twice would feed its return into the EWMAs twice).
For bar n with close c and the previous scored bar's close p:
  r = ln(c / p)                          when c > 0 and p > 0
  r = (c - p) / L                        otherwise, L = EWMA of |close| (same scale as a log return for
                                         small moves; keeps negative prices, WTI April 2020, scorable)
  z = r / max(sqrt(V), min_return_sigma) V = zero-mean EWMA of r^2 over the bars before this one
  volume ratio = bar volume / U          U = EWMA of bar volume over the bars before this one
All EWMAs use alpha = 1 - 0.5 ** (1 / ewma_halflife_bars), start at the first observation, and are updated
after scoring. Bars are per trading second with trades, so gaps (seconds without trades) are simply absent:
returns span the gap and U is the volume of bars that exist. Anomalies are emitted once at least min_bars
returns (for z) or bar volumes (for volume) are in the EWMA, when |z| >= zscore_threshold (value = signed z) or
ratio >= volume_spike_ratio. A bar that does not start after the previous scored bar is a "late" DeadLetter.

StaleFeedLogic watches QuoteSamples: age = ts_event - quote_ts_event; age > stale_after_ms starts an episode and
emits one STALE_FEED (value = age in ms); the episode ends when a newer quote (larger quote_ts_event) shows up,
after which the next stale sample starts a new episode.
"""

from __future__ import annotations

import math

import msgspec

from market.codec import encode
from market.config import Config
from market.events import AnomalySignal, AnomalyType, Bar, DeadLetter, QuoteSample
from market.fixedpoint import to_float
from market.timeutil import NS_PER_MS, parse_interval

BAR_ANOMALY_SNAPSHOT_VERSION = 1
STALE_FEED_SNAPSHOT_VERSION = 1


class AnomalyConfig(Config, frozen=True):
    zscore_threshold: float = 6.0
    ewma_halflife_bars: int = 60
    min_bars: int = 30  # warm-up: observations in an EWMA before it can flag anything
    volume_spike_ratio: float = 8.0
    stale_after_ms: int = 10000
    bar_interval: str = "1s"
    min_return_sigma: float = 1e-5  # floor of the volatility (0.1 bp per bar) so a flat market cannot give z = inf

    def __post_init__(self) -> None:
        parse_interval(self.bar_interval)
        if self.ewma_halflife_bars <= 0 or self.min_bars < 0 or self.stale_after_ms < 0:
            raise ValueError("ewma_halflife_bars must be > 0, min_bars and stale_after_ms >= 0")
        if self.min_return_sigma <= 0:
            raise ValueError("min_return_sigma must be > 0")


class BarAnomalySnapshot(msgspec.Struct, frozen=True, kw_only=True, tag="anomaly.bar.state"):
    version: int
    instrument_id: str
    last_start: int | None  # start of the last scored bar
    prev_close: int | None
    n_returns: int
    ret_var: float
    n_volumes: int
    volume_ewma: float
    abs_level: float  # EWMA of |close| in quoted price units


class StaleFeedSnapshot(msgspec.Struct, frozen=True, kw_only=True, tag="anomaly.stale.state"):
    version: int
    instrument_id: str
    stale_quote_ts: int | None  # quote_ts_event of the quote whose staleness was reported (episode open)


def _late_bar(source: str, bar: Bar, last_start: int) -> DeadLetter:
    return DeadLetter(source=source, reason="late",
                      detail=f"bar starting {bar.start} does not follow the last scored bar starting {last_start}",
                      raw=encode(bar).decode(), ts_recv=bar.ts_recv, instrument_id=bar.instrument_id,
                      ts_event=bar.ts_event)


class BarAnomalyLogic:
    def __init__(self, config: AnomalyConfig, instrument_id: str) -> None:
        self.config = config
        self.instrument_id = instrument_id
        self._interval_ns = parse_interval(config.bar_interval)
        self._alpha = 1.0 - 0.5 ** (1.0 / config.ewma_halflife_bars)
        self._last_start: int | None = None
        self._prev_close: int | None = None
        self._n_returns = 0
        self._ret_var = 0.0
        self._n_volumes = 0
        self._volume_ewma = 0.0
        self._abs_level = 0.0

    def on_item(self, bar: Bar) -> list[AnomalySignal | DeadLetter]:
        if bar.instrument_id != self.instrument_id:
            raise ValueError(f"bar of {bar.instrument_id} fed to the anomaly logic of {self.instrument_id}")
        if bar.interval_ns != self._interval_ns or bar.revision > 0:
            return []
        if self._last_start is not None and bar.start <= self._last_start:
            return [_late_bar("anomaly", bar, self._last_start)]
        self._last_start = bar.start
        cfg, a = self.config, self._alpha
        out: list[AnomalySignal | DeadLetter] = []
        close = to_float(bar.close)

        if self._prev_close is not None:
            prev = to_float(self._prev_close)
            if close > 0 and prev > 0:
                r, how = math.log(close / prev), "log return"
            elif self._abs_level > 0:
                r, how = (close - prev) / self._abs_level, "price change / EWMA |price|"
            else:  # every close so far was exactly 0: no scale to measure a move against
                r, how = None, ""
            if r is not None:
                if self._n_returns >= cfg.min_bars:
                    sigma = max(math.sqrt(self._ret_var), cfg.min_return_sigma)
                    z = r / sigma
                    if abs(z) >= cfg.zscore_threshold:
                        out.append(AnomalySignal(
                            instrument_id=self.instrument_id, anomaly=AnomalyType.RETURN_ZSCORE, value=z,
                            threshold=cfg.zscore_threshold,
                            detail=f"{how} {r:.6g} is {z:.2f} sigma (EWMA sigma {sigma:.6g}, "
                                   f"half-life {cfg.ewma_halflife_bars} bars)",
                            ts_event=bar.ts_event, ts_recv=bar.ts_recv))
                self._ret_var = r * r if self._n_returns == 0 else (1 - a) * self._ret_var + a * r * r
                self._n_returns += 1

        vol = float(bar.volume)
        if self._n_volumes >= cfg.min_bars and self._volume_ewma > 0:
            ratio = vol / self._volume_ewma
            if ratio >= cfg.volume_spike_ratio:
                out.append(AnomalySignal(
                    instrument_id=self.instrument_id, anomaly=AnomalyType.VOLUME_SPIKE, value=ratio,
                    threshold=cfg.volume_spike_ratio,
                    detail=f"bar volume {bar.volume} is {ratio:.2f}x the EWMA bar volume {self._volume_ewma:.6g}",
                    ts_event=bar.ts_event, ts_recv=bar.ts_recv))
        self._volume_ewma = vol if self._n_volumes == 0 else (1 - a) * self._volume_ewma + a * vol
        self._n_volumes += 1

        level = abs(close)
        self._abs_level = level if self._prev_close is None else (1 - a) * self._abs_level + a * level
        self._prev_close = bar.close
        return out

    def on_watermark(self, watermark_ns: int) -> list[AnomalySignal | DeadLetter]:
        return []  # bar-driven only: no timers

    def snapshot(self) -> BarAnomalySnapshot:
        return BarAnomalySnapshot(
            version=BAR_ANOMALY_SNAPSHOT_VERSION, instrument_id=self.instrument_id, last_start=self._last_start,
            prev_close=self._prev_close, n_returns=self._n_returns, ret_var=self._ret_var,
            n_volumes=self._n_volumes, volume_ewma=self._volume_ewma, abs_level=self._abs_level)

    @classmethod
    def restore(cls, config: AnomalyConfig, snap: BarAnomalySnapshot) -> BarAnomalyLogic:
        if snap.version != BAR_ANOMALY_SNAPSHOT_VERSION:
            raise ValueError(f"bar anomaly snapshot version {snap.version} is not {BAR_ANOMALY_SNAPSHOT_VERSION}")
        logic = cls(config, snap.instrument_id)
        logic._last_start, logic._prev_close = snap.last_start, snap.prev_close
        logic._n_returns, logic._ret_var = snap.n_returns, snap.ret_var
        logic._n_volumes, logic._volume_ewma = snap.n_volumes, snap.volume_ewma
        logic._abs_level = snap.abs_level
        return logic


class StaleFeedLogic:
    def __init__(self, config: AnomalyConfig, instrument_id: str) -> None:
        self.config = config
        self.instrument_id = instrument_id
        self._stale_ns = config.stale_after_ms * NS_PER_MS
        self._stale_quote_ts: int | None = None

    def on_item(self, sample: QuoteSample) -> list[AnomalySignal]:
        if sample.instrument_id != self.instrument_id:
            raise ValueError(f"sample of {sample.instrument_id} fed to the stale-feed logic of {self.instrument_id}")
        if self._stale_quote_ts is not None:
            if sample.quote_ts_event <= self._stale_quote_ts:
                return []  # same episode: already reported
            self._stale_quote_ts = None  # a newer quote showed up: re-armed
        age = sample.ts_event - sample.quote_ts_event
        if age <= self._stale_ns:
            return []
        self._stale_quote_ts = sample.quote_ts_event
        return [AnomalySignal(
            instrument_id=self.instrument_id, anomaly=AnomalyType.STALE_FEED, value=age / NS_PER_MS,
            threshold=float(self.config.stale_after_ms),
            detail=f"last quote is {age / NS_PER_MS:.0f} ms old at boundary {sample.ts_event} "
                   f"(limit {self.config.stale_after_ms} ms)",
            ts_event=sample.ts_event, ts_recv=sample.ts_recv)]

    def on_watermark(self, watermark_ns: int) -> list[AnomalySignal]:
        return []  # staleness is read off the samples, which the sampler emits every boundary

    def snapshot(self) -> StaleFeedSnapshot:
        return StaleFeedSnapshot(version=STALE_FEED_SNAPSHOT_VERSION, instrument_id=self.instrument_id,
                                 stale_quote_ts=self._stale_quote_ts)

    @classmethod
    def restore(cls, config: AnomalyConfig, snap: StaleFeedSnapshot) -> StaleFeedLogic:
        if snap.version != STALE_FEED_SNAPSHOT_VERSION:
            raise ValueError(f"stale feed snapshot version {snap.version} is not {STALE_FEED_SNAPSHOT_VERSION}")
        logic = cls(config, snap.instrument_id)
        logic._stale_quote_ts = snap.stale_quote_ts
        return logic
