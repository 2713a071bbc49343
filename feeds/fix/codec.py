"""FIX tag=value framing, sans-I/O: bytes in, typed messages or DeadLetters out, in stream order.

`FixSplitter.feed(chunk)` may be called with any split of the stream; the output does not depend on how the
stream is chunked, and every input byte ends up in exactly one output (a message's `raw`, a dead letter's
`raw`, or the `separator_bytes` count of CR/LF that log files put between messages).

A message is accepted when all of these hold:
- it starts with `8=FIX` and BeginString (8) is one of `config.begin_strings`;
- BodyLength (9) is the second field, and counting that many bytes after its SOH lands exactly on `10=`;
- CheckSum (10) is 3 digits + SOH and equals the byte sum mod 256 of everything before `10=`;
- the body is SOH-terminated `tag=value` fields, MsgType (35) first, MsgSeqNum (34) / SendingTime (52) parse.
Failures become DeadLetters whose `raw` holds the offending bytes (latin-1, so `raw.encode("latin-1")` is
byte-exact) with a reason: bad_checksum, bad_body_length, truncated (no CheckSum before the next message or
the end of stream), garbage (bytes that do not start a message), bad_begin_string, malformed (field syntax).
A message starts at "8=FIX" after SOH / CR / LF, or anywhere a whole "8=FIX..<SOH>9=<digits><SOH>" header
follows; a frame whose BodyLength is wrong ends after the first CheckSum field before the next start. So one
damaged message yields dead letters covering exactly its bytes and the messages around it still decode.

Speed: a buffer first goes through the batch scanner (feeds.fix.fastsplit, numba), which frames, checksums and
tokenizes every clean message in one pass; only what it stops at (anything damaged or incomplete) goes item by
item through the rules above. `FixCodecConfig(batch_scan=False)` turns it off; the output is the same (tested).
"""

from __future__ import annotations

import re
from datetime import date
from enum import StrEnum

import msgspec
import numpy as np

from feeds.fix.fastsplit import scan_messages
from market.config import Config
from market.events import DeadLetter

SOH = 0x01
_START = b"8=FIX"
_TRAILER = b"\x0110="
_BOUNDARY = b"\x01\r\n"  # bytes after which "8=FIX" starts a message (SOH, or a line break in log files)
_MAX_BEGIN_STRING = 32
_MAX_BODY_LENGTH_DIGITS = 9
_MAX_TAG_DIGITS = 9
_HEADER_RE = re.compile(  # "8=FIX...<SOH>9=<digits><SOH>"; group 1 = BodyLength
    rb"8=FIX[^\x01]{0,%d}\x019=([0-9]{1,%d})\x01" % (_MAX_BEGIN_STRING - 3, _MAX_BODY_LENGTH_DIGITS))
_HEADER_MAX = 2 + _MAX_BEGIN_STRING + 1 + 2 + _MAX_BODY_LENGTH_DIGITS + 1
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_NS_PER_S = 1_000_000_000
_HEADER = frozenset((34, 43, 49, 52, 56))  # header fields copied onto FixMessage
_TIME_CACHE = 4096
_FAST_MIN_BYTES = 512  # smaller buffers go item by item (the kernel call and its buffers cost more there)
_TAGS = {str(i): i for i in range(1, 10_000)}  # str(tag) -> tag; canonical spellings only ("035" is malformed)


class FixReject(StrEnum):
    BAD_CHECKSUM = "bad_checksum"
    BAD_BODY_LENGTH = "bad_body_length"
    TRUNCATED = "truncated"
    GARBAGE = "garbage"
    BAD_BEGIN_STRING = "bad_begin_string"
    MALFORMED = "malformed"


class FixCodecConfig(Config, frozen=True):
    begin_strings: tuple[str, ...] = ("FIX.4.0", "FIX.4.1", "FIX.4.2", "FIX.4.3", "FIX.4.4", "FIXT.1.1")
    max_message_bytes: int = 1 << 20  # a message (or garbage run) longer than this is cut: bounds the buffer
    separators: str = "\r\n"  # tolerated between messages (counted in stats.separator_bytes)
    source: str = "fix.codec"
    batch_scan: bool = True  # frame clean messages with the numba scanner first (same output; False: item by item)

    def __post_init__(self) -> None:
        if self.max_message_bytes < 64:
            raise ValueError("max_message_bytes must be >= 64")
        if any(ord(c) > 0x7F or c in "8\x01" for c in self.separators):
            raise ValueError("separators must be ASCII and not '8' or SOH")


class FixMessage(msgspec.Struct, frozen=True):
    begin_string: str
    body_length: int
    msg_type: str
    seq_num: int  # MsgSeqNum (34); 0 when absent (e.g. market data feeds sequenced by ApplSeqNum)
    sender_comp_id: str  # 49; "" when absent
    target_comp_id: str  # 56; "" when absent
    sending_time: int  # SendingTime (52) in UTC ns; 0 when absent
    poss_dup: bool  # PossDupFlag (43) = Y
    checksum: int
    fields: tuple[tuple[int, str], ...]  # body fields in wire order, MsgType (35) first; 8, 9 and 10 excluded
    offset: int  # stream byte offset of the message's "8="
    raw: bytes  # the message bytes as received, trailer included

    def get(self, tag: int, default: str | None = None) -> str | None:
        """Value of the first occurrence of `tag`."""
        for t, v in self.fields:
            if t == tag:
                return v
        return default

    def get_all(self, tag: int) -> list[str]:
        return [v for t, v in self.fields if t == tag]


FixItem = FixMessage | DeadLetter


class SplitterStats(msgspec.Struct):
    bytes_in: int = 0
    messages: int = 0
    dead_letters: int = 0
    separator_bytes: int = 0


class _Wait(Exception):  # noqa: N818 - internal control flow: the item is incomplete, wait for more bytes
    pass


_WAIT = _Wait()


def checksum(data: bytes) -> int:
    """FIX CheckSum of the bytes before "10=": byte sum mod 256."""
    return sum(data) & 0xFF


def parse_utc_timestamp(text: str) -> int:
    """FIX UTCTimestamp 'YYYYMMDD-HH:MM:SS[.fff[fff[fff]]]' -> UTC ns. ValueError when it does not parse."""
    n = len(text)
    if n < 17 or text[8] != "-" or text[11] != ":" or text[14] != ":" or not text.isascii():
        raise ValueError(f"bad UTCTimestamp {text!r}")
    days = _day(text[:8])
    hh, mm, ss = text[9:11], text[12:14], text[15:17]
    if not (hh.isdigit() and mm.isdigit() and ss.isdigit()):
        raise ValueError(f"bad UTCTimestamp {text!r}")
    h, m, s = int(hh), int(mm), int(ss)
    if h > 23 or m > 59 or s > 60:  # 60: leap second
        raise ValueError(f"bad UTCTimestamp {text!r}")
    frac = 0
    if n > 17:
        digits = text[18:]
        if text[17] != "." or len(digits) not in (3, 6, 9) or not digits.isdigit():
            raise ValueError(f"bad UTCTimestamp {text!r}")
        frac = int(digits) * 10 ** (9 - len(digits))
    return (days * 86400 + h * 3600 + m * 60 + s) * _NS_PER_S + frac


def parse_utc_time_only(text: str) -> int:
    """FIX UTCTimeOnly 'HH:MM:SS[.fff...]' -> ns since midnight UTC."""
    if len(text) < 8 or text[2] != ":" or text[5] != ":" or not text.isascii():
        raise ValueError(f"bad UTCTimeOnly {text!r}")
    return parse_utc_timestamp("19700101-" + text)


_DAYS: dict[str, int] = {}


def _day(text: str) -> int:
    """Days since 1970-01-01 of 'YYYYMMDD' (cached: a log holds few distinct dates)."""
    d = _DAYS.get(text)
    if d is None:
        if len(text) != 8 or not text.isdigit():
            raise ValueError(f"bad date {text!r}")
        d = date(int(text[:4]), int(text[4:6]), int(text[6:])).toordinal() - _EPOCH_ORDINAL
        if len(_DAYS) < 100_000:
            _DAYS[text] = d
    return d


def parse_utc_date(text: str) -> int:
    """FIX LocalMktDate/UTCDateOnly 'YYYYMMDD' -> UTC ns of that midnight."""
    return _day(text) * 86400 * _NS_PER_S


class _Scan:
    """One buffer as the batch scanner sees it, with output space for every message it could hold."""

    __slots__ = ("arr", "buf", "fend", "fstart", "ftag", "hdr", "msg", "text")

    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.arr = np.frombuffer(buf, dtype=np.uint8)
        self.text = buf.decode("latin-1")  # byte offsets = character offsets
        n_soh = buf.count(b"\x01")
        max_msgs = n_soh // 4 + 1  # a message has at least 4 SOH (BeginString, BodyLength, a field, CheckSum)
        self.msg = np.empty((max_msgs, 9), dtype=np.int64)
        self.hdr = np.empty((max_msgs, 5), dtype=np.int64)
        self.ftag = np.empty(n_soh + 1, dtype=np.int64)
        self.fstart = np.empty(n_soh + 1, dtype=np.int64)
        self.fend = np.empty(n_soh + 1, dtype=np.int64)


class FixSplitter:
    """Streaming splitter/validator. `feed` returns the items completed by the new bytes; `finish` flushes."""

    def __init__(self, config: FixCodecConfig | None = None) -> None:
        self.config = config or FixCodecConfig()
        self.stats = SplitterStats()
        self._rest = b""
        self._csum: bytes | None = None  # cumulative byte sums mod 256 of the buffer being scanned
        self._offset = 0  # stream offset of _rest[0]
        self._ts_base: dict[str, int] = {}  # SendingTime's whole second -> UTC ns (logs revisit seconds)
        self._last_ts = 0  # SendingTime of the last accepted message: ts_recv of later dead letters in replay
        self._begin = frozenset(self.config.begin_strings)
        self._seps = frozenset(self.config.separators.encode())
        self._sep_mask = np.zeros(256, dtype=np.bool_)
        self._sep_mask[list(self._seps)] = True

    def feed(self, data: bytes | bytearray | memoryview, ts_recv: int | None = None) -> list[FixItem]:
        """ts_recv: receive time stamped on dead letters; None (replay) uses the last good SendingTime."""
        self.stats.bytes_in += len(data)
        buf = self._rest + bytes(data) if self._rest else bytes(data)
        return self._run(buf, final=False, ts_recv=ts_recv)

    def finish(self, ts_recv: int | None = None) -> list[FixItem]:
        """End of stream: whatever is buffered becomes a message or a dead letter (truncated/garbage)."""
        buf, self._rest = self._rest, b""
        return self._run(buf, final=True, ts_recv=ts_recv)

    def decode_all(self, data: bytes, ts_recv: int | None = None) -> list[FixItem]:
        return self.feed(data, ts_recv) + self.finish(ts_recv)

    # -- scanning -------------------------------------------------------------------------------------------

    def _run(self, buf: bytes, final: bool, ts_recv: int | None) -> list[FixItem]:
        out: list[FixItem] = []
        self._csum = None  # built on first use for this buffer
        pos, n = 0, len(buf)
        seps = self._seps
        scan = _Scan(buf) if self.config.batch_scan and n >= _FAST_MIN_BYTES else None
        while pos < n:
            if scan is not None:  # whole clean messages in one kernel call; the rest item by item below
                pos = self._fast(scan, pos, final, ts_recv, out)
                if pos >= n:
                    break
            if buf[pos] in seps:
                self.stats.separator_bytes += 1
                pos += 1
                continue
            try:
                end, item = self._item(buf, pos, final, ts_recv)
            except _Wait:
                break
            out.append(item)
            pos = end
        self._rest = buf[pos:]
        self._offset += pos
        for item in out:
            if type(item) is FixMessage:
                self.stats.messages += 1
            else:
                self.stats.dead_letters += 1
        return out

    def _fast(self, scan: _Scan, pos: int, final: bool, ts_recv: int | None, out: list[FixItem]) -> int:
        """Messages the batch scanner (feeds.fix.fastsplit) takes from `pos`, appended to `out`; returns where it
        stopped. A message it framed but that fails a check made here (BeginString, SendingTime) goes through
        `_item`, which names the problem exactly."""
        k, stop, n_sep = scan_messages(scan.arr, pos, self.config.max_message_bytes, self._sep_mask, scan.msg,
                                       scan.hdr, scan.ftag, scan.fstart, scan.fend)
        self.stats.separator_bytes += n_sep
        if not k:
            return stop
        buf, text = scan.buf, scan.text
        msgs = scan.msg[:k].tolist()
        hdrs = scan.hdr[:k].tolist()
        f_lo = msgs[0][7]
        f_hi = msgs[-1][7] + msgs[-1][8]
        tags = scan.ftag[f_lo:f_hi].tolist()
        values = [text[a:b] for a, b in zip(scan.fstart[f_lo:f_hi].tolist(), scan.fend[f_lo:f_hi].tolist(),
                                             strict=True)]
        begins = self._begin
        base = self._offset
        for (start, end, _, _, body_len, cs, begin_end, f0, nf), (h_seq, h_time, h_from, h_to, h_dup) in zip(
                msgs, hdrs, strict=True):
            begin = text[start + 2:begin_end]
            exact = begin not in begins
            sending = 0
            if h_time >= 0 and not exact:
                try:
                    sending = self._time(values[h_time - f_lo])
                except ValueError:
                    exact = True
            if exact:  # the exact path makes the dead letter
                out.append(self._item(buf, start, final, ts_recv)[1])
                continue
            if h_time >= 0:
                self._last_ts = sending
            a = f0 - f_lo
            fields = tuple(zip(tags[a:a + nf], values[a:a + nf], strict=True))
            out.append(FixMessage(  # positional: FixMessage's field order
                begin, body_len, values[a], int(values[h_seq - f_lo]) if h_seq >= 0 else 0,
                values[h_from - f_lo] if h_from >= 0 else "", values[h_to - f_lo] if h_to >= 0 else "", sending,
                h_dup >= 0 and values[h_dup - f_lo] == "Y", cs, fields, base + start, buf[start:end],
            ))
        return stop

    def _item(self, buf: bytes, pos: int, final: bool, ts_recv: int | None) -> tuple[int, FixItem]:
        n = len(buf)
        cap = pos + self.config.max_message_bytes  # no item extends past this: bounds the buffer
        if not buf.startswith(_START, pos):
            if n - pos < len(_START) and _START.startswith(buf[pos:]):
                if not final:
                    raise _WAIT  # a start split across feeds
                return n, self._dead(buf, pos, n, FixReject.TRUNCATED, "stream ends inside BeginString", ts_recv)
            nxt = self._next_start(buf, pos + 1, min(n, cap), final)
            if nxt < 0:
                if not final and n < cap + len(_START):
                    raise _WAIT
                nxt = min(n, cap)
            return nxt, self._dead(buf, pos, nxt, FixReject.GARBAGE, "bytes that do not start a FIX message",
                                   ts_recv)
        head = _HEADER_RE.match(buf, pos)
        if head is not None:  # the common case: one regex match for "8=FIX...<SOH>9=<digits><SOH>"
            soh1 = head.start(1) - 3
            hdr_end = head.end()
            body_len = int(head.group(1))
        else:  # find out what is wrong with the header (or wait for the rest of it)
            soh1 = buf.find(b"\x01", pos + 2, pos + 3 + _MAX_BEGIN_STRING)
            if soh1 < 0:
                if not final and n < pos + 3 + _MAX_BEGIN_STRING:
                    raise _WAIT
                return self._broken(buf, pos, pos + len(_START), final, FixReject.GARBAGE,
                                    "BeginString (8) not terminated by SOH", ts_recv)
            p9 = soh1 + 1
            if not buf.startswith(b"9=", p9):
                if not final and n < p9 + 2:
                    raise _WAIT
                return self._broken(buf, pos, p9, final, FixReject.BAD_BODY_LENGTH,
                                    "BodyLength (9) is not the second field", ts_recv)
            soh2 = buf.find(b"\x01", p9 + 2, p9 + 3 + _MAX_BODY_LENGTH_DIGITS)
            digits = buf[p9 + 2:soh2] if soh2 >= 0 else b""
            if soh2 < 0 or not digits.isdigit():
                if soh2 < 0 and not final and n < p9 + 3 + _MAX_BODY_LENGTH_DIGITS:
                    raise _WAIT
                text = buf[p9:p9 + 2 + _MAX_BODY_LENGTH_DIGITS].split(b"\x01")[0].decode("latin-1")
                return self._broken(buf, pos, p9, final, FixReject.BAD_BODY_LENGTH,
                                    f"BodyLength (9) is not a number: {text!r}", ts_recv)
            hdr_end = soh2 + 1
            body_len = int(digits)
        decl_end = hdr_end + body_len  # where "10=" must be
        if decl_end + 7 > cap:
            return self._broken(buf, pos, hdr_end, final, FixReject.BAD_BODY_LENGTH,
                                f"BodyLength {body_len} exceeds max_message_bytes", ts_recv)
        # a message never contains another message's start: a body length reaching past one is wrong
        if self._next_start(buf, hdr_end, min(decl_end, n), final) >= 0:
            return self._broken(buf, pos, hdr_end, final, FixReject.BAD_BODY_LENGTH,
                                f"BodyLength {body_len} runs into the next message", ts_recv)
        if decl_end + 7 > n:
            if not final:
                raise _WAIT
            return self._broken(buf, pos, hdr_end, final, FixReject.BAD_BODY_LENGTH,
                                f"BodyLength {body_len} runs past the end of the stream", ts_recv)
        if not buf.startswith(b"10=", decl_end):
            return self._broken(buf, pos, hdr_end, final, FixReject.BAD_BODY_LENGTH,
                                f"BodyLength {body_len} does not end at CheckSum (10)", ts_recv)
        end = decl_end + 7
        declared = buf[decl_end + 3:decl_end + 6]
        if buf[decl_end + 6] != SOH or not declared.isdigit():
            return end, self._dead(buf, pos, end, FixReject.BAD_CHECKSUM,
                                   f"CheckSum field malformed: {buf[decl_end:end].decode('latin-1')!r}", ts_recv)
        computed = self._checksum(buf, pos, decl_end)
        if int(declared) != computed:
            return end, self._dead(buf, pos, end, FixReject.BAD_CHECKSUM,
                                   f"CheckSum {declared.decode()} != computed {computed:03d}", ts_recv)
        begin = buf[pos + 2:soh1].decode("latin-1")
        if begin not in self._begin:
            return end, self._dead(buf, pos, end, FixReject.BAD_BEGIN_STRING, f"BeginString {begin!r}", ts_recv)
        return end, self._message(buf, pos, hdr_end, decl_end, end, begin, body_len, computed, ts_recv)

    def _next_start(self, buf: bytes, start: int, stop: int, final: bool) -> int:
        """Index of the first message start in [start, stop), -1 if none: "8=FIX" right after SOH or a line
        break, or anywhere when a whole "8=FIX...<SOH>9=<digits><SOH>" header follows (junk glued to the front
        of a message does not hide it)."""
        n = len(buf)
        while True:
            j = buf.find(_START, start, stop + len(_START) - 1)
            if j < 0 or j >= stop:
                return -1
            if buf[j - 1] in _BOUNDARY or _HEADER_RE.match(buf, j):
                return j
            if not final and n - j < _HEADER_MAX:
                raise _WAIT  # cannot tell yet whether a header follows
            start = j + 1

    def _broken(self, buf: bytes, pos: int, search_from: int, final: bool, reason: FixReject, detail: str,
                ts_recv: int | None) -> tuple[int, FixItem]:
        """A message whose frame is wrong ends after the first CheckSum field before the next message start;
        without one it is truncated at the next start (or the end of the stream). Only bytes within
        max_message_bytes of its start decide, so the result does not depend on how the stream was chunked."""
        n = len(buf)
        cap = pos + self.config.max_message_bytes
        nxt = self._next_start(buf, pos + 1, min(n, cap), final)
        if nxt < 0 and not final and n < cap + len(_START):
            raise _WAIT  # a start (or CheckSum) may still come within the cap
        limit = nxt if nxt >= 0 else min(n, cap)
        t = buf.find(_TRAILER, search_from - 1, limit)
        if t >= 0 and t + len(_TRAILER) + 4 <= limit:
            end = t + len(_TRAILER) + 4
            return end, self._dead(buf, pos, end, reason, detail, ts_recv)
        return limit, self._dead(buf, pos, limit, FixReject.TRUNCATED, "message ends without CheckSum (10)",
                                 ts_recv)

    def _time(self, text: str) -> int:
        """SendingTime with the whole-second part cached: consecutive messages share it."""
        head = text[:17]
        base = self._ts_base.get(head)
        if base is None:
            base = parse_utc_timestamp(head)
            if len(self._ts_base) >= _TIME_CACHE:
                self._ts_base.clear()
            self._ts_base[head] = base
        if len(text) == 17:
            return base
        digits = text[18:]
        if text[17] != "." or len(digits) not in (3, 6, 9) or not digits.isdigit() or not digits.isascii():
            raise ValueError(f"bad UTCTimestamp {text!r}")
        return base + int(digits) * 10 ** (9 - len(digits))

    def _checksum(self, buf: bytes, start: int, stop: int) -> int:
        if stop - start < 64 or len(buf) < 4096:
            return sum(buf[start:stop]) & 0xFF
        cs = self._csum
        if cs is None:  # one vectorised pass over the buffer instead of a Python sum per message
            cs = self._csum = np.cumsum(np.frombuffer(buf, dtype=np.uint8), dtype=np.uint8).tobytes()
        return (cs[stop - 1] - (cs[start - 1] if start else 0)) & 0xFF

    def _dead(self, buf: bytes, start: int, stop: int, reason: FixReject, detail: str,
              ts_recv: int | None) -> DeadLetter:
        return DeadLetter(
            source=self.config.source, reason=reason.value,
            detail=f"{detail} (stream offset {self._offset + start}, {stop - start} bytes)",
            raw=buf[start:stop].decode("latin-1"), ts_recv=self._last_ts if ts_recv is None else ts_recv,
        )

    def _message(self, buf: bytes, pos: int, hdr_end: int, decl_end: int, end: int, begin: str, body_len: int,
                 cs: int, ts_recv: int | None) -> FixItem:
        body = buf[hdr_end:decl_end].decode("latin-1")
        parts = body.split("\x01")
        if parts[-1]:
            return self._dead(buf, pos, end, FixReject.MALFORMED, "body does not end with SOH", ts_recv)
        parts.pop()
        fields: list[tuple[int, str]] = []
        append = fields.append
        tag_of = _TAGS.get
        seq = 0
        sender = target = sending_text = ""
        poss_dup = False
        for p in parts:
            t, _, v = p.partition("=")
            k = tag_of(t)
            if k is None or not v:
                k = _field_tag(p)
                if k is None or not v:
                    return self._dead(buf, pos, end, FixReject.MALFORMED, f"bad field {p[:40]!r}", ts_recv)
            append((k, v))
            if k in _HEADER:
                if k == 34:
                    if not v.isascii() or not v.isdigit():
                        return self._dead(buf, pos, end, FixReject.MALFORMED, f"MsgSeqNum {v!r}", ts_recv)
                    seq = int(v)
                elif k == 52:
                    sending_text = v
                elif k == 49:
                    sender = v
                elif k == 56:
                    target = v
                else:
                    poss_dup = v == "Y"
        if not fields or fields[0][0] != 35:
            return self._dead(buf, pos, end, FixReject.MALFORMED, "MsgType (35) is not the first body field",
                              ts_recv)
        sending = 0
        if sending_text:
            try:
                sending = self._time(sending_text)
            except ValueError:
                return self._dead(buf, pos, end, FixReject.MALFORMED, f"SendingTime {sending_text!r}", ts_recv)
            self._last_ts = sending
        return FixMessage(
            begin_string=begin, body_length=body_len, msg_type=fields[0][1], seq_num=seq, sender_comp_id=sender,
            target_comp_id=target, sending_time=sending, poss_dup=poss_dup, checksum=cs, fields=tuple(fields),
            offset=self._offset + pos, raw=buf[pos:end],
        )


def _field_tag(p: str) -> int | None:
    """The tag of 'tag=value', or None when it is not a canonical positive integer followed by '='."""
    tag, eq, _ = p.partition("=")
    t = _TAGS.get(tag)
    if t is not None:
        return t if eq else None
    if eq and 0 < len(tag) <= _MAX_TAG_DIGITS and tag.isascii() and tag.isdigit() and tag[0] != "0":
        return int(tag)
    return None


def decode_stream(data: bytes, config: FixCodecConfig | None = None) -> list[FixItem]:
    """All items of a complete byte stream (a whole log file)."""
    return FixSplitter(config).decode_all(data)


def encode_message(begin_string: str, fields: list[tuple[int, str]]) -> bytes:
    """A well-formed message (BodyLength and CheckSum computed) from body fields, MsgType first."""
    body = "".join(f"{t}={v}\x01" for t, v in fields).encode("latin-1")
    head = f"8={begin_string}\x019={len(body)}\x01".encode("latin-1") + body
    return head + f"10={checksum(head):03d}\x01".encode()
