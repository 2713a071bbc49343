"""A loopback ICE-style venue: a `websockets` server speaking feeds/ice's protocol, fed by the seeded market.

The market is `simulators.market.MarketGenerator` (by default the whole market, of which the venue publishes
its `instruments` and the undecodable raw rows of the dirty scenario: venues given one seed, scenario list,
rate and epoch show one market), paced so that a row is published when its receive time is due on the wall
clock (epoch + (ts_recv - epoch) / speed). The venue
keeps per-symbol state (newest seq, last quote, last trade) for snapshots. A restarted server given the
first one's `epoch_ns` regenerates the same market and continues the same seq streams: what was due while
it was down is applied to its state but never sent (the client sees a gap and resyncs from a snapshot).

Fault injection, for tests and soak runs: `drop_next` (a gap), `duplicate_next`, `stall` (nothing sent, no
heartbeats), `close_connections` (sockets dropped without a close frame), `inject_garbage` (a frame that is
not a venue message), and seeded random drop/duplicate/garbage rates in the config.

    server = IceServer(IceServerConfig())
    port = await server.start()          # 127.0.0.1, port 0 = any free port
    ...
    await server.stop()                  # a hard stop: connections aborted, like a crashed venue
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from dataclasses import dataclass, field

import numpy as np
import websockets
from websockets.asyncio.server import Server, ServerConnection, serve

from feeds.ice.client import NoFrameTrace
from feeds.ice.config import ICE_INSTRUMENTS
from feeds.ice.schemas import (
    CLIENT_DECODER,
    DECODE_ERRORS,
    Error,
    Heartbeat,
    Login,
    LoginAck,
    QuoteUpdate,
    SnapQuote,
    Snapshot,
    SnapshotRequest,
    SnapTrade,
    Subscribe,
    SubscribeAck,
    TradeUpdate,
    Unsubscribe,
    UnsubscribeAck,
    decimal_from_fixed,
    encode,
)
from market.config import Config
from market.fixedpoint import PRICE_SCALE
from market.instruments import Registry, default_registry
from simulators.config import SimConfig
from simulators.market import MarketGenerator, venue_subset
from simulators.microstructure import BUY, KIND_QUOTE, KIND_RAW, SELL, SimRows

NS_PER_MS = 1_000_000
_SIDE = {BUY: "B", SELL: "S"}
SERVER_LOGGER = NoFrameTrace(logging.getLogger("simulators.ice_server"), {})  # login frames carry keys


class IceServerConfig(Config, frozen=True):
    host: str = "127.0.0.1"
    port: int = 0  # 0: any free port (start() returns it)
    api_keys: tuple[str, ...] = ()  # accepted keys; empty: any non-empty key
    min_heartbeat_ms: int = 10  # the client's requested interval is clamped to this range
    max_heartbeat_ms: int = 30_000
    client_timeout_heartbeats: int = 3  # a client silent for this many of its intervals is disconnected
    speed: float = 1.0  # simulated seconds per wall second
    epoch_ns: int = 0  # wall-clock start of the simulated market; 0: when start() runs
    max_queue: int = 100_000  # frames queued per connection before it is dropped as a slow consumer
    drop_pct: float = 0.0  # seeded random faults on each update
    duplicate_pct: float = 0.0
    garbage_pct: float = 0.0
    fault_seed: int = 0
    instruments: tuple[str, ...] = ICE_INSTRUMENTS  # what the venue lists (registry ids)
    sim: SimConfig = SimConfig(duration_s=0.0)  # the whole market: the venue keeps its own rows

    def __post_init__(self) -> None:
        if self.speed <= 0:
            raise ValueError("speed must be positive")
        if not 0 < self.min_heartbeat_ms <= self.max_heartbeat_ms:
            raise ValueError("need 0 < min_heartbeat_ms <= max_heartbeat_ms")
        for name in ("drop_pct", "duplicate_pct", "garbage_pct"):
            if not 0 <= getattr(self, name) <= 100:
                raise ValueError(f"{name} must be in [0, 100]")


@dataclass(slots=True)
class SymbolState:
    seq: int = 0  # newest seq published (sent or not)
    quote: SnapQuote | None = None
    trade: SnapTrade | None = None


@dataclass(slots=True)
class _Out:
    """One row of the market as the venue publishes it."""

    due_ns: int  # wall clock
    symbol: str
    seq: int  # 0 for garbage rows
    frame: bytes
    quote: SnapQuote | None = None  # the state it sets, when valid
    trade: SnapTrade | None = None


@dataclass(eq=False)
class _Client:
    ws: ServerConnection
    queue: asyncio.Queue[tuple[bytes, bool]]
    subscribed: set[str] = field(default_factory=set)
    logged_in: bool = False
    heartbeat_ms: int = 1000
    last_recv_ns: int = 0
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


@dataclass(slots=True)
class Faults:
    """What the venue did wrong, for tests to check the client against."""

    dropped: list[tuple[str, int]] = field(default_factory=list)  # (symbol, seq) never sent
    duplicated: list[tuple[str, int]] = field(default_factory=list)
    garbage: int = 0
    lost_in_stall: int = 0
    slow_consumers: int = 0


class IceServer:
    def __init__(self, config: IceServerConfig | None = None, registry: Registry | None = None) -> None:
        self.config = cfg = config or IceServerConfig()
        self.registry = registry or default_registry()
        self.symbols: dict[str, str] = {self.registry.get(iid).symbol: iid for iid in cfg.instruments}
        self._indices = np.array([self.registry.get(iid).index for iid in cfg.instruments], dtype=np.int32)
        self._symbol_of_name = {i.id: i.symbol for i in self.registry}
        self.state: dict[str, SymbolState] = {s: SymbolState() for s in self.symbols}
        self.faults = Faults()
        self.epoch_ns = cfg.epoch_ns
        self.started_ns = 0
        self.port = cfg.port
        self.sessions = 0  # successful logins
        self.snapshot_requests = 0
        self.sent_updates = 0
        self._clients: set[_Client] = set()
        self._server: Server | None = None
        self._producer: asyncio.Task[None] | None = None
        self._stalled_until_ns = 0
        self._drop_next: list[tuple[int, str | None]] = []  # [remaining, symbol or None]
        self._dup_next: list[tuple[int, str | None]] = []
        self._rng = random.Random(cfg.fault_seed)
        self._session_counter = 0
        self.caught_up = asyncio.Event()  # set once every row due before start() has been applied

    # -- lifecycle ----------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"ws://{self.config.host}:{self.port}/ice"

    async def start(self) -> int:
        self.started_ns = time.time_ns()
        if not self.epoch_ns:
            self.epoch_ns = self.started_ns
        self._server = await serve(self._handle, self.config.host, self.port, ping_interval=None,
                                   close_timeout=1.0, compression=None, logger=SERVER_LOGGER)
        self.port = self._server.sockets[0].getsockname()[1]
        self._producer = asyncio.create_task(self._produce())
        return self.port

    async def stop(self) -> None:
        """Stop like a crashed venue: no close frames, the port is free again at once."""
        if self._producer is not None:
            self._producer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._producer
        if self._server is not None:
            self._server.close(close_connections=False)
        await self.close_connections()
        if self._server is not None:
            await self._server.wait_closed()

    # -- fault knobs --------------------------------------------------------------------------------

    def drop_next(self, n: int = 1, symbol: str | None = None) -> None:
        """Do not send the next n updates (of `symbol`, or of any symbol); the state still applies them."""
        self._drop_next.append((n, symbol))

    def duplicate_next(self, n: int = 1, symbol: str | None = None) -> None:
        self._dup_next.append((n, symbol))

    def stall(self, seconds: float) -> None:
        """Send nothing (updates are lost, heartbeats and replies wait) for `seconds`; sockets stay open."""
        self._stalled_until_ns = time.time_ns() + int(seconds * 1e9)

    @property
    def stalled(self) -> bool:
        return time.time_ns() < self._stalled_until_ns

    async def close_connections(self) -> None:
        """Drop every client socket without a close frame."""
        for c in list(self._clients):
            for t in c.tasks:
                t.cancel()
            c.ws.transport.abort()
        self._clients.clear()

    def inject_garbage(self, payload: bytes | str = b"\xff\x00garbage{", text: bool | None = None) -> None:
        """Queue a frame that is not a venue message to every logged-in client (binary unless text)."""
        is_text = isinstance(payload, str) if text is None else text
        data = payload.encode() if isinstance(payload, str) else payload
        for c in self._logged_in():
            self._put(c, data, is_text)
        self.faults.garbage += 1

    # -- market -------------------------------------------------------------------------------------

    async def _produce(self) -> None:
        cfg = self.config
        gen = MarketGenerator(cfg.sim.replace(start_ns=self.epoch_ns), self.registry)
        for block in gen.blocks():
            rows = venue_subset(block, self._indices, keep_raw=True)
            for out in venue_rows(rows, gen.names, gen.raw_messages, self._symbol_of_name, self.epoch_ns,
                                  cfg.speed):
                delay = out.due_ns - time.time_ns()
                if delay > 0:
                    self.caught_up.set()
                    await asyncio.sleep(delay / 1e9)
                self._apply(out, send=out.due_ns >= self.started_ns)

    def _apply(self, out: _Out, send: bool) -> None:
        st = self.state.get(out.symbol)
        if st is not None and out.seq > st.seq:  # a re-delivered seq (dirty scenario) does not move the state
            st.seq = out.seq
            if out.quote is not None:
                st.quote = out.quote
            if out.trade is not None:
                st.trade = out.trade
        if not send:
            return
        if self.stalled:
            self.faults.lost_in_stall += 1
            return
        if not out.symbol:  # a raw (undecodable) row of the dirty scenario
            for c in self._logged_in():
                self._put(c, out.frame, True)
            return
        if self._take(self._drop_next, out.symbol) or self._chance(self.config.drop_pct):
            self.faults.dropped.append((out.symbol, out.seq))
            return
        copies = 1
        if self._take(self._dup_next, out.symbol) or self._chance(self.config.duplicate_pct):
            self.faults.duplicated.append((out.symbol, out.seq))
            copies = 2
        for c in self._logged_in():
            if out.symbol in c.subscribed:
                for _ in range(copies):
                    self._put(c, out.frame, True)
        self.sent_updates += 1
        if self._chance(self.config.garbage_pct):
            self.inject_garbage(out.frame[: len(out.frame) // 2], text=True)  # a truncated message

    def _chance(self, pct: float) -> bool:
        return pct > 0 and self._rng.random() * 100 < pct

    @staticmethod
    def _take(pending: list[tuple[int, str | None]], symbol: str) -> bool:
        for k, (n, sym) in enumerate(pending):
            if sym is None or sym == symbol:
                if n <= 1:
                    pending.pop(k)
                else:
                    pending[k] = (n - 1, sym)
                return True
        return False

    def snapshot(self, symbol: str) -> Snapshot:
        st = self.state[symbol]
        return Snapshot(symbol, st.seq, st.quote, st.trade)

    # -- connections --------------------------------------------------------------------------------

    def _logged_in(self) -> list[_Client]:
        return [c for c in self._clients if c.logged_in]

    def _put(self, c: _Client, frame: bytes, text: bool) -> None:
        try:
            c.queue.put_nowait((frame, text))
        except asyncio.QueueFull:
            self.faults.slow_consumers += 1
            self._clients.discard(c)
            c.ws.transport.abort()

    async def _handle(self, ws: ServerConnection) -> None:
        c = _Client(ws, asyncio.Queue(self.config.max_queue), last_recv_ns=time.time_ns())
        self._clients.add(c)
        c.tasks.append(asyncio.create_task(self._write(c)))
        try:
            async for frame in ws:
                c.last_recv_ns = time.time_ns()
                if not await self._on_frame(c, frame):
                    break
        except websockets.ConnectionClosed:
            pass  # the client went away; nothing to answer
        finally:
            self._clients.discard(c)
            for t in c.tasks:
                t.cancel()

    async def _on_frame(self, c: _Client, frame: bytes | str) -> bool:
        """Handle one client message; False ends the connection."""
        try:
            msg = CLIENT_DECODER.decode(frame)
        except DECODE_ERRORS as e:
            self._put(c, encode(Error("bad_request", str(e))), True)
            return True
        if type(msg) is Login:
            return await self._login(c, msg)
        if not c.logged_in:
            self._put(c, encode(Error("not_logged_in", "log in first")), True)
            return True
        if type(msg) is Subscribe:
            ok = []
            for sym in msg.symbols:
                if sym in self.symbols:
                    ok.append(sym)
                else:
                    self._put(c, encode(Error("unknown_symbol", "no such symbol", sym, msg.req_id)), True)
            self._put(c, encode(SubscribeAck(msg.req_id, ok)), True)
            for sym in ok:
                c.subscribed.add(sym)
                self._put(c, encode(self.snapshot(sym)), True)
        elif type(msg) is Unsubscribe:
            c.subscribed.difference_update(msg.symbols)
            self._put(c, encode(UnsubscribeAck(msg.req_id, msg.symbols)), True)
        elif type(msg) is SnapshotRequest:
            self.snapshot_requests += 1
            if msg.symbol in c.subscribed:
                self._put(c, encode(self.snapshot(msg.symbol)), True)
            else:
                self._put(c, encode(Error("not_subscribed", "subscribe first", msg.symbol, msg.req_id)), True)
        return True

    async def _login(self, c: _Client, msg: Login) -> bool:
        keys = self.config.api_keys
        if not msg.api_key or (keys and msg.api_key not in keys):
            await c.ws.send(encode(Error("auth_failed", "api key not accepted")), text=True)
            await c.ws.close(1008, "auth failed")
            return False
        cfg = self.config
        c.heartbeat_ms = min(max(msg.heartbeat_ms, cfg.min_heartbeat_ms), cfg.max_heartbeat_ms)
        c.logged_in = True
        self.sessions += 1
        self._session_counter += 1
        self._put(c, encode(LoginAck(f"S{self.epoch_ns}-{self._session_counter}", c.heartbeat_ms)), True)
        c.tasks.append(asyncio.create_task(self._heartbeats(c)))
        return True

    async def _write(self, c: _Client) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            while True:
                frame, text = await c.queue.get()
                while self.stalled:
                    await asyncio.sleep((self._stalled_until_ns - time.time_ns()) / 1e9)
                await c.ws.send(frame, text=text)

    async def _heartbeats(self, c: _Client) -> None:
        period_s = c.heartbeat_ms / 1000
        timeout_ns = c.heartbeat_ms * self.config.client_timeout_heartbeats * NS_PER_MS
        while True:
            await asyncio.sleep(period_s)
            now = time.time_ns()
            if now - c.last_recv_ns > timeout_ns:
                self._clients.discard(c)
                await c.ws.close(1001, "client heartbeat timeout")
                return
            if not self.stalled:
                self._put(c, encode(Heartbeat(now)), True)


def venue_rows(rows: SimRows, names: list[str], raw_messages: list[str], symbol_of: dict[str, str], epoch_ns: int,
               speed: float = 1.0) -> list[_Out]:
    """Simulator rows as venue messages, each with its wall-clock due time and the state it sets."""
    due = (epoch_ns + (rows.ts_recv - epoch_ns) / speed).astype(np.int64).tolist()
    price, bid, ask = (_fixed(x) for x in (rows.price, rows.bid, rows.ask))
    inst, kind, seq, ts = rows.inst.tolist(), rows.kind.tolist(), rows.seq.tolist(), rows.ts_event.tolist()
    size, bsz, asz, aggr, raw = (rows.size.tolist(), rows.bid_size.tolist(), rows.ask_size.tolist(),
                                 rows.aggressor.tolist(), rows.raw.tolist())
    out: list[_Out] = []
    for i in range(len(rows)):
        if kind[i] == KIND_RAW:
            out.append(_Out(due[i], "", 0, raw_messages[raw[i]].encode()))
            continue
        name = names[inst[i]]
        symbol = symbol_of.get(name, name.split(".")[0])
        if kind[i] == KIND_QUOTE:
            b, a = price_text(bid[i]), price_text(ask[i])
            q = QuoteUpdate(symbol, seq[i], ts[i], b, a, bsz[i], asz[i])
            valid = bid[i] is not None and ask[i] is not None and bsz[i] >= 0 and asz[i] >= 0
            snap_q = SnapQuote(seq[i], ts[i], b, a, bsz[i], asz[i]) if valid else None
            out.append(_Out(due[i], symbol, seq[i], encode(q), quote=snap_q))
        else:
            p = price_text(price[i])
            side = _SIDE.get(aggr[i], "N")
            t = TradeUpdate(symbol, seq[i], ts[i], p, size[i], side)  # type: ignore[arg-type]
            valid = price[i] is not None and size[i] >= 1
            snap_t = SnapTrade(seq[i], ts[i], p, size[i], side) if valid else None  # type: ignore[arg-type]
            out.append(_Out(due[i], symbol, seq[i], encode(t), trade=snap_t))
    return out


def market_frames(sim: SimConfig, registry: Registry | None = None) -> list[bytes]:
    """Every update frame of a finite simulated run, in publication order (benchmarks, offline tests)."""
    if sim.endless:
        raise ValueError("market_frames needs duration_s > 0")
    reg = registry or default_registry()
    gen = MarketGenerator(sim, reg)
    symbol_of = {i.id: i.symbol for i in reg}
    return [o.frame for rows in gen.blocks()
            for o in venue_rows(rows, gen.names, gen.raw_messages, symbol_of, sim.start_ns)]


def _fixed(x: np.ndarray) -> list[int | None]:
    """Fixed-point prices; None where the simulator put NaN (the venue then sends "NaN")."""
    ok = np.isfinite(x)
    vals = np.round(np.where(ok, x, 0.0) * PRICE_SCALE).astype(np.int64).tolist()
    return [v if k else None for v, k in zip(vals, ok.tolist(), strict=True)]


def price_text(fixed: int | None) -> str:
    return "NaN" if fixed is None else decimal_from_fixed(fixed)
