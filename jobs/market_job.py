"""The market job: ticks in, bars + signals + dead letters out. `build(source, sink, config)`.

A source is any iterable of `Ingested` batches (columns plus edge rejects); the embedded runtime feeds
files, simulators and live adapters through it, tests feed lists.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from commodex.embedded.engine import EmbeddedEngine, Summary
from jobs.pipeline import PipelineConfig
from jobs.sink import Sink
from market.columns import Ingested
from market.instruments import Registry


@dataclass
class MarketJob:
    source: Iterable[Ingested]
    engine: EmbeddedEngine

    def run(self) -> Summary:
        for batch in self.source:
            self.engine.offer(batch.columns, batch.dead_letters)
        self.engine.finish()
        return self.engine.summary()


def build(source: Iterable[Ingested], sink: Sink | list[Sink], config: PipelineConfig | None = None,
          registry: Registry | None = None, runtime: str = "embedded") -> MarketJob:
    sinks = sink if isinstance(sink, list) else [sink]
    return MarketJob(source, EmbeddedEngine(config, sinks, registry, runtime=runtime))
