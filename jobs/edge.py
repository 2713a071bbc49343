"""The edge: typed ticks or wire messages in, one `TickColumns` batch plus dead letters out.

Rejected here (everything else goes on to jobs/validate.py): messages that do not decode or carry
mistyped fields ("malformed"), NaN/infinite prices ("nan_price"), non-integer sizes ("bad_size"), and
instruments not in the registry ("unknown_instrument"). Accepted rows keep their input order.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import msgspec
import numpy as np

from market.codec import decode_tick_or_dead_letter, encode
from market.columns import KIND_QUOTE, KIND_TRADE, Ingested, TickColumns
from market.events import DeadLetter, QuoteTick, TradeTick
from market.instruments import Registry
from market.rejects import DETAIL, Reason
from market.timeutil import now_ns

SOURCE = "edge"
_I64_MIN = -(2**63)
_I64_MAX = 2**63 - 1
_RAW_MAX = 4096

_COLUMNS = ("instrument", "kind", "ts_event", "ts_recv", "seq", "price", "size", "bid", "ask", "bid_size",
            "ask_size")


Message = TradeTick | QuoteTick | bytes | bytearray | memoryview | str


class _Reject(Exception):  # noqa: N818 - internal control flow, never escapes this module
    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _is_i64(x: object) -> bool:
    return type(x) is int and _I64_MIN <= x <= _I64_MAX


def _int_field(tick: TradeTick | QuoteTick, name: str) -> int:
    x = getattr(tick, name)
    if not _is_i64(x):
        raise _Reject(Reason.MALFORMED, f"{name} must be an int64, got {x!r}")
    return x  # type: ignore[no-any-return]


def _price_field(tick: TradeTick | QuoteTick, name: str) -> int:
    x = getattr(tick, name)
    if isinstance(x, float) and not math.isfinite(x):
        raise _Reject(Reason.NAN_PRICE, f"{name} is {x!r}")
    if not _is_i64(x):
        raise _Reject(Reason.MALFORMED, f"{name} must be a fixed-point int64, got {x!r}")
    return x  # type: ignore[no-any-return]


def _size_field(tick: TradeTick | QuoteTick, name: str) -> int:
    x = getattr(tick, name)
    if not _is_i64(x):
        raise _Reject(Reason.BAD_SIZE, f"{name} must be an integer, got {x!r}")
    return x  # type: ignore[no-any-return]


def _raw(msg: object) -> str:
    if isinstance(msg, TradeTick | QuoteTick):
        try:
            return encode(msg).decode()[:_RAW_MAX]
        except (TypeError, ValueError, OverflowError, msgspec.EncodeError):
            pass  # fields of a hand-built tick msgspec cannot encode: the repr still shows them
    return repr(msg)[:_RAW_MAX]


def ingest_ticks(ticks: Iterable[Message], registry: Registry, ts_recv_ns: int | None = None) -> Ingested:
    """Convert and screen one batch.

    ts_recv_ns: the receive time to stamp on every message (a live edge passes its clock at arrival); None
    keeps each tick's own ts_recv (replay). A wire message that does not decode has no ts_recv of its own:
    its dead letter gets ts_recv_ns, or the current clock when that is None.
    """
    if ts_recv_ns is not None and not _is_i64(ts_recv_ns):
        raise TypeError(f"ts_recv_ns must be an int64 of UTC ns, got {ts_recv_ns!r}")
    msgs = ticks if isinstance(ticks, list) else list(ticks)
    rows, dead = _screen(msgs, registry, ts_recv_ns, fast=True)
    try:
        table = np.array(rows, dtype=np.int64).reshape(len(rows), len(_COLUMNS))
    except OverflowError:  # the fast path does not range-check ints: redo with every field checked
        rows, dead = _screen(msgs, registry, ts_recv_ns, fast=False)
        table = np.array(rows, dtype=np.int64).reshape(len(rows), len(_COLUMNS))
    out = TickColumns.empty(len(rows))
    for j, name in enumerate(_COLUMNS):
        getattr(out, name)[:] = table[:, j]
    return Ingested(out, dead)


def _screen(msgs: list[Message], registry: Registry, ts_recv_ns: int | None,
            fast: bool) -> tuple[list[tuple[int, ...]], list[DeadLetter]]:
    index = {iid: i for i, iid in enumerate(registry.ids)}
    rows: list[tuple[int, ...]] = []
    dead: list[DeadLetter] = []
    for msg in msgs:
        tp = type(msg)
        # fast path (most ticks): every field a plain int, known instrument; int64 range is checked by numpy
        if fast and tp is TradeTick:
            iid, te, q, p, z = msg.instrument_id, msg.ts_event, msg.seq, msg.price, msg.size  # type: ignore[union-attr]
            tr = msg.ts_recv if ts_recv_ns is None else ts_recv_ns  # type: ignore[union-attr]
            if (type(iid) is str and type(te) is int and type(tr) is int and type(q) is int and type(p) is int
                    and type(z) is int):
                k = index.get(iid, -1)
                if k >= 0:
                    rows.append((k, KIND_TRADE, te, tr, q, p, z, 0, 0, 0, 0))
                    continue
        elif fast and tp is QuoteTick:
            iid, te, q = msg.instrument_id, msg.ts_event, msg.seq  # type: ignore[union-attr]
            b, a, bz, az = msg.bid, msg.ask, msg.bid_size, msg.ask_size  # type: ignore[union-attr]
            tr = msg.ts_recv if ts_recv_ns is None else ts_recv_ns  # type: ignore[union-attr]
            if (type(iid) is str and type(te) is int and type(tr) is int and type(q) is int and type(b) is int
                    and type(a) is int and type(bz) is int and type(az) is int):
                k = index.get(iid, -1)
                if k >= 0:
                    rows.append((k, KIND_QUOTE, te, tr, q, 0, 0, b, a, bz, az))
                    continue
        tick: object = msg
        if isinstance(msg, bytes | bytearray | memoryview | str):
            data = bytes(msg) if isinstance(msg, bytearray | memoryview) else msg
            tick = decode_tick_or_dead_letter(data, now_ns() if ts_recv_ns is None else ts_recv_ns, source="codec")
            if isinstance(tick, DeadLetter):
                dead.append(tick)
                continue
        if not isinstance(tick, TradeTick | QuoteTick):
            dead.append(DeadLetter(source=SOURCE, reason=Reason.MALFORMED.label,
                                   detail=f"not a tick: {type(tick).__name__}", raw=_raw(tick),
                                   ts_recv=now_ns() if ts_recv_ns is None else ts_recv_ns))
            continue
        try:
            rows.append(_checked_row(tick, registry, ts_recv_ns))
        except _Reject as r:
            iid = tick.instrument_id if isinstance(tick.instrument_id, str) else ""
            ts_recv = ts_recv_ns if ts_recv_ns is not None else (tick.ts_recv if _is_i64(tick.ts_recv) else 0)
            ts_event = tick.ts_event if _is_i64(tick.ts_event) else 0
            dead.append(DeadLetter(source=SOURCE, reason=r.reason.label, detail=r.detail, raw=_raw(tick),
                                   ts_recv=ts_recv, instrument_id=iid, ts_event=ts_event))
    return rows, dead


def _checked_row(tick: TradeTick | QuoteTick, registry: Registry, ts_recv_ns: int | None) -> tuple[int, ...]:
    """The row in _COLUMNS order, or _Reject naming the first bad field."""
    iid = tick.instrument_id
    if not isinstance(iid, str):
        raise _Reject(Reason.MALFORMED, f"instrument_id must be a string, got {iid!r}")
    k = registry.index_of(iid)
    if k < 0:
        raise _Reject(Reason.UNKNOWN_INSTRUMENT, f"{DETAIL[Reason.UNKNOWN_INSTRUMENT]}: {iid!r}")
    ts_event = _int_field(tick, "ts_event")
    ts_recv = _int_field(tick, "ts_recv") if ts_recv_ns is None else ts_recv_ns
    seq = _int_field(tick, "seq")
    if isinstance(tick, TradeTick):
        price, size = _price_field(tick, "price"), _size_field(tick, "size")
        bid = ask = bid_size = ask_size = 0
        kind = KIND_TRADE
    else:
        bid, ask = _price_field(tick, "bid"), _price_field(tick, "ask")
        bid_size, ask_size = _size_field(tick, "bid_size"), _size_field(tick, "ask_size")
        price = size = 0
        kind = KIND_QUOTE
    return (k, kind, ts_event, ts_recv, seq, price, size, bid, ask, bid_size, ask_size)
