from __future__ import annotations

import msgspec
import numpy as np
import pytest

from jobs.edge import ingest_ticks
from market.codec import decode_tick, encode
from market.columns import KIND_QUOTE, KIND_TRADE
from market.events import Bar, QuoteTick, Side, TradeTick
from market.instruments import default_registry

REG = default_registry()
GC, CL = "GC.COMEX", "CL.NYMEX"
T0 = 1_700_000_000_000_000_000
P = 10**9


def good() -> list[TradeTick | QuoteTick]:
    return [
        TradeTick(GC, 2000 * P, 3, T0, T0 + 5, 1, Side.BUY),
        QuoteTick(CL, -38 * P, -37 * P, 4, 0, T0 + 1, T0 + 6, 9),
        TradeTick(CL, -37_630_000_000, 1, T0 + 2, T0 + 7),
    ]


def test_typed_ticks_become_columns_in_order() -> None:
    ing = ingest_ticks(good(), REG)
    c = ing.columns
    assert ing.dead_letters == [] and len(c) == 3
    assert c.instrument.tolist() == [REG.index_of(GC), REG.index_of(CL), REG.index_of(CL)]
    assert c.kind.tolist() == [KIND_TRADE, KIND_QUOTE, KIND_TRADE]
    assert c.price.tolist() == [2000 * P, 0, -37_630_000_000]
    assert c.bid.tolist() == [0, -38 * P, 0] and c.ask_size.tolist() == [0, 0, 0]
    assert c.ts_recv.tolist() == [T0 + 5, T0 + 6, T0 + 7] and c.seq.tolist() == [1, 9, 0]
    assert c.instrument.dtype == np.int32 and c.price.dtype == np.int64
    back = [c.row(i, REG) for i in range(3)]
    assert back[1:] == good()[1:]  # the aggressor is not carried in columns
    assert back[0] == msgspec.structs.replace(good()[0], aggressor=Side.NONE)


def test_wire_messages_bytes_and_str() -> None:
    msgs = [encode(t) for t in good()]
    ing = ingest_ticks([msgs[0], msgs[1].decode(), bytearray(msgs[2])], REG)
    assert ing.dead_letters == []
    assert [ing.columns.row(i, REG) for i in range(1, 3)] == good()[1:]


def test_ts_recv_stamp_overrides() -> None:
    ing = ingest_ticks(good(), REG, ts_recv_ns=T0 + 99)
    assert ing.columns.ts_recv.tolist() == [T0 + 99] * 3
    assert ing.columns.ts_event.tolist() == [T0, T0 + 1, T0 + 2]


def test_malformed_wire_messages() -> None:
    bar = Bar(GC, 60 * P, T0, 1, 1, 1, 1, 1, 1, 1, T0, T0)
    bad = [b"{not json", b'{"type":"trade.v1","instrument_id":"GC.COMEX","price":1.5,"size":1,"ts_event":1,'
           b'"ts_recv":1}', encode(bar)]
    ing = ingest_ticks([*bad, encode(good()[0])], REG, ts_recv_ns=T0 + 42)
    assert len(ing.columns) == 1
    assert [d.reason for d in ing.dead_letters] == ["malformed"] * 3
    assert all(d.source == "codec" and d.ts_recv == T0 + 42 for d in ing.dead_letters)
    assert ing.dead_letters[0].raw == "{not json"
    assert "float" in ing.dead_letters[1].detail


def test_unknown_instrument() -> None:
    t = TradeTick("ZZ.NOWHERE", P, 1, T0, T0 + 1, 4)
    ing = ingest_ticks([t, *good()], REG)
    assert len(ing.columns) == 3
    (d,) = ing.dead_letters
    assert (d.source, d.reason, d.instrument_id, d.ts_event, d.ts_recv) == (
        "edge", "unknown_instrument", "ZZ.NOWHERE", T0, T0 + 1)
    assert decode_tick(d.raw) == t


def test_hand_built_ticks_with_bad_fields() -> None:
    # msgspec Structs do not type-check on construction, so in-process producers can hand us anything
    bad = [
        TradeTick(GC, float("nan"), 1, T0, T0),  # type: ignore[arg-type]
        QuoteTick(GC, P, float("inf"), 1, 1, T0, T0),  # type: ignore[arg-type]
        TradeTick(GC, 101.5, 1, T0, T0),  # type: ignore[arg-type]  # a float, not fixed point
        TradeTick(GC, 2**63, 1, T0, T0),  # beyond int64
        TradeTick(GC, P, 1.0, T0, T0),  # type: ignore[arg-type]
        QuoteTick(GC, P, P, 1, "2", T0, T0),  # type: ignore[arg-type]
        TradeTick(GC, P, 1, "now", T0),  # type: ignore[arg-type]
        TradeTick(GC, P, 1, T0, T0, True),  # bool is not a seq
        TradeTick(7, P, 1, T0, T0),  # type: ignore[arg-type]
    ]
    ing = ingest_ticks([*bad, 3.14, *good()], REG)  # type: ignore[list-item]
    assert len(ing.columns) == 3
    assert [d.reason for d in ing.dead_letters] == [
        "nan_price", "nan_price", "malformed", "malformed", "bad_size", "bad_size", "malformed", "malformed",
        "malformed", "malformed"]
    assert ing.dead_letters[0].instrument_id == GC and ing.dead_letters[0].ts_event == T0
    assert "ask" in ing.dead_letters[1].detail
    assert ing.dead_letters[-1].detail == "not a tick: float"
    assert all(d.raw for d in ing.dead_letters)


def test_empty_batch() -> None:
    ing = ingest_ticks([], REG)
    assert len(ing.columns) == 0 and ing.dead_letters == []
    assert ing.columns.ts_event.dtype == np.int64


def test_ts_recv_stamp_must_be_int() -> None:
    with pytest.raises(TypeError):
        ingest_ticks(good(), REG, ts_recv_ns=1.5)  # type: ignore[arg-type]
