"""Live fan-out of engine events to Server-Sent-Events clients.

Cost model (INFRA.md: per-message framework overhead dominates fan-out): each event is encoded ONCE into
its final SSE bytes (`event: <name>\\ndata: <json>\\n\\n`), clients get references to those bytes, and a
client's writer sends everything waiting in one write. No per-client JSON, no sse-starlette.

Per client: one bounded FIFO (`LiveHubConfig.client_queue_size`) that keeps publish order.
- Ticks conflate: while a client has not yet been sent a tick for (instrument, trade|quote), a newer one
  REPLACES it in place, so a lagging client gets the latest price per instrument, never a backlog.
- Everything else (bars, signals, status) is kept in order; when the queue is full the oldest entry is
  dropped, counted, and the client is told with `event: gap` / `data: {"dropped": n}` before its next
  frames (the dashboard then reloads history). A slow client never blocks the publisher or other clients.
- Idle clients get a `: heartbeat` comment every `heartbeat_s`.
- `close()` (server shutdown) ends every stream: an SSE response never finishes by itself, and uvicorn's
  graceful shutdown waits for open responses, so without it the server cannot exit while a tab is open.

Threading: `publish*` and `connect` must run on the event loop thread; from the engine's thread use
`publish_threadsafe`, which schedules the publish on the loop the hub was bound to (`bind`, or the loop
of the first `connect`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

import anyio
import msgspec
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from market.events import Bar, QuoteTick, Signal, TradeTick, signal_kind
from market.timeutil import format_interval
from serving.config import LiveHubConfig
from serving.views import bar_view, signal_view, tick_view

LiveEvent = TradeTick | QuoteTick | Bar | Signal

_json = msgspec.json.Encoder()


class Frame:
    """One event encoded for every client: the bytes plus what filters match it."""

    __slots__ = ("data", "keys", "instruments", "conflate_key")

    def __init__(self, data: bytes, keys: tuple[str, ...], instruments: tuple[str, ...],
                 conflate_key: str | None = None) -> None:
        self.data = data
        self.keys = keys  # filter tokens this frame answers to, e.g. ("bar", "bar.1m")
        self.instruments = instruments  # () = not instrument-specific (status): passes instrument filters
        self.conflate_key = conflate_key  # ticks only


def sse_bytes(event: str, payload: bytes) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + payload + b"\n\n"


def encode_event(ev: LiveEvent) -> Frame:
    if isinstance(ev, Bar):
        return Frame(sse_bytes("bar", _json.encode(bar_view(ev))), ("bar", f"bar.{format_interval(ev.interval_ns)}"),
                     (ev.instrument_id,))
    if isinstance(ev, TradeTick | QuoteTick):
        sub = "trade" if isinstance(ev, TradeTick) else "quote"
        return Frame(sse_bytes("tick", _json.encode(tick_view(ev))), ("tick", f"tick.{sub}"), (ev.instrument_id,),
                     f"{ev.instrument_id}|{sub}")
    if isinstance(ev, Signal):
        view = signal_view(ev)
        return Frame(sse_bytes("signal", _json.encode(view)), ("signal", f"signal.{signal_kind(ev).value}"),
                     tuple(view.instruments))
    raise TypeError(f"LiveHub publishes ticks, bars and signals, not {type(ev).__name__}")


class StreamFilter(msgspec.Struct, frozen=True):
    keys: frozenset[str] | None = None  # None = every event
    instruments: frozenset[str] | None = None  # None = every instrument


class ClientStats(msgspec.Struct, frozen=True):
    id: int
    queued: int
    delivered: int  # frames written
    dropped: int  # frames discarded by the drop-oldest policy
    conflated: int  # ticks replaced by a newer tick before being sent


class HubStats(msgspec.Struct, frozen=True):
    clients: int
    published: int
    unrouted: int  # published while no client was connected
    connects: int
    disconnects: int
    delivered: int  # frames written, all clients (including disconnected ones)
    dropped: int
    conflated: int


class LiveClient:
    """One SSE connection's queue. Entries are frame bytes or, for ticks, a one-item list (replaceable slot)."""

    __slots__ = ("id", "filter", "maxsize", "queue", "slots", "waiter", "closed", "delivered", "dropped",
                 "conflated", "gap")

    def __init__(self, client_id: int, flt: StreamFilter, maxsize: int) -> None:
        self.id = client_id
        self.filter = flt
        self.maxsize = maxsize
        self.queue: deque[bytes | list[bytes]] = deque()
        self.slots: dict[str, list[bytes]] = {}  # conflate key -> its unsent slot in `queue`
        self.waiter: asyncio.Future[None] | None = None
        self.closed = False
        self.delivered = 0
        self.dropped = 0
        self.conflated = 0
        self.gap = 0  # drops not yet reported to the client

    def accepts(self, f: Frame) -> bool:
        keys, insts = self.filter.keys, self.filter.instruments
        if keys is not None and not any(k in keys for k in f.keys):
            return False
        return insts is None or not f.instruments or any(i in insts for i in f.instruments)

    def offer(self, f: Frame) -> None:
        key = f.conflate_key
        if key is not None:
            slot = self.slots.get(key)
            if slot is not None:
                slot[0] = f.data
                self.conflated += 1
                return
            slot = [f.data]
            self.slots[key] = slot
            self._append(slot)
        else:
            self._append(f.data)

    def _append(self, entry: bytes | list[bytes]) -> None:
        if len(self.queue) >= self.maxsize:
            old = self.queue.popleft()
            if isinstance(old, list):
                # the slot leaves the queue: forget it so the next tick of that key gets a new one
                self.slots = {k: s for k, s in self.slots.items() if s is not old}
            self.dropped += 1
            self.gap += 1
        self.queue.append(entry)

    def wake(self) -> None:
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)

    def take(self) -> bytes:
        """Everything waiting, as one write (a gap notice first when frames were dropped)."""
        parts = [e if isinstance(e, bytes) else e[0] for e in self.queue]
        self.delivered += len(parts)
        self.queue.clear()
        self.slots.clear()
        if self.gap:
            parts.insert(0, sse_bytes("gap", b'{"dropped":%d}' % self.gap))
            self.gap = 0
        return b"".join(parts)

    def stats(self) -> ClientStats:
        return ClientStats(self.id, len(self.queue), self.delivered, self.dropped, self.conflated)


class LiveHub:
    def __init__(self, config: LiveHubConfig | None = None) -> None:
        self.config = config or LiveHubConfig()
        self._clients: list[LiveClient] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._next_id = 0
        self._published = 0
        self._unrouted = 0
        self._connects = 0
        self._disconnects = 0
        self._gone_delivered = 0
        self._gone_dropped = 0
        self._gone_conflated = 0
        self._closed = False

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    # ---- publishing (event loop thread) -------------------------------------------------------------------

    def publish(self, event: LiveEvent) -> None:
        self.publish_frames([encode_event(event)])

    def publish_many(self, events: Iterable[LiveEvent]) -> None:
        self.publish_frames([encode_event(e) for e in events])

    def publish_status(self, status: Mapping[str, Any]) -> None:
        self.publish_frames([Frame(sse_bytes("status", _json.encode(status)), ("status",), ())])

    def publish_frames(self, frames: list[Frame]) -> None:
        self._published += len(frames)
        clients = self._clients
        if not clients:
            self._unrouted += len(frames)
            return
        for c in clients:
            got = False
            for f in frames:
                if c.accepts(f):
                    c.offer(f)
                    got = True
            if got:
                c.wake()

    def publish_threadsafe(self, events: list[LiveEvent]) -> None:
        """From any thread: encode here (off the loop), publish on the loop. No loop bound yet = no client
        has ever connected, so the events are counted as unrouted."""
        frames = [encode_event(e) for e in events]
        loop = self._loop
        if loop is None or loop.is_closed():
            self._unrouted += len(frames)
            self._published += len(frames)
            return
        loop.call_soon_threadsafe(self.publish_frames, frames)

    # ---- clients -----------------------------------------------------------------------------------------------

    def connect(self, flt: StreamFilter | None = None) -> LiveClient:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        self._next_id += 1
        c = LiveClient(self._next_id, flt or StreamFilter(), self.config.client_queue_size)
        self._connects += 1
        if self._closed:
            c.closed = True  # shutting down: the stream ends after its preamble; the browser retries later
            self._disconnects += 1
            return c
        self._clients = [*self._clients, c]  # copy: publish may be iterating the old list
        return c

    def close(self) -> None:
        """End every open stream and every later one (call before telling the HTTP server to exit).
        Frames still queued are not sent; browsers reconnect by themselves (`retry_ms`)."""
        self._closed = True
        for c in self._clients:
            self.disconnect(c)

    @property
    def closed(self) -> bool:
        return self._closed

    def disconnect(self, c: LiveClient) -> None:
        if c.closed:
            return
        c.closed = True
        self._clients = [x for x in self._clients if x is not c]
        self._disconnects += 1
        self._gone_delivered += c.delivered
        self._gone_dropped += c.dropped
        self._gone_conflated += c.conflated
        c.wake()

    async def stream(self, c: LiveClient) -> AsyncIterator[bytes]:
        """The byte stream of one client, from its first frame to disconnect."""
        loop = asyncio.get_running_loop()
        try:
            yield b"retry: %d\n: connected %d\n\n" % (self.config.retry_ms, c.id)
            while not c.closed:
                if not c.queue and not c.gap:
                    c.waiter = loop.create_future()
                    try:
                        await asyncio.wait_for(c.waiter, self.config.heartbeat_s)
                    except TimeoutError:
                        yield b": heartbeat\n\n"
                        continue
                    finally:
                        c.waiter = None
                    continue
                yield c.take()
        finally:
            self.disconnect(c)

    def stats(self) -> HubStats:
        cs = self._clients
        return HubStats(
            clients=len(cs), published=self._published, unrouted=self._unrouted, connects=self._connects,
            disconnects=self._disconnects, delivered=self._gone_delivered + sum(c.delivered for c in cs),
            dropped=self._gone_dropped + sum(c.dropped for c in cs),
            conflated=self._gone_conflated + sum(c.conflated for c in cs),
        )

    def client_stats(self) -> list[ClientStats]:
        return [c.stats() for c in self._clients]


class SSEResponse(StreamingResponse):
    """text/event-stream of one hub client. Watches for the disconnect itself (Starlette does so only for
    ASGI < 2.4; otherwise only the next write notices) so a closed tab frees its queue at once."""

    media_type = "text/event-stream"

    def __init__(self, hub: LiveHub, client: LiveClient) -> None:
        super().__init__(hub.stream(client), headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self.hub = hub
        self.client = client

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            async with anyio.create_task_group() as tg:

                async def run_stream() -> None:
                    # OSError: the peer closed the socket mid-write, i.e. a disconnect (handled in finally)
                    with contextlib.suppress(OSError):
                        await self.stream_response(send)
                    tg.cancel_scope.cancel()

                tg.start_soon(run_stream)
                await self.listen_for_disconnect(receive)
                tg.cancel_scope.cancel()
        finally:
            self.hub.disconnect(self.client)
