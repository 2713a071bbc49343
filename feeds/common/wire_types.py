"""Venue-neutral field types of the JSON venue protocols (ICE-style, MCX polling, CME-style FIX mapping):
decimal-string prices converted to fixed point exactly (no float on the way), bounded ints, aggressor codes."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from market.events import Side
from market.fixedpoint import PRICE_SCALE

I64_MAX = 2**63 - 1
PRICE_DIGITS = 9

Price = Annotated[str, msgspec.Meta(pattern=r"^-?[0-9]{1,9}(\.[0-9]{1,9})?\Z")]
Qty = Annotated[int, msgspec.Meta(ge=0, le=I64_MAX)]
TradeQty = Annotated[int, msgspec.Meta(ge=1, le=I64_MAX)]
Seq = Annotated[int, msgspec.Meta(ge=1, le=I64_MAX)]
SnapSeq = Annotated[int, msgspec.Meta(ge=0, le=I64_MAX)]  # 0: nothing published yet
Ts = Annotated[int, msgspec.Meta(ge=0, le=I64_MAX)]
Symbol = Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
ReqId = Annotated[int, msgspec.Meta(ge=0, le=I64_MAX)]
IntervalMs = Annotated[int, msgspec.Meta(ge=1, le=3_600_000)]
AggressorCode = Literal["B", "S", "N"]

SIDE_BY_CODE = {"B": Side.BUY, "S": Side.SELL, "N": Side.NONE}
_CODE = {Side.BUY: "B", Side.SELL: "S", Side.NONE: "N"}


_SCALE_BY_FRAC_DIGITS = tuple(10 ** (PRICE_DIGITS - k) for k in range(PRICE_DIGITS + 1))


def fixed_from_decimal(text: str) -> int:
    """Exact fixed point (1e-9) of a decimal string matching `Price` (checked while decoding): no float on
    the way. "71.25" -> int("7125") * 10**7; the sign rides along in int()."""
    i = text.find(".")
    if i < 0:
        return int(text) * PRICE_SCALE
    return int(text[:i] + text[i + 1:]) * _SCALE_BY_FRAC_DIGITS[len(text) - i - 1]


def decimal_from_fixed(value: int) -> str:
    """Shortest decimal string of a fixed-point price ("71.25", "-37.63", "5")."""
    sign = "-" if value < 0 else ""
    whole, frac = divmod(abs(value), PRICE_SCALE)
    if not frac:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{frac:09d}".rstrip("0")


def side_code(side: Side) -> AggressorCode:
    return _CODE[side]  # type: ignore[return-value]
