"""FIX sequence tracking, sans-I/O: one `SessionTracker` sees every decoded message of a stream in order.

Each message is checked against every sequence it carries (`config.seq_tags`, by default MsgSeqNum (34),
per sender->target session, and ApplSeqNum (1181), per ApplID (1180) — market data feeds such as the JSE
one sequence only the latter). Per sequence stream the tracker keeps the next expected number and the ranges
still missing, and reports:
- gap: numbers skipped (first..last), remembered as missing;
- gap_filled: a missing number arrived later (a resend) and is accepted;
- duplicate: a number already seen, without PossDupFlag (43) — rejected;
- poss_dup: a number already seen with PossDupFlag=Y (a retransmission) — rejected, it was processed;
- repeat: an unsequenced message byte-identical to the previous message of its session — rejected;
- sequence_reset (35=4 reset mode: next = NewSeqNo (36), missing ranges abandoned),
  gap_fill (35=4 GapFillFlag (123) = Y: seq..NewSeqNo-1 declared skipped, clears them from missing),
  logon_reset (35=A with ResetSeqNumFlag (141) = Y), resend_request (35=2: BeginSeqNo (7)..EndSeqNo (16),
  0 = infinity).
The first number seen on a stream is its baseline: a log that starts mid-session is not one big gap.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter
from enum import StrEnum

import msgspec

from feeds.fix.codec import FixMessage
from market.config import Config
from market.events import DeadLetter

SESSION_SNAPSHOT_VERSION = 1


class SeqEventKind(StrEnum):
    GAP = "gap"
    GAP_FILLED = "gap_filled"
    DUPLICATE = "duplicate"
    POSS_DUP = "poss_dup"
    REPEAT = "repeat"
    SEQUENCE_RESET = "sequence_reset"
    GAP_FILL = "gap_fill"
    LOGON_RESET = "logon_reset"
    RESEND_REQUEST = "resend_request"


REJECTING = frozenset({SeqEventKind.DUPLICATE, SeqEventKind.POSS_DUP, SeqEventKind.REPEAT})


class SessionConfig(Config, frozen=True):
    seq_tags: tuple[int, ...] = (34, 1181)  # MsgSeqNum, ApplSeqNum
    detect_repeats: bool = True  # unsequenced message identical to its session's previous one = duplicate
    max_missing_ranges: int = 100_000  # bound on remembered gaps per stream (oldest forgotten first)
    source: str = "fix.session"


class SeqEvent(msgspec.Struct, frozen=True):
    kind: str  # SeqEventKind value
    stream: str  # "<BeginString> <sender>-><target>" (+ " appl <ApplID>" for ApplSeqNum)
    seq: int  # the message's number on this stream (0: unsequenced)
    expected: int  # next number expected before this message (0: none yet)
    first: int  # gap / gap_fill / resend_request range, sequence_reset old..new
    last: int
    msg_type: str
    offset: int  # stream byte offset of the message
    ts_event: int  # SendingTime


class SeqVerdict(msgspec.Struct, frozen=True):
    accept: bool  # False: already seen (duplicate / poss_dup / repeat); do not process it again
    events: tuple[SeqEvent, ...]


class StreamState(msgspec.Struct):
    next_expected: int = 0  # 0: nothing seen yet
    missing: list[list[int]] = msgspec.field(default_factory=list)  # sorted disjoint [first, last]
    messages: int = 0
    gaps: int = 0
    missing_total: int = 0  # numbers reported missing over the stream's life
    duplicates: int = 0


class SessionSnapshot(msgspec.Struct, frozen=True, tag="fix_session.v1"):
    version: int
    streams: dict[str, StreamState]
    last_raw: dict[str, bytes]
    counts: dict[str, int]


class SessionTracker:
    def __init__(self, config: SessionConfig | None = None) -> None:
        self.config = config or SessionConfig()
        self.streams: dict[str, StreamState] = {}
        self._last_raw: dict[str, bytes] = {}
        self.counts: Counter[str] = Counter()  # events by kind

    # -- logic contract ----------------------------------------------------------------------------------

    def on_item(self, msg: FixMessage) -> list[SeqVerdict]:
        return [self.on_message(msg)]

    def on_watermark(self, watermark_ns: int) -> list[SeqVerdict]:
        return []  # no timers: sequence checks are purely order based

    def snapshot(self) -> SessionSnapshot:
        return SessionSnapshot(
            version=SESSION_SNAPSHOT_VERSION,
            streams={k: msgspec.structs.replace(v, missing=[list(r) for r in v.missing])
                     for k, v in self.streams.items()},
            last_raw=dict(self._last_raw), counts=dict(self.counts),
        )

    @classmethod
    def restore(cls, config: SessionConfig, snap: SessionSnapshot) -> SessionTracker:
        if snap.version != SESSION_SNAPSHOT_VERSION:
            raise ValueError(f"session snapshot version {snap.version} != {SESSION_SNAPSHOT_VERSION}")
        t = cls(config)
        t.streams = {k: msgspec.structs.replace(v, missing=[list(r) for r in v.missing])
                     for k, v in snap.streams.items()}
        t._last_raw = dict(snap.last_raw)
        t.counts = Counter(snap.counts)
        return t

    # -- checks ------------------------------------------------------------------------------------------

    def on_message(self, msg: FixMessage) -> SeqVerdict:
        session = f"{msg.begin_string} {msg.sender_comp_id}->{msg.target_comp_id}"
        events: list[SeqEvent] = []
        accept = True
        sequenced = False
        for tag in self.config.seq_tags:
            value = msg.seq_num if tag == 34 else _int(msg.get(tag))
            if value <= 0:
                continue
            sequenced = True
            stream = session if tag == 34 else f"{session} appl {msg.get(1180) or ''}"
            if not self._check(stream, value, msg, tag == 34, events):
                accept = False
        if not sequenced and self.config.detect_repeats and self._last_raw.get(session) == msg.raw:
            events.append(_event(SeqEventKind.REPEAT, session, 0, 0, 0, 0, msg))
            accept = False
        self._last_raw[session] = msg.raw
        if msg.msg_type == "2":  # ResendRequest: informational, the counterparty asked for a range again
            events.append(_event(SeqEventKind.RESEND_REQUEST, session, msg.seq_num, 0,
                                 _int(msg.get(7)), _int(msg.get(16)), msg))
        for e in events:
            self.counts[e.kind] += 1
        return SeqVerdict(accept=accept, events=tuple(events))

    def _check(self, stream: str, seq: int, msg: FixMessage, session_level: bool, events: list[SeqEvent]) -> bool:
        st = self.streams.get(stream)
        if st is None:
            st = self.streams[stream] = StreamState()
        st.messages += 1
        expected = st.next_expected
        if session_level and msg.msg_type == "4":
            return self._sequence_reset(st, stream, seq, msg, events)
        if session_level and msg.msg_type == "A" and msg.get(141) == "Y":
            events.append(_event(SeqEventKind.LOGON_RESET, stream, seq, expected, expected, seq, msg))
            st.missing.clear()
            st.next_expected = seq + 1
            return True
        if expected == 0 or seq == expected:
            st.next_expected = seq + 1
            return True
        if seq > expected:
            events.append(_event(SeqEventKind.GAP, stream, seq, expected, expected, seq - 1, msg))
            self._add_missing(st, expected, seq - 1)
            st.next_expected = seq + 1
            return True
        if self._take_missing(st, seq, seq):
            events.append(_event(SeqEventKind.GAP_FILLED, stream, seq, expected, seq, seq, msg))
            return True
        st.duplicates += 1
        kind = SeqEventKind.POSS_DUP if msg.poss_dup else SeqEventKind.DUPLICATE
        events.append(_event(kind, stream, seq, expected, seq, seq, msg))
        return False

    def _sequence_reset(self, st: StreamState, stream: str, seq: int, msg: FixMessage,
                        events: list[SeqEvent]) -> bool:
        expected = st.next_expected
        new = _int(msg.get(36))
        if msg.get(123) == "Y":  # gap fill: seq..new-1 carry nothing worth resending
            if expected and seq > expected:
                events.append(_event(SeqEventKind.GAP, stream, seq, expected, expected, seq - 1, msg))
                self._add_missing(st, expected, seq - 1)
            if new > seq:
                self._take_missing(st, seq, new - 1)
            events.append(_event(SeqEventKind.GAP_FILL, stream, seq, expected, seq, new - 1, msg))
            st.next_expected = max(expected, new, seq + 1)
            return True
        events.append(_event(SeqEventKind.SEQUENCE_RESET, stream, seq, expected, expected, new, msg))
        st.missing.clear()
        st.next_expected = new
        return True

    def _add_missing(self, st: StreamState, first: int, last: int) -> None:
        st.gaps += 1
        st.missing_total += last - first + 1
        st.missing.append([first, last])  # gaps open past every earlier number: the list stays sorted
        if len(st.missing) > self.config.max_missing_ranges:
            del st.missing[0]

    @staticmethod
    def _take_missing(st: StreamState, first: int, last: int) -> bool:
        """Remove [first, last] from the missing ranges; True if any number of it was missing."""
        if not st.missing:
            return False
        i = max(bisect_right(st.missing, [first, 2**63]) - 1, 0)
        hit = False
        out = st.missing[:i]
        for lo, hi in st.missing[i:]:
            if hi < first or lo > last:
                out.append([lo, hi])
                continue
            hit = True
            if lo < first:
                out.append([lo, first - 1])
            if hi > last:
                out.append([last + 1, hi])
        st.missing = out
        return hit


def _int(text: str | None) -> int:
    return int(text) if text is not None and text.isascii() and text.isdigit() else 0


def _event(kind: SeqEventKind, stream: str, seq: int, expected: int, first: int, last: int,
           msg: FixMessage) -> SeqEvent:
    return SeqEvent(kind=kind.value, stream=stream, seq=seq, expected=expected, first=first, last=last,
                    msg_type=msg.msg_type, offset=msg.offset, ts_event=msg.sending_time)


def rejected_dead_letter(msg: FixMessage, verdict: SeqVerdict, ts_recv: int, source: str = "fix.session") -> DeadLetter:
    """The dead letter of a message the tracker did not accept (reason "duplicate")."""
    why = "; ".join(f"{e.kind} on {e.stream} seq {e.seq} (expected {e.expected})"
                    for e in verdict.events if e.kind in REJECTING)
    return DeadLetter(source=source, reason="duplicate", detail=why, raw=msg.raw.decode("latin-1"),
                      ts_recv=ts_recv, ts_event=msg.sending_time)
