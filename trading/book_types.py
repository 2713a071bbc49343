"""Vocabulary of the order book: codes as IntEnums (numba kernels use the ints) and the record layouts.

Prices on the wire are integers on the book's tick grid: the book works in ticks internally and takes/reports
prices as `ticks * tick_size` (BookConfig.tick_size; 1 = callers work in ticks directly). A price that is not a
multiple of tick_size is rejected (OFF_TICK). Quantities are positive integers.

Batches of commands and events are numpy structured arrays whose fields are all int64, so a batch is also a
plain (n, k) int64 matrix for the kernel (`as_matrix`) with no copy.
"""

from __future__ import annotations

from enum import IntEnum

import msgspec
import numpy as np

from market.config import Config

NO_OWNER = 0  # owner id 0 = anonymous: self-trade prevention never applies to it


class Side(IntEnum):
    BUY = 0
    SELL = 1


class OrderType(IntEnum):
    LIMIT = 0  # good till cancelled: matches, the rest rests
    MARKET = 1  # no price: matches what is there, the rest is cancelled (UNFILLED)
    IOC = 2  # immediate or cancel at a limit price
    FOK = 3  # fill the whole quantity now or reject (book untouched)
    POST_ONLY = 4  # rests only: rejected if it would trade on arrival


class Op(IntEnum):
    NEW = 0
    CANCEL = 1
    REPLACE = 2  # (order_id, price, qty): qty is the new open quantity


class StpPolicy(IntEnum):
    """Self-trade prevention: what happens when an incoming order meets a resting order of the same owner."""

    CANCEL_RESTING = 0  # the resting order is cancelled, the incoming one keeps matching
    CANCEL_INCOMING = 1  # the incoming order's remaining quantity is cancelled, nothing of it rests


class RejectReason(IntEnum):
    """Result of one command. Anything but OK leaves the book (orders, levels, known ids) untouched."""

    OK = 0
    BAD_COMMAND = 1  # unknown op, order type or side
    BAD_ORDER_ID = 2  # order ids are >= 0
    BAD_SIZE = 3  # quantity <= 0
    OFF_TICK = 4  # price not a multiple of tick_size
    DUPLICATE_ID = 5  # NEW with an id the book has seen before (live or closed)
    UNKNOWN_ORDER = 6  # cancel/replace of an id never accepted
    ORDER_FILLED = 7  # cancel/replace of an order that was fully filled
    ORDER_CANCELLED = 8  # cancel/replace of an order that was cancelled (by user, STP, or IOC expiry)
    POST_ONLY_WOULD_CROSS = 9  # post-only NEW (or replace of a post-only order) would trade
    FOK_UNFILLABLE = 10  # not enough matchable quantity within the limit for a fill-or-kill order
    PRICE_OUT_OF_BAND = 11  # a resting-capable order would make max-min resting price exceed max_span_ticks

    @property
    def label(self) -> str:
        return self.name.lower()


class EventKind(IntEnum):
    TRADE = 0
    CANCEL = 1  # unsolicited cancel: STP or the unfilled rest of IOC/market (user cancels are the command's OK)


class CancelReason(IntEnum):
    NONE = 0  # trades carry no reason
    STP_RESTING = 1  # resting order cancelled by self-trade prevention
    STP_INCOMING = 2  # incoming order's rest cancelled by self-trade prevention
    UNFILLED = 3  # rest of an IOC or market order


class OrderState(IntEnum):
    UNKNOWN = 0
    LIVE = 1
    FILLED = 2
    CANCELLED = 3


# One command. price is ignored for MARKET and CANCEL; side/otype/owner are ignored for CANCEL and REPLACE.
COMMAND_FIELDS = ("op", "otype", "side", "order_id", "price", "qty", "owner")
COMMAND_DTYPE = np.dtype([(f, np.int64) for f in COMMAND_FIELDS])

# One event. TRADE: taker_id/maker_id, price = maker's price, qty traded, maker_remaining after it.
# CANCEL: maker_id = the cancelled order (== taker_id when the incoming order's rest is cancelled),
# price = its limit price (0 for market orders), qty = quantity cancelled, maker_remaining = 0.
# cmd = index of the command in its batch (0 on the one-command path).
EVENT_FIELDS = ("cmd", "kind", "reason", "taker_side", "taker_id", "maker_id", "price", "qty", "maker_remaining")
EVENT_DTYPE = np.dtype([(f, np.int64) for f in EVENT_FIELDS])

# A resting order as dumped by snapshots: bids best->worst then asks best->worst, FIFO within a level.
RESTING_FIELDS = ("side", "price", "order_id", "qty", "owner")
RESTING_DTYPE = np.dtype([(f, np.int64) for f in RESTING_FIELDS])


def as_matrix(records: np.ndarray) -> np.ndarray:
    """(n,) all-int64 structured array -> (n, k) int64 view (no copy; makes a contiguous copy if needed)."""
    arr = np.ascontiguousarray(records)
    k = len(arr.dtype.names or ())
    return arr.view(np.int64).reshape(arr.shape[0], k)


def as_records(matrix: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """(n, k) int64 matrix -> (n,) structured view."""
    m = np.ascontiguousarray(matrix, dtype=np.int64)
    return m.view(dtype).reshape(m.shape[0])


def make_commands(n: int) -> np.ndarray:
    return np.zeros(n, dtype=COMMAND_DTYPE)


def command(op: Op, order_id: int, price: int = 0, qty: int = 0, side: Side = Side.BUY,
            otype: OrderType = OrderType.LIMIT, owner: int = NO_OWNER) -> np.ndarray:
    """A one-row command array (handy for journals and tests)."""
    c = make_commands(1)
    c[0] = (int(op), int(otype), int(side), order_id, price, qty, owner)
    return c


class BookConfig(Config, frozen=True):
    tick_size: int = 1  # price grid: prices are multiples of this (fixed-point ints or plain ticks when 1)
    stp: StpPolicy = StpPolicy.CANCEL_RESTING
    # price band: an order that could rest (LIMIT, POST_ONLY, replace to a new price) is rejected when
    # max - min over the resting prices and its own price would exceed this many ticks. It bounds the
    # memory of the numba book's dense level array (about 32 bytes x 2 x next_pow2(span) at worst).
    max_span_ticks: int = 1_000_000

    def __post_init__(self) -> None:
        if self.tick_size <= 0:
            raise ValueError("tick_size must be > 0")
        if not 1 <= self.max_span_ticks <= 1 << 26:
            raise ValueError("max_span_ticks must be in 1..2**26")


class Execution(msgspec.Struct, frozen=True):
    taker_id: int
    maker_id: int
    price: int
    qty: int
    maker_remaining: int
    taker_side: Side


class Cancel(msgspec.Struct, frozen=True):
    order_id: int
    price: int  # the order's limit price (0 for market orders)
    qty: int  # quantity cancelled
    reason: CancelReason


class CommandResult(msgspec.Struct, frozen=True):
    reason: RejectReason
    executions: list[Execution] = []
    cancels: list[Cancel] = []

    @property
    def ok(self) -> bool:
        return self.reason == RejectReason.OK

    @property
    def filled(self) -> int:
        return sum(e.qty for e in self.executions)


class RestingOrder(msgspec.Struct, frozen=True):
    order_id: int
    side: Side
    price: int
    qty: int
    owner: int


class Level(msgspec.Struct, frozen=True):
    price: int
    qty: int
    orders: int


def events_to_result(reason: int, events: np.ndarray) -> CommandResult:
    """Turn one command's (m, 9) int64 event rows into a CommandResult (the one-command path)."""
    if events.shape[0] == 0:
        return CommandResult(RejectReason(reason))
    execs: list[Execution] = []
    cancels: list[Cancel] = []
    for row in events.tolist():
        _, kind, why, tside, taker, maker, price, qty, mrem = row
        if kind == EventKind.TRADE:
            execs.append(Execution(taker, maker, price, qty, mrem, Side(tside)))
        else:
            cancels.append(Cancel(maker, price, qty, CancelReason(why)))
    return CommandResult(RejectReason(reason), execs, cancels)
