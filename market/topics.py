"""Every topic name, built in one place (the in-process bus and Kafka use the same names)."""

from __future__ import annotations

from market.events import SignalKind
from market.timeutil import format_interval

TICKS = "md.ticks"
QUOTE_SAMPLES = "md.quotes.sampled"
ALERTS = "alerts"
DLQ = "dlq"
LATE = "md.late"


def bars(interval_ns: int) -> str:
    return f"md.bars.{format_interval(interval_ns)}"


def signals(kind: SignalKind | str) -> str:
    return f"signals.{SignalKind(kind).value}"


def all_signal_topics() -> list[str]:
    return [signals(k) for k in SignalKind]
