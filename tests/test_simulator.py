"""The market simulator: determinism, microstructure, every scenario measured on the generated data, live stream."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from pathlib import Path

import msgspec
import numpy as np
import pyarrow as pa
import pytest

from feeds.tickfile import TICK_SCHEMA, ingest, write_ticks
from market import codec
from market.columns import TickColumns
from market.events import QuoteTick, TradeTick
from market.instruments import default_registry
from market.links import Link, default_links
from market.units import default_units
from simulators.config import SCENARIOS, SimConfig
from simulators.live import live_messages, wire_messages
from simulators.market import MarketGenerator, simulate
from simulators.paths import ar1

REG = default_registry()
UNITS = default_units()
LINKS = {lk.id: lk for lk in default_links()}
NS = 1_000_000_000
CRUDE = ("CL.NYMEX", "B.ICE", "CRUDEOIL.MCX")


def frame(tb: pa.Table) -> dict[str, np.ndarray]:
    return {name: tb.column(name).to_numpy(zero_copy_only=False) for name in tb.column_names}


@pytest.fixture(scope="module")
def calm() -> tuple[SimConfig, dict[str, np.ndarray]]:
    cfg = SimConfig(duration_s=600)
    return cfg, frame(simulate(cfg))


@pytest.fixture(scope="module")
def events() -> tuple[SimConfig, dict[str, np.ndarray]]:
    """Every clean scenario at once: they hit different instruments at different times."""
    cfg = SimConfig(scenarios=("crash", "spike", "arbitrage", "stale", "crossed"), duration_s=600, seed=3)
    return cfg, frame(simulate(cfg))


@pytest.fixture(scope="module")
def dirty() -> tuple[SimConfig, pa.Table]:
    cfg = SimConfig(scenarios=("dirty",), duration_s=120, seed=5)
    return cfg, simulate(cfg)


def rows_of(f: dict[str, np.ndarray], iid: str, kind: str) -> dict[str, np.ndarray]:
    m = (f["instrument"] == iid) & (f["kind"] == kind)
    return {k: v[m] for k, v in f.items()}


def mid_at(f: dict[str, np.ndarray], iid: str, grid: np.ndarray) -> np.ndarray:
    """Last quote mid of an instrument as of each grid time (event time)."""
    q = rows_of(f, iid, "quote")
    order = np.argsort(q["ts_event"], kind="stable")
    ts, mid = q["ts_event"][order], ((q["bid"] + q["ask"]) / 2)[order]
    k = np.searchsorted(ts, grid, side="right") - 1
    assert (k >= 0).all()
    return mid[k]


def link_deviation_bps(cfg: SimConfig, f: dict[str, np.ndarray], link: Link) -> tuple[np.ndarray, np.ndarray]:
    """leg_b against its fair value from leg_a, both in canonical units through the units table (1 s grid)."""
    grid_s = np.arange(2, int(cfg.duration_s))
    grid = cfg.start_ns + grid_s * NS
    fx = mid_at(f, "USDINR.FX", grid)
    a, b = mid_at(f, link.leg_a, grid), mid_at(f, link.leg_b, grid)
    ia, ib = REG.get(link.leg_a), REG.get(link.leg_b)
    dev = []
    for pa_, pb, x in zip(a, b, fx, strict=True):
        rates = {"INR": Decimal(str(x))}
        ca = float(UNITS.to_canonical(Decimal(str(pa_)), ia, rates))
        cb = float(UNITS.to_canonical(Decimal(str(pb)), ib, rates))
        dev.append((cb / link.fair_b(ca) - 1.0) * 1e4)
    return grid_s, np.array(dev)


def max_drawdown_pct(prices: np.ndarray) -> float:
    return float((1.0 - prices / np.maximum.accumulate(prices)).max() * 100.0) if prices.size else 0.0


# ---- determinism and format ------------------------------------------------------------------------------


def test_same_config_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    cfg = SimConfig(scenarios=("crash", "dirty"), duration_s=90, seed=11)
    write_ticks(simulate(cfg), tmp_path / "a.parquet")
    write_ticks(simulate(cfg), tmp_path / "b.parquet")
    write_ticks(simulate(cfg.replace(seed=12)), tmp_path / "c.parquet")
    a, b, c = ((tmp_path / f"{x}.parquet").read_bytes() for x in "abc")
    assert a == b
    assert a != c


def test_unknown_scenario_lists_valid_ones() -> None:
    with pytest.raises(ValueError, match="valid: calm, crash") as err:
        SimConfig(scenarios=("calm", "meltdown"))
    assert "meltdown" in str(err.value)
    with pytest.raises(msgspec.ValidationError, match="meltdown"):
        SimConfig.from_dict({"scenarios": ["meltdown"]})
    assert set(SCENARIOS) >= {"calm", "crash", "spike", "arbitrage", "stale", "crossed", "dirty"}


def test_config_from_dict_nested_and_strict() -> None:
    cfg = SimConfig.from_dict({"scenarios": ["crash"], "seed": 4, "scenario": {"crash": {"drop_pct": 12.0}}})
    assert cfg.scenario.crash.drop_pct == 12.0 and cfg.scenario.arbitrage.link == "GOLD:COMEX-MCX"
    with pytest.raises(msgspec.ValidationError):
        SimConfig.from_dict({"scenario": {"crash": {"drop": 12.0}}})
    with pytest.raises(ValueError, match="duration_s > 0"):
        simulate(SimConfig(duration_s=0))


def test_schema_timestamps_and_delivery_order(calm: tuple[SimConfig, dict[str, np.ndarray]]) -> None:
    cfg, f = calm
    tb = simulate(SimConfig(duration_s=5))
    assert tb.schema.equals(TICK_SCHEMA)
    assert f["ts_event"].dtype == np.int64 and f["ts_recv"].dtype == np.int64
    assert f["ts_event"].min() == cfg.start_ns  # opening quotes at the start, UTC ns
    assert f["ts_event"].max() < cfg.start_ns + int(cfg.duration_s * NS)
    latency = f["ts_recv"] - f["ts_event"]
    assert latency.min() >= 200_000 and latency.max() <= 5_000_000
    assert (np.diff(f["ts_recv"]) >= 0).all()  # delivery order is receive order
    assert set(f["instrument"]) == set(REG.ids)
    assert (f["raw"] == None).all()  # noqa: E711 - numpy elementwise null check


def test_seq_is_1_2_3_per_instrument(calm: tuple[SimConfig, dict[str, np.ndarray]]) -> None:
    _, f = calm
    for iid in REG.ids:
        seq = f["seq"][f["instrument"] == iid]
        assert (seq == np.arange(1, seq.shape[0] + 1)).all(), iid
        ts = f["ts_event"][f["instrument"] == iid]
        assert (np.diff(ts) >= 0).all(), iid  # published in event-time order, delivered FIFO


def test_tick_grid_spreads_and_trades_at_the_touch(calm: tuple[SimConfig, dict[str, np.ndarray]]) -> None:
    cfg, f = calm
    cols = ingest(simulate(SimConfig(duration_s=120, seed=1)), REG).columns
    assert len(cols) > 0
    for inst in REG:
        m = cols.instrument == inst.index
        tick = inst.tick_fixed
        q, t = m & (cols.kind == 1), m & (cols.kind == 0)
        for arr in (cols.bid[q], cols.ask[q], cols.price[t]):
            assert (arr % tick == 0).all(), inst.id
        assert set(np.unique((cols.ask[q] - cols.bid[q]) // tick)) <= {1, 2, 3}, inst.id
        # each trade is at the bid or the ask of the instrument's last quote
        idx = np.flatnonzero(m)
        is_q = cols.kind[idx] == 1
        last = np.maximum.accumulate(np.where(is_q, np.arange(idx.shape[0]), -1))
        tr = ~is_q
        if inst.commodity.startswith("fx_"):
            assert not tr.any()  # the FX reference publishes quotes only
            continue
        assert tr.sum() > 0 and (last[tr] >= 0).all()
        qi = idx[last[tr]]
        price = cols.price[idx[tr]]
        assert ((price == cols.bid[qi]) | (price == cols.ask[qi])).all(), inst.id
    # trade and quote sizes are positive, with heavy-ish tails
    assert (f["size"][f["kind"] == "trade"] >= 1).all() and f["size"][f["kind"] == "trade"].max() > 5


def test_world_levels_rates_and_intraday_profile(calm: tuple[SimConfig, dict[str, np.ndarray]]) -> None:
    cfg, f = calm
    grid = np.array([cfg.start_ns + 10 * NS])
    levels = {iid: float(mid_at(f, iid, grid)[0]) for iid in ("GC.COMEX", "CL.NYMEX", "B.ICE", "USDINR.FX", "CT.ICE",
                                                               "SB.ICE", "KC.ICE", "ZW.CBOT")}
    assert levels["GC.COMEX"] == pytest.approx(2650, rel=0.01)
    assert levels["CL.NYMEX"] == pytest.approx(72, rel=0.01)
    assert levels["B.ICE"] - levels["CL.NYMEX"] == pytest.approx(4, abs=0.1)
    assert levels["USDINR.FX"] == pytest.approx(84, rel=0.005)
    assert levels["CT.ICE"] == pytest.approx(70, rel=0.01)  # US cents per lb
    assert levels["SB.ICE"] == pytest.approx(20, rel=0.02)
    assert levels["KC.ICE"] == pytest.approx(320, rel=0.01)
    assert levels["ZW.CBOT"] == pytest.approx(550, rel=0.01)
    gc = rows_of(f, "GC.COMEX", "quote")
    quotes_per_s = gc["ts_event"].shape[0] / cfg.duration_s
    trades_per_s = rows_of(f, "GC.COMEX", "trade")["ts_event"].shape[0] / cfg.duration_s
    assert 10 < quotes_per_s < 30 and 3 < trades_per_s < 9  # ~10 and ~3 /s, x2 at the day's edge (00:00 UTC)
    noon = simulate(SimConfig(duration_s=120, start_ns=cfg.start_ns + 12 * 3600 * NS))
    midnight = simulate(SimConfig(duration_s=120))
    assert midnight.num_rows > 2.5 * noon.num_rows  # U-shaped day: 2x at the edges, 0.5x at midday
    assert simulate(SimConfig(duration_s=120, rate_scale=3)).num_rows > 2.5 * midnight.num_rows


def test_instrument_subset() -> None:
    tb = simulate(SimConfig(duration_s=30, instruments=("GC.COMEX", "GOLD.MCX")))
    assert set(tb.column("instrument").to_pylist()) == {"GC.COMEX", "GOLD.MCX"}
    with pytest.raises(KeyError, match="XX.NOWHERE"):
        simulate(SimConfig(duration_s=5, instruments=("XX.NOWHERE",)))


def test_vectorised_conversion_matches_units_table() -> None:
    gen = MarketGenerator(SimConfig(duration_s=1))
    world = np.full((len(gen.commodities), 3), 1.0)
    fx = np.array([70.0, 84.0, 91.5])
    world[gen.commodities.index("fx_usdinr")] = fx
    factor = gen._factor(world)
    for inst in REG:
        for g, x in enumerate(fx):
            exact = float(UNITS.factor(inst, {"INR": Decimal(str(x))}))
            assert factor[inst.index, g] == pytest.approx(exact, rel=1e-12), inst.id


def test_ar1_matches_recursion() -> None:
    rng = np.random.default_rng(1)
    eps = rng.standard_normal((3, 5000))
    x0 = np.array([0.5, -1.0, 2.0])
    got = ar1(x0, 0.995, eps)
    want = np.empty_like(eps)
    prev = x0.copy()
    for k in range(eps.shape[1]):
        prev = 0.995 * prev + eps[:, k]
        want[:, k] = prev
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)


# ---- scenarios ---------------------------------------------------------------------------------------------


def test_calm_has_no_edge_and_no_crash(calm: tuple[SimConfig, dict[str, np.ndarray]]) -> None:
    cfg, f = calm
    for link in LINKS.values():
        _, dev = link_deviation_bps(cfg, f, link)
        # fees of 1.5-3 bps a leg and a 10 bps net threshold leave no signal
        assert np.abs(dev).max() < 8.0, link.id
        assert np.abs(dev).max() > 0.5, link.id  # but the basis does move
    for iid in REG.ids:
        if iid == "USDINR.FX":
            continue
        t = rows_of(f, iid, "trade")
        for w0 in range(0, 600, 300):
            m = (t["ts_event"] >= cfg.start_ns + w0 * NS) & (t["ts_event"] < cfg.start_ns + (w0 + 300) * NS)
            assert max_drawdown_pct(t["price"][m]) < 1.0, iid


def test_crash_drops_every_crude_venue_with_volume(events: tuple[SimConfig, dict[str, np.ndarray]]) -> None:
    cfg, f = events
    t0 = cfg.start_ns + int(0.4 * 600) * NS
    for iid in CRUDE:
        t = rows_of(f, iid, "trade")
        ts = t["ts_event"]
        during = (ts >= t0 - 5 * NS) & (ts < t0 + 70 * NS)
        assert max_drawdown_pct(t["price"][during]) >= 6.0, iid
        before = t["size"][(ts >= t0 - 60 * NS) & (ts < t0)].sum()
        falling = t["size"][(ts >= t0) & (ts < t0 + 60 * NS)].sum()
        assert 3.5 * before < falling < 7 * before, iid  # ~5x the volume
        after = (ts >= t0 + 90 * NS) & (ts < t0 + 200 * NS)
        assert max_drawdown_pct(t["price"][after]) < 1.0, iid  # then it stabilises
    gold = rows_of(f, "GC.COMEX", "trade")["price"]
    assert max_drawdown_pct(gold) < 1.0  # other commodities untouched


def test_crash_parameters_move_the_crash() -> None:
    cfg = SimConfig.from_dict({"scenarios": ["crash"], "duration_s": 150,
                               "scenario": {"crash": {"commodity": "gold", "drop_pct": 10.0}}})
    f = frame(simulate(cfg))
    assert max_drawdown_pct(rows_of(f, "GOLD.MCX", "trade")["price"]) >= 9.0
    assert max_drawdown_pct(rows_of(f, "GC.COMEX", "trade")["price"]) >= 9.0
    assert max_drawdown_pct(rows_of(f, "CL.NYMEX", "trade")["price"]) < 1.0


def test_arbitrage_dislocates_the_link_for_90s(events: tuple[SimConfig, dict[str, np.ndarray]]) -> None:
    cfg, f = events
    grid_s, dev = link_deviation_bps(cfg, f, LINKS["GOLD:COMEX-MCX"])
    start = 0.3 * 600
    inside = (grid_s >= start + 2) & (grid_s < start + 88)
    outside = (grid_s < start - 1) | (grid_s >= start + 92)
    assert (dev[inside] > 85).all() and (dev[inside] < 115).all()
    assert np.abs(dev[outside]).max() < 8.0
    for other in ("CRUDE:NYMEX-MCX", "COTTON:ICE-MCX"):
        g, d = link_deviation_bps(cfg, f, LINKS[other])
        calm_part = (g < 230) | (g > 340)  # away from the crash and the MCX silence
        assert np.abs(d[calm_part]).max() < 8.0, other


def test_spike_jumps_and_reverts(events: tuple[SimConfig, dict[str, np.ndarray]]) -> None:
    cfg, f = events
    t = cfg.start_ns + 300 * NS
    before, top, later = mid_at(f, "KC.ICE", np.array([t - NS // 2, t + NS // 2, t + 60 * NS]))
    assert top / before - 1 > 0.03
    assert abs(later / before - 1) < 0.005


def test_stale_venue_goes_silent(events: tuple[SimConfig, dict[str, np.ndarray]]) -> None:
    cfg, f = events
    for inst in REG:
        ts = np.sort(f["ts_event"][f["instrument"] == inst.id])
        gaps = np.diff(ts)
        if inst.venue == "MCX":
            k = int(np.argmax(gaps))
            assert gaps[k] >= 30 * NS - 1, inst.id
            assert abs(ts[k] - (cfg.start_ns + 300 * NS)) < 2 * NS
        else:
            assert gaps.max() < 5 * NS, inst.id


def test_crossed_quotes_on_one_instrument(events: tuple[SimConfig, dict[str, np.ndarray]]) -> None:
    cfg, f = events
    crossed = (f["kind"] == "quote") & (f["bid"] > f["ask"])
    assert crossed.sum() == cfg.scenario.crossed.count
    assert set(f["instrument"][crossed]) == {"CL.NYMEX"}
    assert (f["ts_event"][crossed] >= cfg.start_ns + 360 * NS).all()


def test_dirty_rows_exist_and_ingest_rejects_them(dirty: tuple[SimConfig, pa.Table]) -> None:
    cfg, tb = dirty
    d = cfg.scenario.dirty
    f = frame(tb)
    raw = f["raw"] != None  # noqa: E711
    assert raw.sum() == d.malformed_count
    assert (f["instrument"][raw] == None).all() and (f["kind"][raw] == None).all()  # noqa: E711
    known = ~raw & (f["instrument"] != d.unknown_instrument)
    is_trade, is_quote = f["kind"] == "trade", f["kind"] == "quote"
    nan = known & ((is_trade & np.isnan(f["price"])) | (is_quote & np.isnan(f["bid"])))
    assert nan.sum() >= d.nan_count
    assert (is_trade & (f["size"] < 0)).sum() >= d.negative_size_count
    unknown = f["instrument"] == d.unknown_instrument
    assert unknown.sum() == d.unknown_count
    late = ~raw & (f["ts_recv"] - f["ts_event"] >= int(d.late_min_s * NS))
    assert late.sum() >= d.late_count
    dup_rows = 0
    gaps = 0
    first = np.zeros(len(f["seq"]), dtype=bool)  # first delivery of each (instrument, seq)
    for iid in REG.ids:
        idx = np.flatnonzero(known & (f["instrument"] == iid))
        seq = f["seq"][idx]
        uniq, first_pos = np.unique(seq, return_index=True)
        dup_rows += seq.shape[0] - uniq.shape[0]
        gaps += int((np.diff(uniq) > 1).sum())
        first[idx[first_pos]] = True
        assert (np.diff(seq[np.sort(first_pos)]) > 0).all(), iid  # seq increases apart from re-deliveries
    assert 0.005 < dup_rows / known.sum() < 0.02  # ~1% re-delivered
    assert 1 <= gaps <= d.gap_count
    delay = (f["ts_recv"] - f["ts_event"])[first & ~late]
    assert 0.01 < (delay > 5_000_000).mean() < 0.03  # ~2% with ts_event moved back up to 1 s
    assert delay.max() <= 1_005_000_000

    out = ingest(tb, REG)
    reasons = Counter(dl.reason for dl in out.dead_letters)
    assert reasons == {"malformed": d.malformed_count, "unknown_instrument": int(unknown.sum()),
                       "nan_price": int(nan.sum())}
    assert len(out.columns) + len(out.dead_letters) == out.rows_in == tb.num_rows
    assert (out.columns.size < 0).sum() >= d.negative_size_count  # bad sizes are the validator's to reject
    mal = [dl for dl in out.dead_letters if dl.reason == "malformed"]
    assert {dl.raw for dl in mal} == set(f["raw"][raw])


def test_combined_crash_and_dirty() -> None:
    cfg = SimConfig(scenarios=("crash", "dirty"), duration_s=200, seed=9)
    out = ingest(simulate(cfg), REG)
    cols = out.columns
    cl = (cols.instrument == REG.index_of("CL.NYMEX")) & (cols.kind == 0) & (cols.ts_event > cfg.start_ns)
    order = np.argsort(cols.ts_event[cl], kind="stable")
    assert max_drawdown_pct(cols.price[cl][order].astype(float)) >= 6.0
    assert {dl.reason for dl in out.dead_letters} == {"malformed", "unknown_instrument", "nan_price"}


# ---- blocks and the live stream ---------------------------------------------------------------------------


class FakeClock:
    def __init__(self, start: int) -> None:
        self.now = start
        self.slept_s = 0.0

    def __call__(self) -> int:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept_s += seconds
        self.now += int(seconds * 1e9) + 1


def test_endless_blocks_continue_seamlessly() -> None:
    cfg = SimConfig(duration_s=0, block_s=2, cycle_s=8, scenarios=("crash", "dirty"))
    runs = []
    for _ in range(2):
        gen = MarketGenerator(cfg)
        blocks = [next(b) for b in [gen.blocks()] for _ in range(6)]
        runs.append(blocks)
    for a, b in zip(*runs, strict=True):
        assert np.array_equal(a.ts_recv, b.ts_recv) and np.array_equal(a.seq, b.seq)
    ts = np.concatenate([b.ts_recv for b in runs[0]])
    assert (np.diff(ts) >= 0).all()  # rows received after a block's end wait for the next block
    assert ts[-1] - ts[0] > 10 * NS


async def test_live_stream_paces_and_matches_generator() -> None:
    start = 1_800_000_000 * NS
    clock = FakeClock(start)
    cfg = SimConfig(scenarios=("dirty",), duration_s=20, block_s=5, seed=2)
    msgs = []
    due_ok = True
    async for m in live_messages(cfg, speed=1000, clock=clock, sleep=clock.sleep):
        msgs.append((clock(), m))
    gen = MarketGenerator(cfg.replace(start_ns=start))
    want = [m for rows in gen.blocks() for m in wire_messages(rows, gen.names, gen.raw_messages)]
    assert [m for _, m in msgs] == want
    assert 0.015 < clock.slept_s < 0.021  # 20 s of market at 1000x
    ticks = [codec.decode_tick_or_dead_letter(m, 0) for _, m in msgs]
    good = [t for t in ticks if isinstance(t, TradeTick | QuoteTick)]
    assert len(good) > 0.98 * len(ticks) and all(t.ts_recv == 0 for t in good)
    assert any(isinstance(t, TradeTick) and t.aggressor != "none" for t in good)
    # event time tracks the (sped-up) wall clock: a message is never released before it is due
    for i in range(0, len(msgs), max(1, len(msgs) // 200)):
        t = ticks[i]
        if isinstance(t, TradeTick | QuoteTick):
            due_ok &= msgs[i][0] - start >= (t.ts_event - start) / 1000
    assert due_ok


async def test_live_endless_with_real_sleep_matches_file_ticks() -> None:
    cfg = SimConfig(duration_s=0, block_s=1)
    msgs = []
    async for m in live_messages(cfg, speed=1000):
        msgs.append(m)
        if len(msgs) >= 1500:
            break
    ticks = [codec.decode_tick(m) for m in msgs]
    by_inst: dict[str, list[int]] = {}
    for t in ticks:
        by_inst.setdefault(t.instrument_id, []).append(t.seq)
    for seqs in by_inst.values():
        assert seqs == list(range(1, len(seqs) + 1))  # seq continues across blocks
    # the wire carries the same ticks as the file of the same run (the first block: rows received in 1 s)
    start = min(t.ts_event for t in ticks)
    cols = ingest(simulate(cfg.replace(duration_s=3.0, start_ns=start)), REG).columns
    k = int((cols.ts_recv < start + NS).sum())
    assert 0 < k < len(ticks)
    wire = TickColumns.from_ticks(ticks[:k], REG)
    for name in ("instrument", "kind", "ts_event", "seq", "price", "size", "bid", "ask", "bid_size", "ask_size"):
        assert np.array_equal(getattr(wire, name), getattr(cols, name)[:k]), name
