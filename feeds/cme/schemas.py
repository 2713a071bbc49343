"""The CME-style market-data messages as typed structs, decoded from FIX 4.4 tag=value text (no QuickFIX here).

Wire contract (see feeds/cme/README.md; the QuickFIX data dictionary is feeds/cme/dictionary.py):
- 35=X MarketDataIncrementalRefresh: NoMDEntries (268) entries, each MDUpdateAction (279), MDEntryType (269:
  0 bid, 1 offer, 2 trade), Symbol (55), RptSeq (83, per instrument, >= 1), MDEntryPx (270), MDEntrySize (271),
  MDEntryDate (272) + MDEntryTime (273, up to ns), AggressorSide (5797: 1 buy, 2 sell) on trades.
  The entries of one market event (a new best bid and offer) share its RptSeq.
- 35=W MarketDataSnapshotFullRefresh: Symbol (55), RptSeq (83 = the instrument's newest RptSeq, 0 = none yet),
  entries bid / offer / last trade, each with the RptSeq of the event that set it (so a snapshot can re-create
  those events exactly), or one EmptyBook (J) entry.
- 35=V MarketDataRequest (client -> venue), 35=Y MarketDataRequestReject (venue -> client).
Prices are decimal strings `-?[0-9]{1,9}(.[0-9]{1,9})?` converted to fixed point without a float; sizes are
non-negative integers; a violation raises MdDecodeError (the caller makes it a "malformed" dead letter).
"""

from __future__ import annotations

import re
from datetime import date
from enum import StrEnum

import msgspec

from feeds.common.wire_types import decimal_from_fixed, fixed_from_decimal
from feeds.fix.codec import parse_utc_date, parse_utc_time_only
from market.events import QuoteTick, Side, TradeTick

SOH = "\x01"

# tags
MSG_TYPE = 35
TEXT = 58
SYMBOL = 55
RPT_SEQ = 83
NO_RELATED_SYM = 146
MD_REQ_ID = 262
SUBSCRIPTION_REQUEST_TYPE = 263
MARKET_DEPTH = 264
MD_UPDATE_TYPE = 265
NO_MD_ENTRY_TYPES = 267
NO_MD_ENTRIES = 268
MD_ENTRY_TYPE = 269
MD_ENTRY_PX = 270
MD_ENTRY_SIZE = 271
MD_ENTRY_DATE = 272
MD_ENTRY_TIME = 273
MD_UPDATE_ACTION = 279
MD_REQ_REJ_REASON = 281
AGGRESSOR_SIDE = 5797

# fields an entry may carry, in the order the venue writes them (X: 279 opens an entry, W: 269 does)
INC_ENTRY_ORDER: tuple[int, ...] = (MD_UPDATE_ACTION, MD_ENTRY_TYPE, SYMBOL, RPT_SEQ, MD_ENTRY_PX, MD_ENTRY_SIZE,
                                    MD_ENTRY_DATE, MD_ENTRY_TIME, AGGRESSOR_SIDE)
FULL_ENTRY_ORDER: tuple[int, ...] = (MD_ENTRY_TYPE, MD_ENTRY_PX, MD_ENTRY_SIZE, MD_ENTRY_DATE, MD_ENTRY_TIME,
                                     RPT_SEQ, AGGRESSOR_SIDE)
_INC_TAGS = frozenset(INC_ENTRY_ORDER)
_FULL_TAGS = frozenset(FULL_ENTRY_ORDER)

_PRICE = re.compile(r"-?[0-9]{1,9}(\.[0-9]{1,9})?")
_I64_MAX = 2**63 - 1
_NS_PER_DAY = 86_400 * 1_000_000_000
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


class EntryType(StrEnum):
    BID = "0"
    OFFER = "1"
    TRADE = "2"
    EMPTY_BOOK = "J"


class UpdateAction(StrEnum):
    NEW = "0"
    CHANGE = "1"
    DELETE = "2"


class SubscriptionType(StrEnum):
    SNAPSHOT = "0"
    SNAPSHOT_AND_UPDATES = "1"
    UNSUBSCRIBE = "2"


_ENTRY_TYPES = {e.value: e for e in EntryType}
_ACTIONS = {a.value: a for a in UpdateAction}
_AGGRESSOR = {"1": Side.BUY, "2": Side.SELL}
_TAGS = {str(i): i for i in range(1, 10_000)}  # canonical tag text -> tag (other spellings take the slow check)
_TIME_CACHE_MAX = 4096
_SECOND_NS: dict[tuple[str, str], int] = {}  # (MDEntryDate, MDEntryTime's HH:MM:SS) -> UTC ns; entries share it
AGGRESSOR_CODE = {Side.BUY: "1", Side.SELL: "2"}


class MdDecodeError(ValueError):
    """The message breaks the venue contract (the detail says which field)."""


class MdEntry(msgspec.Struct, frozen=True):
    """One NoMDEntries (268) entry. Prices fixed point (1e-9); price/size 0 on a delete."""

    entry_type: EntryType
    symbol: str
    rpt_seq: int  # X: >= 1; W: the seq of the event that set it, 0 when the venue did not say
    price: int = 0
    size: int = 0
    ts_event: int = 0  # UTC ns from MDEntryDate + MDEntryTime
    action: UpdateAction = UpdateAction.NEW
    aggressor: Side = Side.NONE

    def to_trade(self, instrument_id: str, ts_recv: int, seq: int | None = None) -> TradeTick:
        return TradeTick(instrument_id, self.price, self.size, self.ts_event, ts_recv,
                         self.rpt_seq if seq is None else seq, self.aggressor)


class MdEvent(msgspec.Struct, frozen=True):
    """The entries of one instrument with one RptSeq: one market event (a trade, or a new best bid/offer)."""

    symbol: str
    rpt_seq: int
    entries: tuple[MdEntry, ...]

    @property
    def ts_event(self) -> int:
        return max(e.ts_event for e in self.entries)


class MdIncremental(msgspec.Struct, frozen=True):
    """35=X."""

    md_req_id: str
    entries: tuple[MdEntry, ...]

    def events(self) -> list[MdEvent]:
        """Entries grouped by (symbol, RptSeq), in order of first appearance."""
        groups: dict[tuple[str, int], list[MdEntry]] = {}
        for e in self.entries:
            groups.setdefault((e.symbol, e.rpt_seq), []).append(e)
        return [MdEvent(sym, seq, tuple(es)) for (sym, seq), es in groups.items()]


class MdSnapshot(msgspec.Struct, frozen=True):
    """35=W: the state of one instrument as of its RptSeq `rpt_seq` (the newest the venue published)."""

    md_req_id: str
    symbol: str
    rpt_seq: int
    entries: tuple[MdEntry, ...]

    def _last(self, entry_type: EntryType) -> MdEntry | None:
        found = None
        for e in self.entries:
            if e.entry_type is entry_type:
                found = e
        return found

    @property
    def bid(self) -> MdEntry | None:
        return self._last(EntryType.BID)

    @property
    def offer(self) -> MdEntry | None:
        return self._last(EntryType.OFFER)

    @property
    def trade(self) -> MdEntry | None:
        return self._last(EntryType.TRADE)

    def quote_seq(self) -> int:
        """The RptSeq of the event that left the book as shown (0: unknown or one side missing)."""
        b, o = self.bid, self.offer
        if b is None or o is None or not b.rpt_seq or not o.rpt_seq:
            return 0
        return max(b.rpt_seq, o.rpt_seq)

    def to_quote(self, instrument_id: str, ts_recv: int, seq: int | None = None) -> QuoteTick | None:
        """The book as a tick (both sides needed); seq defaults to quote_seq(), 0 for an unsequenced state record."""
        b, o = self.bid, self.offer
        if b is None or o is None:
            return None
        return QuoteTick(instrument_id, b.price, o.price, b.size, o.size, max(b.ts_event, o.ts_event), ts_recv,
                         self.quote_seq() if seq is None else seq)

    def to_trade(self, instrument_id: str, ts_recv: int) -> TradeTick | None:
        t = self.trade
        return None if t is None else t.to_trade(instrument_id, ts_recv)


class MdRequest(msgspec.Struct, frozen=True):
    """35=V: what the client asks for. Entry types bid/offer/trade, top of book (MarketDepth 1)."""

    md_req_id: str
    subscription: SubscriptionType
    symbols: tuple[str, ...]
    market_depth: int = 1
    entry_types: tuple[EntryType, ...] = (EntryType.BID, EntryType.OFFER, EntryType.TRADE)


class MdReject(msgspec.Struct, frozen=True):
    """35=Y."""

    md_req_id: str
    reason: str  # MDReqRejReason (281), "" when absent
    text: str


class TopOfBook(msgspec.Struct):
    """Best bid and offer of one instrument as the client knows it. `known`: both sides are exact (False after
    a gap until a snapshot or an event that sets both sides)."""

    bid: int = 0
    bid_size: int = 0
    has_bid: bool = False
    ask: int = 0
    ask_size: int = 0
    has_ask: bool = False
    ts_event: int = 0
    known: bool = False

    def apply(self, e: MdEntry) -> None:
        if e.entry_type is EntryType.BID:
            if e.action is UpdateAction.DELETE:
                self.has_bid, self.bid, self.bid_size = False, 0, 0
            else:
                self.has_bid, self.bid, self.bid_size = True, e.price, e.size
        elif e.entry_type is EntryType.OFFER:
            if e.action is UpdateAction.DELETE:
                self.has_ask, self.ask, self.ask_size = False, 0, 0
            else:
                self.has_ask, self.ask, self.ask_size = True, e.price, e.size
        else:
            return
        self.ts_event = max(self.ts_event, e.ts_event)

    def set_from(self, snap: MdSnapshot) -> None:
        """The snapshot's book replaces ours (an absent side is an empty side)."""
        self.has_bid = self.has_ask = False
        self.bid = self.bid_size = self.ask = self.ask_size = 0
        self.ts_event = 0
        for e in (snap.bid, snap.offer):
            if e is not None:
                self.apply(e)
        self.known = True

    def to_quote(self, instrument_id: str, ts_recv: int, seq: int) -> QuoteTick | None:
        if not (self.has_bid and self.has_ask):
            return None
        return QuoteTick(instrument_id, self.bid, self.ask, self.bid_size, self.ask_size, self.ts_event, ts_recv,
                         seq)


# -- decoding ---------------------------------------------------------------------------------------------

def split_fields(raw: str) -> list[tuple[int, str]]:
    """tag=value fields of a whole FIX message string (QuickFIX Message.toString()); trailing SOH optional."""
    out: list[tuple[int, str]] = []
    append = out.append
    tag_of = _TAGS.get
    for part in raw.split(SOH):
        tag, sep, value = part.partition("=")
        k = tag_of(tag)
        if k is not None and sep:
            append((k, value))
            continue
        if not part:
            continue
        if not sep or not tag.isascii() or not tag.isdigit():
            raise MdDecodeError(f"field {part[:40]!r} is not tag=value")
        append((int(tag), value))
    return out


def _first(fields: list[tuple[int, str]], tag: int) -> str | None:
    for t, v in fields:
        if t == tag:
            return v
    return None


def _group(fields: list[tuple[int, str]], opener: int, allowed: frozenset[int]) -> tuple[
        list[tuple[int, str]], list[dict[int, str]]]:
    """(fields outside NoMDEntries, one dict per entry). An entry ends at the next `opener` or at the first tag
    that no entry may carry; a repeated tag inside one entry is malformed."""
    at = next((i for i, (t, _) in enumerate(fields) if t == NO_MD_ENTRIES), -1)
    if at < 0:
        raise MdDecodeError("no NoMDEntries (268)")
    declared = fields[at][1]
    if not declared.isascii() or not declared.isdigit():
        raise MdDecodeError(f"NoMDEntries (268) {declared!r} is not a count")
    entries: list[dict[int, str]] = []
    i = at + 1
    n = len(fields)
    while i < n and fields[i][0] == opener:
        entry: dict[int, str] = {}
        entry[opener] = fields[i][1]
        i += 1
        while i < n and fields[i][0] in allowed and fields[i][0] != opener:
            tag, value = fields[i]
            if tag in entry:
                raise MdDecodeError(f"tag {tag} repeated inside entry {len(entries) + 1}")
            entry[tag] = value
            i += 1
        entries.append(entry)
    if len(entries) != int(declared):
        raise MdDecodeError(f"NoMDEntries (268) = {declared} but {len(entries)} entries")
    return list(fields[:at]) + list(fields[i:]), entries


def _price(text: str | None, where: str) -> int:
    if text is None or not text.isascii() or _PRICE.fullmatch(text) is None:
        raise MdDecodeError(f"{where}: MDEntryPx (270) {text!r} is not a decimal price")
    return fixed_from_decimal(text)


def _count(text: str | None, tag_name: str, where: str, minimum: int = 0) -> int:
    if text is None or not text.isascii() or not text.isdigit() or len(text) > 18:
        raise MdDecodeError(f"{where}: {tag_name} {text!r} is not a non-negative integer")
    value = int(text)
    if value < minimum:
        raise MdDecodeError(f"{where}: {tag_name} {value} < {minimum}")
    return value


def _entry_time(entry: dict[int, str], where: str) -> int:
    date_text, time_text = entry.get(MD_ENTRY_DATE), entry.get(MD_ENTRY_TIME)
    if date_text is None or time_text is None:
        raise MdDecodeError(f"{where}: MDEntryDate (272) and MDEntryTime (273) are required")
    key = (date_text, time_text[:8])
    base = _SECOND_NS.get(key)
    try:
        if base is None:
            base = parse_utc_date(date_text) + parse_utc_time_only(time_text[:8])
            if len(_SECOND_NS) >= _TIME_CACHE_MAX:
                _SECOND_NS.clear()
            _SECOND_NS[key] = base
        if len(time_text) == 8:
            return base
        digits = time_text[9:]
        if time_text[8] != "." or len(digits) not in (3, 6, 9) or not digits.isascii() or not digits.isdigit():
            raise ValueError(f"bad UTCTimeOnly {time_text!r}")
        return base + int(digits) * 10 ** (9 - len(digits))
    except ValueError as e:
        raise MdDecodeError(f"{where}: {e}") from None


def _entry(entry: dict[int, str], symbol: str, where: str, incremental: bool) -> MdEntry:
    etype = _ENTRY_TYPES.get(entry.get(MD_ENTRY_TYPE, ""))
    if etype is None:
        raise MdDecodeError(f"{where}: MDEntryType (269) {entry.get(MD_ENTRY_TYPE)!r} is not 0, 1, 2 or J")
    action = UpdateAction.NEW
    if incremental:
        act = _ACTIONS.get(entry.get(MD_UPDATE_ACTION, ""))
        if act is None:
            raise MdDecodeError(f"{where}: MDUpdateAction (279) {entry.get(MD_UPDATE_ACTION)!r} is not 0, 1 or 2")
        action = act
        seq = _count(entry.get(RPT_SEQ), "RptSeq (83)", where, minimum=1)
    else:
        seq = _count(entry[RPT_SEQ], "RptSeq (83)", where) if RPT_SEQ in entry else 0
    if etype is EntryType.EMPTY_BOOK:
        return MdEntry(etype, symbol, seq, action=action)
    ts = _entry_time(entry, where)
    if action is UpdateAction.DELETE:
        return MdEntry(etype, symbol, seq, 0, 0, ts, action)
    price = _price(entry.get(MD_ENTRY_PX), where)
    size = _count(entry.get(MD_ENTRY_SIZE), "MDEntrySize (271)", where, minimum=1 if etype is EntryType.TRADE else 0)
    aggressor = Side.NONE
    if etype is EntryType.TRADE and AGGRESSOR_SIDE in entry:
        side = _AGGRESSOR.get(entry[AGGRESSOR_SIDE])
        if side is None:
            raise MdDecodeError(f"{where}: AggressorSide (5797) {entry[AGGRESSOR_SIDE]!r} is not 1 or 2")
        aggressor = side
    return MdEntry(etype, symbol, seq, price, size, ts, action, aggressor)


def decode_incremental(fields: list[tuple[int, str]]) -> MdIncremental:
    rest, entries = _group(fields, MD_UPDATE_ACTION, _INC_TAGS)
    out = []
    for k, entry in enumerate(entries, 1):
        symbol = entry.get(SYMBOL, "")
        if not symbol:
            raise MdDecodeError(f"entry {k}: no Symbol (55)")
        e = _entry(entry, symbol, f"entry {k}", incremental=True)
        if e.entry_type is EntryType.EMPTY_BOOK:
            raise MdDecodeError(f"entry {k}: EmptyBook (J) only belongs in a snapshot")
        out.append(e)
    return MdIncremental(_first(rest, MD_REQ_ID) or "", tuple(out))


def decode_snapshot(fields: list[tuple[int, str]]) -> MdSnapshot:
    rest, entries = _group(fields, MD_ENTRY_TYPE, _FULL_TAGS)
    symbol = _first(rest, SYMBOL) or ""
    if not symbol:
        raise MdDecodeError("snapshot without Symbol (55)")
    seq = _count(_first(rest, RPT_SEQ), "RptSeq (83)", "snapshot")
    out = tuple(_entry(entry, symbol, f"entry {k}", incremental=False) for k, entry in enumerate(entries, 1))
    for e in out:
        if e.rpt_seq > seq:
            raise MdDecodeError(f"snapshot at RptSeq {seq} has an entry of the later RptSeq {e.rpt_seq}")
    return MdSnapshot(_first(rest, MD_REQ_ID) or "", symbol, seq,
                      tuple(e for e in out if e.entry_type is not EntryType.EMPTY_BOOK))


def decode_request(fields: list[tuple[int, str]]) -> MdRequest:
    """35=V (the venue side). Group counts are not re-checked: QuickFIX validated them against the dictionary."""
    req_id = _first(fields, MD_REQ_ID)
    if not req_id:
        raise MdDecodeError("no MDReqID (262)")
    try:
        sub = SubscriptionType(_first(fields, SUBSCRIPTION_REQUEST_TYPE) or "")
    except ValueError:
        raise MdDecodeError(f"SubscriptionRequestType (263) {_first(fields, SUBSCRIPTION_REQUEST_TYPE)!r}") from None
    depth = _count(_first(fields, MARKET_DEPTH), "MarketDepth (264)", "request")
    types = tuple(EntryType(v) for t, v in fields if t == MD_ENTRY_TYPE and v in _ENTRY_TYPES)
    symbols = tuple(v for t, v in fields if t == SYMBOL)
    return MdRequest(req_id, sub, symbols, depth, types)


def decode_reject(fields: list[tuple[int, str]]) -> MdReject:
    return MdReject(_first(fields, MD_REQ_ID) or "", _first(fields, MD_REQ_REJ_REASON) or "",
                    _first(fields, TEXT) or "")


# -- encoding helpers (the venue side builds QuickFIX messages from these) --------------------------------

def fix_date_time(ts_ns: int) -> tuple[str, str]:
    """UTC ns -> (MDEntryDate 'YYYYMMDD', MDEntryTime 'HH:MM:SS.nnnnnnnnn'); exact to the ns."""
    if not 0 <= ts_ns <= _I64_MAX:
        raise ValueError(f"timestamp {ts_ns} out of range")
    days, ns = divmod(ts_ns, _NS_PER_DAY)
    d = date.fromordinal(_EPOCH_ORDINAL + days)
    secs, frac = divmod(ns, 1_000_000_000)
    h, rem = divmod(secs, 3600)
    m, s = divmod(rem, 60)
    return f"{d.year:04d}{d.month:02d}{d.day:02d}", f"{h:02d}:{m:02d}:{s:02d}.{frac:09d}"


def entry_fields(e: MdEntry, incremental: bool) -> list[tuple[int, str]]:
    """The tag=value fields of one entry, in the venue's order."""
    out: dict[int, str] = {MD_ENTRY_TYPE: e.entry_type.value}
    if incremental:
        out[MD_UPDATE_ACTION] = e.action.value
        out[SYMBOL] = e.symbol
    if e.rpt_seq or incremental:
        out[RPT_SEQ] = str(e.rpt_seq)
    if e.entry_type is not EntryType.EMPTY_BOOK:
        date_text, time_text = fix_date_time(e.ts_event)
        if e.action is not UpdateAction.DELETE:
            out[MD_ENTRY_PX] = decimal_from_fixed(e.price)
            out[MD_ENTRY_SIZE] = str(e.size)
        out[MD_ENTRY_DATE] = date_text
        out[MD_ENTRY_TIME] = time_text
        if e.entry_type is EntryType.TRADE and e.aggressor is not Side.NONE:
            out[AGGRESSOR_SIDE] = AGGRESSOR_CODE[e.aggressor]
    order = INC_ENTRY_ORDER if incremental else FULL_ENTRY_ORDER
    return [(t, out[t]) for t in order if t in out]
