"""The MCX bhavcopy CSV layout and its typed row."""

from __future__ import annotations

import msgspec

COLUMNS = (
    "__type", "Date", "Symbol", "ExpiryDate", "Open", "High", "Low", "Close", "PreviousClose", "Volume",
    "VolumeInThousands", "Value", "OpenInterest", "DateDisplay", "InstrumentName", "StrikePrice", "OptionType",
)


class BhavcopyRow(msgspec.Struct, frozen=True):
    """One contract on one trade date. Prices fixed point (1e-9) in INR per quote unit (10 g for GOLD)."""

    trade_date: str  # ISO YYYY-MM-DD (the exchange's trading day)
    symbol: str  # space padding stripped
    expiry: str  # ISO YYYY-MM-DD of ExpiryDate (e.g. 05DEC2025 -> 2025-12-05)
    expiry_code: str  # as in the file: 05DEC2025
    instrument_name: str  # FUTCOM
    open: int
    high: int
    low: int
    close: int
    previous_close: int
    volume_lots: int
    value: int  # fixed point, in the file's unit (INR lakhs)
    open_interest: int
    line: int  # 1-based line number in the file (header = 1)
