"""The ICE-style venue adapter: schemas, config, the sans-I/O protocol, and client + simulator over loopback."""

from __future__ import annotations

import asyncio
import logging
import re
from collections import defaultdict
from decimal import Decimal

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from feeds.common.adapter import FeedEvent, FeedFatal
from feeds.ice.client import IceClient
from feeds.ice.config import ICE_INSTRUMENTS, IceFeedConfig
from feeds.ice.protocol import IceProtocol
from feeds.ice.schemas import (
    CLIENT_DECODER,
    SERVER_DECODER,
    Error,
    Heartbeat,
    Login,
    LoginAck,
    QuoteUpdate,
    SnapQuote,
    Snapshot,
    SnapshotRequest,
    SnapTrade,
    Subscribe,
    SubscribeAck,
    TradeUpdate,
    Unsubscribe,
    UnsubscribeAck,
    decimal_from_fixed,
    encode,
    fixed_from_decimal,
)
from market.events import DeadLetter, QuoteTick, Side, TradeTick
from market.fixedpoint import PRICE_SCALE
from simulators.config import SimConfig
from simulators.ice_server import IceServer, IceServerConfig, venue_rows
from simulators.market import MarketGenerator

KEY = "test-key-5f1c"
T0 = 1_767_571_200_000_000_000
P = PRICE_SCALE


def cfg(**kw: object) -> IceFeedConfig:
    base: dict[str, object] = {"url": "ws://127.0.0.1:1/ice", "api_key": KEY}
    return IceFeedConfig.from_dict(base | kw)


def decode_all(frames: list[bytes]) -> list[object]:
    return [CLIENT_DECODER.decode(f) for f in frames]


def live_protocol(**kw: object) -> IceProtocol:
    """A protocol logged in and subscribed, every symbol snapshotted at seq 10 (nothing emitted kept)."""
    p = IceProtocol(cfg(**kw))
    p.connection_made(T0)
    p.receive(encode(LoginAck("S1", 1000)), T0)
    for sym in ("CT", "B", "SB", "KC"):
        p.receive(encode(Snapshot(sym, 10)), T0)
    p.events()
    p.data_to_send()
    return p


def quote(sym: str, seq: int, bid: str = "71.25", ask: str = "71.27") -> bytes:
    return encode(QuoteUpdate(sym, seq, T0 + seq, bid, ask, 5, 7))


def trade(sym: str, seq: int, px: str = "71.26") -> bytes:
    return encode(TradeUpdate(sym, seq, T0 + seq, px, 2, "B"))


def dead(events: list[FeedEvent], reason: str | None = None) -> list[DeadLetter]:
    return [e for e in events if isinstance(e, DeadLetter) and (reason is None or e.reason == reason)]


def ticks(events: list[FeedEvent]) -> list[TradeTick | QuoteTick]:
    return [e for e in events if isinstance(e, TradeTick | QuoteTick)]


# -- schemas and config ----------------------------------------------------------------------------------


def test_every_message_round_trips() -> None:
    server = [LoginAck("S", 100), SubscribeAck(1, ["CT"]), UnsubscribeAck(2, ["CT"]),
              Snapshot("CT", 9, SnapQuote(8, T0, "1.5", "1.6", 1, 2), SnapTrade(9, T0, "1.55", 3, "S")),
              Snapshot("KC", 0), TradeUpdate("CT", 1, T0, "-37.63", 1), QuoteUpdate("CT", 2, T0, "0", "0.01", 0, 1),
              Heartbeat(T0), Error("unknown_symbol", "no", "XX", 3)]
    for m in server:
        assert SERVER_DECODER.decode(encode(m)) == m
    client = [Login(KEY, 100), Subscribe(1, ["CT", "B"]), Unsubscribe(2, ["B"]), SnapshotRequest(3, "CT"),
              Heartbeat(T0)]
    for m in client:
        assert CLIENT_DECODER.decode(encode(m)) == m


def test_updates_normalize_to_exact_ticks() -> None:
    t = TradeUpdate("CT", 4, T0, "-37.63", 3, "S").to_trade("CT.ICE", T0 + 9)
    assert t == TradeTick("CT.ICE", -37_630_000_000, 3, T0, T0 + 9, 4, Side.SELL)
    q = QuoteUpdate("KC", 5, T0, "312.05", "312.1", 2, 0).to_quote("KC.ICE", T0 + 1)
    assert q == QuoteTick("KC.ICE", 312_050_000_000, 312_100_000_000, 2, 0, T0, T0 + 1, 5)
    snap = Snapshot("CT", 9, SnapQuote(8, T0, "1", "2", 1, 1), None)
    assert snap.to_quote("CT.ICE", 5) == QuoteTick("CT.ICE", P, 2 * P, 1, 1, T0, 5, 8)
    assert snap.to_quote("CT.ICE", 5, seq=0).seq == 0 and snap.to_trade("CT.ICE", 5) is None  # type: ignore[union-attr]


@given(st.decimals(min_value=Decimal("-999999999.999999999"), max_value=Decimal("999999999.999999999"),
                   places=9, allow_nan=False, allow_infinity=False))
def test_decimal_prices_are_exact(d: Decimal) -> None:
    fixed = int(d.scaleb(9))
    text = decimal_from_fixed(fixed)
    assert fixed_from_decimal(text) == fixed
    assert Decimal(text) == d
    assert SERVER_DECODER.decode(trade("CT", 1, text)).px == text  # the venue pattern accepts what we write


@pytest.mark.parametrize("field, value", [
    ("seq", 0), ("seq", "5"), ("seq", 2**63), ("px", "1e3"), ("px", "1.2345678901"), ("px", "1234567890"),
    ("px", 71.25), ("px", "NaN"), ("px", " 1"), ("qty", 0), ("qty", -1), ("side", "X"), ("symbol", ""),
    ("ts", -1), ("px", "1.5\n"),
])
def test_contract_violations_do_not_decode(field: str, value: object) -> None:
    doc = msgspec.json.decode(trade("CT", 1))
    doc[field] = value
    with pytest.raises((msgspec.ValidationError, msgspec.DecodeError)):
        SERVER_DECODER.decode(msgspec.json.encode(doc))


def test_config_validates_and_never_shows_the_key(caplog: pytest.LogCaptureFixture) -> None:
    c = cfg()
    for text in (repr(c), str(c), f"{c}", repr([c]), repr(Login(KEY, 100)), str(c.redacted())):
        assert KEY not in text
    assert c.api_key == KEY and c.to_dict()["api_key"] == KEY  # the value itself is still usable
    with pytest.raises(ValueError):
        cfg(api_key="")
    with pytest.raises(ValueError):
        cfg(url="http://x")
    with pytest.raises(ValueError):
        cfg(stale_after_ms=500, heartbeat_ms=500)
    with pytest.raises(msgspec.ValidationError):
        cfg(heartbeat_msec=5)
    with pytest.raises(ValueError, match="not an ICE instrument"):
        IceProtocol(cfg(instruments=("GC.COMEX",)))


# -- sans-I/O protocol ---------------------------------------------------------------------------------


def test_login_subscribe_snapshot_then_incrementals() -> None:
    p = IceProtocol(cfg(instruments=("CT.ICE", "KC.ICE"), heartbeat_ms=250))
    p.connection_made(T0)
    (login,) = decode_all(p.data_to_send())
    assert login == Login(KEY, 250)
    p.receive(encode(LoginAck("S1", 250)), T0 + 1)
    (sub,) = decode_all(p.data_to_send())
    assert isinstance(sub, Subscribe) and sub.symbols == ["CT", "KC"]
    assert p.logged_in and p.session == "S1" and p.events() == []
    p.receive(encode(SubscribeAck(sub.req_id, ["CT", "KC"])), T0 + 2)
    p.receive(encode(Snapshot("CT", 41, SnapQuote(40, T0 - 5, "70", "70.02", 3, 4), SnapTrade(41, T0 - 1, "70.01",
                                                                                                1, "B"))), T0 + 3)
    # the first snapshot: its quote as a state record (seq 0), the old trade is history, not emitted
    assert p.events() == [QuoteTick("CT.ICE", 70 * P, 70_020_000_000, 3, 4, T0 - 5, T0 + 3, 0)]
    p.receive(quote("CT", 42), T0 + 100)
    p.receive(trade("CT", 43), T0 + 101)
    assert p.events() == [QuoteTick("CT.ICE", 71_250_000_000, 71_270_000_000, 5, 7, T0 + 42, T0 + 100, 42),
                          TradeTick("CT.ICE", 71_260_000_000, 2, T0 + 43, T0 + 101, 43, Side.BUY)]
    snap = p.metrics.snapshot()
    assert snap.ticks == 3 and snap.gaps == 0 and snap.lag_samples == 2 and snap.lag_p50_ms == pytest.approx(58e-6)
    # KC has no snapshot yet: its updates wait
    p.receive(quote("KC", 7), T0 + 102)
    assert p.events() == [] and p.metrics.buffered == 1 and not p.is_live("KC.ICE")


def test_gap_requests_a_snapshot_and_reports_what_it_cannot_recover() -> None:
    p = live_protocol()
    p.receive(quote("CT", 11), T0)
    p.receive(trade("CT", 14), T0 + 1)  # 12 and 13 lost
    p.receive(quote("CT", 15), T0 + 2)
    out = p.events()
    assert [t.seq for t in ticks(out)] == [11]
    (req,) = decode_all(p.data_to_send())
    assert isinstance(req, SnapshotRequest) and req.symbol == "CT"
    # the snapshot's last quote is 13: re-created; 12 is gone; 16 was published but not yet seen
    p.receive(encode(Snapshot("CT", 16, SnapQuote(13, T0 + 13, "70.5", "70.6", 1, 1), None)), T0 + 3)
    out = p.events()
    assert [t.seq for t in ticks(out)] == [13, 14, 15]
    assert ticks(out)[0] == QuoteTick("CT.ICE", 70_500_000_000, 70_600_000_000, 1, 1, T0 + 13, T0 + 3, 13)
    gaps = dead(out, "sequence_gap")
    assert [g.detail.split(";")[0] for g in gaps] == ["CT.ICE seq 12..12 missing (1)", "CT.ICE seq 16..16 missing (1)"]
    assert all(g.instrument_id == "CT.ICE" and g.source == "ice" and '"snapshot"' in g.raw for g in gaps)
    m = p.metrics
    assert (m.gaps, m.missing, m.recovered, m.resync_requests) == (2, 2, 1, 1)
    p.receive(quote("CT", 16), T0 + 4)  # arrived after being reported missing: already accounted for
    p.receive(quote("CT", 17), T0 + 5)
    out = p.events()
    assert [t.seq for t in ticks(out)] == [17] and len(dead(out, "duplicate")) == 1


def test_duplicates_are_dropped_counted_and_dead_lettered() -> None:
    p = live_protocol()
    for q in (11, 12, 12, 11, 13):
        p.receive(quote("SB", q), T0 + q)
    out = p.events()
    assert [t.seq for t in ticks(out)] == [11, 12, 13]
    dups = dead(out, "duplicate")
    assert len(dups) == 2 and p.metrics.duplicates == 2
    assert dups[0].raw == quote("SB", 12).decode() and dups[0].instrument_id == "SB.ICE"


def test_reconnect_resyncs_from_the_new_snapshot() -> None:
    p = live_protocol()
    for q in (11, 12):
        p.receive(quote("B", q), T0)
    assert [t.seq for t in ticks(p.events())] == [11, 12]
    p.connection_lost("closed")
    p.connection_made(T0 + 10)
    assert isinstance(decode_all(p.data_to_send())[0], Login)
    p.receive(encode(LoginAck("S2", 1000)), T0 + 11)
    p.data_to_send()
    p.receive(quote("B", 12), T0 + 12)  # the new session repeats an old update before its snapshot
    p.receive(encode(Snapshot("B", 20, None, SnapTrade(19, T0 + 19, "80", 4, "S"))), T0 + 13)
    p.receive(quote("B", 21), T0 + 14)
    out = p.events()
    assert [(type(t).__name__, t.seq) for t in ticks(out)] == [("TradeTick", 19), ("QuoteTick", 21)]
    assert len(dead(out, "duplicate")) == 1
    gaps = [g.detail.split(";")[0] for g in dead(out, "sequence_gap")]
    assert gaps == ["B.ICE seq 13..18 missing (6)", "B.ICE seq 20..20 missing (1)"]  # 19: the snapshot's trade
    # the other symbols had nothing new; their snapshots at the old position report nothing
    for sym in ("CT", "SB", "KC"):
        p.receive(encode(Snapshot(sym, 10)), T0 + 15)
    assert p.events() == []


def test_resync_timeout_releases_held_updates() -> None:
    p = live_protocol(resync_timeout_ms=100)
    p.receive(quote("KC", 12), T0)  # 11 lost: held, snapshot requested
    p.receive(quote("KC", 13), T0 + 1)
    p.poll(T0 + 50_000_000)
    assert p.events() == []
    p.poll(T0 + 100_000_000)
    out = p.events()
    assert [t.seq for t in ticks(out)] == [12, 13] and dead(out, "sequence_gap")[0].detail.startswith(
        "KC.ICE seq 11..11 missing (1); no snapshot within 100 ms")
    assert p.metrics.resync_timeouts == 1 and p.is_live("KC.ICE")


def test_malformed_unknown_unsubscribed_and_venue_errors() -> None:
    p = live_protocol(instruments=("CT.ICE", "B.ICE", "SB.ICE", "KC.ICE"))
    p.receive(b"\xff\xfe{", T0)
    p.receive(b'{"type":"quote","symbol":"CT"}', T0)
    p.receive(quote("ZZ", 1), T0)
    out = p.events()
    assert [d.reason for d in dead(out)] == ["malformed", "malformed", "unknown_instrument"]
    assert out[0].raw == "\\xff\\xfe{" and "missing required field" in out[1].detail  # type: ignore[union-attr]
    assert p.metrics.decode_errors == 2 and p.metrics.rejected == 1
    p.unsubscribe(["KC.ICE"])
    (unsub,) = decode_all(p.data_to_send())
    assert isinstance(unsub, Unsubscribe) and unsub.symbols == ["KC"]
    p.receive(quote("KC", 11), T0)  # in flight when we unsubscribed
    (d,) = p.events()
    assert isinstance(d, DeadLetter) and d.reason == "unsubscribed" and d.instrument_id == "KC.ICE"
    p.receive(encode(Error("unknown_symbol", "no such symbol", "CT", 4)), T0)
    (e,) = p.events()
    assert isinstance(e, DeadLetter) and e.reason == "venue_error" and "unknown_symbol" in e.detail
    assert p.fatal is None
    p.receive(encode(Snapshot("CT", 12, SnapQuote(13, T0, "1", "2", 1, 1))), T0)  # quote newer than snapshot
    (bad,) = p.events()
    assert isinstance(bad, DeadLetter) and bad.reason == "malformed" and p.expected_seq("CT.ICE") == 11
    p.receive(quote("CT", 5_000_000), T0)
    (far,) = p.events()
    assert isinstance(far, DeadLetter) and far.reason == "implausible_seq" and p.is_live("CT.ICE")
    p.receive(encode(Error("auth_failed", "bad key")), T0)
    assert p.fatal is not None and "auth_failed" in p.fatal and dead(p.events(), "venue_error")
    p.heartbeat(T0 + 5)
    assert decode_all(p.data_to_send()) == [Heartbeat(T0 + 5)]
    p.receive(encode(Heartbeat(T0)), T0)
    assert p.metrics.heartbeats_in == 1 and p.events() == []


# -- client + simulated venue over loopback sockets ----------------------------------------------------

SIM = SimConfig(instruments=ICE_INSTRUMENTS, duration_s=0.0, rate_scale=3, block_s=5)
GAP_DETAIL = re.compile(r"^(\S+) seq (\d+)\.\.(\d+) missing \((\d+)\)")


def server_config(**kw: object) -> IceServerConfig:
    return IceServerConfig(sim=SIM, **kw)  # type: ignore[arg-type]


def client_config(url: str, **kw: object) -> IceFeedConfig:
    base: dict[str, object] = {"url": url, "api_key": KEY, "heartbeat_ms": 50, "stale_after_ms": 300,
                               "backoff_initial_ms": 20, "backoff_max_ms": 200, "resync_timeout_ms": 2000}
    return IceFeedConfig.from_dict(base | kw)


async def wait_for(cond: object, timeout_s: float = 5.0) -> None:
    for _ in range(int(timeout_s / 0.01)):
        if cond():  # type: ignore[operator]
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached in time")


def account(events: list[FeedEvent]) -> dict[str, tuple[list[int], list[int]]]:
    """Per instrument: sequenced seqs delivered (in order) and seqs reported missing."""
    out: dict[str, tuple[list[int], list[int]]] = defaultdict(lambda: ([], []))
    for e in events:
        if isinstance(e, TradeTick | QuoteTick) and e.seq > 0:
            out[e.instrument_id][0].append(e.seq)
        elif isinstance(e, DeadLetter) and e.reason == "sequence_gap":
            m = GAP_DETAIL.match(e.detail)
            assert m is not None, e.detail
            first, last = int(m[2]), int(m[3])
            assert int(m[4]) == last - first + 1
            out[m[1]][1].extend(range(first, last + 1))
    return out


def check_content_matches_the_venue(server: IceServer, events: list[FeedEvent]) -> int:
    """Every sequenced tick equals the update the venue generated for that (symbol, seq); returns how many."""
    got = [t for t in ticks(events) if t.seq > 0]
    until = max(t.ts_event for t in got)
    gen = MarketGenerator(server.config.sim.replace(start_ns=server.epoch_ns), server.registry)
    symbol_of = {i.id: i.symbol for i in server.registry}
    truth: dict[tuple[str, int], bytes] = {}
    for rows in gen.blocks():
        for o in venue_rows(rows, gen.names, gen.raw_messages, symbol_of, server.epoch_ns):
            truth[(o.symbol, o.seq)] = o.frame
        if int(rows.ts_event.max()) > until:
            break
    for t in got:
        msg = SERVER_DECODER.decode(truth[(symbol_of[t.instrument_id], t.seq)])
        want = msg.to_trade(t.instrument_id, t.ts_recv) if isinstance(msg, TradeUpdate) else (
            msg.to_quote(t.instrument_id, t.ts_recv))  # type: ignore[union-attr]
        assert t == want
    return len(got)


def check_no_duplicates_and_every_gap_reported(events: list[FeedEvent]) -> dict[str, set[int]]:
    """Returns the missing seqs per instrument; asserts the stream is exactly accounted for."""
    missing: dict[str, set[int]] = {}
    for iid, (delivered, gone) in account(events).items():
        assert delivered == sorted(set(delivered)), f"{iid}: duplicate or out-of-order seq downstream"
        assert not set(delivered) & set(gone), f"{iid}: a delivered seq was reported missing"
        assert len(gone) == len(set(gone)), f"{iid}: a seq reported missing twice"
        both = sorted(delivered + gone)
        assert both == list(range(both[0], both[-1] + 1)), f"{iid}: a hole nobody reported"
        missing[iid] = set(gone)
    return missing


async def test_live_faults_gap_duplicate_garbage() -> None:
    server = IceServer(server_config())
    await server.start()
    events: list[FeedEvent] = []
    client = IceClient(client_config(server.url), events.extend)
    stop = asyncio.Event()
    task = asyncio.create_task(client.run(stop))
    try:
        await wait_for(lambda: len(ticks(events)) > 40)
        server.drop_next(3, symbol="CT")
        server.drop_next(1, symbol="KC")
        server.duplicate_next(2)
        server.inject_garbage()
        server.inject_garbage('{"type":"quote","symbol":"CT","seq":', text=True)
        await wait_for(lambda: len(server.faults.dropped) == 4 and len(server.faults.duplicated) == 2)
        await wait_for(lambda: client.protocol.metrics.resync_requests >= 2 and all(
            client.protocol.is_live(i) for i in ICE_INSTRUMENTS))
        n = len(ticks(events))
        await wait_for(lambda: len(ticks(events)) > n + 20)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
        await server.stop()
    missing = check_no_duplicates_and_every_gap_reported(events)
    assert check_content_matches_the_venue(server, events) > 60
    m = client.metrics()
    assert m.decode_errors == 2 and len(dead(events, "malformed")) == 2
    assert m.duplicates == 2 and len(dead(events, "duplicate")) == 2
    assert m.reconnects == 0 and m.resync_requests == 2 and m.snapshots == 4 + 2
    delivered = {iid: set(d) for iid, (d, _) in account(events).items()}
    for sym, seq in server.faults.dropped:
        iid = f"{sym}.ICE"
        assert (seq in delivered[iid]) != (seq in missing[iid])  # recovered from the snapshot, or reported
    assert m.missing == sum(len(s) for s in missing.values())
    assert m.gaps == len(dead(events, "sequence_gap"))
    assert m.recovered + m.missing >= 4  # the 4 dropped seqs are all accounted for
    assert m.lag_samples > 0 and m.lag_p50_ms > 0


async def test_venue_restart_on_same_port_reconnects_and_resyncs() -> None:
    server = IceServer(server_config())
    port = await server.start()
    events: list[FeedEvent] = []
    client = IceClient(client_config(server.url), events.extend)
    stop = asyncio.Event()
    task = asyncio.create_task(client.run(stop))
    restarted: IceServer | None = None
    try:
        await wait_for(lambda: len(ticks(events)) > 40)
        before = {iid: client.protocol.expected_seq(iid) for iid in ICE_INSTRUMENTS}
        await server.stop()  # crash: no close frame
        await asyncio.sleep(0.4)  # the market moves on while the venue is down
        assert client.protocol.metrics.connect_failures >= 1  # retried (with backoff) while it was down
        restarted = IceServer(server_config(port=port, epoch_ns=server.epoch_ns))
        await restarted.start()
        await wait_for(lambda: client.protocol.metrics.reconnects >= 1 and all(
            client.protocol.is_live(i) for i in ICE_INSTRUMENTS))
        n = len(ticks(events))
        await wait_for(lambda: len(ticks(events)) > n + 20)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
        if restarted is not None:
            await restarted.stop()
    missing = check_no_duplicates_and_every_gap_reported(events)
    assert check_content_matches_the_venue(restarted, events) > 60  # one market across the restart
    m = client.metrics()
    assert m.reconnects == 1 and m.connects == 2 and m.gaps >= 1 and m.duplicates == 0
    assert m.missing == sum(len(s) for s in missing.values())
    # the same seq streams continued: each instrument's first seq after the restart follows on from before
    for iid, exp in before.items():
        assert exp is not None
        after = [s for s in account(events)[iid][0] + sorted(missing[iid]) if s >= exp]
        assert after and min(after) == exp  # nothing between the crash and the resync is unaccounted for
    assert restarted.sessions == 1 and restarted.state["CT"].seq > 0


async def test_stalled_venue_trips_the_watchdog() -> None:
    server = IceServer(server_config())
    await server.start()
    events: list[FeedEvent] = []
    client = IceClient(client_config(server.url), events.extend)
    stop = asyncio.Event()
    task = asyncio.create_task(client.run(stop))
    try:
        await wait_for(lambda: len(ticks(events)) > 20)
        server.stall(0.6)  # silent, socket open: only the watchdog can notice
        await wait_for(lambda: client.protocol.metrics.stalls >= 1)
        assert "stale" in client.runner.last_end
        await wait_for(lambda: client.protocol.metrics.reconnects >= 1 and all(
            client.protocol.is_live(i) for i in ICE_INSTRUMENTS))
        n = len(ticks(events))
        await wait_for(lambda: len(ticks(events)) > n + 10)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
        await server.stop()
    check_no_duplicates_and_every_gap_reported(events)
    assert server.faults.lost_in_stall > 0 and client.metrics().gaps >= 1


async def test_rejected_key_stops_the_client_and_is_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    server = IceServer(server_config(api_keys=("the-right-key",)))
    await server.start()
    events: list[FeedEvent] = []
    client = IceClient(client_config(server.url), events.extend)
    try:
        with pytest.raises(FeedFatal, match="auth_failed"):
            await asyncio.wait_for(client.run(), 5)
    finally:
        await server.stop()
    assert [d.reason for d in dead(events)] == ["venue_error"] and client.metrics().connects == 1
    assert KEY not in caplog.text and server.sessions == 0
