"""The seeded market generator: world paths -> venue prices -> quotes/trades -> scenarios -> delivery order.

Venue prices come from one canonical world path per commodity through the audited units table and the
cross-venue links, so a calm market has no arbitrage edge after costs. Output is a function of the config
alone: the same config gives the same table, byte for byte.

The run is generated in blocks of `block_s` of simulated time (the live stream uses the same blocks).
Rows are delivered in receive-time order; rows received after a block's end wait for the next block.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from feeds.tickfile import TICK_SCHEMA
from market.instruments import Registry, default_registry
from market.links import Link, default_links
from market.units import UnitTable, default_units
from simulators.config import SimConfig
from simulators.microstructure import (
    KIND_RAW,
    BlockInputs,
    BookState,
    SimRows,
    generate_block,
    intraday_profile,
)
from simulators.paths import BasisNoise, WorldPaths
from simulators.scenarios import ScenarioPlan

NS = 1_000_000_000


def links_for(registry: Registry) -> tuple[Link, ...]:
    """The default links whose legs both exist (with one commodity) in `registry`."""
    out = []
    for lk in default_links():
        if (lk.leg_a in registry and lk.leg_b in registry
                and registry.get(lk.leg_a).commodity == registry.get(lk.leg_b).commodity):
            out.append(lk)
    return tuple(out)


class MarketGenerator:
    """Stateful block generator for one run. `blocks()` yields SimRows in delivery order."""

    def __init__(self, config: SimConfig, registry: Registry | None = None, links: tuple[Link, ...] | None = None,
                 units: UnitTable | None = None) -> None:
        self.config = config
        self.registry = reg = registry or default_registry()
        self.links = links_for(reg) if links is None else links
        self.units = units or default_units()
        n = len(reg)
        self.names = [*reg.ids, config.scenario.dirty.unknown_instrument]
        self.unknown_index = n
        self.raw_messages: list[str] = []

        for iid in config.instruments:
            reg.get(iid)  # raises UnknownInstrument with the id
        chosen = set(config.instruments) or set(reg.ids)
        self.published = np.array([i.id in chosen for i in reg])

        params = {p.commodity: p for p in config.commodities}
        self.commodities = sorted({i.commodity for i in reg})
        missing = [c for c in self.commodities if c not in params]
        if missing:
            raise ValueError(f"no price path parameters for commodities {missing} (SimConfig.commodities)")
        self.world = WorldPaths(
            np.array([params[c].start_price for c in self.commodities]),
            np.array([params[c].vol_annual_pct / 100.0 for c in self.commodities]),
            config.common_factor,
        )
        self.inst_commodity = np.array([self.commodities.index(i.commodity) for i in reg], dtype=np.int64)
        self.tick_fixed = np.array([i.tick_fixed for i in reg], dtype=np.int64)
        # FX instruments publish quotes only
        self.trades_on = np.array([not i.commodity.startswith("fx_") for i in reg])

        # legs priced off a link: leg_b = fair_b(leg_a) with a small mean-reverting deviation
        self.leg_link: dict[int, Link] = {}
        for lk in self.links:
            self.leg_link.setdefault(reg.get(lk.leg_b).index, lk)
        self.noise_rows = {idx: k for k, idx in enumerate(sorted(self.leg_link))}
        self.step_ns = config.step_ms * 1_000_000
        self.basis = BasisNoise(len(self.noise_rows), config.basis_noise_bps, config.basis_tau_s,
                                self.step_ns / NS)

        # quoted price = canonical / (base_factor x per_usd(canonical ccy) / per_usd(price ccy))
        ones = {ccy: Decimal(1) for ccy in self.units.fx_instruments}
        self.base_factor = np.array([float(self.units.factor(i, ones)) for i in reg])
        self.canon_ccy = [self.units.canonical_for(i.commodity).currency for i in reg]
        self.price_ccy = [i.price_currency for i in reg]
        self.fx_commodity: dict[str, int] = {}
        for ccy in {*self.canon_ccy, *self.price_ccy} - {"USD"}:
            fx_id = self.units.fx_instruments.get(ccy)
            if fx_id is None or fx_id not in reg:
                raise ValueError(f"currency {ccy} needs its FX instrument {fx_id!r} in the registry")
            self.fx_commodity[ccy] = self.commodities.index(reg.get(fx_id).commodity)

        self.plan = ScenarioPlan(config, reg, self.links, self.commodities, self.published)
        self.rng = np.random.Generator(np.random.PCG64(config.seed))
        self.book = BookState.new(n)
        self.pending = SimRows.empty()
        self.block_ns = config.block_s * NS
        self.duration_ns = int(round(config.duration_s * NS))

    # ---- prices -------------------------------------------------------------------------------------

    def _canonical(self, world: np.ndarray, noise: np.ndarray) -> np.ndarray:
        out = np.empty((len(self.registry), world.shape[1]))
        done = np.zeros(len(self.registry), dtype=bool)

        def resolve(i: int, depth: int = 0) -> np.ndarray:
            if done[i]:
                return out[i]
            if depth > len(self.registry):
                raise ValueError("cycle in cross-venue links")
            lk = self.leg_link.get(i)
            if lk is None:
                out[i] = world[self.inst_commodity[i]]
            else:
                a = resolve(self.registry.get(lk.leg_a).index, depth + 1)
                # fair_b is plain arithmetic, so it maps whole paths (its hint says float)
                out[i] = lk.fair_b(a) * (1.0 + noise[self.noise_rows[i]] / 1e4)  # type: ignore[arg-type]
            done[i] = True
            return out[i]

        for i in range(len(self.registry)):
            resolve(i)
        return out

    def _factor(self, world: np.ndarray) -> np.ndarray:
        """(n, G) multiplier from quoted to canonical price at each grid step (FX moves)."""
        ones = np.ones(world.shape[1])

        def per_usd(ccy: str) -> np.ndarray:
            return ones if ccy == "USD" else world[self.fx_commodity[ccy]]

        return np.stack([self.base_factor[i] * per_usd(c) / per_usd(p)
                         for i, (c, p) in enumerate(zip(self.canon_ccy, self.price_ccy, strict=True))])

    # ---- blocks -------------------------------------------------------------------------------------

    def blocks(self) -> Iterator[SimRows]:
        k = 0
        endless = self.config.endless
        while endless or k * self.block_ns < self.duration_ns:
            b0 = k * self.block_ns
            b1 = b0 + self.block_ns if endless else min(b0 + self.block_ns, self.duration_ns)
            yield self._block(b0, b1, first=k == 0, final=not endless and b1 == self.duration_ns)
            k += 1

    def _block(self, b0: int, b1: int, first: bool, final: bool) -> SimRows:
        cfg = self.config
        rng = self.rng
        edges = np.append(np.arange(b0, b1, self.step_ns, dtype=np.int64), np.int64(b1))
        t = edges[:-1]
        step_s = np.diff(edges) / NS
        log_world = self.world.advance(rng, step_s, self.plan.vol_mult(t)) + self.plan.world_log_offset(t)
        world = np.exp(log_world)
        canon = self._canonical(world, self.basis.advance(rng, t.shape[0]))
        px = canon * np.exp(self.plan.instrument_log_offset(t)) / self._factor(world)

        profile = intraday_profile(cfg.start_ns + t)[None, :]
        q_mult, t_mult = self.plan.rate_mults(t)
        scale = cfg.rate_scale * self.published[:, None]
        inputs = BlockInputs(
            start_ns=cfg.start_ns,
            edges_ns=edges,
            px=px,
            tick_fixed=self.tick_fixed,
            lam_quote=cfg.quote_rate_hz * scale * profile * q_mult,
            lam_trade=cfg.trade_rate_hz * scale * self.trades_on[:, None] * profile * t_mult,
            buy_prob=self.plan.buy_prob(t),
            trade_size_mult=self.plan.trade_size_mult(t),
            opening_quotes=self.published & first,
            seq_bumps=self.plan.seq_bumps(b0, b1),
            latency_us=(cfg.latency_min_us, cfg.latency_median_us, cfg.latency_max_us),
        )
        rows = generate_block(rng, self.book, inputs)
        self.plan.apply_crossed(rows, cfg.start_ns, b0, b1)
        if cfg.has("dirty"):
            rows = self.plan.apply_dirty(rows, rng, cfg.start_ns, b0, b1, self.names, self.raw_messages)

        merged = SimRows.concat([self.pending, rows])
        merged = merged.take(np.argsort(merged.ts_recv, kind="stable"))
        if final:
            self.pending = SimRows.empty()
            return merged
        cut = int(np.searchsorted(merged.ts_recv, cfg.start_ns + b1))
        self.pending = merged.take(slice(cut, None))
        return merged.take(slice(None, cut))

    # ---- output -------------------------------------------------------------------------------------

    def to_table(self, rows: SimRows) -> pa.Table:
        """Rows in TICK_SCHEMA (instrument/kind null on raw rows, raw null elsewhere)."""
        instrument = pc.take(pa.array(self.names, pa.string()), pa.array(rows.inst, mask=rows.inst < 0))
        kind = pc.take(pa.array(["trade", "quote"], pa.string()), pa.array(rows.kind, mask=rows.kind < 0))
        raw = pc.take(pa.array(self.raw_messages, pa.string()), pa.array(rows.raw, mask=rows.raw < 0))
        cols = [instrument, kind, rows.ts_event, rows.ts_recv, rows.seq, rows.price, rows.size, rows.bid,
                rows.ask, rows.bid_size, rows.ask_size, raw]
        return pa.Table.from_arrays([pa.array(c) if isinstance(c, np.ndarray) else c for c in cols],
                                    schema=TICK_SCHEMA)


def venue_subset(rows: SimRows, indices: np.ndarray, keep_raw: bool = False) -> SimRows:
    """The rows of the instruments at these registry indices (plus undecodable raw rows with keep_raw), in order.

    A venue simulator generates the whole market and keeps its own instruments: restricting
    `SimConfig.instruments` instead would change every path (the random draws depend on the rows drawn),
    so venues started on one seed would no longer show one market."""
    mask = np.isin(rows.inst, indices)
    if keep_raw:
        mask |= rows.kind == KIND_RAW
    return rows.take(mask)


def simulate(config: SimConfig, registry: Registry | None = None) -> pa.Table:
    """The whole run as one table in TICK_SCHEMA, in delivery order."""
    if config.endless:
        raise ValueError("simulate needs duration_s > 0 (endless runs are for simulators.live)")
    gen = MarketGenerator(config, registry)
    return pa.concat_tables([gen.to_table(rows) for rows in gen.blocks()])  # one chunk per block: no big copy
