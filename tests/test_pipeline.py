"""The composed pipeline on simulated markets: scenarios give the signals they should, output does not depend
on batching, numba and the pure-Python references agree, and a snapshot/restore mid-stream changes nothing."""

from __future__ import annotations

from collections import Counter
from functools import cache

import msgspec
import pytest

from feeds.tickfile import ingest
from jobs.market_job import build
from jobs.pipeline import Pipeline, PipelineConfig, PipelineOutput, PipelineSnapshot
from jobs.sink import ListSink
from market import codec
from market.columns import Ingested, TickColumns
from market.events import ArbitrageSignal, CrashWarning, signal_kind
from market.instruments import default_registry
from simulators.config import SimConfig
from simulators.market import simulate

REG = default_registry()


@cache
def market(scenarios: tuple[str, ...], seed: int = 7, duration_s: float = 600, rate_scale: float = 1.0) -> Ingested:
    table = simulate(SimConfig(scenarios=scenarios, seed=seed, duration_s=duration_s, rate_scale=rate_scale))
    return ingest(table, REG)


def run(cols: TickColumns, batch: int, config: PipelineConfig | None = None) -> PipelineOutput:
    p = Pipeline(config)
    out = PipelineOutput()
    for a in range(0, len(cols), batch):
        out.extend(p.process(cols.take(slice(a, a + batch))))
    out.extend(p.finish())
    return out


def canon(out: PipelineOutput) -> tuple[list[bytes], list[bytes], list[bytes]]:
    """Bars in emission order; signals and dead letters as sorted wire bytes (kinds interleave per batch)."""
    return (
        [codec.encode(b) for b in out.bars],
        sorted(codec.encode(s) for s in out.signals),
        sorted(codec.encode(d) for d in out.dead_letters),
    )


def kinds(out: PipelineOutput) -> Counter[str]:
    return Counter(signal_kind(s).value for s in out.signals)


class TestScenarios:
    def test_calm_gives_no_crash_and_no_arbitrage(self) -> None:
        out = run(market(("calm",)).columns, 65_536)
        assert out.bars
        assert kinds(out)["crash"] == 0 and kinds(out)["arbitrage"] == 0

    def test_crash_gives_crash_warnings_on_the_crashing_commodity(self) -> None:
        out = run(market(("crash",)).columns, 65_536)
        crashes = [s for s in out.signals if isinstance(s, CrashWarning)]
        assert crashes
        assert {REG.get(c.instrument_id).commodity for c in crashes} == {"crude_oil"}
        assert all(c.drawdown_pct >= 3.0 and c.volume_ratio >= 3.0 for c in crashes)

    def test_arbitrage_opens_and_closes_on_the_dislocated_link(self) -> None:
        out = run(market(("arbitrage",)).columns, 65_536)
        arb = [s for s in out.signals if isinstance(s, ArbitrageSignal)]
        assert [a.state for a in arb] == ["open", "close"]
        assert {arb[0].buy_instrument_id, arb[0].sell_instrument_id} == {"GC.COMEX", "GOLD.MCX"}
        assert arb[0].net_edge_bps >= 10.0 and arb[0].canonical_unit == "troy_oz"

    def test_dirty_input_is_dead_lettered_with_reasons_and_counted(self) -> None:
        ing = market(("dirty",))
        p = Pipeline()
        out = p.process(ing.columns)
        out.extend(p.finish())
        reasons = Counter(d.reason for d in ing.dead_letters + out.dead_letters)
        for reason in ("malformed", "unknown_instrument", "nan_price", "bad_size", "duplicate", "late"):
            assert reasons[reason] > 0, reason
        assert p.rejects.total == len(out.dead_letters)
        gaps = [s for s in out.signals if getattr(s, "anomaly", None) == "sequence_gap"]
        assert gaps
        # every input row is accounted for: accepted or dead-lettered, never silently dropped
        accepted = len(out.accepted) if out.accepted is not None else 0
        assert accepted + len(out.dead_letters) + len(ing.dead_letters) == ing.rows_in


class TestDeterminism:
    def test_output_independent_of_batching(self) -> None:
        cols = market(("crash", "dirty", "arbitrage"), duration_s=600).columns
        assert canon(run(cols, 1_000_000)) == canon(run(cols, 997))

    def test_numba_and_python_references_agree(self) -> None:
        cols = market(("dirty", "crossed", "spike"), seed=3, duration_s=240).columns
        assert canon(run(cols, 50_000)) == canon(run(cols, 50_000, PipelineConfig(impl="python")))

    def test_snapshot_restore_mid_stream_equals_uninterrupted(self) -> None:
        cols = market(("crash", "dirty", "arbitrage"), seed=11, duration_s=600).columns
        whole = run(cols, 20_000)
        half = len(cols) // 2
        p = Pipeline()
        out = PipelineOutput()
        for a in range(0, half, 20_000):
            out.extend(p.process(cols.take(slice(a, min(a + 20_000, half)))))
        data = msgspec.json.encode(p.snapshot())
        p2 = Pipeline.restore(msgspec.json.decode(data, type=PipelineSnapshot))
        for a in range(half, len(cols), 20_000):
            out.extend(p2.process(cols.take(slice(a, min(a + 20_000, len(cols))))))
        out.extend(p2.finish())
        assert canon(out) == canon(whole)


def test_build_with_list_source_and_sink() -> None:
    ing = market(("arbitrage",))
    sink = ListSink()
    cols = ing.columns
    batches = [Ingested(cols.take(slice(a, a + 30_000)), []) for a in range(0, len(cols), 30_000)]
    summary = build(batches, sink).run()
    assert summary.ticks_accepted == len(cols)
    assert len(summary.ticks_by_venue) >= 3 and len(summary.ticks_by_instrument) >= 6
    assert sink.all_bars and summary.bars == len(sink.all_bars)
    assert summary.signals_by_kind.get("arbitrage") == 2


@pytest.mark.parametrize("price", ["-37.63", "-2884"])
def test_negative_prices_flow_end_to_end(price: str) -> None:
    from market.events import QuoteTick, TradeTick
    from market.fixedpoint import to_fixed

    t0 = 1_587_340_800 * 10**9  # 2020-04-20T00:00:00Z
    inst = "CL.NYMEX" if price == "-37.63" else "CRUDEOIL.MCX"
    px = to_fixed(price)
    ticks = []
    for k in range(120):
        ts = t0 + k * 500_000_000
        ticks.append(QuoteTick(inst, px - 10**7, px + 10**7, 5, 5, ts, ts + 1000, 2 * k + 1))
        ticks.append(TradeTick(inst, px, 1, ts + 1, ts + 1001, 2 * k + 2))
    cols = TickColumns.from_ticks(ticks, REG)
    out = run(cols, 50)
    assert not out.dead_letters
    one_s = [b for b in out.bars if b.interval_ns == 10**9]
    assert one_s and all(b.close == px and b.low == px and b.vwap == px for b in one_s)
