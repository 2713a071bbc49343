"""The JSON document of the MCX-style polling endpoint as msgspec Structs (see feeds/mcx/README.md).

One GET returns the current state of every requested symbol: top of book, last trade and cumulative session
volume, each stamped with the symbol's venue seq (quotes and trades of a symbol share one seq stream). The
field constraints are the venue contract, checked while decoding, as for the ICE feed: prices are decimal
strings in the instrument's quoted unit (GOLD: INR per 10 g, COTTONCNDY: INR per candy, CRUDEOIL: INR per
bbl), at most 9+9 digits so the exact fixed point fits int64; seqs >= 1; timestamps UTC ns. Unknown extra
fields are ignored.

The envelope keeps each entry as raw JSON (`msgspec.Raw`) and the protocol decodes entries one by one, so a
bad entry dead-letters only itself, with its own bytes.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from feeds.common.wire_types import (  # the venue-neutral decimal-string price contract
    AggressorCode,
    Price,
    Qty,
    Seq,
    SnapSeq,
    Symbol,
    TradeQty,
    Ts,
    fixed_from_decimal,
)
from market.events import QuoteTick, Side, TradeTick

Currency = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}\Z")]
Unit = Annotated[str, msgspec.Meta(min_length=1, max_length=16)]
SessionId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]

_SIDE = {"B": Side.BUY, "S": Side.SELL, "N": Side.NONE}


class McxTopOfBook(msgspec.Struct, frozen=True):
    """Best bid/offer as last set by the symbol's update `seq`."""

    seq: Seq
    ts: Ts
    bid: Price
    ask: Price
    bid_qty: Qty
    ask_qty: Qty


class McxLastTrade(msgspec.Struct, frozen=True):
    """The newest trade, update `seq`."""

    seq: Seq
    ts: Ts
    px: Price
    qty: TradeQty
    side: AggressorCode = "N"


class McxQuote(msgspec.Struct, frozen=True):
    """One symbol's state as of its newest update `seq` (0: nothing published in this session yet)."""

    symbol: Symbol
    currency: Currency  # price currency, checked against the registry ("INR")
    unit: Unit  # quote unit, checked against the registry ("10g", "candy", "bbl")
    seq: SnapSeq
    volume: Qty = 0  # cumulative traded quantity of the session (includes last_trade)
    trades: Qty = 0  # cumulative number of trades of the session
    quote: McxTopOfBook | None = None
    last_trade: McxLastTrade | None = None

    def to_quote(self, instrument_id: str, ts_recv: int, seq: int) -> QuoteTick | None:
        q = self.quote
        if q is None:
            return None
        return QuoteTick(instrument_id, fixed_from_decimal(q.bid), fixed_from_decimal(q.ask), q.bid_qty, q.ask_qty,
                         q.ts, ts_recv, seq)

    def to_trade(self, instrument_id: str, ts_recv: int, size: int, seq: int) -> TradeTick | None:
        """The trades since the previous poll as one tick: the last trade's price, time and side, with `size`
        (the caller's volume delta) so bar volumes stay exact even though single trades were conflated."""
        t = self.last_trade
        if t is None:
            return None
        return TradeTick(instrument_id, fixed_from_decimal(t.px), size, t.ts, ts_recv, seq, _SIDE[t.side])


class McxQuotes(msgspec.Struct, frozen=True):
    """The response document of GET <path>?symbols=..."""

    venue: Literal["MCX"]
    session: SessionId  # the venue's trading session; a new one resets volumes and may restart seqs
    as_of: Ts  # when the venue rendered the document
    quotes: list[msgspec.Raw]  # McxQuote each, decoded one by one


PAYLOAD_DECODER = msgspec.json.Decoder(McxQuotes)
QUOTE_DECODER = msgspec.json.Decoder(McxQuote)
ENCODER = msgspec.json.Encoder()
# msgspec raises UnicodeDecodeError (not DecodeError) for invalid UTF-8 inside a JSON string
DECODE_ERRORS = (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError)


def encode_quotes(session: str, as_of: int, quotes: list[McxQuote]) -> bytes:
    """The response body (simulator side)."""
    return ENCODER.encode(McxQuotes("MCX", session, as_of, [msgspec.Raw(ENCODER.encode(q)) for q in quotes]))
