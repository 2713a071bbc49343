"""FIX market data (35=W snapshots, 35=X incrementals) -> TradeTick / QuoteTick, sans-I/O.

Instruments come only from the explicit symbol map (Symbol (55) -> registry id); an entry for any other
symbol is a DeadLetter "unknown_instrument". Per MDEntryType (269):
- 2 (trade) -> TradeTick: MDEntryPx (270), MDEntrySize (271, 0 when absent), AggressorSide (5797: 1 buy, 2 sell);
- 0 / 1 (bid / offer) update a top-of-book per instrument (MDUpdateAction (279) 0 new, 1 change, 2 delete);
  after each message one QuoteTick per instrument whose book changed and has both sides;
- 3 (index value) -> a TradeTick of size 0 when `index_as_trade` (index feeds such as JSE FTSE);
- anything else (statistics, status text, ...) is not a tick: counted in `ignored` by entry type.
A 35=W snapshot replaces the instrument's book. seq = RptSeq (83) when present. ts_event = MDEntryDate (272)
+ MDEntryTime (273); without 272 the date of SendingTime (52) (a time more than 12 h after SendingTime is
taken as the previous day's); without 273, TransactTime (60), else SendingTime. Bad entries (no price,
unparseable number or time, NoMDEntries (268) not matching the entries) are DeadLetters "malformed".
"""

from __future__ import annotations

import re
from collections import Counter

import msgspec

from feeds.fix.codec import FixMessage, parse_utc_date, parse_utc_time_only, parse_utc_timestamp
from market.config import Config
from market.events import DeadLetter, QuoteTick, Side, TradeTick
from market.fixedpoint import to_fixed
from market.instruments import Registry
from market.rejects import DETAIL, Reason

MARKETDATA_SNAPSHOT_VERSION = 1
_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]*)?|-?\.[0-9]+")
_DAY_NS = 86_400 * 1_000_000_000
_HALF_DAY_NS = _DAY_NS // 2
_AGGRESSOR = {"1": Side.BUY, "2": Side.SELL}

Output = TradeTick | QuoteTick | DeadLetter


class MarketDataConfig(Config, frozen=True):
    symbols: dict[str, str]  # FIX Symbol (55) -> registry instrument id
    index_as_trade: bool = False  # MDEntryType 3 (index value) -> TradeTick of size 0
    # "entry": ts_event from the entry's own time fields; "sending": SendingTime (52), for feeds whose entry
    # clock is off (the JSE index feed stamps MDEntryTime ~63 s ahead of SendingTime)
    event_time: str = "entry"
    source: str = "fix.marketdata"

    def __post_init__(self) -> None:
        if self.event_time not in ("entry", "sending"):
            raise ValueError(f"event_time must be 'entry' or 'sending', not {self.event_time!r}")


class Book(msgspec.Struct):
    bid: int = 0
    bid_size: int = 0
    has_bid: bool = False
    ask: int = 0
    ask_size: int = 0
    has_ask: bool = False


class MarketDataSnapshot(msgspec.Struct, frozen=True, tag="fix_marketdata.v1"):
    version: int
    books: dict[str, Book]
    ignored: dict[str, int]


class _Bad(Exception):  # noqa: N818 - internal: an entry that cannot become a tick
    pass


class MarketDataConverter:
    def __init__(self, config: MarketDataConfig, registry: Registry) -> None:
        unknown = sorted(i for i in config.symbols.values() if i not in registry)
        if unknown:
            raise ValueError(f"symbol map names instruments not in the registry: {unknown}")
        self.config = config
        self.registry = registry
        self.books: dict[str, Book] = {}
        self.ignored: Counter[str] = Counter()  # entries of types that are not ticks, by MDEntryType

    # -- logic contract ----------------------------------------------------------------------------------

    def on_item(self, msg: FixMessage) -> list[Output]:
        return self.on_message(msg, msg.sending_time)

    def on_watermark(self, watermark_ns: int) -> list[Output]:
        return []

    def snapshot(self) -> MarketDataSnapshot:
        return MarketDataSnapshot(version=MARKETDATA_SNAPSHOT_VERSION,
                                  books={k: msgspec.structs.replace(b) for k, b in self.books.items()},
                                  ignored=dict(self.ignored))

    @classmethod
    def restore(cls, config: MarketDataConfig, registry: Registry, snap: MarketDataSnapshot) -> MarketDataConverter:
        if snap.version != MARKETDATA_SNAPSHOT_VERSION:
            raise ValueError(f"market data snapshot version {snap.version} != {MARKETDATA_SNAPSHOT_VERSION}")
        c = cls(config, registry)
        c.books = {k: msgspec.structs.replace(b) for k, b in snap.books.items()}
        c.ignored = Counter(snap.ignored)
        return c

    # -- conversion --------------------------------------------------------------------------------------

    def on_message(self, msg: FixMessage, ts_recv: int) -> list[Output]:
        """Ticks and dead letters of one message, in entry order; [] for messages that are not W/X."""
        if msg.msg_type not in ("W", "X"):
            return []
        snapshot = msg.msg_type == "W"
        try:
            head, entries = _entries(msg)
        except _Bad as e:
            return [self._dead(Reason.MALFORMED.label, str(e), msg.raw.decode("latin-1"), ts_recv, msg)]
        out: list[Output] = []
        touched: dict[str, tuple[int, int]] = {}  # instrument -> (ts_event, seq) of its last book entry
        cleared: set[str] = set()
        entry_time = self.config.event_time == "entry"
        for entry in entries:
            fields = dict(head)
            fields.update(entry)  # entry fields override message-level ones (W carries 55 once)
            raw = "|".join(f"{t}={v}" for t, v in entry)
            etype = fields.get(269, "")
            if etype not in ("0", "1", "2") and not (etype == "3" and self.config.index_as_trade):
                self.ignored[etype] += 1
                continue
            symbol = fields.get(55, "")
            iid = self.config.symbols.get(symbol)
            if iid is None:
                out.append(self._dead(Reason.UNKNOWN_INSTRUMENT.label,
                                      f"{DETAIL[Reason.UNKNOWN_INSTRUMENT]}: FIX Symbol {symbol!r} is not mapped",
                                      raw, ts_recv, msg, symbol))
                continue
            try:
                ts_event = _entry_time(fields, msg) if entry_time else msg.sending_time
                seq = _int(fields.get(83), "RptSeq (83)")
                action = fields.get(279, "0")
                if etype in ("0", "1"):
                    if snapshot and iid not in cleared:
                        self.books[iid] = Book()
                        cleared.add(iid)
                    self._apply(iid, etype, action, fields)
                    touched[iid] = (ts_event, seq)
                    continue
                if action == "2":  # deleting a trade or index print retracts nothing we emitted
                    self.ignored[f"{etype}:delete"] += 1
                    continue
                price = _price(fields.get(270), "MDEntryPx (270)")
                size = 0 if etype == "3" else _int(fields.get(271), "MDEntrySize (271)")
            except _Bad as e:
                out.append(self._dead(Reason.MALFORMED.label, str(e), raw, ts_recv, msg, iid))
                continue
            out.append(TradeTick(instrument_id=iid, price=price, size=size, ts_event=ts_event, ts_recv=ts_recv,
                                 seq=seq, aggressor=_AGGRESSOR.get(fields.get(5797, ""), Side.NONE)))
        for iid, (ts_event, seq) in touched.items():
            b = self.books[iid]
            if b.has_bid and b.has_ask:
                out.append(QuoteTick(instrument_id=iid, bid=b.bid, ask=b.ask, bid_size=b.bid_size,
                                     ask_size=b.ask_size, ts_event=ts_event, ts_recv=ts_recv, seq=seq))
        return out

    def _apply(self, iid: str, etype: str, action: str, fields: dict[int, str]) -> None:
        b = self.books.get(iid)
        if b is None:
            b = self.books[iid] = Book()
        if action == "2":
            if etype == "0":
                b.has_bid = False
            else:
                b.has_ask = False
            return
        price = _price(fields.get(270), "MDEntryPx (270)")
        size = _int(fields.get(271), "MDEntrySize (271)")
        if etype == "0":
            b.bid, b.bid_size, b.has_bid = price, size, True
        else:
            b.ask, b.ask_size, b.has_ask = price, size, True

    def _dead(self, reason: str, detail: str, raw: str, ts_recv: int, msg: FixMessage,
              instrument_id: str = "") -> DeadLetter:
        return DeadLetter(source=self.config.source, reason=reason,
                          detail=f"{detail} (message at stream offset {msg.offset})", raw=raw, ts_recv=ts_recv,
                          instrument_id=instrument_id, ts_event=msg.sending_time)


def _entries(msg: FixMessage) -> tuple[list[tuple[int, str]], list[list[tuple[int, str]]]]:
    """(fields before NoMDEntries (268), one field list per entry). The first tag after 268 opens each entry."""
    fields = msg.fields
    at = next((i for i, (t, _) in enumerate(fields) if t == 268), -1)
    if at < 0:
        raise _Bad("market data message without NoMDEntries (268)")
    declared = fields[at][1]
    if not declared.isascii() or not declared.isdigit():
        raise _Bad(f"NoMDEntries (268) {declared!r} is not a count")
    head = list(fields[:at])
    body = fields[at + 1:]
    entries: list[list[tuple[int, str]]] = []
    if body:
        delimiter = body[0][0]
        for tv in body:
            if tv[0] == delimiter:
                entries.append([])
            entries[-1].append(tv)
    if len(entries) != int(declared):
        raise _Bad(f"NoMDEntries (268) = {declared} but {len(entries)} entries")
    return head, entries


def _price(text: str | None, name: str) -> int:
    if text is None or _NUMBER.fullmatch(text) is None:
        raise _Bad(f"{name} {text!r} is not a decimal number")
    return to_fixed(text)


def _int(text: str | None, name: str) -> int:
    if text is None:
        return 0
    if not text.isascii() or not text.isdigit():
        raise _Bad(f"{name} {text!r} is not a non-negative integer")
    return int(text)


def _entry_time(fields: dict[int, str], msg: FixMessage) -> int:
    time_text = fields.get(273)
    try:
        if time_text is None:
            transact = fields.get(60)
            return parse_utc_timestamp(transact) if transact is not None else msg.sending_time
        tod = parse_utc_time_only(time_text)
        date_text = fields.get(272)
        if date_text is not None:
            return parse_utc_date(date_text) + tod
    except ValueError as e:
        raise _Bad(f"entry time: {e}") from None
    if not msg.sending_time:
        raise _Bad("MDEntryTime (273) without MDEntryDate (272) or SendingTime (52)")
    day = msg.sending_time - msg.sending_time % _DAY_NS
    ts = day + tod
    if ts - msg.sending_time > _HALF_DAY_NS:  # entry time before midnight, sent after it
        ts -= _DAY_NS
    return ts
