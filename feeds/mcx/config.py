"""Bhavcopy loading configuration (one frozen config, units in the names)."""

from __future__ import annotations

from market.config import Config

ROLLS = ("most_active", "nearest")


class BhavcopyConfig(Config, frozen=True):
    instrument_id: str = "GOLD.MCX"  # registry instrument the daily bars are for
    symbol: str = "GOLD"  # bhavcopy Symbol (space padding stripped)
    instrument_name: str = "FUTCOM"  # commodity futures; options rows (OPTFUT) are another product
    expiry: str = ""  # one contract only, e.g. "05DEC2025"; "" = one contract per day chosen by `roll`
    roll: str = "most_active"  # per trade date: highest volume (ties: nearest expiry), or "nearest" expiry
    quote_units_per_lot: int = 100  # GOLD: 1 kg lot = 100 x 10 g (the quote unit)
    value_inr_per_unit: int = 100_000  # Value column is in INR lakhs
    close_outside_range: str = "keep"  # MCX Close is a settlement-style price: it may lie outside Low..High;
    # "keep" publishes it as is (counted), "dead_letter" rejects such rows
    source: str = "mcx.bhavcopy"

    def __post_init__(self) -> None:
        if self.roll not in ROLLS:
            raise ValueError(f"roll must be one of {ROLLS}, not {self.roll!r}")
        if self.close_outside_range not in ("keep", "dead_letter"):
            raise ValueError("close_outside_range must be 'keep' or 'dead_letter'")
        if self.quote_units_per_lot <= 0 or self.value_inr_per_unit <= 0:
            raise ValueError("quote_units_per_lot and value_inr_per_unit must be > 0")
