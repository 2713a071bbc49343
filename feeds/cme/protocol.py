"""Sans-I/O market-data logic of the CME-style FIX session: FIX message text in (with its receive time), ticks,
dead letters and MarketDataRequests out. No QuickFIX, no clock, no threads: feeds.cme.application drives it
from QuickFIX's callbacks, and every rule here is unit-tested by feeding it message strings.

QuickFIX owns the session layer (logon, heartbeats, MsgSeqNum, ResendRequest, SequenceReset); this object
counts those admin messages and owns the application layer:
- on logon it subscribes (35=V, SubscriptionRequestType 1 = snapshot + updates, MarketDepth 1, bid/offer/trade)
  and every instrument waits for its 35=W snapshot;
- 35=X entries are grouped into events (one instrument, one RptSeq) and sequenced per instrument with
  feeds.common.sequencer: in order -> applied to the top of book and emitted (TradeTick per trade entry, one
  QuoteTick per event that moved the book); RptSeq < expected -> "duplicate" dead letter; a jump -> the event
  is held and a snapshot is requested (35=V, SubscriptionRequestType 0);
- a 35=W snapshot at RptSeq S releases what was held plus what it can re-create exactly (its book, as of the
  RptSeq of the event that set it, and its last trade); every RptSeq still missing becomes one "sequence_gap"
  dead letter per range. The first snapshot of an instrument sets its baseline and its book goes out as a
  QuoteTick with seq 0 (a state record); later ones are checked against what was already delivered, so a
  reconnect or a gap never delivers an RptSeq twice;
- no snapshot within resync_timeout_ms: held events are released and the holes reported; an instrument
  still waiting with nothing held is subscribed again (a MarketDataRequest can be lost at the session level,
  e.g. gap-filled after a reconnect; subscribing twice is harmless: the venue answers with a snapshot).
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from feeds.cme.config import CME_VENUES, CmeFeedConfig
from feeds.cme.schemas import (
    MSG_TYPE,
    EntryType,
    MdDecodeError,
    MdEntry,
    MdEvent,
    MdRequest,
    MdSnapshot,
    SubscriptionType,
    TopOfBook,
    UpdateAction,
    decode_incremental,
    decode_reject,
    decode_snapshot,
    split_fields,
)
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
from market.events import QuoteTick, TradeTick
from market.instruments import Registry, default_registry

NS_PER_MS = 1_000_000

# dead-letter reasons of this venue beyond feeds.common.reasons
BOOK_UNKNOWN = "book_unknown"
UNSUPPORTED = "unsupported_message"
CALLBACK_ERROR = "callback_error"
REASONS = frozenset({MALFORMED, UNKNOWN_INSTRUMENT, DUPLICATE, SEQUENCE_GAP, UNSUBSCRIBED, SUPERSEDED,
                     IMPLAUSIBLE_SEQ, BOOK_UNKNOWN, VENUE_ERROR, UNSUPPORTED, CALLBACK_ERROR})

ADMIN_TYPES = frozenset({"0", "1", "2", "3", "4", "5", "A"})
SECRET_TAGS = (554, 925, 96)  # Password, NewPassword, RawData: masked in any raw text we keep

_ACCEPT, _BUFFERED, _GAP, _DUPLICATE, _RELEASED = (Verdict.ACCEPT, Verdict.BUFFERED, Verdict.GAP, Verdict.DUPLICATE,
                                                   Verdict.RELEASED)
_BID, _OFFER, _TRADE = EntryType.BID, EntryType.OFFER, EntryType.TRADE


class SessionCounters(msgspec.Struct):
    """FIX session-level activity seen by the application (QuickFIX itself acts on it)."""

    logons: int = 0
    logouts: int = 0
    logon_refusals: int = 0  # a Logout (or Reject) received before the logon completed
    heartbeats_in: int = 0
    heartbeats_out: int = 0
    test_requests_in: int = 0
    resend_requests_in: int = 0
    resend_requests_out: int = 0  # QuickFIX saw a MsgSeqNum gap and asked for a resend
    gap_fills_in: int = 0  # SequenceReset-GapFill (35=4, 123=Y) received
    sequence_resets_in: int = 0  # SequenceReset-Reset (35=4, 123=N) received
    session_rejects_in: int = 0  # 35=3
    md_rejects_in: int = 0  # 35=Y
    app_messages_out: int = 0
    one_sided: int = 0  # events that left one side of the book empty (no QuoteTick: nothing to quote)
    callback_errors: int = 0  # exceptions caught inside QuickFIX callbacks (each also a dead letter)


def redact(raw: str) -> str:
    """The message text with Password-like fields masked."""
    if "=" not in raw:
        return raw
    parts = raw.split("\x01")
    for k, part in enumerate(parts):
        tag, sep, _ = part.partition("=")
        if sep and tag.isdigit() and int(tag) in SECRET_TAGS:
            parts[k] = f"{tag}=***"
    return "\x01".join(parts)


@dataclass(slots=True)
class _Held:
    """An event as the sequencer holds it: with its own receive time (ticks keep it when released late)."""

    event: MdEvent
    ts_recv: int


class CmeMdProtocol(SansIOFeed):
    name = "cme"

    def __init__(self, config: CmeFeedConfig, registry: Registry | None = None,
                 metrics: FeedMetrics | None = None) -> None:
        super().__init__(metrics)
        self.config = config
        reg = registry or default_registry()
        self._venue_symbols: dict[str, str] = {i.symbol: i.id for i in reg if i.venue in CME_VENUES}
        self._by_symbol: dict[str, str] = {}
        for iid in config.instruments:
            inst = reg.get(iid)
            if inst.venue not in CME_VENUES:
                raise ValueError(f"{iid} is not an instrument of a CME Group venue ({', '.join(sorted(CME_VENUES))})")
            if inst.symbol in self._by_symbol:
                raise ValueError(f"{iid} and {self._by_symbol[inst.symbol]} share the FIX Symbol {inst.symbol!r}")
            self._by_symbol[inst.symbol] = iid
        self._symbol_of = {v: k for k, v in self._by_symbol.items()}
        self._seq: Sequencer[_Held] = Sequencer(config.max_resync_buffer, config.max_seq_jump)
        self._books: dict[str, TopOfBook] = {iid: TopOfBook() for iid in self._by_symbol.values()}
        self._resync_timeout_ns = config.resync_timeout_ms * NS_PER_MS
        self._requested_ns: dict[str, int] = {}  # instrument -> when its snapshot was last asked for
        self._requests: list[MdRequest] = []
        self._req_id = 0
        self.session = SessionCounters()

    # -- state, for status pages and tests ----------------------------------------------------------

    @property
    def instruments(self) -> list[str]:
        return list(self._by_symbol.values())

    def expected_seq(self, instrument_id: str) -> int | None:
        return self._seq.expected(instrument_id)

    def is_live(self, instrument_id: str) -> bool:
        return self._seq.is_live(instrument_id)

    def book(self, instrument_id: str) -> TopOfBook:
        return msgspec.structs.replace(self._books[instrument_id])

    def requests(self) -> list[MdRequest]:
        """MarketDataRequests to send (drained)."""
        out = self._requests
        self._requests = []
        return out

    # -- session events (driven by QuickFIX callbacks) ----------------------------------------------

    def on_logon(self, now_ns: int) -> None:
        self.logged_in = True
        m = self.metrics
        m.connects += 1
        if m.connects > 1:
            m.reconnects += 1
        self.session.logons += 1
        for iid in self._by_symbol.values():  # each waits for the snapshot the subscription brings
            self._seq.await_snapshot(iid, now_ns)
            self._requested_ns[iid] = now_ns
        self._request(SubscriptionType.SNAPSHOT_AND_UPDATES, tuple(self._by_symbol))

    def on_logout(self, now_ns: int) -> None:
        if self.logged_in:
            self.session.logouts += 1
        self.logged_in = False
        self._seq.connection_reset(now_ns)

    def sent(self, raw: str) -> None:
        """A message QuickFIX is about to send (toAdmin / toApp): counted; its text is never kept."""
        mt = _msg_type_fast(raw)
        s = self.session
        if mt == "0":
            s.heartbeats_out += 1
            self.metrics.heartbeats_out += 1
        elif mt == "2":
            s.resend_requests_out += 1
        elif mt not in ADMIN_TYPES:
            s.app_messages_out += 1

    def callback_error(self, callback: str, error: BaseException, raw: str, ts_recv: int) -> None:
        """An exception caught inside a QuickFIX callback: an output, never raised into QuickFIX."""
        self.session.callback_errors += 1
        self._dead(CALLBACK_ERROR, f"{callback}: {type(error).__name__}: {error}", redact(raw), ts_recv)

    def poll(self, now_ns: int) -> None:
        """Timer hook (the application calls it on every callback, throttled): snapshot timeouts."""
        if not self.logged_in:
            return
        silent: list[str] = []
        for iid in self._seq.awaiting(now_ns, self._resync_timeout_ns):
            if self._seq.held(iid):
                self.metrics.resync_timeouts += 1
                self._release(iid, self._seq.release(iid), None, "", now_ns,
                              f"no snapshot within {self.config.resync_timeout_ms} ms")
            elif now_ns - self._requested_ns.get(iid, 0) >= self._resync_timeout_ns:
                silent.append(iid)
        if silent:  # nothing at all came: the request (or the subscription) may be lost; subscribing is idempotent
            self.metrics.resync_timeouts += len(silent)
            self.metrics.resync_requests += len(silent)
            for iid in silent:
                self._requested_ns[iid] = now_ns
            self._request(SubscriptionType.SNAPSHOT_AND_UPDATES, tuple(self._symbol_of[i] for i in silent))

    # -- messages -------------------------------------------------------------------------------------

    def receive(self, frame: bytes | str, ts_recv: int) -> None:
        """One whole FIX message (QuickFIX Message.toString()), admin or application."""
        raw = frame if isinstance(frame, str) else frame.decode("latin-1")
        m = self.metrics
        m.frames += 1
        try:
            fields = split_fields(raw)
            mt = next((v for t, v in fields if t == MSG_TYPE), "")
            if mt == "X":
                self._on_incremental(fields, raw, ts_recv)
            elif mt == "W":
                self._on_snapshot(decode_snapshot(fields), raw, ts_recv)
            elif mt in ADMIN_TYPES:
                m.control += 1
                self._on_admin(mt, fields, raw, ts_recv)
            elif mt == "Y":
                m.control += 1
                self._on_md_reject(fields, raw, ts_recv)
            elif mt == "j":
                m.control += 1
                m.venue_errors += 1
                self._dead(VENUE_ERROR, f"BusinessMessageReject: {_get(fields, 58)}", raw, ts_recv)
            else:
                m.rejected += 1
                self._dead(UNSUPPORTED, f"MsgType {mt!r} is not handled by the market-data session", raw, ts_recv)
        except MdDecodeError as e:
            m.decode_errors += 1
            self._dead(MALFORMED, str(e), raw, ts_recv)

    def _on_admin(self, mt: str, fields: list[tuple[int, str]], raw: str, ts_recv: int) -> None:
        s = self.session
        if mt == "0":
            s.heartbeats_in += 1
            self.metrics.heartbeats_in += 1
        elif mt == "1":
            s.test_requests_in += 1
        elif mt == "2":
            s.resend_requests_in += 1
        elif mt == "4":
            if _get(fields, 123) == "Y":
                s.gap_fills_in += 1
            else:
                s.sequence_resets_in += 1
        elif mt == "3":
            s.session_rejects_in += 1
            self.metrics.venue_errors += 1
            self._dead(VENUE_ERROR, f"session Reject of our MsgSeqNum {_get(fields, 45)}: {_get(fields, 58)}",
                       raw, ts_recv)
        elif mt == "5" and not self.logged_in:
            s.logon_refusals += 1
            self.metrics.venue_errors += 1
            self._dead(VENUE_ERROR, f"logon refused: {_get(fields, 58) or 'Logout without text'}", raw, ts_recv)

    def _on_md_reject(self, fields: list[tuple[int, str]], raw: str, ts_recv: int) -> None:
        rej = decode_reject(fields)
        self.session.md_rejects_in += 1
        self.metrics.venue_errors += 1
        self._dead(VENUE_ERROR, f"MarketDataRequestReject {rej.md_req_id!r} reason {rej.reason!r}: {rej.text}",
                   raw, ts_recv)

    def _instrument(self, symbol: str, raw: str, ts_recv: int, ts_event: int) -> str | None:
        iid = self._by_symbol.get(symbol)
        if iid is not None:
            return iid
        self.metrics.rejected += 1
        known = self._venue_symbols.get(symbol)
        if known is None:
            self._dead(UNKNOWN_INSTRUMENT, f"Symbol {symbol!r} is not a CME Group instrument in the registry",
                       raw, ts_recv, "", ts_event)
        else:
            self._dead(UNSUBSCRIBED, f"{known} is not subscribed", raw, ts_recv, known, ts_event)
        return None

    def _on_incremental(self, fields: list[tuple[int, str]], raw: str, ts_recv: int) -> None:
        m = self.metrics
        for ev in decode_incremental(fields).events():
            iid = self._instrument(ev.symbol, raw, ts_recv, ev.ts_event)
            if iid is None:
                continue
            held = _Held(ev, ts_recv)
            v = self._seq.on_update(iid, ev.rpt_seq, held, ts_recv)
            if v is _ACCEPT:
                self._deliver(iid, held)
            elif v is _BUFFERED:
                m.buffered += 1
            elif v is _GAP:
                m.buffered += 1
                self._ask_snapshot(iid, ts_recv)
            elif v is _DUPLICATE:
                m.duplicates += 1
                self._dead(DUPLICATE, f"{iid} RptSeq {ev.rpt_seq} already delivered, held or reported missing"
                           f" (next expected {self._seq.expected(iid)})", raw, ts_recv, iid, ev.ts_event)
            elif v is _RELEASED:
                m.buffered += 1
                self._release(iid, self._seq.take_released(iid), None, raw, ts_recv,
                              f"resync buffer full ({self.config.max_resync_buffer} held)")
            else:  # IMPLAUSIBLE
                m.rejected += 1
                self._dead(IMPLAUSIBLE_SEQ, f"{iid} RptSeq {ev.rpt_seq} is more than {self.config.max_seq_jump}"
                           f" ahead of the next expected {self._seq.expected(iid)}", raw, ts_recv, iid, ev.ts_event)

    def _on_snapshot(self, snap: MdSnapshot, raw: str, ts_recv: int) -> None:
        m = self.metrics
        m.snapshots += 1
        iid = self._instrument(snap.symbol, raw, ts_recv, 0)
        if iid is None:
            return
        recovered = [(h.event.rpt_seq, h) for h in _recoverable(snap, ts_recv)]
        rel = self._seq.on_snapshot(iid, snap.rpt_seq, recovered)
        if rel.implausible:
            m.rejected += 1
            self._dead(IMPLAUSIBLE_SEQ, f"{iid} snapshot RptSeq {snap.rpt_seq} is more than"
                       f" {self.config.max_seq_jump} ahead of the next expected {self._seq.expected(iid)}",
                       raw, ts_recv, iid)
            return
        self._release(iid, rel, snap, raw, ts_recv, f"snapshot at RptSeq {snap.rpt_seq}")

    # -- delivery -------------------------------------------------------------------------------------

    def _release(self, iid: str, rel: Release[_Held], snap: MdSnapshot | None, raw: str, ts_recv: int,
                 why: str) -> None:
        """Apply a release in RptSeq order: a hole makes the book unknown from its first missing RptSeq on,
        the snapshot (if any) sets the book right after its RptSeq, held and re-created events in between."""
        m = self.metrics
        for r in rel.missing:
            m.gaps += 1
            m.missing += r.count
            self._dead(SEQUENCE_GAP, f"{iid} RptSeq {r.first}..{r.last} missing ({r.count}); {why}", raw, ts_recv,
                       iid)
        for h in rel.superseded:
            m.superseded += 1
            self._dead(SUPERSEDED, f"{iid} RptSeq {h.event.rpt_seq} precedes the first snapshot, which carries its"
                       " state", raw, h.ts_recv, iid, h.event.ts_event)
        m.recovered += rel.recovered
        # timeline keys: (RptSeq, order) with holes (0) before events (1) before the snapshot (2) at one RptSeq
        timeline: list[tuple[int, int, _Held | None]] = [(r.first, 0, None) for r in rel.missing]
        timeline += [(s, 1, h) for s, h in zip(rel.seqs, rel.items, strict=True)]
        if snap is not None:
            timeline.append((snap.rpt_seq, 2, None))
        timeline.sort(key=lambda x: (x[0], x[1]))
        book = self._books[iid]
        for _, kind, held in timeline:
            if kind == 0:
                book.known = False
            elif kind == 1 and held is not None:
                self._deliver(iid, held)
            elif snap is not None:
                book.set_from(snap)
                if rel.initial:  # the baseline: the book as a state record (seq 0); its last trade is history
                    q = snap.to_quote(iid, ts_recv, seq=0)
                    if q is not None:
                        self._emit(q)

    def _deliver(self, iid: str, held: _Held) -> None:
        ev, ts_recv = held.event, held.ts_recv
        book = self._books[iid]
        sides: set[EntryType] = set()
        touched = False
        for e in ev.entries:
            if e.entry_type is _TRADE:
                if e.action is UpdateAction.DELETE:  # a busted trade: we cannot retract what went downstream
                    self.metrics.rejected += 1
                    self._dead(VENUE_ERROR, f"{iid} RptSeq {ev.rpt_seq} deletes a trade (bust), already delivered",
                               "", ts_recv, iid, e.ts_event)
                else:
                    self._emit(e.to_trade(iid, ts_recv, ev.rpt_seq))
            else:
                book.apply(e)
                touched = True
                if e.action is not UpdateAction.DELETE:
                    sides.add(e.entry_type)
        if not touched:
            return
        if _BID in sides and _OFFER in sides:
            book.known = True
        if not book.known:
            self.metrics.rejected += 1
            self._dead(BOOK_UNKNOWN, f"{iid} RptSeq {ev.rpt_seq} changes one side of a book that missed updates;"
                       " no quote until a snapshot or a two-sided update", "", ts_recv, iid, ev.ts_event)
            return
        q = book.to_quote(iid, ts_recv, ev.rpt_seq)
        if q is None:
            self.session.one_sided += 1
        else:
            self._emit(q)

    def _emit(self, tick: TradeTick | QuoteTick) -> None:
        self._events.append(tick)
        m = self.metrics
        m.ticks += 1
        m.lag.add(tick.ts_recv - tick.ts_event)

    # -- requests -------------------------------------------------------------------------------------

    def _request(self, sub: SubscriptionType, symbols: tuple[str, ...]) -> None:
        self._req_id += 1
        prefix = "sub" if sub is SubscriptionType.SNAPSHOT_AND_UPDATES else "snap"
        self._requests.append(MdRequest(f"{prefix}-{self._req_id}", sub, symbols))

    def _ask_snapshot(self, iid: str, now_ns: int) -> None:
        self.metrics.resync_requests += 1
        self._requested_ns[iid] = now_ns
        if self.logged_in:
            self._request(SubscriptionType.SNAPSHOT, (self._symbol_of[iid],))


def _recoverable(snap: MdSnapshot, ts_recv: int) -> list[_Held]:
    """Events the snapshot re-creates exactly: the book as left by RptSeq quote_seq() (both sides, each as set
    by its own RptSeq), and the last trade."""
    out: dict[int, list[MdEntry]] = {}
    q = snap.quote_seq()
    if q:
        out.setdefault(q, []).extend(e for e in (snap.bid, snap.offer) if e is not None)
    t = snap.trade
    if t is not None and t.rpt_seq:
        out.setdefault(t.rpt_seq, []).append(t)
    return [_Held(MdEvent(snap.symbol, s, tuple(es)), ts_recv) for s, es in out.items()]


def _get(fields: list[tuple[int, str]], tag: int) -> str:
    for t, v in fields:
        if t == tag:
            return v
    return ""


def _msg_type_fast(raw: str) -> str:
    i = raw.find("\x0135=")
    if i < 0:
        return ""
    j = raw.find("\x01", i + 4)
    return raw[i + 4:j if j >= 0 else None]
