"""Fuzz the ICE decoder + protocol: >= 10,000 mutated frames (bit flips, truncations, splices, type confusion,
tag swaps, junk) interleaved with valid traffic. Nothing may raise; every frame that is not a valid venue
message becomes a "malformed" dead letter carrying the frame; every output is a well-formed tick or a dead
letter with a known reason; no sequenced tick reaches downstream twice.
"""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from feeds.common.adapter import RAW_MAX, FeedEvent, raw_text
from feeds.ice.config import IceFeedConfig
from feeds.ice.protocol import REASONS, IceProtocol
from feeds.ice.schemas import (
    DECODE_ERRORS,
    SERVER_DECODER,
    Error,
    Heartbeat,
    LoginAck,
    QuoteUpdate,
    SnapQuote,
    Snapshot,
    SnapTrade,
    SubscribeAck,
    TradeUpdate,
    UnsubscribeAck,
    encode,
)
from market.events import DeadLetter, QuoteTick, TradeTick
from market.instruments import default_registry

SYMBOLS = ("CT", "B", "SB", "KC")
T0 = 1_767_571_200_000_000_000
I64 = 2**63
TAGS = ("login_ack", "subscribe_ack", "unsubscribe_ack", "snapshot", "trade", "quote", "heartbeat", "error",
        "login", "subscribe", "nope", "")
REG = default_registry()
N_MUTATED = 12_000


class Venue:
    """Plausible valid traffic: per-symbol seq streams, quotes, trades, snapshots, control messages."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.seq = dict.fromkeys(SYMBOLS, 0)
        self.last_quote: dict[str, SnapQuote] = {}
        self.last_trade: dict[str, SnapTrade] = {}

    def price(self) -> str:
        r = self.rng
        return f"{r.choice(['', '-'])}{r.randint(0, 99999)}.{r.randint(0, 99):02d}"

    def frame(self) -> bytes:
        r = self.rng
        sym = r.choice(SYMBOLS)
        k = r.random()
        if k < 0.04:
            return encode(Snapshot(sym, self.seq[sym], self.last_quote.get(sym), self.last_trade.get(sym)))
        if k < 0.07:
            return encode(r.choice([Heartbeat(T0), SubscribeAck(1, list(SYMBOLS)), UnsubscribeAck(2, ["KC"]),
                                    Error("bad_request", "x", sym, 3), LoginAck("S", 100)]))
        self.seq[sym] += 1
        q = self.seq[sym]
        if k < 0.09:  # lost on the wire: the protocol must find the gap
            self.seq[sym] += 1
            q = self.seq[sym]
        if k < 0.6:
            bq = SnapQuote(q, T0 + q, self.price(), self.price(), r.randint(0, 50), r.randint(0, 50))
            self.last_quote[sym] = bq
            return encode(QuoteUpdate(sym, q, bq.ts, bq.bid, bq.ask, bq.bid_qty, bq.ask_qty))
        t = SnapTrade(q, T0 + q, self.price(), r.randint(1, 50), r.choice(["B", "S", "N"]))  # type: ignore[arg-type]
        self.last_trade[sym] = t
        return encode(TradeUpdate(sym, q, t.ts, t.px, t.qty, t.side))


def confuse(value: Any, rng: random.Random) -> Any:
    return rng.choice([
        None, True, 0, -1, 1, I64, I64 - 1, -I64 - 1, 2**70, 1.5, -0.0, 1e308, "", "1", "71.25", "NaN", "-",
        "9" * 40, "\u0000", "\u00e9t\u00e9", [], [value], {}, {"x": value}, str(value), [1, 2, 3],
    ])


def mutate(frame: bytes, other: bytes, rng: random.Random) -> bytes:
    kind = rng.randrange(8)
    if kind == 0:  # bit flips
        b = bytearray(frame)
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        return bytes(b)
    if kind == 1:  # truncation
        return frame[: rng.randrange(len(frame))]
    if kind == 2:  # splice two frames
        return frame[: rng.randrange(len(frame))] + other[rng.randrange(len(other)):]
    if kind in (3, 4):  # type confusion on one field (nested ones included)
        doc = msgspec.json.decode(frame)
        target = doc
        for key in ("quote", "trade"):
            if isinstance(doc.get(key), dict) and rng.random() < 0.5:
                target = doc[key]
        key = rng.choice(list(target))
        target[key] = confuse(target[key], rng)
        return msgspec.json.encode(doc)
    if kind == 5:  # tag swap, field deletion, unknown field
        doc = msgspec.json.decode(frame)
        r = rng.random()
        if r < 0.4:
            doc["type"] = rng.choice(TAGS)
        elif r < 0.8:
            doc.pop(rng.choice(list(doc)))
        else:
            doc["extra"] = confuse(1, rng)
        return msgspec.json.encode(doc)
    if kind == 6:  # junk inserted
        i = rng.randrange(len(frame) + 1)
        return frame[:i] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 6))) + frame[i:]
    return bytes(rng.randrange(256) for _ in range(rng.randint(0, 64)))  # pure noise


def check_event(e: FeedEvent) -> None:
    if isinstance(e, DeadLetter):
        assert e.reason in REASONS and e.detail and e.source == "ice"
        assert isinstance(e.raw, str) and len(e.raw) <= RAW_MAX
        return
    assert isinstance(e, TradeTick | QuoteTick)
    assert e.instrument_id in REG.ids and REG.get(e.instrument_id).venue == "ICE"
    ints = [e.ts_event, e.ts_recv, e.seq] + ([e.price, e.size] if isinstance(e, TradeTick)
                                             else [e.bid, e.ask, e.bid_size, e.ask_size])
    assert all(type(x) is int and -I64 <= x < I64 for x in ints)
    assert e.seq >= 0 and e.ts_event >= 0
    if isinstance(e, TradeTick):
        assert e.size >= 1
    else:
        assert e.bid_size >= 0 and e.ask_size >= 0


class Counters(msgspec.Struct, frozen=True):
    frames: int
    ticks: int
    dead_letters: int
    decode_errors: int
    buffered: int
    control: int
    snapshots: int


def counters(p: IceProtocol) -> Counters:
    m = p.metrics  # the counters only: FeedMetrics.snapshot() also computes lag quantiles
    return Counters(m.frames, m.ticks, m.dead_letters, m.decode_errors, m.buffered, m.control, m.snapshots)


def live_protocol() -> IceProtocol:
    p = IceProtocol(IceFeedConfig(url="ws://127.0.0.1:1/ice", api_key="k", max_resync_buffer=200,
                                  max_seq_jump=10_000))
    p.connection_made(T0)
    p.receive(encode(LoginAck("S", 100)), T0)
    for sym in SYMBOLS:
        p.receive(encode(Snapshot(sym, 0)), T0)
    p.events()
    p.data_to_send()
    return p


def test_protocol_survives_mutated_frames() -> None:
    rng = random.Random(20260105)
    venue = Venue(rng)
    p = live_protocol()
    delivered: dict[str, list[int]] = defaultdict(list)
    mutated = malformed = valid_mutants = 0
    while mutated < N_MUTATED:
        frame = venue.frame()
        if rng.random() < 0.6:
            frame = mutate(frame, venue.frame(), rng)
            mutated += 1
        try:
            SERVER_DECODER.decode(frame)
            decodes = True
        except DECODE_ERRORS:
            decodes = False
        before = counters(p)
        p.receive(frame, T0 + mutated)
        out = p.events()
        for e in out:
            check_event(e)
            if isinstance(e, TradeTick | QuoteTick) and e.seq > 0:
                delivered[e.instrument_id].append(e.seq)
        after = counters(p)
        assert after.frames == before.frames + 1
        if not decodes:
            # exactly one malformed dead letter, carrying the frame as received
            assert len(out) == 1 and isinstance(out[0], DeadLetter) and out[0].reason == "malformed"
            assert out[0].raw == raw_text(frame) and after.decode_errors == before.decode_errors + 1
            malformed += 1
        else:
            valid_mutants += 1
            # a valid message is used, held, or refused with a reason: never silently lost
            changed = (after.ticks, after.dead_letters, after.buffered, after.control, after.snapshots)
            was = (before.ticks, before.dead_letters, before.buffered, before.control, before.snapshots)
            assert out or changed != was
        p.data_to_send()  # snapshot requests, drained like the runner does
        if rng.random() < 0.002:
            p.poll(T0 + 10**18)  # a resync that never completes times out
            for e in p.events():
                check_event(e)
                if isinstance(e, TradeTick | QuoteTick) and e.seq > 0:
                    delivered[e.instrument_id].append(e.seq)
    # nothing reaches downstream twice, and per instrument it arrives in seq order
    for iid, seqs in delivered.items():
        assert seqs == sorted(set(seqs)), iid
    m = p.metrics.snapshot()
    assert malformed > 0.5 * N_MUTATED and valid_mutants > 0.3 * N_MUTATED  # both paths well exercised
    assert m.decode_errors == malformed and m.gaps > 0 and m.duplicates > 0 and m.ticks > 1000


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    p = live_protocol()
    p.receive(data, T0)
    out = p.events()
    assert len(out) <= 1
    for e in out:
        check_event(e)


@settings(max_examples=150, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
                        st.sampled_from(["type", "symbol", "seq", "ts", "px", "qty", "bid", "ask", "quote"]),
                        inner, max_size=6), max_leaves=12),
       st.sampled_from(TAGS))
def test_arbitrary_json_documents_never_raise(doc: Any, tag: str) -> None:
    if isinstance(doc, dict):
        doc = {"type": tag, **doc}
    p = live_protocol()
    try:
        frame = msgspec.json.encode(doc)
    except (OverflowError, msgspec.EncodeError):
        return  # an int msgspec cannot write: not a frame anyone could send
    p.receive(frame, T0)
    for e in p.events():
        check_event(e)
