"""Fixed-point prices: every price on the wire and in state is an int of PRICE_SCALE units (1e-9)."""

from __future__ import annotations

import math
from decimal import Decimal

PRICE_DECIMALS = 9
PRICE_SCALE = 10**PRICE_DECIMALS


class PriceError(ValueError):
    """A price that cannot be represented (NaN, infinite, out of int64 range)."""


_MAX = 2**63 - 1


def to_fixed(price: float | int | str | Decimal) -> int:
    """Convert a decimal price to fixed point, rounding half to even at 1e-9."""
    if isinstance(price, float):
        if not math.isfinite(price):
            raise PriceError(f"price is not finite: {price!r}")
        value = round(price * PRICE_SCALE)
    else:
        d = Decimal(price)
        if not d.is_finite():
            raise PriceError(f"price is not finite: {price!r}")
        value = int((d * PRICE_SCALE).to_integral_value())
    if not -_MAX <= value <= _MAX:
        raise PriceError(f"price out of range: {price!r}")
    return int(value)


def to_float(fixed: int) -> float:
    return fixed / PRICE_SCALE


def to_decimal(fixed: int) -> Decimal:
    return Decimal(fixed) / PRICE_SCALE


def ticks_from_fixed(fixed: int, tick_fixed: int) -> int:
    """Integer tick count for a price on the tick grid; raises when off grid."""
    q, r = divmod(fixed, tick_fixed)
    if r:
        raise PriceError(f"price {to_decimal(fixed)} is off the tick grid {to_decimal(tick_fixed)}")
    return q
