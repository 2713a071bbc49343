"""In-process bus: routing, ordering, bounded drop-oldest overflow, close, thread hand-off."""

from __future__ import annotations

import asyncio
import threading

import pytest

from commodex.embedded.bus import Bus
from market import topics
from market.events import SignalKind


async def test_delivers_in_order_to_every_subscriber_of_the_topic() -> None:
    bus = Bus()
    a = bus.subscribe(topics.TICKS, name="a")
    b = bus.subscribe(topics.TICKS, name="b")
    other = bus.subscribe(topics.DLQ)
    for i in range(5):
        assert bus.publish(topics.TICKS, i) == 2
    assert [await a.get() for _ in range(5)] == [0, 1, 2, 3, 4]
    assert b.drain() == [0, 1, 2, 3, 4]
    assert len(other) == 0


async def test_iterator_wakes_on_publish_and_ends_on_close() -> None:
    bus = Bus()
    sub = bus.subscribe(topics.bars(60 * 10**9))
    got: list[int] = []

    async def consume() -> None:
        async for item in sub:
            got.append(item)

    task = asyncio.create_task(consume())
    await asyncio.sleep(0)  # consumer now waits on an empty buffer
    bus.publish(topics.bars(60 * 10**9), 1)
    bus.publish(topics.bars(60 * 10**9), 2)
    await asyncio.sleep(0)
    sub.close()
    await asyncio.wait_for(task, 1)
    assert got == [1, 2]
    # after close the topic has no subscriber: further items are counted as unrouted, not queued
    assert bus.publish(topics.bars(60 * 10**9), 3) == 0
    stats = {t.topic: t for t in bus.stats().topics}
    assert stats["md.bars.1m"].published == 3
    assert stats["md.bars.1m"].unrouted == 1


async def test_slow_subscriber_drops_oldest_and_counts_without_blocking_others() -> None:
    bus = Bus()
    slow = bus.subscribe(topics.TICKS, maxsize=3, name="slow")
    fast = bus.subscribe(topics.TICKS, maxsize=100, name="fast")
    for i in range(10):
        bus.publish(topics.TICKS, i)  # returns at once even though `slow` is full
    assert slow.drain() == [7, 8, 9]
    assert fast.drain() == list(range(10))
    by_name = {s.name: s for s in bus.stats().subscriptions}
    assert by_name["slow"].dropped == 7
    assert by_name["slow"].delivered == 3
    assert by_name["fast"].dropped == 0
    assert by_name["fast"].delivered == 10


async def test_prefix_pattern_matches_every_signal_topic() -> None:
    bus = Bus()
    all_signals = bus.subscribe("signals.*")
    crash_only = bus.subscribe(topics.signals(SignalKind.CRASH))
    for k in SignalKind:
        bus.publish(topics.signals(k), k.value)
    bus.publish(topics.TICKS, "tick")
    assert all_signals.drain() == [k.value for k in SignalKind]
    assert crash_only.drain() == ["crash"]
    all_signals.close()
    bus.publish(topics.signals(SignalKind.ANOMALY), "late")
    assert len(all_signals) == 0


async def test_get_nowait_on_empty_raises() -> None:
    sub = Bus().subscribe(topics.DLQ)
    with pytest.raises(asyncio.QueueEmpty):
        sub.get_nowait()


async def test_publish_threadsafe_hands_items_to_the_loop_in_order() -> None:
    bus = Bus()
    bus.bind(asyncio.get_running_loop())
    sub = bus.subscribe(topics.ALERTS)

    def producer() -> None:
        for i in range(100):
            bus.publish_threadsafe(topics.ALERTS, i)

    t = threading.Thread(target=producer)
    t.start()
    t.join()
    got = [await asyncio.wait_for(sub.get(), 1) for _ in range(100)]
    assert got == list(range(100))


def test_publish_threadsafe_without_loop_is_an_error() -> None:
    with pytest.raises(RuntimeError):
        Bus().publish_threadsafe(topics.TICKS, 1)


def test_maxsize_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Bus().subscribe(topics.TICKS, maxsize=0)
