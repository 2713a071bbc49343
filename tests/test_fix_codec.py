"""FIX framing codec, sequence tracking and market data conversion on synthetic streams (real logs:
tests/test_fixlog_real.py)."""

from __future__ import annotations

import random

import pytest

from feeds.fix.codec import (
    FixCodecConfig,
    FixMessage,
    FixSplitter,
    checksum,
    decode_stream,
    encode_message,
    parse_utc_time_only,
    parse_utc_timestamp,
)
from feeds.fix.marketdata import MarketDataConfig, MarketDataConverter
from feeds.fix.session import SeqEventKind, SessionConfig, SessionTracker
from market.events import DeadLetter, QuoteTick, Side, TradeTick
from market.fixedpoint import to_fixed
from market.instruments import default_registry
from market.timeutil import parse_iso

REASONS = {"bad_checksum", "bad_body_length", "truncated", "garbage", "bad_begin_string", "malformed"}


def msg(seq: int, msg_type: str = "0", sender: str = "A", target: str = "B", extra: tuple = (),
        begin: str = "FIX.4.4", time: str = "20240102-03:04:05.678") -> bytes:
    fields = [(35, msg_type), (34, str(seq)), (49, sender), (52, time), (56, target), *extra]
    return encode_message(begin, fields)


def raw_of(item: FixMessage | DeadLetter) -> bytes:
    return item.raw if isinstance(item, FixMessage) else item.raw.encode("latin-1")


def decode_chunked(data: bytes, sizes: list[int], config: FixCodecConfig | None = None) -> tuple[list, FixSplitter]:
    sp = FixSplitter(config)
    out = []
    pos = 0
    for k in sizes:
        out += sp.feed(data[pos:pos + k])
        pos += k
    out += sp.feed(data[pos:])
    out += sp.finish()
    return out, sp


def assert_conserved(data: bytes, items: list, sp: FixSplitter) -> None:
    """Every input byte is in exactly one output, in order (separators counted)."""
    assert sum(len(raw_of(i)) for i in items) + sp.stats.separator_bytes == len(data)
    joined = b"".join(raw_of(i) for i in items)
    if not sp.stats.separator_bytes:
        assert joined == data


class TestFraming:
    def test_round_trip_header_fields(self) -> None:
        data = msg(7, "D", extra=((55, "GC"), (43, "Y")))
        [m] = decode_stream(data)
        assert isinstance(m, FixMessage)
        assert (m.begin_string, m.msg_type, m.seq_num, m.sender_comp_id, m.target_comp_id) == ("FIX.4.4", "D", 7,
                                                                                               "A", "B")
        assert m.poss_dup is True
        assert m.sending_time == parse_iso("2024-01-02T03:04:05.678Z")
        assert m.get(55) == "GC" and m.get(999) is None
        assert m.fields[0] == (35, "D")
        assert m.raw == data and m.offset == 0
        body_start = data.index(b"\x0135=") + 1
        assert m.body_length == data.index(b"10=", body_start) - body_start
        assert m.checksum == checksum(data[:data.index(b"10=", body_start)])

    def test_tags_above_9999_and_repeated_tags(self) -> None:
        data = encode_message("FIXT.1.1", [(35, "X"), (20001, "a"), (55, "X1"), (55, "X2")])
        [m] = decode_stream(data)
        assert isinstance(m, FixMessage)
        assert m.get(20001) == "a" and m.get_all(55) == ["X1", "X2"]

    def test_offsets_and_stream_order(self) -> None:
        parts = [msg(i) for i in range(1, 6)]
        items = decode_stream(b"".join(parts))
        assert [m.seq_num for m in items] == [1, 2, 3, 4, 5]
        assert [m.offset for m in items] == [sum(len(p) for p in parts[:i]) for i in range(5)]

    def test_separators_between_messages_are_counted_not_dropped(self) -> None:
        data = msg(1) + b"\r\n" + msg(2) + b"\n"
        items, sp = decode_chunked(data, [])
        assert [type(i) for i in items] == [FixMessage, FixMessage]
        assert sp.stats.separator_bytes == 3
        assert_conserved(data, items, sp)


def corrupt(data: bytes, at: int, value: int) -> bytes:
    return data[:at] + bytes([value]) + data[at + 1:]


class TestRejects:
    """One broken message between two good ones: exactly it fails, with the reason its damage implies."""

    def around(self, broken: bytes) -> tuple[list, bytes]:
        data = msg(1) + broken + msg(3)
        return decode_stream(data), data

    def only_middle_fails(self, broken: bytes, reason: str) -> DeadLetter:
        items, data = self.around(broken)
        assert [type(i) for i in items] == [FixMessage, DeadLetter, FixMessage], items
        assert items[0].seq_num == 1 and items[2].seq_num == 3
        assert items[1].reason == reason, items[1]
        assert items[1].raw.encode("latin-1") == broken
        return items[1]

    def test_body_byte_changed_is_bad_checksum(self) -> None:
        good = msg(2, extra=((58, "hello"),))
        at = good.index(b"hello") + 1
        for value in (ord("E"), 0x00, 0xFF, ord("="), SOH_BYTE):
            dl = self.only_middle_fails(corrupt(good, at, value), "bad_checksum")
            assert "computed" in dl.detail

    def test_body_length_digit_changed(self) -> None:
        good = msg(2)
        at = good.index(b"\x019=") + 3
        for value in b"0123456789x":
            if value == good[at]:
                continue
            self.only_middle_fails(corrupt(good, at, value), "bad_body_length")

    def test_checksum_digit_changed(self) -> None:
        good = msg(2)
        at = good.rindex(b"10=") + 4
        for value in (ord("0") + (good[at] - ord("0") + 1) % 10, ord("x")):
            self.only_middle_fails(corrupt(good, at, value), "bad_checksum")

    def test_final_soh_changed_is_bad_checksum(self) -> None:
        good = msg(2)
        self.only_middle_fails(corrupt(good, len(good) - 1, ord("|")), "bad_checksum")

    def test_missing_checksum_field_is_truncated(self) -> None:
        good = msg(2)
        self.only_middle_fails(good[:good.rindex(b"10=")], "truncated")
        self.only_middle_fails(corrupt(good, good.rindex(b"10=") + 2, ord("x")), "truncated")

    def test_truncated_at_end_of_stream(self) -> None:
        good = msg(2)
        for cut in (3, 12, len(good) // 2, len(good) - 1):
            items = decode_stream(msg(1) + good[:cut])
            assert [type(i) for i in items] == [FixMessage, DeadLetter]
            assert items[1].reason == "truncated" and items[1].raw.encode("latin-1") == good[:cut]

    def test_garbage_between_messages(self) -> None:
        dl = self.only_middle_fails(b"hello\x01world 8=FIX but not at a field boundary", "garbage")
        assert dl.source == "fix.codec"
        self.only_middle_fails(corrupt(msg(2), 0, ord("9")), "garbage")  # "9=FIX...": not a start

    def test_bad_begin_string(self) -> None:
        self.only_middle_fails(msg(2, begin="FIX.9.9"), "bad_begin_string")
        items = decode_stream(msg(1, begin="FIX.9.9"), FixCodecConfig(begin_strings=("FIX.9.9",)))
        assert isinstance(items[0], FixMessage)

    def test_malformed_fields_with_valid_frame(self) -> None:
        for fields in ([(35, "0"), (34, "x1")],  # MsgSeqNum not a number
                       [(34, "2"), (35, "0")],  # MsgType not first
                       [(35, "0"), (52, "2024-01-02 03:04:05")],  # SendingTime format
                       [(35, "0"), (58, "")]):  # empty value
            self.only_middle_fails(encode_message("FIX.4.4", fields), "malformed")
        body = b"35=0\x01abc=1\x01"  # non-numeric tag, frame and checksum right
        head = b"8=FIX.4.4\x019=" + str(len(body)).encode() + b"\x01" + body
        self.only_middle_fails(head + f"10={checksum(head):03d}\x01".encode(), "malformed")

    def test_dead_letter_ts_recv_is_last_good_sending_time_or_given(self) -> None:
        items, _ = self.around(b"junk")
        assert items[1].ts_recv == items[0].sending_time
        sp = FixSplitter()
        assert sp.feed(b"junk" + msg(1), ts_recv=42)[0].ts_recv == 42


SOH_BYTE = 0x01


def mixed_stream(seed: int, n: int = 60) -> bytes:
    """Valid messages with every kind of damage in between."""
    rng = random.Random(seed)
    out = b""
    for i in range(n):
        good = msg(i + 1, extra=((58, "x" * rng.randint(0, 40)),))
        r = rng.random()
        if r < 0.6:
            out += good
        elif r < 0.7:
            out += corrupt(good, rng.randrange(len(good)), rng.randrange(256))
        elif r < 0.8:
            out += good[:rng.randrange(1, len(good))]
        elif r < 0.9:
            out += bytes(rng.randrange(256) for _ in range(rng.randint(1, 30)))
        else:
            out += good + b"\r\n"
    return out


class TestStreaming:
    @pytest.mark.parametrize("seed", range(6))
    def test_output_independent_of_chunking(self, seed: int) -> None:
        data = mixed_stream(seed)
        whole, sp = decode_chunked(data, [])
        assert_conserved(data, whole, sp)
        rng = random.Random(seed)
        for max_chunk in (1, 7, 100):
            sizes = [rng.randint(1, max_chunk) for _ in range(len(data) // max(1, max_chunk // 2))]
            parts, sp2 = decode_chunked(data, sizes)
            assert parts == whole
            assert sp2.stats.separator_bytes == sp.stats.separator_bytes

    def test_small_max_message_bytes_bounds_items_and_keeps_chunk_independence(self) -> None:
        config = FixCodecConfig(max_message_bytes=80)
        data = b"z" * 500 + msg(1) + b"8=FIX.4.4\x019=999\x01" + b"y" * 300 + msg(2, extra=((58, "q" * 70),))
        whole, sp = decode_chunked(data, [], config)
        assert_conserved(data, whole, sp)
        assert all(len(raw_of(i)) <= 80 for i in whole)
        assert any(isinstance(i, FixMessage) and i.seq_num == 1 for i in whole)
        rng = random.Random(3)
        for _ in range(5):
            parts, _ = decode_chunked(data, [rng.randint(1, 40) for _ in range(60)], config)
            assert parts == whole

    def test_wait_for_rest_of_message(self) -> None:
        data = msg(1)
        sp = FixSplitter()
        assert sp.feed(data[:-1]) == []
        [m] = sp.feed(data[-1:])
        assert isinstance(m, FixMessage)
        assert sp.finish() == []


def mutate(data: bytes, rng: random.Random) -> bytes:
    kind = rng.randrange(9)
    n = len(data)
    at = rng.randrange(n)
    if kind == 8:  # swap two body bytes: length and checksum still right, field syntax may not be
        lo = data.index(b"\x0135=") + 1
        hi = data.rindex(b"10=")
        i, j = rng.randrange(lo, hi), rng.randrange(lo, hi)
        out = bytearray(data)
        out[i], out[j] = out[j], out[i]
        return bytes(out)
    if kind == 0:
        return corrupt(data, at, rng.randrange(256))
    if kind == 1:
        return data[:at] + bytes([rng.randrange(256)]) + data[at:]
    if kind == 2:
        return data[:at] + data[at + 1:]
    if kind == 3:
        return data[:at]
    if kind == 4:
        j = rng.randrange(at, n)
        return data[:j] + data[at:j] + data[j:]
    if kind == 5:
        return data[:at] + rng.choice([b"\x01", b"8=FIX.4.4\x01", b"\x0110=", b"9=", b"="]) + data[at:]
    if kind == 6:
        return bytes(rng.randrange(256) for _ in range(rng.randint(0, 60)))
    out = bytearray(data)
    for _ in range(rng.randint(2, 6)):
        out[rng.randrange(n)] = rng.randrange(256)
    return bytes(out)


class TestFuzz:
    def test_10000_mutated_messages_never_crash_and_lose_no_byte(self) -> None:
        rng = random.Random(20240102)
        templates = [msg(i, t, extra=extra) for i, (t, extra) in enumerate([
            ("0", ()), ("D", ((55, "GC"), (44, "1925.5"), (38, "3"))), ("X", ((268, "1"), (279, "0"), (55, "CL"),
                                                                             (269, "2"), (270, "71.5"))),
            ("A", ((98, "0"), (108, "30"), (141, "Y"))), ("4", ((36, "9"), (123, "Y"))),
        ], start=1)]
        prefix = msg(100)
        reasons: set[str] = set()
        for i in range(10_000):
            bad = mutate(rng.choice(templates), rng)
            data = prefix + bad
            sp = FixSplitter()
            if i % 2:
                items = sp.feed(data) + sp.finish()
            else:
                cut = rng.randrange(len(data) + 1)
                items = sp.feed(data[:cut]) + sp.feed(data[cut:]) + sp.finish()
            assert all(isinstance(x, FixMessage | DeadLetter) for x in items)
            assert isinstance(items[0], FixMessage) and items[0].raw == prefix  # damage never reaches back
            assert_conserved(data, items, sp)
            for x in items:
                if isinstance(x, DeadLetter):
                    assert x.reason in REASONS
                    reasons.add(x.reason)
        assert reasons == REASONS


class TestTimestamps:
    def test_utc_timestamp_precisions(self) -> None:
        base = parse_iso("2011-11-24T05:33:31Z")
        assert parse_utc_timestamp("20111124-05:33:31") == base
        assert parse_utc_timestamp("20111124-05:33:31.763") == base + 763_000_000
        assert parse_utc_timestamp("20111124-05:33:31.763123") == base + 763_123_000
        assert parse_utc_timestamp("20111124-05:33:31.763123456") == base + 763_123_456
        assert parse_utc_time_only("07:00:00.000") == 7 * 3600 * 10**9

    @pytest.mark.parametrize("text", ["20111124-05:33", "20111324-05:33:31", "20111124-25:00:00",
                                      "20111124 05:33:31", "20111124-05:33:31.7", "2011112x-05:33:31",
                                      "20111124-05:33:31.76a"])
    def test_bad_timestamps(self, text: str) -> None:
        with pytest.raises(ValueError):
            parse_utc_timestamp(text)


def decoded(*parts: bytes) -> list[FixMessage]:
    items = decode_stream(b"".join(parts))
    assert all(isinstance(i, FixMessage) for i in items)
    return items  # type: ignore[return-value]


class TestSession:
    def kinds(self, tracker: SessionTracker, messages: list[FixMessage]) -> list[tuple[bool, list[str]]]:
        out = []
        for m in messages:
            v = tracker.on_message(m)
            out.append((v.accept, [e.kind for e in v.events]))
        return out

    def test_in_order_gap_duplicate_poss_dup_and_late_fill(self) -> None:
        t = SessionTracker()
        res = self.kinds(t, decoded(msg(1), msg(2), msg(5), msg(2), msg(3, extra=((43, "Y"),)),
                                    msg(3, extra=((43, "Y"),)), msg(6)))
        assert res == [(True, []), (True, []), (True, ["gap"]), (False, ["duplicate"]), (True, ["gap_filled"]),
                       (False, ["poss_dup"]), (True, [])]
        st = t.streams["FIX.4.4 A->B"]
        assert st.missing == [[4, 4]] and st.gaps == 1 and st.missing_total == 2 and st.duplicates == 2

    def test_gap_event_range(self) -> None:
        t = SessionTracker()
        t.on_message(decoded(msg(10))[0])
        [gap] = t.on_message(decoded(msg(14))[0]).events
        assert (gap.kind, gap.first, gap.last, gap.expected, gap.seq) == ("gap", 11, 13, 11, 14)

    def test_sessions_are_tracked_separately(self) -> None:
        t = SessionTracker()
        res = self.kinds(t, decoded(msg(1, sender="A", target="B"), msg(1, sender="B", target="A"),
                                    msg(2, sender="A", target="B"), msg(2, sender="B", target="A")))
        assert res == [(True, [])] * 4
        assert set(t.streams) == {"FIX.4.4 A->B", "FIX.4.4 B->A"}

    def test_sequence_reset_gap_fill_clears_missing(self) -> None:
        t = SessionTracker()
        self.kinds(t, decoded(msg(1), msg(5)))
        assert t.streams["FIX.4.4 A->B"].missing == [[2, 4]]
        res = self.kinds(t, decoded(msg(2, "4", extra=((43, "Y"), (36, "4"), (123, "Y"))), msg(4), msg(6)))
        assert res == [(True, ["gap_fill"]), (True, ["gap_filled"]), (True, [])]
        assert t.streams["FIX.4.4 A->B"].missing == []

    def test_sequence_reset_mode_and_logon_reset(self) -> None:
        t = SessionTracker()
        res = self.kinds(t, decoded(msg(1), msg(2), msg(3, "4", extra=((36, "100"),)), msg(100),
                                    msg(1, "A", extra=((141, "Y"),)), msg(2)))
        assert res == [(True, []), (True, []), (True, ["sequence_reset"]), (True, []), (True, ["logon_reset"]),
                       (True, [])]

    def test_resend_request_is_reported(self) -> None:
        t = SessionTracker()
        [(ok, kinds)] = self.kinds(t, decoded(msg(1, "2", extra=((7, "48"), (16, "0")))))
        assert ok and kinds == ["resend_request"]
        assert t.counts[SeqEventKind.RESEND_REQUEST] == 1

    def test_appl_seq_num_and_unsequenced_repeats(self) -> None:
        def md(n: int) -> bytes:
            return encode_message("FIXT.1.1", [(35, "X"), (52, "20111124-06:58:56.460"), (1180, "F1"),
                                               (1181, str(n)), (268, "0")])

        hb = encode_message("FIXT.1.1", [(35, "0"), (52, "20111124-06:58:56.460"), (1180, "F1")])
        t = SessionTracker()
        res = self.kinds(t, decoded(hb, hb, md(1), md(1), md(3), hb, md(4), hb))
        assert res == [(True, []), (False, ["repeat"]), (True, []), (False, ["duplicate"]), (True, ["gap"]),
                       (True, []), (True, []), (True, [])]
        assert list(t.streams) == ["FIXT.1.1 -> appl F1"]
        assert not SessionTracker(SessionConfig(detect_repeats=False)).on_message(decoded(hb)[0]).events

    def test_snapshot_restore_continues_identically(self) -> None:
        messages = decoded(*(msg(s) for s in (1, 2, 5, 3, 3, 9, 4, 10, 10)))
        whole = SessionTracker()
        expect = [whole.on_message(m) for m in messages]
        first = SessionTracker()
        got = [first.on_message(m) for m in messages[:4]]
        resumed = SessionTracker.restore(SessionConfig(), first.snapshot())
        got += [resumed.on_message(m) for m in messages[4:]]
        assert got == expect
        assert resumed.streams == whole.streams


def md_message(entries: list[list[tuple[int, str]]], msg_type: str = "X", head: tuple = (),
               time: str = "20240102-14:30:00.000") -> FixMessage:
    fields = [(35, msg_type), (52, time), *head, (268, str(len(entries)))]
    for e in entries:
        fields += e
    [m] = decoded(encode_message("FIXT.1.1", fields))
    return m


class TestMarketData:
    config = MarketDataConfig(symbols={"GCZ4": "GC.COMEX", "CLF5": "CL.NYMEX"})

    def conv(self, **kw: object) -> MarketDataConverter:
        return MarketDataConverter(MarketDataConfig.from_dict({**self.config.to_dict(), **kw}), default_registry())

    def test_trades_quotes_and_unknown_symbols(self) -> None:
        c = self.conv()
        m = md_message([
            [(279, "0"), (269, "0"), (55, "GCZ4"), (270, "2650.1"), (271, "5"), (273, "14:29:59.500"), (83, "7")],
            [(279, "0"), (269, "1"), (55, "GCZ4"), (270, "2650.3"), (271, "2"), (273, "14:29:59.600"), (83, "8")],
            [(279, "0"), (269, "2"), (55, "GCZ4"), (270, "2650.2"), (271, "1"), (5797, "2"), (83, "9")],
            [(279, "0"), (269, "2"), (55, "ZZZ"), (270, "1"), (271, "1")],
            [(279, "0"), (269, "B"), (55, "GCZ4"), (271, "900")],
        ])
        out = c.on_message(m, ts_recv=123)
        day = parse_iso("2024-01-02T00:00:00Z")
        trade, dead, quote = out
        assert trade == TradeTick(instrument_id="GC.COMEX", price=to_fixed("2650.2"), size=1,
                                  ts_event=m.sending_time, ts_recv=123, seq=9, aggressor=Side.SELL)
        assert isinstance(dead, DeadLetter) and dead.reason == "unknown_instrument" and "ZZZ" in dead.detail
        assert quote == QuoteTick(instrument_id="GC.COMEX", bid=to_fixed("2650.1"), ask=to_fixed("2650.3"),
                                  bid_size=5, ask_size=2, ts_event=day + parse_utc_time_only("14:29:59.600"),
                                  ts_recv=123, seq=8)
        assert c.ignored == {"B": 1}

    def test_one_sided_book_gives_no_quote_until_both_sides(self) -> None:
        c = self.conv()
        bid = [(279, "0"), (269, "0"), (55, "CLF5"), (270, "-37.63"), (271, "1")]
        assert c.on_message(md_message([bid]), 1) == []
        [q] = c.on_message(md_message([[(279, "0"), (269, "1"), (55, "CLF5"), (270, "-37.5"), (271, "4")]]), 2)
        assert (q.bid, q.ask) == (to_fixed("-37.63"), to_fixed("-37.5"))  # negative prices are valid
        assert c.on_message(md_message([[(279, "2"), (269, "1"), (55, "CLF5")]]), 3) == []  # ask deleted

    def test_snapshot_replaces_book(self) -> None:
        c = self.conv()
        c.on_message(md_message([[(269, "0"), (55, "GCZ4"), (270, "1"), (271, "1")],
                                 [(269, "1"), (55, "GCZ4"), (270, "2"), (271, "1")]]), 1)
        w = md_message([[(269, "0"), (270, "10"), (271, "3")]], "W", head=((55, "GCZ4"),))
        assert c.on_message(w, 2) == []  # the snapshot holds a bid only: the old ask is gone
        w2 = md_message([[(269, "0"), (270, "10"), (271, "3")], [(269, "1"), (270, "11"), (271, "4")]], "W",
                        head=((55, "GCZ4"),))
        [q] = c.on_message(w2, 3)
        assert (q.bid, q.ask, q.bid_size, q.ask_size) == (to_fixed(10), to_fixed(11), 3, 4)

    def test_malformed_entries(self) -> None:
        c = self.conv()
        out = c.on_message(md_message([[(269, "2"), (55, "GCZ4"), (270, "1e3"), (271, "1")],
                                       [(269, "2"), (55, "GCZ4"), (271, "1")],
                                       [(269, "2"), (55, "GCZ4"), (270, "5"), (273, "25:00:00")]]), 1)
        assert [d.reason for d in out] == ["malformed"] * 3
        fields = [(35, "X"), (52, "20240102-14:30:00.000"), (268, "2"), (269, "2"), (55, "GCZ4"), (270, "1")]
        [m] = decoded(encode_message("FIXT.1.1", fields))
        [d] = c.on_message(m, 1)
        assert d.reason == "malformed" and "NoMDEntries" in d.detail

    def test_index_values_and_sending_time_and_midnight(self) -> None:
        entry = [(279, "0"), (55, "GCZ4"), (269, "3"), (270, "25929.169999999996"), (273, "23:59:59.000")]
        m = md_message([entry], time="20240103-00:00:02.000")
        assert self.conv().on_message(m, 1) == []
        [t] = self.conv(index_as_trade=True).on_message(m, 1)
        assert t.price == to_fixed("25929.17") and t.size == 0
        assert t.ts_event == parse_iso("2024-01-02T23:59:59Z")  # sent after midnight, happened before
        [t2] = self.conv(index_as_trade=True, event_time="sending").on_message(m, 1)
        assert t2.ts_event == m.sending_time

    def test_unmapped_registry_id_is_a_config_error(self) -> None:
        with pytest.raises(ValueError, match="not in the registry"):
            MarketDataConverter(MarketDataConfig(symbols={"X": "NOPE.X"}), default_registry())
