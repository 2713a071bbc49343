"""Instrument registry loaded from market/data/instruments.toml."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from importlib import resources
from pathlib import Path

from market.fixedpoint import to_fixed


class UnknownInstrument(KeyError):
    def __str__(self) -> str:
        return f"unknown instrument {self.args[0]!r}"


_FIELDS = {
    "id", "venue", "symbol", "name", "commodity", "price_currency", "price_scale", "quote_unit",
    "contract_size", "contract_unit", "tick_size", "trading_hours", "timezone",
}


@dataclass(frozen=True, slots=True)
class Instrument:
    index: int  # dense id used in columnar batches and numba state
    id: str  # "SYMBOL.VENUE"
    venue: str
    symbol: str
    name: str
    commodity: str
    price_currency: str
    price_scale: Decimal  # quoted price x price_scale = amount in price_currency
    quote_unit: str
    contract_size: Decimal
    contract_unit: str
    tick_size: Decimal
    trading_hours: str
    timezone: str

    @property
    def tick_fixed(self) -> int:
        return to_fixed(self.tick_size)


class Registry:
    """Immutable id <-> index map over the instruments of one registry file."""

    def __init__(self, instruments: list[Instrument]):
        self._by_id = {i.id: i for i in instruments}
        if len(self._by_id) != len(instruments):
            raise ValueError("duplicate instrument id in registry")
        self._list = tuple(instruments)

    def __len__(self) -> int:
        return len(self._list)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._list)

    def __contains__(self, instrument_id: object) -> bool:
        return instrument_id in self._by_id

    def get(self, instrument_id: str) -> Instrument:
        try:
            return self._by_id[instrument_id]
        except KeyError:
            raise UnknownInstrument(instrument_id) from None

    def by_index(self, index: int) -> Instrument:
        return self._list[index]

    def index_of(self, instrument_id: str) -> int:
        """Dense index, or -1 for an unknown id (batches carry -1 to the validator)."""
        inst = self._by_id.get(instrument_id)
        return -1 if inst is None else inst.index

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(i.id for i in self._list)

    def venues(self) -> tuple[str, ...]:
        return tuple(sorted({i.venue for i in self._list}))

    def by_commodity(self, commodity: str) -> list[Instrument]:
        return [i for i in self._list if i.commodity == commodity]


def load_registry(path: str | Path | None = None) -> Registry:
    if path is None:
        text = resources.files("market").joinpath("data/instruments.toml").read_text()
    else:
        text = Path(path).read_text()
    rows = tomllib.loads(text).get("instrument", [])
    out = []
    for n, row in enumerate(rows):
        unknown = set(row) - _FIELDS
        missing = _FIELDS - set(row)
        if unknown or missing:
            raise ValueError(f"instrument #{n}: unknown keys {sorted(unknown)}, missing {sorted(missing)}")
        out.append(
            Instrument(
                index=n,
                id=row["id"],
                venue=row["venue"],
                symbol=row["symbol"],
                name=row["name"],
                commodity=row["commodity"],
                price_currency=row["price_currency"],
                price_scale=Decimal(row["price_scale"]),
                quote_unit=row["quote_unit"],
                contract_size=Decimal(row["contract_size"]),
                contract_unit=row["contract_unit"],
                tick_size=Decimal(row["tick_size"]),
                trading_hours=row["trading_hours"],
                timezone=row["timezone"],
            )
        )
    return Registry(out)


@cache
def default_registry() -> Registry:
    return load_registry()
