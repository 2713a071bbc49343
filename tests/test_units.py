"""The audited conversion table: every instrument pair of a commodity, exactness, negative prices."""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest

from market.instruments import default_registry
from market.units import ConversionError, default_units

REG = default_registry()
UNITS = default_units()
FX = {"INR": Decimal("76.6335")}

PAIRS = [
    (a, b)
    for a, b in itertools.permutations(list(REG), 2)
    if a.commodity == b.commodity
]


def test_every_commodity_has_a_canonical_unit() -> None:
    for inst in REG:
        canon = UNITS.canonical_for(inst.commodity)
        assert canon.unit in UNITS.units


def test_exact_reference_factors() -> None:
    # 1 troy oz = 31.1034768 g; 1 lb = 0.45359237 kg; 1 bbl = 158.987294928 L (INFRA.md / contract specs)
    assert UNITS.unit_ratio("g", "troy_oz") == Decimal("31.1034768")
    assert UNITS.unit_ratio("lb", "kg") == 1 / Decimal("0.45359237")
    assert UNITS.unit_ratio("l", "bbl") == Decimal("158.987294928")
    assert UNITS.unit_ratio("10g", "troy_oz") == Decimal("3.11034768")


def test_mixing_dimensions_is_an_error() -> None:
    with pytest.raises(ConversionError):
        UNITS.unit_ratio("bbl", "kg")


def test_missing_fx_is_an_error_not_a_guess() -> None:
    with pytest.raises(ConversionError, match="INR"):
        UNITS.factor(REG.get("GOLD.MCX"), {})


@pytest.mark.parametrize(("a", "b"), PAIRS, ids=[f"{a.id}->{b.id}" for a, b in PAIRS])
@pytest.mark.parametrize("price", ["1234.5", "-37.63", "0"])
def test_pair_round_trip_through_canonical(a, b, price) -> None:  # type: ignore[no-untyped-def]
    """a's price -> canonical -> b's quote units -> canonical again gives the same canonical value; sign preserved."""
    canon = UNITS.to_canonical(price, a, FX)
    in_b = UNITS.from_canonical(canon, b, FX)
    back = UNITS.to_canonical(in_b, b, FX)
    assert abs(back - canon) <= abs(canon) * Decimal("1e-24")
    assert (canon < 0) == (Decimal(price) < 0)
    assert (in_b < 0) == (Decimal(price) < 0)


def test_mcx_crude_april_2020_negative_settlement() -> None:
    """MCX crude settled at -2,884 INR/bbl = NYMEX -37.63 USD x 76.6335 INR/USD."""
    usd = UNITS.to_canonical("-2884", REG.get("CRUDEOIL.MCX"), FX)
    assert usd.quantize(Decimal("0.01")) == Decimal("-37.63")
    inr = UNITS.from_canonical("-37.63", REG.get("CRUDEOIL.MCX"), FX)
    assert inr.quantize(Decimal("0.01")) == Decimal("-2883.72")  # -37.63 x 76.6335


def test_mcx_gold_to_comex_units() -> None:
    # INR per 10 g -> USD per troy oz: x 3.11034768 / USDINR
    fx = {"INR": Decimal("83")}
    usd_oz = UNITS.to_canonical("70000", REG.get("GOLD.MCX"), fx)
    assert usd_oz == Decimal("70000") * Decimal("3.11034768") / Decimal("83")


def test_cotton_cents_and_candy() -> None:
    # ICE cotton quotes US cents/lb; MCX cotton candy INR per 355.56 kg candy
    assert UNITS.to_canonical("70", REG.get("CT.ICE")) == Decimal("0.70")
    lb_per_candy = Decimal("355.56") / Decimal("0.45359237")
    usd_lb = UNITS.to_canonical("55000", REG.get("COTTONCNDY.MCX"), {"INR": Decimal("84")})
    assert abs(usd_lb - Decimal("55000") / lb_per_candy / Decimal("84")) < Decimal("1e-20")
