"""Tick files: Parquet/CSV round trips and the edge conversion to fixed-point TickColumns with dead letters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feeds.tickfile import TICK_SCHEMA, ingest, read_table, read_ticks, write_ticks
from market.codec import encode
from market.columns import KIND_QUOTE, KIND_TRADE
from market.events import QuoteTick, TradeTick
from market.fixedpoint import to_fixed
from market.instruments import default_registry
from simulators.config import SimConfig
from simulators.market import simulate

REG = default_registry()
T0 = 1_767_571_200_000_000_000
NAN = float("nan")


def table(rows: list[dict]) -> pa.Table:
    base = {"instrument": "GC.COMEX", "kind": "trade", "ts_event": T0, "ts_recv": T0 + 1000, "seq": 1,
            "price": 0.0, "size": 0, "bid": 0.0, "ask": 0.0, "bid_size": 0, "ask_size": 0, "raw": None}
    return pa.Table.from_pylist([{**base, **r} for r in rows], schema=TICK_SCHEMA)


def tables_equal(a: pa.Table, b: pa.Table) -> bool:
    """Equal, with NaN equal to NaN."""
    if not a.schema.equals(b.schema) or a.num_rows != b.num_rows:
        return False
    for name in a.column_names:
        x, y = a.column(name).to_numpy(zero_copy_only=False), b.column(name).to_numpy(zero_copy_only=False)
        if x.dtype.kind == "f":
            if not np.array_equal(x, y, equal_nan=True):
                return False
        elif not (x == y).all():
            return False
    return True


@pytest.fixture(scope="module")
def dirty_table() -> pa.Table:
    return simulate(SimConfig(scenarios=("dirty", "crossed"), duration_s=60, seed=7))


def test_parquet_round_trip_zstd(tmp_path: Path, dirty_table: pa.Table) -> None:
    path = tmp_path / "ticks.parquet"
    write_ticks(dirty_table, path)
    meta = pq.ParquetFile(path).metadata
    assert meta.row_group(0).column(0).compression == "ZSTD"
    back = read_table(path)
    assert back.schema.equals(TICK_SCHEMA)
    assert tables_equal(back, dirty_table)
    assert np.isnan(back.column("bid").to_numpy()).any() or np.isnan(back.column("price").to_numpy()).any()


def test_csv_with_same_columns(tmp_path: Path, dirty_table: pa.Table) -> None:
    path = tmp_path / "ticks.csv"
    pacsv.write_csv(dirty_table, path)
    back = read_table(path)
    assert back.schema.equals(TICK_SCHEMA)
    assert tables_equal(back, dirty_table)  # NaN stays NaN, empty raw stays null
    a, b = read_ticks(path, REG), ingest(dirty_table, REG)
    assert [d.reason for d in a.dead_letters] == [d.reason for d in b.dead_letters]
    assert np.array_equal(a.columns.bid, b.columns.bid)


def test_read_ticks_matches_ingest_of_read_table(tmp_path: Path, dirty_table: pa.Table) -> None:
    path = tmp_path / "ticks.parquet"
    write_ticks(dirty_table, path)
    fast, plain = read_ticks(path, REG), ingest(read_table(path), REG)
    assert fast.rows_in == plain.rows_in == dirty_table.num_rows
    assert fast.dead_letters == plain.dead_letters
    for name in ("instrument", "kind", "ts_event", "ts_recv", "seq", "price", "size", "bid", "ask"):
        assert np.array_equal(getattr(fast.columns, name), getattr(plain.columns, name)), name


def test_fixed_point_conversion_and_types() -> None:
    t = table([
        {"price": 2650.1, "size": 3},
        {"instrument": "CL.NYMEX", "price": -37.63, "size": 1, "seq": 2},  # negative prices are valid
        {"instrument": "USDINR.FX", "kind": "quote", "bid": 83.9975, "ask": 84.0025, "bid_size": 5, "ask_size": 7,
         "price": NAN},  # a quote's unused price may be anything
    ])
    out = ingest(t, REG)
    c = out.columns
    assert out.dead_letters == [] and out.rows_in == 3 and len(c) == 3
    assert c.instrument.dtype == np.int32 and c.kind.dtype == np.int8 and c.price.dtype == np.int64
    assert c.instrument.tolist() == [REG.index_of("GC.COMEX"), REG.index_of("CL.NYMEX"), REG.index_of("USDINR.FX")]
    assert c.kind.tolist() == [KIND_TRADE, KIND_TRADE, KIND_QUOTE]
    assert c.price[:2].tolist() == [2_650_100_000_000, -37_630_000_000]
    assert (c.bid[2], c.ask[2]) == (83_997_500_000, 84_002_500_000)
    assert c.ts_event.tolist() == [T0] * 3 and c.seq.tolist() == [1, 2, 1]
    c.price[0] = 1  # owned, writable arrays (kernels may write in place)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(min_value=-1e6, max_value=1e7, allow_nan=False), min_size=1, max_size=50))
def test_fixed_point_matches_to_fixed(prices: list[float]) -> None:
    out = ingest(table([{"price": p, "size": 1} for p in prices]), REG)
    assert out.columns.price.tolist() == [to_fixed(p) for p in prices]


def test_rejects_at_the_edge_keep_order() -> None:
    good_raw = encode(QuoteTick("GC.COMEX", 2_650_000_000_000, 2_650_100_000_000, 4, 6, T0 + 5, 0, 9)).decode()
    alien_raw = encode(TradeTick("XX.NOWHERE", 1_000_000_000, 1, T0, 0, 1)).decode()
    t = table([
        {"price": 2650.0, "size": 1, "seq": 1},  # 0 ok
        {"instrument": "XX.NOWHERE", "price": 1.0, "size": 1},  # 1 unknown instrument
        {"price": NAN, "size": 1, "seq": 2},  # 2 NaN trade price
        {"kind": "quote", "bid": float("inf"), "ask": 2650.1, "bid_size": 1, "ask_size": 1},  # 3 inf bid
        {"kind": "order", "price": 1.0},  # 4 unknown kind
        {"instrument": None, "kind": None, "ts_event": 0, "raw": '{"type":"trade.v1","instr'},  # 5 garbage
        {"instrument": None, "kind": None, "ts_event": 0, "ts_recv": T0 + 77, "raw": good_raw},  # 6 decodes
        {"instrument": None, "kind": None, "raw": alien_raw},  # 7 decodes, unknown instrument
        {"price": 1e12, "size": 1},  # 8 fixed point cannot hold it
        {"price": 2650.2, "size": -5, "seq": 3},  # 9 bad size: the validator's job
        {"kind": "quote", "bid": 1.0, "ask": None, "bid_size": 1, "ask_size": 1},  # 10 missing field
    ])
    out = ingest(t, REG)
    reasons = [(d.reason, d.instrument_id) for d in out.dead_letters]
    assert reasons == [
        ("unknown_instrument", "XX.NOWHERE"), ("nan_price", "GC.COMEX"), ("nan_price", "GC.COMEX"),
        ("malformed", "GC.COMEX"), ("malformed", ""), ("unknown_instrument", "XX.NOWHERE"),
        ("nan_price", "GC.COMEX"), ("malformed", "GC.COMEX"),
    ]
    assert all(d.source == "tickfile" and d.ts_recv > 0 for d in out.dead_letters)
    assert out.dead_letters[4].raw == '{"type":"trade.v1","instr'
    assert "order" in out.dead_letters[3].detail
    c = out.columns
    assert len(c) == 3 and out.rows_in == 11
    assert c.kind.tolist() == [KIND_TRADE, KIND_QUOTE, KIND_TRADE]  # rows 0, 6, 9 in file order
    assert c.seq.tolist() == [1, 9, 3]
    assert (c.bid[1], c.ask[1], c.bid_size[1], c.ask_size[1]) == (2_650_000_000_000, 2_650_100_000_000, 4, 6)
    assert c.ts_recv[1] == T0 + 77 and c.ts_event[1] == T0 + 5  # wire ts_recv 0: stamped from the file
    assert c.size[2] == -5


def test_empty_table() -> None:
    out = ingest(TICK_SCHEMA.empty_table(), REG)
    assert len(out.columns) == 0 and out.dead_letters == [] and out.rows_in == 0
