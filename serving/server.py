"""The HTTP server that runs the app: uvicorn, ending the live streams when it shuts down.

uvicorn's graceful shutdown waits for every open response to finish, and an SSE response never finishes on
its own: with a dashboard tab open, Ctrl-C, SIGTERM or `should_exit` would wait forever. `DashboardServer`
closes the hub first (each stream ends cleanly; browsers reconnect later by themselves).
"""

from __future__ import annotations

import socket

import uvicorn

from serving.live import LiveHub

__all__ = ["DashboardServer"]


class DashboardServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, hub: LiveHub) -> None:
        super().__init__(config)
        self.hub = hub

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.hub.close()
        await super().shutdown(sockets)
