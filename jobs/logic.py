"""The contract every piece of signal logic follows, whatever runtime wraps it.

Logic is plain Python (with numba kernels for hot loops), holds explicit state, does no I/O and reads no
clock: time is event time, carried by the items and by watermarks the runtime passes in. A runtime
(the embedded engine, a Flink KeyedProcessFunction) only feeds items, fires timers and stores snapshots.

    out = logic.on_item(item)          # -> list of outputs
    out = logic.on_watermark(wm_ns)    # event-time timers: everything due at or before wm_ns fires
    snap = logic.snapshot()            # msgspec Struct, encodable with market.codec-style msgspec
    logic = Logic.restore(config, snap)

Errors and late data are outputs (DeadLetter records), never log-and-continue.
"""

from __future__ import annotations

from typing import Any, Generic, Protocol, TypeVar

In = TypeVar("In", contravariant=True)
Out = TypeVar("Out")


class Logic(Protocol[In, Out]):
    def on_item(self, item: In) -> list[Out]: ...

    def on_watermark(self, watermark_ns: int) -> list[Out]: ...

    def snapshot(self) -> Any: ...


K = TypeVar("K")
T = TypeVar("T")


class Keyed(Generic[K, T]):
    """Per-key instances of one logic class, created on first sight of a key (what Flink's keyBy gives)."""

    def __init__(self, factory: Any) -> None:
        self._factory = factory
        self.instances: dict[K, T] = {}

    def get(self, key: K) -> T:
        inst = self.instances.get(key)
        if inst is None:
            inst = self.instances[key] = self._factory(key)
        return inst
