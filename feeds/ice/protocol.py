"""Sans-I/O client protocol of the ICE-style venue: frames in (with their receive time), ticks, dead letters
and outbound frames out. No sockets, no clock: feeds.ice.client runs it over a WebSocket.

Conversation: login -> login_ack -> subscribe -> subscribe_ack -> per symbol a snapshot, then incremental
trades/quotes with one seq stream per symbol. Sequencing (feeds.common.sequencer):
- seq == expected: a tick goes downstream at once;
- seq < expected: a duplicate, dropped (counted, "duplicate" dead letter);
- seq > expected: a gap; the update is held, a snapshot_request goes out for that symbol, and the
  snapshot's answer releases what was held plus what the snapshot can re-create (its last quote/trade,
  each with its own seq); every seq still missing is reported as a "sequence_gap" dead letter.
A reconnect resubscribes, and each new snapshot is checked against what was already delivered, so nothing
reaches downstream twice. The first snapshot of a symbol emits its quote with seq 0 (a state record, not
an incremental: downstream sees no gap before the first incremental).

Two entry points with the same outputs: `receive(frame)` (typed msgspec decode, one tick object per update)
and `receive_many(frames)` for whatever a runner has queued, which scans in-order trades/quotes of live
streams straight into TickColumns (feeds.ice.fastpath, ~10x the per-frame rate) and sends every other frame
through `receive`. `events()` returns objects either way; `drain()` returns columns + dead letters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from feeds.common.adapter import FeedEvent, SansIOFeed
from feeds.common.metrics import FeedMetrics
from feeds.common.reasons import (
    DUPLICATE,
    IMPLAUSIBLE_SEQ,
    MALFORMED,
    SEQUENCE_GAP,
    SUPERSEDED,
    UNKNOWN_INSTRUMENT,
    UNSUBSCRIBED,
    VENUE_ERROR,
)
from feeds.common.sequencer import Release, Sequencer, Verdict
from feeds.ice.config import IceFeedConfig
from feeds.ice.fastpath import SIDE_BUY, SIDE_NONE, SIDE_SELL, scan_updates
from feeds.ice.schemas import (
    DECODE_ERRORS,
    FATAL_ERRORS,
    SERVER_DECODER,
    Error,
    Heartbeat,
    Login,
    LoginAck,
    QuoteUpdate,
    Snapshot,
    SnapshotRequest,
    Subscribe,
    SubscribeAck,
    TradeUpdate,
    Unsubscribe,
    UnsubscribeAck,
    encode,
)
from market.codec import encode as encode_tick
from market.columns import KIND_TRADE, TickColumns
from market.events import DeadLetter, QuoteTick, Side, TradeTick
from market.instruments import Registry, default_registry

VENUE = "ICE"
NS_PER_MS = 1_000_000

# dead-letter reasons this adapter emits: the shared ones come from feeds.common.reasons
REASONS = frozenset({MALFORMED, UNKNOWN_INSTRUMENT, DUPLICATE, SEQUENCE_GAP, UNSUBSCRIBED, SUPERSEDED,
                     IMPLAUSIBLE_SEQ, VENUE_ERROR})

Tick = TradeTick | QuoteTick
# enum members bound once: attribute access on an Enum class is slow on the per-message path
_ACCEPT, _BUFFERED, _GAP, _DUPLICATE, _RELEASED = (Verdict.ACCEPT, Verdict.BUFFERED, Verdict.GAP, Verdict.DUPLICATE,
                                                   Verdict.RELEASED)
_SIDE_OF_CODE = {SIDE_NONE: Side.NONE, SIDE_BUY: Side.BUY, SIDE_SELL: Side.SELL}
_CODE_OF_SIDE = {v: k for k, v in _SIDE_OF_CODE.items()}
_MAX_SYMBOL_LEN = 32  # feeds.common.wire_types.Symbol: a longer one never decodes, so the fast path skips it


@dataclass(slots=True)
class TickBatch:
    """What `IceProtocol.drain` returns: every tick delivered so far in delivery order, as columns (with
    each trade's aggressor, which TickColumns does not carry: fastpath SIDE_* codes, SIDE_NONE for quotes),
    and the dead letters in the order they were emitted."""

    columns: TickColumns
    aggressor: np.ndarray  # int8, one per row
    dead_letters: list[DeadLetter] = field(default_factory=list)


@dataclass(slots=True)
class _Chunk:  # ticks the batch fast path delivered, waiting in the output queue
    columns: TickColumns
    aggressor: np.ndarray


class IceProtocol(SansIOFeed):
    name = "ice"

    def __init__(self, config: IceFeedConfig, registry: Registry | None = None,
                 metrics: FeedMetrics | None = None) -> None:
        super().__init__(metrics)
        self.config = config
        reg = registry or default_registry()
        self._venue_symbols: dict[str, str] = {i.symbol: i.id for i in reg if i.venue == VENUE}
        self._by_symbol: dict[str, str] = {}  # subscribed: venue symbol -> instrument id
        for iid in config.instruments:
            inst = reg.get(iid)
            if inst.venue != VENUE:
                raise ValueError(f"{iid} is not an {VENUE} instrument")
            self._by_symbol[inst.symbol] = iid
        self._symbol_of = {v: k for k, v in self._venue_symbols.items()}
        self._seq: Sequencer[Tick] = Sequencer(config.max_resync_buffer, config.max_seq_jump)
        self._resync_timeout_ns = config.resync_timeout_ms * NS_PER_MS
        self._req_id = 0
        self.session = ""
        self.venue_heartbeat_ms = 0
        self._registry = reg
        # output queue when the batch path ran: column chunks and event lists in delivery order (the
        # per-frame path keeps appending to self._events, which is moved here before each chunk)
        self._parts: list[_Chunk | list[FeedEvent]] = []

    # -- state, for status pages and tests ----------------------------------------------------------

    @property
    def instruments(self) -> list[str]:
        return list(self._by_symbol.values())

    def expected_seq(self, instrument_id: str) -> int | None:
        return self._seq.expected(instrument_id)

    def is_live(self, instrument_id: str) -> bool:
        return self._seq.is_live(instrument_id)

    # -- driven by the runner -----------------------------------------------------------------------

    def connection_made(self, now_ns: int) -> None:
        super().connection_made(now_ns)
        self.session = ""
        self._seq.connection_reset(now_ns)
        self._send(encode(Login(api_key=self.config.api_key, heartbeat_ms=self.config.heartbeat_ms)))

    def heartbeat(self, now_ns: int) -> None:
        self._send(encode(Heartbeat(ts=now_ns)))

    def poll(self, now_ns: int) -> None:
        """Timer hook: a symbol whose snapshot has not come within resync_timeout_ms releases what it holds."""
        if not self.logged_in:
            return
        for iid in self._seq.awaiting(now_ns, self._resync_timeout_ns):
            if self._seq.held(iid):
                self.metrics.resync_timeouts += 1
                rel = self._seq.release(iid)
                self._apply(iid, rel, b"", now_ns, f"no snapshot within {self.config.resync_timeout_ms} ms")

    def subscribe(self, instruments: list[str], now_ns: int = 0) -> None:
        new = [iid for iid in instruments if iid not in self._by_symbol.values()]
        for iid in new:
            sym = self._symbol_of.get(iid)
            if sym is None:
                raise ValueError(f"{iid} is not an {VENUE} instrument")
            self._by_symbol[sym] = iid
            self._seq.await_snapshot(iid, now_ns)
        if new and self.logged_in:
            self._send(encode(Subscribe(req_id=self._next_req(), symbols=[self._symbol_of[i] for i in new])))

    def unsubscribe(self, instruments: list[str], now_ns: int = 0) -> None:
        gone = [iid for iid in instruments if iid in self._by_symbol.values()]
        for iid in gone:
            del self._by_symbol[self._symbol_of[iid]]
            for tick in self._seq.forget(iid):  # held, never delivered: say so
                self.metrics.rejected += 1
                self._dead(UNSUBSCRIBED, f"{iid} seq {tick.seq} was held for a resync when unsubscribed",
                           encode_tick(tick), tick.ts_recv, iid, tick.ts_event)
        if gone and self.logged_in:
            self._send(encode(Unsubscribe(req_id=self._next_req(), symbols=[self._symbol_of[i] for i in gone])))

    def receive(self, frame: bytes | str, ts_recv: int) -> None:
        m = self.metrics
        m.frames += 1
        try:
            msg = SERVER_DECODER.decode(frame)
        except DECODE_ERRORS as e:
            m.decode_errors += 1
            self._dead(MALFORMED, str(e), frame, ts_recv)
            return
        tp = type(msg)
        if tp is QuoteUpdate or tp is TradeUpdate:
            self._on_update(msg, frame, ts_recv)  # type: ignore[arg-type]
        elif tp is Snapshot:
            self._on_snapshot(msg, frame, ts_recv)  # type: ignore[arg-type]
        elif tp is Heartbeat:
            m.control += 1
            m.heartbeats_in += 1
        elif tp is LoginAck:
            m.control += 1
            self._on_login(msg, ts_recv)  # type: ignore[arg-type]
        elif tp is SubscribeAck or tp is UnsubscribeAck:
            m.control += 1
        else:
            m.control += 1
            self._on_error(msg, frame, ts_recv)  # type: ignore[arg-type]

    def receive_many(self, frames: Sequence[bytes | str], ts_recv: int | Sequence[int] | np.ndarray) -> None:
        """Frames in arrival order, with one receive time for all or one per frame: the same outputs, in the
        same order, as `receive` called on each frame (tested), but an in-order trade/quote of a live stream
        is scanned straight into columns (feeds.ice.fastpath); every other frame goes through `receive`.
        Drain with `drain()` (columns) or `events()` (objects)."""
        n = len(frames)
        if n == 0:
            return
        if isinstance(ts_recv, int | np.integer):
            recv = np.full(n, ts_recv, dtype=np.int64)
        else:
            recv = np.array(ts_recv, dtype=np.int64)  # a copy: the emitted columns keep it
            if recv.shape != (n,):
                raise ValueError(f"ts_recv has {recv.shape} entries for {n} frames")
        try:
            data = b"".join(frames)  # type: ignore[arg-type]  # str frames: TypeError, per-frame path
        except TypeError:
            for f, t in zip(frames, recv.tolist(), strict=True):
                self.receive(f, t)
            return
        lens = np.fromiter(map(len, frames), dtype=np.int64, count=n)
        ends = np.cumsum(lens)
        starts = ends - lens
        buf = np.frombuffer(data, dtype=np.uint8)
        syms = [(sym.encode(), iid) for sym, iid in self._by_symbol.items()
                if 0 < len(sym) <= _MAX_SYMBOL_LEN and sym.isascii()]
        iids = [iid for _, iid in syms]
        sym_bytes = np.frombuffer(b"".join(b for b, _ in syms) or b"\0", dtype=np.uint8)
        sym_off = np.zeros(len(syms) + 1, dtype=np.int64)
        sym_off[1:] = np.cumsum([len(b) for b, _ in syms])
        sym_inst = np.array([self._registry.index_of(iid) for iid in iids], dtype=np.int32)
        cols = TickColumns(instrument=np.empty(n, np.int32), kind=np.empty(n, np.int8), ts_event=np.empty(n, np.int64),
                           ts_recv=recv, seq=np.empty(n, np.int64), price=np.empty(n, np.int64),
                           size=np.empty(n, np.int64), bid=np.empty(n, np.int64), ask=np.empty(n, np.int64),
                           bid_size=np.empty(n, np.int64), ask_size=np.empty(n, np.int64))
        aggressor = np.empty(n, np.int8)
        stream = np.empty(n, np.int32)
        pos = 0
        while pos < n:
            before = self._seq.live_expected(iids)
            expected = np.array(before, dtype=np.int64)
            k = scan_updates(buf, starts, ends, pos, sym_bytes, sym_off, sym_inst, expected, cols.instrument,
                             cols.kind, cols.ts_event, cols.seq, cols.price, cols.size, cols.bid, cols.ask,
                             cols.bid_size, cols.ask_size, aggressor, stream)
            if k > pos:
                for iid, old, new in zip(iids, before, expected.tolist(), strict=True):
                    if new != old:
                        self._seq.advance(iid, new)
                self._emit(cols.take(slice(pos, k)), aggressor[pos:k])
            if k < n:  # not the common case: the exact path decides
                self.receive(frames[k], int(recv[k]))
            pos = k + 1

    def drain(self) -> TickBatch:
        """Everything queued since the last drain/events: ticks as columns, dead letters as records."""
        parts = self._take_parts()
        cols: list[TickColumns] = []
        sides: list[np.ndarray] = []
        dead: list[DeadLetter] = []
        for part in parts:
            if isinstance(part, _Chunk):
                cols.append(part.columns)
                sides.append(part.aggressor)
                continue
            ticks: list[Tick] = []
            for ev in part:
                if type(ev) is DeadLetter:
                    dead.append(ev)
                else:
                    ticks.append(ev)  # type: ignore[arg-type]
            if ticks:
                cols.append(TickColumns.from_ticks(ticks, self._registry))  # type: ignore[arg-type]
                sides.append(np.array([_CODE_OF_SIDE[t.aggressor] if type(t) is TradeTick else SIDE_NONE
                                       for t in ticks], dtype=np.int8))
        aggressor = np.concatenate(sides) if sides else np.empty(0, np.int8)
        return TickBatch(TickColumns.concat(cols), aggressor, dead)

    def events(self) -> list[FeedEvent]:
        if not self._parts:
            return super().events()
        out: list[FeedEvent] = []
        for part in self._take_parts():
            if isinstance(part, _Chunk):
                out.extend(self._ticks_of(part))
            else:
                out.extend(part)
        return out

    # -- batch path helpers ---------------------------------------------------------------------------

    def _emit(self, columns: TickColumns, aggressor: np.ndarray) -> None:
        if self._events:
            self._parts.append(self._events)
            self._events = []
        self._parts.append(_Chunk(columns, aggressor))
        m = self.metrics
        n = len(columns)
        m.frames += n
        m.ticks += n
        m.lag.add_many(columns.ts_recv - columns.ts_event)

    def _take_parts(self) -> list[_Chunk | list[FeedEvent]]:
        parts = self._parts
        if self._events:
            parts.append(self._events)
            self._events = []
        self._parts = []
        return parts

    def _ticks_of(self, chunk: _Chunk) -> list[Tick]:
        c = chunk.columns
        by_index = self._registry.by_index
        out: list[Tick] = []
        for inst, kind, ts, tr, seq, px, sz, bid, ask, bsz, asz, side in zip(
                c.instrument.tolist(), c.kind.tolist(), c.ts_event.tolist(), c.ts_recv.tolist(), c.seq.tolist(),
                c.price.tolist(), c.size.tolist(), c.bid.tolist(), c.ask.tolist(), c.bid_size.tolist(),
                c.ask_size.tolist(), chunk.aggressor.tolist(), strict=True):
            iid = by_index(inst).id
            if kind == KIND_TRADE:
                out.append(TradeTick(iid, px, sz, ts, tr, seq, _SIDE_OF_CODE[side]))
            else:
                out.append(QuoteTick(iid, bid, ask, bsz, asz, ts, tr, seq))
        return out

    # -- handlers -----------------------------------------------------------------------------------

    def _next_req(self) -> int:
        self._req_id += 1
        return self._req_id

    def _on_login(self, ack: LoginAck, ts_recv: int) -> None:
        self.logged_in = True
        self.session = ack.session
        self.venue_heartbeat_ms = ack.heartbeat_ms
        symbols = list(self._by_symbol)
        for iid in self._by_symbol.values():
            self._seq.await_snapshot(iid, ts_recv)
        if symbols:
            self._send(encode(Subscribe(req_id=self._next_req(), symbols=symbols)))

    def _on_error(self, err: Error, frame: bytes | str, ts_recv: int) -> None:
        self.metrics.venue_errors += 1
        if err.code in FATAL_ERRORS:
            self.fatal = f"venue refused the session: {err.code}: {err.message}"
        iid = self._by_symbol.get(err.symbol, "") if err.symbol else ""
        where = f" (symbol {err.symbol!r})" if err.symbol else ""
        self._dead(VENUE_ERROR, f"{err.code}: {err.message}{where}", frame, ts_recv, iid)

    def _instrument(self, symbol: str, frame: bytes | str, ts_recv: int, ts_event: int) -> str | None:
        iid = self._by_symbol.get(symbol)
        if iid is not None:
            return iid
        self.metrics.rejected += 1
        known = self._venue_symbols.get(symbol)
        if known is None:
            self._dead(UNKNOWN_INSTRUMENT, f"symbol {symbol!r} is not an {VENUE} instrument in the registry",
                       frame, ts_recv, "", ts_event)
        else:
            self._dead(UNSUBSCRIBED, f"{known} is not subscribed", frame, ts_recv, known, ts_event)
        return None

    def _on_update(self, msg: TradeUpdate | QuoteUpdate, frame: bytes | str, ts_recv: int) -> None:
        iid = self._by_symbol.get(msg.symbol) or self._instrument(msg.symbol, frame, ts_recv, msg.ts)
        if iid is None:
            return
        tick: Tick = msg.to_trade(iid, ts_recv) if type(msg) is TradeUpdate else msg.to_quote(iid, ts_recv)  # type: ignore[union-attr]
        m = self.metrics
        v = self._seq.on_update(iid, msg.seq, tick, ts_recv)
        if v is _ACCEPT:
            self._events.append(tick)
            m.ticks += 1
            m.lag.add(ts_recv - msg.ts)
        elif v is _BUFFERED:
            m.buffered += 1
        elif v is _GAP:
            m.buffered += 1
            m.resync_requests += 1
            self._send(encode(SnapshotRequest(req_id=self._next_req(), symbol=msg.symbol)))
        elif v is _DUPLICATE:
            m.duplicates += 1
            exp = self._seq.expected(iid)
            self._dead(DUPLICATE, f"{iid} seq {msg.seq} already delivered, held or reported missing"
                       f" (next expected {exp})", frame, ts_recv, iid, msg.ts)
        elif v is _RELEASED:
            m.buffered += 1
            self._apply(iid, self._seq.take_released(iid), frame, ts_recv,
                        f"resync buffer full ({self.config.max_resync_buffer} held)")
        else:  # IMPLAUSIBLE
            m.rejected += 1
            self._dead(IMPLAUSIBLE_SEQ, f"{iid} seq {msg.seq} is more than {self.config.max_seq_jump} ahead of"
                       f" the next expected {self._seq.expected(iid)}", frame, ts_recv, iid, msg.ts)

    def _on_snapshot(self, snap: Snapshot, frame: bytes | str, ts_recv: int) -> None:
        m = self.metrics
        m.snapshots += 1
        iid = self._by_symbol.get(snap.symbol) or self._instrument(snap.symbol, frame, ts_recv, 0)
        if iid is None:
            return
        q, t = snap.quote, snap.trade
        if (q is not None and q.seq > snap.seq) or (t is not None and t.seq > snap.seq):
            m.rejected += 1
            self._dead(MALFORMED, f"{iid} snapshot at seq {snap.seq} carries a quote/trade of a later seq",
                       frame, ts_recv, iid)
            return
        quote = snap.to_quote(iid, ts_recv)
        trade = snap.to_trade(iid, ts_recv)
        recovered: list[tuple[int, Tick]] = [(x.seq, x) for x in (quote, trade) if x is not None]
        rel = self._seq.on_snapshot(iid, snap.seq, recovered)
        if rel.implausible:
            m.rejected += 1
            self._dead(IMPLAUSIBLE_SEQ, f"{iid} snapshot seq {snap.seq} is more than {self.config.max_seq_jump}"
                       f" ahead of the next expected {self._seq.expected(iid)}", frame, ts_recv, iid)
            return
        if rel.initial and quote is not None:
            state = snap.to_quote(iid, ts_recv, seq=0)
            self._events.append(state)  # type: ignore[arg-type]
            m.ticks += 1
        self._apply(iid, rel, frame, ts_recv, f"snapshot at seq {snap.seq}")

    def _apply(self, iid: str, rel: Release[Tick], frame: bytes | str, ts_recv: int, why: str) -> None:
        m = self.metrics
        for r in rel.missing:
            m.gaps += 1
            m.missing += r.count
            self._dead(SEQUENCE_GAP, f"{iid} seq {r.first}..{r.last} missing ({r.count}); {why}", frame,
                       ts_recv, iid)
        for tick in rel.superseded:
            m.superseded += 1
            self._dead(SUPERSEDED, f"{iid} seq {tick.seq} precedes the first snapshot, which carries its state",
                       encode_tick(tick), tick.ts_recv, iid, tick.ts_event)
        m.recovered += rel.recovered
        for tick in rel.items:
            self._events.append(tick)
            m.ticks += 1
            m.lag.add(tick.ts_recv - tick.ts_event)

