"""Live views in Redis: the latest tick per instrument in a hash, and a pub/sub channel fanning out every
live update (ticks, bars, signals) as codec JSON to any number of subscribers (dashboards, other processes).

The hash is conflated in arrival order: the job hands over the latest trade/quote per instrument of each
batch, and the last write wins. Readers get typed ticks back (`latest`), or the price alone (`latest_price`:
a trade's price, a quote's mid).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import redis

from jobs.sink import Sink
from market import codec
from market.events import Bar, Event, QuoteTick, Signal, TradeTick

LATEST_KEY = "commodex:latest"
CHANNEL = "commodex:live"


@dataclass(frozen=True, slots=True)
class RedisKeys:
    latest: str = LATEST_KEY
    channel: str = CHANNEL


class RedisLive:
    def __init__(self, url: str, keys: RedisKeys | None = None) -> None:
        self.keys = keys or RedisKeys()
        self.client = redis.Redis.from_url(url)

    def publish(self, ticks: Sequence[TradeTick | QuoteTick] = (), others: Sequence[Event] = ()) -> int:
        """One round trip: HSET the ticks, PUBLISH every record. Returns the number of messages published."""
        if not ticks and not others:
            return 0
        pipe = self.client.pipeline(transaction=False)
        if ticks:
            encoded = [codec.encode(t) for t in ticks]
            pipe.hset(self.keys.latest, mapping={t.instrument_id: data for t, data in zip(ticks, encoded, strict=True)})
            for data in encoded:
                pipe.publish(self.keys.channel, data)
        for ev in others:
            pipe.publish(self.keys.channel, codec.encode(ev))
        pipe.execute()
        return len(ticks) + len(others)

    def latest(self, instrument_id: str) -> TradeTick | QuoteTick | None:
        raw = self.client.hget(self.keys.latest, instrument_id)
        return None if raw is None else codec.decode_tick(raw)  # type: ignore[arg-type]

    def latest_all(self) -> dict[str, TradeTick | QuoteTick]:
        raw: dict[bytes, bytes] = self.client.hgetall(self.keys.latest)  # type: ignore[assignment]
        return {k.decode(): codec.decode_tick(v) for k, v in raw.items()}

    def latest_price(self, instrument_id: str) -> int | None:
        t = self.latest(instrument_id)
        if t is None:
            return None
        return t.price if isinstance(t, TradeTick) else (t.bid + t.ask) // 2

    def subscribe(self) -> LiveSubscription:
        """A subscription that is active on the server when this returns (nothing published after is missed)."""
        return LiveSubscription(self.client, self.keys.channel)

    def clear(self) -> None:
        self.client.delete(self.keys.latest)

    def close(self) -> None:
        self.client.close()


class LiveSubscription:
    def __init__(self, client: redis.Redis, channel: str, timeout_s: float = 10.0) -> None:
        self._ps = client.pubsub()
        self._ps.subscribe(channel)
        deadline = time.monotonic() + timeout_s
        while True:  # wait for the server's confirmation
            msg = self._ps.get_message(timeout=1.0)
            if msg is not None and msg["type"] == "subscribe":
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"no confirmation of SUBSCRIBE {channel} after {timeout_s} s")

    def get(self, timeout_s: float = 1.0) -> Event | None:
        """The next live record, or None after timeout_s without one."""
        deadline = time.monotonic() + timeout_s
        while True:
            msg = self._ps.get_message(timeout=max(0.0, deadline - time.monotonic()))
            if msg is not None and msg["type"] == "message":
                return codec.decode(msg["data"])
            if time.monotonic() >= deadline:
                return None

    def close(self) -> None:
        self._ps.close()


class RedisLiveSink(Sink):
    """Job outputs to Redis: latest ticks into the hash, ticks + bars + signals onto the channel."""

    def __init__(self, live: RedisLive) -> None:
        self.live = live

    def ticks(self, last: list[TradeTick | QuoteTick]) -> None:
        self.live.publish(ticks=last)

    def bars(self, bars: list[Bar]) -> None:
        self.live.publish(others=list(bars))

    def signals(self, signals: list[Signal]) -> None:
        self.live.publish(others=list(signals))
