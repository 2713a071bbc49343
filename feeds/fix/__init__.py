"""FIX tag=value: framing codec (codec), sequence tracking (session), market data to ticks (marketdata)."""
