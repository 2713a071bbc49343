"""Sink that feeds the pipeline's outputs to the live trade module (serving.trading_service).

The engine hands each batch to its sinks as dead letters, bars, signals, then ticks (the batch's last trade
and quote per instrument). The trade module must see the market move before it acts on the signals that move
produced (else it prices from the previous batch's quotes, or finds them stale), so this sink holds a batch's
bars and signals until its ticks arrive and then passes the three together (`TradingService.on_batch`).
A batch without accepted ticks (all rejected, or the end-of-input flush) is passed on with the next batch's
ticks, or by `flush()`. Dead letters are not the trade module's business.

Called on the engine's thread (the event loop in the demo); see TradingService for the locking.
"""

from __future__ import annotations

from jobs.sink import Sink
from market.events import Bar, QuoteTick, Signal, TradeTick
from serving.trading_service import TradingService


class TradingSink(Sink):
    def __init__(self, service: TradingService) -> None:
        self.service = service
        self._bars: list[Bar] = []
        self._signals: list[Signal] = []

    def bars(self, bars: list[Bar]) -> None:
        self._bars += bars

    def signals(self, signals: list[Signal]) -> None:
        self._signals += signals

    def ticks(self, last: list[TradeTick | QuoteTick]) -> None:
        bars, signals, self._bars, self._signals = self._bars, self._signals, [], []
        self.service.on_batch(last, bars, signals)

    def flush(self) -> None:
        """Pass on what a batch without ticks left behind (call after the engine's finish())."""
        self.ticks([])

    @property
    def pending(self) -> int:
        return len(self._bars) + len(self._signals)
