"""`commodex stack serve`: the same FastAPI app as the embedded demo, on the stack.

- History: PostgreSQL by default (`PgHistoryStore`). chdb opens one data path per process and the
  ClickHouse sink loop already holds it, so ClickHouse serves history only when `clickhouse_dsn` names a
  server (http:// or https://), or when asked for explicitly (`--history clickhouse`).
- Live: every replica subscribes to the Redis channel that `RedisLiveSink` publishes to (`RedisHubFeed`)
  and feeds its own `LiveHub`, so one publish reaches the SSE clients of every replica once. A new client's
  first frames are the latest tick per instrument and kind (`SeededLiveHub`), seeded from the Redis hash
  whenever the feed (re)subscribes and kept current by the channel.

Routes are untouched: this module only chooses the store and wires the hub.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec
import redis
from fastapi import FastAPI

from commodex.embedded.storage import ClickHouseStore, StorageConfig
from market.config import Config
from market.events import Bar, DeadLetter, QuoteTick, Signal, TradeTick
from market.instruments import default_registry
from serving.app import create_app
from serving.config import LiveHubConfig, ServingConfig
from serving.live import Frame, LiveClient, LiveHub, StreamFilter
from serving.services import HistoryStore, Services
from stack.pg_history import PgHistoryStore
from stack.redis_live import AsyncLiveSubscription, LiveBatch, RedisKeys
from stack.settings import StackSettings

__all__ = ["LiveFeedConfig", "LiveFeedStats", "RedisHubFeed", "SeededLiveHub", "StackServing",
           "build_serving", "history_backend", "open_history", "run_serve"]

History = Literal["auto", "postgres", "clickhouse"]
_LIVE_TYPES = (TradeTick, QuoteTick, Bar, *Signal.__args__)  # type: ignore[attr-defined]


class LiveFeedConfig(Config, frozen=True):
    batch_max_messages: int = 1000  # channel messages handed to the hub in one publish
    poll_timeout_s: float = 1.0
    backoff_initial_ms: int = 100  # after a lost Redis connection, doubling up to backoff_max_ms
    backoff_max_ms: int = 5000
    keep_rejects: int = 20  # last undecodable messages shown in the status document


class SeededLiveHub(LiveHub):
    """A LiveHub that remembers the last tick frame per (instrument, trade|quote) it published and queues
    those frames first for every new client (filters apply), so a fresh dashboard shows prices at once."""

    def __init__(self, config: LiveHubConfig | None = None) -> None:
        super().__init__(config)
        self._latest: dict[str, Frame] = {}

    def publish_frames(self, frames: list[Frame]) -> None:
        latest = self._latest
        for f in frames:
            if f.conflate_key is not None:
                latest[f.conflate_key] = f
        super().publish_frames(frames)

    def connect(self, flt: StreamFilter | None = None) -> LiveClient:
        c = super().connect(flt)
        if not c.closed:
            for f in self._latest.values():
                if c.accepts(f):
                    c.offer(f)
        return c

    def latest_keys(self) -> list[str]:
        return sorted(self._latest)


class LiveFeedStats(msgspec.Struct):
    subscribed: bool = False
    batches: int = 0
    received: int = 0  # channel messages (seeds not included)
    published: int = 0  # handed to the hub (seeds included)
    seeded: int = 0  # latest ticks read from the hash at (re)subscription
    skipped: int = 0  # decoded records the hub does not stream (e.g. a dead letter on the channel)
    rejected: int = 0  # undecodable messages (the last ones are in `rejects`)
    reconnects: int = 0
    errors: int = 0
    last_error: str = ""
    rejects: list[DeadLetter] = msgspec.field(default_factory=list)


class RedisHubFeed:
    """Redis channel -> one LiveHub, on the hub's event loop. Runs until cancelled; a lost connection is
    retried with backoff and the latest ticks re-read from the hash (pub/sub kept nothing meanwhile)."""

    def __init__(self, url: str, hub: LiveHub, keys: RedisKeys | None = None,
                 config: LiveFeedConfig | None = None) -> None:
        self.url = url
        self.hub = hub
        self.keys = keys or RedisKeys()
        self.config = config or LiveFeedConfig()
        self.ready = threading.Event()  # subscribed and seeded (a thread may wait on it, e.g. a test)
        self._stats = LiveFeedStats()
        self._rejects: deque[DeadLetter] = deque(maxlen=self.config.keep_rejects)
        self._task: asyncio.Task[None] | None = None

    def stats(self) -> LiveFeedStats:
        s = msgspec.structs.replace(self._stats, rejects=list(self._rejects))
        return msgspec.structs.replace(s, subscribed=self.ready.is_set())

    def start(self) -> asyncio.Task[None]:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self.run(), name="redis-hub-feed")
        return self._task

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def run(self) -> None:
        cfg = self.config
        backoff_s = cfg.backoff_initial_ms / 1000
        first = True
        while True:
            sub = AsyncLiveSubscription(self.url, self.keys)
            try:
                await sub.open()
                seed = await sub.latest_batch()
                seed.events.sort(key=lambda t: (t.ts_recv, t.instrument_id))  # type: ignore[union-attr]
                self._stats.seeded += len(seed.events)
                self.deliver(seed, from_channel=False)
                if not first:
                    self._stats.reconnects += 1
                first = False
                backoff_s = cfg.backoff_initial_ms / 1000
                self.ready.set()
                while True:
                    self.deliver(await sub.batch(cfg.batch_max_messages, cfg.poll_timeout_s))
            except (redis.ConnectionError, redis.TimeoutError, OSError, TimeoutError) as e:
                self.ready.clear()
                self._stats.errors += 1
                self._stats.last_error = f"{type(e).__name__}: {e}"
            finally:
                self.ready.clear()
                await sub.close()
            await asyncio.sleep(backoff_s)
            backoff_s = min(backoff_s * 2, cfg.backoff_max_ms / 1000)

    def deliver(self, batch: LiveBatch, from_channel: bool = True) -> None:
        """One batch (channel messages, or the hash's ticks) to the hub, in order (event loop thread)."""
        st = self._stats
        if from_channel:
            st.batches += 1
            st.received += len(batch.events) + len(batch.rejects)
        live: list[Any] = [e for e in batch.events if isinstance(e, _LIVE_TYPES)]
        st.skipped += len(batch.events) - len(live)
        if batch.rejects:
            st.rejected += len(batch.rejects)
            self._rejects.extend(batch.rejects)
        if live:
            self.hub.publish_many(live)
            st.published += len(live)


# ---- the app on the stack -------------------------------------------------------------------------------------

def history_backend(settings: StackSettings, choice: History = "auto") -> Literal["postgres", "clickhouse"]:
    if choice != "auto":
        return choice
    return "clickhouse" if settings.clickhouse_dsn.startswith(("http://", "https://")) else "postgres"


def open_history(settings: StackSettings, backend: Literal["postgres", "clickhouse"]) -> HistoryStore:
    if backend == "postgres":
        pg = PgHistoryStore(settings.pg_dsn)
        pg.ping()  # fail at start, not at the first request: unreachable server or schema not applied
        return pg
    ch = ClickHouseStore(StorageConfig(dsn=settings.clickhouse_dsn, database=settings.clickhouse_database))
    ch.migrate()  # selects the database (idempotent: creates nothing that exists)
    return ch


@dataclass
class StackServing:
    """Services + hub + Redis feed of one serving replica. `app()` builds the ASGI app whose lifespan runs
    the feed; without a lifespan (in-process test transports) run `async with serving.live():`."""

    settings: StackSettings
    backend: str
    store: HistoryStore
    services: Services
    hub: SeededLiveHub
    feed: RedisHubFeed
    _apps: list[FastAPI] = field(default_factory=list)

    def status(self) -> dict[str, Any]:
        return {"runtime": "stack", "history": self.backend, "live_feed": msgspec.to_builtins(self.feed.stats())}

    @contextlib.asynccontextmanager
    async def live(self) -> AsyncIterator[None]:
        self.hub.bind(asyncio.get_running_loop())
        self.feed.start()
        try:
            yield
        finally:
            await self.feed.stop()

    def app(self) -> FastAPI:
        app = create_app(self.services)
        inner = app.router.lifespan_context

        @contextlib.asynccontextmanager
        async def lifespan(a: FastAPI) -> AsyncIterator[None]:
            async with inner(a), self.live():
                yield

        app.router.lifespan_context = lifespan
        self._apps.append(app)
        return app

    def close(self) -> None:
        self.hub.close()
        close: Callable[[], None] | None = getattr(self.store, "close", None)
        if close is not None:
            close()


def build_serving(settings: StackSettings, history: History = "auto", config: ServingConfig | None = None,
                  keys: RedisKeys | None = None, feed: LiveFeedConfig | None = None) -> StackServing:
    cfg = config or ServingConfig()
    backend = history_backend(settings, history)
    store = open_history(settings, backend)
    hub = SeededLiveHub(cfg.live)
    redis_feed = RedisHubFeed(settings.redis_url, hub, keys, feed)
    serving = StackServing(settings, backend, store, Services.build(store, default_registry(), config=cfg, hub=hub),
                           hub, redis_feed)
    serving.services.status = serving.status
    return serving


# ---- the command ----------------------------------------------------------------------------------------------

def _check_redis(url: str) -> None:
    client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
    try:
        client.ping()
    finally:
        client.close()


def _server_class() -> type:
    from serving.server import DashboardServer

    class StackServer(DashboardServer):
        """SIGINT/SIGTERM are the normal way to stop this server: after the graceful shutdown the command
        returns 0 and closes its store, instead of uvicorn re-raising the signal at the process."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            with super().capture_signals():
                yield
                self._captured_signals.clear()

    return StackServer


async def _serve(serving: StackServing, host: str, port: int) -> None:
    import uvicorn

    server = _server_class()(uvicorn.Config(serving.app(), host=host, port=port, log_level="warning", lifespan="on",
                                            timeout_graceful_shutdown=5), serving.hub)
    print(f"commodex (stack, history from {serving.backend}, live from {serving.settings.redis_url}): "
          f"http://{host}:{port}/", file=sys.stderr)
    await server.serve()


def run_serve(args: argparse.Namespace, settings: StackSettings) -> int:
    import psycopg
    from clickhouse_connect.driver.exceptions import ClickHouseError

    try:
        _check_redis(settings.redis_url)
        serving = build_serving(settings, args.history)
    except (redis.RedisError, psycopg.Error, ClickHouseError, OSError) as e:
        print(f"commodex stack serve: {type(e).__name__}: {e} (is the stack up? `commodex stack up "
              f"--state-dir {settings.state_dir}`)", file=sys.stderr)
        return 1
    try:
        asyncio.run(_serve(serving, args.host, args.port))
    finally:
        serving.close()
    return 0

