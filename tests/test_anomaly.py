from __future__ import annotations

import math
import random

import msgspec
import pytest

from jobs.anomaly import (
    AnomalyConfig,
    BarAnomalyLogic,
    BarAnomalySnapshot,
    StaleFeedLogic,
    StaleFeedSnapshot,
)
from market.events import AnomalySignal, AnomalyType, Bar, DeadLetter, QuoteSample
from market.fixedpoint import to_fixed

S = 1_000_000_000
MS = 1_000_000
INST = "GC.COMEX"


def bar(t_s: int, close: float, volume: int = 100, interval_s: int = 1, revision: int = 0) -> Bar:
    c = to_fixed(round(close, 9))
    start = t_s * S
    return Bar(INST, interval_s * S, start, c, c, c, c, volume, c, 5, start + interval_s * S,
               start + interval_s * S + 3 * MS + revision, revision)


def walk(n: int, seed: int, start: float = 2000.0, sigma: float = 2e-4) -> list[float]:
    rng = random.Random(seed)
    out, p = [], start
    for _ in range(n):
        p *= math.exp(rng.gauss(0, sigma))
        out.append(round(p, 1))
    return out


def run(logic: BarAnomalyLogic, bars: list[Bar]) -> list[AnomalySignal | DeadLetter]:
    out: list[AnomalySignal | DeadLetter] = []
    for b in bars:
        out.extend(logic.on_item(b))
    return out


def reference_z(closes: list[float], halflife: int) -> list[float | None]:
    """Straight transcription of the documented rule for positive prices: z of each bar's log return
    against the EWMA of squared earlier returns (None for the first bar)."""
    a = 1 - 0.5 ** (1 / halflife)
    out: list[float | None] = [None]
    var = None
    for prev, c in zip(closes, closes[1:], strict=False):
        r = math.log(c / prev)
        out.append(None if var is None else r / max(math.sqrt(var), 1e-5))
        var = r * r if var is None else (1 - a) * var + a * r * r
    return out


def kinds(out: list[AnomalySignal | DeadLetter]) -> list[tuple[str, int]]:
    return [(s.anomaly.value, s.ts_event // S - 1) for s in out if isinstance(s, AnomalySignal)]


class TestReturnZscore:
    def test_jump_flagged_once_with_reference_value(self) -> None:
        closes = walk(300, seed=1)
        closes[200] = round(closes[199] * 1.01, 1)  # +1 % in one second against ~2 bp per-second noise
        closes[201:] = [round(c * 1.01, 1) for c in closes[201:]]
        out = run(BarAnomalyLogic(AnomalyConfig(), INST), [bar(i, c) for i, c in enumerate(closes)])
        assert kinds(out) == [("return_zscore", 200)]
        sig = out[0]
        assert isinstance(sig, AnomalySignal)
        assert sig.value == pytest.approx(reference_z(closes, 60)[200], rel=1e-12)
        assert sig.value > 6 and sig.threshold == 6.0 and sig.ts_recv == bar(200, 0).ts_recv

    def test_calm_walk_gives_nothing(self) -> None:
        closes = walk(3000, seed=2)
        zs = [abs(z) for z in reference_z(closes, 60)[31:] if z is not None]
        assert max(zs) < 6  # the walk itself has no 6-sigma bar
        assert run(BarAnomalyLogic(AnomalyConfig(), INST), [bar(i, c) for i, c in enumerate(closes)]) == []

    def test_downward_jump_is_negative_z(self) -> None:
        closes = walk(100, seed=3)
        closes[80:] = [round(c * 0.98, 1) for c in closes[80:]]
        out = run(BarAnomalyLogic(AnomalyConfig(), INST), [bar(i, c) for i, c in enumerate(closes)])
        assert kinds(out) == [("return_zscore", 80)]
        assert out[0].value < -6  # type: ignore[union-attr]

    def test_threshold_is_inclusive(self) -> None:
        closes = walk(100, seed=4)
        closes[90:] = [round(c * 1.003, 1) for c in closes[90:]]
        bars = [bar(i, c) for i, c in enumerate(closes)]
        z = reference_z(closes, 60)[90]
        assert z is not None and z > 3
        at = run(BarAnomalyLogic(AnomalyConfig(zscore_threshold=z), INST), bars)
        assert ("return_zscore", 90) in kinds(at)
        above = run(BarAnomalyLogic(AnomalyConfig(zscore_threshold=math.nextafter(z, math.inf)), INST), bars)
        assert ("return_zscore", 90) not in kinds(above)

    def test_warm_up_needs_min_bars_returns(self) -> None:
        for jump_at, flagged in ((30, False), (31, True)):  # bar k carries return #k; 30 returns precede bar 31
            closes = walk(60, seed=5)
            closes[jump_at:] = [round(c * 1.02, 1) for c in closes[jump_at:]]
            out = run(BarAnomalyLogic(AnomalyConfig(min_bars=30), INST), [bar(i, c) for i, c in enumerate(closes)])
            assert kinds(out) == ([("return_zscore", jump_at)] if flagged else []), jump_at

    def test_gaps_between_bars_are_fine(self) -> None:
        closes = walk(120, seed=6)
        closes[100:] = [round(c * 1.01, 1) for c in closes[100:]]
        times = [i * 3 + (7 if i > 50 else 0) for i in range(120)]  # trades every 3 s, one longer pause
        out = run(BarAnomalyLogic(AnomalyConfig(), INST), [bar(t, c) for t, c in zip(times, closes, strict=True)])
        assert [s.ts_event for s in out] == [(times[100] + 1) * S]

    def test_negative_prices_use_change_over_level(self) -> None:
        # WTI April 2020: 18 USD drifting, then a collapse through zero to -37.63, then small moves below zero
        rng = random.Random(7)
        closes = [round(18.0 + rng.gauss(0, 0.01), 2) for _ in range(60)] + [-37.63]
        closes += [round(-37.63 + rng.gauss(0, 0.02), 2) for _ in range(60)]
        out = run(BarAnomalyLogic(AnomalyConfig(), INST), [bar(i, c) for i, c in enumerate(closes)])
        assert kinds(out) == [("return_zscore", 60)]
        sig = out[0]
        assert isinstance(sig, AnomalySignal) and sig.value < -6
        assert "price change" in sig.detail and math.isfinite(sig.value)

    def test_flat_market_cannot_divide_by_zero(self) -> None:
        closes = [100.0] * 50 + [100.0001, 100.0001, 100.01]
        out = run(BarAnomalyLogic(AnomalyConfig(), INST), [bar(i, c) for i, c in enumerate(closes)])
        # 1e-6 is 0.1 sigma at the 1e-5 floor; the 1 bp move after it is far beyond 6 sigma
        assert kinds(out) == [("return_zscore", 52)]
        assert all(math.isfinite(s.value) for s in out if isinstance(s, AnomalySignal))


class TestVolumeSpike:
    def bars(self, spike: int, at: int = 50) -> list[Bar]:
        rng = random.Random(8)
        return [bar(i, 2000.0, volume=spike if i == at else 100 + rng.randrange(-3, 4)) for i in range(60)]

    def test_spike_over_ratio_flagged_once(self) -> None:
        out = run(BarAnomalyLogic(AnomalyConfig(), INST), self.bars(900))
        assert kinds(out) == [("volume_spike", 50)]
        assert out[0].value == pytest.approx(9.0, rel=0.02)  # type: ignore[union-attr]

    def test_ratio_edge(self) -> None:
        probe = run(BarAnomalyLogic(AnomalyConfig(volume_spike_ratio=1.5), INST), self.bars(800))
        ((ratio, at),) = [(s.value, s.ts_event) for s in probe if isinstance(s, AnomalySignal)]
        assert 7.8 < ratio < 8.2
        hit = run(BarAnomalyLogic(AnomalyConfig(volume_spike_ratio=ratio), INST), self.bars(800))
        assert [s.ts_event for s in hit] == [at]
        miss = run(BarAnomalyLogic(AnomalyConfig(volume_spike_ratio=math.nextafter(ratio, math.inf)), INST),
                   self.bars(800))
        assert miss == []

    def test_no_spike_during_warm_up(self) -> None:
        assert run(BarAnomalyLogic(AnomalyConfig(), INST), self.bars(5000, at=20)) == []


class TestBarFiltering:
    def test_revisions_and_other_intervals_are_not_scored(self) -> None:
        closes = walk(120, seed=9)
        base = [bar(i, c) for i, c in enumerate(closes)]
        noisy = list(base)
        noisy.insert(100, bar(99, closes[99] * 1.5, volume=10**6, revision=1))  # corrected re-emission
        noisy.insert(60, bar(60, closes[60] * 0.5, volume=10**6, interval_s=60))  # a 1-minute bar
        logic = BarAnomalyLogic(AnomalyConfig(), INST)
        assert run(logic, noisy) == run(BarAnomalyLogic(AnomalyConfig(), INST), base) == []
        ref = BarAnomalyLogic(AnomalyConfig(), INST)
        run(ref, base)
        assert logic.snapshot() == ref.snapshot()

    def test_late_bar_is_a_dead_letter(self) -> None:
        logic = BarAnomalyLogic(AnomalyConfig(), INST)
        run(logic, [bar(i, 2000.0) for i in range(5)])
        (dl,) = logic.on_item(bar(3, 2100.0))
        assert isinstance(dl, DeadLetter) and (dl.source, dl.reason, dl.ts_event) == ("anomaly", "late", 4 * S)

    def test_foreign_instrument_is_a_routing_error(self) -> None:
        with pytest.raises(ValueError):
            BarAnomalyLogic(AnomalyConfig(), "CL.NYMEX").on_item(bar(0, 1.0))


def sample(t_s: int, quote_age_ms: int, inst: str = INST) -> QuoteSample:
    t = t_s * S
    return QuoteSample(inst, to_fixed(2000), to_fixed("2000.1"), t - quote_age_ms * MS, t, t + MS)


class TestStaleFeed:
    def test_one_signal_per_episode_rearmed_by_a_fresh_quote(self) -> None:
        logic = StaleFeedLogic(AnomalyConfig(), INST)
        samples = [sample(t, 300) for t in range(5)]
        samples += [sample(5 + k, 1000 * k + 300) for k in range(15)]  # last quote at 4.7 s, no new one till 20 s
        samples += [sample(20 + k, 200) for k in range(3)]  # fresh quotes
        samples += [sample(23 + k, 1000 * k + 200) for k in range(13)]  # quote at 22.8 s, then silence
        out = [s for smp in samples for s in logic.on_item(smp)]
        # first episode: ages 9.3 s at t=14 (no), 10.3 s at t=15 (yes); second: 10.2 s at t=33
        assert [(s.ts_event // S, s.value) for s in out] == [(15, 10300.0), (33, 10200.0)]
        assert all(s.anomaly is AnomalyType.STALE_FEED and s.threshold == 10000.0 for s in out)

    def test_age_limit_is_inclusive(self) -> None:
        assert StaleFeedLogic(AnomalyConfig(), INST).on_item(sample(20, 10000)) == []
        (sig,) = StaleFeedLogic(AnomalyConfig(), INST).on_item(sample(20, 10001))
        assert sig.value == 10001.0

    def test_a_newer_but_still_stale_quote_starts_a_new_episode(self) -> None:
        logic = StaleFeedLogic(AnomalyConfig(), INST)
        out = logic.on_item(sample(20, 12000)) + logic.on_item(sample(21, 13000))
        out += logic.on_item(sample(22, 11500))  # a quote from 10.5 s: newer than the one reported, still stale
        assert [s.ts_event // S for s in out] == [20, 22]

    def test_snapshot_restore_mid_episode(self) -> None:
        samples = [sample(t, 300 + 1000 * t) for t in range(12)]  # quote at -0.3 s
        samples += [sample(t, 100 + 1000 * (t - 12)) for t in range(12, 25)]  # quote at 11.9 s
        ref = StaleFeedLogic(AnomalyConfig(), INST)
        full = [s for smp in samples for s in ref.on_item(smp)]
        assert [s.ts_event // S for s in full] == [10, 22]
        for cut in range(1, len(samples)):
            logic = StaleFeedLogic(AnomalyConfig(), INST)
            out = [s for smp in samples[:cut] for s in logic.on_item(smp)]
            snap = msgspec.msgpack.decode(msgspec.msgpack.encode(logic.snapshot()), type=StaleFeedSnapshot)
            logic = StaleFeedLogic.restore(AnomalyConfig(), snap)
            assert out + [s for smp in samples[cut:] for s in logic.on_item(smp)] == full

    def test_restore_rejects_wrong_version(self) -> None:
        snap = StaleFeedLogic(AnomalyConfig(), INST).snapshot()
        with pytest.raises(ValueError, match="version"):
            StaleFeedLogic.restore(AnomalyConfig(), msgspec.structs.replace(snap, version=0))


class TestBarSnapshot:
    def stream(self) -> list[Bar]:
        closes = walk(200, seed=10)
        closes[120:] = [round(c * 1.01, 1) for c in closes[120:]]
        rng = random.Random(11)
        return [bar(i, c, volume=2000 if i == 150 else 100 + rng.randrange(10)) for i, c in enumerate(closes)]

    def test_restore_mid_stream_equals_uninterrupted(self) -> None:
        bars = self.stream()
        full = run(BarAnomalyLogic(AnomalyConfig(), INST), bars)
        assert kinds(full) == [("return_zscore", 120), ("volume_spike", 150)]
        for cut in (1, 2, 30, 31, 119, 120, 121, 150, 199):
            logic = BarAnomalyLogic(AnomalyConfig(), INST)
            first = run(logic, bars[:cut])
            snap = msgspec.msgpack.decode(msgspec.msgpack.encode(logic.snapshot()), type=BarAnomalySnapshot)
            assert first + run(BarAnomalyLogic.restore(AnomalyConfig(), snap), bars[cut:]) == full, cut

    def test_restore_rejects_wrong_version(self) -> None:
        snap = BarAnomalyLogic(AnomalyConfig(), INST).snapshot()
        with pytest.raises(ValueError, match="version"):
            BarAnomalyLogic.restore(AnomalyConfig(), msgspec.structs.replace(snap, version=2))


def test_config_checks() -> None:
    with pytest.raises(ValueError):
        AnomalyConfig(bar_interval="fortnight")
    with pytest.raises(msgspec.ValidationError):
        AnomalyConfig.from_dict({"zscore_treshold": 5.0})
