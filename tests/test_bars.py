"""Event-time OHLCV bars: the streaming BarAggregator (numba kernel and Python reference run the same tests),
the batch kernel of `commodex bars`, and the file front end (jobs/barfile.py)."""

from __future__ import annotations

from dataclasses import fields
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobs.barfile import FileTicks, bars_file, compute_bars, read_table
from jobs.bars import BarAggregator, BarOutput, BarsConfig, BarSnapshot, late_dead_letters, to_bars
from jobs.bars_reference import batch_bars_reference
from market.columns import KIND_QUOTE, KIND_TRADE, TickColumns
from market.fixedpoint import PRICE_SCALE, to_fixed
from market.instruments import default_registry

S = 1_000_000_000  # ns per second
T0 = 1_700_000_040 * S  # a whole minute, so 1s and 1m windows both start here
IMPLS = ["numba", "python"]


def ticks(rows: list[tuple]) -> TickColumns:
    """rows: (instrument, kind, ts_event, price, size[, ts_recv]); ts_recv defaults to ts_event + 1 ms."""
    c = TickColumns.empty(len(rows))
    for i, row in enumerate(rows):
        inst, kind, ts, price, size = row[:5]
        c.instrument[i], c.kind[i], c.ts_event[i], c.price[i], c.size[i] = inst, kind, ts, price, size
        c.ts_recv[i] = row[5] if len(row) > 5 else ts + 1_000_000
        c.seq[i] = i + 1
    return c


def trade(inst: int, ts: int, price: float | int | str, size: int, ts_recv: int | None = None) -> tuple:
    fixed = to_fixed(price) if not isinstance(price, int) else price * PRICE_SCALE
    return (inst, KIND_TRADE, ts, fixed, size) + ((ts_recv,) if ts_recv is not None else ())


def quote(inst: int, ts: int, ts_recv: int | None = None) -> tuple:
    return (inst, KIND_QUOTE, ts, 0, 0) + ((ts_recv,) if ts_recv is not None else ())


def cfg(*intervals: str, ooo_ms: int = 0, lateness_ms: int = 0) -> BarsConfig:
    return BarsConfig(intervals=intervals, out_of_orderness_ms=ooo_ms, allowed_lateness_ms=lateness_ms)


def rows_of(out: BarOutput) -> list[dict[str, int]]:
    cols = {f.name: getattr(out, f.name).tolist() for f in fields(out) if f.name != "late_rows"}
    return [{n: v[i] for n, v in cols.items()} for i in range(len(out))]


def random_stream(n: int, n_inst: int, seed: int, late_share: float = 0.02) -> TickColumns:
    """Mostly time-ordered trades and quotes with jitter inside the out-of-orderness bound, some stragglers
    within the lateness and some beyond it, prices around zero (negative too), sizes 0..500."""
    rng = np.random.default_rng(seed)
    c = TickColumns.empty(n)
    c.instrument[:] = rng.integers(0, n_inst, n)
    c.kind[:] = np.where(rng.random(n) < 0.25, KIND_QUOTE, KIND_TRADE)
    ts = T0 + np.cumsum(rng.integers(0, 40_000_000, n))
    ts -= rng.integers(0, 2_000_000_000, n) * (rng.random(n) < 0.2)  # within out-of-orderness (2 s)
    ts -= rng.integers(2_000_000_000, 30_000_000_000, n) * (rng.random(n) < late_share)  # some beyond lateness
    c.ts_event[:] = ts
    c.ts_recv[:] = T0 + np.arange(n) * 1000
    c.seq[:] = np.arange(1, n + 1)
    c.price[:] = rng.integers(-3_000_000_000, 90_000_000_000, n)
    c.size[:] = rng.integers(0, 500, n)
    return c


def run(agg: BarAggregator, stream: TickColumns, cuts: list[int]) -> tuple[list[dict[str, int]], list[int]]:
    """Feed `stream` cut at `cuts`, then flush; trigger/late rows mapped back to stream rows."""
    bars: list[dict[str, int]] = []
    late: list[int] = []
    bounds = [0, *sorted(set(cuts)), len(stream)]
    for a, b in zip(bounds, bounds[1:], strict=False):
        out = agg.on_batch(stream.take(slice(a, b)))
        for row in rows_of(out):
            row["trigger_row"] += a
            bars.append(row)
        late += (out.late_rows + a).tolist()
    bars += rows_of(agg.flush())
    return bars, late


@pytest.mark.parametrize("impl", IMPLS)
class TestBarAggregator:
    def test_exact_ohlcv_and_emission(self, impl: str) -> None:
        agg = BarAggregator(cfg("1s", "1m"), 2, impl)  # type: ignore[arg-type]
        out = agg.on_batch(ticks([
            trade(0, T0 + 100_000_000, "100", 1),
            trade(1, T0 + 150_000_000, "7.25", 10),
            trade(0, T0 + 200_000_000, "102", 3),
            trade(0, T0 + 900_000_000, "101", 2),
            trade(0, T0 + 2_500_000_000, "99", 5),  # watermark T0+2.5s: both [T0, T0+1s) windows fire
        ]))
        assert out.late_rows.tolist() == []
        got = rows_of(out)
        assert [(r["instrument"], r["interval_ns"], r["start"]) for r in got] == [(0, S, T0), (1, S, T0)]
        b = got[0]
        assert (b["open"], b["high"], b["low"], b["close"]) == (100 * PRICE_SCALE, 102 * PRICE_SCALE,
                                                                100 * PRICE_SCALE, 101 * PRICE_SCALE)
        assert (b["volume"], b["trades"], b["revision"]) == (6, 3, 0)
        assert b["vwap"] == round(Fraction(100 + 306 + 202, 6) * PRICE_SCALE)  # 101.333333333
        assert (b["trigger_row"], b["ts_recv"]) == (4, T0 + 2_501_000_000)
        assert got[1]["vwap"] == to_fixed("7.25")
        # The empty second [T0+1s, T0+2s) emits nothing; flush emits by (interval, instrument, start).
        flushed = rows_of(agg.flush())
        assert [(r["interval_ns"], r["instrument"], r["start"]) for r in flushed] == [
            (S, 0, T0 + 2 * S), (60 * S, 0, T0), (60 * S, 1, T0)]
        assert all(r["trigger_row"] == -1 and r["ts_recv"] == T0 + 2_501_000_000 for r in flushed)
        minute = flushed[1]
        assert (minute["open"], minute["close"], minute["volume"], minute["trades"]) == (
            100 * PRICE_SCALE, 99 * PRICE_SCALE, 11, 4)

    def test_vwap_rounds_half_to_even(self, impl: str) -> None:
        # fixed-point units: (p1 + p2) / 2 lands exactly on .5; ties go to the even neighbour
        pairs = [(1, 2, 2), (2, 3, 2), (5, 6, 6), (-1, -2, -2), (-2, -3, -2), (-7, 8, 0), (9, 10, 10)]
        rows = []
        for k, (p1, p2, _) in enumerate(pairs):
            rows += [(k, KIND_TRADE, T0 + 1, p1, 1), (k, KIND_TRADE, T0 + 2, p2, 1)]
        agg = BarAggregator(cfg("1s"), len(pairs), impl)  # type: ignore[arg-type]
        agg.on_batch(ticks(rows))
        out = agg.flush()
        assert out.vwap.tolist() == [want for _, _, want in pairs]

    def test_out_of_order_within_bound(self, impl: str) -> None:
        agg = BarAggregator(cfg("1s", ooo_ms=2000), 1, impl)  # type: ignore[arg-type]
        out = agg.on_batch(ticks([
            trade(0, T0 + 500_000_000, "10", 1),
            trade(0, T0 + 200_000_000, "9", 1),  # earlier than the first: new open
            trade(0, T0 + 200_000_000, "8", 1),  # tie on the smallest ts: the first arrival stays open
            trade(0, T0 + 900_000_000, "11", 1),
            trade(0, T0 + 900_000_000, "12", 1),  # tie on the largest ts: the last arrival is close
            trade(0, T0 + 700_000_000, "13", 1),  # earlier than the close: high only
            trade(0, T0 + 2_900_000_000, "1", 1),  # watermark T0 + 0.9 s: not due yet
        ]))
        assert len(out) == 0 and out.late_rows.tolist() == []
        out = agg.on_batch(ticks([quote(0, T0 + 3_000_000_000)]))  # watermark T0 + 1 s: due
        (b,) = rows_of(out)
        assert (b["open"], b["close"], b["high"], b["low"]) == (9 * PRICE_SCALE, 12 * PRICE_SCALE,
                                                                13 * PRICE_SCALE, 8 * PRICE_SCALE)
        assert (b["trades"], b["trigger_row"]) == (6, 0)

    def test_late_within_lateness_revises(self, impl: str) -> None:
        agg = BarAggregator(cfg("1s", "1m", lateness_ms=5000), 1, impl)  # type: ignore[arg-type]
        out = agg.on_batch(ticks([
            trade(0, T0 + 100_000_000, "50", 2),
            trade(0, T0 + 1_500_000_000, "51", 1),  # fires [T0, T0+1s)
            trade(0, T0 + 300_000_000, "49", 4),  # late but within lateness: revision 1, emitted now
            trade(0, T0 + 50_000_000, "52", 1),  # revision 2, and a new open (earliest ts)
        ]))
        got = rows_of(out)
        assert [(r["start"], r["revision"], r["trigger_row"]) for r in got] == [(T0, 0, 1), (T0, 1, 2), (T0, 2, 3)]
        assert [r["volume"] for r in got] == [2, 6, 7]
        assert got[2]["open"] == 52 * PRICE_SCALE and got[2]["low"] == 49 * PRICE_SCALE
        assert got[2]["close"] == 49 * PRICE_SCALE  # ts 0.3 s is the latest in the window
        assert got[2]["vwap"] == round(Fraction(50 * 2 + 49 * 4 + 52, 7) * PRICE_SCALE)
        minute = rows_of(agg.flush())[-1]
        assert minute["interval_ns"] == 60 * S and minute["volume"] == 8 and minute["revision"] == 0

    def test_window_due_while_empty_is_emitted_on_first_trade(self, impl: str) -> None:
        agg = BarAggregator(cfg("1s", lateness_ms=5000), 1, impl)  # type: ignore[arg-type]
        out = agg.on_batch(ticks([
            trade(0, T0 + 3_200_000_000, "5", 1),
            trade(0, T0 + 1_400_000_000, "4", 1),  # window [T0+1s, T0+2s) came due empty
        ]))
        (b,) = rows_of(out)
        assert (b["start"], b["revision"], b["trigger_row"], b["volume"]) == (T0 + S, 0, 1, 1)

    def test_beyond_lateness_is_late_everywhere(self, impl: str) -> None:
        reg = default_registry()
        agg = BarAggregator(cfg("1s", "1m", lateness_ms=1000), len(reg), impl)  # type: ignore[arg-type]
        batch = ticks([
            trade(2, T0 + 100_000_000, "1300", 1),
            trade(2, T0 + 5_000_000_000, "1301", 1),  # watermark T0+5s
            trade(2, T0 + 200_000_000, "1299", 9),  # 1s window ended T0+1s, +1s lateness <= wm: late
            quote(2, T0 + 300_000_000),  # quotes follow the same rule: late too
            trade(2, T0 + 3_999_999_999, "1302", 1),  # end T0+4s + 1s lateness == wm: late (bound inclusive)
            trade(2, T0 + 4_200_000_000, "1303", 1),  # end T0+5s + 1s > wm: within lateness
        ])
        out = agg.on_batch(batch)
        assert out.late_rows.tolist() == [2, 3, 4]
        assert [(r["start"], r["revision"]) for r in rows_of(out)] == [(T0, 0), (T0 + 4 * S, 0)]
        dl = late_dead_letters(out, batch, reg)
        assert [(d.reason, d.source, d.instrument_id, d.ts_event) for d in dl] == [
            ("late", "bars", "GC.COMEX", T0 + 200_000_000), ("late", "bars", "GC.COMEX", T0 + 300_000_000),
            ("late", "bars", "GC.COMEX", T0 + 3_999_999_999)]
        # Late for 1s means excluded from 1m too: every interval aggregates the same trades.
        minute = [r for r in rows_of(agg.flush()) if r["interval_ns"] == 60 * S]
        assert minute[0]["volume"] == 3 and minute[0]["low"] == 1300 * PRICE_SCALE

    def test_quote_advances_watermark_and_flush_ends_input(self, impl: str) -> None:
        agg = BarAggregator(cfg("1s"), 3, impl)  # type: ignore[arg-type]
        out = agg.on_batch(ticks([trade(1, T0 + 10, "3", 1), quote(2, T0 + 5 * S, T0 + 77)]))
        (b,) = rows_of(out)
        assert (b["instrument"], b["trigger_row"], b["ts_recv"]) == (1, 1, T0 + 77)
        assert agg.watermark == T0 + 5 * S
        assert len(agg.flush()) == 0
        out = agg.on_batch(ticks([trade(0, T0 + 9 * S, "3", 1)]))  # after flush every trade is late
        assert out.late_rows.tolist() == [0] and len(out) == 0

    def test_negative_prices(self, impl: str) -> None:
        agg = BarAggregator(cfg("1m"), 1, impl)  # type: ignore[arg-type]
        prices = ["1.10", "-37.63", "-40.32", "-2.5", "0"]
        agg.on_batch(ticks([trade(0, T0 + k * S, p, 3 + k) for k, p in enumerate(prices)]))
        (b,) = rows_of(agg.flush())
        fixed = [to_fixed(p) for p in prices]
        assert (b["open"], b["high"], b["low"], b["close"]) == (fixed[0], max(fixed), min(fixed), fixed[-1])
        notional = sum(p * (3 + k) for k, p in enumerate(fixed))
        assert b["vwap"] == round(Fraction(notional, b["volume"])) < 0

    def test_huge_values_use_exact_wide_accumulator(self, impl: str) -> None:
        # |price deviation| * size far beyond int64: the kernel's slow two-limb path must stay exact
        prices = [2**60, -(2**60), 2**59 + 12345, 3, -(2**58) - 1]
        sizes = [2**40, 2**41 + 3, 7, 2**45, 2**38]
        agg = BarAggregator(cfg("1s"), 1, impl)  # type: ignore[arg-type]
        agg.on_batch(ticks([(0, KIND_TRADE, T0 + k, p, q) for k, (p, q) in enumerate(zip(prices, sizes,
                                                                                            strict=True))]))
        (b,) = rows_of(agg.flush())
        assert b["volume"] == sum(sizes)
        assert b["vwap"] == round(Fraction(sum(p * q for p, q in zip(prices, sizes, strict=True)), sum(sizes)))

    def test_zero_volume_window_reports_close_as_vwap(self, impl: str) -> None:
        agg = BarAggregator(cfg("1s"), 1, impl)  # type: ignore[arg-type]
        agg.on_batch(ticks([trade(0, T0, "5", 0), trade(0, T0 + 1, "6", 0)]))
        (b,) = rows_of(agg.flush())
        assert (b["volume"], b["trades"], b["vwap"]) == (0, 2, 6 * PRICE_SCALE)

    def test_batching_invariance(self, impl: str) -> None:
        stream = random_stream(6000, 5, seed=11)
        config = BarsConfig(intervals=("1s", "5s", "1m"))
        whole = run(BarAggregator(config, 5, impl), stream, [])  # type: ignore[arg-type]
        assert whole[1] and any(r["revision"] for r in whole[0])  # the stream exercises lateness and revisions
        rng = np.random.default_rng(5)
        for n_cuts in (1, 17, 400):
            cuts = rng.integers(0, len(stream), n_cuts).tolist()
            assert run(BarAggregator(config, 5, impl), stream, cuts) == whole  # type: ignore[arg-type]
        assert run(BarAggregator(config, 5, impl), stream, list(range(len(stream)))) == whole  # type: ignore[arg-type]

    @settings(max_examples=25, deadline=None)
    @given(data=st.data())
    def test_batching_invariance_property(self, impl: str, data: st.DataObject) -> None:
        n = data.draw(st.integers(1, 120))
        seed = data.draw(st.integers(0, 10_000))
        stream = random_stream(n, 3, seed=seed, late_share=0.1)
        cuts = data.draw(st.lists(st.integers(0, n), max_size=12))
        config = cfg("1s", "3s", ooo_ms=500, lateness_ms=1500)
        whole = run(BarAggregator(config, 3, impl), stream, [])  # type: ignore[arg-type]
        assert run(BarAggregator(config, 3, impl), stream, cuts) == whole  # type: ignore[arg-type]

    @pytest.mark.parametrize("restore_impl", IMPLS)
    @pytest.mark.parametrize("codec", ["json", "msgpack"])
    def test_snapshot_restore_continues_identically(self, impl: str, restore_impl: str, codec: str) -> None:
        stream = random_stream(5000, 4, seed=3)
        config = BarsConfig(intervals=("1s", "1m"))
        whole = run(BarAggregator(config, 4, impl), stream, [2500])  # type: ignore[arg-type]
        first = BarAggregator(config, 4, impl)  # type: ignore[arg-type]
        head = rows_of(first.on_batch(stream.take(slice(0, 2500))))
        enc, dec = (msgspec.json, msgspec.json) if codec == "json" else (msgspec.msgpack, msgspec.msgpack)
        snap = dec.decode(enc.encode(first.snapshot()), type=BarSnapshot)
        second = BarAggregator.restore(config, snap, restore_impl)  # type: ignore[arg-type]
        assert second.snapshot() == snap
        tail = rows_of(second.on_batch(stream.take(slice(2500, len(stream)))))
        for row in tail:
            row["trigger_row"] += 2500
        assert head + tail + rows_of(second.flush()) == whole[0]

    def test_unvalidated_instrument_index_is_refused(self, impl: str) -> None:
        agg = BarAggregator(cfg("1s"), 2, impl)  # type: ignore[arg-type]
        for bad in (-1, 2):
            with pytest.raises(ValueError, match="instrument index"):
                agg.on_batch(ticks([trade(bad, T0, "1", 1)]))

    def test_restore_rejects_other_config(self, impl: str) -> None:
        agg = BarAggregator(cfg("1s"), 1, impl)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="different"):
            BarAggregator.restore(cfg("1s", lateness_ms=7), agg.snapshot(), impl)  # type: ignore[arg-type]

    def test_to_bars(self, impl: str) -> None:
        reg = default_registry()
        agg = BarAggregator(cfg("1s"), len(reg), impl)  # type: ignore[arg-type]
        out = agg.on_batch(ticks([trade(4, T0, "80.5", 2, T0 + 5), trade(4, T0 + 3 * S, "81", 1, T0 + 3 * S + 9)]))
        (bar,) = to_bars(out, reg)
        assert (bar.instrument_id, bar.start, bar.ts_event, bar.ts_recv, bar.interval_ns) == (
            "CL.NYMEX", T0, T0 + S, T0 + 3 * S + 9, S)
        assert (bar.open, bar.volume, bar.revision) == (to_fixed("80.5"), 2, 0)


def test_numba_equals_python_on_200k_ticks() -> None:
    stream = random_stream(200_000, 11, seed=99)
    config = BarsConfig()
    got = {impl: run(BarAggregator(config, 11, impl), stream, [70_000, 150_000]) for impl in IMPLS}  # type: ignore[arg-type]
    assert got["numba"] == got["python"]
    bars, late = got["numba"]
    assert len(bars) > 10_000 and len(late) > 100 and sum(r["revision"] > 0 for r in bars) > 100


def test_config_checks() -> None:
    with pytest.raises(ValueError):
        BarsConfig(intervals=())
    with pytest.raises(ValueError):
        BarsConfig(intervals=("1s", "1000ms"))
    with pytest.raises(msgspec.ValidationError):
        BarsConfig.from_dict({"intervals": ["1s"], "lateness_ms": 3})


# -- the batch kernel of `commodex bars` -------------------------------------------------------------------------


def batch(impl: str, inst: list[int], ts: list[int], price: list[int], size: list[int], interval: int) -> list[tuple]:
    if impl == "python":
        return [(b.instrument, b.start, b.open, b.high, b.low, b.close, b.volume, b.vwap, b.trades)
                for b in batch_bars_reference(inst, ts, price, size, interval)]
    names = [str(k) for k in range(max(inst, default=-1) + 1)]
    ft = FileTicks(names, np.array(inst, np.int32), np.array(ts, np.int64), np.array(price, np.int64),
                   np.array(size, np.int64))
    fb = compute_bars(ft, interval)
    return list(zip(*(getattr(fb, c).tolist() for c in ("instrument", "start", "open", "high", "low", "close",
                                                        "volume", "vwap", "trades")), strict=True))


@pytest.mark.parametrize("impl", IMPLS)
class TestBatchBars:
    def test_exact_bars_in_any_row_order(self, impl: str) -> None:
        inst = [1, 0, 1, 0, 0, 1]
        ts = [5 * S, 2 * S, 61 * S, S, S, -S]  # instrument 1 also trades before 1970: floor to the minute
        price = [10, 20, 30, 21, 19, -5]
        size = [1, 2, 3, 4, 0, 6]
        got = batch(impl, inst, ts, price, size, 60 * S)
        assert got == [
            (0, 0, 21, 21, 19, 20, 6, round(Fraction(20 * 2 + 21 * 4, 6)), 3),  # tie at ts=S: file order
            (1, -60 * S, -5, -5, -5, -5, 6, -5, 1),
            (1, 0, 10, 10, 10, 10, 1, 10, 1),
            (1, 60 * S, 30, 30, 30, 30, 3, 30, 1),
        ]

    def test_zero_volume_bar_vwap_is_close(self, impl: str) -> None:
        assert batch(impl, [0, 0], [0, 1], [7, 8], [0, 0], S) == [(0, 0, 7, 8, 7, 8, 0, 8, 2)]

    def test_random_matches_streaming_semantics(self, impl: str) -> None:
        rng = np.random.default_rng(4)
        n = 3000
        inst = rng.integers(0, 4, n).tolist()
        ts = rng.integers(-10 * S, 600 * S, n).tolist()
        price = rng.integers(-10**12, 10**12, n).tolist()
        size = rng.integers(0, 10**6, n).tolist()
        got = batch(impl, inst, ts, price, size, 60 * S)
        # the streaming aggregator with a watermark that never passes (huge out-of-orderness) sees all rows
        agg = BarAggregator(BarsConfig(intervals=("1m",), out_of_orderness_ms=10**6), 4, impl)  # type: ignore[arg-type]
        c = ticks([(i, KIND_TRADE, t, p, q) for i, t, p, q in zip(inst, ts, price, size, strict=True)])
        assert len(agg.on_batch(c)) == 0
        out = agg.flush()
        assert got == list(zip(*(getattr(out, c).tolist() for c in ("instrument", "start", "open", "high", "low",
                                                                     "close", "volume", "vwap", "trades")),
                               strict=True))


def test_batch_numba_equals_python_sorted_large() -> None:
    rng = np.random.default_rng(8)
    n = 50_000
    inst = np.sort(rng.integers(0, 20, n))
    ts = np.concatenate([np.sort(rng.integers(0, 3600 * S, int((inst == k).sum()))) for k in range(20)])
    price = rng.integers(10**11, 10**13, n)
    size = rng.integers(1, 40_000, n)
    args = (inst.tolist(), ts.tolist(), price.tolist(), size.tolist(), 60 * S)
    assert batch("numba", *args) == batch("python", *args)


# -- `commodex bars` files -------------------------------------------------------------------------------------


def read_csv_rows(path: Path) -> list[list[str]]:
    return [line.split(",") for line in path.read_text().splitlines()]


def test_bars_file_csv_iso_times_and_rejects(tmp_path: Path) -> None:
    src = tmp_path / "ticks.csv"
    src.write_text(
        "ts,price,size,instrument\n"
        "2024-03-01T10:00:00Z,100.5,2,CL\n"
        "2024-03-01T11:00:30+01:00,101,1,CL\n"  # = 10:00:30Z, same minute
        "1709287255000000000,99.25,3,CL\n"  # int ns = 10:00:55Z
        "2024-03-01T10:01:00.000000001Z,98,5,CL\n"
        "2024-03-01 10:01:05Z,97,1,CL\n"  # space separator: still ISO 8601
        "2024-03-01T10:00:10Z,-37.63,4,WTI spot\n"
        "2024-03-01T10:00:11Z,NaN,4,CL\n"
        "2024-03-01T10:00:12Z,abc,4,CL\n"
        "2024-03-01T10:00:13Z,100,-1,CL\n"
        "2024-03-01T10:00:14Z,100,1.5,CL\n"
        "2024-03-01T10:00:15,100,1,CL\n"  # naive: rejected, never guessed
        "yesterday,100,1,CL\n"
        "2024-03-01T10:00:16Z,100,1,\n"
        "2024-03-01T10:00:17Z,100,0,CL\n"  # zero size is kept (see barfile docstring)
    )
    out = tmp_path / "bars.csv"
    stats = bars_file(src, "1m", out)
    assert read_csv_rows(out) == [
        ["instrument", "start", "open", "high", "low", "close", "volume", "vwap", "trades"],
        # 100.5x2 + 101x1 + 99.25x3 (+ the zero-size 100 print) -> vwap 599.75 / 6 = 99.9583333333...
        ["CL", "2024-03-01T10:00:00Z", "100.5", "101", "99.25", "99.25", "6", "99.958333333", "4"],
        ["CL", "2024-03-01T10:01:00Z", "98", "98", "97", "97", "6", "97.833333333", "2"],
        ["WTI spot", "2024-03-01T10:00:00Z", "-37.63", "-37.63", "-37.63", "-37.63", "4", "-37.63", "1"],
    ]
    rejects = read_csv_rows(Path(stats.rejects_path))
    assert rejects[0][:3] == ["row", "reason", "detail"]
    assert [(r[0], r[1]) for r in rejects[1:]] == [("6", "nan_price"), ("7", "malformed"), ("8", "bad_size"),
                                                   ("9", "bad_size"), ("10", "malformed"), ("11", "malformed"),
                                                   ("12", "malformed")]
    assert (stats.rows, stats.trades, stats.rejected, stats.bars, stats.instruments) == (14, 7, 7, 3, 2)
    assert stats.rejects_by_reason == {"bad_size": 2, "malformed": 4, "nan_price": 1}


def test_bars_file_zero_size_policy(tmp_path: Path) -> None:
    src = tmp_path / "t.csv"
    src.write_text("ts,price,size\n0,5,0\n1,6,2\n60000000000,7,0\n")
    kept = bars_file(src, "1m", tmp_path / "a.csv")
    assert read_csv_rows(tmp_path / "a.csv")[1:] == [["t", "1970-01-01T00:00:00Z", "5", "6", "5", "6", "2", "6", "2"],
                                                      ["t", "1970-01-01T00:01:00Z", "7", "7", "7", "7", "0", "", "1"]]
    assert kept.rejected == 0
    dropped = bars_file(src, "1m", tmp_path / "b.csv", zero_size="reject", default_instrument="X")
    assert read_csv_rows(tmp_path / "b.csv")[1:] == [["X", "1970-01-01T00:00:00Z", "6", "6", "6", "6", "2", "6", "1"]]
    assert dropped.rejects_by_reason == {"bad_size": 2}


def test_bars_file_commodex_tick_parquet_to_parquet(tmp_path: Path) -> None:
    src = tmp_path / "ticks.parquet"
    pq.write_table(pa.table({
        "ts_event": pa.array([3 * S, S, 2 * S, 4 * S, 5 * S], pa.int64()),
        "kind": ["trade", "quote", "trade", "trade", "bogus"],
        "instrument": pa.array(["GC.COMEX", "GC.COMEX", "GC.COMEX", "GOLD.MCX", "GC.COMEX"]).dictionary_encode(),
        "price": pa.array([to_fixed("1300.1"), 0, to_fixed("1299.9"), to_fixed("61000"), 1], pa.int64()),
        "size": pa.array([1, 0, 3, 2, 1], pa.int64()),
    }), src)
    stats = bars_file(src, "1m", tmp_path / "bars.parquet")
    t = pq.read_table(tmp_path / "bars.parquet")
    assert t.column_names == ["instrument", "start", "open", "high", "low", "close", "volume", "vwap", "trades"]
    assert t.schema.field("start").type == pa.timestamp("ns", tz="UTC")
    rows = t.to_pylist()
    assert [(r["instrument"], str(r["open"]), str(r["close"]), r["volume"], str(r["vwap"])) for r in rows] == [
        ("GC.COMEX", "1299.900000000", "1300.100000000", 4, "1299.950000000"),
        ("GOLD.MCX", "61000.000000000", "61000.000000000", 2, "61000.000000000"),
    ]
    assert (stats.non_trades, stats.rejected, stats.rejects_by_reason) == (1, 1, {"malformed": 1})


def test_bars_file_unsorted_equals_sorted(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    n = 2000
    ts = np.sort(rng.choice(600 * S, n, replace=False))  # distinct times: row order cannot matter
    lines = [f"{t},{rng.integers(1, 10**6) / 100},{rng.integers(0, 9)},{'AB'[rng.integers(0, 2)]}" for t in ts]
    (tmp_path / "sorted.csv").write_text("ts,price,size,instrument\n" + "\n".join(lines) + "\n")
    shuffled = [lines[k] for k in rng.permutation(n)]
    (tmp_path / "shuffled.csv").write_text("ts,price,size,instrument\n" + "\n".join(shuffled) + "\n")
    bars_file(tmp_path / "sorted.csv", "1m", tmp_path / "a.csv")
    bars_file(tmp_path / "shuffled.csv", "1m", tmp_path / "b.csv")
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()
    assert len(read_table(tmp_path / "a.csv")) > 10


def test_bars_file_parquet_typed_columns_and_rejects(tmp_path: Path) -> None:
    ms = pa.timestamp("ms", tz="UTC")
    pq.write_table(pa.table({
        "ts": pa.array([1000, 2000, 3000, 4000, 5000, None, 6000], ms),
        "price": pa.array([1.5, float("nan"), float("inf"), 1e300, 2.25, 1.0, 3.0], pa.float64()),
        "size": pa.array([1.0, 1.0, 1.0, 1.0, 2.5, 1.0, 2.0], pa.float64()),
    }), tmp_path / "f.parquet")
    stats = bars_file(tmp_path / "f.parquet", "1m", tmp_path / "f.csv", default_instrument="F")
    assert read_csv_rows(tmp_path / "f.csv")[1:] == [
        ["F", "1970-01-01T00:00:00Z", "1.5", "3", "1.5", "3", "3", "2.5", "2"]]
    assert [(r[0], r[1]) for r in read_csv_rows(Path(stats.rejects_path))[1:]] == [
        ("1", "nan_price"), ("2", "nan_price"), ("3", "malformed"), ("4", "bad_size"), ("5", "malformed")]
    # decimals are exact; a timestamp column without a time zone is naive: every row rejected
    pq.write_table(pa.table({
        "ts": pa.array([0, 1], pa.int64()),
        "price": pa.array([Decimal("0.1000"), Decimal("0.2001")], pa.decimal128(10, 4)),
        "size": pa.array([1, 2], pa.int32()),
    }), tmp_path / "d.parquet")
    bars_file(tmp_path / "d.parquet", "1s", tmp_path / "d.csv", default_instrument="D")
    assert read_csv_rows(tmp_path / "d.csv")[1][2:] == ["0.1", "0.2001", "0.1", "0.2001", "3", "0.166733333", "2"]
    pq.write_table(pa.table({"ts": pa.array([0, 1], pa.timestamp("ns")), "price": [1.0, 2.0], "size": [1, 1]}),
                   tmp_path / "n.parquet")
    naive = bars_file(tmp_path / "n.parquet", "1s", tmp_path / "n.csv")
    assert (naive.bars, naive.rejects_by_reason) == (0, {"malformed": 2})
