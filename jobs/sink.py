"""Where a job's outputs go. Runtimes pass real sinks (chdb, live hub, Kafka); tests pass `ListSink`."""

from __future__ import annotations

from dataclasses import dataclass, field

from market.events import Bar, DeadLetter, QuoteTick, Signal, TradeTick


class Sink:
    """Each method receives one batch's records, in emission order. Default: ignore that stream."""

    def bars(self, bars: list[Bar]) -> None:
        return None

    def signals(self, signals: list[Signal]) -> None:
        return None

    def dead_letters(self, letters: list[DeadLetter]) -> None:
        return None

    def ticks(self, last: list[TradeTick | QuoteTick]) -> None:
        """Latest trade/quote per instrument of a batch (conflated: live views need no more)."""
        return None


@dataclass
class ListSink(Sink):
    all_bars: list[Bar] = field(default_factory=list)
    all_signals: list[Signal] = field(default_factory=list)
    all_dead_letters: list[DeadLetter] = field(default_factory=list)

    def bars(self, bars: list[Bar]) -> None:
        self.all_bars += bars

    def signals(self, signals: list[Signal]) -> None:
        self.all_signals += signals

    def dead_letters(self, letters: list[DeadLetter]) -> None:
        self.all_dead_letters += letters
