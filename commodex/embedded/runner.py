"""CLI runners for the embedded runtime: demo (live simulated feeds + dashboard), simulate, replay.

The demo's default source is the wire (commodex.embedded.wire: three loopback venue simulators and the three
venue adapters over WebSocket, FIX and HTTP polling); `--source inproc` pumps the simulator's messages straight
into the engine instead (no sockets, no adapters)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from collections.abc import AsyncIterator

import msgspec
import numpy as np

from commodex.embedded.engine import EmbeddedEngine, Summary
from jobs.edge import ingest_ticks
from jobs.pipeline import PipelineConfig
from jobs.sink import Sink
from market.columns import TickColumns
from market.events import DeadLetter, QuoteTick, TradeTick
from market.instruments import Registry, default_registry

DEMO_SCENARIOS = ("calm", "arbitrage", "crossed", "spike", "dirty")
BATCH_MS = 50  # the engine's unit of work in the demo
REPLAY_BATCH_ROWS = 65_536


def _print_summary(summary: Summary, as_json: bool, extra: dict[str, object] | None = None) -> None:
    doc = msgspec.to_builtins(summary) | (extra or {})
    if as_json:
        print(json.dumps(doc, separators=(",", ":")))
    else:
        for k, v in doc.items():
            print(f"{k:>24}: {v}")


def _open_store(state_dir: str):  # type: ignore[no-untyped-def]
    from commodex.embedded.storage import ClickHouseStore, StorageConfig

    store = ClickHouseStore(StorageConfig(state_dir=state_dir))
    store.migrate()
    return store


# -- simulate -------------------------------------------------------------------------------------------

def run_simulate(args: argparse.Namespace) -> int:
    from feeds.tickfile import write_ticks
    from simulators.config import SimConfig
    from simulators.market import simulate

    scenarios = tuple(s.strip() for s in args.scenario.split(",") if s.strip())
    table = simulate(SimConfig(scenarios=scenarios, seed=args.seed, duration_s=args.duration))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_ticks(table, args.out)
    print(f"wrote {table.num_rows} messages to {args.out}", file=sys.stderr)
    return 0


# -- replay ---------------------------------------------------------------------------------------------

def replay_batches(columns: TickColumns, speed: float) -> list[tuple[int, int]]:
    """Row ranges per batch: big batches at max speed; at speed X, one batch per 50 ms of feed time."""
    n = len(columns)
    if speed <= 0 or n == 0:
        return [(i, min(i + REPLAY_BATCH_ROWS, n)) for i in range(0, n, REPLAY_BATCH_ROWS)]
    step = int(50e6 * speed)
    t = columns.ts_recv
    edges = np.searchsorted(t, np.arange(t[0], t[-1] + step, step), side="left").tolist() + [n]
    out = []
    prev = 0
    for e in edges[1:]:
        if e > prev:
            out.append((prev, e))
            prev = e
    return out


def run_replay(args: argparse.Namespace) -> int:
    from feeds.capture_cli import is_capture_dir, read_capture
    from feeds.tickfile import read_ticks

    registry = default_registry()
    t_read = time.perf_counter()
    ing = read_capture(args.file, registry) if is_capture_dir(args.file) else read_ticks(args.file, registry)
    read_s = time.perf_counter() - t_read
    sinks: list[Sink] = []
    store = None
    if not args.no_store:
        from commodex.embedded.sinks import StoreSink

        store = _open_store(args.state_dir)
        sinks.append(StoreSink(store))
    engine = EmbeddedEngine(PipelineConfig(), sinks, registry, runtime="embedded")
    cols = ing.columns
    if ing.dead_letters:
        engine.offer(TickColumns.empty(), ing.dead_letters)
    t0 = time.perf_counter()
    wall0 = time.perf_counter_ns()
    feed0 = int(cols.ts_recv[0]) if len(cols) else 0
    for a, b in replay_batches(cols, args.speed):
        if args.speed > 0:
            due = wall0 + int((int(cols.ts_recv[b - 1]) - feed0) / args.speed)
            delay = due - time.perf_counter_ns()
            if delay > 0:
                time.sleep(delay / 1e9)
        engine.offer(cols.take(slice(a, b)))
    engine.finish()
    wall = time.perf_counter() - t0
    if store is not None:
        store.close()
    summary = engine.summary()
    _print_summary(summary, args.json, {
        "file": str(args.file), "read_s": round(read_s, 3), "replay_wall_s": round(wall, 3),
        "throughput_ticks_per_s": round(summary.ticks_in / wall, 1) if wall > 0 else 0.0,
    })
    return 0


# -- demo -----------------------------------------------------------------------------------------------

async def _batches(messages: AsyncIterator[bytes], batch_ms: int) -> AsyncIterator[list[bytes]]:
    """Group wire messages into micro-batches of about batch_ms (the engine's unit of work)."""
    buf: list[bytes] = []
    deadline = time.monotonic() + batch_ms / 1000
    async for m in messages:
        buf.append(m)
        if time.monotonic() >= deadline:
            yield buf
            buf = []
            deadline = time.monotonic() + batch_ms / 1000
    if buf:
        yield buf


def _warm_up(registry: Registry) -> None:
    """Compile the numba kernels before any venue or adapter starts: a cold first compile (~10 s on a fresh
    checkout) inside the event loop would stall the adapters (watchdogs, poll timeouts) during the first batch."""
    from feeds.tickfile import ingest
    from jobs.pipeline import Pipeline
    from simulators.config import SimConfig
    from simulators.market import simulate

    pipeline = Pipeline(PipelineConfig(), registry)
    pipeline.process(ingest(simulate(SimConfig(scenarios=("calm",), seed=0, duration_s=2)), registry).columns)
    pipeline.finish()


async def _demo(args: argparse.Namespace) -> tuple[Summary, dict[str, object]]:
    from commodex.embedded.sinks import HubSink, StoreSink
    from serving.app import Services, create_app
    from serving.live import LiveHub
    from serving.services import HistoryService
    from simulators.config import SimConfig
    from simulators.live import live_messages

    registry = default_registry()
    scenarios = tuple(s.strip() for s in args.scenario.split(",") if s.strip()) or DEMO_SCENARIOS
    sim = SimConfig(scenarios=scenarios, seed=args.seed, duration_s=args.duration if args.duration > 0 else 0)
    source = getattr(args, "source", "wire")
    wire = None
    if source == "wire":
        try:
            from commodex.embedded.wire import WireMarket
        except ModuleNotFoundError as e:  # the adapters' packages are the `feeds` extra (make demo installs it)
            print(f"commodex demo: the wire source needs the feeds extra ({e}): pip install -e '.[feeds]', "
                  "or run with --source inproc", file=sys.stderr)
            raise SystemExit(2) from e
        wire = WireMarket(sim, registry=registry)  # imports the venues and adapters (QuickFIX: ~2 s)

    trading = trading_sink = keys = None
    if args.trade:
        from commodex.embedded.trading_sink import TradingSink
        from serving.auth import ApiKeyStore
        from serving.trading_service import LiveTradingConfig, TradingService
        from trading.config import RiskConfig, TradeConfig

        risk = RiskConfig() if args.auto_threshold is None else RiskConfig(auto_threshold=args.auto_threshold)
        trading = TradingService(args.trade, LiveTradingConfig(trade=TradeConfig(risk=risk)), registry=registry)
        trading_sink = TradingSink(trading)
        keys = ApiKeyStore.in_state_dir(args.state_dir)
        if not len(keys):
            print(f"no API keys in {keys.path}: approvals need one, create it with "
                  f"`commodex apikey add NAME --role trader --state-dir {args.state_dir}`", file=sys.stderr)
    store = _open_store(args.state_dir)
    hub = LiveHub()
    hub.bind(asyncio.get_running_loop())
    sinks: list[Sink] = [StoreSink(store), HubSink(hub)]
    if trading_sink is not None:
        sinks.append(trading_sink)
    engine = EmbeddedEngine(PipelineConfig(), sinks, registry, runtime="embedded")
    _warm_up(registry)

    def status() -> dict[str, object]:
        doc: dict[str, object] = msgspec.to_builtins(engine.summary())
        doc["source"] = source
        if wire is not None:
            doc["feeds"] = wire.feeds()
        if trading is not None:
            doc["trading"] = trading.summary()
        return doc

    services = Services(history=HistoryService(store), hub=hub, registry=registry, status=status)
    server = None
    server_task = None
    if not args.no_serve:
        import uvicorn

        app = create_app(services, trading=trading, api_keys=keys)
        from serving.server import DashboardServer

        server = DashboardServer(uvicorn.Config(app, host=args.host, port=args.port, log_level="warning",
                                                lifespan="on", timeout_graceful_shutdown=5), hub)
        server_task = asyncio.create_task(server.serve())
        print(f"commodex dashboard: http://{args.host}:{args.port}/", file=sys.stderr)
        if trading is not None:
            print(f"trading ({trading.strategy}): http://{args.host}:{args.port}/api/trading/approvals "
                  "(Authorization: Bearer <key>)", file=sys.stderr)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)

    async def pump() -> None:
        async for msgs in _batches(live_messages(sim), batch_ms=BATCH_MS):
            t_arrival = time.perf_counter_ns()
            ing = ingest_ticks(msgs, registry, ts_recv_ns=time.time_ns())
            engine.offer(ing.columns, ing.dead_letters, arrival_ns=t_arrival)
            if stop.is_set():
                break

    def offer_wire(ticks: list[TradeTick | QuoteTick], dead: list[DeadLetter]) -> None:
        t_arrival = time.perf_counter_ns()
        ing = ingest_ticks(ticks, registry)  # keeps the ts_recv each adapter stamped
        engine.offer(ing.columns, dead + ing.dead_letters, arrival_ns=t_arrival)

    if wire is not None:
        from commodex.embedded.wire import run_wire

        pump_task = asyncio.create_task(run_wire(wire, stop, BATCH_MS, offer_wire))
    else:
        pump_task = asyncio.create_task(pump())
    waiters = [pump_task, asyncio.create_task(stop.wait())]
    if args.duration > 0:
        waiters.append(asyncio.create_task(asyncio.sleep(args.duration + 1)))
    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    stop.set()
    for t in waiters:
        if t is not pump_task or wire is None:  # the wire pump stops on `stop`, delivering its last events
            t.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await pump_task
    engine.finish()
    if trading_sink is not None:
        trading_sink.flush()
    if server is not None and server_task is not None:
        server.should_exit = True
        await server_task
    store.close()
    extra: dict[str, object] = {"source": source}
    if wire is not None:
        extra["feeds"] = wire.feeds()
    if trading is not None:
        extra["trading"] = trading.summary()
    return engine.summary(), extra


def run_demo(args: argparse.Namespace) -> int:
    summary, extra = asyncio.run(_demo(args))
    _print_summary(summary, args.json, extra)
    return 0


__all__ = ["run_demo", "run_replay", "run_simulate", "replay_batches", "DeadLetter"]
