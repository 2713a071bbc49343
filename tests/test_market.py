"""Instrument registry, fixed point, time parsing and the wire codec."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import msgspec
import pytest

from market import codec
from market.config import Config
from market.events import AnomalySignal, AnomalyType, Bar, DeadLetter, QuoteTick, TradeTick
from market.fixedpoint import PRICE_SCALE, PriceError, ticks_from_fixed, to_fixed
from market.instruments import UnknownInstrument, default_registry
from market.links import default_links
from market.timeutil import from_datetime, parse_interval, parse_iso, to_iso

REQUIRED = {"CT.ICE", "COTTONCNDY.MCX", "GC.COMEX", "GOLD.MCX", "CL.NYMEX", "CRUDEOIL.MCX", "B.ICE", "SB.ICE",
            "KC.ICE", "ZW.CBOT", "USDINR.FX"}


def test_registry_covers_required_instruments() -> None:
    reg = default_registry()
    assert set(reg.ids) >= REQUIRED
    for inst in reg:
        assert inst.tick_size > 0 and inst.contract_size > 0
        assert inst.timezone and "-" in inst.trading_hours
        assert reg.by_index(inst.index) is inst


def test_unknown_instrument() -> None:
    reg = default_registry()
    assert reg.index_of("XX.NOWHERE") == -1
    with pytest.raises(UnknownInstrument):
        reg.get("XX.NOWHERE")


def test_links_join_same_commodity() -> None:
    reg = default_registry()
    for link in default_links():
        assert reg.get(link.leg_a).commodity == reg.get(link.leg_b).commodity


def test_fixed_point() -> None:
    assert to_fixed(1313.7) == 1313_700_000_000
    assert to_fixed("-37.63") == -37_630_000_000
    assert to_fixed(Decimal("0.000000001")) == 1
    for bad in (float("nan"), float("inf")):
        with pytest.raises(PriceError):
            to_fixed(bad)
    assert ticks_from_fixed(to_fixed("1313.7"), to_fixed("0.1")) == 13137
    with pytest.raises(PriceError, match="tick grid"):
        ticks_from_fixed(to_fixed("1313.75"), to_fixed("0.1"))
    assert PRICE_SCALE == 10**9


def test_time_is_utc_ns_and_naive_is_rejected() -> None:
    assert parse_iso("1970-01-01T00:00:01.000000001Z") == 1_000_000_001
    assert parse_iso("2013-10-07T05:00:00+05:00") == parse_iso("2013-10-07T00:00:00Z")
    assert to_iso(parse_iso("2013-10-07T00:01:00Z")) == "2013-10-07T00:01:00Z"
    with pytest.raises(ValueError, match="naive"):
        from_datetime(datetime(2020, 1, 1))
    with pytest.raises(ValueError, match="naive"):
        parse_iso("2020-01-01T00:00:00")
    assert parse_interval("5m") == 300 * 10**9
    with pytest.raises(ValueError):
        parse_interval("0s")


@pytest.mark.parametrize(
    "event",
    [
        TradeTick("CL.NYMEX", to_fixed("-37.63"), 5, 1, 2, 3),
        QuoteTick("GC.COMEX", to_fixed("1313.6"), to_fixed("1313.7"), 4, 9, 10, 11, 12),
        Bar("GC.COMEX", 60 * 10**9, 0, 1, 3, 0, 2, 10, 2, 4, 60 * 10**9, 5, 1),
        AnomalySignal("GC.COMEX", AnomalyType.CROSSED_MARKET, 1.5, 0.0, "bid > ask", 3, 4),
        DeadLetter("codec", "malformed", "bad", "{", 9),
    ],
)
def test_codec_round_trip(event) -> None:  # type: ignore[no-untyped-def]
    data = codec.encode(event)
    assert codec.decode(data) == event
    assert b'.v1"' in data  # versioned tag on the wire


def test_codec_rejects_to_dead_letter() -> None:
    for raw in (b"{not json", b'{"type":"trade.v1","instrument_id":"GC.COMEX"}', b'{"type":"nope.v9"}'):
        out = codec.decode_tick_or_dead_letter(raw, ts_recv=42)
        assert isinstance(out, DeadLetter)
        assert out.reason == "malformed" and out.ts_recv == 42 and out.raw


def test_config_rejects_unknown_keys() -> None:
    class Demo(Config, frozen=True):
        timeout_ms: int = 5

    assert Demo.from_dict({"timeout_ms": 7}).timeout_ms == 7
    with pytest.raises(msgspec.ValidationError):
        Demo.from_dict({"timeout_s": 7})


def test_codec_invalid_utf8_is_a_dead_letter_not_an_exception() -> None:
    out = codec.decode_tick_or_dead_letter(b'{"type":"trade.v1","instrument_id":"\xd9x"}', ts_recv=1)
    assert isinstance(out, DeadLetter) and out.reason == "malformed"
