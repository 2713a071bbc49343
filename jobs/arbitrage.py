"""Cross-venue arbitrage on one link (market.links.Link), evaluated at quote-sample boundaries.

One `ArbitrageLogic` per link (key = link.id) receives the QuoteSamples of leg_a, leg_b and of the FX
instruments their conversion needs (`routes()` says which samples go to which link).

Evaluation rule (deterministic, independent of how the runtime batches its input): samples are collected per
boundary T (= sample.ts_event). Boundary T is evaluated at the first of
  1. every input (both legs and each needed FX instrument) has delivered its sample for T,
  2. a sample for a newer boundary arrives,
  3. on_watermark(wm) with wm >= T.
Under 2 and 3 an input without a sample for T is evaluated with its latest earlier sample; its age at T is
T - quote_ts_event, so an input that stopped sampling goes stale. A sample for a boundary already evaluated
(or older than the one being collected) is returned as a "late" DeadLetter. Runtimes deliver all samples of a
boundary before the watermark that passes it (the sampler emits them together), so 1 fires in practice and
2 and 3 give the same result. Signals carry ts_event = T and ts_recv = the max ts_recv of the samples of T.

Prices of both legs are converted to the commodity's canonical (unit, currency) with exact Decimal factors from
the audited unit table (FX rate = exact mid of the FX sample); edges are then computed in float:
  buy A / sell B: fair = A.ask*(1+duty) + freight + basis;  net = B.bid - fair - fees(A.ask, B.bid)
  buy B / sell A: fair = A.bid*(1+duty) + freight + basis;  net = fair - B.ask - fees(A.bid, B.ask)
  fees(x, y) = fees_bps/1e4 * (|x| + |y|)    (per leg, on each leg's canonical notional; costs stay positive
                                               when prices are negative)
  gross = sell-leg price - buy-leg price (raw canonical difference, before duty/freight/basis/fees)
  net_edge_bps = net / max(|fair|, min_abs_fair_price) * 1e4   (fair B price; the floor keeps the ratio finite
                                                                when a price crosses zero, WTI April 2020)
Episodes: idle -> pending when a direction's net_edge_bps >= entry_bps; pending -> open ("open" signal) at the
first evaluation at least min_duration_ms after the first one at >= entry_bps, if every evaluation in between
stayed >= entry_bps (else back to idle); open -> idle ("close" signal) when the open direction's edge falls
below exit_bps, or when any input is stale or missing (then the close reports the last good edge and says why).
duration_ns = T - (first evaluation of the episode at >= entry_bps), on open and on close.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

import msgspec

from jobs.fx import FxBook, FxSnapshot, fx_needed
from market.codec import encode
from market.config import Config
from market.events import ArbitrageSignal, DeadLetter, QuoteSample
from market.fixedpoint import PRICE_SCALE, to_fixed
from market.instruments import Registry, default_registry
from market.links import Link
from market.timeutil import NS_PER_MS
from market.units import ConversionError, UnitTable, default_units

ARBITRAGE_SNAPSHOT_VERSION = 1

BUY_A = "buy_a"  # buy leg_a, sell leg_b
BUY_B = "buy_b"  # buy leg_b, sell leg_a
IDLE, PENDING, OPEN = "idle", "pending", "open"

# ArbitrageSignal gains `detail` (why an episode closed) in market/events.py; until then it is left out.


class ArbitrageConfig(Config, frozen=True):
    entry_bps: float = 10.0  # net edge that starts an episode
    exit_bps: float = 3.0  # hysteresis: an open episode closes below this
    min_duration_ms: int = 2000  # edge must hold this long in event time before "open"
    stale_quote_ms: int = 5000  # no signal while any input quote is older than this at the boundary
    min_abs_fair_price: float = 0.01  # canonical currency per unit: floor of the bps denominator

    def __post_init__(self) -> None:
        if self.exit_bps > self.entry_bps:
            raise ValueError("exit_bps must be <= entry_bps (hysteresis)")
        if self.min_duration_ms < 0 or self.stale_quote_ms < 0:
            raise ValueError("min_duration_ms and stale_quote_ms must be >= 0")
        if self.min_abs_fair_price <= 0:
            raise ValueError("min_abs_fair_price must be > 0")


class LegQuote(msgspec.Struct, frozen=True):
    instrument_id: str
    bid: int
    ask: int
    quote_ts_event: int
    ts_event: int  # boundary of the sample it came from


class Edge(msgspec.Struct, frozen=True):
    direction: str  # BUY_A or BUY_B
    gross: float  # canonical currency per canonical unit
    net: float
    bps: float


class ArbitrageSnapshot(msgspec.Struct, frozen=True, kw_only=True, tag="arbitrage.state"):
    version: int
    link_id: str
    legs: list[LegQuote]
    fx: FxSnapshot
    pending_ts: int | None  # boundary being collected
    pending_recv: int  # max ts_recv of its samples
    evaluated_ts: int | None  # last boundary evaluated
    phase: str
    direction: str
    since_ts: int
    last_edge: Edge | None


def link_inputs(link: Link, registry: Registry, units: UnitTable) -> tuple[dict[str, str], list[str]]:
    """(currency -> FX instrument, all input instrument ids) of one link."""
    fx = fx_needed([registry.get(link.leg_a), registry.get(link.leg_b)], units)
    return fx, [link.leg_a, link.leg_b, *sorted(fx.values())]


def routes(links: Iterable[Link], units: UnitTable | None = None,
           registry: Registry | None = None) -> dict[str, list[str]]:
    """instrument_id -> ids of the links whose ArbitrageLogic needs its quote samples."""
    units = units or default_units()
    registry = registry or default_registry()
    out: dict[str, list[str]] = {}
    for link in links:
        for inst in link_inputs(link, registry, units)[1]:
            ids = out.setdefault(inst, [])
            if link.id not in ids:
                ids.append(link.id)
    return out


class ArbitrageLogic:
    def __init__(self, config: ArbitrageConfig, link: Link, registry: Registry | None = None,
                 units: UnitTable | None = None) -> None:
        self.config = config
        self.link = link
        self._registry = registry or default_registry()
        self._units = units or default_units()
        self._inst_a = self._registry.get(link.leg_a)
        self._inst_b = self._registry.get(link.leg_b)
        canon = self._units.canonical_for(self._inst_a.commodity)
        self._canon_unit, self._canon_ccy = canon.unit, canon.currency
        self._fx_instruments, self._inputs = link_inputs(link, self._registry, self._units)
        self._input_set = frozenset(self._inputs)
        self._fx_ccy = {inst: ccy for ccy, inst in self._fx_instruments.items()}
        self._stale_ns = config.stale_quote_ms * NS_PER_MS
        self._min_dur_ns = config.min_duration_ms * NS_PER_MS
        self._k = 1.0 + float(link.duty_pct) / 100.0
        self._cost = float(link.freight) + float(link.basis)
        self._fee = float(link.fees_bps) / 1e4
        self._factors: tuple[tuple[tuple[str, Decimal], ...], Decimal, Decimal] | None = None
        # state
        self._fx = FxBook(self._fx_instruments)
        self._legs: dict[str, LegQuote] = {}
        self._pending_ts: int | None = None
        self._pending_recv = 0
        self._arrived: set[str] = set()  # inputs with a sample for the pending boundary (derived, not snapshotted)
        self._evaluated_ts: int | None = None
        self._phase = IDLE
        self._direction = ""
        self._since_ts = 0
        self._last_edge: Edge | None = None

    @property
    def inputs(self) -> list[str]:
        """Instrument ids whose samples this link consumes."""
        return list(self._inputs)

    @property
    def phase(self) -> str:
        return self._phase

    # -- feeding ------------------------------------------------------------------------------------------

    def on_item(self, sample: QuoteSample) -> list[ArbitrageSignal | DeadLetter]:
        if sample.instrument_id not in self._input_set:
            raise ValueError(f"link {self.link.id} does not consume {sample.instrument_id} (see routes())")
        t = sample.ts_event
        if (self._evaluated_ts is not None and t <= self._evaluated_ts) or (
                self._pending_ts is not None and t < self._pending_ts):
            return [self._late(sample)]
        out: list[ArbitrageSignal | DeadLetter] = []
        if self._pending_ts is not None and t > self._pending_ts:
            out.extend(self._evaluate())
        if not self._fx.on_sample(sample):
            self._legs[sample.instrument_id] = LegQuote(sample.instrument_id, sample.bid, sample.ask,
                                                        sample.quote_ts_event, t)
        if self._pending_ts is None:
            self._pending_ts, self._pending_recv = t, sample.ts_recv
            self._arrived = {sample.instrument_id}
        else:
            self._pending_recv = max(self._pending_recv, sample.ts_recv)
            self._arrived.add(sample.instrument_id)
        if len(self._arrived) == len(self._inputs):  # every input has its sample for t
            out.extend(self._evaluate())
        return out

    def on_watermark(self, watermark_ns: int) -> list[ArbitrageSignal | DeadLetter]:
        if self._pending_ts is not None and self._pending_ts <= watermark_ns:
            return list(self._evaluate())
        return []

    def _input_times(self, inst: str) -> tuple[int, int] | None:
        """(quote_ts_event, sample boundary) of an input's latest sample, None before its first."""
        q = self._legs.get(inst)
        if q is not None:
            return q.quote_ts_event, q.ts_event
        fq = self._fx.quote(self._fx_ccy[inst]) if inst in self._fx_ccy else None
        return None if fq is None else (fq.quote_ts_event, fq.ts_event)

    def _late(self, sample: QuoteSample) -> DeadLetter:
        seen = self._evaluated_ts if self._pending_ts is None else self._pending_ts
        return DeadLetter(source="arbitrage", reason="late",
                          detail=f"link {self.link.id}: sample for boundary {sample.ts_event} arrived after "
                                 f"boundary {seen} was collected or evaluated",
                          raw=encode(sample).decode(), ts_recv=sample.ts_recv,
                          instrument_id=sample.instrument_id, ts_event=sample.ts_event)

    # -- evaluation ---------------------------------------------------------------------------------------

    def _evaluate(self) -> list[ArbitrageSignal]:
        t = self._pending_ts
        assert t is not None
        recv = self._pending_recv
        self._pending_ts, self._pending_recv, self._evaluated_ts = None, 0, t
        self._arrived = set()
        problem = self._input_problem(t)
        edges = None
        if problem is None:
            try:
                edges = self._edges()
            except ConversionError as err:  # e.g. a non-positive FX mid: no trustworthy canonical prices
                problem = f"conversion failed: {err}"
        out: list[ArbitrageSignal] = []
        if edges is None:
            if self._phase == OPEN and self._last_edge is not None:
                out.append(self._signal("close", self._last_edge, t, recv, f"closed without fresh data: {problem}"))
            self._phase, self._direction = IDLE, ""
            return out
        if self._phase == OPEN:
            e = edges[self._direction]
            self._last_edge = e
            if e.bps >= self.config.exit_bps:
                return out
            out.append(self._signal("close", e, t, recv,
                                    f"net edge {e.bps:.2f} bps fell below exit {self.config.exit_bps} bps"))
            self._phase, self._direction = IDLE, ""
        if self._phase == PENDING:
            e = edges[self._direction]
            if e.bps >= self.config.entry_bps:
                if t - self._since_ts >= self._min_dur_ns:
                    out.append(self._open(e, t, recv))
                return out
            self._phase, self._direction = IDLE, ""
        # idle: an episode starts on the better direction (at most one can clear a positive entry threshold)
        best = max(edges.values(), key=lambda e: e.bps)
        if best.bps >= self.config.entry_bps:  # (a direction just closed is below exit, so cannot restart here)
            self._phase, self._direction, self._since_ts = PENDING, best.direction, t
            if self._min_dur_ns == 0:
                out.append(self._open(best, t, recv))
        return out

    def _open(self, e: Edge, t: int, recv: int) -> ArbitrageSignal:
        self._phase, self._last_edge = OPEN, e
        return self._signal("open", e, t, recv, f"net edge {e.bps:.2f} bps >= entry {self.config.entry_bps} bps "
                                                f"for {(t - self._since_ts) / 1e9:g} s")

    def _input_problem(self, t: int) -> str | None:
        for inst in self._inputs:
            times = self._input_times(inst)
            if times is None:
                return f"no quote for {inst}"
            age = t - times[0]
            if age > self._stale_ns:
                return f"stale quote: {inst} age {age / 1e6:.0f} ms > {self.config.stale_quote_ms} ms"
        return None

    def _factors_now(self) -> tuple[Decimal, Decimal]:
        rates = self._fx.rates()
        key = tuple(sorted(rates.items()))
        if self._factors is None or self._factors[0] != key:
            self._factors = (key, self._units.factor(self._inst_a, rates) / PRICE_SCALE,
                             self._units.factor(self._inst_b, rates) / PRICE_SCALE)
        return self._factors[1], self._factors[2]

    def _edges(self) -> dict[str, Edge]:
        fa, fb = self._factors_now()  # exact multipliers per 1e-9 price unit
        qa, qb = self._legs[self.link.leg_a], self._legs[self.link.leg_b]
        a_bid, a_ask = float(qa.bid * fa), float(qa.ask * fa)
        b_bid, b_ask = float(qb.bid * fb), float(qb.ask * fb)
        floor = self.config.min_abs_fair_price
        fair = a_ask * self._k + self._cost
        net = b_bid - fair - self._fee * (abs(a_ask) + abs(b_bid))
        ab = Edge(BUY_A, b_bid - a_ask, net, net / max(abs(fair), floor) * 1e4)
        fair = a_bid * self._k + self._cost
        net = fair - b_ask - self._fee * (abs(a_bid) + abs(b_ask))
        ba = Edge(BUY_B, a_bid - b_ask, net, net / max(abs(fair), floor) * 1e4)
        return {BUY_A: ab, BUY_B: ba}

    def _signal(self, state: str, e: Edge, t: int, recv: int, detail: str) -> ArbitrageSignal:
        buy, sell = (self.link.leg_a, self.link.leg_b) if e.direction == BUY_A else (self.link.leg_b, self.link.leg_a)
        return ArbitrageSignal(
            pair_id=f"{buy}/{sell}", buy_instrument_id=buy, sell_instrument_id=sell, state=state,
            gross_spread=to_fixed(e.gross), net_edge=to_fixed(e.net), net_edge_bps=e.bps,
            canonical_unit=self._canon_unit, canonical_currency=self._canon_ccy, ts_event=t, ts_recv=recv,
            duration_ns=t - self._since_ts, detail=detail,
        )

    # -- state --------------------------------------------------------------------------------------------

    def snapshot(self) -> ArbitrageSnapshot:
        return ArbitrageSnapshot(
            version=ARBITRAGE_SNAPSHOT_VERSION, link_id=self.link.id,
            legs=[self._legs[i] for i in self._inputs if i in self._legs], fx=self._fx.snapshot(),
            pending_ts=self._pending_ts, pending_recv=self._pending_recv, evaluated_ts=self._evaluated_ts,
            phase=self._phase, direction=self._direction, since_ts=self._since_ts, last_edge=self._last_edge,
        )

    @classmethod
    def restore(cls, config: ArbitrageConfig, link: Link, snap: ArbitrageSnapshot, registry: Registry | None = None,
                units: UnitTable | None = None) -> ArbitrageLogic:
        if snap.version != ARBITRAGE_SNAPSHOT_VERSION:
            raise ValueError(f"arbitrage snapshot version {snap.version} is not {ARBITRAGE_SNAPSHOT_VERSION}")
        if snap.link_id != link.id:
            raise ValueError(f"snapshot of link {snap.link_id!r} restored into link {link.id!r}")
        if snap.phase not in (IDLE, PENDING, OPEN) or (snap.phase != IDLE and snap.direction not in (BUY_A, BUY_B)):
            raise ValueError(f"bad arbitrage snapshot phase {snap.phase!r} / direction {snap.direction!r}")
        logic = cls(config, link, registry, units)
        for q in snap.legs:
            if q.instrument_id not in (link.leg_a, link.leg_b):
                raise ValueError(f"snapshot holds a quote of {q.instrument_id}, not a leg of {link.id}")
            logic._legs[q.instrument_id] = q
        logic._fx = FxBook.restore(logic._fx_instruments, snap.fx)
        logic._pending_ts, logic._pending_recv = snap.pending_ts, snap.pending_recv
        if snap.pending_ts is not None:
            logic._arrived = {i for i in logic._inputs if (logic._input_times(i) or (0, None))[1] == snap.pending_ts}
        logic._evaluated_ts = snap.evaluated_ts
        logic._phase, logic._direction, logic._since_ts = snap.phase, snap.direction, snap.since_ts
        logic._last_edge = snap.last_edge
        return logic
