"""Batch fast path of the ICE-style protocol: a byte scanner for in-order trade/quote updates (numba kernel,
pure-Python reference of the same function).

`scan_updates` walks a batch of frames (one byte buffer + frame offsets) and writes each frame straight into
TickColumns arrays, as long as the frame is a plain JSON object that the typed decoder (feeds.ice.schemas)
would accept as a TradeUpdate/QuoteUpdate with the same values, its symbol is subscribed, and its seq is the
one its live stream expects. It stops at the first frame that is anything else and returns that frame's
index: the caller hands that frame to the exact per-frame path (msgspec decode, sequencer, dead letters)
and resumes the scan after it. So the fast path never decides a rejection; it only recognizes the common
case, and a frame it is unsure of (whitespace, escapes, non-ASCII, unknown or repeated keys, numbers
outside 0..2**63-1, a price not matching the Price pattern, ...) always takes the exact path.
"""

from __future__ import annotations

import numba
import numpy as np

KIND_TRADE = 0  # market.columns.KIND_TRADE
KIND_QUOTE = 1  # market.columns.KIND_QUOTE
SIDE_NONE, SIDE_BUY, SIDE_SELL = 0, 1, 2  # aggressor codes of the `aggressor` output
_SAFE_DIGITS = 18  # this many decimal digits always fit int64; a longer number is checked digit by digit
_I64_MAX = 2**63 - 1
_PRICE_DIGITS = 9


def _key(name: bytes) -> int:
    """A key of at most 8 bytes packed little-endian into one int (compared in one step in the kernel)."""
    return int.from_bytes(name, "little")


K_TYPE, K_SYMBOL, K_SEQ, K_TS = _key(b"type"), _key(b"symbol"), _key(b"seq"), _key(b"ts")
K_PX, K_QTY, K_SIDE = _key(b"px"), _key(b"qty"), _key(b"side")
K_BID, K_ASK, K_BID_QTY, K_ASK_QTY = _key(b"bid"), _key(b"ask"), _key(b"bid_qty"), _key(b"ask_qty")
V_TRADE, V_QUOTE = _key(b"trade"), _key(b"quote")
# one bit per field, to catch repeats and check completeness
F_TYPE, F_SYMBOL, F_SEQ, F_TS, F_PX, F_QTY, F_SIDE, F_BID, F_ASK, F_BID_QTY, F_ASK_QTY = (1 << i for i in range(11))
TRADE_REQUIRED = F_TYPE | F_SYMBOL | F_SEQ | F_TS | F_PX | F_QTY
TRADE_ALLOWED = TRADE_REQUIRED | F_SIDE
QUOTE_REQUIRED = F_TYPE | F_SYMBOL | F_SEQ | F_TS | F_BID | F_ASK | F_BID_QTY | F_ASK_QTY
_POW10 = np.array([10**k for k in range(_PRICE_DIGITS + 1)], dtype=np.int64)


def scan_updates_py(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, begin: int, sym_bytes: np.ndarray,
                    sym_off: np.ndarray, sym_instrument: np.ndarray, expected: np.ndarray,
                    instrument: np.ndarray, kind: np.ndarray, ts_event: np.ndarray, seq: np.ndarray,
                    price: np.ndarray, size: np.ndarray, bid: np.ndarray, ask: np.ndarray, bid_size: np.ndarray,
                    ask_size: np.ndarray, aggressor: np.ndarray, stream: np.ndarray) -> int:
    """Scan frames begin.. of `buf` (frame i = buf[starts[i]:ends[i]]); return the index of the first frame
    not taken (len(starts) when all were).

    Subscribed symbols: symbol j = sym_bytes[sym_off[j]:sym_off[j + 1]], registry index sym_instrument[j],
    next expected seq expected[j] (-1: the stream is not live, every update of it takes the exact path);
    `expected` is advanced in place. Row i of the outputs is written for every frame taken (prices fixed
    point 1e-9; the fields of the other kind are 0; stream[i] = j).
    """
    n_frames = starts.shape[0]
    n_sym = sym_off.shape[0] - 1
    for i in range(begin, n_frames):
        p = starts[i]
        end = ends[i]
        if end - p < 2 or buf[p] != 123 or buf[end - 1] != 125:  # "{" ... "}"
            return i
        p += 1
        seen = 0
        tag = 0
        s_start = 0
        s_len = 0
        v_seq = 0
        v_ts = 0
        v_p1 = 0  # px or bid
        v_p2 = 0  # ask
        v_q1 = 0  # qty or bid_qty
        v_q2 = 0  # ask_qty
        side = SIDE_NONE
        ok = True
        while ok:
            bit = 0
            # key: a short ASCII string without escapes
            if buf[p] != 34:
                ok = False
                break
            p += 1
            k = 0
            shift = 0
            while p < end and buf[p] != 34:
                c = buf[p]
                if shift >= 64 or c < 32 or c > 126 or c == 92:
                    ok = False
                    break
                k |= int(c) << shift
                shift += 8
                p += 1
            if not ok or p + 1 >= end or buf[p + 1] != 58:  # closing quote, then ":"
                ok = False
                break
            p += 2
            # value: a string (no escapes, printable ASCII) or a non-negative integer without leading zeros
            is_str = buf[p] == 34
            v_start = p + 1 if is_str else p
            num = 0
            if is_str:
                p += 1
                while p < end and buf[p] != 34:
                    c = buf[p]
                    if c < 32 or c > 126 or c == 92:
                        ok = False
                        break
                    p += 1
                if not ok or p >= end:
                    ok = False
                    break
                v_len = p - v_start
                p += 1
            else:
                while p < end and 48 <= buf[p] <= 57:
                    d = int(buf[p]) - 48
                    if p - v_start >= _SAFE_DIGITS and num > (_I64_MAX - d) // 10:  # would pass int64
                        ok = False
                        break
                    num = num * 10 + d
                    p += 1
                v_len = p - v_start
                if not ok or v_len == 0 or (v_len > 1 and buf[v_start] == 48):
                    ok = False
                    break
            # which field
            if k in (K_TYPE, K_SIDE):
                if not is_str or v_len > 8:
                    ok = False
                    break
                code = 0
                for j in range(v_len):
                    code |= int(buf[v_start + j]) << (8 * j)
                if k == K_TYPE:
                    bit = F_TYPE
                    tag = code
                else:
                    bit = F_SIDE
                    if v_len != 1:
                        ok = False
                        break
                    if code == 66:  # "B"
                        side = SIDE_BUY
                    elif code == 83:  # "S"
                        side = SIDE_SELL
                    elif code == 78:  # "N"
                        side = SIDE_NONE
                    else:
                        ok = False
                        break
            elif k == K_SYMBOL:
                if not is_str:
                    ok = False
                    break
                bit = F_SYMBOL
                s_start = v_start
                s_len = v_len
            elif k in (K_SEQ, K_TS, K_QTY, K_BID_QTY, K_ASK_QTY):
                if is_str:
                    ok = False
                    break
                if k == K_SEQ:
                    bit = F_SEQ
                    v_seq = num
                elif k == K_TS:
                    bit = F_TS
                    v_ts = num
                elif k == K_QTY:
                    bit = F_QTY
                    v_q1 = num
                elif k == K_BID_QTY:
                    bit = F_BID_QTY
                    v_q1 = num
                else:
                    bit = F_ASK_QTY
                    v_q2 = num
            elif k in (K_PX, K_BID, K_ASK):
                # Price: ^-?[0-9]{1,9}(\.[0-9]{1,9})?$ -> exact fixed point
                if not is_str:
                    ok = False
                    break
                q = v_start
                q_end = v_start + v_len
                neg = q < q_end and buf[q] == 45
                if neg:
                    q += 1
                whole = 0
                nd = 0
                while q < q_end and 48 <= buf[q] <= 57:
                    whole = whole * 10 + (int(buf[q]) - 48)
                    nd += 1
                    q += 1
                if nd == 0 or nd > _PRICE_DIGITS:
                    ok = False
                    break
                frac = 0
                nf = 0
                if q < q_end:
                    if buf[q] != 46:
                        ok = False
                        break
                    q += 1
                    while q < q_end and 48 <= buf[q] <= 57:
                        frac = frac * 10 + (int(buf[q]) - 48)
                        nf += 1
                        q += 1
                    if nf == 0 or nf > _PRICE_DIGITS or q != q_end:
                        ok = False
                        break
                value = whole * 1_000_000_000 + frac * int(_POW10[_PRICE_DIGITS - nf])
                if neg:
                    value = -value
                if k == K_PX:
                    bit = F_PX
                    v_p1 = value
                elif k == K_BID:
                    bit = F_BID
                    v_p1 = value
                else:
                    bit = F_ASK
                    v_p2 = value
            else:  # a key the typed decoder would ignore or reject: let it decide
                ok = False
                break
            if seen & bit:
                ok = False
                break
            seen |= bit
            # "," and the next key, or the closing "}" as the frame's last byte
            if p == end - 1:
                break
            if buf[p] != 44:
                ok = False
                break
            p += 1
        if not ok:
            return i
        if tag == V_TRADE:
            if seen & TRADE_REQUIRED != TRADE_REQUIRED or seen & ~TRADE_ALLOWED or v_q1 < 1:
                return i
            knd = KIND_TRADE
        elif tag == V_QUOTE:
            if seen != QUOTE_REQUIRED:
                return i
            knd = KIND_QUOTE
        else:
            return i
        if v_seq < 1 or s_len < 1:
            return i
        sym = -1
        for j in range(n_sym):
            a = sym_off[j]
            if sym_off[j + 1] - a == s_len:
                same = True
                for t in range(s_len):
                    if sym_bytes[a + t] != buf[s_start + t]:
                        same = False
                        break
                if same:
                    sym = j
                    break
        if sym < 0 or expected[sym] != v_seq:  # unknown/unsubscribed symbol, stream not live, or out of order
            return i
        expected[sym] = v_seq + 1
        instrument[i] = sym_instrument[sym]
        kind[i] = knd
        ts_event[i] = v_ts
        seq[i] = v_seq
        stream[i] = sym
        if knd == KIND_TRADE:
            price[i] = v_p1
            size[i] = v_q1
            bid[i] = 0
            ask[i] = 0
            bid_size[i] = 0
            ask_size[i] = 0
            aggressor[i] = side
        else:
            price[i] = 0
            size[i] = 0
            bid[i] = v_p1
            ask[i] = v_p2
            bid_size[i] = v_q1
            ask_size[i] = v_q2
            aggressor[i] = SIDE_NONE
    return n_frames


scan_updates = numba.njit(cache=True, nogil=True)(scan_updates_py)
