"""What the routes call: query validation, history reads (off the event loop), status, stream filters.

The store sits behind the `HistoryStore` protocol, so a PostgreSQL store can replace ClickHouse without
touching the routes. Store calls are blocking; they run in worker threads so SSE clients keep streaming.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio
import msgspec

from commodex.embedded.storage import StoreCounts
from market.events import Bar, DeadLetter, Signal, SignalKind
from market.instruments import Registry, default_registry
from market.timeutil import format_interval, parse_interval, parse_iso
from serving.config import ServingConfig
from serving.live import LiveHub, StreamFilter
from serving.views import (
    BarView,
    DeadLetterView,
    InstrumentView,
    SignalView,
    bar_view,
    dead_letter_view,
    instrument_view,
    signal_view,
)


class HistoryStore(Protocol):
    def bars(self, instrument_id: str, interval_ns: int, start_ns: int | None = None, end_ns: int | None = None,
             limit: int = 500) -> list[Bar]: ...

    def signals(self, kind: str | None = None, instrument: str | None = None, since_ns: int | None = None,
                limit: int = 100) -> list[Signal]: ...

    def dead_letters(self, reason: str | None = None, limit: int = 100) -> list[DeadLetter]: ...

    def counts(self) -> StoreCounts: ...


class InvalidQuery(ValueError):
    """A request parameter that does not parse or is out of range (HTTP 422)."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param


class NotFound(LookupError):
    """A well-formed reference to something that does not exist, e.g. an unknown instrument (HTTP 404)."""


def parse_time(param: str, text: str | None) -> int | None:
    """An ISO 8601 timestamp with a zone ('Z' or offset) or an integer of UTC nanoseconds."""
    if text is None or text == "":
        return None
    t = text.strip()
    if t.lstrip("-").isdigit():
        return int(t)
    try:
        return parse_iso(t)
    except ValueError as e:
        raise InvalidQuery(param, f"{text!r} is neither ISO 8601 with a zone nor integer nanoseconds ({e})") from e


def parse_limit(param: str, value: int | None, default: int, maximum: int) -> int:
    """Default when absent; values above the maximum are capped (documented), below 1 rejected."""
    if value is None:
        return default
    if value < 1:
        raise InvalidQuery(param, "must be >= 1")
    return min(value, maximum)


class BarsPage(msgspec.Struct, frozen=True):
    instrument: str
    interval: str
    interval_ns: int
    limit: int
    bars: list[BarView]


class HistoryService:
    def __init__(self, store: HistoryStore, registry: Registry | None = None,
                 config: ServingConfig | None = None) -> None:
        self.store = store
        self.registry = registry or default_registry()
        self.config = config or ServingConfig()

    def _instrument(self, instrument_id: str) -> str:
        if instrument_id not in self.registry:
            raise NotFound(f"unknown instrument {instrument_id!r}")
        return instrument_id

    async def bars(self, instrument: str, interval: str, start: str | None = None, end: str | None = None,
                   limit: int | None = None) -> BarsPage:
        iid = self._instrument(instrument)
        try:
            interval_ns = parse_interval(interval)
        except ValueError as e:
            raise InvalidQuery("interval", str(e)) from e
        lo, hi = parse_time("start", start), parse_time("end", end)
        if lo is not None and hi is not None and hi <= lo:
            raise InvalidQuery("end", "must be after start")
        n = parse_limit("limit", limit, self.config.bars_limit_default, self.config.bars_limit_max)
        bars = await anyio.to_thread.run_sync(self.store.bars, iid, interval_ns, lo, hi, n)
        return BarsPage(iid, format_interval(interval_ns), interval_ns, n, [bar_view(b) for b in bars])

    async def signals(self, kind: str | None = None, instrument: str | None = None, since: str | None = None,
                      limit: int | None = None) -> list[SignalView]:
        if kind is not None and kind not in {k.value for k in SignalKind}:
            raise InvalidQuery("kind", f"{kind!r} is not one of {', '.join(k.value for k in SignalKind)}")
        if instrument is not None and not self._known_instrument_or_pair(instrument):
            raise NotFound(f"unknown instrument or pair {instrument!r}")
        since_ns = parse_time("since", since)
        n = parse_limit("limit", limit, self.config.signals_limit_default, self.config.signals_limit_max)
        sigs = await anyio.to_thread.run_sync(self.store.signals, kind, instrument, since_ns, n)
        return [signal_view(s) for s in sigs]

    def _known_instrument_or_pair(self, text: str) -> bool:
        # arbitrage signals are filed under "<buy leg>/<sell leg>" as well as under each leg
        return all(part in self.registry for part in text.split("/")) and text.count("/") <= 1

    async def dead_letters(self, reason: str | None = None, limit: int | None = None) -> list[DeadLetterView]:
        n = parse_limit("limit", limit, self.config.dead_letters_limit_default, self.config.dead_letters_limit_max)
        letters = await anyio.to_thread.run_sync(self.store.dead_letters, reason, n)
        return [dead_letter_view(d) for d in letters]

    async def counts(self) -> StoreCounts:
        return await anyio.to_thread.run_sync(self.store.counts)

    def instruments(self) -> list[InstrumentView]:
        return [instrument_view(i) for i in self.registry]


_STREAM_KEYS = {"bar", "tick", "tick.trade", "tick.quote", "signal", "status"} | {
    f"signal.{k.value}" for k in SignalKind
}


def parse_stream_filter(registry: Registry, topics: str | None, instrument: str | None) -> StreamFilter:
    """`topics`: comma list of bar, bar.<interval>, tick, tick.trade, tick.quote, signal, signal.<kind>, status.
    `instrument`: comma list of instrument ids (an arbitrage signal matches either leg)."""
    keys: set[str] | None = None
    if topics:
        keys = set()
        for raw in topics.split(","):
            t = raw.strip()
            if t.startswith("bar."):
                try:
                    t = "bar." + format_interval(parse_interval(t[4:]))
                except ValueError as e:
                    raise InvalidQuery("topics", str(e)) from e
            elif t not in _STREAM_KEYS:
                raise InvalidQuery("topics", f"unknown topic {t!r}; use {', '.join(sorted(_STREAM_KEYS))}, bar.<1m>")
            keys.add(t)
    insts: set[str] | None = None
    if instrument:
        insts = {i.strip() for i in instrument.split(",") if i.strip()}
        unknown = sorted(i for i in insts if i not in registry)
        if unknown:
            raise NotFound(f"unknown instrument {', '.join(unknown)}")
    return StreamFilter(None if keys is None else frozenset(keys), None if insts is None else frozenset(insts))


def _no_status() -> dict[str, Any]:
    return {}


@dataclass
class Services:
    """Everything the HTTP layer needs; the engine builds it and fills `status` with its own summary."""

    history: HistoryService
    hub: LiveHub
    registry: Registry
    status: Callable[[], dict[str, Any]] = _no_status
    config: ServingConfig = field(default_factory=ServingConfig)

    @classmethod
    def build(cls, store: HistoryStore, registry: Registry, status: Callable[[], dict[str, Any]] | None = None,
              config: ServingConfig | None = None, hub: LiveHub | None = None) -> Services:
        cfg = config or ServingConfig()
        return cls(HistoryService(store, registry, cfg), hub or LiveHub(cfg.live), registry, status or _no_status,
                   cfg)

    async def status_document(self) -> dict[str, Any]:
        return {
            "engine": self.status(),
            "live": msgspec.to_builtins(self.hub.stats()),
            "store": msgspec.to_builtins(await self.history.counts()),
        }

    def stream_filter(self, topics: str | None, instrument: str | None) -> StreamFilter:
        return parse_stream_filter(self.registry, topics, instrument)
