from __future__ import annotations

import math
import random
from collections.abc import Sequence
from decimal import Decimal

import msgspec
import pytest

from jobs.arbitrage import ArbitrageConfig, ArbitrageLogic, ArbitrageSnapshot, routes
from jobs.fx import FxBook, FxSnapshot, fx_needed
from market.events import ArbitrageSignal, DeadLetter, QuoteSample
from market.fixedpoint import to_fixed
from market.instruments import default_registry
from market.links import Link, default_links
from market.units import default_units

S = 1_000_000_000
MS = 1_000_000
REG = default_registry()
LINKS = {lk.id: lk for lk in default_links()}
GOLD = LINKS["GOLD:COMEX-MCX"]
CRUDE_MCX = LINKS["CRUDE:NYMEX-MCX"]
CRUDE_ICE = LINKS["CRUDE:NYMEX-ICE"]
OZ_PER_10G = 10 / 31.1034768  # troy ounces in 10 g

Quotes = dict[str, tuple[str, str]]  # instrument -> (bid, ask) as decimal strings


def boundary(t_s: float, quotes: Quotes, ages_ms: dict[str, int] | None = None) -> list[QuoteSample]:
    """The samples of one boundary, in instrument-index order, each quote 100 ms old unless told."""
    t = round(t_s * S)
    ages = ages_ms or {}
    out = []
    for inst in sorted(quotes, key=REG.index_of):
        bid, ask = quotes[inst]
        out.append(QuoteSample(inst, to_fixed(bid), to_fixed(ask), t - ages.get(inst, 100) * MS, t,
                               t + 5 * MS + REG.index_of(inst)))
    return out


def run(logic: ArbitrageLogic, samples: list[QuoteSample]) -> list[ArbitrageSignal | DeadLetter]:
    out: list[ArbitrageSignal | DeadLetter] = []
    for s in samples:
        out.extend(logic.on_item(s))
    return out


def gold_quotes(mcx_bid: int, mcx_ask: int, fx: str = "83.0") -> Quotes:
    """COMEX 1999.9/2000.0 USD/oz, MCX in INR/10g, USDINR mid `fx` (half a tick wide either side)."""
    f = Decimal(fx)
    return {"GC.COMEX": ("1999.9", "2000.0"), "GOLD.MCX": (str(mcx_bid), str(mcx_ask)),
            "USDINR.FX": (str(f - Decimal("0.0025")), str(f + Decimal("0.0025")))}


def gold_edge_buy_comex(mcx_bid: int, fx: float = 83.0) -> float:
    """Hand computation, buy COMEX at 2000.0 / sell MCX at mcx_bid: net edge in bps of the fair MCX price."""
    b = mcx_bid / fx / OZ_PER_10G  # USD per troy oz
    fair = 2000.0 * 1.06 + 0.50
    net = b - fair - 2.0e-4 * (2000.0 + b)
    return net / fair * 1e4


def mcx_bid_for(bps: float, fx: float = 83.0) -> int:
    """An MCX gold bid (whole INR) giving roughly `bps` of net edge for buy COMEX / sell MCX."""
    fair = 2000.0 * 1.06 + 0.50
    b = (fair * (1 + bps / 1e4) + 2.0e-4 * 2000.0) / (1 - 2.0e-4)
    return round(b * fx * OZ_PER_10G)


def gold_run(edges_bps: Sequence[float], config: ArbitrageConfig) -> list[ArbitrageSignal | DeadLetter]:
    logic = ArbitrageLogic(config, GOLD)
    samples = []
    for i, e in enumerate(edges_bps):
        bid = mcx_bid_for(e)
        samples += boundary(i, gold_quotes(bid, bid + 20))
    return run(logic, samples)


def states(out: list[ArbitrageSignal | DeadLetter]) -> list[tuple[str, int]]:
    return [(s.state, s.ts_event // S) for s in out if isinstance(s, ArbitrageSignal)]


class TestGoldFxConversion:
    def test_mcx_inr_per_10g_against_comex_usd_per_oz(self) -> None:
        bid = mcx_bid_for(50.0)
        logic = ArbitrageLogic(ArbitrageConfig(min_duration_ms=0), GOLD)
        (sig,) = run(logic, boundary(0, gold_quotes(bid, bid + 20)))
        assert isinstance(sig, ArbitrageSignal)
        assert (sig.state, sig.buy_instrument_id, sig.sell_instrument_id) == ("open", "GC.COMEX", "GOLD.MCX")
        assert (sig.canonical_unit, sig.canonical_currency) == ("troy_oz", "USD")
        assert sig.net_edge_bps == pytest.approx(gold_edge_buy_comex(bid), rel=1e-9)
        b = bid / 83.0 / OZ_PER_10G
        assert sig.gross_spread == pytest.approx(to_fixed(b - 2000.0), abs=10)
        assert sig.net_edge == pytest.approx(to_fixed(sig.net_edge_bps / 1e4 * 2120.5), abs=10)
        assert sig.pair_id == "GC.COMEX/GOLD.MCX"
        assert sig.ts_event == 0 and sig.ts_recv == 5 * MS + REG.index_of("USDINR.FX")

    def test_fx_rate_moves_the_edge(self) -> None:
        # the same INR price is a 50 bps dislocation at USDINR 83 and none at 83.415 (MCX 50 bps cheaper in USD)
        bid = mcx_bid_for(50.0, fx=83.0)
        assert -3 < gold_edge_buy_comex(bid, fx=83.415) < 3
        weaker = ArbitrageLogic(ArbitrageConfig(min_duration_ms=0), GOLD)
        assert run(weaker, boundary(0, gold_quotes(bid, bid + 20, fx="83.415"))) == []
        at_83 = ArbitrageLogic(ArbitrageConfig(min_duration_ms=0), GOLD)
        assert states(run(at_83, boundary(0, gold_quotes(bid, bid + 20, fx="83.0")))) == [("open", 0)]

    def test_buy_mcx_sell_comex_direction(self) -> None:
        # MCX ask 60 bps under the price that would make buying MCX / selling COMEX break even
        fair = 1999.9 * 1.06 + 0.50
        ask_usd = (fair - 2.0e-4 * 1999.9) * (1 - 60e-4) / (1 + 2.0e-4)
        ask = round(ask_usd * 83.0 * OZ_PER_10G)
        logic = ArbitrageLogic(ArbitrageConfig(min_duration_ms=0), GOLD)
        (sig,) = run(logic, boundary(0, gold_quotes(ask - 20, ask)))
        assert isinstance(sig, ArbitrageSignal)
        assert (sig.buy_instrument_id, sig.sell_instrument_id) == ("GOLD.MCX", "GC.COMEX")
        b = ask / 83.0 / OZ_PER_10G
        expected = (fair - b - 2.0e-4 * (1999.9 + b)) / fair * 1e4
        assert sig.net_edge_bps == pytest.approx(expected, rel=1e-9)
        assert 55 < sig.net_edge_bps < 65


class TestEpisodes:
    def test_open_exactly_after_min_duration_and_only_once(self) -> None:
        out = gold_run([50.0] * 8, ArbitrageConfig(min_duration_ms=2000))
        assert states(out) == [("open", 2)]
        assert out[0].duration_ns == 2 * S  # type: ignore[union-attr]

    def test_min_duration_needs_continuous_edge(self) -> None:
        # 5 bps is above exit but below entry: it breaks the run, so the clock restarts at t=3
        out = gold_run([50, 50, 5, 50, 50, 50, 50], ArbitrageConfig(min_duration_ms=2000))
        assert states(out) == [("open", 5)]

    def test_short_blips_never_open(self) -> None:
        assert gold_run([50, 50, 0, 50, 50, 0, 50, 0] * 5, ArbitrageConfig(min_duration_ms=2000)) == []

    def test_hysteresis_and_one_close_per_episode(self) -> None:
        edges = [50] * 3 + [5] * 4 + [2] * 4 + [7] * 3 + [40] * 4 + [-10] * 2
        out = gold_run(edges, ArbitrageConfig(min_duration_ms=2000))
        # open at 2; 5 bps (between exit 3 and entry 10) keeps it open; 2 bps closes at 7; 7 bps does not reopen;
        # 40 bps from 14 opens a new episode at 16, closed at 18
        assert states(out) == [("open", 2), ("close", 7), ("open", 16), ("close", 18)]
        close = out[1]
        assert isinstance(close, ArbitrageSignal)
        assert close.duration_ns == 7 * S and close.net_edge_bps < 3.0
        if hasattr(close, "detail"):
            assert "below exit" in close.detail

    def test_entry_threshold_is_inclusive(self) -> None:
        bid = mcx_bid_for(12.0)
        probe = ArbitrageLogic(ArbitrageConfig(entry_bps=0.0, exit_bps=0.0, min_duration_ms=0), GOLD)
        (sig,) = run(probe, boundary(0, gold_quotes(bid, bid + 20)))
        edge = sig.net_edge_bps  # type: ignore[union-attr]
        at = ArbitrageLogic(ArbitrageConfig(entry_bps=edge, exit_bps=0.0, min_duration_ms=0), GOLD)
        assert states(run(at, boundary(0, gold_quotes(bid, bid + 20)))) == [("open", 0)]
        above = ArbitrageLogic(ArbitrageConfig(entry_bps=math.nextafter(edge, math.inf), exit_bps=0.0,
                                               min_duration_ms=0), GOLD)
        assert run(above, boundary(0, gold_quotes(bid, bid + 20))) == []
        # an edge sitting exactly at entry also keeps the min-duration clock running
        held = ArbitrageLogic(ArbitrageConfig(entry_bps=edge, exit_bps=0.0, min_duration_ms=2000), GOLD)
        seq = [s for t in range(4) for s in boundary(t, gold_quotes(bid, bid + 20))]
        assert states(run(held, seq)) == [("open", 2)]

    def test_exit_threshold_keeps_open_at_equality(self) -> None:
        bid_open, bid_hold = mcx_bid_for(50.0), mcx_bid_for(5.0)
        hold = gold_edge_buy_comex(bid_hold)
        seq = boundary(0, gold_quotes(bid_open, bid_open + 20)) + boundary(1, gold_quotes(bid_hold, bid_hold + 20))
        probe = ArbitrageLogic(ArbitrageConfig(entry_bps=10.0, exit_bps=0.0, min_duration_ms=0), GOLD)
        run(probe, seq)
        edge = probe.snapshot().last_edge.bps  # type: ignore[union-attr]
        assert edge == pytest.approx(hold, rel=1e-9)
        at = ArbitrageLogic(ArbitrageConfig(exit_bps=edge, min_duration_ms=0), GOLD)
        assert states(run(at, seq)) == [("open", 0)]
        below = ArbitrageLogic(ArbitrageConfig(exit_bps=math.nextafter(edge, math.inf), min_duration_ms=0), GOLD)
        assert states(run(below, seq)) == [("open", 0), ("close", 1)]


def native(canonical: float, inst_id: str, fx: float = 83.0) -> float:
    return float(default_units().from_canonical(Decimal(repr(canonical)), REG.get(inst_id), {"INR": Decimal(fx)}))


def on_tick(price: float, tick: Decimal) -> Decimal:
    return (Decimal(repr(price)) / tick).to_integral_value() * tick


def calm_quotes(link: Link, a_mid: float, rng: random.Random, noise_bps: float) -> Quotes:
    """Leg A around a_mid with a 1-tick spread, leg B around its fair value with a few bps of basis noise."""
    ia, ib = REG.get(link.leg_a), REG.get(link.leg_b)
    a_bid = on_tick(a_mid, ia.tick_size)
    fx_mid = 83.0 + rng.gauss(0, 0.02)
    fa = float(default_units().factor(ia, {"INR": Decimal(repr(fx_mid))}))
    b_fair = link.fair_b(float(a_bid + ia.tick_size / 2) * fa) * (1 + rng.gauss(0, noise_bps) / 1e4)
    b_bid = on_tick(native(b_fair, link.leg_b, fx_mid), ib.tick_size)
    fx_bid = on_tick(fx_mid, Decimal("0.0025"))
    return {link.leg_a: (str(a_bid), str(a_bid + ia.tick_size)), link.leg_b: (str(b_bid), str(b_bid + ib.tick_size)),
            "USDINR.FX": (str(fx_bid), str(fx_bid + Decimal("0.0025")))}


A_MIDS = {"GOLD:COMEX-MCX": 2000.0, "CRUDE:NYMEX-MCX": 78.0, "CRUDE:NYMEX-ICE": 78.0, "COTTON:ICE-MCX": 80.0}


@pytest.mark.parametrize("link_id", sorted(A_MIDS))
def test_calm_basis_noise_gives_no_signal(link_id: str) -> None:
    link = LINKS[link_id]
    rng = random.Random(link_id)
    logic = ArbitrageLogic(ArbitrageConfig(), link)
    wanted = set(logic.inputs)
    a_mid, out, evaluated = A_MIDS[link_id], [], 0
    for i in range(900):
        a_mid *= 1 + rng.gauss(0, 1e-4)
        q = {k: v for k, v in calm_quotes(link, a_mid, rng, noise_bps=2.0).items() if k in wanted}
        out += run(logic, boundary(i, q))
        evaluated += logic.snapshot().evaluated_ts == i * S
    assert evaluated == 900
    assert out == []
    # the same noise with the basis pushed 80 bps does open (the generator can produce an edge at all)
    pushed = Link(link.id, link.leg_a, link.leg_b, link.duty_pct, link.freight,
                  link.basis - Decimal(repr(link.fair_b(A_MIDS[link_id] * float(default_units().factor(
                      REG.get(link.leg_a), {"INR": Decimal(83)}))) * 80e-4)), link.fees_bps)
    logic = ArbitrageLogic(ArbitrageConfig(), pushed)
    a_mid, out = A_MIDS[link_id], []
    for i in range(10):
        q = {k: v for k, v in calm_quotes(link, a_mid, rng, noise_bps=2.0).items() if k in wanted}
        out += run(logic, boundary(i, q))
    assert states(out) == [("open", 2)]


class TestStaleGuard:
    def test_stale_leg_blocks_open(self) -> None:
        bid = mcx_bid_for(50.0)
        logic = ArbitrageLogic(ArbitrageConfig(min_duration_ms=0), GOLD)
        out = []
        for i in range(8):  # the MCX quote is 5.1 s old at t=0 and never updates
            out += run(logic, boundary(i, gold_quotes(bid, bid + 20), {"GOLD.MCX": 5100 + 1000 * i}))
        assert out == []

    def test_open_edge_closes_when_a_leg_goes_stale(self) -> None:
        bid = mcx_bid_for(50.0)
        logic = ArbitrageLogic(ArbitrageConfig(min_duration_ms=0), GOLD)
        out = []
        for i in range(5):  # the MCX quote stopped updating at t=3.9 s: 4.1 s old at t=8, 5.1 s at t=9
            out += run(logic, boundary(i + 8, gold_quotes(bid, bid + 20), {"GOLD.MCX": 4100 + 1000 * i}))
        assert states(out) == [("open", 8), ("close", 9)]  # closed once, no reopen while stale

    def test_age_limit_is_inclusive(self) -> None:
        bid = mcx_bid_for(50.0)
        cfg = ArbitrageConfig(min_duration_ms=0)
        at = ArbitrageLogic(cfg, GOLD)
        assert states(run(at, boundary(0, gold_quotes(bid, bid + 20), {"USDINR.FX": 5000}))) == [("open", 0)]
        over = ArbitrageLogic(cfg, GOLD)
        assert run(over, boundary(0, gold_quotes(bid, bid + 20), {"USDINR.FX": 5001})) == []

    def test_open_edge_closes_when_fx_goes_stale_with_last_good_edge(self) -> None:
        bid = mcx_bid_for(50.0)
        logic = ArbitrageLogic(ArbitrageConfig(min_duration_ms=1000), GOLD)
        out = run(logic, boundary(0, gold_quotes(bid, bid + 20)) + boundary(1, gold_quotes(bid, bid + 20)))
        assert states(out) == [("open", 1)]
        out = run(logic, boundary(2, gold_quotes(bid + 500, bid + 520), {"USDINR.FX": 6000}))
        (close,) = out
        assert isinstance(close, ArbitrageSignal) and close.state == "close"
        assert close.net_edge_bps == pytest.approx(gold_edge_buy_comex(bid), rel=1e-9)  # last trusted edge
        assert close.duration_ns == 2 * S
        if hasattr(close, "detail"):
            assert "USDINR.FX" in close.detail and "stale" in close.detail
        # fresh data with the edge still there: a new episode, again after min_duration
        out = run(logic, boundary(3, gold_quotes(bid, bid + 20)) + boundary(4, gold_quotes(bid, bid + 20)))
        assert states(out) == [("open", 4)]

    def test_non_positive_fx_mid_closes_like_stale_data(self) -> None:
        bid = mcx_bid_for(50.0)
        logic = ArbitrageLogic(ArbitrageConfig(min_duration_ms=0), GOLD)
        q = gold_quotes(bid, bid + 20)
        out = run(logic, boundary(0, q))
        q["USDINR.FX"] = ("0", "0")
        out += run(logic, boundary(1, q)) + run(logic, boundary(2, q))
        assert states(out) == [("open", 0), ("close", 1)]
        if hasattr(out[1], "detail"):
            assert "conversion failed" in out[1].detail

    def test_missing_input_never_signals(self) -> None:
        bid = mcx_bid_for(80.0)
        logic = ArbitrageLogic(ArbitrageConfig(min_duration_ms=0), GOLD)
        q = gold_quotes(bid, bid + 20)
        del q["USDINR.FX"]
        samples = [s for i in range(5) for s in boundary(i, q)]
        assert run(logic, samples) + logic.on_watermark(10 * S) == []


class TestNegativePrices:
    def test_negative_wti_against_mcx_in_inr(self) -> None:
        # 20 April 2020: WTI -37.63; MCX crude bid at -37.00 USD/bbl equivalent at USDINR 76.5
        q = {"CL.NYMEX": ("-37.65", "-37.60"), "CRUDEOIL.MCX": (str(round(-37.00 * 76.5)), str(round(-36.95 * 76.5))),
             "USDINR.FX": ("76.4975", "76.5025")}
        logic = ArbitrageLogic(ArbitrageConfig(min_duration_ms=0), CRUDE_MCX)
        (sig,) = run(logic, boundary(0, q))
        assert isinstance(sig, ArbitrageSignal)
        assert (sig.buy_instrument_id, sig.sell_instrument_id) == ("CL.NYMEX", "CRUDEOIL.MCX")
        b_bid = round(-37.00 * 76.5) / 76.5
        net = b_bid - (-37.60) - 2.0e-4 * (37.60 + abs(b_bid))
        assert sig.net_edge == pytest.approx(to_fixed(net), abs=10)
        assert sig.net_edge_bps == pytest.approx(net / 37.60 * 1e4, rel=1e-9)
        assert sig.gross_spread > 0

    def test_negative_wti_against_brent(self) -> None:
        q = {"CL.NYMEX": ("-37.65", "-37.60"), "B.ICE": ("25.50", "25.55")}
        logic = ArbitrageLogic(ArbitrageConfig(min_duration_ms=0), CRUDE_ICE)
        (sig,) = run(logic, boundary(0, q))
        fair = -37.60 + 4.00
        net = 25.50 - fair - 1.5e-4 * (37.60 + 25.50)
        assert isinstance(sig, ArbitrageSignal) and sig.buy_instrument_id == "CL.NYMEX"
        assert sig.net_edge_bps == pytest.approx(net / abs(fair) * 1e4, rel=1e-9)

    def test_price_through_zero_keeps_bps_finite(self) -> None:
        q = {"CL.NYMEX": ("-4.01", "-4.00"), "B.ICE": ("0.50", "0.51")}  # fair Brent (buying WTI) exactly 0
        logic = ArbitrageLogic(ArbitrageConfig(min_duration_ms=0), CRUDE_ICE)
        (sig,) = run(logic, boundary(0, q))
        assert isinstance(sig, ArbitrageSignal)
        assert math.isfinite(sig.net_edge_bps)
        assert sig.net_edge_bps == pytest.approx(sig.net_edge / 1e9 / 0.01 * 1e4, rel=1e-6)


def episode_stream() -> list[QuoteSample]:
    """Gold: calm, 60 s of +80 bps, calm, a stale stretch inside a second dislocation, calm again."""
    edges = [0.0] * 20 + [80.0] * 60 + [0.0] * 20 + [80.0] * 10 + [80.0] * 5 + [80.0] * 10 + [-5.0] * 5
    out = []
    for i, e in enumerate(edges):
        bid = mcx_bid_for(e)
        out += boundary(i, gold_quotes(bid, bid + 20), {"GOLD.MCX": 7000} if 110 <= i < 115 else None)
    return out


class TestSnapshotRestore:
    def test_restore_mid_stream_equals_uninterrupted(self) -> None:
        cfg = ArbitrageConfig()
        stream = episode_stream()
        full = run(ArbitrageLogic(cfg, GOLD), stream)
        assert [s for s, _ in states(full)] == ["open", "close", "open", "close", "open", "close"]
        # cut everywhere interesting, including between samples of one boundary and inside pending/open phases
        for cut in (1, 2, 61, 62, 64, 100, 240, 331, 332, len(stream) - 1):
            logic = ArbitrageLogic(cfg, GOLD)
            first = run(logic, stream[:cut])
            blob = msgspec.msgpack.encode(logic.snapshot())
            snap = msgspec.msgpack.decode(blob, type=ArbitrageSnapshot)
            restored = ArbitrageLogic.restore(cfg, GOLD, snap)
            assert first + run(restored, stream[cut:]) == full, cut

    def test_restore_rejects_wrong_version_and_link(self) -> None:
        logic = ArbitrageLogic(ArbitrageConfig(), GOLD)
        run(logic, episode_stream()[:30])
        snap = logic.snapshot()
        with pytest.raises(ValueError, match="version"):
            ArbitrageLogic.restore(ArbitrageConfig(), GOLD, msgspec.structs.replace(snap, version=snap.version + 1))
        with pytest.raises(ValueError, match="link"):
            ArbitrageLogic.restore(ArbitrageConfig(), CRUDE_MCX, snap)


class TestEvaluationRule:
    def test_watermarks_do_not_change_output(self) -> None:
        stream = episode_stream()
        plain = run(ArbitrageLogic(ArbitrageConfig(), GOLD), stream)
        logic = ArbitrageLogic(ArbitrageConfig(), GOLD)
        with_wm: list[ArbitrageSignal | DeadLetter] = []
        for n, s in enumerate(stream):
            with_wm += logic.on_item(s)
            with_wm += logic.on_watermark(s.ts_event - 1)  # the boundary is not yet due
            if n + 1 == len(stream) or stream[n + 1].ts_event != s.ts_event:  # after the boundary's last sample
                with_wm += logic.on_watermark(s.ts_event)
        assert with_wm == plain

    def test_missing_sample_evaluated_by_next_boundary_or_watermark_alike(self) -> None:
        # the FX sample is missing at odd boundaries: those evaluate with the last FX quote (still fresh);
        # the edge starts at t=1, so the episode opens at t=3, a boundary without an FX sample
        samples = []
        for i in range(8):
            bid = mcx_bid_for(50.0 if i else 0.0)
            q = gold_quotes(bid, bid + 20)
            if i % 2:
                del q["USDINR.FX"]
            samples.append(boundary(i, q))
        by_next = run(ArbitrageLogic(ArbitrageConfig(), GOLD), [s for b in samples for s in b])
        wm_logic = ArbitrageLogic(ArbitrageConfig(), GOLD)
        by_wm: list[ArbitrageSignal | DeadLetter] = []
        for b in samples:
            by_wm += run(wm_logic, b) + wm_logic.on_watermark(b[0].ts_event)
        assert states(by_wm) == [("open", 3)]
        assert by_next == by_wm

    def test_late_sample_is_a_dead_letter(self) -> None:
        bid = mcx_bid_for(0.0)
        logic = ArbitrageLogic(ArbitrageConfig(), GOLD)
        run(logic, boundary(0, gold_quotes(bid, bid + 20)) + boundary(1, gold_quotes(bid, bid + 20)))
        late = boundary(0, gold_quotes(bid, bid + 20))[1]
        (dl,) = logic.on_item(late)
        assert isinstance(dl, DeadLetter)
        assert (dl.source, dl.reason, dl.instrument_id, dl.ts_event) == ("arbitrage", "late", "GOLD.MCX", 0)

    def test_foreign_instrument_is_a_routing_error(self) -> None:
        logic = ArbitrageLogic(ArbitrageConfig(), GOLD)
        with pytest.raises(ValueError, match="routes"):
            logic.on_item(QuoteSample("CL.NYMEX", 1, 2, 0, 0, 0))


def test_routes_fan_out_legs_and_fx() -> None:
    r = routes(default_links(), default_units())
    assert r["GC.COMEX"] == ["GOLD:COMEX-MCX"]
    assert sorted(r["CL.NYMEX"]) == ["CRUDE:NYMEX-ICE", "CRUDE:NYMEX-MCX"]
    assert sorted(r["USDINR.FX"]) == ["COTTON:ICE-MCX", "CRUDE:NYMEX-MCX", "GOLD:COMEX-MCX"]
    assert r["B.ICE"] == ["CRUDE:NYMEX-ICE"]
    assert "SB.ICE" not in r
    for inst, link_ids in r.items():
        for lid in link_ids:
            assert inst in ArbitrageLogic(ArbitrageConfig(), LINKS[lid]).inputs


def test_fx_book_mid_needs_and_snapshot() -> None:
    assert fx_needed([REG.get("GOLD.MCX"), REG.get("GC.COMEX")], default_units()) == {"INR": "USDINR.FX"}
    assert fx_needed([REG.get("B.ICE"), REG.get("CL.NYMEX")], default_units()) == {}
    book = FxBook({"INR": "USDINR.FX"})
    assert not book.on_sample(QuoteSample("GC.COMEX", 1, 2, 0, 0, 0))
    assert book.on_sample(QuoteSample("USDINR.FX", to_fixed("83.1025"), to_fixed("83.1050"), 5, 10, 11))
    assert book.rates() == {"INR": Decimal("83.10375")}  # exact mid, no float rounding
    assert book.age_ns("INR", 1000) == 995 and book.age_ns("EUR", 1000) is None
    book.on_sample(QuoteSample("USDINR.FX", to_fixed(90), to_fixed(90), 1, 9, 12))  # older boundary: ignored
    assert book.rate("INR") == Decimal("83.10375")
    snap = msgspec.msgpack.decode(msgspec.msgpack.encode(book.snapshot()), type=FxSnapshot)
    assert FxBook.restore({"INR": "USDINR.FX"}, snap).rates() == book.rates()
    with pytest.raises(ValueError, match="version"):
        FxBook.restore({"INR": "USDINR.FX"}, msgspec.structs.replace(snap, version=7))


def test_config_rejects_inverted_hysteresis_and_unknown_keys() -> None:
    with pytest.raises(ValueError, match="exit_bps"):
        ArbitrageConfig(entry_bps=5.0, exit_bps=6.0)
    with pytest.raises(msgspec.ValidationError):
        ArbitrageConfig.from_dict({"entry_bps": 10.0, "entry_bp": 3})
