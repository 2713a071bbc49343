"""Batch fast path of the FIX splitter: frame, checksum and tokenize whole well-formed messages in one pass
(numba kernel, pure-Python reference of the same function).

`scan_messages` walks a byte buffer from `pos`, skipping separator bytes, and records every message that is
complete and clean by the rules of feeds.fix.codec: "8=FIX..<SOH>9=<1-9 digits><SOH>" header, BodyLength
landing exactly on "10=", three CheckSum digits + SOH equal to the byte sum, a body of canonical
"tag=value<SOH>" fields (tag 1..9 digits without a leading zero, value non-empty) starting with MsgType (35),
no "8=FIX" inside the body, at most max_message_bytes long, and a MsgSeqNum (34) of ASCII digits. It stops at
the first byte that does not start such a message and returns that position: the codec's exact path takes
the item there (a dead letter, a message it must wait for, ...) and the scan resumes after it. So the fast
path never decides a rejection. BeginString membership and SendingTime are checked by the caller.
"""

from __future__ import annotations

import numba
import numpy as np

SOH = 1
_MAX_BEGIN = 32  # "FIX" + up to 29 bytes, as codec._HEADER_RE
_MAX_BODY_LENGTH_DIGITS = 9
_MAX_TAG_DIGITS = 9
# header fields reported by position (-1 = absent; the last occurrence wins, as in codec._message)
HDR_SEQ, HDR_SENDING, HDR_SENDER, HDR_TARGET, HDR_POSS_DUP = range(5)
_HDR_TAGS = (34, 52, 49, 56, 43)


def scan_messages_py(buf: np.ndarray, pos: int, max_message_bytes: int, is_sep: np.ndarray,
                     msg: np.ndarray, hdr: np.ndarray, ftag: np.ndarray, fstart: np.ndarray,
                     fend: np.ndarray) -> tuple[int, int, int]:
    """Returns (messages, stop position, separator bytes skipped).

    msg[k] = (start, end, hdr_end, decl_end, body_length, checksum, begin_end, first_field, n_fields);
    hdr[k] = field index of the last MsgSeqNum, SendingTime, SenderCompID, TargetCompID, PossDupFlag or -1;
    field j = tag ftag[j], value buf[fstart[j]:fend[j]]. Output capacity: len(msg) messages, len(ftag) fields
    (a full buffer of either stops the scan early, which is fine: the caller calls again).
    """
    n = buf.shape[0]
    k = 0
    nf = 0
    seps = 0
    max_msgs = msg.shape[0]
    max_fields = ftag.shape[0]
    while pos < n:
        if is_sep[buf[pos]]:
            seps += 1
            pos += 1
            continue
        if k >= max_msgs:
            break
        p = pos
        # "8=FIX" .. SOH
        if p + 5 > n or buf[p] != 56 or buf[p + 1] != 61 or buf[p + 2] != 70 or buf[p + 3] != 73 or buf[p + 4] != 88:
            break
        q = p + 5
        lim = min(n, p + 2 + _MAX_BEGIN + 1)
        while q < lim and buf[q] != SOH:
            q += 1
        if q >= lim or buf[q] != SOH:
            break
        begin_end = q
        # "9=" digits SOH
        q += 1
        if q + 2 > n or buf[q] != 57 or buf[q + 1] != 61:
            break
        q += 2
        body_len = 0
        nd = 0
        while q < n and 48 <= buf[q] <= 57 and nd < _MAX_BODY_LENGTH_DIGITS + 1:
            body_len = body_len * 10 + (int(buf[q]) - 48)
            nd += 1
            q += 1
        if nd == 0 or nd > _MAX_BODY_LENGTH_DIGITS or q >= n or buf[q] != SOH:
            break
        hdr_end = q + 1
        decl_end = hdr_end + body_len
        end = decl_end + 7
        if end > n or end - p > max_message_bytes or body_len < 4:
            break
        if buf[decl_end] != 49 or buf[decl_end + 1] != 48 or buf[decl_end + 2] != 61 or buf[end - 1] != SOH:
            break
        declared = 0
        ok = True
        for j in range(decl_end + 3, decl_end + 6):
            c = buf[j]
            if c < 48 or c > 57:
                ok = False
                break
            declared = declared * 10 + (int(c) - 48)
        if not ok or buf[decl_end - 1] != SOH:
            break
        total = 0
        for j in range(p, decl_end):
            total += int(buf[j])
        if total & 0xFF != declared:
            break
        # no "8=FIX" anywhere in the body (the codec's rules on embedded message starts decide those)
        for j in range(hdr_end, decl_end - 4):
            if buf[j] == 56 and buf[j + 1] == 61 and buf[j + 2] == 70 and buf[j + 3] == 73 and buf[j + 4] == 88:
                ok = False
                break
        if not ok:
            break
        # body: canonical fields, MsgType first
        first = nf
        h0 = -1
        h1 = -1
        h2 = -1
        h3 = -1
        h4 = -1
        q = hdr_end
        while q < decl_end:
            if nf >= max_fields:
                ok = False
                break
            c = buf[q]
            if c < 49 or c > 57:
                ok = False
                break
            tag = 0
            nd = 0
            while q < decl_end and 48 <= buf[q] <= 57:
                tag = tag * 10 + (int(buf[q]) - 48)
                nd += 1
                q += 1
            if nd > _MAX_TAG_DIGITS or q >= decl_end or buf[q] != 61:
                ok = False
                break
            q += 1
            vs = q
            digits = True
            while q < decl_end and buf[q] != SOH:
                c = buf[q]
                if c < 48 or c > 57:
                    digits = False
                q += 1
            if q == vs:  # empty value (q < decl_end: the body ends with SOH)
                ok = False
                break
            if nf == first and tag != 35:
                ok = False
                break
            if tag == 34:
                if not digits:
                    ok = False
                    break
                h0 = nf
            elif tag == 52:
                h1 = nf
            elif tag == 49:
                h2 = nf
            elif tag == 56:
                h3 = nf
            elif tag == 43:
                h4 = nf
            ftag[nf] = tag
            fstart[nf] = vs
            fend[nf] = q
            nf += 1
            q += 1  # the SOH
        if not ok or nf == first:
            nf = first
            break
        msg[k, 0] = p
        msg[k, 1] = end
        msg[k, 2] = hdr_end
        msg[k, 3] = decl_end
        msg[k, 4] = body_len
        msg[k, 5] = declared
        msg[k, 6] = begin_end
        msg[k, 7] = first
        msg[k, 8] = nf - first
        hdr[k, 0] = h0
        hdr[k, 1] = h1
        hdr[k, 2] = h2
        hdr[k, 3] = h3
        hdr[k, 4] = h4
        k += 1
        pos = end
    return k, pos, seps


scan_messages = numba.njit(cache=True, nogil=True)(scan_messages_py)
