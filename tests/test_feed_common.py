"""feeds.common: backoff, watchdog, sequencer (unit + model-based property test), metrics, the runner."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feeds.common.adapter import ConnectionLost, FeedEvent, FeedFatal, FeedRunner, SansIOFeed, raw_text
from feeds.common.backoff import Backoff
from feeds.common.metrics import FeedMetrics, LagWindow
from feeds.common.sequencer import Release, SeqRange, Sequencer, Verdict
from feeds.common.watchdog import Watchdog
from market.events import DeadLetter, TradeTick

# -- backoff ---------------------------------------------------------------------------------------------


def test_backoff_full_jitter_bounds_growth_and_cap() -> None:
    b = Backoff(100, 1000, rng=random.Random(7))
    ceilings, delays = [], []
    for _ in range(8):
        ceilings.append(b.ceiling_ms)
        delays.append(b.next_delay_ms())
    assert ceilings == [100, 200, 400, 800, 1000, 1000, 1000, 1000]
    assert all(0 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert b.attempt == 8
    b.reset()
    assert b.attempt == 0 and b.ceiling_ms == 100 and 0 <= b.next_delay_ms() <= 100


def test_backoff_is_seeded_and_jittered() -> None:
    a = [Backoff(50, 5000, rng=random.Random(1)).next_delay_ms() for _ in range(3)]
    b = [Backoff(50, 5000, rng=random.Random(1)).next_delay_ms() for _ in range(3)]
    assert a == b
    many = Backoff(1000, 1000, rng=random.Random(2))
    draws = [many.next_delay_ms() for _ in range(2000)]
    # full jitter: uniform over [0, cap], not clustered at the cap
    assert min(draws) < 50 and max(draws) > 950 and 400 < float(np.mean(draws)) < 600


def test_backoff_survives_many_failures_and_rejects_bad_args() -> None:
    b = Backoff(1, 60_000, multiplier=10, rng=random.Random(0))
    for _ in range(5000):
        assert b.next_delay_ms() <= 60_000
    with pytest.raises(ValueError):
        Backoff(0, 10)
    with pytest.raises(ValueError):
        Backoff(10, 5)
    with pytest.raises(ValueError):
        Backoff(10, 50, multiplier=0.5)


# -- watchdog --------------------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.ns = 1_000_000_000

    def __call__(self) -> int:
        return self.ns

    def advance_ms(self, ms: float) -> None:
        self.ns += int(ms * 1_000_000)


def test_watchdog_stale_and_heartbeat() -> None:
    clk = FakeClock()
    w = Watchdog(stale_after_ms=300, heartbeat_ms=100, clock=clk)
    assert not w.stale() and not w.heartbeat_due()
    assert w.next_check_s() == pytest.approx(0.1)
    clk.advance_ms(100)
    assert w.heartbeat_due() and not w.stale()
    w.on_send()
    assert not w.heartbeat_due()
    clk.advance_ms(150)
    w.on_receive()  # traffic keeps it fresh
    clk.advance_ms(300)
    assert not w.stale()
    clk.advance_ms(1)
    assert w.stale() and w.silent_ms() == pytest.approx(301)
    w.reset()
    assert not w.stale() and not w.heartbeat_due()
    with pytest.raises(ValueError):
        Watchdog(0, 10, clk)


# -- sequencer -------------------------------------------------------------------------------------------


def test_sequencer_in_order_duplicate_gap_and_snapshot_recovery() -> None:
    s: Sequencer[str] = Sequencer()
    s.await_snapshot("X")
    first = s.on_snapshot("X", 10)
    assert first.initial and first.items == [] and first.missing == []
    assert s.expected("X") == 11 and s.is_live("X")
    assert s.on_update("X", 11, "u11") is Verdict.ACCEPT
    assert s.on_update("X", 11, "u11") is Verdict.DUPLICATE
    assert s.on_update("X", 3, "u3") is Verdict.DUPLICATE
    assert s.on_update("X", 14, "u14") is Verdict.GAP  # 12, 13 not seen
    assert s.on_update("X", 15, "u15") is Verdict.BUFFERED
    assert s.on_update("X", 15, "u15") is Verdict.DUPLICATE  # already held
    assert s.held("X") == 2 and not s.is_live("X")
    rel = s.on_snapshot("X", 17, [(13, "q13"), (12, "t12"), (15, "q15"), (9, "old")])
    # the snapshot re-creates 12 and 13; 15 was held (the held copy wins); 9 was delivered long ago;
    # 16 and 17 never arrived
    assert rel.seqs == [12, 13, 14, 15] and rel.items == ["t12", "q13", "u14", "u15"]
    assert rel.recovered == 2
    assert rel.missing == [SeqRange("X", 16, 17)] and rel.missing[0].count == 2
    assert s.expected("X") == 18 and s.is_live("X")


def test_sequencer_snapshot_behind_the_stream_changes_nothing() -> None:
    s: Sequencer[str] = Sequencer()
    s.on_snapshot("X", 0)
    for q in (1, 2, 3):
        assert s.on_update("X", q, f"u{q}") is Verdict.ACCEPT
    rel = s.on_snapshot("X", 3, [(2, "again")])
    assert rel.items == [] and rel.missing == [] and rel.recovered == 0 and s.expected("X") == 4


def test_sequencer_reconnect_keeps_expected_and_reports_downtime() -> None:
    s: Sequencer[str] = Sequencer()
    s.on_snapshot("X", 5)
    s.on_update("X", 6, "u6")
    s.connection_reset()
    assert not s.is_live("X")
    assert s.on_update("X", 6, "u6 again") is Verdict.DUPLICATE
    rel = s.on_snapshot("X", 20, [(19, "q19")])
    assert rel.items == ["q19"] and rel.missing == [SeqRange("X", 7, 18), SeqRange("X", 20, 20)]


def test_sequencer_first_snapshot_supersedes_older_held_updates() -> None:
    s: Sequencer[str] = Sequencer()
    assert s.on_update("X", 4, "u4") is Verdict.BUFFERED  # before any snapshot: no baseline yet
    assert s.on_update("X", 9, "u9") is Verdict.BUFFERED
    rel = s.on_snapshot("X", 6)
    assert rel.initial and rel.superseded == ["u4"] and rel.items == ["u9"]
    assert rel.missing == [SeqRange("X", 7, 8)] and s.expected("X") == 10


def test_sequencer_overflow_timeout_release_and_implausible() -> None:
    s: Sequencer[int] = Sequencer(max_buffer=3, max_jump=100)
    s.on_snapshot("X", 0)
    assert s.on_update("X", 1, 1) is Verdict.ACCEPT
    assert s.on_update("X", 500, 500) is Verdict.IMPLAUSIBLE and s.is_live("X")
    assert s.on_update("X", 3, 3) is Verdict.GAP
    assert s.on_update("X", 5, 5) is Verdict.BUFFERED
    assert s.on_update("X", 6, 6) is Verdict.BUFFERED
    assert s.on_update("X", 8, 8) is Verdict.RELEASED  # 4 held > max_buffer
    rel = s.take_released("X")
    assert rel.items == [3, 5, 6, 8] and rel.missing == [SeqRange("X", 2, 2), SeqRange("X", 4, 4),
                                                         SeqRange("X", 7, 7)]
    assert s.is_live("X") and s.expected("X") == 9
    assert s.take_released("X") == Release()
    # a late snapshot is still applied against the new position
    late = s.on_snapshot("X", 10)
    assert late.missing == [SeqRange("X", 9, 10)]
    assert s.on_snapshot("X", 10_000).implausible and s.expected("X") == 11
    # timeout path: the caller releases a stream that waited too long
    s.on_update("X", 13, 13, now_ns=1_000)
    assert s.awaiting(now_ns=1_500, older_than_ns=1_000) == []
    assert s.awaiting(now_ns=2_000, older_than_ns=1_000) == ["X"]
    assert s.release("X").missing == [SeqRange("X", 11, 12)]
    assert s.forget("X") == [] and s.expected("X") is None


@dataclass
class Model:
    """What the venue published and what the receiver saw, for the property test."""

    published: int = 0
    sent: set[int] = field(default_factory=set)
    delivered: list[int] = field(default_factory=list)
    missing: list[SeqRange] = field(default_factory=list)
    superseded: list[int] = field(default_factory=list)
    baseline: int | None = None


ops = st.lists(st.one_of(
    st.tuples(st.just("pub"), st.integers(1, 5)),  # publish n, delivering them
    st.tuples(st.just("drop"), st.integers(1, 4)),  # publish n, the wire loses them
    st.tuples(st.just("dup"), st.integers(1, 6)),  # re-deliver the k-th newest sent seq
    st.tuples(st.just("snap"), st.integers(0, 3)),  # snapshot; re-creates the k-th newest published seq
    st.tuples(st.just("reset"), st.just(0)),
    st.tuples(st.just("release"), st.just(0)),
), min_size=1, max_size=60)


@settings(max_examples=300, deadline=None)
@given(ops, st.integers(1, 6))
def test_sequencer_accounts_for_every_seq(operations: list[tuple[str, int]], max_buffer: int) -> None:
    s: Sequencer[int] = Sequencer(max_buffer=max_buffer)
    m = Model()

    def absorb(rel: Release[int], snapshot_seq: int | None = None) -> None:
        assert rel.items == rel.seqs  # items are their seqs here
        if m.baseline is None:  # the first snapshot, or the first release, anchors the stream
            if rel.initial:
                m.baseline = snapshot_seq
            elif rel.seqs:
                m.baseline = rel.seqs[0] - 1
        m.delivered += rel.items
        m.missing += rel.missing
        m.superseded += rel.superseded

    def offer(q: int) -> None:
        m.sent.add(q)
        v = s.on_update("X", q, q)
        if v is Verdict.ACCEPT:
            m.delivered.append(q)
        elif v is Verdict.RELEASED:
            absorb(s.take_released("X"))

    for op, n in operations:
        if op in ("pub", "drop"):
            for _ in range(n):
                m.published += 1
                if op == "pub":
                    offer(m.published)
        elif op == "dup" and m.sent:
            offer(sorted(m.sent)[-min(n, len(m.sent))])
        elif op == "snap":
            rec = m.published - n
            absorb(s.on_snapshot("X", m.published, [(rec, rec)] if rec >= 1 else []), m.published)
        elif op == "reset":
            s.connection_reset()
        elif op == "release":
            absorb(s.release("X"))

    # nothing reaches downstream twice, and it reaches it in seq order
    assert m.delivered == sorted(set(m.delivered))
    if m.baseline is None:
        assert m.delivered == [] and m.missing == []
        return
    exp = s.expected("X")
    assert exp is not None
    missing = [q for r in m.missing for q in range(r.first, r.last + 1)]
    assert len(missing) == len(set(missing))
    # delivered and missing partition baseline+1 .. expected-1 exactly
    assert sorted(m.delivered + missing) == list(range(m.baseline + 1, exp))
    # a seq that arrived is never reported missing; nothing superseded was delivered
    assert not set(missing) & m.sent
    assert not set(m.superseded) & set(m.delivered)
    # everything beyond the stream position is still held
    assert all(q < exp for q in m.delivered)


# -- metrics ---------------------------------------------------------------------------------------------


def test_lag_window_quantiles_and_ring() -> None:
    w = LagWindow(size=100)
    assert w.size == 128 and w.quantile_ns(0.5) == 0.0
    for x in range(1, 129):
        w.add(x)
    assert w.quantile_ns(0.5) == 64 and w.quantile_ns(0.99) == 127 and w.quantile_ns(1.0) == 128
    for _ in range(127):
        w.add(1000)  # the ring forgets the oldest values first
    assert len(w) == 128 and w.total == 255
    assert w.quantile_ns(0.0) == 128 and w.quantile_ns(0.01) == 1000


def test_feed_metrics_snapshot() -> None:
    m = FeedMetrics("x")
    m.gaps += 2
    m.reconnects += 1
    for lag_ms in range(1, 101):
        m.observe_lag(0, lag_ms * 1_000_000)
    snap = m.snapshot()
    assert snap.feed == "x" and snap.gaps == 2 and snap.reconnects == 1 and snap.duplicates == 0
    assert snap.lag_samples == 100 and snap.lag_p50_ms == 50.0 and snap.lag_p99_ms == 99.0


def test_raw_text_keeps_undecodable_bytes() -> None:
    assert raw_text(b"\xff{a") == "\\xff{a"
    assert len(raw_text("x" * 10_000)) == 4096


# -- runner (in-memory transport, tiny protocol) --------------------------------------------------------


class EchoProtocol(SansIOFeed):
    """A test protocol: "hello" on connect, every frame becomes a trade with the stamped ts_recv."""

    name = "echo"

    def connection_made(self, now_ns: int) -> None:
        super().connection_made(now_ns)
        self._send(b"hello")

    def receive(self, frame: bytes | str, ts_recv: int) -> None:
        self.metrics.frames += 1
        text = frame.decode() if isinstance(frame, bytes) else frame
        if text == "ack":
            self.logged_in = True
        elif text == "refuse":
            self.fatal = "refused"
        else:
            self._events.append(TradeTick("GC.COMEX", int(text), 1, 0, ts_recv, 0))

    def heartbeat(self, now_ns: int) -> None:
        self._send(b"hb")


class MemoryConnection:
    def __init__(self, frames: list[bytes], then_close: bool = True) -> None:
        self.inbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        for f in frames:
            self.inbox.put_nowait(f)
        if then_close:
            self.inbox.put_nowait(None)
        self.sent: list[bytes] = []
        self.closed = False

    async def send(self, frame: bytes) -> None:
        if self.closed:
            raise ConnectionLost("closed")
        self.sent.append(frame)

    async def recv(self) -> bytes:
        f = await self.inbox.get()
        if f is None:
            raise ConnectionLost("peer closed")
        return f

    async def close(self) -> None:
        self.closed = True


def _runner(proto: SansIOFeed, conns: list[MemoryConnection | None], sink: list[FeedEvent],
            **kw: int) -> FeedRunner:
    it = iter(conns)

    async def connect() -> MemoryConnection:
        c = next(it, None)
        if c is None:
            raise OSError("connection refused")
        return c

    clock = iter(range(1_000, 10**9, 1_000))
    return FeedRunner(proto, connect, sink.extend, heartbeat_ms=kw.get("hb", 20), stale_after_ms=kw.get("stale", 60),
                      backoff=Backoff(1, 5, rng=random.Random(0)), clock=lambda: next(clock))


async def test_runner_reconnects_stamps_ts_recv_and_stops() -> None:
    proto = EchoProtocol()
    sink: list[FeedEvent] = []
    first = MemoryConnection([b"ack", b"1", b"2"])  # then the peer closes
    second = MemoryConnection([b"3"], then_close=False)  # never logs in: not a healthy session
    runner = _runner(proto, [None, first, None, second], sink, hb=1000, stale=5000)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    for _ in range(200):
        await asyncio.sleep(0.005)
        if len(sink) == 3:
            break
    stop.set()
    await asyncio.wait_for(task, 2)
    assert [e.price for e in sink if isinstance(e, TradeTick)] == [1, 2, 3]
    stamps = [e.ts_recv for e in sink]
    assert stamps == sorted(stamps) and len(set(stamps)) == 3  # the runner's clock, one reading per frame
    m = proto.metrics
    assert m.connect_failures == 2 and m.connects == 2 and m.reconnects == 1
    # delays: after the failure, after the healthy first session (which reset the count), after the failure
    assert runner.backoff.attempt == 2
    assert first.sent[0] == b"hello" and second.sent[0] == b"hello" and second.closed


async def test_runner_watchdog_reconnects_a_silent_connection_and_sends_heartbeats() -> None:
    proto = EchoProtocol()
    silent = MemoryConnection([b"ack"], then_close=False)  # logs in, then never says anything again
    fresh = MemoryConnection([b"ack", b"7"], then_close=False)
    sink: list[FeedEvent] = []
    runner = _runner(proto, [silent, fresh], sink, hb=10, stale=50)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    for _ in range(400):
        await asyncio.sleep(0.005)
        if sink:
            break
    stop.set()
    await asyncio.wait_for(task, 2)
    assert [e.price for e in sink if isinstance(e, TradeTick)] == [7]
    assert proto.metrics.stalls == 1 and silent.closed and proto.metrics.reconnects == 1
    assert b"hb" in silent.sent and proto.metrics.heartbeats_out >= 1


async def test_runner_stops_on_fatal() -> None:
    proto = EchoProtocol()
    runner = _runner(proto, [MemoryConnection([b"refuse"], then_close=False)], [])
    with pytest.raises(FeedFatal, match="refused"):
        await asyncio.wait_for(runner.run(), 2)


def test_dead_letter_helper_counts() -> None:
    p = EchoProtocol()
    p._dead("malformed", "why", b"\x00raw", 5, "GC.COMEX", 4)
    (d,) = p.events()
    assert isinstance(d, DeadLetter) and d.source == "echo" and d.raw == "\x00raw" and d.ts_recv == 5
    assert p.metrics.dead_letters == 1 and p.events() == []
