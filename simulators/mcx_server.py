"""A loopback MCX-style polling venue: a small asyncio HTTP/1.1 server serving feeds/mcx's JSON quotes document.

The market is `simulators.market.MarketGenerator` (by default the whole market, of which the venue keeps its
`instruments`, so venues on one seed and epoch show one market), paced on the wall clock as in
simulators.ice_server (a row is applied when its receive time is due). The venue keeps per-symbol state
(newest seq, top of book, last trade, cumulative volume and trade count) and renders it on each GET, with an
ETag (hash of the session and the requested symbols' seqs) and a Last-Modified (second resolution), and
answers 304 to a matching If-None-Match (or, without one, to an If-Modified-Since not older than the data).
A restarted server given the first one's `epoch_ns` regenerates the same market: same session, same seq
streams and volumes. Until it has caught up with the rows already due it answers 503 with Retry-After.

Fault knobs: `stall` (requests wait unanswered), `fail_next` (5xx), `rate_limit_next` (429 + Retry-After),
`garbage_next` (200 with a body that is not the document), and `stop()` (connections aborted, like a crash).

    server = McxServer(McxServerConfig())
    port = await server.start()          # 127.0.0.1, port 0 = any free port
    ...
    await server.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import hashlib
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import numpy as np

from feeds.common.wire_types import decimal_from_fixed
from feeds.mcx.poll_config import MCX_INSTRUMENTS
from feeds.mcx.poll_schemas import McxLastTrade, McxQuote, McxTopOfBook, encode_quotes
from market.config import Config
from market.fixedpoint import PRICE_SCALE
from market.instruments import Registry, default_registry
from simulators.config import SimConfig
from simulators.market import MarketGenerator, venue_subset
from simulators.microstructure import BUY, KIND_QUOTE, KIND_TRADE, SELL, SimRows

_SIDE = {BUY: "B", SELL: "S"}
_REASONS = {200: "OK", 304: "Not Modified", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
            503: "Service Unavailable"}
MAX_HEAD_BYTES = 16_384


class McxServerConfig(Config, frozen=True):
    host: str = "127.0.0.1"
    port: int = 0  # 0: any free port (start() returns it)
    path: str = "/api/v1/quotes"
    speed: float = 1.0  # simulated seconds per wall second
    epoch_ns: int = 0  # wall-clock start of the simulated market; 0: when start() runs
    etag: bool = True  # send ETag and honour If-None-Match
    last_modified: bool = True  # send Last-Modified and honour If-Modified-Since
    warmup_retry_after_s: int = 1  # Retry-After of the 503s served until the state has caught up
    instruments: tuple[str, ...] = MCX_INSTRUMENTS  # what the venue lists (registry ids)
    sim: SimConfig = SimConfig(duration_s=0.0)  # the whole market: the venue keeps its own rows

    def __post_init__(self) -> None:
        if self.speed <= 0:
            raise ValueError("speed must be positive")
        if self.warmup_retry_after_s < 0:
            raise ValueError("warmup_retry_after_s must be >= 0")


@dataclass(slots=True)
class SymbolState:
    seq: int = 0
    quote: McxTopOfBook | None = None
    trade: McxLastTrade | None = None
    volume: int = 0
    trades: int = 0
    changed_ns: int = 0  # wall clock of the last change (Last-Modified)


@dataclass(slots=True)
class Update:
    """One simulator row as a state change of the venue."""

    due_ns: int  # wall clock
    symbol: str
    seq: int
    quote: McxTopOfBook | None = None
    trade: McxLastTrade | None = None


@dataclass(slots=True)
class _Faults:
    fail: list[int] = field(default_factory=list)  # statuses of the next failing responses
    rate_limit: list[str | None] = field(default_factory=list)  # Retry-After of the next 429s (None: no header)
    garbage: list[bytes] = field(default_factory=list)


class McxServer:
    def __init__(self, config: McxServerConfig | None = None, registry: Registry | None = None) -> None:
        self.config = cfg = config or McxServerConfig()
        self.registry = registry or default_registry()
        self.symbols: dict[str, str] = {self.registry.get(iid).symbol: iid for iid in cfg.instruments}
        self._indices = np.array([self.registry.get(iid).index for iid in cfg.instruments], dtype=np.int32)
        self._units = {i.symbol: (i.price_currency, i.quote_unit) for i in self.registry}
        self.state: dict[str, SymbolState] = {s: SymbolState() for s in self.symbols}
        self.epoch_ns = cfg.epoch_ns
        self.started_ns = 0
        self.port = cfg.port
        self.requests = 0
        self.responses: Counter[int] = Counter()  # by status
        self.caught_up = asyncio.Event()  # set once every row due before start() has been applied
        self.finished = asyncio.Event()  # a finite market (sim.duration_s > 0) has published its last row
        self._faults = _Faults()
        self._stalled_until_ns = 0
        self._server: asyncio.Server | None = None
        self._producer: asyncio.Task[None] | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    @property
    def session(self) -> str:
        return f"MCX-{self.epoch_ns}"

    # -- lifecycle ----------------------------------------------------------------------------------

    async def start(self) -> int:
        self.started_ns = time.time_ns()
        if not self.epoch_ns:
            self.epoch_ns = self.started_ns
        self._server = await asyncio.start_server(self._handle, self.config.host, self.port,
                                                  limit=MAX_HEAD_BYTES)
        self.port = self._server.sockets[0].getsockname()[1]
        self._producer = asyncio.create_task(self._produce())
        return self.port

    async def stop(self) -> None:
        """Stop like a crashed venue: connections aborted, the port free again at once."""
        if self._producer is not None:
            self._producer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._producer
        if self._server is not None:
            self._server.close()
        for w in list(self._writers):
            w.transport.abort()
        self._writers.clear()
        if self._server is not None:
            await self._server.wait_closed()

    # -- fault knobs --------------------------------------------------------------------------------

    def stall(self, seconds: float) -> None:
        """Leave requests unanswered for `seconds` (the market keeps moving)."""
        self._stalled_until_ns = time.time_ns() + int(seconds * 1e9)

    @property
    def stalled(self) -> bool:
        return time.time_ns() < self._stalled_until_ns

    def fail_next(self, n: int = 1, status: int = 500) -> None:
        self._faults.fail += [status] * n

    def rate_limit_next(self, n: int = 1, retry_after: str | None = "1") -> None:
        """Answer the next n requests 429 with this Retry-After (delta-seconds or HTTP-date; None: omitted)."""
        self._faults.rate_limit += [retry_after] * n

    def garbage_next(self, n: int = 1, body: bytes = b'{"venue":"MCX","quotes":[{"sym\xff') -> None:
        """Answer the next n requests 200 with `body` (and a fresh ETag) instead of the document."""
        self._faults.garbage += [body] * n

    # -- market -------------------------------------------------------------------------------------

    async def _produce(self) -> None:
        cfg = self.config
        gen = MarketGenerator(cfg.sim.replace(start_ns=self.epoch_ns), self.registry)
        symbol_of = {i.id: i.symbol for i in self.registry}
        for block in gen.blocks():
            rows = venue_subset(block, self._indices)
            for u in venue_updates(rows, gen.names, symbol_of, self.epoch_ns, cfg.speed):
                delay = u.due_ns - time.time_ns()
                if delay > 0:
                    self.caught_up.set()
                    await asyncio.sleep(delay / 1e9)
                self.apply(u)
        self.caught_up.set()
        self.finished.set()  # the state is final: every later poll of it is answered 304

    def apply(self, u: Update) -> None:
        st = self.state.get(u.symbol)
        if st is None or u.seq <= st.seq:  # another venue's row, or a re-delivered seq (dirty scenario)
            return
        st.seq = u.seq
        st.changed_ns = u.due_ns
        if u.quote is not None:
            st.quote = u.quote
        if u.trade is not None:
            st.trade = u.trade
            st.volume += u.trade.qty
            st.trades += 1

    def quote(self, symbol: str) -> McxQuote:
        st = self.state[symbol]
        currency, unit = self._units[symbol]
        return McxQuote(symbol, currency, unit, st.seq, st.volume, st.trades, st.quote, st.trade)

    def etag(self, symbols: list[str]) -> str:
        key = ",".join(f"{s}:{self.state[s].seq}" for s in symbols)
        return '"' + hashlib.blake2b(f"{self.session}|{key}".encode(), digest_size=8).hexdigest() + '"'

    # -- HTTP ---------------------------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                parts = lines[0].split(" ")
                headers: dict[str, str] = {}
                for line in lines[1:]:
                    name, sep, value = line.partition(":")
                    if sep:
                        headers[name.strip().lower()] = value.strip()
                if len(parts) != 3:
                    await self._write(writer, 400, {}, b"bad request line")
                    return
                length = int(headers.get("content-length", "0") or 0)
                if length:
                    await reader.readexactly(length)  # GET bodies carry nothing we use
                status, out_headers, body = await self._respond(parts[0], parts[1], headers)
                await self._write(writer, status, out_headers, body)
                if headers.get("connection", "").lower() == "close":
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return  # the client went away (e.g. it timed out during a stall)
        finally:
            self._writers.discard(writer)
            writer.transport.abort()

    async def _write(self, writer: asyncio.StreamWriter, status: int, headers: dict[str, str], body: bytes) -> None:
        self.responses[status] += 1
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}", f"content-length: {len(body)}",
                 *(f"{k}: {v}" for k, v in headers.items())]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        await writer.drain()

    async def _respond(self, method: str, target: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        self.requests += 1
        while self.stalled:
            await asyncio.sleep(max(0.001, (self._stalled_until_ns - time.time_ns()) / 1e9))
        cfg = self.config
        url = urlsplit(target)
        if url.path != cfg.path:
            return 404, {}, b"no such resource"
        if method != "GET":
            return 405, {"allow": "GET"}, b"GET only"
        f = self._faults
        if f.fail:
            return f.fail.pop(0), {}, b"simulated server error"
        if f.rate_limit:
            retry = f.rate_limit.pop(0)
            return 429, ({"retry-after": retry} if retry is not None else {}), b"slow down"
        if f.garbage:
            return 200, {"content-type": "application/json", "etag": f'"garbage-{self.requests}"'}, f.garbage.pop(0)
        if not self.caught_up.is_set():
            return 503, {"retry-after": str(cfg.warmup_retry_after_s)}, b"warming up"
        wanted = parse_qs(url.query).get("symbols", [",".join(self.symbols)])[0].split(",")
        unknown = [s for s in wanted if s not in self.symbols]
        if unknown:
            return 400, {}, f"unknown symbols {unknown}".encode()
        out = {"content-type": "application/json", "cache-control": "no-cache"}
        tag = self.etag(wanted)
        changed_s = max(self.state[s].changed_ns for s in wanted) // 1_000_000_000
        if cfg.etag:
            out["etag"] = tag
        if cfg.last_modified:
            out["last-modified"] = email.utils.formatdate(changed_s, usegmt=True)
        inm = headers.get("if-none-match")
        if cfg.etag and inm is not None:
            if tag in (t.strip() for t in inm.split(",")) or inm.strip() == "*":
                return 304, out, b""
        elif cfg.last_modified and "if-modified-since" in headers:
            parsed = email.utils.parsedate_tz(headers["if-modified-since"])
            if parsed is not None and changed_s <= email.utils.mktime_tz(parsed):
                return 304, out, b""
        return 200, out, encode_quotes(self.session, time.time_ns(), [self.quote(s) for s in wanted])


def venue_updates(rows: SimRows, names: list[str], symbol_of: dict[str, str], epoch_ns: int,
                  speed: float = 1.0) -> list[Update]:
    """Simulator rows as venue state changes with their wall-clock due times (invalid rows move only the seq)."""
    due = (epoch_ns + (rows.ts_recv - epoch_ns) / speed).astype(np.int64).tolist()
    price, bid, ask = (_fixed(x) for x in (rows.price, rows.bid, rows.ask))
    inst, kind, seq, ts = rows.inst.tolist(), rows.kind.tolist(), rows.seq.tolist(), rows.ts_event.tolist()
    size, bsz, asz, aggr = rows.size.tolist(), rows.bid_size.tolist(), rows.ask_size.tolist(), rows.aggressor.tolist()
    out: list[Update] = []
    for i in range(len(rows)):
        k = kind[i]
        if k not in (KIND_QUOTE, KIND_TRADE):
            continue  # raw (undecodable) rows are a streaming-wire fault; this venue renders state
        symbol = symbol_of.get(names[inst[i]], "")
        u = Update(due[i], symbol, seq[i])
        if k == KIND_QUOTE:
            b, a = bid[i], ask[i]
            if b is not None and a is not None and bsz[i] >= 0 and asz[i] >= 0:
                u.quote = McxTopOfBook(seq[i], ts[i], decimal_from_fixed(b), decimal_from_fixed(a), bsz[i], asz[i])
        else:
            p = price[i]
            if p is not None and size[i] >= 1:
                u.trade = McxLastTrade(seq[i], ts[i], decimal_from_fixed(p), size[i],
                                       _SIDE.get(aggr[i], "N"))  # type: ignore[arg-type]
        out.append(u)
    return out


def _fixed(x: np.ndarray) -> list[int | None]:
    ok = np.isfinite(x)
    vals = np.round(np.where(ok, x, 0.0) * PRICE_SCALE).astype(np.int64).tolist()
    return [v if g else None for v, g in zip(vals, ok.tolist(), strict=True)]
