"""In-process pub/sub over the topic names of market.topics, for one asyncio event loop.

Overflow policy: every subscription has a bounded buffer. Publishing never blocks and never waits for a
subscriber; when a subscriber's buffer is full the OLDEST item is dropped and counted in that
subscription's `dropped` (see `Bus.stats()`). A topic with no subscriber counts the item as `unrouted`.

Threading: `publish` and `subscribe` must be called on the loop thread (plain deques, no locks). From
another thread use `publish_threadsafe`, which hands the item to the loop the bus is bound to.

Patterns: a subscription topic ending in '*' matches every topic with that prefix ("signals.*").
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import msgspec


class SubscriptionStats(msgspec.Struct, frozen=True):
    topic: str
    name: str
    delivered: int  # items handed to the consumer
    dropped: int  # items discarded by the drop-oldest policy
    depth: int  # items waiting now
    maxsize: int


class TopicStats(msgspec.Struct, frozen=True):
    topic: str
    published: int
    unrouted: int  # published while nobody subscribed


class BusStats(msgspec.Struct, frozen=True):
    topics: list[TopicStats]
    subscriptions: list[SubscriptionStats]


class Subscription:
    """A bounded buffer of ONE consumer task; an async iterator over the items (ends after `close()`)."""

    def __init__(self, bus: Bus, topic: str, maxsize: int, name: str) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self.topic = topic
        self.name = name
        self.maxsize = maxsize
        self.delivered = 0
        self.dropped = 0
        self.closed = False
        self._bus = bus
        self._items: deque[Any] = deque()
        self._waiter: asyncio.Future[None] | None = None

    def _offer(self, item: Any) -> None:
        if len(self._items) >= self.maxsize:
            self._items.popleft()
            self.dropped += 1
        self._items.append(item)
        self._wake()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def __len__(self) -> int:
        return len(self._items)

    def get_nowait(self) -> Any:
        """The oldest waiting item; raises asyncio.QueueEmpty when none."""
        if not self._items:
            raise asyncio.QueueEmpty
        self.delivered += 1
        return self._items.popleft()

    def drain(self, max_items: int | None = None) -> list[Any]:
        """Every waiting item (or the oldest `max_items`), without waiting: for batch consumers."""
        n = len(self._items) if max_items is None else min(max_items, len(self._items))
        out = [self._items.popleft() for _ in range(n)]
        self.delivered += n
        return out

    async def wait(self) -> bool:
        """Wait until an item is waiting. False when the subscription is closed and empty."""
        while not self._items:
            if self.closed:
                return False
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return True

    async def get(self) -> Any:
        if not await self.wait():
            raise StopAsyncIteration
        return self.get_nowait()

    def __aiter__(self) -> AsyncIterator[Any]:
        return self

    async def __anext__(self) -> Any:
        return await self.get()

    def close(self) -> None:
        """Unsubscribe. Items already waiting can still be read; iteration then ends."""
        if not self.closed:
            self.closed = True
            self._bus._remove(self)
            self._wake()

    def stats(self) -> SubscriptionStats:
        return SubscriptionStats(self.topic, self.name, self.delivered, self.dropped, len(self._items), self.maxsize)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Bus:
    def __init__(self, default_maxsize: int = 10_000) -> None:
        self.default_maxsize = default_maxsize
        self._exact: dict[str, list[Subscription]] = {}
        self._prefix: list[tuple[str, Subscription]] = []
        self._routes: dict[str, list[Subscription]] = {}  # topic -> subscribers, rebuilt on (un)subscribe
        self._published: dict[str, int] = {}
        self._unrouted: dict[str, int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._count = 0

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop `publish_threadsafe` hands items to."""
        self._loop = loop

    def subscribe(self, topic: str, maxsize: int | None = None, name: str = "") -> Subscription:
        self._count += 1
        size = self.default_maxsize if maxsize is None else maxsize
        sub = Subscription(self, topic, size, name or f"sub{self._count}")
        if topic.endswith("*"):
            self._prefix.append((topic[:-1], sub))
        else:
            self._exact.setdefault(topic, []).append(sub)
        self._routes.clear()
        return sub

    def _remove(self, sub: Subscription) -> None:
        subs = self._exact.get(sub.topic)
        if subs is not None and sub in subs:
            subs.remove(sub)
            if not subs:
                del self._exact[sub.topic]
        self._prefix = [(p, s) for p, s in self._prefix if s is not sub]
        self._routes.clear()

    def _route(self, topic: str) -> list[Subscription]:
        subs = self._routes.get(topic)
        if subs is None:
            subs = list(self._exact.get(topic, ()))
            subs.extend(s for p, s in self._prefix if topic.startswith(p))
            self._routes[topic] = subs
        return subs

    def publish(self, topic: str, item: Any) -> int:
        """Deliver to every subscriber of `topic` without blocking. Returns how many subscribers got it."""
        subs = self._route(topic)
        self._published[topic] = self._published.get(topic, 0) + 1
        if not subs:
            self._unrouted[topic] = self._unrouted.get(topic, 0) + 1
            return 0
        for s in subs:
            s._offer(item)
        return len(subs)

    def publish_many(self, topic: str, items: list[Any]) -> int:
        for item in items:
            self.publish(topic, item)
        return len(items)

    def publish_threadsafe(self, topic: str, item: Any) -> None:
        if self._loop is None:
            raise RuntimeError("Bus.publish_threadsafe needs bind(loop) first")
        self._loop.call_soon_threadsafe(self.publish, topic, item)

    def stats(self) -> BusStats:
        topics = [TopicStats(t, n, self._unrouted.get(t, 0)) for t, n in sorted(self._published.items())]
        subs = [s for group in self._exact.values() for s in group] + [s for _, s in self._prefix]
        return BusStats(topics, [s.stats() for s in subs])
