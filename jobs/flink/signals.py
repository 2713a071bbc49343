"""Bar-rate signal logic as ONE Flink keyed function: a thin shell around the same jobs/ classes the embedded
`jobs.pipeline.Pipeline` runs, state in Flink ValueState (msgspec msgpack bytes of the logic snapshots, so
checkpoints carry it), event-time timers for ordering. Its input is one stream of IN_COLUMNS rows that job.py
unions in SQL from bars_sql and samples_sql, all at bar rate (bars, per-second quote candidates, clock triggers,
rare check rows, late rows). One Python operator instead of one per role: each is a Python worker process.

- key = instrument, rec BAR -> `BarSignals`: BarAnomalyLogic + CrashLogic on the first emission (revision 0)
  of the bars of their intervals. A bar is buffered until the watermark passes the time the kernel would emit
  it (a timer; every bar emitted before it has fired upstream by then), then the due bars are fed in the
  kernel's emission order (emit_key), whatever order the window operators emit them in.
- key = SAMPLER_KEY, rec TOP / TRIGGER -> `SampleSignals`: the quote sampler (folds samples_sql's per-window
  quote candidates into the current quotes and emits the QuoteSamples of a clock trigger once the watermark
  makes its epoch complete) + StaleFeedLogic per instrument + ArbitrageLogic per link. One key because a
  sample boundary is one global event (every instrument sampled at once) and a link needs both legs and
  USDINR: at one boundary per second the single key costs nothing and keeps the embedded per-boundary order.
- key = instrument, rec CROSSED / OUTSIDE: samples_sql's crossed-market rows become AnomalySignals; the
  TRADE_OUTSIDE_QUOTE cooldown (recursive, so not SQL) is applied to the rare outside-quote candidates.
- key = instrument, rec LATE: bars_sql's late rows -> DeadLetter, exactly as jobs.bars.late_dead_letters.

Output: OUT_TYPE rows (rec, kind, instrument_id, ts_event, payload) with rec = SIGNAL (kind = SignalKind value,
payload = codec JSON of the signal) or DEAD_LETTER (kind = reason, payload = the DeadLetter). Like
jobs.pipeline, nothing calls ArbitrageLogic.on_watermark: a boundary with a missing input is evaluated when the
next boundary's samples come (the anomaly/crash logic have no timers).
"""

from __future__ import annotations

from typing import Any

import msgspec
from pyflink.common import Row, Types
from pyflink.datastream import KeyedProcessFunction, RuntimeContext
from pyflink.datastream.state import ValueState, ValueStateDescriptor

from jobs.anomaly import BarAnomalyLogic, BarAnomalySnapshot, StaleFeedLogic, StaleFeedSnapshot
from jobs.arbitrage import ArbitrageLogic, ArbitrageSnapshot, routes
from jobs.crash import CrashLogic, CrashSnapshot
from jobs.flink.samples_sql import CROSSED, OUTSIDE
from jobs.pipeline import PipelineConfig
from jobs.tickchecks import _px
from market.codec import encode
from market.columns import KIND_TRADE
from market.events import (
    AnomalySignal,
    AnomalyType,
    Bar,
    DeadLetter,
    QuoteSample,
    QuoteTick,
    Side,
    Signal,
    TradeTick,
    signal_instrument,
    signal_kind,
)
from market.instruments import default_registry
from market.links import default_links
from market.rejects import DETAIL, Reason
from market.timeutil import NS_PER_MS, parse_interval, to_iso
from market.units import default_units

SIGNAL = "signal"
DEAD_LETTER = "dead_letter"
OUT_COLUMNS = ("rec", "kind", "instrument_id", "ts_event", "payload")
OUT_TYPE = Types.ROW_NAMED(list(OUT_COLUMNS), [Types.STRING(), Types.STRING(), Types.STRING(), Types.LONG(),
                                               Types.STRING()])
# The one input stream (job.py builds it in SQL): rec, instrument_id, then N_VALUES BIGINTs whose meaning depends
# on rec: BAR = bars_sql BAR_COLUMNS after instrument_id, then emit_key; TOP = samples_sql QUOTE_TOP_COLUMNS after
# instrument_id; TRIGGER = samples_sql TRIGGER_COLUMNS; CROSSED / OUTSIDE = samples_sql CHECK_COLUMNS after
# instrument_id; LATE = bars_sql TICK_COLUMNS without instrument_id.
N_VALUES = 11
IN_COLUMNS = ("rec", "instrument_id", *(f"v{i}" for i in range(N_VALUES)))
BAR, TOP, TRIGGER, LATE = "bar", "top", "trigger", "late"
SAMPLER_KEY = ""  # the sampler's key (no instrument id is empty)


def out_row(item: Signal | DeadLetter) -> Row:
    payload = encode(item).decode()
    if isinstance(item, DeadLetter):
        return Row(DEAD_LETTER, item.reason, item.instrument_id, item.ts_event, payload)
    return Row(SIGNAL, signal_kind(item).value, signal_instrument(item), item.ts_event, payload)


# -- bars -> anomaly + crash ------------------------------------------------------------------------------------


class PendingBar(msgspec.Struct, frozen=True, array_like=True):
    bar: Bar
    emit_key: int  # bars_sql.first_emission_bars: 2 * (when the kernel emits it, ns) (+ 1 if it came due empty)


class BarKeyState(msgspec.Struct, frozen=True, tag="flink.bar_signals.v1"):
    anomaly: BarAnomalySnapshot | None
    crash: CrashSnapshot | None
    pending: list[PendingBar]  # bars not fed to the logic yet


def _due_ms(p: PendingBar) -> int:
    # every bar emitted before it (smaller emit_key) has fired upstream once the watermark reaches this
    return p.emit_key // 2 // NS_PER_MS - 1


def bar_from_values(iid: str, v: list[int]) -> Bar:
    """A bar from its IN_COLUMNS values (bars_sql BAR_COLUMNS order; ts_recv: see bars_sql.BarRow)."""
    interval_ns, start, op, high, low, close, volume, vwap, trades, ts_recv = v[:10]  # v[10]: emit_key
    return Bar(iid, interval_ns, start, op, high, low, close, volume, vwap, trades, start + interval_ns, ts_recv, 0)


class BarSignals:
    """One instrument's BarAnomalyLogic + CrashLogic over its state bytes."""

    def __init__(self, config: PipelineConfig) -> None:
        self.config = config
        self._anomaly_ns = parse_interval(config.anomaly.bar_interval)
        self._crash_ns = parse_interval(config.crash.bar_interval)
        self._codec = msgspec.msgpack.Decoder(BarKeyState)

    def _load(self, raw: bytes | None) -> BarKeyState:
        return BarKeyState(None, None, []) if raw is None else self._codec.decode(raw)

    def add(self, raw: bytes | None, bar: PendingBar) -> tuple[bytes, int]:
        """-> (new state, event-time timer in ms)."""
        st = self._load(raw)
        return msgspec.msgpack.encode(BarKeyState(st.anomaly, st.crash, [*st.pending, bar])), _due_ms(bar)

    def fire(self, raw: bytes | None, timestamp_ms: int) -> tuple[bytes | None, list[Row]]:
        st = self._load(raw)
        due = [p.bar for p in sorted((p for p in st.pending if _due_ms(p) <= timestamp_ms),
                                     key=lambda p: (p.bar.interval_ns, p.emit_key))]
        if not due:
            return raw, []
        cfg = self.config
        anomaly = None if st.anomaly is None else BarAnomalyLogic.restore(cfg.anomaly, st.anomaly)
        crash = None if st.crash is None else CrashLogic.restore(cfg.crash, st.crash)
        out: list[Row] = []
        for bar in due:
            if bar.interval_ns == self._anomaly_ns:
                anomaly = anomaly or BarAnomalyLogic(cfg.anomaly, bar.instrument_id)
                out += [out_row(x) for x in anomaly.on_item(bar)]
            if bar.interval_ns == self._crash_ns:
                crash = crash or CrashLogic(cfg.crash, bar.instrument_id)
                out += [out_row(x) for x in crash.on_item(bar)]
        rest = [p for p in st.pending if _due_ms(p) > timestamp_ms]
        return msgspec.msgpack.encode(BarKeyState(
            None if anomaly is None else anomaly.snapshot(), None if crash is None else crash.snapshot(), rest)), out


# -- quote samples -> stale feed + arbitrage ---------------------------------------------------------------------


class QuoteTop(msgspec.Struct, frozen=True, array_like=True):
    instrument_id: str
    epoch: int
    ts_event: int
    arrival: int
    bid: int
    ask: int
    bid_size: int
    ask_size: int


class Trigger(msgspec.Struct, frozen=True, array_like=True):
    epoch: int  # the sampling boundary (ns)
    ts_recv: int  # of the row that moved the clock: the samples' ts_recv


class SamplerState(msgspec.Struct, frozen=True, tag="flink.sample_signals.v1"):
    current: dict[str, QuoteTop]  # each instrument's current quote, as of the last trigger processed
    tops: list[QuoteTop]  # candidates of epochs not folded in yet
    triggers: list[Trigger]  # triggers whose epoch is not complete yet
    stale: dict[str, StaleFeedSnapshot]
    arbitrage: dict[str, ArbitrageSnapshot]


def _trigger_ms(t: Trigger) -> int:
    # the epoch's candidates sit in windows ending at or before the boundary: all fired at boundary - 1 ms
    return t.epoch // NS_PER_MS - 1


class SampleSignals:
    """The quote sampler + StaleFeedLogic per instrument + ArbitrageLogic per link, over the one key's state."""

    def __init__(self, config: PipelineConfig) -> None:
        self.config = config
        self._registry = default_registry()
        self._links = {link.id: link for link in default_links()}
        self._units = default_units()
        self._routes = routes(self._links.values(), self._units, self._registry)
        self._codec = msgspec.msgpack.Decoder(SamplerState)

    def _load(self, raw: bytes | None) -> SamplerState:
        return SamplerState({}, [], [], {}, {}) if raw is None else self._codec.decode(raw)

    def add_top(self, raw: bytes | None, top: QuoteTop) -> bytes:
        st = self._load(raw)
        return msgspec.msgpack.encode(msgspec.structs.replace(st, tops=[*st.tops, top]))

    def add_trigger(self, raw: bytes | None, trig: Trigger) -> tuple[bytes, int]:
        st = self._load(raw)
        return msgspec.msgpack.encode(msgspec.structs.replace(st, triggers=[*st.triggers, trig])), _trigger_ms(trig)

    def fire(self, raw: bytes | None, timestamp_ms: int) -> tuple[bytes | None, list[Row]]:
        st = self._load(raw)
        due = sorted((t for t in st.triggers if _trigger_ms(t) <= timestamp_ms), key=lambda t: t.epoch)
        if not due:
            return raw, []
        cfg = self.config
        current = dict(st.current)
        tops = st.tops
        stale = {k: StaleFeedLogic.restore(cfg.anomaly, v) for k, v in st.stale.items()}
        arb = {k: ArbitrageLogic.restore(cfg.arbitrage, self._links[k], v, self._registry, self._units)
               for k, v in st.arbitrage.items()}
        out: list[Row] = []
        for trig in due:
            keep = []
            for q in tops:
                if q.epoch >= trig.epoch:
                    keep.append(q)
                    continue
                cur = current.get(q.instrument_id)
                if cur is None or (q.ts_event, q.arrival) > (cur.ts_event, cur.arrival):
                    current[q.instrument_id] = q
            tops = keep
            for sample in self._samples(current, trig):
                iid = sample.instrument_id
                if iid not in stale:
                    stale[iid] = StaleFeedLogic(cfg.anomaly, iid)
                out += [out_row(x) for x in stale[iid].on_item(sample)]
                for link_id in self._routes.get(iid, ()):
                    if link_id not in arb:
                        arb[link_id] = ArbitrageLogic(cfg.arbitrage, self._links[link_id], self._registry,
                                                      self._units)
                    out += [out_row(x) for x in arb[link_id].on_item(sample)]
        new = SamplerState(current, tops, [t for t in st.triggers if _trigger_ms(t) > timestamp_ms],
                           {k: v.snapshot() for k, v in stale.items()}, {k: v.snapshot() for k, v in arb.items()})
        return msgspec.msgpack.encode(new), out

    def _samples(self, current: dict[str, QuoteTop], trig: Trigger) -> list[QuoteSample]:
        """Two-sided current quotes in registry order (jobs.tickchecks.to_samples)."""
        qs = sorted(current.values(), key=lambda q: self._registry.index_of(q.instrument_id))
        return [QuoteSample(q.instrument_id, q.bid, q.ask, q.ts_event, trig.epoch, trig.ts_recv)
                for q in qs if q.bid_size > 0 and q.ask_size > 0]


# -- tick checks ------------------------------------------------------------------------------------------------


def crossed_signal(iid: str, v: list[int]) -> Row:
    ts_event, ts_recv, _arrival, _price, bid, _ask, ref, dist = v[:8]
    return out_row(AnomalySignal(
        instrument_id=iid, anomaly=AnomalyType.CROSSED_MARKET, value=float(dist), threshold=0.0,
        detail=f"bid {_px(bid)} > ask {_px(ref)}", ts_event=ts_event, ts_recv=ts_recv))


def outside_signal(last_ts: int | None, cooldown_ns: int, iid: str, v: list[int]) -> Row | None:
    """The candidate's TRADE_OUTSIDE_QUOTE, None while the cooldown since the last one (last_ts) runs."""
    ts_event, ts_recv, _arrival, price, _bid, _ask, ref, dist = v[:8]
    if last_ts is not None and ts_event - last_ts < cooldown_ns:
        return None
    side = f"< bid {_px(ref)}" if price < ref else f"> ask {_px(ref)}"
    return out_row(AnomalySignal(
        instrument_id=iid, anomaly=AnomalyType.TRADE_OUTSIDE_QUOTE, value=float(dist), threshold=0.0,
        detail=f"trade {_px(price)} {side}", ts_event=ts_event, ts_recv=ts_recv))


# -- the one keyed function -------------------------------------------------------------------------------------


def key_of(row: Row) -> str:
    return SAMPLER_KEY if row[0] in (TOP, TRIGGER) else row[1]


class MarketFunction(KeyedProcessFunction):  # type: ignore[misc]
    """Every bar-rate input, one stream of IN_COLUMNS rows keyed by `key_of`; dispatches on `rec`."""

    def __init__(self, config: PipelineConfig) -> None:
        self.config = config
        self._cooldown_ns = config.tickchecks.outside_quote_cooldown_ms * NS_PER_MS
        self._bars = BarSignals(config)
        self._sampler = SampleSignals(config)
        self._bar_state: ValueState | None = None
        self._sample_state: ValueState | None = None
        self._outside_state: ValueState | None = None

    def __getstate__(self) -> dict[str, Any]:  # what ships to the workers: the config; the rest is rebuilt
        return {"config": self.config}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["config"])  # type: ignore[misc]

    def open(self, runtime_context: RuntimeContext) -> None:
        def state(name: str) -> ValueState:
            return runtime_context.get_state(ValueStateDescriptor(name, Types.PICKLED_BYTE_ARRAY()))

        self._bar_state = state("bar_signals")  # BarKeyState bytes
        self._sample_state = state("sample_signals")  # SamplerState bytes (key SAMPLER_KEY only)
        self._outside_state = state("outside_ts")  # event time of the last TRADE_OUTSIDE_QUOTE

    def process_element(self, value: Row, ctx: KeyedProcessFunction.Context) -> list[Row]:
        assert self._bar_state is not None and self._sample_state is not None and self._outside_state is not None
        rec, iid = value[0], value[1]
        v = [value[i] for i in range(2, 2 + N_VALUES)]
        timers = ctx.timer_service()
        if rec == BAR:
            raw, at = self._bars.add(self._bar_state.value(), PendingBar(bar_from_values(iid, v), v[10]))
            self._bar_state.update(raw)
            timers.register_event_time_timer(at)
        elif rec == TOP:
            self._sample_state.update(self._sampler.add_top(self._sample_state.value(), QuoteTop(iid, *v[:7])))
        elif rec == TRIGGER:
            raw, at = self._sampler.add_trigger(self._sample_state.value(), Trigger(v[0], v[2]))
            self._sample_state.update(raw)
            timers.register_event_time_timer(at)
        elif rec == CROSSED:
            return [crossed_signal(iid, v)]
        elif rec == OUTSIDE:
            row = outside_signal(self._outside_state.value(), self._cooldown_ns, iid, v)
            if row is not None:
                self._outside_state.update(v[0])
                return [row]
        elif rec == LATE:
            return [late_dead_letter(iid, v)]
        else:
            raise ValueError(f"unknown input record {rec!r}")
        return []

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> list[Row]:
        assert self._bar_state is not None and self._sample_state is not None
        if ctx.get_current_key() == SAMPLER_KEY:
            raw, out = self._sampler.fire(self._sample_state.value(), timestamp)
            self._sample_state.update(raw)
        else:
            raw, out = self._bars.fire(self._bar_state.value(), timestamp)
            self._bar_state.update(raw)
        return out


# -- late rows --------------------------------------------------------------------------------------------------


def late_dead_letter(iid: str, v: list[int]) -> Row:
    """A bars_sql late row (TICK_COLUMNS less instrument_id, as IN_COLUMNS values) as the embedded pipeline's LATE
    DeadLetter (jobs.bars.late_dead_letters)."""
    _arrival, kind, ts_event, ts_recv, seq, price, size, bid, ask, bid_size, ask_size = v[:11]
    tick: TradeTick | QuoteTick = (
        TradeTick(iid, price, size, ts_event, ts_recv, seq, Side.NONE) if kind == KIND_TRADE
        else QuoteTick(iid, bid, ask, bid_size, ask_size, ts_event, ts_recv, seq))
    return out_row(DeadLetter(source="bars", reason=Reason.LATE.label,
                              detail=f"{DETAIL[Reason.LATE]}: ts_event {to_iso(ts_event)}",
                              raw=encode(tick).decode(), ts_recv=ts_recv, instrument_id=iid, ts_event=ts_event))
