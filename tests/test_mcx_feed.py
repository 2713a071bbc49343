"""The MCX polling feed: payload schemas, the sans-I/O protocol, and the httpx client against the loopback venue."""

from __future__ import annotations

import asyncio
import email.utils
from collections import defaultdict

import msgspec
import pytest

from feeds.common.adapter import FeedEvent, FeedFatal
from feeds.ice.schemas import fixed_from_decimal
from feeds.mcx.poll_client import McxPollClient
from feeds.mcx.poll_config import MCX_INSTRUMENTS, McxPollConfig
from feeds.mcx.poll_protocol import McxPollProtocol, NextPoll, PollFailure, PollResponse, parse_retry_after
from feeds.mcx.poll_schemas import QUOTE_DECODER, McxLastTrade, McxQuote, McxTopOfBook, encode_quotes
from market.events import DeadLetter, QuoteTick, Side, TradeTick
from market.fixedpoint import PRICE_SCALE
from simulators.config import SimConfig
from simulators.market import MarketGenerator
from simulators.mcx_server import McxServer, McxServerConfig, venue_updates

T0 = 1_767_571_200_000_000_000
P = PRICE_SCALE
MS = 1_000_000
UNITS = {"GOLD": ("INR", "10g"), "COTTONCNDY": ("INR", "candy"), "CRUDEOIL": ("INR", "bbl")}


def cfg(**kw: object) -> McxPollConfig:
    return McxPollConfig.from_dict({"url": "http://127.0.0.1:1", "poll_interval_ms": 100} | kw)


def entry(sym: str, seq: int, *, q: int | None = None, bid: str = "75875", ask: str = "75876", t: int | None = None,
          px: str = "75875.5", qty: int = 2, volume: int = 0, trades: int = 0, unit: str | None = None) -> McxQuote:
    cur, u = UNITS[sym]
    quote = McxTopOfBook(q, T0 + q, bid, ask, 5, 7) if q is not None else None
    trade = McxLastTrade(t, T0 + t, px, qty, "S") if t is not None else None
    return McxQuote(sym, cur, unit or u, seq, volume, trades, quote, trade)


def doc(*entries: McxQuote, session: str = "S1") -> bytes:
    return encode_quotes(session, T0, list(entries))


def ok(body: bytes, etag: str = '"e1"', lm: str = "Mon, 05 Jan 2026 00:00:01 GMT") -> PollResponse:
    headers = {"content-type": "application/json"}
    if etag:
        headers["etag"] = etag
    if lm:
        headers["last-modified"] = lm
    return PollResponse(200, headers, body)


def dead(events: list[FeedEvent], reason: str | None = None) -> list[DeadLetter]:
    return [e for e in events if isinstance(e, DeadLetter) and (reason is None or e.reason == reason)]


def ticks(events: list[FeedEvent]) -> list[TradeTick | QuoteTick]:
    return [e for e in events if isinstance(e, TradeTick | QuoteTick)]


def moved(sym: str, seq: int, **kw: object) -> McxQuote:
    """An entry of an instrument after started(): same last trade and volume, a newer seq."""
    return entry(sym, seq, t=10, volume=100, trades=20, **kw)  # type: ignore[arg-type]


def started(**kw: object) -> McxPollProtocol:
    """A protocol that has seen every instrument at seq 10 (quote 9, trade 10, volume 100); events drained."""
    p = McxPollProtocol(cfg(**kw))
    p.on_response(ok(doc(*(entry(s, 10, q=9, t=10, volume=100, trades=20) for s in UNITS))), T0)
    p.events()
    return p


# -- schemas and config -------------------------------------------------------------------------------------


def test_entries_normalize_to_exact_ticks_in_quoted_units() -> None:
    g = entry("GOLD", 12, q=11, bid="75875.25", ask="75876", t=12, px="-37.63", qty=3, volume=9, trades=2)
    assert QUOTE_DECODER.decode(msgspec.json.encode(g)) == g
    assert g.to_quote("GOLD.MCX", T0 + 5, 0) == QuoteTick("GOLD.MCX", 75_875_250_000_000, 75_876 * P, 5, 7, T0 + 11,
                                                          T0 + 5, 0)
    assert g.to_trade("GOLD.MCX", T0 + 5, 9, 12) == TradeTick("GOLD.MCX", -37_630_000_000, 9, T0 + 12, T0 + 5, 12,
                                                              Side.SELL)
    assert entry("CRUDEOIL", 0).to_quote("CRUDEOIL.MCX", 1, 0) is None


@pytest.mark.parametrize("field, value", [("seq", -1), ("currency", "inr"), ("unit", ""), ("volume", -1),
                                          ("symbol", ""), ("quote", {"seq": 1, "ts": 1, "bid": "1e3", "ask": "1",
                                                                     "bid_qty": 1, "ask_qty": 1})])
def test_contract_violations_do_not_decode(field: str, value: object) -> None:
    d = msgspec.to_builtins(entry("GOLD", 3, q=2))
    d[field] = value
    with pytest.raises(msgspec.ValidationError):
        QUOTE_DECODER.decode(msgspec.json.encode(d))


def test_config_validates() -> None:
    assert cfg().instruments == MCX_INSTRUMENTS
    for bad in ({"url": "ws://x"}, {"poll_interval_ms": 0}, {"instruments": ()}, {"tick_seq": "mine"},
                {"backoff_initial_ms": 500, "backoff_max_ms": 100}, {"instruments": ("GOLD.MCX", "GOLD.MCX")},
                {"colour": 1}):
        with pytest.raises((ValueError, msgspec.ValidationError)):
            cfg(**bad)
    with pytest.raises(ValueError, match="not an MCX instrument"):
        McxPollProtocol(cfg(instruments=("GC.COMEX",)))


# -- sans-I/O protocol ----------------------------------------------------------------------------------


def test_conditional_headers_follow_the_validators() -> None:
    p = McxPollProtocol(cfg(instruments=("GOLD.MCX", "CRUDEOIL.MCX")))
    r = p.next_request()
    assert r.method == "GET" and r.target == "/api/v1/quotes?symbols=GOLD,CRUDEOIL"
    assert dict(r.headers) == {"accept": "application/json"}
    assert p.on_response(ok(doc(entry("GOLD", 1, q=1)), '"abc"', "Mon, 05 Jan 2026 00:00:01 GMT"), T0) == NextPoll(
        "interval", 100)
    h = dict(p.next_request().headers)
    assert h["if-none-match"] == '"abc"' and h["if-modified-since"] == "Mon, 05 Jan 2026 00:00:01 GMT"
    assert p.on_response(PollResponse(304, {"etag": '"abd"'}), T0 + 1) == NextPoll("interval", 100)
    assert dict(p.next_request().headers)["if-none-match"] == '"abd"' and p.counters.not_modified == 1
    # a body that does not decode is not adopted: the next poll asks for the whole document again
    p.on_response(ok(b"{garbage", '"zzz"'), T0 + 2)
    assert dict(p.next_request().headers) == {"accept": "application/json"}
    assert p.counters.requests == 4


def test_first_poll_emits_quotes_and_keeps_the_last_trade_as_history() -> None:
    p = McxPollProtocol(cfg())
    body = doc(entry("GOLD", 5, q=4, t=5, volume=30, trades=4), entry("COTTONCNDY", 0), entry("CRUDEOIL", 2, q=2))
    p.on_response(ok(body), T0 + 99)
    assert p.events() == [QuoteTick("GOLD.MCX", 75_875 * P, 75_876 * P, 5, 7, T0 + 4, T0 + 99, 0),
                          QuoteTick("CRUDEOIL.MCX", 75_875 * P, 75_876 * P, 5, 7, T0 + 2, T0 + 99, 0)]
    assert p.seen_seq("GOLD.MCX") == 5 and p.seen_seq("COTTONCNDY.MCX") == 0 and p.counters.conflated == 0


def test_unchanged_entries_are_not_emitted_and_changes_are_conflated() -> None:
    p = started()
    p.on_response(ok(doc(*(entry(s, 10, q=9, t=10, volume=100, trades=20) for s in UNITS))), T0 + 1)
    assert p.events() == [] and p.counters.unchanged == 3
    # GOLD moved: 3 quotes (11, 13, 14) and 2 trades (12: qty 4, 15: qty 6) between polls
    p.on_response(ok(doc(entry("GOLD", 15, q=14, bid="75880", t=15, px="75881", qty=6, volume=110, trades=22),
                         entry("COTTONCNDY", 10, q=9, t=10, volume=100, trades=20))), T0 + 2)
    out = p.events()
    assert out == [QuoteTick("GOLD.MCX", 75_880 * P, 75_876 * P, 5, 7, T0 + 14, T0 + 2, 0),
                   TradeTick("GOLD.MCX", 75_881 * P, 10, T0 + 15, T0 + 2, 0, Side.SELL)]  # size: the volume delta
    assert p.counters.conflated == 5 - 2 and p.counters.unchanged == 4
    # a new trade only: no quote tick
    p.on_response(ok(doc(entry("GOLD", 16, q=14, bid="75880", t=16, qty=1, volume=111, trades=23))), T0 + 3)
    assert [type(e).__name__ for e in p.events()] == ["TradeTick"]
    assert p.metrics.ticks == 3 + 3 and p.metrics.lag.total == 6


def test_venue_seqs_on_request() -> None:
    p = started(tick_seq="venue")
    p.on_response(ok(doc(entry("CRUDEOIL", 13, q=12, t=13, volume=105, trades=21))), T0 + 1)
    assert [(type(t).__name__, t.seq) for t in ticks(p.events())] == [("QuoteTick", 12), ("TradeTick", 13)]


def test_status_codes_schedule_the_next_poll() -> None:
    p = started()
    now = T0 + 7 * 10**9
    assert p.on_response(PollResponse(429, {"retry-after": "3"}, b"slow down"), now) == NextPoll("retry_after", 3000)
    assert p.on_response(PollResponse(429, {"retry-after": "0"}), now) == NextPoll("retry_after", 100)  # >= interval
    assert p.on_response(PollResponse(429, {"retry-after": "999999"}), now) == NextPoll("retry_after", 60_000)
    date = email.utils.formatdate(now / 1e9 + 5, usegmt=True)
    assert p.on_response(PollResponse(503, {"retry-after": date}), now) == NextPoll("retry_after", 5000)
    assert p.on_response(PollResponse(429, {"retry-after": "soon"}), now) == NextPoll("backoff")
    assert p.on_response(PollResponse(500, {"retry-after": "1"}, b"oops"), now) == NextPoll("backoff")
    assert p.on_response(PollResponse(502, {}), now) == NextPoll("backoff")
    assert p.on_response(PollResponse(418, {}), now) == NextPoll("backoff") and p.fatal is None
    assert p.on_failure(PollFailure("ConnectError: refused")) == NextPoll("backoff")
    assert p.on_failure(PollFailure("timed out", timed_out=True)) == NextPoll("backoff")
    out = p.events()
    assert [d.reason for d in dead(out)] == ["venue_error"] * 8 and not ticks(out)  # failures: no data, no letter
    assert dead(out)[0].detail == "HTTP 429; retry after 3000 ms" and dead(out)[0].raw == "slow down"
    c, m = p.counters, p.metrics
    assert (c.rate_limited, c.server_errors, c.transport_failures, m.venue_errors, m.stalls, m.connect_failures) == (
        4, 3, 2, 8, 1, 1)
    assert p.on_response(PollResponse(404, {}, b"no such resource"), now) == NextPoll("backoff")
    assert p.fatal is not None and "404" in p.fatal and dead(p.events())[0].detail == "HTTP 404; stopping"


def test_retry_after_parsing() -> None:
    now = T0 + 10**9 // 2
    assert parse_retry_after(" 120 ", now) == 120_000
    assert parse_retry_after(email.utils.formatdate(T0 / 1e9 + 2, usegmt=True), now) == 1500
    assert parse_retry_after(email.utils.formatdate(T0 / 1e9 - 60, usegmt=True), now) == 0  # in the past
    assert parse_retry_after("-1", now) is None and parse_retry_after("tomorrow", now) is None


def test_malformed_documents_and_entries_are_dead_letters_with_their_bytes() -> None:
    p = started()
    p.on_response(ok(b'\xff\xfe{"venue":'), T0 + 1)
    (d,) = p.events()
    assert isinstance(d, DeadLetter) and d.reason == "malformed" and d.source == "mcx"
    assert d.raw == '\\xff\\xfe{"venue":' and d.ts_recv == T0 + 1 and p.metrics.decode_errors == 1
    # one bad entry dead-letters itself; the rest of the document is used
    bad = b'{"symbol":"CRUDEOIL","currency":"INR","unit":"bbl","seq":"11"}'
    body = (b'{"venue":"MCX","session":"S1","as_of":1,"quotes":[' + bad + b","
            + msgspec.json.encode(moved("GOLD", 11, q=11)) + b"]}")
    p.on_response(ok(body), T0 + 2)
    out = p.events()
    assert [t.instrument_id for t in ticks(out)] == ["GOLD.MCX"]
    (d,) = dead(out)
    assert d.reason == "malformed" and d.raw == bad.decode() and "seq" in d.detail
    small = McxPollProtocol(cfg(max_body_bytes=100))
    small.on_response(ok(b"[" * 101), T0)
    assert "exceeds max_body_bytes 100" in dead(small.events(), "malformed")[0].detail


def test_entries_that_break_the_contract() -> None:
    p = started(instruments=("GOLD.MCX", "CRUDEOIL.MCX"))
    body = doc(moved("GOLD", 11, q=11, unit="kg"),  # quoted per kg: the registry says INR per 10 g
               moved("COTTONCNDY", 11, q=11),  # a registry symbol we did not ask for
               McxQuote("SILVER", "INR", "kg", 3),  # not in the registry
               moved("CRUDEOIL", 11, q=11), moved("CRUDEOIL", 12, q=12),  # twice in one document
               )
    p.on_response(ok(body), T0 + 1)
    out = p.events()
    assert [t.instrument_id for t in ticks(out)] == ["CRUDEOIL.MCX"]
    assert [(d.reason, d.instrument_id) for d in dead(out)] == [
        ("unit_mismatch", "GOLD.MCX"), ("unsubscribed", "COTTONCNDY.MCX"), ("unknown_instrument", ""),
        ("duplicate", "CRUDEOIL.MCX")]
    assert dead(out)[0].detail == "GOLD.MCX quoted in INR per kg, registry says INR per 10g"
    # cross-field contract
    body = doc(moved("GOLD", 12, q=13),  # quote newer than the entry
               entry("CRUDEOIL", 13, t=13, qty=5, volume=2, trades=1))  # volume without the last trade's qty
    p.on_response(ok(body), T0 + 2)
    assert [d.reason for d in dead(p.events())] == ["malformed", "malformed"]
    # an older document (e.g. a lagging replica) is refused; volume cannot jump without a trade
    p.on_response(ok(doc(entry("CRUDEOIL", 5, q=4, t=5, volume=50, trades=5),
                         entry("GOLD", 20, q=9, t=10, volume=150, trades=20))), T0 + 3)
    out = p.events()
    assert [(d.reason, d.instrument_id) for d in dead(out)] == [("stale_seq", "CRUDEOIL.MCX"),
                                                                ("malformed", "GOLD.MCX")]
    assert "without a new trade" in dead(out)[1].detail and p.counters.stale == 1 and not ticks(out)


def test_a_new_session_restarts_seqs_and_volumes() -> None:
    p = started(tick_seq="venue")
    p.on_response(ok(doc(entry("GOLD", 3, q=2, t=3, qty=4, volume=7, trades=2), session="S2")), T0 + 1)
    out = p.events()
    assert [(type(t).__name__, t.seq) for t in ticks(out)] == [("QuoteTick", 2), ("TradeTick", 3)]
    trade = ticks(out)[1]  # size: every trade of the new session
    assert isinstance(trade, TradeTick) and trade.size == 7 and p.counters.session_changes == 1
    p.on_response(ok(doc(entry("GOLD", 2, q=2), session="S2")), T0 + 2)
    assert [d.reason for d in dead(p.events())] == ["stale_seq"]  # within one session, going back is stale


# -- client + simulated venue over loopback HTTP ----------------------------------------------------------

SIM = SimConfig(instruments=MCX_INSTRUMENTS, duration_s=0.0, rate_scale=3, block_s=5)


def server_config(**kw: object) -> McxServerConfig:
    return McxServerConfig(sim=SIM, warmup_retry_after_s=0, **kw)  # type: ignore[arg-type]


def client_config(url: str, **kw: object) -> McxPollConfig:
    base: dict[str, object] = {"url": url, "poll_interval_ms": 30, "request_timeout_ms": 300,
                               "backoff_initial_ms": 20, "backoff_max_ms": 200, "tick_seq": "venue"}
    return McxPollConfig.from_dict(base | kw)


async def wait_for(cond: object, timeout_s: float = 5.0) -> None:
    for _ in range(int(timeout_s / 0.01)):
        if cond():  # type: ignore[operator]
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached in time")


def check_against_the_venue(server: McxServer, events: list[FeedEvent]) -> int:
    """Each quote equals the venue's quote of its seq; each trade after an instrument's first one carries the
    venue's volume between the two trade seqs; seqs only increase. Returns the ticks checked."""
    got = ticks(events)
    until = max(t.ts_event for t in got)
    gen = MarketGenerator(server.config.sim.replace(start_ns=server.epoch_ns), server.registry)
    symbol_of = {i.id: i.symbol for i in server.registry}
    quotes: dict[tuple[str, int], McxTopOfBook] = {}
    trades: dict[tuple[str, int], McxLastTrade] = {}
    for rows in gen.blocks():
        for u in venue_updates(rows, gen.names, symbol_of, server.epoch_ns):
            if u.quote is not None:
                quotes[(u.symbol, u.seq)] = u.quote
            if u.trade is not None:
                trades[(u.symbol, u.seq)] = u.trade
        if int(rows.ts_event.max()) > until:
            break
    volume_upto: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for (sym, seq), tr in sorted(trades.items()):
        prev = volume_upto[sym][-1][1] if volume_upto[sym] else 0
        volume_upto[sym].append((seq, prev + tr.qty))
    cum = {sym: dict(v) for sym, v in volume_upto.items()}
    last: dict[tuple[str, str], int] = {}
    for t in got:
        sym = symbol_of[t.instrument_id]
        key = (t.instrument_id, type(t).__name__)
        assert t.seq > last.get(key, 0), f"{key}: seq {t.seq} not after {last.get(key)}"
        if isinstance(t, QuoteTick):
            q = quotes[(sym, t.seq)]
            assert (t.bid, t.ask, t.bid_size, t.ask_size, t.ts_event) == (
                fixed_from_decimal(q.bid), fixed_from_decimal(q.ask), q.bid_qty, q.ask_qty, q.ts)
        else:
            tr = trades[(sym, t.seq)]
            assert (t.price, t.ts_event) == (fixed_from_decimal(tr.px), tr.ts)
            if key in last:
                assert t.size == cum[sym][t.seq] - cum[sym][last[key]]
        last[key] = t.seq
    return len(got)


async def run_client(server: McxServer, events: list[FeedEvent], **kw: object) -> tuple[McxPollClient,
                                                                                        asyncio.Event,
                                                                                        asyncio.Task[None]]:
    client = McxPollClient(client_config(server.url, **kw), events.extend)
    stop = asyncio.Event()
    return client, stop, asyncio.create_task(client.run(stop))


async def test_live_polling_matches_the_venue_with_faults() -> None:
    server = McxServer(server_config())
    await server.start()
    events: list[FeedEvent] = []
    client, stop, task = await run_client(server, events)
    try:
        await wait_for(lambda: len([t for t in ticks(events) if isinstance(t, TradeTick)]) > 6)
        server.garbage_next(1)
        server.fail_next(2, 503)
        server.rate_limit_next(1, "0")
        await wait_for(lambda: client.counters.rate_limited == 1 and client.counters.server_errors == 2)
        n = len(ticks(events))
        await wait_for(lambda: len(ticks(events)) > n + 10)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
        await server.stop()
    assert check_against_the_venue(server, events) > 16
    assert len(dead(events, "malformed")) == 1 and "sym" in dead(events, "malformed")[0].raw
    assert [d.detail for d in dead(events, "venue_error")] == ["HTTP 503; backing off"] * 2 + [
        "HTTP 429; retry after 30 ms"]
    assert len(dead(events)) == 4 and client.metrics().decode_errors == 1 and client.metrics().lag_samples > 0


@pytest.mark.parametrize("etag", [True, False])
async def test_an_unchanged_venue_answers_304(etag: bool) -> None:
    finite = SimConfig(instruments=MCX_INSTRUMENTS, duration_s=1.0, rate_scale=3, block_s=1)
    server = McxServer(McxServerConfig(sim=finite, warmup_retry_after_s=0, etag=etag, speed=20.0))
    await server.start()
    await asyncio.wait_for(server.finished.wait(), 5)  # the market is over: the state no longer changes
    events: list[FeedEvent] = []
    client, stop, task = await run_client(server, events)
    try:
        await wait_for(lambda: client.counters.not_modified >= 5)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
        await server.stop()
    assert server.responses[200] == 1 and server.responses[304] >= 5  # If-None-Match, or If-Modified-Since
    assert [t.instrument_id for t in ticks(events)] == list(MCX_INSTRUMENTS) and not dead(events)
    assert all(isinstance(t, QuoteTick) and t.seq == server.state[t.instrument_id.split(".")[0]].quote.seq  # type: ignore[union-attr]
               for t in ticks(events))


async def test_venue_restart_and_stall_are_survived() -> None:
    server = McxServer(server_config())
    port = await server.start()
    events: list[FeedEvent] = []
    client, stop, task = await run_client(server, events)
    restarted: McxServer | None = None
    try:
        await wait_for(lambda: len(ticks(events)) > 10)
        await server.stop()  # crash: connections aborted
        await asyncio.sleep(0.3)
        assert client.counters.transport_failures >= 1
        restarted = McxServer(server_config(port=port, epoch_ns=server.epoch_ns))
        await restarted.start()
        n = len(ticks(events))
        await wait_for(lambda: len(ticks(events)) > n + 10)
        restarted.stall(0.8)  # requests hang: the client times out (300 ms) and backs off
        await wait_for(lambda: client.metrics().stalls >= 1)
        n = len(ticks(events))
        await wait_for(lambda: len(ticks(events)) > n + 10)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
        if restarted is not None:
            await restarted.stop()
    # one market across the restart (same session, seq streams and volumes continue): nothing twice
    assert check_against_the_venue(restarted, events) > 30
    assert client.counters.session_changes == 0 and client.counters.stale == 0
    assert all(d.reason == "venue_error" and "HTTP 503" in d.detail for d in dead(events))  # at most: warming up


async def test_a_wrong_path_is_fatal() -> None:
    server = McxServer(server_config())
    await server.start()
    events: list[FeedEvent] = []
    client = McxPollClient(client_config(server.url, path="/api/v2/nothing"), events.extend)
    try:
        with pytest.raises(FeedFatal, match="404"):
            await asyncio.wait_for(client.run(), 5)
    finally:
        await server.stop()
    assert [d.reason for d in dead(events)] == ["venue_error"] and server.requests == 1
