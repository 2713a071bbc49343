"""The shape every exchange adapter shares: a sans-I/O protocol object and a thin asyncio runner.

The protocol (one class per venue, e.g. feeds.ice.protocol.IceProtocol) holds all the logic: it is fed
frames with the receive time the runner stamped, and queues `FeedEvent`s (ticks and dead letters) and
outbound frames, which the runner drains. It never reads a clock or touches a socket, so every rule of a
venue is unit-tested by feeding it bytes.

The runner (`FeedRunner`) only connects, reconnects with backoff, keeps the watchdog (heartbeats out,
stale connection -> reconnect), stamps ts_recv on each frame and hands events to a callback. The
transport is any `Connection` (the ICE client wraps a `websockets` connection).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from feeds.common.backoff import Backoff
from feeds.common.metrics import FeedMetrics
from feeds.common.watchdog import Watchdog
from market.events import DeadLetter, QuoteTick, TradeTick

FeedEvent = TradeTick | QuoteTick | DeadLetter
RAW_MAX = 4096  # dead letters keep at most this many characters of the raw frame


def raw_text(frame: bytes | str) -> str:
    """The frame as text for DeadLetter.raw: undecodable bytes escaped, never dropped; capped at RAW_MAX."""
    if isinstance(frame, str):
        return frame[:RAW_MAX]
    return bytes(frame[: RAW_MAX * 4]).decode("utf-8", "backslashreplace")[:RAW_MAX]


class FeedFatal(Exception):  # noqa: N818 - a state, not a programming error
    """The venue refused us in a way retrying cannot fix (e.g. login rejected): the runner stops."""


class ConnectionLost(Exception):  # noqa: N818
    """Raised by Connection.recv/send when the peer or the network closed the connection."""


class Connection(Protocol):
    async def send(self, frame: bytes) -> None: ...

    async def recv(self) -> bytes | str: ...

    async def close(self) -> None: ...


Connector = Callable[[], Awaitable[Connection]]


class SansIOFeed:
    """Base of venue protocols: event and outbound queues, metrics, dead-letter helper.

    Subclasses implement connection_made (queue the login), receive, heartbeat, poll and may set `fatal`.
    """

    name = "feed"

    def __init__(self, metrics: FeedMetrics | None = None) -> None:
        self.metrics = metrics if metrics is not None else FeedMetrics(self.name)
        self._events: list[FeedEvent] = []
        self._outbound: list[bytes] = []
        self.fatal: str | None = None  # set when reconnecting cannot help
        self.logged_in = False  # this connection reached the venue's live state (the runner resets backoff)

    # -- driven by the runner ------------------------------------------------------------------------

    def connection_made(self, now_ns: int) -> None:
        self.logged_in = False

    def connection_lost(self, reason: str) -> None:
        self.logged_in = False

    def receive(self, frame: bytes | str, ts_recv: int) -> None:
        raise NotImplementedError

    def heartbeat(self, now_ns: int) -> None:
        """Called when nothing was sent for the heartbeat interval (queue a heartbeat frame)."""

    def poll(self, now_ns: int) -> None:
        """Timer hook, called at least once per heartbeat interval (e.g. to time out a pending resync)."""

    def events(self) -> list[FeedEvent]:
        out = self._events
        self._events = []
        return out

    def data_to_send(self) -> list[bytes]:
        out = self._outbound
        self._outbound = []
        return out

    # -- helpers for subclasses ----------------------------------------------------------------------

    def _send(self, frame: bytes) -> None:
        self._outbound.append(frame)

    def _dead(self, reason: str, detail: str, frame: bytes | str, ts_recv: int, instrument_id: str = "",
              ts_event: int = 0) -> None:
        self.metrics.dead_letters += 1
        self._events.append(DeadLetter(source=self.name, reason=reason, detail=detail, raw=raw_text(frame),
                                       ts_recv=ts_recv, instrument_id=instrument_id, ts_event=ts_event))


class FeedRunner:
    """Connect, run one session at a time, reconnect with backoff until stopped or the protocol is fatal."""

    def __init__(
        self,
        protocol: SansIOFeed,
        connect: Connector,
        on_events: Callable[[list[FeedEvent]], None],
        *,
        heartbeat_ms: int,
        stale_after_ms: int,
        backoff: Backoff,
        connect_timeout_ms: int = 5000,
        clock: Callable[[], int] = time.time_ns,
        monotonic: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self.protocol = protocol
        self.metrics = protocol.metrics
        self._connect = connect
        self._on_events = on_events
        self._watchdog = Watchdog(stale_after_ms, heartbeat_ms, monotonic)
        self.backoff = backoff
        self._connect_timeout_s = connect_timeout_ms / 1000
        self._clock = clock
        self.last_end = ""  # why the last session ended ("stale", "closed: ...", "connect failed: ...")

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Returns when `stop` is set; raises FeedFatal when the venue refuses the session for good."""
        stop = stop if stop is not None else asyncio.Event()
        while not stop.is_set():
            try:
                conn = await asyncio.wait_for(self._connect(), self._connect_timeout_s)
            except (OSError, TimeoutError, ConnectionLost) as e:
                self.metrics.connect_failures += 1
                self.last_end = f"connect failed: {type(e).__name__}: {e}"
            else:
                self.metrics.connects += 1
                if self.metrics.connects > 1:
                    self.metrics.reconnects += 1
                healthy = await self._session(conn, stop)
                if self.protocol.fatal is not None:
                    raise FeedFatal(self.protocol.fatal)
                if healthy:
                    self.backoff.reset()
            if stop.is_set():
                break
            delay = self.backoff.next_delay_s()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)  # sleep, but wake at once on stop

    async def _session(self, conn: Connection, stop: asyncio.Event) -> bool:
        """One connection, until it closes, goes stale or stop is set; True if it reached the live state."""
        proto = self.protocol
        healthy = False
        proto.connection_made(self._clock())
        self._watchdog.reset()
        reader = asyncio.create_task(self._read(conn))
        stopper = asyncio.create_task(stop.wait())
        reason = "stopped"
        try:
            await self._flush(conn)
            while True:
                await asyncio.wait({reader, stopper}, timeout=self._watchdog.next_check_s(),
                                   return_when=asyncio.FIRST_COMPLETED)
                if reader.done():
                    reason = reader.result()
                    break
                if stopper.done():
                    break
                proto.poll(self._clock())
                self._deliver()
                if self._watchdog.stale():
                    self.metrics.stalls += 1
                    reason = f"stale: nothing received for {self._watchdog.silent_ms():.0f} ms"
                    break
                if self._watchdog.heartbeat_due():
                    proto.heartbeat(self._clock())
                    self.metrics.heartbeats_out += 1
                    await self._flush(conn)
        except ConnectionLost as e:
            reason = f"closed: {e}"
        finally:
            self.last_end = reason
            healthy = proto.logged_in
            for t in (reader, stopper):
                t.cancel()
            for t in (reader, stopper):
                with contextlib.suppress(asyncio.CancelledError, ConnectionLost):
                    await t
            with contextlib.suppress(ConnectionLost, OSError, TimeoutError):
                await asyncio.wait_for(conn.close(), 1.0)
            proto.connection_lost(reason)
            self._deliver()
        return healthy

    async def _read(self, conn: Connection) -> str:
        proto = self.protocol
        while True:
            try:
                frame = await conn.recv()
            except ConnectionLost as e:
                return f"closed: {e}"
            ts_recv = self._clock()
            self._watchdog.on_receive()
            proto.receive(frame, ts_recv)
            self._deliver()
            await self._flush(conn)
            if proto.fatal is not None:
                return f"fatal: {proto.fatal}"

    def _deliver(self) -> None:
        events = self.protocol.events()
        if events:
            self._on_events(events)

    async def _flush(self, conn: Connection) -> None:
        frames = self.protocol.data_to_send()
        if frames:
            for f in frames:
                await conn.send(f)
            self._watchdog.on_send()
