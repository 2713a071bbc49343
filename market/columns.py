"""Columnar tick batches: the hot-path form of ticks (numba kernels take these arrays).

Trades and quotes share one layout; `kind` says which fields are meaningful. Prices are fixed-point
int64 (market.fixedpoint). Rows with an unknown instrument carry index -1 until validation rejects them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Self

import numpy as np

from market.events import DeadLetter, QuoteTick, Side, Tick, TradeTick
from market.instruments import Registry

KIND_TRADE = 0
KIND_QUOTE = 1

_DTYPES: dict[str, type] = {
    "instrument": np.int32,
    "kind": np.int8,
    "ts_event": np.int64,
    "ts_recv": np.int64,
    "seq": np.int64,
    "price": np.int64,
    "size": np.int64,
    "bid": np.int64,
    "ask": np.int64,
    "bid_size": np.int64,
    "ask_size": np.int64,
}


class Columnar:
    """Equal-length numpy columns with row operations; subclasses are slotted dataclasses naming DTYPES."""

    __slots__ = ()
    DTYPES: ClassVar[dict[str, type]]

    def __len__(self) -> int:
        return int(self.ts_event.shape[0])  # type: ignore[attr-defined]

    @classmethod
    def empty(cls, n: int = 0) -> Self:
        return cls(**{name: np.zeros(n, dtype=dt) for name, dt in cls.DTYPES.items()})

    def take(self, index: np.ndarray | slice) -> Self:
        """Rows by boolean mask, integer index or slice (copies for masks/indices)."""
        return type(self)(**{name: getattr(self, name)[index] for name in self.DTYPES})

    @classmethod
    def concat(cls, parts: list[Self]) -> Self:
        if not parts:
            return cls.empty()
        if len(parts) == 1:
            return parts[0]
        return cls(**{name: np.concatenate([getattr(p, name) for p in parts]) for name in cls.DTYPES})


@dataclass(slots=True)
class TickColumns(Columnar):
    DTYPES: ClassVar[dict[str, type]] = _DTYPES

    instrument: np.ndarray
    kind: np.ndarray
    ts_event: np.ndarray
    ts_recv: np.ndarray
    seq: np.ndarray
    price: np.ndarray
    size: np.ndarray
    bid: np.ndarray
    ask: np.ndarray
    bid_size: np.ndarray
    ask_size: np.ndarray

    @classmethod
    def from_ticks(cls, ticks: list[Tick], registry: Registry) -> TickColumns:
        n = len(ticks)
        c = cls.empty(n)
        for i, t in enumerate(ticks):
            c.instrument[i] = registry.index_of(t.instrument_id)
            c.ts_event[i] = t.ts_event
            c.ts_recv[i] = t.ts_recv
            c.seq[i] = t.seq
            if isinstance(t, TradeTick):
                c.kind[i] = KIND_TRADE
                c.price[i] = t.price
                c.size[i] = t.size
            else:
                c.kind[i] = KIND_QUOTE
                c.bid[i] = t.bid
                c.ask[i] = t.ask
                c.bid_size[i] = t.bid_size
                c.ask_size[i] = t.ask_size
        return c

    def row(self, i: int, registry: Registry) -> Tick:
        """One row back as a typed tick (for dead letters, APIs and tests)."""
        idx = int(self.instrument[i])
        iid = registry.by_index(idx).id if idx >= 0 else "?"
        if self.kind[i] == KIND_TRADE:
            return TradeTick(iid, int(self.price[i]), int(self.size[i]), int(self.ts_event[i]),
                             int(self.ts_recv[i]), int(self.seq[i]), Side.NONE)
        return QuoteTick(iid, int(self.bid[i]), int(self.ask[i]), int(self.bid_size[i]), int(self.ask_size[i]),
                         int(self.ts_event[i]), int(self.ts_recv[i]), int(self.seq[i]))


@dataclass(slots=True)
class Ingested:
    """One batch after the edge: accepted rows in arrival order, and every rejected row as a dead letter."""

    columns: TickColumns
    dead_letters: list[DeadLetter]

    @property
    def rows_in(self) -> int:
        return len(self.columns) + len(self.dead_letters)
