"""Acceptance on real data: `commodex bars` on COMEX gold ticks reproduces QuantConnect LEAN's 1-minute bars
EXACTLY, for every contract month of the three tick days (2013-10-07..09; data README in the folder).

How each quirk of the LEAN files is handled (each has a test below showing the rule is needed and right):
1. Time: ms since midnight UTC of the date in the file name -> ts = date + ms (UTC ns). LEAN labels a minute bar
   by its start, windows are [start, start + 1 min): a tick at exactly hh:mm:00.000 opens the new bar.
2. One CSV per contract month inside each daily zip: instrument = "GC" + contract month; all contracts of a day
   go through ONE `commodex bars` input file and bars come out per contract.
3. Every tick file ends with its last line written twice (27 of 27); the minute volume counts it once. The
   adapter drops a final line identical to the one before it. Interior repeats (thousands) are genuine trades:
   the minute volume counts each of them.
4. Zero-quantity ticks (459 rows): LEAN builds OHLC from them too (101 minute bars have volume 0, made only of
   zero-quantity prints), so they are kept: `commodex bars` default zero_size="keep".
5. Volume = sum of quantity, nothing else excluded; exchange / sale condition / suspicious are constant
   ("usa", "", 0) in these files, so no filter is needed.
"""

from __future__ import annotations

import csv
import io
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from jobs.barfile import bars_file
from jobs.bars import BarAggregator, BarsConfig, to_bars
from market.columns import KIND_TRADE, TickColumns
from market.fixedpoint import to_decimal, to_fixed
from market.timeutil import NS_PER_MS, to_iso

DAYS = ("20131007", "20131008", "20131009")
Ohlcv = tuple[Decimal, Decimal, Decimal, Decimal, int]


@dataclass(frozen=True)
class LeanDay:
    day: str
    ticks: dict[str, list[str]]  # instrument ("GC201312") -> raw CSV lines of its tick file
    minutes: dict[str, dict[str, Ohlcv]]  # instrument -> bar start (ISO) -> LEAN's bar

    @property
    def midnight(self) -> datetime:
        return datetime.strptime(self.day, "%Y%m%d").replace(tzinfo=UTC)


def _contract(member: str) -> str:  # "20131007_gc_tick_trade_201312.csv" -> "GC201312"
    return "GC" + member.rsplit("_", 1)[1].removesuffix(".csv")


@pytest.fixture(scope="module")
def lean(shared_data: Path) -> dict[str, LeanDay]:
    root = shared_data / "quantconnect_lean_comex_gold_futures"
    days = {}
    for day in DAYS:
        with zipfile.ZipFile(root / "tick" / f"{day}_trade.zip") as z:
            ticks = {_contract(m): z.read(m).decode().splitlines() for m in sorted(z.namelist())}
        midnight = datetime.strptime(day, "%Y%m%d").replace(tzinfo=UTC)
        minutes: dict[str, dict[str, Ohlcv]] = {}
        with zipfile.ZipFile(root / "minute" / f"{day}_trade.zip") as z:
            for m in sorted(z.namelist()):
                bars = minutes[_contract(m)] = {}
                for ms, o, h, lo, c, v in csv.reader(io.StringIO(z.read(m).decode())):
                    start = (midnight + timedelta(milliseconds=int(ms))).strftime("%Y-%m-%dT%H:%M:%SZ")
                    bars[start] = (Decimal(o), Decimal(h), Decimal(lo), Decimal(c), int(v))
        days[day] = LeanDay(day, ticks, minutes)
    return days


def adapt(d: LeanDay, out: Path, *, drop_repeated_last: bool = True, dedupe_all: bool = False,
          iso: bool = False) -> Path:
    """LEAN tick CSVs of one day -> one `ts,price,size,instrument` CSV (ts int ns, or ISO 8601 with 'Z')."""
    base_ns = int(d.midnight.timestamp()) * 1_000_000_000
    with out.open("w") as f:
        f.write("ts,price,size,instrument\n")
        for inst, lines in d.ticks.items():
            if drop_repeated_last and len(lines) >= 2 and lines[-1] == lines[-2]:
                lines = lines[:-1]
            if dedupe_all:
                lines = [line for k, line in enumerate(lines) if k == 0 or line != lines[k - 1]]
            for line in lines:
                ms, price, qty = line.split(",")[:3]
                ts = base_ns + int(ms) * NS_PER_MS
                f.write(f"{to_iso(ts) if iso else ts},{price},{qty},{inst}\n")
    return out


def read_bars(path: Path) -> dict[str, dict[str, Ohlcv]]:
    got: dict[str, dict[str, Ohlcv]] = {}
    with path.open() as f:
        for r in csv.DictReader(f):
            got.setdefault(r["instrument"], {})[r["start"]] = (
                Decimal(r["open"]), Decimal(r["high"]), Decimal(r["low"]), Decimal(r["close"]), int(r["volume"]))
    return got


def mismatches(got: dict[str, dict[str, Ohlcv]], want: dict[str, dict[str, Ohlcv]]) -> dict[str, list[str]]:
    """Per contract, the bar starts that differ (missing, extra or unequal)."""
    out = {}
    for inst in sorted(set(got) | set(want)):
        g, w = got.get(inst, {}), want.get(inst, {})
        bad = sorted(k for k in set(g) | set(w) if g.get(k) != w.get(k))
        if bad:
            out[inst] = bad
    return out


@pytest.mark.parametrize(("day", "iso"), [("20131007", False), ("20131008", True), ("20131009", False)])
def test_commodex_bars_equals_lean_minute_bars(lean: dict[str, LeanDay], tmp_path: Path, day: str,
                                               iso: bool) -> None:
    d = lean[day]
    assert set(d.ticks) == set(d.minutes)  # one minute file per contract tick file
    stats = bars_file(adapt(d, tmp_path / "ticks.csv", iso=iso), "1m", tmp_path / "bars.csv")
    assert stats.rejected == 0 and stats.instruments == len(d.ticks)
    assert stats.trades == sum(len(lines) - 1 for lines in d.ticks.values())
    got = read_bars(tmp_path / "bars.csv")
    assert mismatches(got, d.minutes) == {}
    assert got == d.minutes
    assert stats.bars == sum(len(b) for b in d.minutes.values())


def test_streaming_aggregator_equals_lean_minute_bars(lean: dict[str, LeanDay]) -> None:
    """The event-time path agrees too: the day's ticks of all contracts in time order, one 1m interval."""
    for d in lean.values():
        names = sorted(d.ticks)
        rows = []
        for k, inst in enumerate(names):
            for line in d.ticks[inst][:-1]:  # quirk 3
                ms, price, qty = line.split(",")[:3]
                rows.append((int(ms), k, to_fixed(price), int(qty)))
        rows.sort(key=lambda r: r[0])  # stable: file order kept within a millisecond
        c = TickColumns.empty(len(rows))
        base_ns = int(d.midnight.timestamp()) * 1_000_000_000
        c.ts_event[:] = [base_ns + r[0] * NS_PER_MS for r in rows]
        c.ts_recv[:] = c.ts_event
        c.instrument[:] = [r[1] for r in rows]
        c.price[:] = [r[2] for r in rows]
        c.size[:] = [r[3] for r in rows]
        c.kind[:] = KIND_TRADE
        agg = BarAggregator(BarsConfig(intervals=("1m",), out_of_orderness_ms=0, allowed_lateness_ms=0), len(names))
        out = agg.on_batch(c)
        assert out.late_rows.size == 0
        got: dict[str, dict[str, Ohlcv]] = {}
        for b in to_bars(out, names) + to_bars(agg.flush(), names):
            assert b.revision == 0
            got.setdefault(b.instrument_id, {})[to_iso(b.start)] = (
                to_decimal(b.open), to_decimal(b.high), to_decimal(b.low), to_decimal(b.close), b.volume)
        assert mismatches(got, d.minutes) == {}


def test_repeated_last_line_is_an_artifact(lean: dict[str, LeanDay], tmp_path: Path) -> None:
    files = [(d, inst, lines) for d in lean.values() for inst, lines in d.ticks.items()]
    assert len(files) == 27 and all(lines[-1] == lines[-2] for _, _, lines in files)
    for d in lean.values():
        bars_file(adapt(d, tmp_path / "t.csv", drop_repeated_last=False), "1m", tmp_path / "b.csv")
        bad = mismatches(read_bars(tmp_path / "b.csv"), d.minutes)
        # Keeping it breaks exactly the contracts whose last print has quantity > 0, in their last minute only,
        # and only by that quantity: the line is counted twice.
        last_qty = {inst: int(lines[-1].split(",")[2]) for inst, lines in d.ticks.items()}
        assert set(bad) == {inst for inst, q in last_qty.items() if q > 0}
        got = read_bars(tmp_path / "b.csv")
        for inst, starts in bad.items():
            assert starts == [max(d.minutes[inst])]
            g, w = got[inst][starts[0]], d.minutes[inst][starts[0]]
            assert g[:4] == w[:4] and g[4] - w[4] == last_qty[inst]


def test_interior_repeated_lines_are_real_trades(lean: dict[str, LeanDay], tmp_path: Path) -> None:
    d = lean["20131007"]
    body = d.ticks["GC201312"][:-1]
    assert sum(body[k] == body[k - 1] for k in range(1, len(body))) > 1000  # identical consecutive prints
    bars_file(adapt(d, tmp_path / "t.csv", dedupe_all=True), "1m", tmp_path / "b.csv")
    bad = mismatches(read_bars(tmp_path / "b.csv"), d.minutes)
    assert len(bad.get("GC201312", [])) > 100  # deduplicating them loses volume LEAN counts


def test_zero_quantity_prints_are_kept(lean: dict[str, LeanDay], tmp_path: Path) -> None:
    zero = {d.day: sum(line.split(",")[2] == "0" for lines in d.ticks.values() for line in lines[:-1])
            for d in lean.values()}
    assert all(n > 0 for n in zero.values())
    zero_volume_bars = [(d.day, inst, start) for d in lean.values() for inst, bars in d.minutes.items()
                        for start, bar in bars.items() if bar[4] == 0]
    assert len(zero_volume_bars) > 20  # LEAN has bars made only of zero-quantity prints
    for d in lean.values():
        stats = bars_file(adapt(d, tmp_path / "t.csv"), "1m", tmp_path / "b.csv", zero_size="reject")
        assert stats.rejects_by_reason == {"bad_size": zero[d.day]}  # dead-lettered, counted, not vanished
        got = read_bars(tmp_path / "b.csv")
        missing = {(d.day, inst, s) for inst, bars in d.minutes.items() for s in bars if s not in got.get(inst, {})}
        assert {b for b in zero_volume_bars if b[0] == d.day} <= missing  # rejecting them loses those bars


def test_constant_metadata_and_minute_boundaries(lean: dict[str, LeanDay]) -> None:
    on_boundary = 0
    for d in lean.values():
        for lines in d.ticks.values():
            parts = [line.split(",") for line in lines]
            assert {(p[3], p[4], p[5]) for p in parts} == {("usa", "", "0")}
            ms = np.array([int(p[0]) for p in parts])
            assert (np.diff(ms) >= 0).all() and ms.max() < 86_400_000  # time-ordered, within the UTC day
            on_boundary += int((ms % 60_000 == 0).sum())
    assert on_boundary > 0  # ticks at hh:mm:00.000 exist, so the exact match pins windows to [start, end)
