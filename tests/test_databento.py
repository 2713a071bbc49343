"""Databento DBN loader on the samples in shared/data/databento_dbn_samples (CME Globex ES, ICE Brent, ICE
Endex TTF): every record of the 40 raw files equals its row of the decoded CSV written by databento-dbn's
Transcoder (pretty prices/timestamps), field by field; the ticks and bars equal what those rows say; the
numpy record view gives the same TickColumns as the decoded-record path.
"""

from __future__ import annotations

import csv
from pathlib import Path

import databento_dbn as dbn
import numpy as np
import pytest

from feeds.loaders.databento import (
    DTYPES,
    DatabentoConfig,
    load_dbn,
    load_dbn_columns,
    read_bytes,
    read_dbn,
    record_array,
)
from market.columns import TickColumns
from market.events import Bar, QuoteTick, Side, TradeTick
from market.fixedpoint import to_fixed
from market.instruments import default_registry
from market.timeutil import parse_iso

MAPPING = DatabentoConfig(symbols={"ESH1": "GC.COMEX"},  # stand-ins: the registry has no ES or TTF instrument
                          symbol_prefixes={"BRN ": "B.ICE", "TFM ": "CL.NYMEX", "BRN FMJ": "B.ICE"})
REGISTRY = default_registry()
INSTRUMENT = {"GLBX.MDP3": "GC.COMEX", "IFEU.IMPACT": "B.ICE", "NDEX.IMPACT": "CL.NYMEX"}
BAR_NS = {"ohlcv-1s": 10**9, "ohlcv-1m": 60 * 10**9, "ohlcv-1h": 3600 * 10**9, "ohlcv-1d": 86400 * 10**9}
TICK_SCHEMAS = ("trades", "tbbo", "mbp-1", "mbp-10", "bbo-1s", "bbo-1m")


@pytest.fixture(scope="module")
def samples(shared_data: Path) -> Path:
    return shared_data / "databento_dbn_samples"


def files(samples: Path) -> list[tuple[Path, Path]]:
    out = []
    for raw in sorted((samples / "raw").glob("*.dbn.zst")):
        out.append((raw, samples / "decoded" / raw.name.replace(".dbn.zst", ".decoded.csv")))
    return out


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


TS_COLUMNS = {"ts_recv", "ts_event", "ts_ref", "expiration", "activation"}


def same(value: object, text: str, column: str = "") -> bool:
    """A decoded record field against its Transcoder CSV text (pretty_px / pretty_ts)."""
    if column in TS_COLUMNS and text == "":  # pretty_ts prints an unset (0 or UNDEF) timestamp empty
        return value in (0, dbn.UNDEF_TIMESTAMP)
    if isinstance(value, bool):
        return text == ("Y" if value else "N")
    if value is None:
        return text == "~"
    if hasattr(value, "value"):  # databento_dbn's enums (RType, Side, Action, StatType, ...)
        return str(value.value) == text
    if isinstance(value, str):
        return value == text or (value == "\x00" and text == "")  # an unset char field prints empty
    assert isinstance(value, int)
    if text == "":  # undefined price / timestamp
        return value in (dbn.UNDEF_PRICE, dbn.UNDEF_TIMESTAMP)
    if text.endswith("Z") and "T" in text:
        return value == parse_iso(text)
    if "." in text:
        return value == to_fixed(text)
    return value == int(text)


def test_all_forty_files_decode_to_the_csvs_field_by_field(samples: Path) -> None:
    pairs = files(samples)
    assert len(pairs) == 40
    total = 0
    for raw, decoded in pairs:
        data = read_dbn(raw)
        expected = rows(decoded)
        assert len(data.records) == len(expected) > 0, raw.name
        for rec, row in zip(data.records, expected, strict=True):
            ts = rec.ts_recv if getattr(rec, "ts_recv", None) not in (None, dbn.UNDEF_TIMESTAMP) else rec.ts_event
            for column, text in row.items():
                value = data.symbols.symbol(rec.instrument_id, ts) if column == "symbol" else getattr(rec, column)
                assert same(value, text, column), (raw.name, column, value, text)
            total += 1
    assert total == 142  # README: 40 files, 142 records


def schema_of(path: Path) -> tuple[str, str]:
    dataset, rest = path.name.split("__test_data.")
    return dataset, rest.split(".")[0]


def test_ticks_and_bars_equal_the_csv_rows(samples: Path) -> None:
    seen = set()
    for raw, decoded in files(samples):
        dataset, schema = schema_of(raw)
        iid = INSTRUMENT[dataset]
        load = load_dbn(raw, MAPPING, REGISTRY)
        expected_ticks: list[TradeTick | QuoteTick] = []
        expected_bars: list[Bar] = []
        bad_quotes = 0
        for r in rows(decoded):
            if schema in BAR_NS:
                start = parse_iso(r["ts_event"])
                end = start + BAR_NS[schema]
                expected_bars.append(Bar(
                    instrument_id=iid, interval_ns=BAR_NS[schema], start=start, open=to_fixed(r["open"]),
                    high=to_fixed(r["high"]), low=to_fixed(r["low"]), close=to_fixed(r["close"]),
                    volume=int(r["volume"]), vwap=0, trades=0, ts_event=end, ts_recv=end))
                continue
            if schema not in TICK_SCHEMAS and not (schema == "mbo" and r["action"] == "T"):
                continue
            common = {"instrument_id": iid, "ts_event": parse_iso(r["ts_event"]), "ts_recv": parse_iso(r["ts_recv"]),
                      "seq": int(r["sequence"])}
            if schema != "trades" and schema != "mbo":
                if r["bid_px_00"] and r["ask_px_00"]:
                    expected_ticks.append(QuoteTick(bid=to_fixed(r["bid_px_00"]), ask=to_fixed(r["ask_px_00"]),
                                                    bid_size=int(r["bid_sz_00"]), ask_size=int(r["ask_sz_00"]),
                                                    **common))
                else:
                    bad_quotes += 1
            if schema in ("trades", "mbo") or (schema in ("tbbo", "mbp-1", "mbp-10") and r["action"] == "T"):
                aggressor = {"B": Side.BUY, "A": Side.SELL}.get(r["side"], Side.NONE)
                expected_ticks.append(TradeTick(price=to_fixed(r["price"]), size=int(r["size"]), aggressor=aggressor,
                                                **common))
        assert load.ticks == expected_ticks, raw.name
        assert load.bars == expected_bars, raw.name
        assert [d.reason for d in load.dead_letters] == ["bad_quote"] * bad_quotes, raw.name
        seen.add((schema, bool(load.ticks), bool(load.bars), bad_quotes > 0))
    # the samples exercise: trades, quotes, trades+quotes, bars, and ICE's empty pre-open book
    assert ("tbbo", True, False, True) in seen and ("ohlcv-1d", False, True, False) in seen


def test_readme_facts(samples: Path) -> None:
    es = load_dbn(samples / "raw" / "GLBX.MDP3__test_data.trades.dbn.zst", MAPPING, REGISTRY)
    first = es.ticks[0]
    assert (first.price, first.size, first.aggressor) == (to_fixed("3702.75"), 1, Side.BUY)
    assert first.ts_event == parse_iso("2020-12-28T00:00:00.246507011Z")
    [day] = load_dbn(samples / "raw" / "GLBX.MDP3__test_data.ohlcv-1d.dbn.zst", MAPPING, REGISTRY).bars
    assert (day.open, day.high, day.low, day.close, day.volume) == (
        to_fixed("3702.75"), to_fixed(3735), to_fixed("3697.25"), to_fixed(3735), 718_174)
    ttf = load_dbn(samples / "raw" / "NDEX.IMPACT__test_data.ohlcv-1m.dbn.zst", MAPPING, REGISTRY).bars[0]
    assert (ttf.start, ttf.open, ttf.high, ttf.low, ttf.close, ttf.volume) == (
        parse_iso("2024-01-18T07:00:00Z"), to_fixed("27.965"), to_fixed("28.035"), to_fixed("27.965"),
        to_fixed("28.035"), 45)
    brent = load_dbn(samples / "raw" / "IFEU.IMPACT__test_data.trades.dbn.zst", MAPPING, REGISTRY).ticks[0]
    assert (brent.price, brent.size) == (to_fixed("77.61"), 1)


def test_non_tick_records_are_counted(samples: Path) -> None:
    assert load_dbn(samples / "raw" / "GLBX.MDP3__test_data.definition.dbn.zst").unconverted == {
        "instrument_def": 1}
    assert load_dbn(samples / "raw" / "GLBX.MDP3__test_data.statistics.dbn.zst").unconverted == {"statistics": 4}
    assert load_dbn(samples / "raw" / "GLBX.MDP3__test_data.status.dbn.zst").unconverted == {"status": 4}
    assert load_dbn(samples / "raw" / "GLBX.MDP3__test_data.mbo.dbn.zst", MAPPING).unconverted == {"mbo:A": 4}


def test_unmapped_instruments_are_dead_letters(samples: Path) -> None:
    path = samples / "raw" / "GLBX.MDP3__test_data.tbbo.dbn.zst"
    load = load_dbn(path)  # default config maps nothing
    assert load.ticks == [] and [d.reason for d in load.dead_letters] == ["unknown_instrument"] * 4
    assert "'ESH1'" in load.dead_letters[0].detail
    cols = load_dbn_columns(path)
    assert len(cols.columns) == 0 and [d.reason for d in cols.dead_letters] == ["unknown_instrument"] * 4
    assert [d.ts_event for d in cols.dead_letters] == [d.ts_event for d in load.dead_letters]


def columns_equal(a: TickColumns, b: TickColumns) -> bool:
    return all(np.array_equal(getattr(a, f), getattr(b, f)) for f in a.__slots__)


@pytest.mark.parametrize("schema", [*TICK_SCHEMAS, "mbo", "ohlcv-1m"])
def test_columnar_path_equals_record_path(samples: Path, schema: str) -> None:
    for dataset in INSTRUMENT:
        path = samples / "raw" / f"{dataset}__test_data.{schema}.dbn.zst"
        load = load_dbn(path, MAPPING, REGISTRY)
        cols = load_dbn_columns(path, MAPPING, REGISTRY)
        assert cols.fast == (schema in TICK_SCHEMAS)
        assert columns_equal(cols.columns, TickColumns.from_ticks(load.ticks, REGISTRY))
        assert [(d.reason, d.ts_event, d.ts_recv) for d in cols.dead_letters] == [
            (d.reason, d.ts_event, d.ts_recv) for d in load.dead_letters]


def test_record_layouts_match_databento_dbn(samples: Path) -> None:
    for schema, rtype in (("trades", 0), ("mbp-1", 1), ("mbp-10", 10), ("mbo", 160), ("bbo-1s", 195),
                          ("bbo-1m", 196)):
        data = read_bytes(samples / "raw" / f"GLBX.MDP3__test_data.{schema}.dbn.zst")
        view = record_array(data)
        assert view is not None
        rec = view[1]
        assert rec.dtype == DTYPES[rtype]
        for i, r in enumerate(read_dbn(data).records):
            for name in ("instrument_id", "ts_event", "ts_recv", "price", "size", "sequence"):
                assert int(rec[name][i]) == int(getattr(r, name)), (schema, name)
            assert rec["side"][i].decode() == r.side.value


def synthetic(samples: Path, edit: object = None) -> bytes:
    """The ES trades file with its 4 records tiled and optionally edited through the structured view."""
    data = read_bytes(samples / "raw" / "GLBX.MDP3__test_data.trades.dbn.zst")
    meta_len = int.from_bytes(data[4:8], "little")
    head, body = data[:8 + meta_len], bytearray(data[8 + meta_len:] * 3)
    rec = np.frombuffer(body, dtype=DTYPES[0])
    if callable(edit):
        edit(rec)
    return head + bytes(body)


def test_undefined_trade_price_and_mixed_record_types(samples: Path) -> None:
    def undefine(rec: np.ndarray) -> None:
        rec["price"][5] = dbn.UNDEF_PRICE

    data = synthetic(samples, undefine)
    load = load_dbn(data, MAPPING, REGISTRY)
    cols = load_dbn_columns(data, MAPPING, REGISTRY)
    assert cols.fast and len(cols.columns) == len(load.ticks) == 11
    assert [d.reason for d in load.dead_letters] == [d.reason for d in cols.dead_letters] == ["nan_price"]
    assert columns_equal(cols.columns, TickColumns.from_ticks(load.ticks, REGISTRY))
    # a stream mixing record types (trades then mbp-1 records) falls back to the decoded path
    mbp = read_bytes(samples / "raw" / "GLBX.MDP3__test_data.mbp-1.dbn.zst")
    mixed = synthetic(samples) + mbp[8 + int.from_bytes(mbp[4:8], "little"):]
    cols = load_dbn_columns(mixed, MAPPING, REGISTRY)
    assert not cols.fast
    assert len(cols.columns) == 12 + 4 and set(cols.columns.kind.tolist()) == {0, 1}


def test_cut_off_file_reports_the_tail(samples: Path) -> None:
    data = read_bytes(samples / "raw" / "GLBX.MDP3__test_data.mbp-1.dbn.zst")[:-10]
    for load in (load_dbn(data, MAPPING, REGISTRY), load_dbn_columns(data, MAPPING, REGISTRY)):
        assert [d.reason for d in load.dead_letters] == ["truncated"]
        assert "70 bytes" in load.dead_letters[0].detail  # 80-byte record minus the 10 cut
    assert len(load_dbn(data, MAPPING, REGISTRY).ticks) == 3


def test_symbol_prefix_longest_wins() -> None:
    cfg = DatabentoConfig(symbols={"ESH1": "GC.COMEX"}, symbol_prefixes={"B": "CT.ICE", "BRN ": "B.ICE"})
    assert cfg.registry_id("BRN FMJ0024!") == "B.ICE"
    assert cfg.registry_id("BX") == "CT.ICE"
    assert cfg.registry_id("ESH1") == "GC.COMEX"
    assert cfg.registry_id("ZZ") is None
    with pytest.raises(ValueError):
        read_dbn(b"not dbn")
