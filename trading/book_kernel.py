"""Numba matching engine (pure-Python twin: trading/book_reference.py; facade: trading/book.py).

Layout, all plain numpy arrays so the state lives outside numba and the facade can grow it:
- `st` int64 scalars (S_* slots): window base, best bid/ask, lowest/highest live level, free list, counters.
- `pool` int64 (cap, 8), one 64-byte row per order slot (P_* columns). A level is a FIFO doubly linked list
  of slots; free slots form a singly linked list through P_NEXT.
- `lv` int64 (W, 4): price levels in a dense window, level index = tick - base. One array serves both sides
  (the book is never crossed, so a price has only bids or only asks). `bm` uint64: one bit per non-empty
  level, so finding the next best level skips 64 empty ticks per word.
- `ht` int64 (cap, 2): open-addressing id table (linear probing, never deletes): value = the live order's
  slot, or FILLED / CANCELLED once it is closed, so duplicate ids and cancel-after-fill are told apart.

A command first validates (rejects touch nothing), then checks that the arrays have room (pool slot, id
table load <= 1/2, window covers the price, event buffer can take a sweep of the whole book). If not, it
returns -1 with st[S_NEED] saying what to grow; the facade grows it and calls again from that command.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.cpython.unsafe.numbers import leading_zeros, trailing_zeros
from numba.extending import intrinsic

# st slots
S_BASE = 0  # tick of level index 0
S_W = 1  # window size in levels (power of two, >= 64)
S_BID = 2  # best bid level index, -1 = none
S_ASK = 3  # best ask level index, -1 = none
S_LO = 4  # lowest non-empty level index, -1 = empty book
S_HI = 5  # highest non-empty level index
S_FREE = 6  # head of the free slot list, -1 = pool full
S_NORD = 7  # resting orders
S_HTN = 8  # ids in the id table
S_HTSHIFT = 9  # 64 - log2(id table capacity)
S_NEV = 10  # events written to ev
S_TICK = 11  # tick size (price = tick * tick_size)
S_STP = 12  # StpPolicy
S_MAXSPAN = 13  # max_span_ticks
S_NEED = 14  # NEED_* when a command returned -1
S_NEEDTICK = 15  # the tick the window must cover (NEED_WINDOW)
S_LEN = 16

NEED_NONE = 0
NEED_POOL = 1
NEED_IDS = 2
NEED_WINDOW = 3
NEED_EVENTS = 4

# pool columns
P_ID = 0
P_TICK = 1
P_QTY = 2
P_OWNER = 3
P_NEXT = 4
P_PREV = 5
P_HT = 6  # position of the order's id in ht
P_META = 7  # bit 0 side, bit 1 post-only
P_LEN = 8

# level columns
L_HEAD = 0
L_TAIL = 1
L_QTY = 2
L_CNT = 3
L_LEN = 4

HT_EMPTY = -1  # key of an empty id-table slot (ids are >= 0)
HT_FILLED = -1  # value of a closed id
HT_CANCELLED = -2

# codes (ints of trading.book_types enums, spelled out so the kernel has no Python-object globals)
BUY = 0
SELL = 1
LIMIT = 0
MARKET = 1
IOC = 2
FOK = 3
POST_ONLY = 4
OP_NEW = 0
OP_CANCEL = 1
OP_REPLACE = 2
STP_CANCEL_RESTING = 0
OK = 0
BAD_COMMAND = 1
BAD_ORDER_ID = 2
BAD_SIZE = 3
OFF_TICK = 4
DUPLICATE_ID = 5
UNKNOWN_ORDER = 6
ORDER_FILLED = 7
ORDER_CANCELLED = 8
POST_ONLY_WOULD_CROSS = 9
FOK_UNFILLABLE = 10
PRICE_OUT_OF_BAND = 11
EV_TRADE = 0
EV_CANCEL = 1
CR_NONE = 0
CR_STP_RESTING = 1
CR_STP_INCOMING = 2
CR_UNFILLED = 3

MAX_TICK = 1 << 62  # resting prices beyond +-2**62 ticks are out of band (keeps tick arithmetic exact)
INT64_MAX = np.iinfo(np.int64).max
INT64_MIN = np.iinfo(np.int64).min
_GOLD = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing multiplier
_ALL = np.uint64(0xFFFFFFFFFFFFFFFF)
_ONE = np.uint64(1)
# helpers called from the hot loop: no reference counting on their array args, so LLVM inlines them
_LEAF: dict[str, Any] = {"cache": True, "_nrt": False}
_63 = np.uint64(63)


@intrinsic
def _rdtsc(typingctx):  # type: ignore[no-untyped-def]
    """CPU cycle counter (x86 rdtsc via llvm.readcyclecounter): a ~10-cycle clock for per-op latency."""
    sig = types.int64()

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        fnty = ir.FunctionType(ir.IntType(64), [])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.readcyclecounter")
        return builder.call(fn, [])

    return sig, codegen


@numba.njit(cache=True)
def cycles() -> int:
    return _rdtsc()  # type: ignore[no-any-return,call-arg]


# ---------------------------------------------------------------- id table


@numba.njit(**_LEAF)
def ht_pos(ht: np.ndarray, shift: int, key: int) -> np.int64:
    """Slot holding `key`, or the empty slot where it would go."""
    mask = ht.shape[0] - 1
    h = np.int64((np.uint64(key) * _GOLD) >> np.uint64(shift))
    while True:
        k = ht[h, 0]
        if k == key or k == HT_EMPTY:  # noqa: SIM109 (plain compares compile to the tightest code in numba)
            return h
        h = (h + 1) & mask


@numba.njit(cache=True)
def ht_rehash(old: np.ndarray, new: np.ndarray, shift: int, pool: np.ndarray) -> None:
    """Move every id into `new` (all keys HT_EMPTY) and repoint live orders' P_HT."""
    for i in range(old.shape[0]):
        k = old[i, 0]
        if k == HT_EMPTY:
            continue
        p = ht_pos(new, shift, k)
        new[p, 0] = k
        v = old[i, 1]
        new[p, 1] = v
        if v >= 0:
            pool[v, P_HT] = p


# ---------------------------------------------------------------- level bitmap


@numba.njit(**_LEAF)
def _scan_up(bm: np.ndarray, start: int, stop: int) -> int:
    """Lowest non-empty level in [start, stop], or -1."""
    if start > stop or stop < 0:
        return -1
    if start < 0:
        start = 0
    w = start >> 6
    last = stop >> 6
    x = bm[w] & (_ALL << np.uint64(start & 63))
    while x == 0:
        w += 1
        if w > last:
            return -1
        x = bm[w]
    i = (w << 6) + np.int64(trailing_zeros(x))  # type: ignore[call-arg]
    return i if i <= stop else -1


@numba.njit(**_LEAF)
def _scan_down(bm: np.ndarray, start: int, stop: int) -> int:
    """Highest non-empty level in [stop, start], or -1."""
    if start < stop or start < 0:
        return -1
    if stop < 0:
        stop = 0
    w = start >> 6
    first = stop >> 6
    x = bm[w] & (_ALL >> (_63 - np.uint64(start & 63)))
    while x == 0:
        w -= 1
        if w < first:
            return -1
        x = bm[w]
    i = (w << 6) + 63 - np.int64(leading_zeros(x))  # type: ignore[call-arg]
    return i if i >= stop else -1


@numba.njit(**_LEAF)
def _level_gone(st: np.ndarray, bm: np.ndarray, idx: int, is_bid: bool) -> None:
    """Level idx just became empty: clear its bit and move best/lo/hi past it."""
    bm[idx >> 6] &= ~(_ONE << np.uint64(idx & 63))
    lo = st[S_LO]
    hi = st[S_HI]
    if is_bid:
        if st[S_BID] == idx:
            st[S_BID] = _scan_down(bm, idx - 1, lo)
    elif st[S_ASK] == idx:
        st[S_ASK] = _scan_up(bm, idx + 1, hi)
    if lo == idx:
        st[S_LO] = _scan_up(bm, idx + 1, hi)
    if hi == idx:
        st[S_HI] = _scan_down(bm, idx - 1, lo)


@numba.njit(**_LEAF)
def _push_back(st: np.ndarray, pool: np.ndarray, lv: np.ndarray, bm: np.ndarray, idx: int, o: int,
               is_bid: bool) -> None:
    t = lv[idx, L_TAIL]
    pool[o, P_PREV] = t
    pool[o, P_NEXT] = -1
    if t < 0:
        lv[idx, L_HEAD] = o
        bm[idx >> 6] |= _ONE << np.uint64(idx & 63)
        if is_bid:
            if st[S_BID] < 0 or idx > st[S_BID]:
                st[S_BID] = idx
        elif st[S_ASK] < 0 or idx < st[S_ASK]:
            st[S_ASK] = idx
        if st[S_LO] < 0 or idx < st[S_LO]:
            st[S_LO] = idx
        if idx > st[S_HI]:
            st[S_HI] = idx
    else:
        pool[t, P_NEXT] = o
    lv[idx, L_TAIL] = o
    lv[idx, L_QTY] += pool[o, P_QTY]
    lv[idx, L_CNT] += 1


@numba.njit(**_LEAF)
def _unlink(pool: np.ndarray, lv: np.ndarray, idx: int, o: int) -> bool:
    """Take o out of its level; True if the level is now empty (its bit is still set)."""
    p = pool[o, P_PREV]
    n = pool[o, P_NEXT]
    if p < 0:
        lv[idx, L_HEAD] = n
    else:
        pool[p, P_NEXT] = n
    if n < 0:
        lv[idx, L_TAIL] = p
    else:
        pool[n, P_PREV] = p
    lv[idx, L_QTY] -= pool[o, P_QTY]
    c = lv[idx, L_CNT] - 1
    lv[idx, L_CNT] = c
    return c == 0


@numba.njit(**_LEAF)
def _free(st: np.ndarray, pool: np.ndarray, o: int) -> None:
    pool[o, P_QTY] = 0
    pool[o, P_NEXT] = st[S_FREE]
    st[S_FREE] = o
    st[S_NORD] -= 1


@numba.njit(**_LEAF)
def _emit(st: np.ndarray, ev: np.ndarray, cmd: int, kind: int, reason: int, tside: int, taker: int, maker: int,
          price: int, qty: int, mrem: int) -> None:
    k = st[S_NEV]
    ev[k, 0] = cmd
    ev[k, 1] = kind
    ev[k, 2] = reason
    ev[k, 3] = tside
    ev[k, 4] = taker
    ev[k, 5] = maker
    ev[k, 6] = price
    ev[k, 7] = qty
    ev[k, 8] = mrem
    st[S_NEV] = k + 1


# ---------------------------------------------------------------- commands
# The hot path is one function (process_batch); the helpers it calls are small njit functions compiled with
# _nrt=False: without reference counting on their array arguments LLVM inlines them, while numba-level inlining
# (inline="always") measured no faster and doubled compile time. An early version with a call per command
# stage (args + refcounts on ~6 arrays per call) ran 3x slower.


@numba.njit(**_LEAF)
def _fok_ok(st: np.ndarray, pool: np.ndarray, lv: np.ndarray, bm: np.ndarray, side: int, lim: int, need: int,
            owner: int) -> bool:
    """Would matching fill `need` within `lim`? The same walk as the matching loop, counting only (STP-aware)."""
    base = st[S_BASE]
    stp_resting = st[S_STP] == STP_CANCEL_RESTING
    buy = side == BUY
    a = st[S_ASK] if buy else st[S_BID]
    avail = 0
    while a >= 0:
        if (buy and base + a > lim) or (not buy and base + a < lim):
            return False
        if owner == 0:
            avail += lv[a, L_QTY]
            if avail >= need:
                return True
        else:
            o = lv[a, L_HEAD]
            while o >= 0:
                if pool[o, P_OWNER] == owner:
                    if not stp_resting:
                        return False
                else:
                    avail += pool[o, P_QTY]
                    if avail >= need:
                        return True
                o = pool[o, P_NEXT]
        a = _scan_up(bm, a + 1, st[S_HI]) if buy else _scan_down(bm, a - 1, st[S_LO])
    return False


@numba.njit(**_LEAF)
def _crosses(st: np.ndarray, side: int, t: int) -> bool:
    if side == BUY:
        a = st[S_ASK]
        return a >= 0 and st[S_BASE] + a <= t
    b = st[S_BID]
    return b >= 0 and st[S_BASE] + b >= t


@numba.njit(**_LEAF)
def _out_of_band(st: np.ndarray, t: int) -> bool:
    if t > MAX_TICK or t < -MAX_TICK:
        return True
    if st[S_NORD] == 0:
        return False
    lo = st[S_BASE] + st[S_LO]
    hi = st[S_BASE] + st[S_HI]
    return max(hi, t) - min(lo, t) > st[S_MAXSPAN]


@numba.njit(**_LEAF)
def _need(st: np.ndarray, what: int, t: int) -> int:
    st[S_NEED] = what
    st[S_NEEDTICK] = t
    return -1


@numba.njit(**_LEAF)
def _live_slot(st: np.ndarray, ht: np.ndarray, oid: int) -> int:
    """Slot of a live order (>= 0), or minus the reject reason."""
    if oid < 0:
        return -UNKNOWN_ORDER
    pos = ht_pos(ht, st[S_HTSHIFT], oid)
    if ht[pos, 0] != oid:
        return -UNKNOWN_ORDER
    v = ht[pos, 1]
    if v == HT_FILLED:
        return -ORDER_FILLED
    if v == HT_CANCELLED:
        return -ORDER_CANCELLED
    return v


@numba.njit(cache=True)
def process_batch(st: np.ndarray, pool: np.ndarray, lv: np.ndarray, bm: np.ndarray, ht: np.ndarray,
                  ev: np.ndarray, cmds: np.ndarray, start: int | np.int64, results: np.ndarray, lat: np.ndarray,
                  timed: bool | np.bool_) -> int:
    """Run cmds[start:] (an (n, 7) int64 matrix of COMMAND_FIELDS); results[i] = reason code.

    Returns the index of the first command not done (== n when all are done; else st[S_NEED] says what to
    grow and that command had no effect). With `timed`, lat[i] = cycles spent on command i.
    Each command: validate (a reject touches nothing) -> room checks -> take the incoming order out of the book
    if it is a moved one -> match -> rest / close it.
    """
    n = cmds.shape[0]
    t0 = 0
    for i in range(start, n):
        if timed:
            t0 = _rdtsc()  # type: ignore[call-arg]
        op = cmds[i, 0]
        otype = cmds[i, 1]
        side = cmds[i, 2]
        oid = cmds[i, 3]
        price = cmds[i, 4]
        qty = cmds[i, 5]
        owner = cmds[i, 6]
        r = OK
        while True:  # one pass; `break` ends the command with result r
            tick = st[S_TICK]
            base = st[S_BASE]
            o = -1  # slot of the incoming order when it is a moved resting order
            pos: int | np.int64 = 0  # id-table position of a NEW order
            if op == OP_REPLACE:
                o = _live_slot(st, ht, oid)
                if o < 0:
                    r = -o
                    break
                if qty <= 0:
                    r = BAD_SIZE
                    break
                if tick == 1:  # skip two 64-bit divisions in the common case
                    t = price
                elif price % tick != 0:
                    r = OFF_TICK
                    break
                else:
                    t = price // tick
                ot = pool[o, P_TICK]
                oq = pool[o, P_QTY]
                meta = pool[o, P_META]
                side = meta & 1
                owner = pool[o, P_OWNER]
                if t == ot:
                    idx = ot - base
                    if qty <= oq:  # size down (or same) keeps its place in the queue
                        pool[o, P_QTY] = qty
                        lv[idx, L_QTY] -= oq - qty
                    else:  # size up goes to the back of the queue
                        _unlink(pool, lv, idx, o)
                        pool[o, P_QTY] = qty
                        _push_back(st, pool, lv, bm, idx, o, side == BUY)
                    break
                if _out_of_band(st, t):
                    r = PRICE_OUT_OF_BAND
                    break
                if (meta & 2) != 0 and _crosses(st, side, t):
                    r = POST_ONLY_WOULD_CROSS
                    break
                if t - base < 0 or t - base >= st[S_W]:
                    r = _need(st, NEED_WINDOW, t)
                    break
                if ev.shape[0] - st[S_NEV] < st[S_NORD] + 2:
                    r = _need(st, NEED_EVENTS, 0)
                    break
                # a new price loses priority: leave the level, then match as a taker
                idx = ot - base
                if _unlink(pool, lv, idx, o):
                    _level_gone(st, bm, idx, side == BUY)
                otype = LIMIT
                out_px = price
            elif op == OP_NEW:
                if (side != BUY and side != SELL) or otype < LIMIT or otype > POST_ONLY:
                    r = BAD_COMMAND
                    break
                if oid < 0:
                    r = BAD_ORDER_ID
                    break
                if qty <= 0:
                    r = BAD_SIZE
                    break
                if otype == MARKET:
                    t = INT64_MAX if side == BUY else INT64_MIN
                    out_px = 0
                else:
                    if tick == 1:
                        t = price
                    elif price % tick != 0:
                        r = OFF_TICK
                        break
                    else:
                        t = price // tick
                    out_px = price
                pos = ht_pos(ht, st[S_HTSHIFT], oid)
                if ht[pos, 0] == oid:
                    r = DUPLICATE_ID
                    break
                rests = otype == LIMIT or otype == POST_ONLY  # noqa: SIM109
                if rests and _out_of_band(st, t):
                    r = PRICE_OUT_OF_BAND
                    break
                if otype == POST_ONLY and _crosses(st, side, t):
                    r = POST_ONLY_WOULD_CROSS
                    break
                if otype == FOK and not _fok_ok(st, pool, lv, bm, side, t, qty, owner):
                    r = FOK_UNFILLABLE
                    break
                # room checks (nothing has changed yet, so the facade can grow and call again)
                if (st[S_HTN] + 1) * 2 > ht.shape[0]:
                    r = _need(st, NEED_IDS, 0)
                    break
                if rests:
                    if st[S_FREE] < 0:
                        r = _need(st, NEED_POOL, 0)
                        break
                    if t - base < 0 or t - base >= st[S_W]:
                        r = _need(st, NEED_WINDOW, t)
                        break
                if ev.shape[0] - st[S_NEV] < st[S_NORD] + 2:
                    r = _need(st, NEED_EVENTS, 0)
                    break
                ht[pos, 0] = oid
                st[S_HTN] += 1
            elif op == OP_CANCEL:
                o = _live_slot(st, ht, oid)
                if o < 0:
                    r = -o
                    break
                idx = pool[o, P_TICK] - base
                if _unlink(pool, lv, idx, o):
                    _level_gone(st, bm, idx, (pool[o, P_META] & 1) == BUY)
                ht[pool[o, P_HT], 1] = HT_CANCELLED
                _free(st, pool, o)
                break
            else:
                r = BAD_COMMAND
                break

            # ---- match the incoming order (NEW, or a moved order in slot o) against the other side up to t
            q = qty
            stopped = False
            if otype != POST_ONLY:
                stp_resting = st[S_STP] == STP_CANCEL_RESTING
                buy = side == BUY
                while q > 0:
                    if buy:
                        a = st[S_ASK]
                        if a < 0 or base + a > t:
                            break
                    else:
                        a = st[S_BID]
                        if a < 0 or base + a < t:
                            break
                    px = (base + a) * tick
                    m = lv[a, L_HEAD]
                    while m >= 0:
                        nxt = pool[m, P_NEXT]
                        mq = pool[m, P_QTY]
                        self_trade = owner != 0 and pool[m, P_OWNER] == owner
                        if self_trade:
                            if not stp_resting:
                                stopped = True
                                break
                            _emit(st, ev, i, EV_CANCEL, CR_STP_RESTING, side, oid, pool[m, P_ID], px, mq, 0)
                        elif q < mq:
                            pool[m, P_QTY] = mq - q
                            lv[a, L_QTY] -= q
                            _emit(st, ev, i, EV_TRADE, CR_NONE, side, oid, pool[m, P_ID], px, q, mq - q)
                            q = 0
                            break
                        else:
                            _emit(st, ev, i, EV_TRADE, CR_NONE, side, oid, pool[m, P_ID], px, mq, 0)
                            q -= mq
                        # m leaves the book (filled, or cancelled by STP): pop it off the head of the level
                        ht[pool[m, P_HT], 1] = HT_CANCELLED if self_trade else HT_FILLED
                        lv[a, L_HEAD] = nxt
                        if nxt >= 0:
                            pool[nxt, P_PREV] = -1
                        else:
                            lv[a, L_TAIL] = -1
                        lv[a, L_QTY] -= mq
                        lv[a, L_CNT] -= 1
                        _free(st, pool, m)
                        m = nxt
                        if q == 0:
                            break
                    if lv[a, L_CNT] == 0:
                        _level_gone(st, bm, a, not buy)
                    if stopped:
                        break

            # ---- close or rest the incoming order
            if q == 0 or stopped or otype == MARKET or otype == IOC or otype == FOK:  # noqa: SIM109
                if q > 0:
                    _emit(st, ev, i, EV_CANCEL, CR_STP_INCOMING if stopped else CR_UNFILLED, side, oid, oid, out_px,
                          q, 0)
                state = HT_FILLED if q == 0 else HT_CANCELLED
                if o >= 0:
                    ht[pool[o, P_HT], 1] = state
                    _free(st, pool, o)
                else:
                    ht[pos, 1] = state
                break
            if o < 0:  # a new resting order takes a slot
                o = st[S_FREE]
                st[S_FREE] = pool[o, P_NEXT]
                st[S_NORD] += 1
                pool[o, P_ID] = oid
                pool[o, P_OWNER] = owner
                pool[o, P_HT] = pos
                pool[o, P_META] = side | (2 if otype == POST_ONLY else 0)
                ht[pos, 1] = o
            pool[o, P_TICK] = t
            pool[o, P_QTY] = q
            _push_back(st, pool, lv, bm, t - base, o, side == BUY)
            break
        if r < 0:
            return i
        results[i] = r
        if timed:
            lat[i] = _rdtsc() - t0  # type: ignore[call-arg]
    return n


@numba.njit(cache=True)
def process_one(st: np.ndarray, pool: np.ndarray, lv: np.ndarray, bm: np.ndarray, ht: np.ndarray, ev: np.ndarray,
                buf: np.ndarray, res: np.ndarray, op: int, otype: int, side: int, oid: int, price: int, qty: int,
                owner: int) -> int:
    """One command from Python (buf: (2, 7) int64 and res: (1,) int8 scratch): events restart at ev[0].

    Returns reason code + 256 * events written, or -1 when the arrays must grow first (call again afterwards).
    """
    buf[0, 0] = op
    buf[0, 1] = otype
    buf[0, 2] = side
    buf[0, 3] = oid
    buf[0, 4] = price
    buf[0, 5] = qty
    buf[0, 6] = owner
    st[S_NEV] = 0
    if process_batch(st, pool, lv, bm, ht, ev, buf[:1], np.int64(0), res, buf[1], np.bool_(False)) == 0:
        return -1
    return res[0] + (st[S_NEV] << 8)


# ---------------------------------------------------------------- read-only views


@numba.njit(cache=True)
def dump_resting(st: np.ndarray, pool: np.ndarray, lv: np.ndarray, bm: np.ndarray) -> np.ndarray:
    """(nord, 5) rows of RESTING_FIELDS: bids best->worst, then asks best->worst, FIFO within a level."""
    out = np.empty((st[S_NORD], 5), np.int64)
    base = st[S_BASE]
    tick = st[S_TICK]
    k = 0
    for side in (BUY, SELL):
        a = st[S_BID] if side == BUY else st[S_ASK]
        while a >= 0:
            o = lv[a, L_HEAD]
            while o >= 0:
                out[k, 0] = side
                out[k, 1] = (base + a) * tick
                out[k, 2] = pool[o, P_ID]
                out[k, 3] = pool[o, P_QTY]
                out[k, 4] = pool[o, P_OWNER]
                k += 1
                o = pool[o, P_NEXT]
            a = _scan_down(bm, a - 1, st[S_LO]) if side == BUY else _scan_up(bm, a + 1, st[S_HI])
    return out[:k]


@numba.njit(cache=True)
def depth(st: np.ndarray, lv: np.ndarray, bm: np.ndarray, side: int, n: int) -> np.ndarray:
    """Top n levels of one side: (k, 3) rows of (price, qty, orders), best first."""
    out = np.empty((max(n, 0), 3), np.int64)
    k = 0
    a = st[S_BID] if side == BUY else st[S_ASK]
    while a >= 0 and k < n:
        out[k, 0] = (st[S_BASE] + a) * st[S_TICK]
        out[k, 1] = lv[a, L_QTY]
        out[k, 2] = lv[a, L_CNT]
        k += 1
        a = _scan_down(bm, a - 1, st[S_LO]) if side == BUY else _scan_up(bm, a + 1, st[S_HI])
    return out[:k]


@numba.njit(cache=True)
def level_orders(st: np.ndarray, pool: np.ndarray, lv: np.ndarray, side: int, t: int) -> np.ndarray:
    """Orders of `side` resting at tick t, FIFO: (k, 5) RESTING_FIELDS rows."""
    idx = t - st[S_BASE]
    if idx < 0 or idx >= st[S_W]:
        return np.empty((0, 5), np.int64)
    out = np.empty((lv[idx, L_CNT], 5), np.int64)
    k = 0
    o = lv[idx, L_HEAD]
    while o >= 0:
        if (pool[o, P_META] & 1) == side:
            out[k, 0] = side
            out[k, 1] = t * st[S_TICK]
            out[k, 2] = pool[o, P_ID]
            out[k, 3] = pool[o, P_QTY]
            out[k, 4] = pool[o, P_OWNER]
            k += 1
        o = pool[o, P_NEXT]
    return out[:k]


@numba.njit(cache=True)
def lookup(st: np.ndarray, pool: np.ndarray, ht: np.ndarray, oid: int) -> np.ndarray:
    """[state (OrderState int), side, price, qty, owner] of an id."""
    out = np.zeros(5, np.int64)
    if oid < 0:
        return out
    pos = ht_pos(ht, st[S_HTSHIFT], oid)
    if ht[pos, 0] != oid:
        return out
    v = ht[pos, 1]
    if v == HT_FILLED:
        out[0] = 2
    elif v == HT_CANCELLED:
        out[0] = 3
    else:
        out[0] = 1
        out[1] = pool[v, P_META] & 1
        out[2] = pool[v, P_TICK] * st[S_TICK]
        out[3] = pool[v, P_QTY]
        out[4] = pool[v, P_OWNER]
    return out
