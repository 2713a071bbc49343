"""MCX GOLD futures bhavcopy -> daily GOLD.MCX bars, on shared/data/mcx_gold_futures_daily (README there) and
on small synthetic files for each rule."""

from __future__ import annotations

import csv
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest

from feeds.mcx.bhavcopy import DAY_NS, daily_bars, load_daily_bars, parse_bhavcopy, read_bhavcopy
from feeds.mcx.config import BhavcopyConfig
from feeds.mcx.schemas import COLUMNS
from market.fixedpoint import to_fixed
from market.instruments import UnknownInstrument
from market.timeutil import parse_iso

HEADER = ",".join(COLUMNS)


def line(date: str, expiry: str = "05DEC2025", o: str = "100.0", h: str = "110.0", lo: str = "90.0",
         c: str = "105.0", vol: str = "10", value: str = "10.5", symbol: str = "GOLD         ",
         name: str = "FUTCOM") -> str:
    return (f"MCX.BL.Bhavcopy,{date},{symbol},{expiry},{o},{h},{lo},{c},99.0,{vol},{vol}.000 GRMS ,{value},5,,"
            f"{name},0.0,-")


@pytest.fixture(scope="module")
def mcx(shared_data: Path) -> Path:
    return shared_data / "mcx_gold_futures_daily"


def csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_gold_bhavcopy_loads(mcx: Path) -> None:
    raw = csv_rows(mcx / "gold_bhavcopy.csv")
    assert len(raw) == 252
    assert all(r["Symbol"] != r["Symbol"].strip() for r in raw)  # space padded in the file
    dates = [r["Date"] for r in raw]
    assert dates == sorted(dates, reverse=True)  # newest first in the file
    load = read_bhavcopy(mcx / "gold_bhavcopy.csv")
    assert load.dead_letters == [] and len(load.rows) == load.lines == 252
    assert {r.symbol for r in load.rows} == {"GOLD"} and {r.expiry for r in load.rows} == {"2025-12-05"}
    out = load_daily_bars(mcx / "gold_bhavcopy.csv")
    traded = [r for r in raw if int(r["Volume"]) > 0]
    assert len(out.bars) == len(traded)
    assert Counter(d.reason for d in out.dead_letters) == {"no_trades": len(raw) - len(traded)}
    starts = [b.start for b in out.bars]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)  # ascending, one per date
    by_date = {r["Date"]: r for r in traded}
    for b in out.bars:
        r = by_date[[d for d in by_date if parse_iso(d + "T00:00:00Z") == b.start][0]]
        assert (b.open, b.high, b.low, b.close, b.volume) == (
            to_fixed(r["Open"]), to_fixed(r["High"]), to_fixed(r["Low"]), to_fixed(r["Close"]), int(r["Volume"]))
        assert b.instrument_id == "GOLD.MCX" and b.interval_ns == DAY_NS and b.ts_event == b.start + DAY_NS
        # Value is INR lakhs; a 1 kg lot is 100 quote units of 10 g
        expected_vwap = Decimal(r["Value"]) * 100_000 / (int(r["Volume"]) * 100)
        assert abs(Decimal(b.vwap) / 10**9 - expected_vwap) < Decimal("1e-9")
        assert b.low - to_fixed(1000) <= b.vwap <= b.high + to_fixed(1000)  # Value is rounded to 0.01 lakh
    last = out.bars[-1]
    assert last.start == parse_iso("2025-12-05T00:00:00Z") and last.close == to_fixed("128425")


def test_common_dates_of_the_two_files_carry_identical_ohlcv(mcx: Path) -> None:
    config = BhavcopyConfig(expiry="05DEC2025")
    long = read_bhavcopy(mcx / "gold_bhavcopy.csv", config).rows
    short = read_bhavcopy(mcx / "gold_daily_ohlc" / "05DEC2025.csv", config).rows
    common = sorted({r.trade_date for r in long} & {r.trade_date for r in short})
    assert len(common) == len(short) == 143 and common[0] == "2025-05-19"

    def ohlcv(rows: list) -> dict[str, tuple]:
        return {r.trade_date: (r.open, r.high, r.low, r.close, r.volume_lots) for r in rows if r.trade_date in common}

    assert ohlcv(long) == ohlcv(short)
    bars_long = {b.start: b for b in daily_bars(long, config).bars}
    bars_short = daily_bars(short, config).bars
    assert bars_short and all(bars_long[b.start] == b for b in bars_short)
    # loading both files together: the 143 repeats are duplicates, nothing else changes
    both = daily_bars(long + short, config)
    assert Counter(d.reason for d in both.dead_letters)["duplicate"] == 143
    assert both.bars == daily_bars(long, config).bars


def test_all_contracts_roll_to_one_bar_per_day(mcx: Path) -> None:
    folder = mcx / "gold_daily_ohlc"
    load = read_bhavcopy(folder)
    assert len(load.rows) == 6143 and load.dead_letters == []
    assert len(list(folder.glob("*.csv"))) == 76
    out = daily_bars(load.rows)
    traded_dates = {r.trade_date for r in load.rows if r.volume_lots > 0}
    assert len(out.bars) == len(out.contracts) == len(traded_dates)
    assert min(traded_dates) >= "2013-07-11" and max(traded_dates) <= "2026-03-11"
    for b in out.bars[::50]:
        day = next(d for d in traded_dates if parse_iso(d + "T00:00:00Z") == b.start)
        volumes = [r.volume_lots for r in load.rows if r.trade_date == day]
        assert b.volume == max(volumes)  # the most active contract of the day
    assert Counter(d.reason for d in out.dead_letters) == {"no_trades": 348}
    assert out.skipped["not the chosen contract of the day"] == 6143 - 348 - len(out.bars)
    nearest = daily_bars(load.rows, BhavcopyConfig(roll="nearest"))
    assert len(nearest.bars) == len(out.bars)
    assert all(nearest.contracts[d] <= out.contracts[d] for d in out.contracts)
    assert any(nearest.contracts[d] < out.contracts[d] for d in out.contracts)
    assert all(d >= c for c, d in nearest.contracts.items())  # never a contract already expired


def test_rules_on_synthetic_rows() -> None:
    text = "\n".join([
        HEADER,
        line("2025-01-03", c="120.0"),  # close above high: kept by default
        line("2025-01-02", vol="0", o="0.0", h="0.0", lo="0.0"),  # no trades
        line("2025-01-02", expiry="05FEB2025", vol="3", value="3.3"),
        line("2025-01-01", o="abc"),  # bad number
        line("2025-01-01", h="80.0"),  # high < low
        line("2025-13-01"),  # bad date
        line("2025-01-04", expiry="05XYZ2025"),  # bad expiry
        line("2025-01-05", symbol="SILVER  "),
        line("2025-01-05", name="OPTFUT"),
        "MCX.BL.Bhavcopy,2025-01-06,GOLD",  # short row
        "",
    ])
    load = parse_bhavcopy(text, "synthetic.csv")
    assert [d.reason for d in load.dead_letters] == ["malformed"] * 4
    assert "synthetic.csv:5" in load.dead_letters[0].detail and "Open" in load.dead_letters[0].detail
    out = daily_bars(load.rows)
    assert [b.start for b in out.bars] == [parse_iso("2025-01-02T00:00:00Z"), parse_iso("2025-01-03T00:00:00Z")]
    assert out.contracts == {"2025-01-02": "2025-02-05", "2025-01-03": "2025-12-05"}
    assert out.bars[0].vwap == to_fixed(Decimal("3.3") * 100_000 / 300)
    assert out.close_outside_range == 1 and out.bars[1].close == to_fixed(120)
    assert sorted(d.reason for d in out.dead_letters) == ["malformed", "no_trades"]
    assert out.skipped == {"product SILVER FUTCOM": 1, "product GOLD OPTFUT": 1,
                           "not the chosen contract of the day": 0}
    strict = daily_bars(load.rows, BhavcopyConfig(close_outside_range="dead_letter"))
    assert len(strict.bars) == 1 and "close_outside_range" in {d.reason for d in strict.dead_letters}


def test_config_and_header_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="header"):
        parse_bhavcopy("Date,Open\n2025-01-01,1\n")
    with pytest.raises(ValueError):
        BhavcopyConfig(roll="random")
    with pytest.raises(ValueError):
        BhavcopyConfig.from_dict({"unknown_field": 1})
    with pytest.raises(UnknownInstrument):
        daily_bars([], BhavcopyConfig(instrument_id="NOPE.MCX"))
    path = tmp_path / "b.csv"
    path.write_text(HEADER + "\n" + line("2025-01-02") + "\n")
    assert len(load_daily_bars(path).bars) == 1
