"""Every message of the ICE-style WebSocket protocol as a msgspec Struct (JSON text frames, tag in "type").

The field constraints are the venue contract, checked while decoding: prices are decimal strings in the
instrument's quoted units with at most 9 integer and 9 fractional digits (so the exact fixed-point value
always fits int64), quantities are non-negative ints (a trade's is >= 1), seqs start at 1, timestamps are
UTC ns. A message breaking any of it does not decode and becomes a "malformed" dead letter. Unknown extra
fields are ignored (a venue may add fields without breaking clients).

Decoders and the encoder are built once at import. See feeds/ice/README.md for the conversation.
"""

from __future__ import annotations

import msgspec

from feeds.common.wire_types import (  # re-exported: the venue contract's field types
    SIDE_BY_CODE as _SIDE,
)
from feeds.common.wire_types import (
    AggressorCode,
    IntervalMs,
    Price,
    Qty,
    ReqId,
    Seq,
    SnapSeq,
    Symbol,
    TradeQty,
    Ts,
    decimal_from_fixed,
    fixed_from_decimal,
    side_code,
)
from market.events import QuoteTick, TradeTick


class VenueMessage(msgspec.Struct, frozen=True, tag_field="type"):
    """Base of every message; the subclass's tag is its "type"."""


# -- session ----------------------------------------------------------------------------------------------

class Login(VenueMessage, frozen=True, tag="login"):
    api_key: str
    heartbeat_ms: IntervalMs  # the interval the client asks the venue to heartbeat at
    client: str = "commodex"

    def __repr__(self) -> str:  # the key is a secret
        return f"Login(api_key='***', heartbeat_ms={self.heartbeat_ms}, client={self.client!r})"


class LoginAck(VenueMessage, frozen=True, tag="login_ack"):
    session: str
    heartbeat_ms: IntervalMs  # the venue's heartbeat interval


class Heartbeat(VenueMessage, frozen=True, tag="heartbeat"):
    ts: Ts  # sender's clock, UTC ns


class Error(VenueMessage, frozen=True, tag="error"):
    code: str  # "auth_failed" (fatal), "not_logged_in", "unknown_symbol", "not_subscribed", "bad_request"
    message: str
    symbol: str = ""
    req_id: ReqId = 0


# -- subscriptions --------------------------------------------------------------------------------------

class Subscribe(VenueMessage, frozen=True, tag="subscribe"):
    req_id: ReqId
    symbols: list[Symbol]


class SubscribeAck(VenueMessage, frozen=True, tag="subscribe_ack"):
    req_id: ReqId
    symbols: list[Symbol]  # the accepted ones; each is followed by its snapshot


class Unsubscribe(VenueMessage, frozen=True, tag="unsubscribe"):
    req_id: ReqId
    symbols: list[Symbol]


class UnsubscribeAck(VenueMessage, frozen=True, tag="unsubscribe_ack"):
    req_id: ReqId
    symbols: list[Symbol]


class SnapshotRequest(VenueMessage, frozen=True, tag="snapshot_request"):
    req_id: ReqId
    symbol: Symbol


# -- market data ----------------------------------------------------------------------------------------

class SnapQuote(msgspec.Struct, frozen=True):
    """The best bid/offer as last set by incremental `seq`."""

    seq: Seq
    ts: Ts
    bid: Price
    ask: Price
    bid_qty: Qty
    ask_qty: Qty


class SnapTrade(msgspec.Struct, frozen=True):
    """The last trade, incremental `seq`."""

    seq: Seq
    ts: Ts
    px: Price
    qty: TradeQty
    side: AggressorCode = "N"


class Snapshot(VenueMessage, frozen=True, tag="snapshot"):
    """State of one symbol as of its incremental `seq` (the newest it published)."""

    symbol: Symbol
    seq: SnapSeq
    quote: SnapQuote | None = None
    trade: SnapTrade | None = None

    def to_quote(self, instrument_id: str, ts_recv: int, seq: int | None = None) -> QuoteTick | None:
        """The snapshot's quote as a tick (seq: override, e.g. 0 for an unsequenced state record)."""
        q = self.quote
        if q is None:
            return None
        return QuoteTick(instrument_id, fixed_from_decimal(q.bid), fixed_from_decimal(q.ask), q.bid_qty,
                         q.ask_qty, q.ts, ts_recv, q.seq if seq is None else seq)

    def to_trade(self, instrument_id: str, ts_recv: int) -> TradeTick | None:
        t = self.trade
        if t is None:
            return None
        return TradeTick(instrument_id, fixed_from_decimal(t.px), t.qty, t.ts, ts_recv, t.seq, _SIDE[t.side])


class TradeUpdate(VenueMessage, frozen=True, tag="trade"):
    """Incremental: a trade. Trades and quotes of a symbol share one seq stream."""

    symbol: Symbol
    seq: Seq
    ts: Ts
    px: Price
    qty: TradeQty
    side: AggressorCode = "N"

    def to_trade(self, instrument_id: str, ts_recv: int) -> TradeTick:
        return TradeTick(instrument_id, fixed_from_decimal(self.px), self.qty, self.ts, ts_recv, self.seq,
                         _SIDE[self.side])


class QuoteUpdate(VenueMessage, frozen=True, tag="quote"):
    """Incremental: a new best bid/offer (both sides, full sizes)."""

    symbol: Symbol
    seq: Seq
    ts: Ts
    bid: Price
    ask: Price
    bid_qty: Qty
    ask_qty: Qty

    def to_quote(self, instrument_id: str, ts_recv: int) -> QuoteTick:
        return QuoteTick(instrument_id, fixed_from_decimal(self.bid), fixed_from_decimal(self.ask), self.bid_qty,
                         self.ask_qty, self.ts, ts_recv, self.seq)


ServerMessage = LoginAck | SubscribeAck | UnsubscribeAck | Snapshot | TradeUpdate | QuoteUpdate | Heartbeat | Error
ClientMessage = Login | Subscribe | Unsubscribe | SnapshotRequest | Heartbeat

SERVER_DECODER = msgspec.json.Decoder(ServerMessage)
CLIENT_DECODER = msgspec.json.Decoder(ClientMessage)
ENCODER = msgspec.json.Encoder()

FATAL_ERRORS = frozenset({"auth_failed"})
# what decoding a frame can raise: msgspec raises UnicodeDecodeError (not DecodeError) for invalid UTF-8
# inside a JSON string
DECODE_ERRORS = (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError)


def encode(msg: VenueMessage) -> bytes:
    return ENCODER.encode(msg)


def trade_update(symbol: str, tick: TradeTick) -> TradeUpdate:
    """The venue message for a tick (simulator side)."""
    return TradeUpdate(symbol, tick.seq, tick.ts_event, decimal_from_fixed(tick.price), tick.size,
                       side_code(tick.aggressor))


def quote_update(symbol: str, tick: QuoteTick) -> QuoteUpdate:
    return QuoteUpdate(symbol, tick.seq, tick.ts_event, decimal_from_fixed(tick.bid), decimal_from_fixed(tick.ask),
                       tick.bid_size, tick.ask_size)
