"""Live views in Redis: the latest tick per instrument in a hash, and a pub/sub channel fanning out every
live update (ticks, bars, signals) as codec JSON to any number of subscribers (dashboards, other processes).

The hash is conflated in arrival order: the job hands over the latest trade/quote per instrument of each
batch, and the last write wins. Readers get typed ticks back (`latest`), or the price alone (`latest_price`:
a trade's price, a quote's mid).

Pub/sub is at-most-once: a subscriber that is disconnected misses what was published meanwhile, which is
why a serving replica re-reads the hash when it (re)subscribes (`AsyncLiveSubscription`, used by
`stack.serve`) and history comes from the databases, never from this channel.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import msgspec
import redis
import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from jobs.sink import Sink
from market import codec
from market.events import Bar, DeadLetter, Event, QuoteTick, Signal, TradeTick
from market.rejects import Reason
from market.timeutil import now_ns

LATEST_KEY = "commodex:latest"
CHANNEL = "commodex:live"
SOURCE = "redis"


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


@dataclass
class LiveBatch:
    """What arrived together on the channel, in publish order; messages that do not decode are dead letters."""

    events: list[Event] = field(default_factory=list)
    rejects: list[DeadLetter] = field(default_factory=list)


class AsyncLiveSubscription:
    """asyncio side of the live channel, for serving replicas: `open()` returns once the server confirmed the
    SUBSCRIBE (nothing published later is missed), `batch()` hands over everything waiting at once."""

    def __init__(self, url: str, keys: RedisKeys | None = None, timeout_s: float = 10.0) -> None:
        self.keys = keys or RedisKeys()
        # no silent reconnect: redis-py would resubscribe by itself, hiding that messages were lost meanwhile;
        # the caller reconnects and re-reads the hash instead
        self.client = redis.asyncio.Redis.from_url(url, socket_connect_timeout=timeout_s,
                                                   retry=Retry(NoBackoff(), 0))
        self._ps = self.client.pubsub()
        self._timeout_s = timeout_s

    async def open(self) -> None:
        await self._ps.subscribe(self.keys.channel)
        deadline = time.monotonic() + self._timeout_s
        while True:  # wait for the server's confirmation
            msg = await self._ps.get_message(timeout=1.0)
            if msg is not None and msg["type"] == "subscribe":
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"no confirmation of SUBSCRIBE {self.keys.channel} after {self._timeout_s} s")

    async def latest_batch(self) -> LiveBatch:
        """The hash: the latest tick per instrument (in no particular order); undecodable entries as rejects."""
        raw: dict[bytes, bytes] = await self.client.hgetall(self.keys.latest)  # type: ignore[misc,assignment]
        out = LiveBatch()
        for key, data in raw.items():
            t = codec.decode_tick_or_dead_letter(data, now_ns(), source=SOURCE)
            if isinstance(t, DeadLetter):
                out.rejects.append(msgspec.structs.replace(t, detail=f"{self.keys.latest}[{key!r}]: {t.detail}"))
            else:
                out.events.append(t)
        return out

    async def batch(self, max_messages: int = 1000, timeout_s: float = 1.0) -> LiveBatch:
        """Waits up to timeout_s for a first message, then takes what is already there (up to max_messages)."""
        out = LiveBatch()
        wait = timeout_s
        n = 0
        while n < max_messages:
            msg = await self._ps.get_message(timeout=wait)
            if msg is None:
                break
            wait = 0.0  # after the first message: only what has arrived already
            if msg["type"] != "message":
                continue
            n += 1
            data: bytes = msg["data"]
            try:
                out.events.append(codec.decode(data))
            # msgspec raises UnicodeDecodeError (not DecodeError) for invalid UTF-8 inside a JSON string
            except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as e:
                out.rejects.append(DeadLetter(SOURCE, Reason.MALFORMED.label, f"{self.keys.channel}: {e}",
                                              data.decode("utf-8", "backslashreplace")[:4096], now_ns()))
            if not n & 63:
                await asyncio.sleep(0)  # a long burst must not starve the SSE writers on this loop
        return out

    async def close(self) -> None:
        await self._ps.aclose()
        await self.client.aclose()
