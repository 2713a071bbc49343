"""The demo through the wire: three loopback venue simulators and the three venue adapters, in one process.

    ICE-style WebSocket  simulators.ice_server.IceServer  <-ws->   feeds.ice (IceProtocol + FeedRunner)
    CME-style FIX 4.4    simulators.cme_server.CmeServer  <-fix->  feeds.cme.client.CmeClient (QuickFIX initiator)
    MCX-style HTTP poll  simulators.mcx_server.McxServer  <-http-> feeds.mcx.poll_client.McxPollClient

All venues show ONE market: each generates the whole market from the same SimConfig (seed, scenarios, rate,
duration) and the same epoch, and publishes its own instruments (simulators.market.venue_subset), so GC.COMEX
on CME and GOLD.MCX on MCX move together and cross-venue arbitrage signals mean something.

USDINR.FX is on no venue here (the adapters refuse instruments of other venues), yet the MCX legs of every
link need it to convert INR prices. It comes as an in-process reference stream (`fx`): the same market's
USDINR.FX quotes (simulators.live.live_messages with the shared epoch), stamped on release like a reference
rate feed. Every other registry instrument is served by exactly one venue (`VENUE_OF`).

What the adapters emit (ticks with the ts_recv they stamped, and dead letters) is buffered in arrival order;
the runner drains it into engine micro-batches (`drain`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import msgspec

from feeds.cme.client import CmeClient
from feeds.cme.config import CmeFeedConfig
from feeds.common.adapter import FeedEvent, FeedRunner
from feeds.common.backoff import Backoff
from feeds.common.metrics import FeedMetricsSnapshot
from feeds.ice.client import connect_websocket
from feeds.ice.config import IceFeedConfig
from feeds.ice.protocol import IceProtocol
from feeds.mcx.poll_client import McxPollClient
from feeds.mcx.poll_config import McxPollConfig
from market.codec import decode_tick_or_dead_letter
from market.config import Config
from market.events import DeadLetter, QuoteTick, TradeTick
from market.instruments import Registry, default_registry
from simulators.cme_server import CmeServer, CmeServerConfig
from simulators.config import SimConfig
from simulators.ice_server import IceServer, IceServerConfig
from simulators.live import live_messages
from simulators.mcx_server import McxServer, McxServerConfig

FX_INSTRUMENTS: tuple[str, ...] = ("USDINR.FX",)


class WireConfig(Config, frozen=True):
    ice_heartbeat_ms: int = 1000
    ice_stale_after_ms: int = 3000
    mcx_poll_interval_ms: int = 250
    cme_heartbeat_s: int = 1
    fx_instruments: tuple[str, ...] = FX_INSTRUMENTS  # the in-process reference stream
    stop_timeout_s: float = 10.0  # longest wait for the adapters and venues to stop


class FeedStats(msgspec.Struct, frozen=True):
    """One feed in the demo summary ("feeds" key): what its adapter delivered and how its session went."""

    protocol: str
    endpoint: str
    ticks: int  # ticks the adapter handed to the engine
    dead_letters: int  # dead letters the adapter handed to the engine
    messages: int  # frames / FIX messages / HTTP responses decoded by the adapter
    gaps: int
    missing: int
    duplicates: int
    reconnects: int
    connect_failures: int
    stalls: int
    decode_errors: int
    lag_p50_ms: float  # ts_recv - ts_event at the adapter
    lag_p99_ms: float
    error: str = ""  # why the adapter stopped early ("" while it ran to the end)


def _stats(protocol: str, endpoint: str, ticks: int, dead: int, m: FeedMetricsSnapshot | None,
           error: str) -> FeedStats:
    if m is None:
        return FeedStats(protocol, endpoint, ticks, dead, ticks + dead, 0, 0, 0, 0, 0, 0, 0, 0.0, 0.0, error)
    return FeedStats(protocol, endpoint, ticks, dead, m.frames, m.gaps, m.missing, m.duplicates, m.reconnects,
                     m.connect_failures, m.stalls, m.decode_errors, round(m.lag_p50_ms, 3), round(m.lag_p99_ms, 3),
                     error)


class WireMarket:
    """Start the venues and adapters (`start`), drain what arrived (`drain`), summarise (`feeds`), `stop`."""

    def __init__(self, sim: SimConfig, config: WireConfig | None = None, registry: Registry | None = None,
                 clock: Callable[[], int] = time.time_ns) -> None:
        if sim.instruments:
            raise ValueError("the venues generate the whole market: leave sim.instruments empty")
        self.sim = sim
        self.config = config or WireConfig()
        self.registry = registry or default_registry()
        self._clock = clock
        self.epoch_ns = 0
        self._ticks: list[TradeTick | QuoteTick] = []
        self._dead: list[DeadLetter] = []
        self._delivered: dict[str, list[int]] = {}  # feed -> [ticks, dead letters]
        self._errors: dict[str, str] = {}
        self._endpoints: dict[str, tuple[str, str]] = {}
        self._metrics: dict[str, Callable[[], FeedMetricsSnapshot]] = {}
        self._stop = asyncio.Event()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._servers: list[IceServer | McxServer] = []  # asyncio venues
        self._cme_server: CmeServer | None = None  # a thread-based venue (QuickFIX)

    # -- lifecycle ----------------------------------------------------------------------------------

    async def start(self) -> None:
        cfg, reg, sim = self.config, self.registry, self.sim
        self.epoch_ns = epoch = self._clock()  # one epoch: the venues' clocks agree on the market's time

        ice_server = IceServer(IceServerConfig(sim=sim, epoch_ns=epoch), reg)
        mcx_server = McxServer(McxServerConfig(sim=sim, epoch_ns=epoch, warmup_retry_after_s=0), reg)
        self._servers = [ice_server, mcx_server]
        await ice_server.start()
        await mcx_server.start()
        self._cme_server = cme_server = CmeServer(CmeServerConfig(sim=sim, epoch_ns=epoch), reg)
        cme_port = await asyncio.to_thread(cme_server.start)

        ice_cfg = IceFeedConfig(url=ice_server.url, api_key="loopback", heartbeat_ms=cfg.ice_heartbeat_ms,
                                stale_after_ms=cfg.ice_stale_after_ms)
        ice_proto = IceProtocol(ice_cfg, reg)
        connect_s = ice_cfg.connect_timeout_ms / 1000
        ice = FeedRunner(ice_proto, lambda: connect_websocket(ice_server.url, connect_s), self._sink("ice"),
                         heartbeat_ms=ice_cfg.heartbeat_ms, stale_after_ms=ice_cfg.stale_after_ms,
                         backoff=Backoff(ice_cfg.backoff_initial_ms, ice_cfg.backoff_max_ms),
                         connect_timeout_ms=ice_cfg.connect_timeout_ms)
        cme = CmeClient(CmeFeedConfig(host="127.0.0.1", port=cme_port, heartbeat_s=cfg.cme_heartbeat_s),
                        self._sink("cme"), reg)
        mcx = McxPollClient(McxPollConfig(url=mcx_server.url, poll_interval_ms=cfg.mcx_poll_interval_ms),
                            self._sink("mcx"), reg)
        self._endpoints = {"ice": ("ice.ws.v1", ice_server.url), "cme": ("cme.fix44.v1", f"fix://127.0.0.1:{cme_port}"),
                           "mcx": ("mcx.poll.v1", mcx_server.url), "fx": ("in-process reference", "")}
        self._metrics = {"ice": ice_proto.metrics.snapshot, "cme": cme.metrics,
                         "mcx": mcx.protocol.metrics.snapshot}
        self._tasks = {"ice": asyncio.create_task(ice.run(self._stop)),
                       "cme": asyncio.create_task(cme.run(self._stop)),
                       "mcx": asyncio.create_task(mcx.run(self._stop)),
                       "fx": asyncio.create_task(self._fx())}
        for name in ("ice", "cme", "mcx", "fx"):
            self._delivered.setdefault(name, [0, 0])

    async def stop(self) -> None:
        """Stop the adapters (their last events stay buffered for a final drain), then the venues."""
        self._stop.set()
        fx = self._tasks.get("fx")
        if fx is not None:
            fx.cancel()
        tasks = list(self._tasks.items())
        if tasks:
            await asyncio.wait([t for _, t in tasks], timeout=self.config.stop_timeout_s)
        for name, t in tasks:
            if not t.done():
                t.cancel()
                self._errors.setdefault(name, f"did not stop within {self.config.stop_timeout_s} s")
            elif not t.cancelled() and (exc := t.exception()) is not None:
                self._errors.setdefault(name, _describe(exc))
        for s in self._servers:
            await s.stop()
        if self._cme_server is not None:
            await asyncio.to_thread(self._cme_server.stop)

    # -- data ---------------------------------------------------------------------------------------

    def drain(self) -> tuple[list[TradeTick | QuoteTick], list[DeadLetter]]:
        """Everything the adapters delivered since the last drain, each list in arrival order."""
        ticks, dead = self._ticks, self._dead
        self._ticks, self._dead = [], []
        self._check_tasks()
        return ticks, dead

    @property
    def pending(self) -> int:
        return len(self._ticks) + len(self._dead)

    def feeds(self) -> dict[str, dict[str, object]]:
        """Per-feed adapter metrics, JSON-ready (the demo summary's "feeds")."""
        self._check_tasks()
        out: dict[str, dict[str, object]] = {}
        for name, (protocol, endpoint) in self._endpoints.items():
            get = self._metrics.get(name)
            ticks, dead = self._delivered.get(name, [0, 0])
            stats = _stats(protocol, endpoint, ticks, dead, get() if get is not None else None,
                           self._errors.get(name, ""))
            out[name] = msgspec.to_builtins(stats)
        return out

    def _sink(self, feed: str) -> Callable[[list[FeedEvent]], None]:
        counts = self._delivered.setdefault(feed, [0, 0])

        def on_events(events: list[FeedEvent]) -> None:  # on the event loop's thread (CmeClient forwards there)
            for e in events:
                if isinstance(e, DeadLetter):
                    self._dead.append(e)
                    counts[1] += 1
                else:
                    self._ticks.append(e)
                    counts[0] += 1

        return on_events

    async def _fx(self) -> None:
        sink = self._sink("fx")
        async for msg in live_messages(self.sim, epoch_ns=self.epoch_ns, instruments=self.config.fx_instruments,
                                       registry=self.registry):
            now = self._clock()
            ev = decode_tick_or_dead_letter(msg, now, source="fx")
            sink([ev if isinstance(ev, DeadLetter) else msgspec.structs.replace(ev, ts_recv=now)])

    def _check_tasks(self) -> None:
        """An adapter that ended on its own (e.g. FeedFatal) is reported, never silently gone."""
        for name, t in self._tasks.items():
            if t.done() and name not in self._errors and not t.cancelled():
                exc = t.exception()
                if exc is not None:
                    self._errors[name] = _describe(exc)
                elif not self._stop.is_set() and name != "fx":
                    self._errors[name] = "stopped before the demo did"


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


async def run_wire(market: WireMarket, stop: asyncio.Event, batch_ms: int,
                   offer: Callable[[list[TradeTick | QuoteTick], list[DeadLetter]], None]) -> None:
    """Start the market, hand `offer` a micro-batch about every batch_ms until `stop`, then the last events."""
    await market.start()
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), batch_ms / 1000)
            ticks, dead = market.drain()
            if ticks or dead:
                offer(ticks, dead)
    finally:
        await market.stop()
        ticks, dead = market.drain()
        if ticks or dead:
            offer(ticks, dead)
