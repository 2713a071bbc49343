"""Loaders for formats quants already have: recorded FIX logs (fixlog), Databento DBN files (databento)."""
