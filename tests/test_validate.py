from __future__ import annotations

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobs.validate import ValidateConfig, ValidateOutput, Validator, ValidatorSnapshot, dead_letters, gap_signals
from market.codec import decode_tick
from market.columns import KIND_QUOTE, KIND_TRADE, TickColumns
from market.events import AnomalyType, QuoteTick, Tick, TradeTick
from market.instruments import default_registry
from market.rejects import Reason

REG = default_registry()
N = len(REG)
GC, CL = "GC.COMEX", "CL.NYMEX"
MS = 1_000_000
T0 = 1_700_000_000_000_000_000
A, D, S = Reason.OK, Reason.DUPLICATE, Reason.STALE_SEQ  # accepted, duplicate, stale


def trade(iid: str = GC, seq: int = 0, size: int = 1, ts: int = T0, recv: int | None = None,
          price: int = 100) -> TradeTick:
    return TradeTick(iid, price, size, ts, ts if recv is None else recv, seq)


def quote(iid: str = GC, seq: int = 0, bid_size: int = 1, ask_size: int = 1, ts: int = T0,
          bid: int = 99, ask: int = 101) -> QuoteTick:
    return QuoteTick(iid, bid, ask, bid_size, ask_size, ts, ts, seq)


def cols(ticks: list[Tick]) -> TickColumns:
    return TickColumns.from_ticks(ticks, REG)


def seqs(iid: str, *ss: int) -> TickColumns:
    return cols([trade(iid, s) for s in ss])


def reasons(out: ValidateOutput) -> list[Reason]:
    return [Reason(int(r)) for r in out.reasons]


def dirty_stream(n: int, seed: int) -> TickColumns:
    """A stream with every kind of defect the validator checks, at a few percent each."""
    rng = np.random.default_rng(seed)
    c = TickColumns.empty(n)
    c.instrument[:] = rng.integers(0, N, n)
    c.instrument[rng.random(n) < 0.01] = -1
    c.kind[:] = rng.integers(0, 2, n)
    c.ts_event[:] = T0 + np.cumsum(rng.integers(0, 2 * MS, n)) - rng.integers(0, 50 * MS, n)
    c.ts_recv[:] = c.ts_event + rng.integers(0, 3 * MS, n)
    c.ts_event[rng.random(n) < 0.01] += 6000 * MS
    seq = np.zeros(n, dtype=np.int64)
    for k in range(N):
        m = np.flatnonzero(c.instrument == k)
        seq[m] = np.arange(1, m.size + 1) + rng.integers(-70, 3, m.size) * (rng.random(m.size) < 0.1)
    seq[rng.random(n) < 0.05] = 0
    seq[rng.random(n) < 0.002] = -3
    c.seq[:] = seq
    c.price[:] = rng.integers(-50, 50, n) * 10**9
    c.size[:] = rng.integers(-1, 5, n)
    c.bid[:] = c.price - 10**8
    c.ask[:] = c.price + 10**8
    c.bid_size[:] = rng.integers(-1, 4, n)
    c.ask_size[:] = rng.integers(-1, 4, n)
    return c


def outputs_equal(a: ValidateOutput, b: ValidateOutput) -> None:
    for name in ("reasons", "gap_instrument", "gap_expected", "gap_got", "gap_row"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def concat_outputs(parts: list[ValidateOutput], sizes: list[int]) -> ValidateOutput:
    offsets = np.cumsum([0, *sizes[:-1]])
    return ValidateOutput(
        np.concatenate([p.reasons for p in parts]),
        np.concatenate([p.gap_instrument for p in parts]),
        np.concatenate([p.gap_expected for p in parts]),
        np.concatenate([p.gap_got for p in parts]),
        np.concatenate([p.gap_row + off for p, off in zip(parts, offsets, strict=True)]),
    )


def run_split(impl: str, c: TickColumns, cuts: list[int], config: ValidateConfig | None = None) -> ValidateOutput:
    v = Validator(config or ValidateConfig(), N, impl)  # type: ignore[arg-type]
    bounds = [0, *sorted(cuts), len(c)]
    parts = [v.on_batch(c.take(slice(a, b))) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    return concat_outputs(parts, [b - a for a, b in zip(bounds[:-1], bounds[1:], strict=True)])


@pytest.mark.parametrize("impl", ["numba", "python"])
class TestValidator:
    def make(self, impl: str, **kw: int) -> Validator:
        return Validator(ValidateConfig(**kw), N, impl)  # type: ignore[arg-type]

    def test_clean_ticks_accepted(self, impl: str) -> None:
        out = self.make(impl).on_batch(cols([trade(seq=1), quote(seq=2), trade(CL, 1), quote(CL, 0)]))
        assert reasons(out) == [Reason.OK] * 4
        assert out.accepted.all() and out.n_gaps == 0 and out.reject_counts() == {}

    def test_unknown_instrument(self, impl: str) -> None:
        c = cols([trade("NOPE.X"), trade(GC)])
        c.instrument[1] = N  # out of range index is unknown too
        assert reasons(self.make(impl).on_batch(c)) == [Reason.UNKNOWN_INSTRUMENT] * 2

    def test_bad_trade_size(self, impl: str) -> None:
        out = self.make(impl).on_batch(cols([trade(size=0), trade(size=-5), trade(size=1)]))
        assert reasons(out) == [Reason.BAD_SIZE, Reason.BAD_SIZE, Reason.OK]

    def test_bad_quote(self, impl: str) -> None:
        c = cols([quote(bid_size=-1), quote(ask_size=-1), quote(bid_size=0, ask_size=0),
                  quote(bid_size=0, ask_size=3), quote(bid_size=3, ask_size=0)])
        assert reasons(self.make(impl).on_batch(c)) == [Reason.BAD_QUOTE] * 3 + [Reason.OK] * 2

    def test_quote_size_fields_ignored_for_trades_and_vice_versa(self, impl: str) -> None:
        c = cols([trade(), quote()])
        c.bid_size[0] = c.ask_size[0] = -1  # meaningless on a trade row
        c.size[1] = -1  # meaningless on a quote row
        assert reasons(self.make(impl).on_batch(c)) == [Reason.OK, Reason.OK]

    def test_future_timestamp_boundary(self, impl: str) -> None:
        c = cols([trade(ts=T0 + 5000 * MS, recv=T0), trade(ts=T0 + 5000 * MS + 1, recv=T0),
                  trade(ts=T0 - 10**12, recv=T0)])
        assert reasons(self.make(impl).on_batch(c)) == [Reason.OK, Reason.FUTURE_TIMESTAMP, Reason.OK]
        c2 = cols([trade(ts=T0 + 1, recv=T0)])
        assert reasons(self.make(impl, max_future_ms=0).on_batch(c2)) == [Reason.FUTURE_TIMESTAMP]

    def test_first_failing_check_wins(self, impl: str) -> None:
        v = self.make(impl)
        v.on_batch(seqs(GC, 1))
        future = T0 + 10**13
        c = cols([
            trade("NOPE.X", seq=1, size=0, ts=future),  # unknown beats bad size, future, duplicate
            trade(GC, seq=1, size=0, ts=future),  # bad size beats future and duplicate
            quote(GC, seq=1, bid_size=0, ask_size=0, ts=future),  # bad quote beats future and duplicate
            trade(GC, seq=1, ts=future, recv=T0),  # future beats duplicate
            trade(GC, seq=1),  # duplicate
        ])
        assert reasons(v.on_batch(c)) == [Reason.UNKNOWN_INSTRUMENT, Reason.BAD_SIZE, Reason.BAD_QUOTE,
                                          Reason.FUTURE_TIMESTAMP, Reason.DUPLICATE]

    def test_duplicates_and_out_of_order_within_window(self, impl: str) -> None:
        out = self.make(impl).on_batch(seqs(GC, 1, 2, 3, 2, 6, 4, 4, 5, 6, 3))
        assert reasons(out) == [A, A, A, D, A, A, D, A, D, D]

    def test_seq_is_per_instrument(self, impl: str) -> None:
        out = self.make(impl).on_batch(cols([trade(GC, 1), trade(CL, 1), quote(CL, 2), quote(GC, 2)]))
        assert out.accepted.all() and out.n_gaps == 0

    def test_stale_beyond_window(self, impl: str) -> None:
        out = self.make(impl, seq_window=4).on_batch(seqs(GC, 10, 6, 7, 7, 8, 1))
        assert reasons(out) == [A, S, A, D, A, S]

    def test_full_64_window_edges(self, impl: str) -> None:
        out = self.make(impl).on_batch(seqs(GC, 100, 37, 37, 36, 99))
        assert reasons(out) == [A, A, D, S, A]

    def test_jump_beyond_window_clears_history(self, impl: str) -> None:
        out = self.make(impl).on_batch(seqs(GC, 1, 2, 500, 499, 437, 436, 500))
        assert reasons(out) == [A, A, A, A, A, S, D]
        assert out.gap_expected.tolist() == [3] and out.gap_got.tolist() == [500]

    def test_unsequenced_ticks_never_deduplicated(self, impl: str) -> None:
        v = self.make(impl)
        v.on_batch(seqs(GC, 5))
        before = v.snapshot()
        out = v.on_batch(seqs(GC, 0, 0, 0))
        assert out.accepted.all()
        assert v.snapshot() == before

    def test_negative_seq_is_malformed(self, impl: str) -> None:
        assert reasons(self.make(impl).on_batch(seqs(GC, -1))) == [Reason.MALFORMED]

    def test_unknown_kind_is_malformed(self, impl: str) -> None:
        c = seqs(GC, 1)
        c.kind[0] = 7
        assert reasons(self.make(impl).on_batch(c)) == [Reason.MALFORMED]

    def test_rejected_rows_do_not_change_state(self, impl: str) -> None:
        v = self.make(impl)
        v.on_batch(seqs(GC, 1))
        c = cols([trade(GC, 9, size=0), trade(GC, 9, ts=T0 + 10**13, recv=T0), trade(GC, 2), trade(GC, 9)])
        out = v.on_batch(c)
        assert reasons(out) == [Reason.BAD_SIZE, Reason.FUTURE_TIMESTAMP, Reason.OK, Reason.OK]
        assert out.gap_row.tolist() == [3] and out.gap_expected.tolist() == [3] and out.gap_got.tolist() == [9]

    def test_gap_events(self, impl: str) -> None:
        c = cols([trade(GC, 7), trade(CL, 1), trade(GC, 8), trade(GC, 12), trade(CL, 3), trade(GC, 10)])
        out = self.make(impl).on_batch(c)
        assert out.accepted.all()  # the first seq seen is no gap; a gap's filler (10) is accepted late
        gc_i, cl_i = REG.index_of(GC), REG.index_of(CL)
        assert out.gap_instrument.tolist() == [gc_i, cl_i]
        assert out.gap_expected.tolist() == [9, 2]
        assert out.gap_got.tolist() == [12, 3]
        assert out.gap_row.tolist() == [3, 4]
        sigs = gap_signals(out, c, REG)
        assert [(s.instrument_id, s.anomaly, s.value) for s in sigs] == [
            (GC, AnomalyType.SEQUENCE_GAP, 3.0), (CL, AnomalyType.SEQUENCE_GAP, 1.0)]
        assert sigs[0].ts_event == int(c.ts_event[3]) and sigs[0].ts_recv == int(c.ts_recv[3])
        assert "expected seq 9, got 12" in sigs[0].detail

    def test_negative_prices_are_valid(self, impl: str) -> None:
        c = cols([trade(CL, 1, price=-37_630_000_000), quote(CL, 2, bid=-38 * 10**9, ask=-37 * 10**9)])
        assert self.make(impl).on_batch(c).accepted.all()

    def test_dead_letters(self, impl: str) -> None:
        ticks: list[Tick] = [trade(GC, 1), trade(GC, 1, size=3), trade(GC, 2, size=0),
                             trade(GC, 3, ts=T0 + 6000 * MS, recv=T0), trade("NOPE.X", 1)]
        c = cols(ticks)
        out = self.make(impl).on_batch(c)
        dls = dead_letters(out, c, REG)
        assert [d.reason for d in dls] == ["duplicate", "bad_size", "future_timestamp", "unknown_instrument"]
        assert out.reject_counts() == {"duplicate": 1, "bad_size": 1, "future_timestamp": 1,
                                       "unknown_instrument": 1}
        assert all(d.source == "validate" for d in dls)
        for d, i in zip(dls, [1, 2, 3], strict=False):
            assert decode_tick(d.raw) == ticks[i]
            assert d.instrument_id == GC and d.ts_event == ticks[i].ts_event and d.ts_recv == ticks[i].ts_recv
        assert "6000 ms" in dls[2].detail
        assert dls[3].instrument_id == ""

    def test_snapshot_restore_mid_stream(self, impl: str) -> None:
        c = dirty_stream(5000, seed=3)
        full = self.make(impl).on_batch(c)
        v = self.make(impl)
        first = v.on_batch(c.take(slice(0, 2000)))
        blob = msgspec.json.encode(v.snapshot())
        v2 = Validator.restore(ValidateConfig(), msgspec.json.decode(blob, type=ValidatorSnapshot), impl)  # type: ignore[arg-type]
        second = v2.on_batch(c.take(slice(2000, None)))
        outputs_equal(full, concat_outputs([first, second], [2000, 3000]))

    def test_batching_invariance_dirty_stream(self, impl: str) -> None:
        c = dirty_stream(3000, seed=5)
        whole = run_split(impl, c, [])
        outputs_equal(whole, run_split(impl, c, list(range(1, 3000, 7))))
        outputs_equal(whole, run_split(impl, c, list(range(1, 3000))))

    @settings(max_examples=60, deadline=None)
    @given(data=st.data())
    def test_batching_invariance_property(self, impl: str, data: st.DataObject) -> None:
        rows = data.draw(st.lists(st.tuples(st.sampled_from([GC, CL]), st.integers(0, 90), st.integers(-1, 2)),
                                  max_size=60))
        c = cols([trade(iid, s, size=z) for iid, s, z in rows])
        cuts = data.draw(st.lists(st.integers(0, len(rows)), max_size=8))
        outputs_equal(run_split(impl, c, [], ValidateConfig(seq_window=16)),
                      run_split(impl, c, cuts, ValidateConfig(seq_window=16)))


def test_numba_matches_python_on_dirty_stream() -> None:
    c = dirty_stream(200_000, seed=11)
    a = Validator(ValidateConfig(), N, "numba")
    b = Validator(ValidateConfig(), N, "python")
    oa, ob = a.on_batch(c), b.on_batch(c)
    outputs_equal(oa, ob)
    assert a.snapshot() == b.snapshot()
    counts = oa.reject_counts()  # the stream really exercises every check
    for label in ("unknown_instrument", "bad_size", "bad_quote", "future_timestamp", "duplicate", "stale_seq",
                  "malformed"):
        assert counts.get(label, 0) > 0, label
    assert oa.n_gaps > 100 and oa.accepted.sum() > 100_000
    assert (c.kind == KIND_TRADE).any() and (c.kind == KIND_QUOTE).any()


def test_config_checks() -> None:
    with pytest.raises(ValueError):
        ValidateConfig(seq_window=65)
    with pytest.raises(msgspec.ValidationError):
        ValidateConfig.from_dict({"seq_window": 0})
    with pytest.raises(msgspec.ValidationError):
        ValidateConfig.from_dict({"max_future_s": 1})
    with pytest.raises(ValueError):
        Validator(ValidateConfig(), N, "cython")  # type: ignore[arg-type]
