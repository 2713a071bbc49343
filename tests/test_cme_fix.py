"""CME-style FIX market data: schemas, the sans-I/O protocol, and QuickFIX initiator + simulated venue over
loopback. The loopback tests need the `quickfix` package and skip (saying so) only when it cannot be imported."""

from __future__ import annotations

import asyncio
import re
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from feeds.cme.config import CME_INSTRUMENTS, CmeFeedConfig
from feeds.cme.protocol import CmeMdProtocol, redact
from feeds.cme.schemas import (
    SOH,
    EntryType,
    MdDecodeError,
    MdEntry,
    SubscriptionType,
    UpdateAction,
    decode_incremental,
    decode_snapshot,
    entry_fields,
    fix_date_time,
    split_fields,
)
from feeds.common.adapter import FeedEvent
from market.events import DeadLetter, QuoteTick, Side, TradeTick
from market.fixedpoint import PRICE_SCALE

try:
    import quickfix  # noqa: F401

    QF_MISSING = ""
except ImportError as _e:  # the only reason to skip: the loopback tests drive real QuickFIX sessions
    QF_MISSING = f"quickfix cannot be imported ({_e}); install the feeds or test extra"

needs_quickfix = pytest.mark.skipif(bool(QF_MISSING), reason=QF_MISSING or "-")

if TYPE_CHECKING:
    from feeds.cme.client import CmeClient
    from simulators.cme_server import CmeServer

P = PRICE_SCALE
T0 = 1_767_571_200_000_000_000  # 2026-01-05T00:00:00Z
SECRET = "pw-7d1e-not-for-logs"
GAP_DETAIL = re.compile(r"^(\S+) RptSeq (\d+)\.\.(\d+) missing \((\d+)\)")


# -- message builders (raw FIX text, as QuickFIX's Message.toString() gives it) ---------------------------

def _text(fields: list[tuple[int, str]]) -> str:
    return SOH.join(f"{t}={v}" for t, v in fields) + SOH


def _header(mt: str) -> list[tuple[int, str]]:
    return [(8, "FIX.4.4"), (9, "0"), (35, mt), (34, "7"), (49, "CMESIM"), (52, "20260105-00:00:01.000"),
            (56, "COMMODEX")]


def x_msg(*entries: MdEntry) -> str:
    fields = _header("X") + [(262, "sub-1"), (268, str(len(entries)))]
    for e in entries:
        fields += entry_fields(e, incremental=True)
    return _text(fields + [(10, "000")])


def w_msg(symbol: str, rpt_seq: int, *entries: MdEntry) -> str:
    fields = _header("W") + [(262, "sub-1"), (55, symbol), (83, str(rpt_seq)), (268, str(len(entries)))]
    for e in entries:
        fields += entry_fields(e, incremental=False)
    return _text(fields + [(10, "000")])


def bid(sym: str, seq: int, px: int = 71 * P, size: int = 5, ts: int = T0) -> MdEntry:
    return MdEntry(EntryType.BID, sym, seq, px, size, ts + seq, UpdateAction.CHANGE)


def offer(sym: str, seq: int, px: int = 71 * P + P // 100, size: int = 7, ts: int = T0) -> MdEntry:
    return MdEntry(EntryType.OFFER, sym, seq, px, size, ts + seq, UpdateAction.CHANGE)


def trade(sym: str, seq: int, px: int = 71 * P, size: int = 2, side: Side = Side.BUY) -> MdEntry:
    return MdEntry(EntryType.TRADE, sym, seq, px, size, T0 + seq, UpdateAction.NEW, side)


def quote(sym: str, seq: int, px: int = 71 * P) -> tuple[MdEntry, MdEntry]:
    return bid(sym, seq, px), offer(sym, seq, px + P // 100)


def cfg(**kw: Any) -> CmeFeedConfig:
    return CmeFeedConfig.from_dict({"port": 5001, "password": SECRET} | kw)


def logged_on(**kw: Any) -> CmeMdProtocol:
    p = CmeMdProtocol(cfg(**kw))
    p.on_logon(T0)
    return p


def ticks(events: list[FeedEvent]) -> list[TradeTick | QuoteTick]:
    return [e for e in events if isinstance(e, TradeTick | QuoteTick)]


def dead(events: list[FeedEvent], reason: str | None = None) -> list[DeadLetter]:
    return [e for e in events if isinstance(e, DeadLetter) and (reason is None or e.reason == reason)]


# -- schemas ----------------------------------------------------------------------------------------------

def test_entries_round_trip_exactly_with_negative_prices_and_ns_times() -> None:
    entries = (MdEntry(EntryType.BID, "CL", 9, -37_630_000_000, 3, T0 + 123_456_789, UpdateAction.CHANGE),
               MdEntry(EntryType.OFFER, "CL", 9, -37_620_000_000, 0, T0 + 123_456_789, UpdateAction.CHANGE),
               MdEntry(EntryType.TRADE, "GC", 4, 2_650_100_000_001, 1, T0 + 86_399_999_999_999, UpdateAction.NEW,
                       Side.SELL),
               MdEntry(EntryType.BID, "ZW", 5, 0, 0, T0 + 5, UpdateAction.DELETE))
    inc = decode_incremental(split_fields(x_msg(*entries)))
    assert inc.entries == entries
    assert [(e.symbol, e.rpt_seq) for e in inc.events()] == [("CL", 9), ("GC", 4), ("ZW", 5)]
    assert entries[2].to_trade("GC.COMEX", 99) == TradeTick("GC.COMEX", 2_650_100_000_001, 1,
                                                            T0 + 86_399_999_999_999, 99, 4, Side.SELL)


@given(st.integers(min_value=0, max_value=4_102_444_800 * 10**9 - 1))
def test_fix_date_time_is_exact_to_the_nanosecond(ts: int) -> None:
    from feeds.fix.codec import parse_utc_date, parse_utc_time_only

    d, t = fix_date_time(ts)
    assert parse_utc_date(d) + parse_utc_time_only(t) == ts


@given(st.decimals(min_value=Decimal("-999999999.999999999"), max_value=Decimal("999999999.999999999"),
                   places=9, allow_nan=False, allow_infinity=False))
def test_prices_are_exact_fixed_point(d: Decimal) -> None:
    fixed = int(d * P)
    e = decode_incremental(split_fields(x_msg(MdEntry(EntryType.TRADE, "CL", 1, fixed, 1, T0)))).entries[0]
    assert e.price == fixed


@pytest.mark.parametrize(("tag", "value", "why"), [
    (270, "71.2.5", "MDEntryPx"), (270, "1e3", "MDEntryPx"), (270, "NaN", "MDEntryPx"),
    (270, "1.1234567891", "MDEntryPx"), (271, "-1", "MDEntrySize"), (83, "0", "RptSeq"), (83, "x", "RptSeq"),
    (5797, "3", "AggressorSide"), (273, "25:00:00", "UTCTime"), (279, "7", "MDUpdateAction"),
])
def test_contract_violations_do_not_decode(tag: int, value: str, why: str) -> None:
    fields = [(t, value if t == tag else v) for t, v in split_fields(x_msg(trade("CL", 1)))]
    with pytest.raises(MdDecodeError, match=why):
        decode_incremental(fields)


def test_entry_count_and_snapshot_consistency_are_checked() -> None:
    text = x_msg(*quote("CL", 1)).replace("268=2", "268=3")
    with pytest.raises(MdDecodeError, match="NoMDEntries"):
        decode_incremental(split_fields(text))
    with pytest.raises(MdDecodeError, match="later RptSeq"):
        decode_snapshot(split_fields(w_msg("CL", 3, bid("CL", 4), offer("CL", 2))))
    snap = decode_snapshot(split_fields(w_msg("CL", 9, bid("CL", 4), offer("CL", 6), trade("CL", 9))))
    assert snap.quote_seq() == 6
    assert snap.to_quote("CL.NYMEX", 1) == QuoteTick("CL.NYMEX", 71 * P, 71 * P + P // 100, 5, 7, T0 + 6, 1, 6)


def test_config_validates_and_never_shows_the_password() -> None:
    c = cfg()
    assert SECRET not in repr(c) and SECRET not in str(c) and c.redacted()["password"] == "***"
    for bad in ({"port": 0}, {"heartbeat_s": 0}, {"sender_comp_id": "A B"}, {"instruments": ()},
                {"instruments": ("CL.NYMEX", "CL.NYMEX")}, {"target_comp_id": "COMMODEX"}):
        with pytest.raises(ValueError):
            cfg(**bad)
    with pytest.raises(ValueError, match="CME Group"):
        CmeMdProtocol(cfg(instruments=("B.ICE",)))
    assert redact(f"8=FIX.4.4{SOH}554={SECRET}{SOH}10=1{SOH}") == f"8=FIX.4.4{SOH}554=***{SOH}10=1{SOH}"


# -- protocol (sans-I/O) ----------------------------------------------------------------------------------

def test_logon_subscribes_then_snapshot_and_incrementals_become_ticks() -> None:
    p = CmeMdProtocol(cfg())
    p.on_logon(T0)
    (req,) = p.requests()
    assert req.subscription is SubscriptionType.SNAPSHOT_AND_UPDATES and req.market_depth == 1
    assert req.symbols == ("CL", "GC", "ZW") and set(req.entry_types) == {EntryType.BID, EntryType.OFFER,
                                                                            EntryType.TRADE}
    p.receive(w_msg("CL", 4, bid("CL", 3), offer("CL", 3), trade("CL", 4)), 100)
    p.receive(x_msg(*quote("CL", 5, 72 * P)), 101)
    p.receive(x_msg(trade("CL", 6, 72 * P, 3, Side.SELL)), 102)
    out = p.events()
    assert out == [
        QuoteTick("CL.NYMEX", 71 * P, 71 * P + P // 100, 5, 7, T0 + 3, 100, 0),  # baseline state record
        QuoteTick("CL.NYMEX", 72 * P, 72 * P + P // 100, 5, 7, T0 + 5, 101, 5),
        TradeTick("CL.NYMEX", 72 * P, 3, T0 + 6, 102, 6, Side.SELL),
    ]
    assert p.is_live("CL.NYMEX") and p.expected_seq("CL.NYMEX") == 7
    assert p.metrics.snapshot().ticks == 3


def test_rpt_seq_gap_requests_a_snapshot_recovers_what_it_can_and_reports_the_rest() -> None:
    p = logged_on()
    p.requests()
    p.receive(w_msg("GC", 2, *quote("GC", 2)), 1)
    p.receive(x_msg(trade("GC", 3)), 2)
    p.receive(x_msg(*quote("GC", 7, 73 * P)), 3)  # 4, 5, 6 lost
    p.receive(x_msg(trade("GC", 8)), 4)
    assert ticks(p.events()) == [QuoteTick("GC.COMEX", 71 * P, 71 * P + P // 100, 5, 7, T0 + 2, 1, 0),
                                 TradeTick("GC.COMEX", 71 * P, 2, T0 + 3, 2, 3, Side.BUY)]
    (req,) = p.requests()
    assert req.subscription is SubscriptionType.SNAPSHOT and req.symbols == ("GC",)
    # the venue is at 9; its book was set by 9, its last trade is 5 (re-created), 4 and 6 are gone
    p.receive(w_msg("GC", 9, *quote("GC", 9, 74 * P), trade("GC", 5, 72 * P)), 10)
    out = p.events()
    gaps = dead(out, "sequence_gap")
    assert [GAP_DETAIL.match(d.detail).groups() for d in gaps] == [  # type: ignore[union-attr]
        ("GC.COMEX", "4", "4", "1"), ("GC.COMEX", "6", "6", "1")]
    assert [(type(t).__name__, t.seq, t.ts_recv) for t in ticks(out)] == [
        ("TradeTick", 5, 10), ("QuoteTick", 7, 3), ("TradeTick", 8, 4), ("QuoteTick", 9, 10)]
    assert p.expected_seq("GC.COMEX") == 10 and p.is_live("GC.COMEX")
    m = p.metrics.snapshot()
    assert (m.gaps, m.missing, m.recovered, m.resync_requests) == (2, 2, 2, 1)


def test_duplicates_and_reconnect_never_deliver_an_rpt_seq_twice() -> None:
    p = logged_on()
    p.receive(w_msg("ZW", 0), 1)  # nothing published yet: an empty snapshot
    for s in (1, 2, 3):
        p.receive(x_msg(*quote("ZW", s)), 1 + s)
    p.receive(x_msg(*quote("ZW", 2)), 9)
    assert len(dead(p.events(), "duplicate")) == 1
    p.on_logout(20)
    p.on_logon(30)
    assert p.requests()[-1].subscription is SubscriptionType.SNAPSHOT_AND_UPDATES
    p.receive(x_msg(*quote("ZW", 6)), 31)  # ahead of the snapshot: held
    p.receive(w_msg("ZW", 5, *quote("ZW", 5)), 32)  # 4 happened while we were away
    out = p.events()
    assert [t.seq for t in ticks(out)] == [5, 6]
    assert [d.detail.split(";")[0] for d in dead(out, "sequence_gap")] == ["ZW.NYMEX RptSeq 4..4 missing (1)"
                                                                          .replace("NYMEX", "CBOT")]
    assert p.metrics.snapshot().reconnects == 1 and p.session.logons == 2 and p.session.logouts == 1


def test_resync_timeout_releases_held_events_and_re_requests_silent_snapshots() -> None:
    p = logged_on(resync_timeout_ms=100)
    p.requests()
    p.receive(w_msg("CL", 1, *quote("CL", 1)), T0)
    p.receive(x_msg(*quote("CL", 4)), T0 + 1)
    assert p.requests()[0].symbols == ("CL",)
    p.events()
    p.poll(T0 + 200 * 1_000_000)
    out = p.events()
    assert [t.seq for t in ticks(out)] == [4]
    assert "2..3 missing (2); no snapshot within 100 ms" in dead(out, "sequence_gap")[0].detail
    # GC and ZW never got their snapshot and hold nothing: subscribed again
    (again,) = p.requests()
    assert again.subscription is SubscriptionType.SNAPSHOT_AND_UPDATES and again.symbols == ("GC", "ZW")


def test_one_sided_updates_after_a_gap_are_not_guessed() -> None:
    p = logged_on(resync_timeout_ms=100)
    p.receive(w_msg("CL", 1, *quote("CL", 1)), T0)
    p.receive(x_msg(bid("CL", 3, 70 * P)), T0 + 1)  # 2 lost, then only the bid moves
    p.events()
    p.poll(T0 + 200 * 1_000_000)  # released without a snapshot: the offer may have moved in 2
    out = p.events()
    assert not ticks(out) and len(dead(out, "book_unknown")) == 1
    p.receive(x_msg(*quote("CL", 4, 69 * P)), T0 + 2)  # both sides: exact again
    assert [t.seq for t in ticks(p.events())] == [4]


def test_unknown_unsubscribed_malformed_and_venue_rejects_are_dead_letters() -> None:
    p = logged_on(instruments=("CL.NYMEX",))
    p.receive(x_msg(trade("XX", 1)), 1)
    p.receive(x_msg(trade("GC", 1)), 2)
    p.receive(x_msg(trade("CL", 1)).replace("270=71", "270=7x1"), 3)
    p.receive(_text(_header("Y") + [(262, "sub-1"), (281, "0"), (58, "unknown symbol")]), 4)
    p.receive(_text(_header("8") + [(37, "1")]), 5)
    reasons = [d.reason for d in dead(p.events())]
    assert reasons == ["unknown_instrument", "unsubscribed", "malformed", "venue_error", "unsupported_message"]
    p.callback_error("toAdmin", RuntimeError("boom"), f"35=A{SOH}554={SECRET}{SOH}", 6)
    (err,) = p.events()
    assert isinstance(err, DeadLetter) and err.reason == "callback_error" and SECRET not in err.raw


def test_session_admin_messages_are_counted() -> None:
    p = logged_on()
    for mt, extra in (("0", []), ("1", [(112, "t")]), ("2", [(7, "1"), (16, "0")]), ("4", [(123, "Y"), (36, "9")]),
                      ("4", [(123, "N"), (36, "20")]), ("3", [(45, "4"), (58, "bad")])):
        p.receive(_text(_header(mt) + extra), 1)
    p.sent(f"8=FIX.4.4{SOH}35=2{SOH}")
    s = p.session
    assert (s.heartbeats_in, s.test_requests_in, s.resend_requests_in, s.gap_fills_in, s.sequence_resets_in,
            s.session_rejects_in, s.resend_requests_out) == (1, 1, 1, 1, 1, 1, 1)
    assert [d.reason for d in dead(p.events())] == ["venue_error"]


@needs_quickfix
def test_dictionary_adds_the_cme_fields_to_the_stock_fix44(tmp_path: Path) -> None:
    import xml.etree.ElementTree as ET

    from feeds.cme.dictionary import build_cme_dictionary

    root = ET.parse(build_cme_dictionary(tmp_path)).getroot()
    assert any(f.get("number") == "5797" and f.get("name") == "AggressorSide" for f in root.iter("field"))
    comps = {c.get("name"): c for c in root.find("components")}  # type: ignore[union-attr]
    for comp in ("MDIncGrp", "MDFullGrp"):
        names = {f.get("name") for f in comps[comp].find("group")}  # type: ignore[union-attr]
        assert {"RptSeq", "AggressorSide"} <= names
    w = next(m for m in root.find("messages") if m.get("msgtype") == "W")  # type: ignore[union-attr]
    assert any(f.get("name") == "RptSeq" for f in w)
    assert build_cme_dictionary(tmp_path).read_bytes() == (tmp_path / "CME-FIX44.xml").read_bytes()


# -- loopback: QuickFIX initiator <-> simulated venue -----------------------------------------------------

def wait(cond: Callable[[], bool], timeout_s: float, what: str) -> None:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


class Collector:
    """Drains a client's bridge from the test thread."""

    def __init__(self, client: CmeClient) -> None:
        self.client = client
        self.events: list[FeedEvent] = []

    def pump(self) -> list[FeedEvent]:
        self.events.extend(self.client.bridge.drain())
        return self.events

    def seqs(self, iid: str) -> list[int]:
        return [t.seq for t in ticks(self.pump()) if t.instrument_id == iid and t.seq > 0]

    def until(self, cond: Callable[[list[FeedEvent]], bool], timeout_s: float, what: str) -> None:
        wait(lambda: cond(self.pump()), timeout_s, what)


def server_config(tmp: Path, **kw: Any) -> Any:
    from simulators.cme_server import CmeServerConfig

    return CmeServerConfig.from_dict({"store_dir": str(tmp / "venue-store"), "speed": 2.0} | kw)


def client_config(port: int, tmp: Path, **kw: Any) -> CmeFeedConfig:
    return CmeFeedConfig.from_dict({"port": port, "password": SECRET, "store_dir": str(tmp / "client-store"),
                                    "resync_timeout_ms": 1500, "stop_timeout_s": 8.0} | kw)


@pytest.fixture
def venue(tmp_path: Path) -> Iterator[CmeServer]:
    if QF_MISSING:
        pytest.skip(QF_MISSING)
    from simulators.cme_server import CmeServer

    server = CmeServer(server_config(tmp_path, passwords=(SECRET,)))
    server.start()
    try:
        yield server
    finally:
        assert server.stop(), "venue did not stop in time"
    assert server.errors == []


@pytest.fixture
def client(venue: CmeServer, tmp_path: Path) -> Iterator[CmeClient]:
    from feeds.cme.client import CmeClient

    c = CmeClient(client_config(venue.port, tmp_path))
    c.start()
    try:
        yield c
    finally:
        assert c.stop(wait_logout=False), "initiator did not stop in time"
    assert c.application.sink_errors == 0


def truth(server: CmeServer, until_ts: int) -> dict[tuple[str, int], list[TradeTick | QuoteTick]]:
    """What the venue generated per (instrument, RptSeq), as ticks (ts_recv 0)."""
    from simulators.cme_server import venue_events
    from simulators.market import MarketGenerator

    gen = MarketGenerator(server.config.sim.replace(start_ns=server.epoch_ns), server.registry)
    by_symbol = {i.symbol: i.id for i in server.registry}
    out: dict[tuple[str, int], list[TradeTick | QuoteTick]] = {}
    for rows in gen.blocks():
        events, _ = venue_events(rows, gen.names, {i.id: i.symbol for i in server.registry}, server.epoch_ns)
        for ev in events:
            iid = by_symbol[ev.symbol]
            if ev.entries[0].entry_type is EntryType.TRADE:
                out[(iid, ev.rpt_seq)] = [ev.entries[0].to_trade(iid, 0)]
            else:
                b, o = ev.entries
                out[(iid, ev.rpt_seq)] = [QuoteTick(iid, b.price, o.price, b.size, o.size, b.ts_event, 0,
                                                    ev.rpt_seq)]
        if int(rows.ts_event.max()) > until_ts:
            return out
    return out


def check_against_venue(server: CmeServer, events: list[FeedEvent]) -> int:
    got = [t for t in ticks(events) if t.seq > 0]
    want = truth(server, max(t.ts_event for t in got))
    for t in got:
        (w,) = want[(t.instrument_id, t.seq)]
        assert t == type(w)(**{f: getattr(w, f) for f in w.__struct_fields__} | {"ts_recv": t.ts_recv})
    return len(got)


def accounting(events: list[FeedEvent]) -> dict[str, tuple[list[int], list[int]]]:
    """Per instrument: RptSeqs delivered (in order) and RptSeqs reported missing; asserts exact accounting."""
    out: dict[str, tuple[list[int], list[int]]] = defaultdict(lambda: ([], []))
    for e in events:
        if isinstance(e, TradeTick | QuoteTick) and e.seq > 0:
            out[e.instrument_id][0].append(e.seq)
        elif isinstance(e, DeadLetter) and e.reason == "sequence_gap":
            m = GAP_DETAIL.match(e.detail)
            assert m is not None, e.detail
            out[m[1]][1].extend(range(int(m[2]), int(m[3]) + 1))
    for iid, (delivered, gone) in out.items():
        assert delivered == sorted(set(delivered)), f"{iid}: duplicate or out-of-order RptSeq downstream"
        assert not set(delivered) & set(gone), f"{iid}: a delivered RptSeq was reported missing"
        both = sorted(delivered + gone)
        assert both == list(range(both[0], both[-1] + 1)), f"{iid}: a hole nobody reported"
    return out


@needs_quickfix
def test_logon_snapshot_then_incrementals_match_the_generator_and_logout_is_clean(
        venue: CmeServer, client: CmeClient) -> None:
    col = Collector(client)
    assert client.wait_logged_on(10), "no logon"
    col.until(lambda ev: all(len(col.seqs(i)) >= 15 for i in CME_INSTRUMENTS), 20, "15 incrementals each")
    assert client.stop(), "logout did not finish"
    events = col.pump()
    assert check_against_venue(venue, events) >= 45
    # first tick of each instrument: the snapshot's book as a state record (seq 0), equal to the venue's quote
    # of the RptSeq just before the first incremental delivered
    want = truth(venue, max(t.ts_event for t in ticks(events)))
    for iid in CME_INSTRUMENTS:
        mine = [t for t in ticks(events) if t.instrument_id == iid]
        first, nxt = mine[0], mine[1]
        assert isinstance(first, QuoteTick) and first.seq == 0
        prior = [w for (i, s), (w,) in want.items() if i == iid and s < nxt.seq and isinstance(w, QuoteTick)]
        last = max(prior, key=lambda w: w.seq)
        assert (first.bid, first.ask, first.bid_size, first.ask_size, first.ts_event) == (
            last.bid, last.ask, last.bid_size, last.ask_size, last.ts_event)
    acc = accounting(events)
    assert all(not gone for _, gone in acc.values())
    assert dead(events) == []
    s = client.session_counters()
    assert (s.logons, s.logouts, s.callback_errors) == (1, 1, 0)
    wait(lambda: venue.stats.logouts == 1, 5, "the venue to see the logout")
    assert client.application.send_failures == 0


@needs_quickfix
def test_rpt_seq_gap_is_recorded_and_resynced_from_a_snapshot(venue: CmeServer, client: CmeClient) -> None:
    col = Collector(client)
    assert client.wait_logged_on(10)
    col.until(lambda ev: len(col.seqs("CL.NYMEX")) >= 5, 15, "CL incrementals")
    venue.skip_rpt_seq(3, "CL")
    col.until(lambda ev: bool(dead(ev, "sequence_gap")), 15, "a sequence_gap dead letter")
    top = max(s for sym, s in venue.faults.skipped)
    col.until(lambda ev: any(s > top + 3 for s in col.seqs("CL.NYMEX")), 15, "CL live again after the gap")
    events = col.pump()
    skipped = {s for sym, s in venue.faults.skipped if sym == "CL"}
    delivered, gone = accounting(events)["CL.NYMEX"]
    assert set(gone) <= skipped and gone, "missing RptSeqs must be ones the venue skipped"
    assert skipped - set(gone) <= set(delivered), "a skipped RptSeq not reported missing was re-created"
    assert client.metrics().resync_requests >= 1 and venue.stats.snapshots_sent >= 4
    assert check_against_venue(venue, events) > 0
    assert {d.reason for d in dead(events)} == {"sequence_gap"}


@needs_quickfix
@pytest.mark.parametrize("persist", [True, False], ids=["venue-resends", "venue-gap-fills-only"])
def test_sequence_reset_and_resend_request_are_handled_by_the_session(persist: bool, tmp_path: Path) -> None:
    if QF_MISSING:
        pytest.skip(QF_MISSING)
    from feeds.cme.client import CmeClient
    from simulators.cme_server import CmeServer

    venue = CmeServer(server_config(tmp_path, persist_messages=persist))
    venue.start()
    client = CmeClient(client_config(venue.port, tmp_path))
    client.start()
    try:
        _resend_and_reset(venue, client, persist)
    finally:
        assert client.stop(wait_logout=False) and venue.stop()
    assert venue.errors == []


def _resend_and_reset(venue: CmeServer, client: CmeClient, persist: bool) -> None:
    col = Collector(client)
    assert client.wait_logged_on(10)
    col.until(lambda ev: len(col.seqs("GC.COMEX")) >= 3, 15, "GC incrementals")
    venue.skip_msg_seq(5)  # MsgSeqNum jumps: QuickFIX asks for a resend, the venue gap-fills the skipped ones
    wait(lambda: client.session_counters().gap_fills_in >= 1, 15, "a gap fill answering our ResendRequest")
    venue.sequence_reset(20)
    wait(lambda: client.session_counters().sequence_resets_in == 1, 15, "the SequenceReset")
    n = len(col.seqs("GC.COMEX"))
    col.until(lambda ev: len(col.seqs("GC.COMEX")) >= n + 3, 15, "GC incrementals after the reset")
    s = client.session_counters()
    assert s.resend_requests_out >= 1 and s.logons == 1, "the session survived both without a reconnect"
    events = col.pump()
    acc = accounting(events)  # exact either way: every RptSeq delivered once or reported missing once
    if persist:  # messages that arrived during the resend were queued by QuickFIX and processed: nothing lost
        assert all(not gone for _, gone in acc.values()), "no market data was lost"
        assert dead(events) == []
    else:  # the gap fill skipped over them: lost at session level, caught and resynced by RptSeq
        assert {d.reason for d in dead(events)} <= {"sequence_gap"}
    assert client.logged_on
    if persist:  # and a dropped TCP connection (no Logout): QuickFIX reconnects, the snapshots resync
        venue.disconnect()
        wait(lambda: client.session_counters().logons == 2 and client.logged_on, 15, "the reconnect")
        n = len(col.seqs("GC.COMEX"))
        col.until(lambda ev: len(col.seqs("GC.COMEX")) >= n + 3, 15, "GC incrementals after the reconnect")
        accounting(col.pump())
        assert venue.faults.disconnects == 1 and client.metrics().reconnects == 1


@needs_quickfix
@pytest.mark.parametrize("continue_seqs", [False, True], ids=["reset-on-logon", "msg-seq-nums-continue"])
def test_venue_restart_reconnects_and_resyncs(continue_seqs: bool, tmp_path: Path) -> None:
    if QF_MISSING:
        pytest.skip(QF_MISSING)
    from feeds.cme.client import CmeClient
    from simulators.cme_server import CmeServer

    venue = CmeServer(server_config(tmp_path))
    venue.start()
    client = CmeClient(client_config(venue.port, tmp_path, reset_on_logon=not continue_seqs,
                                     persist_messages=continue_seqs))
    client.start()
    again: CmeServer | None = None
    try:
        col = Collector(client)
        assert client.wait_logged_on(10)
        col.until(lambda ev: len(col.seqs("ZW.CBOT")) >= 3, 15, "ZW incrementals")
        before = client.seq_nums()
        assert venue.stop(), "venue did not stop"
        wait(lambda: not client.logged_on, 10, "the client to notice the venue is gone")
        time.sleep(1.0)  # the market moves on while the venue is down
        # same port, store and market epoch: the same market, RptSeqs and (unless reset) MsgSeqNums continue
        again = CmeServer(server_config(tmp_path, port=venue.port, epoch_ns=venue.epoch_ns))
        again.start()
        assert client.wait_logged_on(15), "no reconnect"
        col.until(lambda ev: bool(dead(ev, "sequence_gap")), 15, "the downtime reported as gaps")
        n = len(col.seqs("ZW.CBOT"))
        col.until(lambda ev: len(col.seqs("ZW.CBOT")) > n + 2, 15, "ZW live after the restart")
        events = col.pump()
        acc = accounting(events)
        assert all(gone for _, gone in acc.values()), "every instrument moved while the venue was down"
        assert check_against_venue(again, events) > 0
        assert {d.reason for d in dead(events)} == {"sequence_gap"}
        m, s = client.metrics(), client.session_counters()
        assert m.reconnects >= 1 and s.logons == m.connects and s.logouts == s.logons - 1
        after = client.seq_nums()
        if continue_seqs:
            assert after[0] > before[0] and after[1] > before[1], "MsgSeqNums carried over the restart"
    finally:
        assert client.stop(wait_logout=False)
        assert venue.stop()
        assert again is None or again.stop()
    assert venue.errors == [] and (again is None or again.errors == [])


@needs_quickfix
def test_async_run_delivers_batches_and_a_bad_password_is_refused_without_leaking(venue: CmeServer,
                                                                                   tmp_path: Path) -> None:
    from feeds.cme.client import CmeClient

    async def main() -> tuple[list[FeedEvent], CmeClient]:
        got: list[FeedEvent] = []
        stop = asyncio.Event()
        c = CmeClient(client_config(venue.port, tmp_path / "ok"), on_events=got.extend)
        task = asyncio.create_task(c.run(stop))
        try:
            for _ in range(1000):
                if sum(1 for t in ticks(got) if t.seq > 0) >= 10:
                    break
                await asyncio.sleep(0.02)
        finally:
            stop.set()
            await asyncio.wait_for(task, 15)
        return got, c

    got, c = asyncio.run(main())
    assert sum(1 for t in ticks(got) if t.seq > 0) >= 10 and not c.logged_on
    assert check_against_venue(venue, got) >= 10

    bad = CmeClient(client_config(venue.port, tmp_path / "bad", password="wrong-" + SECRET))
    bad.start()
    try:
        wait(lambda: venue.stats.refused_logons >= 1, 10, "the venue to refuse the logon")
        wait(lambda: bad.session_counters().logon_refusals >= 1, 10, "the client to record the refusal")
        work = bad.work_dir
        assert work is not None
        files = [p for p in work.rglob("*") if p.is_file()] + [
            p for p in (tmp_path / "bad").rglob("*") if p.is_file()]
        assert files and not any(SECRET.encode() in p.read_bytes() for p in files)
        assert not bad.logged_on
    finally:
        assert bad.stop(wait_logout=False)
    refusals = dead(bad.bridge.drain(), "venue_error")
    assert refusals and all(SECRET not in d.raw + d.detail for d in refusals)
