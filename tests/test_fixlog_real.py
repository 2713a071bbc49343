"""Acceptance on the recorded FIX logs in shared/data/fix_message_logs (hffix test data; README there):
JSE FIXT.1.1 index market data, a CME-style order-entry session, a QuickFIX FIX 4.1 session.

Expected counts are derived here independently of the codec (a regex split of the byte stream, BodyLength and
CheckSum recomputed by plain Python) and checked against the folder's README table.
"""

from __future__ import annotations

import random
import re
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from feeds.fix.codec import FixMessage, decode_stream, encode_message
from feeds.fix.marketdata import MarketDataConfig
from feeds.fix.session import SessionTracker
from feeds.loaders.fixlog import FixLogConfig, load_fix_log, summary
from market.events import DeadLetter, TradeTick
from market.fixedpoint import to_fixed
from market.instruments import Registry, load_registry

README_TYPES = {
    "fix.5.0.set.1": {"X": 11365, "0": 2523},
    "fix.5.0.set.2": {"A": 16, "5": 14, "D": 15, "0": 18, "1": 1, "2": 1},
    "fix.4.1.set.1": {"A": 2, "0": 2, "D": 3, "8": 5, "F": 2, "3": 2},
}
J200 = """
[[instrument]]
id = "J200.JSE"
venue = "JSE"
symbol = "J200"
name = "FTSE/JSE Top 40 index"
commodity = "equity_index"
price_currency = "ZAR"
price_scale = "1"
quote_unit = "point"
contract_size = "1"
contract_unit = "point"
tick_size = "0.01"
trading_hours = "09:00-17:00"
timezone = "Africa/Johannesburg"
"""


@pytest.fixture(scope="module")
def logs(shared_data: Path) -> Path:
    return shared_data / "fix_message_logs"


def split_naive(data: bytes) -> list[bytes]:
    """Messages by splitting on "8=FIX" at a field boundary (the README's rule)."""
    starts = [m.start() for m in re.finditer(rb"(?:^|(?<=\x01))8=FIX", data)]
    return [data[s:e] for s, e in zip(starts, [*starts[1:], len(data)], strict=True)]


def independent_check(m: bytes) -> tuple[bool, str]:
    """(BodyLength and CheckSum right, MsgType) by plain string handling."""
    m = m.rstrip(b"\r\n")
    body_start = m.index(b"\x01", m.index(b"\x019=") + 1) + 1
    trailer = m.rindex(b"10=")
    declared_len = int(m[m.index(b"\x019=") + 3:body_start - 1])
    ok = declared_len == trailer - body_start and int(m[trailer + 3:trailer + 6]) == sum(m[:trailer]) % 256
    return ok, m.split(b"\x0135=")[1].split(b"\x01")[0].decode()


@pytest.mark.parametrize("name", sorted(README_TYPES))
def test_every_message_validates(logs: Path, name: str) -> None:
    data = (logs / name).read_bytes()
    naive = split_naive(data)
    checks = [independent_check(m) for m in naive]
    assert all(ok for ok, _ in checks)
    items = decode_stream(data)
    messages = [i for i in items if isinstance(i, FixMessage)]
    assert len(messages) == len(items) == len(naive)  # no dead letters in the clean logs
    assert Counter(m.msg_type for m in messages) == Counter(t for _, t in checks) == README_TYPES[name]
    for m, raw in zip(messages, naive, strict=True):
        assert m.raw == raw.rstrip(b"\r\n")
        body_start = m.raw.index(b"\x0135=") + 1
        trailer = m.raw.rindex(b"10=")
        assert m.body_length == trailer - body_start
        assert m.checksum == sum(m.raw[:trailer]) % 256 == int(m.raw[trailer + 3:trailer + 6])


def corrupt(data: bytes, at: int, value: int) -> bytes:
    return data[:at] + bytes([value]) + data[at + 1:]


@pytest.mark.parametrize("name", sorted(README_TYPES))
def test_one_corrupted_byte_fails_exactly_that_message(logs: Path, name: str) -> None:
    data = (logs / name).read_bytes()
    clean = decode_stream(data)
    rng = random.Random(name)
    picks = rng.sample(range(len(clean)), 2)
    for k, where in zip(picks, ("body", "body_length"), strict=True):
        m = clean[k]
        if where == "body":  # a byte inside a field value
            lo, hi = m.raw.index(b"\x0135=") + 4, m.raw.rindex(b"\x0110=")
            at = next(i for i in range(rng.randrange(lo, hi), hi) if m.raw[i] not in b"\x01=")
            expected = "bad_checksum"
        else:  # a BodyLength digit
            at = m.raw.index(b"\x019=") + 3
            expected = "bad_body_length"
        value = ord("7") if m.raw[at] != ord("7") else ord("3")
        broken = decode_stream(corrupt(data, m.offset + at, value))
        assert len(broken) == len(clean)
        assert broken[:k] == clean[:k] and broken[k + 1:] == clean[k + 1:]
        dl = broken[k]
        assert isinstance(dl, DeadLetter) and dl.reason == expected
        assert dl.raw.encode("latin-1") == corrupt(m.raw, at, value)


def test_corruptions_in_context_every_message_of_order_entry_log(logs: Path) -> None:
    """Each message of fix.5.0.set.2 in turn: a checksum digit, then a body byte, in the middle of the log."""
    data = (logs / "fix.5.0.set.2").read_bytes()
    clean = decode_stream(data)
    for k, m in enumerate(clean):
        for at, expected in ((len(m.raw) - 2, "bad_checksum"), (m.raw.index(b"\x0152=") + 5, "bad_checksum")):
            value = ord("0") + (m.raw[at] - ord("0") + 1) % 10
            out = decode_stream(corrupt(data, m.offset + at, value))
            assert [i for j, i in enumerate(out) if j != k] == clean[:k] + clean[k + 1:]
            assert isinstance(out[k], DeadLetter) and out[k].reason == expected


def test_truncated_log_tail(logs: Path) -> None:
    data = (logs / "fix.4.1.set.1").read_bytes()
    clean = decode_stream(data)
    last = clean[-1]
    out = decode_stream(data[:last.offset + 40])
    assert out[:-1] == clean[:-1]
    assert isinstance(out[-1], DeadLetter) and out[-1].reason == "truncated"


def test_jse_duplicates(logs: Path) -> None:
    """The JSE feed repeats 32 messages verbatim right after themselves: 13 market data messages (same
    ApplSeqNum 1181) and 19 heartbeats (no sequence number at all)."""
    data = (logs / "fix.5.0.set.1").read_bytes()
    naive = split_naive(data)
    repeats = [i for i in range(1, len(naive)) if naive[i] == naive[i - 1]]
    assert len(repeats) == 32
    report = load_fix_log(logs / "fix.5.0.set.1")
    assert report.messages == 13888 and report.failures == {}
    assert report.events == {"duplicate": 13, "repeat": 19}
    assert report.duplicates == 32 and report.accepted == 13888 - 32
    assert report.gaps == []
    dups = [d for d in report.dead_letters if d.reason == "duplicate"]
    assert [d.raw.encode("latin-1") for d in dups] == [naive[i] for i in repeats]
    md = [naive[i] for i in repeats if b"\x0135=X\x01" in naive[i]]
    assert len(md) == 13
    [stream] = report.streams.values()
    assert stream.duplicates == 13 and stream.gaps == 0
    assert "duplicates: 32" in summary(report)


def test_order_entry_session_resend_request_no_gaps(logs: Path) -> None:
    report = load_fix_log(logs / "fix.5.0.set.2")
    assert report.accepted == 65 and report.duplicates == 0 and report.gaps == []
    assert report.events == {"resend_request": 1}
    [st] = report.streams.values()
    assert st.next_expected == 66
    tracker = SessionTracker()
    events = [e for m in decode_stream((logs / "fix.5.0.set.2").read_bytes()) for e in tracker.on_message(m).events]
    [rr] = events
    assert (rr.seq, rr.first, rr.last) == (49, 48, 0)  # BeginSeqNo 48 .. EndSeqNo 0 (= infinity)


def test_quickfix_session_both_directions_and_injected_faults(logs: Path) -> None:
    data = (logs / "fix.4.1.set.1").read_bytes()
    report = load_fix_log(logs / "fix.4.1.set.1")
    assert report.separator_bytes == 1  # the file ends with a newline
    assert {k: v.next_expected for k, v in report.streams.items()} == {"FIX.4.1 EXEC->BANZAI": 10,
                                                                       "FIX.4.1 BANZAI->EXEC": 8}
    assert report.duplicates == 0 and report.gaps == []
    msgs = decode_stream(data)
    # drop EXEC's seq 4, replay its seq 5 twice, then resend seq 4 with PossDupFlag=Y
    seq4 = next(m for m in msgs if m.sender_comp_id == "EXEC" and m.seq_num == 4)
    seq5 = next(m for m in msgs if m.sender_comp_id == "EXEC" and m.seq_num == 5)
    resent = encode_message(seq4.begin_string, [seq4.fields[0], (43, "Y"), *seq4.fields[1:]])
    stream = b"".join(m.raw for m in msgs if m is not seq4 and m.offset <= seq5.offset) + seq5.raw + resent
    tracker = SessionTracker()
    kinds = [[e.kind for e in tracker.on_message(m).events] for m in decode_stream(stream)]
    assert [k for k in kinds if k] == [["gap"], ["duplicate"], ["gap_filled"]]
    assert tracker.streams["FIX.4.1 EXEC->BANZAI"].missing == []


def jse_registry(tmp_path: Path) -> Registry:
    path = tmp_path / "instruments.toml"
    path.write_text(textwrap.dedent(J200))
    return load_registry(path)


def test_jse_index_values_become_ticks(logs: Path, tmp_path: Path) -> None:
    registry = jse_registry(tmp_path)
    config = FixLogConfig(marketdata=MarketDataConfig(symbols={"J200": "J200.JSE"}, index_as_trade=True))
    report = load_fix_log(logs / "fix.5.0.set.1", config, registry)
    # independent count over the distinct X messages: entries per (symbol, MDEntryType)
    naive = split_naive((logs / "fix.5.0.set.1").read_bytes())
    distinct = [m for i, m in enumerate(naive) if i == 0 or m != naive[i - 1]]
    def count(messages: list[bytes]) -> Counter[tuple[str, str]]:
        out: Counter[tuple[str, str]] = Counter()
        for m in messages:
            for sym, etype in re.findall(rb"\x0155=([^\x01]*)\x01269=([^\x01]*)\x01", m):
                out[(sym.decode(), etype.decode())] += 1
        return out

    assert sum(v for (s, _), v in count(naive).items() if s == "J200") == 5861  # README, repeats included
    entries = count(distinct)
    index_values = {s: v for (s, t), v in entries.items() if t == "3"}
    assert len(report.ticks) == index_values["J200"] == 2917
    unknown = [d for d in report.dead_letters if d.reason == "unknown_instrument"]
    assert len(unknown) == sum(v for s, v in index_values.items() if s != "J200")
    assert len({d.instrument_id for d in unknown}) == len(index_values) - 1 == 79
    assert report.ignored_entries == {t: sum(v for (_, tt), v in entries.items() if tt == t) for t in ("x", "y")}
    ticks = report.ticks
    assert all(isinstance(t, TradeTick) and t.instrument_id == "J200.JSE" and t.size == 0 for t in ticks)
    assert [t.seq for t in ticks] == sorted({t.seq for t in ticks})  # RptSeq strictly increasing after dedup
    assert ticks[0].price == to_fixed("25929.17")  # 270=25929.169999999996 rounds at 1e-9
    # the feed's MDEntryTime runs ~63 s ahead of its SendingTime (used as ts_recv in replay)
    leads = sorted(t.ts_event - t.ts_recv for t in ticks)
    assert 60e9 < leads[len(leads) // 2] < 66e9
    sending = load_fix_log(logs / "fix.5.0.set.1", FixLogConfig(marketdata=MarketDataConfig(
        symbols={"J200": "J200.JSE"}, index_as_trade=True, event_time="sending")), registry)
    assert all(t.ts_event == t.ts_recv for t in sending.ticks)
