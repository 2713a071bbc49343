"""The ICE batch fast path: the byte scanner (numba kernel and its pure-Python reference, one test class) only
takes frames the typed decoder reads the same way, and `IceProtocol.receive_many` gives exactly the outputs of
`receive` per frame (events, metrics, outbound frames) however the stream is split into batches."""

from __future__ import annotations

import random
from collections.abc import Callable

import msgspec
import numpy as np
import pytest

from feeds.common.sequencer import Sequencer
from feeds.common.wire_types import fixed_from_decimal
from feeds.fix.codec import encode_message
from feeds.ice.config import IceFeedConfig
from feeds.ice.fastpath import KIND_QUOTE, KIND_TRADE, SIDE_BUY, SIDE_NONE, SIDE_SELL, scan_updates, scan_updates_py
from feeds.ice.protocol import IceProtocol
from feeds.ice.schemas import DECODE_ERRORS, SERVER_DECODER, LoginAck, QuoteUpdate, Snapshot, TradeUpdate, encode
from market.columns import TickColumns
from market.events import QuoteTick, Side, TradeTick
from market.instruments import default_registry
from tests.test_feed_fuzz import Venue, mutate

SYMBOLS = ("CT", "B", "SB", "KC")
T0 = 1_767_571_200_000_000_000
REG = default_registry()
IMPLS: dict[str, Callable[..., int]] = {"python": scan_updates_py, "numba": scan_updates}
SIDE_CODE = {"B": SIDE_BUY, "S": SIDE_SELL, "N": SIDE_NONE}


class Scan(msgspec.Struct):
    taken: int  # frames taken before the scan stopped
    rows: list[tuple[int, ...]]  # (stream, kind, ts, seq, price, size, bid, ask, bid_size, ask_size, aggressor)
    expected: list[int]


def scan(impl: str, frames: list[bytes], expected: list[int] | None = None, begin: int = 0) -> Scan:
    n = len(frames)
    buf = np.frombuffer(b"".join(frames) or b"\0", dtype=np.uint8)
    lens = np.array([len(f) for f in frames], dtype=np.int64)
    ends = np.cumsum(lens)
    starts = ends - lens
    sym_bytes = np.frombuffer("".join(SYMBOLS).encode(), dtype=np.uint8)
    sym_off = np.zeros(len(SYMBOLS) + 1, dtype=np.int64)
    sym_off[1:] = np.cumsum([len(s) for s in SYMBOLS])
    sym_inst = np.array([REG.index_of(f"{s}.ICE") for s in SYMBOLS], dtype=np.int32)
    exp = np.array(expected if expected is not None else [1] * len(SYMBOLS), dtype=np.int64)
    inst = np.zeros(n, np.int32)
    kind = np.zeros(n, np.int8)
    aggr = np.zeros(n, np.int8)
    stream = np.zeros(n, np.int32)
    i64 = [np.zeros(n, np.int64) for _ in range(8)]
    taken = IMPLS[impl](buf, starts, ends, begin, sym_bytes, sym_off, sym_inst, exp, inst, kind, i64[0], i64[1],
                        *i64[2:], aggr, stream)
    rows = []
    for i in range(begin, taken):
        assert inst[i] == sym_inst[stream[i]]
        rows.append((int(stream[i]), int(kind[i]), *(int(a[i]) for a in i64), int(aggr[i])))
    return Scan(taken - begin, rows, exp.tolist())


def expected_row(frame: bytes) -> tuple[int, ...] | None:
    """What the typed decoder makes of a frame, as a scan row (None: not an update it accepts)."""
    try:
        msg = SERVER_DECODER.decode(frame)
    except DECODE_ERRORS:
        return None
    if type(msg) not in (TradeUpdate, QuoteUpdate) or msg.symbol not in SYMBOLS:  # type: ignore[union-attr]
        return None
    if type(msg) is TradeUpdate:
        return (SYMBOLS.index(msg.symbol), KIND_TRADE, msg.ts, msg.seq, fixed_from_decimal(msg.px), msg.qty, 0, 0, 0,
                0, SIDE_CODE[msg.side])
    if type(msg) is QuoteUpdate:
        return (SYMBOLS.index(msg.symbol), KIND_QUOTE, msg.ts, msg.seq, 0, 0, fixed_from_decimal(msg.bid),
                fixed_from_decimal(msg.ask), msg.bid_qty, msg.ask_qty, SIDE_NONE)
    return None


def trade(sym: str = "CT", seq: int = 1, px: str = "71.26", qty: int = 2, side: str = "B") -> bytes:
    return encode(TradeUpdate(sym, seq, T0 + seq, px, qty, side))  # type: ignore[arg-type]


def quote(sym: str = "CT", seq: int = 1, bid: str = "71.25", ask: str = "71.27") -> bytes:
    return encode(QuoteUpdate(sym, seq, T0 + seq, bid, ask, 5, 7))


def in_order_updates(rng: random.Random, n: int) -> list[bytes]:
    seq = dict.fromkeys(SYMBOLS, 0)
    out = []
    for _ in range(n):
        sym = rng.choice(SYMBOLS)
        seq[sym] += 1
        px = f"{rng.choice(['', '-'])}{rng.randint(0, 999_999_999)}" + rng.choice(
            ["", f".{rng.randint(0, 999_999_999):09d}", f".{rng.randint(0, 9)}"])
        if rng.random() < 0.5:
            out.append(trade(sym, seq[sym], px, rng.randint(1, 2**63 - 1), rng.choice("BSN")))
        else:
            out.append(encode(QuoteUpdate(sym, seq[sym], rng.randint(0, 2**63 - 1), px, "0.000000001",
                                          rng.randint(0, 2**63 - 1), 0)))
    return out


@pytest.mark.parametrize("impl", ["numba", "python"])
class TestScanUpdates:
    def test_in_order_updates_are_taken_with_the_decoders_values(self, impl: str) -> None:
        frames = in_order_updates(random.Random(7), 400)
        out = scan(impl, frames)
        assert out.taken == len(frames)
        assert out.rows == [expected_row(f) for f in frames]
        assert out.expected == [1 + sum(r[0] == j for r in out.rows) for j in range(len(SYMBOLS))]

    def test_key_order_and_missing_default_side(self, impl: str) -> None:
        frames = [b'{"seq":1,"symbol":"B","px":"-37.63","ts":5,"qty":3,"type":"trade"}',
                  b'{"ask_qty":0,"bid":"1","type":"quote","ask":"2.5","ts":0,"bid_qty":9,"seq":2,"symbol":"B"}']
        out = scan(impl, frames)
        assert out.taken == 2 and out.rows == [expected_row(f) for f in frames]
        assert out.rows[0][4] == -37_630_000_000 and out.rows[0][10] == SIDE_NONE

    @pytest.mark.parametrize("frame", [
        b'{"type":"trade","symbol":"CT","seq":1,"ts":1,"px":"1","qty":1,"side":"B"} ',  # trailing whitespace
        b'{ "type":"trade","symbol":"CT","seq":1,"ts":1,"px":"1","qty":1}',  # whitespace
        b'{"type":"trade","symbol":"C\\u0054","seq":1,"ts":1,"px":"1","qty":1}',  # escape
        b'{"type":"trade","symbol":"CT","seq":1,"ts":1,"px":"1","qty":1,"venue":"x"}',  # unknown key
        b'{"type":"trade","symbol":"CT","seq":1,"ts":1,"px":"1","qty":1,"qty":1}',  # repeated key
        b'{"type":"trade","symbol":"CT","seq":01,"ts":1,"px":"1","qty":1}',  # leading zero
        b'{"type":"trade","symbol":"CT","seq":1,"ts":9223372036854775808,"px":"1","qty":1}',  # > int64
        b'{"type":"trade","symbol":"CT","seq":1,"ts":-1,"px":"1","qty":1}',  # negative int
        b'{"type":"trade","symbol":"CT","seq":1,"ts":1.0,"px":"1","qty":1}',  # float
        b'{"type":"trade","symbol":"CT","seq":1,"ts":1,"px":"1.0000000001","qty":1}',  # 10 fraction digits
        b'{"type":"trade","symbol":"CT","seq":1,"ts":1,"px":"1234567890","qty":1}',  # 10 integer digits
        b'{"type":"trade","symbol":"CT","seq":1,"ts":1,"px":"1.","qty":1}',
        b'{"type":"trade","symbol":"CT","seq":1,"ts":1,"px":".5","qty":1}',
        b'{"type":"trade","symbol":"CT","seq":1,"ts":1,"px":"+1","qty":1}',
        b'{"type":"trade","symbol":"CT","seq":1,"ts":1,"px":1,"qty":1}',  # number price
        b'{"type":"trade","symbol":"CT","seq":1,"ts":1,"px":"1","qty":0}',  # a trade of nothing
        b'{"type":"trade","symbol":"CT","seq":1,"ts":1,"px":"1","qty":1,"side":"X"}',
        b'{"type":"trade","symbol":"CT","seq":1,"ts":1,"px":"1","qty":1,"side":"BB"}',
        b'{"type":"trade","symbol":"CT","seq":1,"ts":1,"px":"1"}',  # missing qty
        b'{"type":"trade","symbol":"CT","seq":1,"ts":1,"px":"1","qty":1,"bid":"1"}',  # a quote field
        b'{"type":"quote","symbol":"CT","seq":1,"ts":1,"bid":"1","ask":"1","bid_qty":1}',  # missing ask_qty
        b'{"type":"quote","symbol":"CT","seq":1,"ts":1,"bid":"1","ask":"1","bid_qty":1,"ask_qty":1,"side":"B"}',
        b'{"type":"heartbeat","ts":1}',
        b'{"type":"trades","symbol":"CT","seq":1,"ts":1,"px":"1","qty":1}',
        b'{"type":"trade","symbol":"XX","seq":1,"ts":1,"px":"1","qty":1}',  # not subscribed
        b'{"type":"trade","symbol":"CT","seq":0,"ts":1,"px":"1","qty":1}',
        b'{"type":"trade","symbol":"CT","seq":1,"ts":1,"px":"1","qty":1',  # truncated
        b'{"type":"trade","symbol":"CT","seq":1,"ts":1,"px":"1","qty":1,}',
        b'["trade"]', b"{}", b"", b"}",
    ])
    def test_anything_else_is_left_to_the_exact_path(self, impl: str, frame: bytes) -> None:
        good = trade("CT", 1)
        out = scan(impl, [good, frame, trade("CT", 2)])
        assert out.taken == 1 and out.expected[0] == 2

    def test_stops_at_an_out_of_order_seq_or_a_stream_that_is_not_live(self, impl: str) -> None:
        frames = [quote("B", 5), quote("B", 6), quote("B", 8), quote("B", 7)]
        out = scan(impl, frames, [1, 5, 1, 1])
        assert out.taken == 2 and out.expected == [1, 7, 1, 1]
        assert scan(impl, frames, [1, 7, 1, 1], begin=3).taken == 1  # resumes where asked
        assert scan(impl, frames, [1, -1, 1, 1]).taken == 0

    def test_whatever_it_takes_the_decoder_reads_the_same(self, impl: str) -> None:
        rng = random.Random(11)
        venue = Venue(rng)
        n = 3000 if impl == "numba" else 600
        taken = 0
        for _ in range(n):
            frame = venue.frame()
            if rng.random() < 0.8:
                frame = mutate(frame, venue.frame(), rng)
            row = expected_row(frame)
            out = scan(impl, [frame], [row[3] if row else 1] * len(SYMBOLS))
            if out.taken:
                taken += 1
                assert out.rows == [row], frame
        assert taken > n // 20  # the property was exercised


# -- the protocol: receive_many == receive per frame ---------------------------------------------------------

def live_protocol() -> IceProtocol:
    p = IceProtocol(IceFeedConfig(url="ws://127.0.0.1:1/ice", api_key="k", max_resync_buffer=50,
                                  max_seq_jump=10_000))
    p.connection_made(T0)
    p.receive(encode(LoginAck("S", 100)), T0)
    for sym in SYMBOLS:
        p.receive(encode(Snapshot(sym, 0)), T0)
    p.events()
    p.data_to_send()
    return p


def traffic(seed: int, n: int, mutated: float) -> list[bytes]:
    rng = random.Random(seed)
    venue = Venue(rng)
    out = []
    for _ in range(n):
        f = venue.frame()
        out.append(mutate(f, venue.frame(), rng) if rng.random() < mutated else f)
    return out


def cuts(rng: random.Random, n: int) -> list[tuple[int, int]]:
    bounds = sorted({0, n, *(rng.randrange(n + 1) for _ in range(rng.randint(0, n // 20 + 1)))})
    return list(zip(bounds, bounds[1:], strict=False))


@pytest.mark.parametrize("seed,mutated", [(1, 0.0), (2, 0.05), (3, 0.3)])
def test_receive_many_equals_receive_per_frame(seed: int, mutated: float) -> None:
    frames = traffic(seed, 3000, mutated)
    recv = [T0 + 1000 * i for i in range(len(frames))]
    one, many = live_protocol(), live_protocol()
    ev_one: list[object] = []
    ev_many: list[object] = []
    out_one: list[bytes] = []
    out_many: list[bytes] = []
    for a, b in cuts(random.Random(seed), len(frames)):
        for f, t in zip(frames[a:b], recv[a:b], strict=True):
            one.receive(f, t)
        many.receive_many(frames[a:b], recv[a:b])
        if b % 3 == 0:  # a resync that never completes times out, at the same point in both
            one.poll(T0 + 10**18)
            many.poll(T0 + 10**18)
        ev_one += one.events()
        ev_many += many.events()
        out_one += one.data_to_send()
        out_many += many.data_to_send()
    assert ev_many == ev_one and out_many == out_one
    assert many.metrics.snapshot() == one.metrics.snapshot()
    assert sum(isinstance(e, TradeTick | QuoteTick) for e in ev_one) > 1000


def test_drain_gives_the_events_as_columns() -> None:
    frames = traffic(4, 2000, 0.1)
    a, b = live_protocol(), live_protocol()
    a.receive_many(frames, T0)
    b.receive_many(frames, T0)
    events = a.events()
    batch = b.drain()
    ticks = [e for e in events if isinstance(e, TradeTick | QuoteTick)]
    expect = TickColumns.from_ticks(ticks, REG)  # type: ignore[arg-type]
    assert all(np.array_equal(getattr(batch.columns, f), getattr(expect, f)) for f in TickColumns.DTYPES)
    sides = {Side.BUY: SIDE_BUY, Side.SELL: SIDE_SELL, Side.NONE: SIDE_NONE}
    assert batch.aggressor.tolist() == [sides[t.aggressor] if isinstance(t, TradeTick) else SIDE_NONE
                                        for t in ticks]
    assert batch.dead_letters == [e for e in events if not isinstance(e, TradeTick | QuoteTick)]
    assert len(b.drain().columns) == 0 and b.events() == []


def test_receive_many_takes_text_frames_and_checks_receive_times() -> None:
    p, q = live_protocol(), live_protocol()
    frames = [trade("CT", 1), quote("KC", 1).decode()]
    p.receive_many(frames, T0)
    for f in frames:
        q.receive(f, T0)
    assert p.events() == q.events() and len(q.metrics.snapshot().feed) > 0
    with pytest.raises(ValueError, match="entries"):
        p.receive_many(frames, [T0])


def test_sequencer_batch_advance() -> None:
    s: Sequencer[int] = Sequencer()
    s.await_snapshot("a")
    s.on_snapshot("a", 4)
    s.await_snapshot("b")
    assert s.live_expected(["a", "b", "c"]) == [5, -1, -1]
    s.advance("a", 9)
    assert s.expected("a") == 9 and s.on_update("a", 9, 0) is not None
    for stream, to in (("a", 3), ("b", 1), ("c", 1)):
        with pytest.raises(ValueError, match="advance"):
            s.advance(stream, to)


FIELD_PARTS = ["35=X", "35=0", "34=7", "34=x7", "34=", "52=20240102-03:04:05.678", "49=A", "43=Y", "55=J200",
               "270=1=2", "=5", "035=X", "0=1", "1234567890=1", "123456789=v", "12", "5=\u00e9", "10=000", "268=1"]


# -- CME: split_fields and entry times with their caches equal the plain parse -------------------------------

def test_cme_split_fields_and_entry_time_match_the_plain_parse() -> None:
    from feeds.cme.schemas import MdDecodeError, _entry_time, split_fields
    from feeds.fix.codec import parse_utc_date, parse_utc_time_only

    def plain_split(raw: str) -> list[tuple[int, str]] | None:
        out = []
        for part in raw.split("\x01"):
            if not part:
                continue
            tag, sep, value = part.partition("=")
            if not sep or not tag.isascii() or not tag.isdigit():
                return None
            out.append((int(tag), value))
        return out

    def plain_time(d: str, t: str) -> int | None:
        try:
            return parse_utc_date(d) + parse_utc_time_only(t)
        except ValueError:
            return None

    rng = random.Random(5)
    for _ in range(2000):
        raw = "\x01".join(rng.choice(FIELD_PARTS + ["", "0035=1", "\u00b2=1"]) for _ in range(rng.randint(0, 5)))
        try:
            got: list[tuple[int, str]] | None = split_fields(raw)
        except MdDecodeError:
            got = None
        assert got == plain_split(raw), raw
        d = rng.choice(["20260105", "20261305", "2026010", "19700101"])
        t = rng.choice(["00:00:01", "23:59:60", "24:00:00", "12:3a:00", "1:00:00"]) + rng.choice(
            ["", ".1", ".123", ".123456", ".123456789", ".12345678", ".12x", "x123", ".\u0661\u0662\u0663"])
        try:
            when: int | None = _entry_time({272: d, 273: t}, "e")
        except MdDecodeError:
            when = None
        assert when == plain_time(d, t), (d, t)


# -- Coinbase (the bench's like-for-like decoder) against a json.loads + Decimal reading of the capture -------

def test_coinbase_normalizer_on_the_capture() -> None:
    import json
    from decimal import Decimal

    from bench.bench_feeds import CAPTURE, CoinbaseNormalizer, coinbase_messages

    if not CAPTURE.is_dir():
        pytest.skip(f"capture folder {CAPTURE} absent")
    messages = coinbase_messages()
    ours = CoinbaseNormalizer()
    for ts, text in messages:
        ours.on_message(text, ts)
    assert not ours.dead
    books: dict[str, tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]] = {}
    trades = []
    for _, text in messages:
        d = json.loads(text)
        if d["type"] == "snapshot":
            books[d["product_id"]] = ({Decimal(p): Decimal(q) for p, q in d["bids"]},
                                      {Decimal(p): Decimal(q) for p, q in d["asks"]})
        elif d["type"] == "l2update":
            for side, p, q in d["changes"]:
                levels = books[d["product_id"]][0 if side == "buy" else 1]
                if Decimal(q):
                    levels[Decimal(p)] = Decimal(q)
                else:
                    levels.pop(Decimal(p), None)
        elif d["type"] in ("match", "last_match"):
            trades.append((d["product_id"], Decimal(d["price"]), Decimal(d["size"]), d["sequence"]))
    scale = Decimal(10**9)

    def fixed(levels: dict[Decimal, Decimal]) -> dict[int, int]:
        return {int(p * scale): int(q * scale) for p, q in levels.items()}

    assert set(ours.books) == set(books) and len(books) == 10
    for product, (bids, asks) in books.items():
        assert ours.books[product] == (fixed(bids), fixed(asks)), product
    got = [(t.instrument_id, t.price, t.size, t.seq) for t in ours.ticks if isinstance(t, TradeTick)]
    assert got == [(p, int(px * scale), int(q * scale), s) for p, px, q, s in trades]
    assert ours.book_updates + ours.tickers + ours.trades + 3 == len(messages)  # + 3 subscription acks
    bad = CoinbaseNormalizer()
    bad.on_message('{"type":"l2update","product_id":"X","changes":[],"time":"2021-04-17T16:43:37Z"}', 1)
    bad.on_message('{"type":"match","trade_id":1,"side":"buy","size":"1","price":"1e5","product_id":"X",'
                   '"sequence":1,"time":"2021-04-17T16:43:37Z"}', 2)
    assert [d.reason for d in bad.dead] == ["malformed", "malformed"] and not bad.ticks


# -- FIX: the batch scanner (kernel + reference) and the splitter with and without it -----------------------

def fix_msg(i: int, extra: tuple[tuple[int, str], ...] = (), begin: str = "FIX.4.4",
            time: str = "20240102-03:04:05.678") -> bytes:
    from feeds.fix.codec import encode_message

    return encode_message(begin, [(35, "X"), (34, str(i)), (49, "A"), (52, time), (56, "B"), (43, "N"),
                                  (55, "J200"), (270, f"{i}.5"), *extra])


def fix_stream(seed: int, n: int) -> bytes:
    """Clean messages with every kind of damage in between."""
    rng = random.Random(seed)
    out = []
    for i in range(1, n + 1):
        m = fix_msg(i, time=f"20240102-03:{i // 60 % 60:02d}:{i % 60:02d}" + rng.choice(["", ".1", ".123", ".123456"]))
        r = rng.random()
        if r < 0.04:
            b = bytearray(m)
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
            m = bytes(b)
        elif r < 0.06:
            m = m[:rng.randrange(len(m))]
        elif r < 0.07:
            m = fix_msg(i, ((58, "x8=FIX.4.4"),))
        elif r < 0.08:
            m = fix_msg(i, ((18, "8=FIXED"),))
        elif r < 0.09:
            m = fix_msg(i, begin="FIX.9.9")
        elif r < 0.10:
            m = fix_msg(i, time="20240102-03:04:99")
        elif r < 0.11:
            m = fix_msg(i, ((34, "7a"),))
        elif r < 0.12:
            m = fix_msg(i, ((0, "1"),))
        elif r < 0.13:
            m = b"junk" + m
        out.append(m + rng.choice([b"", b"", b"\r\n", b"\n"]))
    return b"".join(out)


def split(data: bytes, sizes: list[int], fast: bool, monkeypatch: pytest.MonkeyPatch) -> tuple[list[object], object]:
    import feeds.fix.codec as codec

    monkeypatch.setattr(codec, "_FAST_MIN_BYTES", 0)  # even the smallest chunk takes the scanner first
    sp = codec.FixSplitter(codec.FixCodecConfig(batch_scan=fast))
    out: list[object] = []
    pos = 0
    for k in sizes:
        out += sp.feed(data[pos:pos + k], 5)
        pos += k
    out += sp.feed(data[pos:], 5)
    out += sp.finish(5)
    return out, sp.stats


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fix_splitter_with_the_scanner_equals_item_by_item(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    from feeds.fix.codec import FixMessage

    data = fix_stream(seed, 1500)
    rng = random.Random(seed)
    ref, ref_stats = split(data, [], fast=False, monkeypatch=monkeypatch)
    assert sum(isinstance(x, FixMessage) for x in ref) > 1000 and len(ref) > sum(isinstance(x, FixMessage) for x in ref)
    for sizes in ([], [rng.randint(1, 3000) for _ in range(200)], [rng.randint(500, 700) for _ in range(300)]):
        got, stats = split(data, sizes, fast=True, monkeypatch=monkeypatch)
        assert got == ref and stats == ref_stats


def wrong_body_length(m: bytes, delta: int) -> bytes:
    """The message with BodyLength off by `delta` and the CheckSum recomputed (so only the length is wrong)."""
    from feeds.fix.codec import checksum

    head, rest = m.split(b"\x019=", 1)
    digits, rest = rest.split(b"\x01", 1)
    body = rest[:rest.rindex(b"10=")]
    out = head + b"\x019=" + str(int(digits) + delta).encode() + b"\x01" + body
    return out + b"10=%03d\x01" % checksum(out)


def fix_scan(impl: str, data: bytes, pos: int = 0, max_bytes: int = 1 << 20) -> tuple[int, int, int, np.ndarray,
                                                                                      list[tuple[int, str]]]:
    from feeds.fix.fastsplit import scan_messages, scan_messages_py

    fn = {"python": scan_messages_py, "numba": scan_messages}[impl]
    arr = np.frombuffer(data or b"\0", dtype=np.uint8)[:len(data)]
    cap = data.count(b"\x01") + 1
    msg = np.zeros((cap, 9), np.int64)
    hdr = np.zeros((cap, 5), np.int64)
    ftag, fstart, fend = (np.zeros(cap, np.int64) for _ in range(3))
    seps = np.zeros(256, np.bool_)
    seps[[10, 13]] = True
    k, stop, n_sep = fn(arr, pos, max_bytes, seps, msg, hdr, ftag, fstart, fend)
    nf = int(msg[k - 1, 7] + msg[k - 1, 8]) if k else 0
    fields = [(int(ftag[j]), data[fstart[j]:fend[j]].decode("latin-1")) for j in range(nf)]
    return int(k), int(stop), int(n_sep), msg[:k], fields


@pytest.mark.parametrize("impl", ["numba", "python"])
class TestFixScan:
    def test_clean_messages_framed_and_tokenized_like_the_codec(self, impl: str) -> None:
        from feeds.fix.codec import FixSplitter

        data = b"\r\n".join(fix_msg(i) for i in range(1, 40)) + b"\n"
        k, stop, n_sep, msg, fields = fix_scan(impl, data)
        ref = FixSplitter().decode_all(data)
        assert k == len(ref) == 39 and stop == len(data) and n_sep == 2 * 38 + 1
        assert [tuple(r) for r in msg[:, :2].tolist()] == [(m.offset, m.offset + len(m.raw)) for m in ref]
        assert msg[:, 4].tolist() == [m.body_length for m in ref] and msg[:, 5].tolist() == [m.checksum for m in ref]
        assert fields == [f for m in ref for f in m.fields]

    @pytest.mark.parametrize("bad", [
        fix_msg(1)[:-2] + b"9\x01",  # checksum
        wrong_body_length(fix_msg(1), +1),
        wrong_body_length(fix_msg(1), -1),
        fix_msg(1, ((58, "a8=FIX.4.4"),)),
        fix_msg(1, ((18, "8=FIX"),)),
        encode_message("FIX.4.4", [(35, "X"), (55, "")]),  # empty value
        encode_message("FIX.4.4", [(35, "X"), (55, "1"), (1, "\x01")]),  # SOH in a value
        fix_msg(1, ((34, "1x"),)),
        fix_msg(1, ((0, "1"),)),
        fix_msg(1)[:-1],  # incomplete
        b"8=FIX.4.4\x019=5\x0134=1\x0110=000\x01",  # MsgType not first (checksum wrong too)
        b"junk",
    ])
    def test_stops_where_the_exact_path_must_decide(self, impl: str, bad: bytes) -> None:
        good = fix_msg(7)
        k, stop, _, _, _ = fix_scan(impl, good + bad + good)
        assert k == 1 and stop == len(good)

    def test_max_message_bytes_and_resume_position(self, impl: str) -> None:
        data = fix_msg(1) + fix_msg(2)
        assert fix_scan(impl, data, max_bytes=len(fix_msg(1)) - 1)[:2] == (0, 0)
        k, stop, *_ = fix_scan(impl, data, pos=len(fix_msg(1)))
        assert (k, stop) == (1, len(data))


# -- decimal strings -> fixed point in bulk (kernel + reference) against the one-at-a-time rule --------------

PRICE_TEXTS = ["0", "-0", "1", "71.25", "-37.63", "999999999.999999999", "-999999999.999999999", "0.000000001",
               "00012.5000", "1234567890", "1.0000000001", "", "-", ".5", "5.", "+1", "1e5", "NaN", "1_0", " 1", "1 ",
               "1.2.3", "--1", "\u0661", "12a"]


@pytest.mark.parametrize("impl", ["numba", "python"])
class TestDecimalBatch:
    def test_each_text_like_fixed_from_decimal_and_the_price_pattern(self, impl: str) -> None:
        import re

        from feeds.common.decimal_batch import parse_fixed, parse_fixed_py

        fn = parse_fixed if impl == "numba" else parse_fixed_py
        pattern = re.compile(r"-?[0-9]{1,9}(\.[0-9]{1,9})?")
        rng = random.Random(3)
        for _ in range(300):
            texts = [rng.choice(PRICE_TEXTS) for _ in range(rng.randint(1, 6))]
            texts = [t for t in texts if t.isascii()]
            if not texts:
                continue
            joined = "".join(texts).encode()
            ends = np.cumsum([len(t) for t in texts]).astype(np.int64)
            out = np.zeros(len(texts), np.int64)
            k = fn(np.frombuffer(joined or b"\0", np.uint8), ends, out)
            first_bad = next((i for i, t in enumerate(texts) if pattern.fullmatch(t) is None), len(texts))
            assert k == first_bad, texts
            assert out[:k].tolist() == [fixed_from_decimal(t) for t in texts[:k]]


def test_fixed_from_decimals_names_the_bad_text() -> None:
    from feeds.common.decimal_batch import fixed_from_decimals

    assert fixed_from_decimals(["71.25", "-37.63", "5"]) == [71_250_000_000, -37_630_000_000, 5_000_000_000]
    assert fixed_from_decimals([]) == []
    for bad in (["1", "1e5"], ["\u0661"], ["1", ""]):
        with pytest.raises(ValueError, match=repr(bad[-1])):
            fixed_from_decimals(bad)
