"""The signal pipeline, composed once: validate -> bars -> tick checks -> bar-rate signal logic.

Runtime-free: the embedded engine feeds it `TickColumns` batches; a Flink job wraps the same stages
(bars in Flink SQL, checked against `BarAggregator` by a differential test). Output does not depend on
how the input is split into batches, except for the interleaving of signal kinds inside a batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import msgspec
import numpy as np

from jobs.anomaly import AnomalyConfig, BarAnomalyLogic, BarAnomalySnapshot, StaleFeedLogic, StaleFeedSnapshot
from jobs.arbitrage import ArbitrageConfig, ArbitrageLogic, ArbitrageSnapshot, routes
from jobs.bars import BarAggregator, BarsConfig, BarSnapshot, late_dead_letters, to_bars
from jobs.crash import CrashConfig, CrashLogic, CrashSnapshot
from jobs.logic import Keyed
from jobs.tickchecks import TickChecker, TickCheckerSnapshot, TickChecksConfig, to_anomalies, to_samples
from jobs.validate import ValidateConfig, Validator, ValidatorSnapshot, dead_letters, gap_signals
from market.columns import TickColumns
from market.config import Config
from market.events import Bar, DeadLetter, QuoteSample, Signal
from market.instruments import Registry, default_registry
from market.links import Link, default_links
from market.rejects import Reason, RejectCounters
from market.timeutil import parse_interval
from market.units import UnitTable, default_units

Impl = Literal["numba", "python"]


class PipelineConfig(Config, frozen=True):
    validate: ValidateConfig = msgspec.field(default_factory=ValidateConfig)
    bars: BarsConfig = msgspec.field(default_factory=BarsConfig)
    tickchecks: TickChecksConfig = msgspec.field(default_factory=TickChecksConfig)
    arbitrage: ArbitrageConfig = msgspec.field(default_factory=ArbitrageConfig)
    anomaly: AnomalyConfig = msgspec.field(default_factory=AnomalyConfig)
    crash: CrashConfig = msgspec.field(default_factory=CrashConfig)
    impl: Impl = "numba"


class PipelineSnapshot(msgspec.Struct, frozen=True, tag="pipeline.v1"):
    """Every stage's state: restoring it and feeding the rest of the input gives the uninterrupted output."""

    validator: ValidatorSnapshot
    bars: BarSnapshot
    checker: TickCheckerSnapshot
    bar_anomaly: dict[str, BarAnomalySnapshot]
    stale: dict[str, StaleFeedSnapshot]
    crash: dict[str, CrashSnapshot]
    arbitrage: dict[str, ArbitrageSnapshot]
    rejects: dict[str, int]


@dataclass(slots=True)
class PipelineOutput:
    bars: list[Bar] = field(default_factory=list)
    signals: list[Signal] = field(default_factory=list)
    samples: list[QuoteSample] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    accepted: TickColumns | None = None  # rows that passed validation, in arrival order

    def extend(self, other: PipelineOutput) -> None:
        self.bars += other.bars
        self.signals += other.signals
        self.samples += other.samples
        self.dead_letters += other.dead_letters


class Pipeline:
    def __init__(
        self,
        config: PipelineConfig | None = None,
        registry: Registry | None = None,
        links: tuple[Link, ...] | None = None,
        units: UnitTable | None = None,
    ) -> None:
        self.config = cfg = config or PipelineConfig()
        self.registry = reg = registry or default_registry()
        self.links = links if links is not None else default_links()
        self.units = units or default_units()
        n = len(reg)
        self.validator = Validator(cfg.validate, n, cfg.impl)
        self.bars = BarAggregator(cfg.bars, n, impl=cfg.impl)
        self.checker = TickChecker(cfg.tickchecks, n, cfg.impl)
        self._signal_interval_ns = parse_interval(cfg.anomaly.bar_interval)
        self._crash_interval_ns = parse_interval(cfg.crash.bar_interval)
        self.bar_anomaly: Keyed[str, BarAnomalyLogic] = Keyed(lambda k: BarAnomalyLogic(cfg.anomaly, k))
        self.stale: Keyed[str, StaleFeedLogic] = Keyed(lambda k: StaleFeedLogic(cfg.anomaly, k))
        self.crash: Keyed[str, CrashLogic] = Keyed(lambda k: CrashLogic(cfg.crash, k))
        self.arbitrage = {
            link.id: ArbitrageLogic(cfg.arbitrage, link, reg, self.units) for link in self.links
        }
        self._routes = routes(self.links, self.units, reg)
        self.rejects = RejectCounters()

    def process(self, cols: TickColumns) -> PipelineOutput:
        out = PipelineOutput()
        v = self.validator.on_batch(cols)
        ok = v.accepted
        if not ok.all():
            out.dead_letters += dead_letters(v, cols, self.registry)
        for label, count in v.reject_counts().items():
            self.rejects.add(label, count)
        if v.n_gaps:
            out.signals += gap_signals(v, cols, self.registry)
        acc = cols if ok.all() else cols.take(ok)
        out.accepted = acc
        if not len(acc):
            return out
        b = self.bars.on_batch(acc)
        out.bars = to_bars(b, self.registry)
        if len(b.late_rows):
            out.dead_letters += late_dead_letters(b, acc, self.registry)
            self.rejects.add(Reason.LATE, len(b.late_rows))
            on_time = np.ones(len(acc), dtype=np.bool_)
            on_time[b.late_rows] = False
            acc = acc.take(on_time)
            out.accepted = acc
        t = self.checker.on_batch(acc)
        out.signals += to_anomalies(t, acc, self.registry)
        out.samples = to_samples(t, acc, self.registry)
        self._bar_rate(out)
        return out

    def finish(self) -> PipelineOutput:
        """End of input: close every open window (watermark = +inf) and run the bar-rate logic on them."""
        out = PipelineOutput()
        out.bars = to_bars(self.bars.flush(), self.registry)
        self._bar_rate(out)
        return out

    def snapshot(self) -> PipelineSnapshot:
        return PipelineSnapshot(
            validator=self.validator.snapshot(),
            bars=self.bars.snapshot(),
            checker=self.checker.snapshot(),
            bar_anomaly={k: v.snapshot() for k, v in self.bar_anomaly.instances.items()},
            stale={k: v.snapshot() for k, v in self.stale.instances.items()},
            crash={k: v.snapshot() for k, v in self.crash.instances.items()},
            arbitrage={k: v.snapshot() for k, v in self.arbitrage.items()},
            rejects=self.rejects.as_dict(),
        )

    @classmethod
    def restore(cls, snap: PipelineSnapshot, config: PipelineConfig | None = None, registry: Registry | None = None,
                links: tuple[Link, ...] | None = None, units: UnitTable | None = None) -> Pipeline:
        p = cls(config, registry, links, units)
        cfg = p.config
        p.validator = Validator.restore(cfg.validate, snap.validator, cfg.impl)
        p.bars = BarAggregator.restore(cfg.bars, snap.bars, cfg.impl)
        p.checker = TickChecker.restore(cfg.tickchecks, snap.checker, cfg.impl)
        p.bar_anomaly.instances = {k: BarAnomalyLogic.restore(cfg.anomaly, v) for k, v in snap.bar_anomaly.items()}
        p.stale.instances = {k: StaleFeedLogic.restore(cfg.anomaly, v) for k, v in snap.stale.items()}
        p.crash.instances = {k: CrashLogic.restore(cfg.crash, v) for k, v in snap.crash.items()}
        by_id = {link.id: link for link in p.links}
        p.arbitrage = {k: ArbitrageLogic.restore(cfg.arbitrage, by_id[k], v, p.registry, p.units)
                       for k, v in snap.arbitrage.items()}
        for label, n in snap.rejects.items():
            p.rejects.add(label, n)
        return p

    def _bar_rate(self, out: PipelineOutput) -> None:
        for bar in out.bars:
            if bar.interval_ns == self._signal_interval_ns:
                self._split(self.bar_anomaly.get(bar.instrument_id).on_item(bar), out)
            if bar.interval_ns == self._crash_interval_ns:
                self._split(self.crash.get(bar.instrument_id).on_item(bar), out)
        for s in out.samples:
            self._split(self.stale.get(s.instrument_id).on_item(s), out)
            for link_id in self._routes.get(s.instrument_id, ()):
                self._split(self.arbitrage[link_id].on_item(s), out)

    def _split(self, items: list, out: PipelineOutput) -> None:  # type: ignore[type-arg]
        for item in items:
            if isinstance(item, DeadLetter):
                out.dead_letters.append(item)
                self.rejects.add(item.reason)
            else:
                out.signals.append(item)
