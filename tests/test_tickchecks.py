from __future__ import annotations

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobs.tickchecks import (
    TickChecker,
    TickCheckerSnapshot,
    TickCheckOutput,
    TickChecksConfig,
    to_anomalies,
    to_samples,
)
from jobs.tickchecks_kernel import CROSSED_MARKET, TRADE_OUTSIDE_QUOTE
from jobs.validate import ValidateConfig, Validator
from market.columns import TickColumns
from market.events import AnomalyType, QuoteTick, Tick, TradeTick
from market.instruments import default_registry

REG = default_registry()
N = len(REG)
GC, CL, KC = "GC.COMEX", "CL.NYMEX", "KC.ICE"
MS = 1_000_000
S1 = 1000 * MS
T0 = 1_700_000_000 * S1  # on a 1 s boundary
P = 10**9  # one price unit in fixed point
_FIELDS = TickCheckOutput.__slots__


def trade(price: float, ts: int, iid: str = GC, recv: int | None = None) -> TradeTick:
    return TradeTick(iid, round(price * P), 1, ts, ts if recv is None else recv)


def quote(bid: float, ask: float, ts: int, iid: str = GC, bid_size: int = 1, ask_size: int = 1,
          recv: int | None = None) -> QuoteTick:
    return QuoteTick(iid, round(bid * P), round(ask * P), bid_size, ask_size, ts, ts if recv is None else recv)


def cols(ticks: list[Tick]) -> TickColumns:
    return TickColumns.from_ticks(ticks, REG)


def kinds(out: TickCheckOutput) -> list[tuple[int, int]]:
    """(type code, row) per anomaly."""
    return list(zip(out.anomaly_type.tolist(), out.anomaly_row.tolist(), strict=True))


def concat_outputs(parts: list[TickCheckOutput], sizes: list[int]) -> TickCheckOutput:
    offsets = np.cumsum([0, *sizes[:-1]])
    merged = {}
    for name in _FIELDS:
        arrs = [getattr(p, name) for p in parts]
        if name.endswith("_row"):
            arrs = [a + off for a, off in zip(arrs, offsets, strict=True)]
        merged[name] = np.concatenate(arrs)
    return TickCheckOutput(**merged)


def outputs_equal(a: TickCheckOutput, b: TickCheckOutput) -> None:
    for name in _FIELDS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def run_split(impl: str, c: TickColumns, cuts: list[int], config: TickChecksConfig | None = None) -> TickCheckOutput:
    tc = TickChecker(config or TickChecksConfig(), N, impl)  # type: ignore[arg-type]
    bounds = [0, *sorted(cuts), len(c)]
    parts = [tc.on_batch(c.take(slice(a, b))) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    return concat_outputs(parts, [b - a for a, b in zip(bounds[:-1], bounds[1:], strict=True)])


def market_stream(n: int, seed: int) -> TickColumns:
    """Validated ticks: random walks (crossing zero), crossed and one-sided quotes, trades through the quote,
    out-of-order event times."""
    rng = np.random.default_rng(seed)
    c = TickColumns.empty(n)
    c.instrument[:] = rng.integers(0, N, n)
    c.kind[:] = rng.integers(0, 2, n)
    c.ts_event[:] = T0 + np.cumsum(rng.integers(0, 3 * MS, n)) - rng.integers(0, 40 * MS, n)
    c.ts_event[rng.random(n) < 0.001] += 5 * S1  # clock jumps over several sampling boundaries
    c.ts_event[:] = np.maximum.accumulate(c.ts_event) - rng.integers(0, 40 * MS, n)
    c.ts_recv[:] = c.ts_event + rng.integers(0, 2 * MS, n)
    mid = np.zeros(n, dtype=np.int64)
    for k in range(N):
        m = np.flatnonzero(c.instrument == k)
        mid[m] = (k - 5) * P + np.cumsum(rng.integers(-1, 2, m.size)) * (P // 100)
    half = rng.integers(0, 5, n) * (P // 100)
    c.bid[:] = mid - half
    c.ask[:] = mid + half
    crossed = rng.random(n) < 0.02
    c.bid[crossed], c.ask[crossed] = c.ask[crossed] + P // 100, c.bid[crossed]
    c.bid_size[:] = rng.integers(0, 4, n)
    c.ask_size[:] = rng.integers(0, 4, n)
    c.ask_size[(c.bid_size == 0) & (c.ask_size == 0)] = 1
    c.price[:] = mid + rng.integers(-8, 9, n) * (P // 100)
    c.size[:] = 1
    return c


@pytest.mark.parametrize("impl", ["numba", "python"])
class TestTickChecker:
    def make(self, impl: str, **kw: int) -> TickChecker:
        return TickChecker(TickChecksConfig(**kw), N, impl)  # type: ignore[arg-type]

    def test_crossed_emitted_once_and_rearmed(self, impl: str) -> None:
        c = cols([quote(100, 101, T0), quote(101.5, 101.2, T0 + 1), quote(101.6, 101.2, T0 + 2),
                  quote(101, 101, T0 + 3), quote(102, 101, T0 + 4), quote(102, 101, T0 + 5)])
        out = self.make(impl).on_batch(c)
        assert kinds(out) == [(CROSSED_MARKET, 1), (CROSSED_MARKET, 4)]  # locked (row 3) re-arms, not crossed
        assert out.anomaly_value.tolist() == [0.3 * P, 1 * P]
        sig = to_anomalies(out, c, REG)[0]
        assert sig.anomaly == AnomalyType.CROSSED_MARKET and sig.instrument_id == GC
        assert sig.detail == "bid 101.5 > ask 101.2" and sig.threshold == 0.0
        assert sig.ts_event == T0 + 1 and sig.ts_recv == T0 + 1

    def test_one_sided_quote_never_crossed(self, impl: str) -> None:
        c = cols([quote(102, 101, T0, bid_size=0), quote(102, 101, T0 + 1, ask_size=0)])
        assert self.make(impl).on_batch(c).n_anomalies == 0

    def test_crossed_is_per_instrument(self, impl: str) -> None:
        c = cols([quote(2, 1, T0, GC), quote(2, 1, T0, CL), quote(2, 1, T0 + 1, GC), quote(1, 2, T0 + 1, CL),
                  quote(2, 1, T0 + 2, CL)])
        out = self.make(impl).on_batch(c)
        assert kinds(out) == [(CROSSED_MARKET, 0), (CROSSED_MARKET, 1), (CROSSED_MARKET, 4)]
        assert out.anomaly_instrument.tolist() == [REG.index_of(GC), REG.index_of(CL), REG.index_of(CL)]

    def test_trade_outside_quote(self, impl: str) -> None:
        c = cols([trade(50, T0), quote(100, 101, T0 + 1), trade(100, T0 + 2), trade(101, T0 + 3),
                  trade(99.25, T0 + 4), trade(102, T0 + S1 + 4), trade(100.5, T0 + 3 * S1)])
        out = self.make(impl).on_batch(c)
        assert kinds(out) == [(TRADE_OUTSIDE_QUOTE, 4), (TRADE_OUTSIDE_QUOTE, 5)]  # no quote yet for row 0
        assert out.anomaly_value.tolist() == [0.75 * P, 1 * P] and out.anomaly_threshold.tolist() == [0, 0]
        sigs = to_anomalies(out, c, REG)
        assert [s.detail for s in sigs] == ["trade 99.25 < bid 100", "trade 102 > ask 101"]
        assert all(s.anomaly == AnomalyType.TRADE_OUTSIDE_QUOTE for s in sigs)

    def test_negative_prices(self, impl: str) -> None:
        c = cols([quote(-38, -37.5, T0, CL), trade(-37.63, T0 + 1, CL), trade(-39, T0 + 2, CL),
                  quote(-36, -37, T0 + 3, CL)])
        out = self.make(impl).on_batch(c)
        assert kinds(out) == [(TRADE_OUTSIDE_QUOTE, 2), (CROSSED_MARKET, 3)]
        assert out.anomaly_value.tolist() == [1 * P, 1 * P]
        assert [s.detail for s in to_anomalies(out, c, REG)] == ["trade -39 < bid -38", "bid -36 > ask -37"]

    def test_no_outside_check_while_crossed_or_side_absent(self, impl: str) -> None:
        c = cols([quote(102, 101, T0), trade(200, T0 + 1), trade(1, T0 + 2),
                  quote(100, 101, T0 + 3, bid_size=0), trade(1, T0 + 4), trade(101.5, T0 + 5)])
        out = self.make(impl).on_batch(c)
        assert kinds(out) == [(CROSSED_MARKET, 0), (TRADE_OUTSIDE_QUOTE, 5)]

    def test_cooldown_in_event_time(self, impl: str) -> None:
        c = cols([quote(100, 101, T0), trade(102, T0 + 1), trade(103, T0 + S1), trade(99, T0 + S1 + 1),
                  trade(105, T0 + S1 + 1, CL), quote(100, 101, T0, CL), trade(105, T0 + S1 + 2, CL),
                  trade(102, T0 + S1 + 500 * MS), trade(102, T0 + 2 * S1 + 1)])
        out = self.make(impl).on_batch(c)
        assert kinds(out) == [(TRADE_OUTSIDE_QUOTE, 1), (TRADE_OUTSIDE_QUOTE, 3), (TRADE_OUTSIDE_QUOTE, 6),
                              (TRADE_OUTSIDE_QUOTE, 8)]
        out0 = self.make(impl, outside_quote_cooldown_ms=0).on_batch(c)
        assert out0.n_anomalies == 6

    def test_late_quote_older_than_current_is_ignored(self, impl: str) -> None:
        c = cols([quote(100, 101, T0 + 10), quote(90, 91, T0 + 5), trade(100.5, T0 + 11), trade(90.5, T0 + 12),
                  quote(102, 101, T0 + 6), quote(95, 96, T0 + 10), trade(95.5, T0 + 13)])
        out = self.make(impl, outside_quote_cooldown_ms=0).on_batch(c)
        # row 1 and 4 are superseded (no crossed alert from 4); row 5 has the same ts as the current: replaces it
        assert kinds(out) == [(TRADE_OUTSIDE_QUOTE, 3)]

    def test_samples_at_boundaries(self, impl: str) -> None:
        c = cols([
            quote(1, 2, T0 + 100, KC), trade(10, T0 + 200, GC), quote(3, 4, T0 + 300, GC),
            quote(5, 6, T0 + 400, GC),
            quote(7, 8, T0 + S1, CL),  # row 4: exactly on the boundary, crosses it, not in the sample
            quote(9, 10, T0 + S1 - 1, GC),  # late but the newest GC quote: used at the next boundary
            trade(1, T0 + 4 * S1 + 7, GC),  # row 6 jumps three boundaries: one sample set, the latest
            trade(1, T0 + 4 * S1 + 8, GC),
        ])
        out = self.make(impl).on_batch(c)
        gc_i, cl_i, kc_i = REG.index_of(GC), REG.index_of(CL), REG.index_of(KC)
        assert gc_i < cl_i < kc_i
        assert out.sample_instrument.tolist() == [gc_i, kc_i, gc_i, cl_i, kc_i]
        assert out.sample_bid.tolist() == [5 * P, 1 * P, 9 * P, 7 * P, 1 * P]
        assert out.sample_ask.tolist() == [6 * P, 2 * P, 10 * P, 8 * P, 2 * P]
        assert out.sample_quote_ts_event.tolist() == [T0 + 400, T0 + 100, T0 + S1 - 1, T0 + S1, T0 + 100]
        assert out.sample_ts.tolist() == [T0 + S1] * 2 + [T0 + 4 * S1] * 3
        assert out.sample_row.tolist() == [4, 4, 6, 6, 6]
        samples = to_samples(out, c, REG)
        assert [(s.instrument_id, s.ts_event, s.ts_recv) for s in samples[:2]] == [
            (GC, T0 + S1, T0 + S1), (KC, T0 + S1, T0 + S1)]
        assert samples[2].bid == 9 * P and samples[2].quote_ts_event == T0 + S1 - 1

    def test_no_samples_before_first_quote_or_first_row(self, impl: str) -> None:
        c = cols([trade(1, T0 + 5 * S1), trade(1, T0 + 9 * S1), quote(1, 2, T0 + 9 * S1 + 1)])
        out = self.make(impl).on_batch(c)
        assert out.n_samples == 0
        out2 = self.make(impl).on_batch(cols([quote(1, 2, T0 + 5 * S1 + 3)]))
        assert out2.n_samples == 0  # the first row ever starts the clock, it crosses nothing

    def test_late_rows_do_not_move_the_sampling_clock(self, impl: str) -> None:
        c = cols([quote(1, 2, T0 + 2 * S1), trade(1, T0 + 1), trade(1, T0 + 2 * S1 + 5), trade(1, T0 + 3 * S1)])
        out = self.make(impl).on_batch(c)
        assert out.sample_row.tolist() == [3] and out.sample_ts.tolist() == [T0 + 3 * S1]

    def test_one_sided_samples_stay_columnar(self, impl: str) -> None:
        c = cols([quote(1, 2, T0, GC, bid_size=0), quote(3, 4, T0, CL), trade(1, T0 + S1)])
        out = self.make(impl).on_batch(c)
        assert out.n_samples == 2 and out.sample_bid_size.tolist() == [0, 1]
        assert [s.instrument_id for s in to_samples(out, c, REG)] == [CL]

    def test_sample_interval_config(self, impl: str) -> None:
        c = cols([quote(1, 2, T0), trade(1, T0 + 250 * MS), trade(1, T0 + 600 * MS), trade(1, T0 + S1)])
        out = self.make(impl, sample_interval_ms=500).on_batch(c)
        assert out.sample_ts.tolist() == [T0 + 500 * MS, T0 + S1]

    def test_rejects_unvalidated_rows(self, impl: str) -> None:
        with pytest.raises(ValueError, match="validated"):
            self.make(impl).on_batch(cols([trade(1, T0, "NOPE.X")]))

    def test_snapshot_restore_mid_stream(self, impl: str) -> None:
        c = market_stream(6000, seed=4)
        full = self.make(impl).on_batch(c)
        tc = self.make(impl)
        first = tc.on_batch(c.take(slice(0, 2500)))
        snap = msgspec.json.decode(msgspec.json.encode(tc.snapshot()), type=TickCheckerSnapshot)
        tc2 = TickChecker.restore(TickChecksConfig(), snap, impl)  # type: ignore[arg-type]
        second = tc2.on_batch(c.take(slice(2500, None)))
        outputs_equal(full, concat_outputs([first, second], [2500, 3500]))
        assert full.n_samples > 0 and full.n_anomalies > 0

    def test_batching_invariance_stream(self, impl: str) -> None:
        c = market_stream(4000, seed=6)
        whole = run_split(impl, c, [])
        outputs_equal(whole, run_split(impl, c, list(range(1, 4000, 13))))
        outputs_equal(whole, run_split(impl, c, list(range(1, 4000))))

    @settings(max_examples=60, deadline=None)
    @given(data=st.data())
    def test_batching_invariance_property(self, impl: str, data: st.DataObject) -> None:
        row = st.tuples(st.booleans(), st.sampled_from([GC, CL]), st.integers(-3, 3), st.integers(-3, 3),
                        st.integers(0, 4000))
        rows = data.draw(st.lists(row, max_size=50))
        ticks: list[Tick] = [quote(a, b, T0 + t * MS, iid) if is_q else trade(a, T0 + t * MS, iid)
                             for is_q, iid, a, b, t in rows]
        c = cols(ticks)
        cuts = data.draw(st.lists(st.integers(0, len(rows)), max_size=8))
        cfg = TickChecksConfig(sample_interval_ms=500, outside_quote_cooldown_ms=300)
        outputs_equal(run_split(impl, c, [], cfg), run_split(impl, c, cuts, cfg))


def test_numba_matches_python_on_validated_dirty_stream() -> None:
    rng = np.random.default_rng(12)
    c = market_stream(200_000, seed=12)
    c.seq[:] = np.where(rng.random(len(c)) < 0.3, rng.integers(1, 10**6, len(c)), 0)  # some get rejected
    c.bid_size[rng.random(len(c)) < 0.01] = -1
    accepted = c.take(Validator(ValidateConfig(), N, "numba").on_batch(c).accepted)
    assert 100_000 < len(accepted) < len(c)
    a = TickChecker(TickChecksConfig(), N, "numba")
    b = TickChecker(TickChecksConfig(), N, "python")
    oa = a.on_batch(accepted)
    outputs_equal(oa, b.on_batch(accepted))
    assert a.snapshot() == b.snapshot()
    types = oa.anomaly_type.tolist()
    assert types.count(CROSSED_MARKET) > 100 and types.count(TRADE_OUTSIDE_QUOTE) > 100
    assert oa.n_samples > 100 * N - N


def test_config_checks() -> None:
    with pytest.raises(ValueError):
        TickChecksConfig(sample_interval_ms=0)
    with pytest.raises(msgspec.ValidationError):
        TickChecksConfig.from_dict({"sample_interval_s": 1})
