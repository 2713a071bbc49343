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
"""

from __future__ import annotations

from feeds.common.adapter import SansIOFeed
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
from market.events import QuoteTick, TradeTick
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
