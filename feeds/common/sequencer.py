"""Per-stream sequence tracking for snapshot + incremental feeds (sans-I/O, venue-agnostic).

Each stream (one instrument) is LIVE (in order: seq == expected is delivered at once) or AWAITING a
snapshot (after subscribe, a reconnect or a gap: incrementals are held in a buffer). A snapshot at seq S
resolves the wait: the held items and the snapshot's recoverable items (e.g. the last quote, with its own
seq) are released in seq order, each seq at most once, and every seq up to max(S, newest held) that was
neither held nor recovered is reported missing. The next expected seq becomes that maximum + 1, so
anything at or below it that arrives later is a duplicate.

The first snapshot of a stream sets its baseline (nothing is missing before it): items held before it
with seq <= S are returned as superseded, because the snapshot already carries their state.

Accounting invariant (tested): every update offered is delivered once, or dropped as a duplicate, or
superseded, or (if never received) counted in exactly one missing range.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Generic, TypeVar

T = TypeVar("T")


class Verdict(IntEnum):
    ACCEPT = 0  # in order: deliver it now
    DUPLICATE = 1  # seq already delivered, recovered or reported missing: drop it
    BUFFERED = 2  # held until the stream's snapshot arrives
    GAP = 3  # seq jumped: held, and the caller must request a snapshot for the stream
    RELEASED = 4  # the hold buffer overflowed: call take_released(stream)
    IMPLAUSIBLE = 5  # seq further ahead than max_jump: not trusted, not applied


@dataclass(frozen=True, slots=True)
class SeqRange:
    """Seqs first..last (inclusive) of a stream that never arrived and were not recovered."""

    stream: str
    first: int
    last: int

    @property
    def count(self) -> int:
        return self.last - self.first + 1


@dataclass(slots=True)
class Release(Generic[T]):
    items: list[T] = field(default_factory=list)  # to deliver, in seq order
    seqs: list[int] = field(default_factory=list)  # the seq of each item
    missing: list[SeqRange] = field(default_factory=list)
    superseded: list[T] = field(default_factory=list)  # held before the first snapshot and covered by it
    recovered: int = 0  # items that came from the snapshot, not from the incremental stream
    initial: bool = False  # the first snapshot of the stream (baseline set, nothing can be missing)
    implausible: bool = False  # snapshot seq too far ahead: ignored


@dataclass(slots=True)
class _Stream(Generic[T]):
    expected: int | None = None  # next seq to deliver; None until the first snapshot or release
    live: bool = False
    buffer: dict[int, T] = field(default_factory=dict)
    since_ns: int = 0  # when the stream started waiting for a snapshot


class Sequencer(Generic[T]):
    def __init__(self, max_buffer: int = 10_000, max_jump: int = 1_000_000) -> None:
        if max_buffer < 1 or max_jump < 1:
            raise ValueError("max_buffer and max_jump must be >= 1")
        self.max_buffer = max_buffer
        self.max_jump = max_jump
        self._streams: dict[str, _Stream[T]] = {}
        self._overflow: dict[str, Release[T]] = {}

    # -- state ---------------------------------------------------------------------------------------

    def expected(self, stream: str) -> int | None:
        st = self._streams.get(stream)
        return None if st is None else st.expected

    def is_live(self, stream: str) -> bool:
        st = self._streams.get(stream)
        return st is not None and st.live

    def held(self, stream: str) -> int:
        st = self._streams.get(stream)
        return 0 if st is None else len(st.buffer)

    def streams(self) -> list[str]:
        return list(self._streams)

    def awaiting(self, now_ns: int, older_than_ns: int = 0) -> list[str]:
        """Streams waiting for a snapshot since at least older_than_ns before now_ns."""
        return [k for k, st in self._streams.items() if not st.live and now_ns - st.since_ns >= older_than_ns]

    def live_expected(self, streams: list[str]) -> list[int]:
        """Next expected seq of each stream, -1 for a stream that is not live (for batch fast paths)."""
        out: list[int] = []
        for key in streams:
            st = self._streams.get(key)
            out.append(st.expected if st is not None and st.live and st.expected is not None else -1)
        return out

    # -- transitions ---------------------------------------------------------------------------------

    def advance(self, stream: str, expected: int) -> None:
        """A batch fast path delivered the live stream's updates in order up to `expected` - 1 (the same as
        on_update returning ACCEPT for each of them)."""
        st = self._streams.get(stream)
        if st is None or not st.live or st.expected is None or expected < st.expected:
            raise ValueError(f"{stream}: advance to {expected} needs a live stream expecting <= that")
        st.expected = expected

    def await_snapshot(self, stream: str, now_ns: int = 0) -> None:
        """Subscribe or re-request: hold incrementals of `stream` until its snapshot (state is kept)."""
        st = self._streams.get(stream)
        if st is None:
            st = self._streams[stream] = _Stream()
        if st.live or not st.buffer:
            st.since_ns = now_ns
        st.live = False

    def connection_reset(self, now_ns: int = 0) -> None:
        """A new connection: every stream waits for the snapshot its resubscription brings. Held items and
        expected seqs carry over, so the new snapshot is checked against what was already delivered."""
        for key in self._streams:
            self.await_snapshot(key, now_ns)

    def forget(self, stream: str) -> list[T]:
        """Unsubscribed: drop the stream's state; returns the items it still held (the caller reports them)."""
        st = self._streams.pop(stream, None)
        self._overflow.pop(stream, None)
        return [] if st is None else [st.buffer[s] for s in sorted(st.buffer)]

    def on_update(self, stream: str, seq: int, item: T, now_ns: int = 0) -> Verdict:
        st = self._streams.get(stream)
        if st is None:  # an update before any subscribe: hold it until a snapshot says where we are
            st = self._streams[stream] = _Stream(since_ns=now_ns)
        exp = st.expected
        if st.live:
            if seq == exp:
                st.expected = seq + 1
                return Verdict.ACCEPT
            if seq < exp:  # type: ignore[operator]  # live implies expected is set
                return Verdict.DUPLICATE
            if seq - exp > self.max_jump:  # type: ignore[operator]
                return Verdict.IMPLAUSIBLE
            st.live = False
            st.since_ns = now_ns
            st.buffer[seq] = item
            return Verdict.GAP
        if exp is not None:
            if seq < exp:
                return Verdict.DUPLICATE
            if seq - exp > self.max_jump:
                return Verdict.IMPLAUSIBLE
        if seq in st.buffer:
            return Verdict.DUPLICATE
        st.buffer[seq] = item
        if len(st.buffer) > self.max_buffer:
            self._overflow[stream] = self.release(stream)
            return Verdict.RELEASED
        return Verdict.BUFFERED

    def take_released(self, stream: str) -> Release[T]:
        """What an overflow (Verdict.RELEASED) released."""
        return self._overflow.pop(stream, Release())

    def release(self, stream: str) -> Release[T]:
        """Give up waiting (buffer overflow, snapshot timeout): deliver what is held, report the holes, go live.
        A snapshot arriving later is still applied (it can only report or recover seqs beyond what was released)."""
        st = self._streams.get(stream)
        if st is None:
            return Release()
        seqs = sorted(st.buffer)
        out: Release[T] = Release()
        if st.expected is None:
            if not seqs:
                return out  # nothing to anchor a baseline on: keep waiting for the snapshot
            st.expected = seqs[0]
        out.items = [st.buffer[s] for s in seqs]
        out.seqs = seqs
        top = seqs[-1] if seqs else st.expected - 1
        out.missing = _holes(stream, st.expected, top, seqs)
        st.expected = top + 1
        st.buffer = {}
        st.live = True
        return out

    def on_snapshot(self, stream: str, seq: int, recovered: list[tuple[int, T]] | None = None) -> Release[T]:
        """Apply a snapshot taken at `seq` (the stream's newest seq at the venue; 0 = nothing published yet).
        `recovered`: (seq, item) pairs the snapshot can re-create exactly (each seq <= `seq`)."""
        st = self._streams.get(stream)
        if st is None:
            st = self._streams[stream] = _Stream()
        out: Release[T] = Release()
        exp = st.expected
        if exp is None:  # first snapshot: the baseline
            out.initial = True
            keep = sorted(s for s in st.buffer if s > seq)
            out.superseded = [st.buffer[s] for s in sorted(st.buffer) if s <= seq]
            out.items = [st.buffer[s] for s in keep]
            out.seqs = keep
            top = keep[-1] if keep else seq
            out.missing = _holes(stream, seq + 1, top, keep)
        else:
            if seq - exp > self.max_jump:
                out.implausible = True
                return out
            cand = dict(st.buffer)  # every held seq is >= exp
            for s, item in recovered or ():
                if exp <= s <= seq and s not in cand:
                    cand[s] = item
                    out.recovered += 1
            keep = sorted(cand)
            out.items = [cand[s] for s in keep]
            out.seqs = keep
            top = max(seq, keep[-1]) if keep else max(seq, exp - 1)
            out.missing = _holes(stream, exp, top, keep)
        st.expected = top + 1
        st.buffer = {}
        st.live = True
        self._overflow.pop(stream, None)
        return out


def _holes(stream: str, first: int, last: int, present: list[int]) -> list[SeqRange]:
    """Ranges of first..last not in `present` (sorted, unique); never enumerates the range itself."""
    out: list[SeqRange] = []
    nxt = first
    for s in present:
        if s > last:
            break
        if s > nxt:
            out.append(SeqRange(stream, nxt, s - 1))
        if s >= nxt:
            nxt = s + 1
    if nxt <= last:
        out.append(SeqRange(stream, nxt, last))
    return out
