"""Sans-I/O client of the MCX-style polling venue: requests out, responses (with their receive time) in, ticks
and dead letters out. No sockets, no clock: feeds.mcx.poll_client runs it over httpx.

Each poll is a conditional GET (If-None-Match with the last ETag, If-Modified-Since with the last
Last-Modified, both echoed verbatim). `on_response` returns when to poll next:
- 200: the document is decoded entry by entry; its validators are adopted only when it decoded, so a
  garbage body is fetched in full again next time; next poll after `poll_interval_ms`;
- 304: nothing changed; next poll after `poll_interval_ms`;
- 429 / 503 with Retry-After (delta-seconds or HTTP-date): wait that long (at least the poll interval, at most
  `max_retry_after_ms`); without a usable Retry-After, and for other 5xx: the runner's backoff;
- 400/401/403/404/405/410: `fatal` (retrying cannot help); anything else unexpected: backoff.
Every non-200/304 status is a `venue_error` dead letter with the body as raw.

Per instrument, the newest venue seq seen decides: equal = unchanged (not emitted), lower = a stale document
(`stale_seq` dead letter), higher = the quote and/or the trades since the last poll are emitted. A polled feed
conflates: between two polls the venue may publish many updates; the quote is the newest, and one TradeTick
stands for every trade since the previous poll (last price, time and side; size = the cumulative volume
delta, so bar volumes stay exact). The first sighting of an instrument emits its quote; its last trade is
history (it only sets the volume baseline), as with the ICE feed's first snapshot.
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import msgspec

from feeds.common.adapter import SansIOFeed
from feeds.common.metrics import FeedMetrics
from feeds.common.reasons import (
    DUPLICATE,
    MALFORMED,
    STALE_SEQ,
    UNKNOWN_INSTRUMENT,
    UNSUBSCRIBED,
    VENUE_ERROR,
)
from feeds.mcx.poll_config import McxPollConfig
from feeds.mcx.poll_schemas import DECODE_ERRORS, PAYLOAD_DECODER, QUOTE_DECODER, McxQuote
from market.events import QuoteTick, TradeTick
from market.instruments import Registry, default_registry

VENUE = "MCX"
NS_PER_MS = 1_000_000

UNIT_MISMATCH = "unit_mismatch"
REASONS = frozenset({MALFORMED, UNKNOWN_INSTRUMENT, DUPLICATE, STALE_SEQ, UNSUBSCRIBED, UNIT_MISMATCH, VENUE_ERROR})

KEPT_HEADERS = ("etag", "last-modified", "retry-after", "content-type", "date")  # what a response keeps
FATAL_STATUSES = frozenset({400, 401, 403, 404, 405, 410})
_DELTA_SECONDS = re.compile(r"[0-9]{1,10}")


class PollResponse(msgspec.Struct, frozen=True):
    """One HTTP response as the protocol sees it (and as a capture stores it)."""

    status: int
    headers: dict[str, str]  # lower-case names, only KEPT_HEADERS
    body: bytes = b""


class PollFailure(msgspec.Struct, frozen=True):
    """A poll that got no response (refused, reset, timed out)."""

    detail: str
    timed_out: bool = False


@dataclass(frozen=True, slots=True)
class PollRequest:
    method: str
    target: str  # path and query
    headers: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class NextPoll:
    """When to poll next: after `delay_ms` ("interval", "retry_after"), or after the runner's backoff delay."""

    kind: Literal["interval", "retry_after", "backoff"]
    delay_ms: int = 0


@dataclass(slots=True)
class PollCounters:
    """Polling-specific counts (FeedMetrics has the venue-neutral ones)."""

    requests: int = 0
    ok: int = 0  # 200
    not_modified: int = 0  # 304
    unchanged: int = 0  # entries whose seq had been seen (a 200 caused by another symbol's change)
    conflated: int = 0  # venue updates between two polls not seen one by one
    stale: int = 0  # entries older than what was already seen
    rate_limited: int = 0  # 429
    server_errors: int = 0  # 5xx
    transport_failures: int = 0  # no response: refused, reset, timed out
    session_changes: int = 0


@dataclass(slots=True)
class _Instrument:
    seq: int = -1  # newest venue seq seen; -1: never seen
    quote_seq: int = 0
    trade_seq: int = 0
    volume: int = 0
    restart_ok: bool = False  # a new session began: a lower seq restarts the stream instead of being stale


def kept_headers(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The response headers the protocol reads, names lower-cased."""
    out: dict[str, str] = {}
    for name, value in items:
        key = name.lower()
        if key in KEPT_HEADERS:
            out[key] = value
    return out


def parse_retry_after(value: str, now_ns: int) -> int | None:
    """Retry-After in ms from now: delta-seconds or an HTTP-date; None when unusable."""
    text = value.strip()
    if _DELTA_SECONDS.fullmatch(text):
        return int(text) * 1000
    parsed = email.utils.parsedate_tz(text)
    if parsed is None:
        return None
    at_s = email.utils.mktime_tz(parsed)
    return max(0, at_s * 1000 - now_ns // NS_PER_MS)


class McxPollProtocol(SansIOFeed):
    name = "mcx"

    def __init__(self, config: McxPollConfig, registry: Registry | None = None,
                 metrics: FeedMetrics | None = None) -> None:
        super().__init__(metrics)
        self.config = config
        reg = registry or default_registry()
        self._venue_symbols: dict[str, str] = {i.symbol: i.id for i in reg if i.venue == VENUE}
        self._by_symbol: dict[str, str] = {}
        self._unit: dict[str, tuple[str, str]] = {}  # instrument -> (currency, quote unit)
        for iid in config.instruments:
            inst = reg.get(iid)
            if inst.venue != VENUE:
                raise ValueError(f"{iid} is not an {VENUE} instrument")
            self._by_symbol[inst.symbol] = iid
            self._unit[iid] = (inst.price_currency, inst.quote_unit)
        self._state = {iid: _Instrument() for iid in config.instruments}
        self._venue_seq = config.tick_seq == "venue"
        self.counters = PollCounters()
        self.etag = ""
        self.last_modified = ""
        self.session = ""
        self._target = f"{config.path}?symbols={','.join(self._by_symbol)}"

    # -- state, for status pages and tests ----------------------------------------------------------

    @property
    def instruments(self) -> list[str]:
        return list(self._by_symbol.values())

    def seen_seq(self, instrument_id: str) -> int:
        """Newest venue seq seen for the instrument (-1: none yet)."""
        return self._state[instrument_id].seq

    # -- driven by the runner -----------------------------------------------------------------------

    def next_request(self) -> PollRequest:
        self.counters.requests += 1
        headers = [("accept", "application/json")]
        if self.etag:
            headers.append(("if-none-match", self.etag))
        if self.last_modified:
            headers.append(("if-modified-since", self.last_modified))
        return PollRequest("GET", self._target, tuple(headers))

    def on_response(self, resp: PollResponse, ts_recv: int) -> NextPoll:
        status = resp.status
        interval = NextPoll("interval", self.config.poll_interval_ms)
        if status == 200:
            self.counters.ok += 1
            self.logged_in = True
            if self._on_body(resp.body, ts_recv):
                self.etag = resp.headers.get("etag", "")
                self.last_modified = resp.headers.get("last-modified", "")
            else:  # not adopted: the next poll gets the whole document again
                self.etag = self.last_modified = ""
            return interval
        if status == 304:
            self.counters.not_modified += 1
            self.metrics.control += 1
            self.logged_in = True
            self.etag = resp.headers.get("etag", self.etag)  # a 304 may refresh the validators
            self.last_modified = resp.headers.get("last-modified", self.last_modified)
            return interval
        self.logged_in = False
        self.metrics.venue_errors += 1
        if status == 429:
            self.counters.rate_limited += 1
        elif 500 <= status <= 599:
            self.counters.server_errors += 1
        retry_ms = None
        if status in (429, 503) and "retry-after" in resp.headers:
            retry_ms = parse_retry_after(resp.headers["retry-after"], ts_recv)
        if status in FATAL_STATUSES:
            self.fatal = f"venue answered HTTP {status} to {self._target}"
            nxt, then = NextPoll("backoff"), "stopping"
        elif retry_ms is not None:
            cfg = self.config
            nxt = NextPoll("retry_after", max(cfg.poll_interval_ms, min(retry_ms, cfg.max_retry_after_ms)))
            then = f"retry after {nxt.delay_ms} ms"
        else:
            nxt, then = NextPoll("backoff"), "backing off"
        self._dead(VENUE_ERROR, f"HTTP {status}; {then}", resp.body, ts_recv)
        return nxt

    def on_failure(self, failure: PollFailure) -> NextPoll:
        """No response (refused, reset, timed out): counted, not a dead letter (no data came); back off."""
        self.logged_in = False
        self.counters.transport_failures += 1
        if failure.timed_out:
            self.metrics.stalls += 1
        else:
            self.metrics.connect_failures += 1
        return NextPoll("backoff")

    def receive(self, frame: bytes | str, ts_recv: int) -> None:
        """Decode one response document (a 200 body)."""
        self._on_body(frame if isinstance(frame, bytes) else frame.encode(), ts_recv)

    # -- decoding -----------------------------------------------------------------------------------

    def _on_body(self, body: bytes, ts_recv: int) -> bool:
        m = self.metrics
        m.frames += 1
        if len(body) > self.config.max_body_bytes:
            m.decode_errors += 1
            self._dead(MALFORMED, f"body of {len(body)} bytes exceeds max_body_bytes {self.config.max_body_bytes}",
                       body, ts_recv)
            return False
        try:
            doc = PAYLOAD_DECODER.decode(body)
        except DECODE_ERRORS as e:
            m.decode_errors += 1
            self._dead(MALFORMED, str(e), body, ts_recv)
            return False
        if doc.session != self.session:
            if self.session:
                self.counters.session_changes += 1
                for st in self._state.values():  # volumes restart; seqs may too
                    st.volume = 0
                    st.restart_ok = True
            self.session = doc.session
        seen: set[str] = set()
        for raw in doc.quotes:
            self._on_entry(bytes(raw), ts_recv, seen)
        return True

    def _on_entry(self, raw: bytes, ts_recv: int, seen: set[str]) -> None:
        m = self.metrics
        try:
            q = QUOTE_DECODER.decode(raw)
        except DECODE_ERRORS as e:
            m.decode_errors += 1
            self._dead(MALFORMED, str(e), raw, ts_recv)
            return
        iid = self._by_symbol.get(q.symbol)
        if iid is None:
            m.rejected += 1
            known = self._venue_symbols.get(q.symbol)
            if known is None:
                self._dead(UNKNOWN_INSTRUMENT, f"symbol {q.symbol!r} is not an {VENUE} instrument in the registry",
                           raw, ts_recv)
            else:
                self._dead(UNSUBSCRIBED, f"{known} was not requested", raw, ts_recv, known)
            return
        if iid in seen:
            m.rejected += 1
            m.duplicates += 1
            self._dead(DUPLICATE, f"{iid} appears twice in one document", raw, ts_recv, iid)
            return
        seen.add(iid)
        if (q.currency, q.unit) != self._unit[iid]:
            m.rejected += 1
            cur, unit = self._unit[iid]
            self._dead(UNIT_MISMATCH, f"{iid} quoted in {q.currency} per {q.unit}, registry says {cur} per {unit}",
                       raw, ts_recv, iid)
            return
        problem = _inconsistent(q)
        if problem:
            m.rejected += 1
            self._dead(MALFORMED, f"{iid}: {problem}", raw, ts_recv, iid)
            return
        self._apply(iid, q, raw, ts_recv)

    def _apply(self, iid: str, q: McxQuote, raw: bytes, ts_recv: int) -> None:
        m = self.metrics
        st = self._state[iid]
        first = st.seq < 0
        if not first and q.seq < st.seq:
            if not st.restart_ok:
                m.rejected += 1
                self.counters.stale += 1
                self._dead(STALE_SEQ, f"{iid} document at seq {q.seq} is older than seq {st.seq} already seen",
                           raw, ts_recv, iid)
                return
            st.seq, st.quote_seq, st.trade_seq = 0, 0, 0  # the new session restarted the seq stream
        st.restart_ok = False
        if q.seq == st.seq:
            self.counters.unchanged += 1
            return
        fresh: list[tuple[int, QuoteTick | TradeTick]] = []
        tq = q.quote
        if tq is not None and tq.seq > st.quote_seq:
            quote_tick = q.to_quote(iid, ts_recv, tq.seq if self._venue_seq else 0)
            if quote_tick is not None:  # always: tq is its quote
                fresh.append((tq.seq, quote_tick))
            st.quote_seq = tq.seq
        tt = q.last_trade
        if tt is not None and tt.seq > st.trade_seq:
            size = q.volume - st.volume
            if first:
                pass  # history: it only sets the volume baseline
            elif size < tt.qty:
                m.rejected += 1
                self._dead(MALFORMED, f"{iid} volume went from {st.volume} to {q.volume} across a new trade of"
                           f" qty {tt.qty}", raw, ts_recv, iid, tt.ts)
            else:
                trade_tick = q.to_trade(iid, ts_recv, size, tt.seq if self._venue_seq else 0)
                if trade_tick is not None:  # always: tt is its last trade
                    fresh.append((tt.seq, trade_tick))
            st.trade_seq = tt.seq
        elif q.volume != st.volume and not first:
            m.rejected += 1
            self._dead(MALFORMED, f"{iid} volume went from {st.volume} to {q.volume} without a new trade", raw,
                       ts_recv, iid)
        # in venue seq order: a trade older than the new quote must be checked against the quote it printed in
        fresh.sort(key=lambda item: item[0])
        for _, tick in fresh:
            self._emit(tick)
        if not first:
            self.counters.conflated += max(0, q.seq - st.seq - len(fresh))
        st.seq = q.seq
        st.volume = q.volume

    def _emit(self, tick: QuoteTick | TradeTick) -> None:
        self._events.append(tick)
        self.metrics.ticks += 1
        self.metrics.lag.add(tick.ts_recv - tick.ts_event)


def _inconsistent(q: McxQuote) -> str:
    """Cross-field contract of one entry; "" when it holds."""
    if q.quote is not None and q.quote.seq > q.seq:
        return f"quote seq {q.quote.seq} is newer than the entry's seq {q.seq}"
    t = q.last_trade
    if t is not None:
        if t.seq > q.seq:
            return f"last trade seq {t.seq} is newer than the entry's seq {q.seq}"
        if q.volume < t.qty or q.trades < 1:
            return f"cumulative volume {q.volume} / trades {q.trades} do not include the last trade (qty {t.qty})"
    elif q.volume or q.trades:
        return f"cumulative volume {q.volume} / trades {q.trades} without a last trade"
    return ""
