"""Unit and currency conversion through the one audited table (market/data/units.toml).

A quoted price P (in price_currency x price_scale per quote_unit) becomes a canonical price
(canonical currency per canonical unit of the commodity):

    canonical = P * price_scale * fx(price_currency -> canonical currency) * (canon_unit / quote_unit)

All factors are exact Decimals; `factor()` returns the exact multiplier and `to_canonical()` applies it.
Negative prices are valid and keep their sign.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from importlib import resources

from market.instruments import Instrument

FxRates = dict[str, Decimal]  # currency -> units of it per 1 USD


class ConversionError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Unit:
    name: str
    base: str
    factor: Decimal  # base units in one of this unit
    source: str


@dataclass(frozen=True, slots=True)
class Canonical:
    unit: str
    currency: str


@dataclass(frozen=True, slots=True)
class UnitTable:
    units: dict[str, Unit]
    canonical: dict[str, Canonical]
    fx_instruments: dict[str, str]  # currency -> instrument quoting it per 1 USD

    def unit_ratio(self, from_unit: str, to_unit: str) -> Decimal:
        """How many `from_unit` are in one `to_unit` (price per from -> price per to multiplier)."""
        try:
            a, b = self.units[from_unit], self.units[to_unit]
        except KeyError as e:
            raise ConversionError(f"unknown unit {e.args[0]!r}") from None
        if a.base != b.base:
            raise ConversionError(f"cannot convert {from_unit} ({a.base}) to {to_unit} ({b.base})")
        return b.factor / a.factor

    def canonical_for(self, commodity: str) -> Canonical:
        try:
            return self.canonical[commodity]
        except KeyError:
            raise ConversionError(f"no canonical unit for commodity {commodity!r}") from None

    def factor(self, inst: Instrument, fx: dict[str, Decimal] | None = None) -> Decimal:
        """Exact multiplier from inst's quoted price to the canonical price of its commodity.

        fx maps currency -> units of that currency per 1 USD (e.g. {"INR": Decimal("83.2")}).
        """
        canon = self.canonical_for(inst.commodity)
        ratio = self.unit_ratio(inst.quote_unit, canon.unit)
        money = inst.price_scale * self.currency_rate(inst.price_currency, canon.currency, fx or {})
        return money * ratio

    def currency_rate(self, src: str, dst: str, fx: dict[str, Decimal]) -> Decimal:
        """Multiplier turning an amount in src into dst, via USD."""
        if src == dst:
            return Decimal(1)

        def per_usd(ccy: str) -> Decimal:
            if ccy == "USD":
                return Decimal(1)
            if ccy not in self.fx_instruments:
                raise ConversionError(f"no FX source for currency {ccy!r}")
            if ccy not in fx:
                raise ConversionError(f"no FX rate supplied for {ccy} (from {self.fx_instruments[ccy]})")
            rate = Decimal(fx[ccy])
            if rate <= 0:
                raise ConversionError(f"FX rate for {ccy} must be positive, got {rate}")
            return rate

        return per_usd(dst) / per_usd(src)

    def to_canonical(self, price: Decimal | int | str, inst: Instrument, fx: FxRates | None = None) -> Decimal:
        return Decimal(price) * self.factor(inst, fx)

    def from_canonical(self, price: Decimal | int | str, inst: Instrument, fx: FxRates | None = None) -> Decimal:
        return Decimal(price) / self.factor(inst, fx)


def _parse(text: str) -> UnitTable:
    doc = tomllib.loads(text)
    units = {
        name: Unit(name, row["base"], Decimal(row["factor"]), row["source"]) for name, row in doc["unit"].items()
    }
    canonical = {k: Canonical(v["unit"], v["currency"]) for k, v in doc["canonical"].items()}
    fx = {ccy: row["instrument"] for ccy, row in doc["currency"].items() if isinstance(row, dict) and row}
    for c in canonical.values():
        if c.unit not in units:
            raise ConversionError(f"canonical unit {c.unit!r} missing from the unit table")
    return UnitTable(units, canonical, fx)


@cache
def default_units() -> UnitTable:
    return _parse(resources.files("market").joinpath("data/units.toml").read_text())
