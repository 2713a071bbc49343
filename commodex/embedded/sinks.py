"""Sinks of the embedded runtime: the chdb store and the live hub."""

from __future__ import annotations

from commodex.embedded.storage import ClickHouseStore
from jobs.sink import Sink
from market.events import Bar, DeadLetter, QuoteTick, Signal, TradeTick
from serving.live import LiveHub


class StoreSink(Sink):
    def __init__(self, store: ClickHouseStore) -> None:
        self.store = store

    def bars(self, bars: list[Bar]) -> None:
        self.store.insert_bars(bars)

    def signals(self, signals: list[Signal]) -> None:
        self.store.insert_signals(signals)

    def dead_letters(self, letters: list[DeadLetter]) -> None:
        self.store.insert_dead_letters(letters)


class HubSink(Sink):
    """Publishes to SSE clients; must be called on the hub's event loop thread."""

    def __init__(self, hub: LiveHub) -> None:
        self.hub = hub

    def bars(self, bars: list[Bar]) -> None:
        self.hub.publish_many(bars)

    def signals(self, signals: list[Signal]) -> None:
        self.hub.publish_many(signals)

    def ticks(self, last: list[TradeTick | QuoteTick]) -> None:
        self.hub.publish_many(last)
