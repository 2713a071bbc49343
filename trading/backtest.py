"""The backtester: tick files -> the signal pipeline -> the trade module -> simulated venues -> a report.

    report = run_backtest("arbitrage", "day.parquet", latency_ms=5, out_dir="out")

1. Every tick file (a file, or every .parquet/.csv of a directory in name order, as one continuous stream)
   goes through the edge ingest and the SAME `jobs.pipeline.Pipeline` the engine runs, in batches (its
   outputs do not depend on the batch size). Signals do not depend on our trading (the replayed market does
   not react to us), so this pass runs ahead of the trading simulation.
2. Event-time simulation. The clock of a row is the running max ts_event of the rows delivered up to it.
   A derived record (signal, bar) becomes known at the clock of the row whose arrival emitted it (the row
   with its ts_recv), and never before its own ts_event. Events at time t see every row with clock <= t:
     signals        -> TradeModule.on_signal (bars of the volatility interval -> on_bar, in time order)
     module timers  -> on_timer (retries, passive re-pricing, crash cooldown)
     approvals      -> a parked order is approved / rejected approval_delay_ms after it was parked
     order arrivals -> the venue, latency_ms of event time after the module decided
     samples        -> the equity curve every sample_s (Sharpe uses these); while a position is open it is
                       also marked every mark_ms and after every fill (chart and max drawdown use all marks)
   Market rows between events go to the simulated venues (trading/venue.py: queue-position model).
   At equal times: signals, approvals, timers, arrivals, samples. Events after the last row are dropped.
3. report.json (deterministic: same inputs and config -> identical bytes), equity.png, positions.png,
   index.html (trading/report.py).
"""

from __future__ import annotations

import heapq
import itertools
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

from feeds.tickfile import read_ticks
from jobs.pipeline import Pipeline
from market.columns import TickColumns
from market.events import ArbitrageSignal, Bar, CrashWarning, Signal, signal_kind
from market.instruments import Registry, default_registry
from market.timeutil import NS_PER_MS, NS_PER_S, parse_interval
from market.units import ConversionError, UnitTable, default_units
from trading.config import BacktestConfig
from trading.orders import OrderStatus, TradeModule, VenueUpdate
from trading.positions import Fill, PnL, Position, usd_rate
from trading.report import (
    REPORT_VERSION,
    Counts,
    EquityPoint,
    InstrumentResult,
    OrderRecord,
    ReportData,
    ReportFiles,
    Summary,
    annualise,
    max_drawdown,
    sharpe,
    write_report,
)
from trading.risk import QuoteBoard
from trading.strategies import ArbitrageStrategy, make_strategies
from trading.venue import SimVenue, VenueEvent

TICK_SUFFIXES = (".parquet", ".csv")
# event priorities at equal times
P_SIGNAL, P_APPROVAL, P_TIMER, P_ARRIVAL, P_SAMPLE, P_END = range(6)


@dataclass(frozen=True, slots=True)
class BacktestReport:
    data: ReportData
    files: ReportFiles

    @property
    def summary(self) -> Summary:
        return self.data.summary


def tick_files(data: str | Path) -> list[Path]:
    p = Path(data)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in TICK_SUFFIXES)
        if not files:
            raise FileNotFoundError(f"no tick files ({', '.join(TICK_SUFFIXES)}) in {p}")
        return files
    if p.is_file():
        return [p]
    raise FileNotFoundError(f"no such tick file or directory: {p}")


@dataclass
class SignalPass:
    """What the pipeline pass hands to the simulation."""

    rows: TickColumns  # accepted rows, delivery order
    clock: np.ndarray  # event-time clock per row
    signals: list[tuple[int, Signal]]  # (known at, signal) for the strategy kinds, in time order
    bars: list[tuple[int, Bar]]  # (known at, bar) of the volatility interval, first emissions, in time order
    rows_in: int = 0
    signals_by_kind: dict[str, int] = field(default_factory=dict)
    dead_letters_by_reason: dict[str, int] = field(default_factory=dict)


def signal_pass(files: list[Path], config: BacktestConfig, registry: Registry) -> SignalPass:
    pipe = Pipeline(config.pipeline, registry)
    vol_ns = parse_interval(config.trade.risk.vol_bar_interval)
    parts: list[TickColumns] = []
    signals: list[Signal] = []
    bars: list[Bar] = []
    kinds: Counter[str] = Counter()
    dead: Counter[str] = Counter()
    rows_in = 0

    def take(sigs: list[Signal], new_bars: list[Bar]) -> None:
        for s in sigs:
            kinds[signal_kind(s).value] += 1
            if isinstance(s, ArbitrageSignal | CrashWarning):
                signals.append(s)
        bars.extend(b for b in new_bars if b.interval_ns == vol_ns and not b.revision)

    for path in files:
        ing = read_ticks(path, registry)
        rows_in += ing.rows_in
        dead.update(d.reason for d in ing.dead_letters)
        cols, step = ing.columns, config.batch_rows
        for lo in range(0, len(cols), step):
            out = pipe.process(cols.take(slice(lo, lo + step)))
            dead.update(d.reason for d in out.dead_letters)
            if out.accepted is not None and len(out.accepted):
                parts.append(out.accepted)
            take(out.signals, out.bars)
    end = pipe.finish()
    dead.update(d.reason for d in end.dead_letters)
    take(end.signals, end.bars)

    rows = TickColumns.concat(parts)
    clock = np.maximum.accumulate(rows.ts_event) if len(rows) else np.zeros(0, np.int64)
    known_sig = _known_at(rows, clock, [s.ts_event for s in signals], [s.ts_recv for s in signals])
    known_bar = _known_at(rows, clock, [b.ts_event for b in bars], [b.ts_recv for b in bars])
    # canonical order at equal times: the pipeline's interleaving of signal kinds inside a batch depends on
    # the batch boundaries, this order does not
    order_s = sorted(range(len(signals)), key=lambda k: (known_sig[k], _signal_key(signals[k]), k))
    order_b = sorted(range(len(bars)), key=lambda k: (known_bar[k], bars[k].ts_event, bars[k].instrument_id))
    return SignalPass(rows, clock, [(known_sig[k], signals[k]) for k in order_s],
                      [(known_bar[k], bars[k]) for k in order_b], rows_in, dict(sorted(kinds.items())),
                      dict(sorted(dead.items())))


def _signal_key(s: Signal) -> tuple[str, int, str, str]:
    if isinstance(s, ArbitrageSignal):
        return ("arbitrage", s.ts_event, s.pair_id, s.state)
    return (signal_kind(s).value, s.ts_event, s.instrument_id, "")


def _known_at(rows: TickColumns, clock: np.ndarray, ts_event: list[int], ts_recv: list[int]) -> list[int]:
    """When each derived record became known: the clock of the first row with its ts_recv (the row whose
    arrival emitted it), and never before its ts_event. Records of no row (end-of-input flush) keep ts_event."""
    if not ts_event:
        return []
    ev = np.asarray(ts_event, np.int64)
    if not len(rows):
        return ev.tolist()  # type: ignore[no-any-return]
    order = np.argsort(rows.ts_recv, kind="stable")
    recv_sorted = rows.ts_recv[order]
    want = np.asarray(ts_recv, np.int64)
    k = np.searchsorted(recv_sorted, want, side="left")
    found = k < recv_sorted.shape[0]
    found[found] = recv_sorted[k[found]] == want[found]
    at = ev.copy()
    at[found] = np.maximum(ev[found], clock[order[k[found]]])
    return at.tolist()  # type: ignore[no-any-return]


class Simulation:
    """The event loop of one backtest (state kept for inspection by tests)."""

    def __init__(self, strategy: str, sp: SignalPass, latency_ms: int, config: BacktestConfig,
                 registry: Registry, units: UnitTable) -> None:
        if latency_ms < 0:
            raise ValueError("latency_ms must be >= 0")
        self.sp = sp
        self.config = config
        self.registry = registry
        self.units = units
        self.latency_ns = latency_ms * NS_PER_MS
        self.board = QuoteBoard(registry)
        self.module = TradeModule(config.trade, make_strategies(strategy, config.trade), registry, units, self.board)
        self.venue = SimVenue(registry, units, self.board, config.venue)
        self.equity: list[EquityPoint] = []
        self._heap: list[tuple[int, int, int, str, Any]] = []
        self._seq = itertools.count()
        self._timers: set[int] = set()
        self.parked_ids: set[int] = set()  # orders that waited for approval
        self._cursor = 0
        self._bar_cursor = 0
        self._marking = False  # a "mark" event is scheduled
        self._now = 0
        self._end = 0
        self._sample_ns = config.sample_s * NS_PER_S

    def _push(self, t: int, prio: int, kind: str, payload: Any) -> None:
        heapq.heappush(self._heap, (t, prio, next(self._seq), kind, payload))

    def run(self) -> None:
        sp = self.sp
        if not len(sp.rows):
            return
        start, end = int(sp.clock[0]), int(sp.clock[-1])
        self._end = end
        for t, sig in sp.signals:
            self._push(t, P_SIGNAL, "signal", sig)
        self._push((start // self._sample_ns + 1) * self._sample_ns, P_SAMPLE, "sample", None)
        self._push(end, P_END, "end", None)  # events after the last row are never run
        while True:
            if not self._advance(self._heap[0][0]):
                self._schedule(self._now, False)  # a resting order filled on the way: its reactions go first
                continue
            t, _, _, kind, payload = heapq.heappop(self._heap)
            if kind == "end":
                break
            self._dispatch(t, kind, payload)
            self._schedule(t, kind == "timer")
        if not self.equity or self.equity[-1].ts_event != end or not self.equity[-1].sample:
            self.equity.append(EquityPoint(end, float(self.pnl_usd()), True))

    def _dispatch(self, t: int, kind: str, payload: Any) -> None:
        if kind == "signal":
            self.module.on_signal(payload, t)
        elif kind == "timer":
            self._timers.discard(t)
            self.module.on_timer(t)
        elif kind == "approval":
            self._approve(payload, t)
        elif kind == "arrival":
            self._handle(self.venue.execute(payload, t))
        elif kind == "sample":
            self.equity.append(EquityPoint(t, float(self.pnl_usd()), True))
            if t + self._sample_ns <= self._end:
                self._push(t + self._sample_ns, P_SAMPLE, "sample", None)
        elif kind == "mark":
            self._marking = False
            if any(p.qty for p in self.module.positions):
                self.equity.append(EquityPoint(t, float(self.pnl_usd()), False))
                self._mark_from(t)
        else:
            raise ValueError(f"unknown event kind {kind!r}")

    def _advance(self, t: int) -> bool:
        """Replay the market up to clock t; False if it stopped earlier, after a row that filled a resting
        strategy order (self._now = that row's clock)."""
        sp = self.sp
        hi = int(np.searchsorted(sp.clock, t, side="right"))
        upto, reached = t, True
        events: list[VenueEvent] = []
        if hi > self._cursor:
            events, stop = self.venue.advance(sp.rows, self._cursor, hi, sp.clock, stop_on_fill=True)
            self._cursor = stop
            if stop < hi:
                upto, reached = int(sp.clock[stop - 1]), False
                self._now = upto
        bars = sp.bars
        while self._bar_cursor < len(bars) and bars[self._bar_cursor][0] <= upto:
            self.module.on_bar(bars[self._bar_cursor][1])
            self._bar_cursor += 1
        self._handle(events)
        return reached

    def _handle(self, events: list[VenueEvent]) -> None:
        filled = False
        for e in events:
            if isinstance(e, Fill):
                self.module.on_fill(e)
                filled = True
            elif isinstance(e, VenueUpdate):
                self.module.on_update(e)
        if filled:
            last = max(e.ts_event for e in events if isinstance(e, Fill))
            self.equity.append(EquityPoint(last, float(self.pnl_usd()), False))
            self._mark_from(last)

    def _mark_from(self, t: int) -> None:
        if not self._marking:
            self._marking = True
            self._push(t + self.config.mark_ms * NS_PER_MS, P_SAMPLE, "mark", None)

    def _approve(self, order_id: int, t: int) -> None:
        o = self.module.orders[order_id]
        if o.status != OrderStatus.PARKED:
            return  # superseded or killed meanwhile
        if self.config.approval == "approve":
            self.module.approve(order_id, t)
        else:
            self.module.reject(order_id, t, "rejected by the backtest's approval policy")

    def _schedule(self, t: int, after_timer: bool) -> None:
        for cmd in self.module.drain():
            self._push(cmd.ts_event + self.latency_ns, P_ARRIVAL, "arrival", cmd)
        for o in self.module.pending_approvals():
            if o.order_id not in self.parked_ids:
                self.parked_ids.add(o.order_id)
                self._push(t + self.config.approval_delay_ms * NS_PER_MS, P_APPROVAL, "approval", o.order_id)
        wake = self.module.next_wakeup()
        if wake is not None:
            wake = max(wake, t + 1) if after_timer else max(wake, t)
            if wake not in self._timers:
                self._timers.add(wake)
                self._push(wake, P_TIMER, "timer", None)

    # -- P&L --------------------------------------------------------------------------------------------------

    def _usd_per_quote(self, instrument_id: str) -> Decimal | None:
        try:
            return usd_rate(self.registry.get(instrument_id), self.units, self.board.fx_rates(self.units))
        except ConversionError:
            return None

    def pnls(self) -> list[tuple[Position, PnL]]:
        """Every traded instrument's P&L, marked at the current mid and FX."""
        return [(pos, pos.pnl(self.board.mid(pos.instrument.index), self._usd_per_quote(pos.instrument.id)))
                for pos in self.module.positions]

    def instrument_results(self) -> list[InstrumentResult]:
        out = []
        for pos, p in self.pnls():
            inst = pos.instrument
            out.append(InstrumentResult(
                instrument_id=inst.id, venue=inst.venue, currency=p.currency, point_value=_dec(pos.point_value),
                position=p.position, mark=None if p.mark is None else _dec(p.mark), realised=_dec(p.realised),
                unrealised=_dec(p.unrealised), fees=_dec(p.fees), pnl=_dec(p.total),
                realised_usd=_usd(p.realised_usd), unrealised_usd=_usd(p.unrealised_usd), pnl_usd=_usd(p.total_usd),
                turnover_usd=_usd(p.turnover_usd), fills=p.fills))
        return out

    def pnl_usd(self) -> Decimal:
        return sum((p.total_usd for _, p in self.pnls()), Decimal(0))


def _dec(x: Decimal) -> str:
    """Exact decimal in plain notation ('100', not '1E+2')."""
    return format(x.normalize(), "f")


def _usd(x: Decimal) -> float:
    return float(round(x, 6))


def _reason(detail: str) -> str:
    """'risk: stale quote: CL.NYMEX age ...' -> 'stale quote'."""
    body = detail.removeprefix("risk: ")
    return body.split(":", 1)[0] if ":" in body else body


def build_report(sim: Simulation, strategy: str, files: list[Path], latency_ms: int) -> ReportData:
    sp, module, cfg = sim.sp, sim.module, sim.config
    instruments = sim.instrument_results()
    fills = module.fills
    orders = [module.orders[k] for k in sorted(module.orders)]
    samples = [p.pnl_usd for p in sim.equity if p.sample]
    curve = [p.pnl_usd for p in sim.equity]
    s = sharpe(samples)
    pnls = [p for _, p in sim.pnls()]

    def total(name: str) -> float:
        return _usd(sum((getattr(p, name) for p in pnls), Decimal(0)))

    summary = Summary(
        pnl_usd=total("total_usd"), realised_usd=total("realised_usd"), unrealised_usd=total("unrealised_usd"),
        fees_usd=total("fees_usd"), max_drawdown_usd=round(max_drawdown(curve), 6),
        turnover_usd=total("turnover_usd"),
        sharpe=None if s is None else round(s, 9), sharpe_annualised=None if s is None else round(
            annualise(s, cfg.sample_s) or 0.0, 6),
        sample_s=cfg.sample_s, samples=len(samples), fills=len(fills), orders=len(orders),
    )
    skipped: list[str] = []
    for strat in module.strategies:
        if isinstance(strat, ArbitrageStrategy):
            skipped += strat.skipped
    counts = Counts(
        rows_in=sp.rows_in, ticks_accepted=len(sp.rows), dead_letters_by_reason=sp.dead_letters_by_reason,
        signals_by_kind=sp.signals_by_kind, signals_to_strategy=module.signals_seen,
        orders_by_status=dict(sorted(Counter(o.status.value for o in orders).items())),
        risk_rejections_by_reason=dict(sorted(Counter(
            _reason(o.detail) for o in orders if o.status == OrderStatus.REJECTED and o.detail.startswith("risk: ")
        ).items())),
        parked=sum(1 for o in orders if o.order_id in sim.parked_ids),
        approved=sum(1 for o in orders if o.approved),
        fills_by_liquidity=dict(sorted(Counter(f.liquidity for f in fills).items())),
        skipped=skipped,
    )
    records = [OrderRecord(order_id=o.order_id, instrument_id=o.instrument_id, side=o.side, qty=o.qty, tif=o.tif,
                           price=o.price, filled=o.filled, status=o.status.value, approved=o.approved,
                           risk_score=round(o.risk.score, 9), created_ns=o.created_ns, sent_ns=o.sent_ns,
                           done_ns=o.done_ns, detail=o.detail) for o in orders]
    start = int(sp.clock[0]) if len(sp.rows) else 0
    end = int(sp.clock[-1]) if len(sp.rows) else 0
    return ReportData(version=REPORT_VERSION, strategy=strategy, data_files=[f.name for f in files],
                      latency_ms=latency_ms, start_ns=start, end_ns=end, summary=summary, counts=counts,
                      instruments=instruments, equity=sim.equity, fills=fills, orders=records, config=cfg)


def run_backtest(strategy: str, data: str | Path, latency_ms: int = 0, out_dir: str | Path = "backtest",
                 config: BacktestConfig | None = None, registry: Registry | None = None,
                 units: UnitTable | None = None) -> BacktestReport:
    """Backtest `strategy` ('arbitrage', 'crash' or 'arbitrage,crash') on a tick file or a directory of them."""
    cfg = config or BacktestConfig()
    reg = registry or default_registry()
    un = units or default_units()
    make_strategies(strategy, cfg.trade)  # fail on a bad name before reading any data
    files = tick_files(data)
    sim = Simulation(strategy, signal_pass(files, cfg, reg), latency_ms, cfg, reg, un)
    sim.run()
    report = build_report(sim, strategy, files, latency_ms)
    return BacktestReport(report, write_report(report, out_dir))

