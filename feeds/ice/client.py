"""The ICE feed over a real WebSocket: IceProtocol driven by feeds.common.adapter.FeedRunner.

    client = IceClient(IceFeedConfig(url=..., api_key=...), on_events=queue.put_nowait)
    await client.run(stop)        # reconnects with backoff until stop is set; FeedFatal on login refusal

The websockets library's own keepalive pings are off: the venue protocol has heartbeats and the runner's
watchdog decides when a silent connection is dead.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable

import websockets
from websockets.asyncio.client import ClientConnection, connect

from feeds.common.adapter import Connection, ConnectionLost, FeedEvent, FeedRunner
from feeds.common.backoff import Backoff
from feeds.common.metrics import FeedMetricsSnapshot
from feeds.ice.config import IceFeedConfig
from feeds.ice.protocol import IceProtocol
from market.instruments import Registry

MAX_FRAME_BYTES = 1 << 20


class NoFrameTrace(logging.LoggerAdapter):  # type: ignore[type-arg]
    """websockets traces every frame at DEBUG, and the login frame carries the API key: tracing stays off
    (connection-level messages at INFO and above still go to the wrapped logger)."""

    def isEnabledFor(self, level: int) -> bool:  # noqa: N802 - logging's API
        return level > logging.DEBUG and self.logger.isEnabledFor(level)

    def debug(self, msg: object, *args: object, **kwargs: object) -> None:
        return


WIRE_LOGGER = NoFrameTrace(logging.getLogger("feeds.ice.websocket"), {})


class WebSocketConnection:
    """feeds.common.adapter.Connection over a websockets client connection (text frames kept as bytes)."""

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws

    async def send(self, frame: bytes) -> None:
        try:
            await self._ws.send(frame, text=True)
        except websockets.ConnectionClosed as e:
            raise ConnectionLost(_why(e)) from e

    async def recv(self) -> bytes | str:
        try:
            return await self._ws.recv(decode=False)
        except websockets.ConnectionClosed as e:
            raise ConnectionLost(_why(e)) from e

    async def close(self) -> None:
        await self._ws.close()


def _why(e: websockets.ConnectionClosed) -> str:
    rcvd = e.rcvd
    return f"code {rcvd.code} {rcvd.reason}".strip() if rcvd is not None else "no close frame (connection dropped)"


async def connect_websocket(url: str, open_timeout_s: float = 5.0) -> Connection:
    try:
        ws = await connect(url, open_timeout=open_timeout_s, ping_interval=None, close_timeout=1.0,
                           max_size=MAX_FRAME_BYTES, compression=None, logger=WIRE_LOGGER)
    except websockets.InvalidHandshake as e:  # the endpoint is not a WebSocket server (or refused us)
        raise ConnectionLost(f"handshake failed: {e}") from e
    return WebSocketConnection(ws)


class IceClient:
    def __init__(
        self,
        config: IceFeedConfig,
        on_events: Callable[[list[FeedEvent]], None],
        registry: Registry | None = None,
        *,
        rng: random.Random | None = None,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.config = config
        self.protocol = IceProtocol(config, registry)
        timeout_s = config.connect_timeout_ms / 1000
        self.runner = FeedRunner(
            self.protocol,
            lambda: connect_websocket(config.url, timeout_s),
            on_events,
            heartbeat_ms=config.heartbeat_ms,
            stale_after_ms=config.stale_after_ms,
            backoff=Backoff(config.backoff_initial_ms, config.backoff_max_ms, rng=rng),
            connect_timeout_ms=config.connect_timeout_ms,
            clock=clock,
        )

    async def run(self, stop: asyncio.Event | None = None) -> None:
        await self.runner.run(stop)

    def metrics(self) -> FeedMetricsSnapshot:
        return self.protocol.metrics.snapshot()
