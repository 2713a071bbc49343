"""Positions and P&L per instrument, in the instrument's quote currency and in USD (the base currency).

Quantities are contracts (lots), prices fixed-point ints (1e-9). Open lots are kept FIFO, so realised P&L is
an exact integer sum of matched qty x (exit - entry) in price units; it becomes money through the contract's
point value (quote currency per 1.0 of quoted price per lot) from the audited units table:

    point_value = price_scale x contract_size x (quote units in one contract unit)

    e.g. MCX GOLD: INR per 10 g, 1 kg contract -> 1 x 1 x 100 = 100 INR per 1.0 INR/10g per lot.

Whatever the matching order, realised + unrealised = sum over fills of signed qty x (mark - fill price) x point
value, less fees. USD amounts convert quote currency through `UnitTable.currency_rate` at the FX rate of the
moment: realised P&L and fees at the rate when they were realised/charged, unrealised at the current rate.
"""

from __future__ import annotations

from collections import deque
from decimal import Decimal

import msgspec

from market.fixedpoint import PRICE_SCALE
from market.instruments import Instrument, Registry
from market.units import FxRates, UnitTable

BASE_CURRENCY = "USD"


def point_value(inst: Instrument, units: UnitTable) -> Decimal:
    """Quote-currency amount of one lot per 1.0 of quoted price."""
    return inst.price_scale * inst.contract_size * units.unit_ratio(inst.quote_unit, inst.contract_unit)


def canonical_per_lot(inst: Instrument, units: UnitTable) -> Decimal:
    """Canonical units of the commodity (e.g. troy oz of gold) in one lot."""
    canon = units.canonical_for(inst.commodity)
    return inst.contract_size * units.unit_ratio(canon.unit, inst.contract_unit)


def usd_rate(inst: Instrument, units: UnitTable, fx: FxRates) -> Decimal:
    """Multiplier turning an amount in the instrument's quote currency into USD (raises ConversionError)."""
    return units.currency_rate(inst.price_currency, BASE_CURRENCY, fx)


class Fill(msgspec.Struct, frozen=True, kw_only=True):
    fill_id: int
    order_id: int
    instrument_id: str
    side: str  # "buy" | "sell"
    qty: int  # > 0
    price: int  # fixed point
    ts_event: int
    liquidity: str  # "taker" | "maker"
    fee: Decimal = Decimal(0)  # quote currency
    usd_per_quote: Decimal = Decimal(1)  # FX used for the USD amounts of this fill

    @property
    def signed_qty(self) -> int:
        return self.qty if self.side == "buy" else -self.qty


class Lot(msgspec.Struct):
    qty: int  # signed: > 0 long, < 0 short
    price: int


class PnL(msgspec.Struct, frozen=True, kw_only=True):
    instrument_id: str
    currency: str
    position: int
    mark: Decimal | None  # fixed-point units (may be a half unit: the mid of two ticks)
    realised: Decimal  # quote currency, after fees
    unrealised: Decimal
    fees: Decimal
    realised_usd: Decimal
    unrealised_usd: Decimal
    fees_usd: Decimal
    turnover_usd: Decimal
    fills: int

    @property
    def total(self) -> Decimal:
        return self.realised + self.unrealised

    @property
    def total_usd(self) -> Decimal:
        return self.realised_usd + self.unrealised_usd


class Position:
    def __init__(self, inst: Instrument, units: UnitTable) -> None:
        self.instrument = inst
        self.point_value = point_value(inst, units)
        self._money = self.point_value / PRICE_SCALE  # quote currency per (lot x fixed-point unit)
        self.qty = 0
        self.lots: deque[Lot] = deque()
        self.realised_units = 0  # sum of matched qty x (exit - entry), lots x fixed-point units (exact)
        self.fees = Decimal(0)
        self.realised_usd = Decimal(0)  # after fees
        self.fees_usd = Decimal(0)
        self.turnover_usd = Decimal(0)
        self.fills = 0

    def apply(self, fill: Fill) -> Decimal:
        """Book a fill; returns the realised P&L it caused in quote currency (before fees)."""
        if fill.qty <= 0:
            raise ValueError(f"fill {fill.fill_id}: qty must be > 0")
        signed = fill.signed_qty
        realised = 0
        left = signed
        while left and self.lots and (self.lots[0].qty > 0) != (left > 0):
            lot = self.lots[0]
            take = min(abs(left), abs(lot.qty))
            sign = 1 if lot.qty > 0 else -1  # closing a long gains exit - entry
            realised += sign * take * (fill.price - lot.price)
            lot.qty -= sign * take
            left += sign * take
            if lot.qty == 0:
                self.lots.popleft()
        if left:
            self.lots.append(Lot(left, fill.price))
        self.qty += signed
        self.realised_units += realised
        money = realised * self._money
        self.fees += fill.fee
        self.realised_usd += (money - fill.fee) * fill.usd_per_quote
        self.fees_usd += fill.fee * fill.usd_per_quote
        self.turnover_usd += abs(fill.qty * fill.price * self._money * fill.usd_per_quote)
        self.fills += 1
        return money

    def unrealised_units(self, mark: Decimal) -> Decimal:
        return sum((lot.qty * (mark - lot.price) for lot in self.lots), Decimal(0))

    def notional(self, price: Decimal) -> Decimal:
        """Signed quote-currency value of the position at `price` (fixed-point units)."""
        return self.qty * price * self._money

    def pnl(self, mark: Decimal | None, usd_per_quote: Decimal | None) -> PnL:
        """P&L marked at `mark` (None: no price yet, unrealised 0). usd_per_quote None: no FX rate; the
        unrealised USD amount is then 0 (realised USD amounts were converted when they happened)."""
        unreal = self.unrealised_units(mark) * self._money if mark is not None else Decimal(0)
        return PnL(
            instrument_id=self.instrument.id, currency=self.instrument.price_currency, position=self.qty,
            mark=mark, realised=self.realised_units * self._money - self.fees, unrealised=unreal, fees=self.fees,
            realised_usd=self.realised_usd, unrealised_usd=unreal * usd_per_quote if usd_per_quote else Decimal(0),
            fees_usd=self.fees_usd, turnover_usd=self.turnover_usd, fills=self.fills,
        )


class PositionBook:
    """Every instrument's position; created on first use."""

    def __init__(self, registry: Registry, units: UnitTable) -> None:
        self.registry = registry
        self.units = units
        self._pos: dict[str, Position] = {}

    def get(self, instrument_id: str) -> Position:
        pos = self._pos.get(instrument_id)
        if pos is None:
            pos = self._pos[instrument_id] = Position(self.registry.get(instrument_id), self.units)
        return pos

    def qty(self, instrument_id: str) -> int:
        pos = self._pos.get(instrument_id)
        return 0 if pos is None else pos.qty

    def apply(self, fill: Fill) -> Decimal:
        return self.get(fill.instrument_id).apply(fill)

    def instruments(self) -> list[str]:
        """Instruments ever traded, in registry order."""
        return [i for i in self.registry.ids if i in self._pos]

    def __iter__(self):  # type: ignore[no-untyped-def]
        return (self._pos[i] for i in self.instruments())
