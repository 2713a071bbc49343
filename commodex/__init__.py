"""commodex: market intelligence engine for commodity markets."""

__version__ = "0.1.0"
