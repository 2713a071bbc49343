"""SSE fan-out: LiveHub (encode once, shared bytes, one write per wake-up) against the usual per-client
approach (one asyncio.Queue per client, each client encodes each event and writes it on its own), measured
in the same run.

1. in-process: publish N events to C clients and drain every client (no sockets): deliveries per CPU second.
2. real sockets: uvicorn on 127.0.0.1, C raw-TCP clients in this process read until all N bar events arrive;
   deliveries per wall second (client parsing shares the machine, so ratios matter, not absolutes).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

from bench.common import Result
from commodex.embedded.storage import StoreCounts
from market.events import Bar
from market.fixedpoint import to_fixed
from market.instruments import default_registry
from serving.app import create_app
from serving.config import LiveHubConfig, ServingConfig
from serving.live import LiveHub
from serving.services import Services
from serving.views import bar_view

AREA = "fanout"
T0 = 1_700_000_000 * 10**9
MIN = 60 * 10**9


def _bars(n: int) -> list[Bar]:
    ids = default_registry().ids
    return [
        Bar(ids[i % len(ids)], MIN, T0 + i * MIN, to_fixed("100.25"), to_fixed("101"), to_fixed("99.5"),
            to_fixed("100.75"), 10 + i, to_fixed("100.5"), 7, T0 + (i + 1) * MIN, T0 + (i + 1) * MIN)
        for i in range(n)
    ]


def _cpu_time(fn: Callable[[], object]) -> float:
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


# ---- 1. in-process ---------------------------------------------------------------------------------------------

def _hub_in_process(events: list[Bar], clients: int, batch: int) -> float:
    async def run() -> None:
        hub = LiveHub(LiveHubConfig(client_queue_size=len(events) + 1))
        cs = [hub.connect() for _ in range(clients)]
        for lo in range(0, len(events), batch):
            hub.publish_many(events[lo:lo + batch])
            for c in cs:
                c.take()

    return _cpu_time(lambda: asyncio.run(run()))


def _naive_in_process(events: list[Bar], clients: int, batch: int) -> float:
    enc = msgspec.json.Encoder()

    async def run() -> None:
        queues: list[asyncio.Queue[Bar]] = [asyncio.Queue() for _ in range(clients)]
        for lo in range(0, len(events), batch):
            for e in events[lo:lo + batch]:
                for q in queues:
                    q.put_nowait(e)
            for q in queues:
                while not q.empty():
                    e = q.get_nowait()
                    _ = b"event: bar\ndata: " + enc.encode(bar_view(e)) + b"\n\n"

    return _cpu_time(lambda: asyncio.run(run()))


# ---- 2. real sockets -------------------------------------------------------------------------------------------

class _NoStore:
    def bars(self, *a: Any, **k: Any) -> list[Bar]:
        return []

    def signals(self, *a: Any, **k: Any) -> list[Any]:
        return []

    def dead_letters(self, *a: Any, **k: Any) -> list[Any]:
        return []

    def counts(self) -> StoreCounts:
        return StoreCounts(0, 0, 0, 0)


class _NaiveHub:
    """What a first implementation usually looks like: a queue per client, per-client encoding and writes."""

    def __init__(self) -> None:
        self.queues: list[asyncio.Queue[Bar]] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self.enc = msgspec.json.Encoder()

    def publish_threadsafe(self, events: list[Bar]) -> None:
        assert self.loop is not None
        self.loop.call_soon_threadsafe(self._publish, events)

    def _publish(self, events: list[Bar]) -> None:
        for e in events:
            for q in self.queues:
                q.put_nowait(e)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/api/stream")
        async def stream(request: Request) -> StreamingResponse:
            self.loop = asyncio.get_running_loop()
            q: asyncio.Queue[Bar] = asyncio.Queue()
            self.queues.append(q)

            async def gen() -> AsyncIterator[bytes]:
                try:
                    yield b": connected\n\n"
                    while True:
                        e = await q.get()
                        yield b"event: bar\ndata: " + self.enc.encode(bar_view(e)) + b"\n\n"
                finally:
                    self.queues.remove(q)

            return StreamingResponse(gen(), media_type="text/event-stream")

        return app


def _serve(app: FastAPI) -> tuple[uvicorn.Server, threading.Thread, int]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error", lifespan="on",
                                           timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    return server, thread, server.servers[0].sockets[0].getsockname()[1]


async def _consume(port: int, n_events: int, on_connected: Callable[[], None]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /api/stream?topics=bar HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n")
    await writer.drain()
    seen = 0
    tail = b""
    connected = False
    marker = b"event: bar\n"
    while seen < n_events:
        chunk = await reader.read(1 << 16)
        if not chunk:
            raise RuntimeError("server closed the stream early")
        if not connected:  # the first bytes (headers, 'connected' comment) mean the server registered us
            connected = True
            on_connected()
        data = tail + chunk
        seen += data.count(marker) - tail.count(marker)  # a marker split across chunks is counted once
        tail = data[-len(marker):]
    writer.close()


def _socket_run(app: FastAPI, publish: Callable[[list[Any]], None], events: list[Bar], clients: int,
                batch: int) -> float:
    server, thread, port = _serve(app)
    try:
        async def main() -> float:
            ready = asyncio.Event()
            registered = [0]

            def on_connected() -> None:
                registered[0] += 1
                if registered[0] == clients:
                    ready.set()

            tasks = [asyncio.create_task(_consume(port, len(events), on_connected)) for _ in range(clients)]
            await asyncio.wait_for(ready.wait(), 30)
            t0 = time.perf_counter()
            for lo in range(0, len(events), batch):
                publish(events[lo:lo + batch])
                await asyncio.sleep(0)
            await asyncio.wait_for(asyncio.gather(*tasks), 300)
            return time.perf_counter() - t0

        return asyncio.run(main())
    finally:
        server.should_exit = True
        thread.join(10)


def run(quick: bool = False) -> list[Result]:
    n_events, clients, batch = (2_000, 50, 50) if quick else (5_000, 200, 100)
    events = _bars(n_events)
    deliveries = n_events * clients

    hub_cpu = min(_hub_in_process(events, clients, batch) for _ in range(2))
    naive_cpu = min(_naive_in_process(events, clients, batch) for _ in range(2))
    out = [Result(AREA, f"LiveHub in-process, {clients} clients", deliveries / hub_cpu, "deliveries/cpu-s",
                  "per-client queue + per-client encode", deliveries / naive_cpu,
                  notes=f"{n_events} bar events, batches of {batch}")]

    s_clients, s_events = (20, 1_000) if quick else (100, 2_000)
    s_deliveries = s_clients * s_events
    s_ev = events[:s_events]
    cfg = ServingConfig(status_interval_s=0, live=LiveHubConfig(client_queue_size=s_events + 1))
    services = Services.build(_NoStore(), default_registry(), config=cfg, hub=LiveHub(cfg.live))
    hub_wall = _socket_run(create_app(services), services.hub.publish_threadsafe, s_ev, s_clients, batch)
    naive = _NaiveHub()
    naive_wall = _socket_run(naive.app(), naive.publish_threadsafe, s_ev, s_clients, batch)
    out.append(Result(AREA, f"SSE over uvicorn sockets, {s_clients} clients", s_deliveries / hub_wall,
                      "deliveries/s", "StreamingResponse, queue + encode per client", s_deliveries / naive_wall,
                      notes=f"{s_events} bar events; clients parse in the same process"))
    return out


if __name__ == "__main__":
    for r in run(quick=True):
        print(r)
