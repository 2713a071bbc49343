"""Latest FX rates from quote samples of FX instruments (USDINR.FX quotes INR per 1 USD).

The rate of a currency is the exact mid of its instrument's last sampled quote, as a Decimal, so unit
conversion through `market.units` stays exact. Ages are kept so callers can refuse stale rates.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

import msgspec

from market.events import QuoteSample
from market.fixedpoint import PRICE_SCALE
from market.instruments import Instrument
from market.units import UnitTable

FX_SNAPSHOT_VERSION = 1


def mid_decimal(bid: int, ask: int) -> Decimal:
    """Exact mid of two fixed-point prices."""
    return Decimal(bid + ask) / (2 * PRICE_SCALE)


def fx_needed(instruments: Iterable[Instrument], units: UnitTable) -> dict[str, str]:
    """Currency -> FX instrument id for every non-USD currency that converting these instruments to their
    canonical (unit, currency) goes through (conversion runs via USD, see UnitTable.currency_rate)."""
    out: dict[str, str] = {}
    for inst in instruments:
        canon = units.canonical_for(inst.commodity)
        if inst.price_currency == canon.currency:
            continue
        for ccy in (inst.price_currency, canon.currency):
            if ccy != "USD":
                if ccy not in units.fx_instruments:
                    raise ValueError(f"{inst.id}: no FX instrument for currency {ccy!r} in the unit table")
                out[ccy] = units.fx_instruments[ccy]
    return out


class FxQuote(msgspec.Struct, frozen=True):
    currency: str
    instrument_id: str
    bid: int
    ask: int
    quote_ts_event: int  # when the quote happened
    ts_event: int  # the sampling boundary it was last seen at


class FxSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    version: int
    quotes: list[FxQuote]


class FxBook:
    """Last quote per currency, fed with QuoteSamples; samples of other instruments are ignored (returns False)."""

    def __init__(self, fx_instruments: dict[str, str]):
        self._ccy_of = {inst: ccy for ccy, inst in fx_instruments.items()}
        self._quotes: dict[str, FxQuote] = {}

    def on_sample(self, sample: QuoteSample) -> bool:
        ccy = self._ccy_of.get(sample.instrument_id)
        if ccy is None:
            return False
        prev = self._quotes.get(ccy)
        if prev is None or sample.ts_event >= prev.ts_event:  # an older sample never replaces a newer one
            self._quotes[ccy] = FxQuote(ccy, sample.instrument_id, sample.bid, sample.ask,
                                        sample.quote_ts_event, sample.ts_event)
        return True

    def quote(self, currency: str) -> FxQuote | None:
        return self._quotes.get(currency)

    def rate(self, currency: str) -> Decimal | None:
        q = self._quotes.get(currency)
        return None if q is None else mid_decimal(q.bid, q.ask)

    def rates(self) -> dict[str, Decimal]:
        """Currency -> units per 1 USD, in the form `UnitTable.factor(inst, fx)` takes."""
        return {ccy: mid_decimal(q.bid, q.ask) for ccy, q in self._quotes.items()}

    def age_ns(self, currency: str, at_ns: int) -> int | None:
        q = self._quotes.get(currency)
        return None if q is None else at_ns - q.quote_ts_event

    def snapshot(self) -> FxSnapshot:
        return FxSnapshot(version=FX_SNAPSHOT_VERSION, quotes=sorted(self._quotes.values(), key=lambda q: q.currency))

    @classmethod
    def restore(cls, fx_instruments: dict[str, str], snap: FxSnapshot) -> FxBook:
        if snap.version != FX_SNAPSHOT_VERSION:
            raise ValueError(f"FX snapshot version {snap.version} is not {FX_SNAPSHOT_VERSION}")
        book = cls(fx_instruments)
        for q in snap.quotes:
            if fx_instruments.get(q.currency) != q.instrument_id:
                raise ValueError(f"FX snapshot quotes {q.currency} from {q.instrument_id}, not configured here")
            book._quotes[q.currency] = q
        return book
