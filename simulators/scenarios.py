"""Scenarios as functions of simulated time: price overlays, rate multipliers and injected faults.

Times are ns relative to the run start. Scenario moments sit at fixed fractions of an episode (the whole
run, or one cycle of an endless run), and every injected fault is placed by a per-episode random stream,
so where a fault lands does not depend on how the run is cut into blocks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from market.codec import encode
from market.events import QuoteTick, TradeTick
from market.instruments import Registry
from market.links import Link
from simulators.config import SimConfig
from simulators.microstructure import KIND_QUOTE, KIND_RAW, KIND_TRADE, SimRows

NS = 1_000_000_000
_DIRTY_STREAM = 0xD127  # separates the fault-placement random streams from the market's


@dataclass(frozen=True, slots=True)
class EpisodeFaults:
    """Where the counted faults of one episode land (ns relative to the run start)."""

    late: np.ndarray
    malformed: np.ndarray
    nan: np.ndarray
    negative_size: np.ndarray
    unknown: np.ndarray
    gap_ns: np.ndarray
    gap_inst: np.ndarray


class ScenarioPlan:
    """The active scenarios of one run, resolved against the registry and the commodity list."""

    def __init__(self, config: SimConfig, registry: Registry, links: tuple[Link, ...], commodities: list[str],
                 published: np.ndarray) -> None:
        self.config = config
        self.registry = registry
        self.n_inst = len(registry)
        self.commodities = commodities
        self.published = published  # (n,) bool
        self.ep_ns = int(round(config.episode_s * NS))
        self.cyclic = config.endless
        sc = config.scenario
        self.crash_c = -1
        self.crash_inst = np.zeros(self.n_inst, dtype=bool)
        if config.has("crash"):
            if sc.crash.commodity not in commodities:
                raise ValueError(f"crash commodity {sc.crash.commodity!r} not simulated; have {commodities}")
            self.crash_c = commodities.index(sc.crash.commodity)
            self.crash_inst = np.array([i.commodity == sc.crash.commodity for i in registry])
        self.spike_inst = registry.get(sc.spike.instrument).index if config.has("spike") else -1
        self.arb_inst = -1
        if config.has("arbitrage"):
            by_id = {lk.id: lk for lk in links}
            if sc.arbitrage.link not in by_id:
                raise ValueError(f"unknown link {sc.arbitrage.link!r}; links: {sorted(by_id)}")
            self.arb_inst = registry.get(by_id[sc.arbitrage.link].leg_b).index
        self.stale_inst = np.zeros(self.n_inst, dtype=bool)
        if config.has("stale"):
            if sc.stale.venue not in registry.venues():
                raise ValueError(f"unknown venue {sc.stale.venue!r}; venues: {registry.venues()}")
            self.stale_inst = np.array([i.venue == sc.stale.venue for i in registry])
        self.crossed_inst = registry.get(sc.crossed.instrument).index if config.has("crossed") else -1
        if config.has("dirty") and sc.dirty.unknown_instrument in registry:
            raise ValueError(f"dirty.unknown_instrument {sc.dirty.unknown_instrument!r} is in the registry")
        self.unknown_seq = 0
        self._faults: dict[int, EpisodeFaults] = {}

    # ---- time within an episode -------------------------------------------------------------------------

    def _phase_s(self, t_ns: np.ndarray) -> np.ndarray:
        """Seconds since the start of the episode containing each time."""
        return (t_ns % self.ep_ns if self.cyclic else t_ns) / NS

    def _at(self, frac: float) -> float:
        return frac * self.ep_ns / NS

    # ---- price overlays ---------------------------------------------------------------------------------

    def world_log_offset(self, t_ns: np.ndarray) -> np.ndarray:
        """(n_commodities, G) log-price offsets of the world paths (the crash)."""
        out = np.zeros((len(self.commodities), t_ns.shape[0]))
        if self.crash_c < 0:
            return out
        c = self.config.scenario.crash
        u = self._phase_s(t_ns)
        prog = np.clip((u - self._at(c.at_frac)) / c.fall_s, 0.0, 1.0)
        drop = math.log(1.0 - c.drop_pct / 100.0) * prog
        if self.cyclic and c.recover_frac > 0:
            ep_s = self.ep_ns / NS
            drop *= np.clip((ep_s - u) / (c.recover_frac * ep_s), 0.0, 1.0)
        out[self.crash_c] = drop
        return out

    def vol_mult(self, t_ns: np.ndarray) -> np.ndarray:
        out = np.ones((len(self.commodities), t_ns.shape[0]))
        if self.crash_c >= 0:
            c = self.config.scenario.crash
            u = self._phase_s(t_ns)
            t0 = self._at(c.at_frac)
            out[self.crash_c] = np.where((u >= t0) & (u < t0 + c.fall_s + 30.0), c.vol_mult, 1.0)
        return out

    def instrument_log_offset(self, t_ns: np.ndarray) -> np.ndarray:
        """(n_instruments, G) log offsets of single venues: the spike and the arbitrage dislocation."""
        out = np.zeros((self.n_inst, t_ns.shape[0]))
        u = self._phase_s(t_ns)
        sc = self.config.scenario
        if self.spike_inst >= 0:
            s = sc.spike
            dt = u - self._at(s.at_frac)
            out[self.spike_inst] += np.where(
                dt >= 0, math.log1p(s.jump_pct / 100.0) * np.exp(-np.maximum(dt, 0.0) / s.revert_tau_s), 0.0)
        if self.arb_inst >= 0:
            a = sc.arbitrage
            t0 = self._at(a.at_frac)
            out[self.arb_inst] += np.where((u >= t0) & (u < t0 + a.duration_s),
                                           math.log1p(a.dislocation_bps / 1e4), 0.0)
        return out

    # ---- activity -----------------------------------------------------------------------------------------

    def rate_mults(self, t_ns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(quote, trade) multipliers (n_instruments, G): crash volume, stale silence."""
        g = t_ns.shape[0]
        q = np.ones((self.n_inst, g))
        tr = np.ones((self.n_inst, g))
        u = self._phase_s(t_ns)
        sc = self.config.scenario
        if self.crash_c >= 0:
            c = sc.crash
            t0 = self._at(c.at_frac)
            falling = (u >= t0) & (u < t0 + c.fall_s)
            q[np.ix_(self.crash_inst, falling)] = c.quote_rate_mult
            tr[np.ix_(self.crash_inst, falling)] = c.trade_rate_mult
        if self.stale_inst.any():
            s = sc.stale
            t0 = self._at(s.at_frac)
            silent = (u >= t0) & (u < t0 + s.silence_s)
            q[np.ix_(self.stale_inst, silent)] = 0.0
            tr[np.ix_(self.stale_inst, silent)] = 0.0
        return q, tr

    def buy_prob(self, t_ns: np.ndarray) -> np.ndarray:
        out = np.full((self.n_inst, t_ns.shape[0]), 0.5)
        if self.crash_c >= 0:
            c = self.config.scenario.crash
            u = self._phase_s(t_ns)
            t0 = self._at(c.at_frac)
            falling = (u >= t0) & (u < t0 + c.fall_s)
            out[np.ix_(self.crash_inst, falling)] = 1.0 - c.sell_prob
        return out

    def trade_size_mult(self, t_ns: np.ndarray) -> np.ndarray:
        out = np.ones((self.n_inst, t_ns.shape[0]))
        if self.crash_c >= 0:
            c = self.config.scenario.crash
            u = self._phase_s(t_ns)
            t0 = self._at(c.at_frac)
            out[np.ix_(self.crash_inst, (u >= t0) & (u < t0 + c.fall_s))] = c.trade_size_mult
        return out

    # ---- faults placed at points in time ---------------------------------------------------------------

    def _episodes(self, b0: int, b1: int) -> range:
        if not self.cyclic:
            return range(1)
        return range(b0 // self.ep_ns, (b1 - 1) // self.ep_ns + 1)

    def faults(self, episode: int) -> EpisodeFaults:
        cached = self._faults.get(episode)
        if cached is None:
            cached = self._faults[episode] = self._place_faults(episode)
            self._faults.pop(episode - 2, None)  # blocks only move forward
        return cached

    def _place_faults(self, episode: int) -> EpisodeFaults:
        d = self.config.scenario.dirty
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.config.seed, _DIRTY_STREAM, episode])))
        base = episode * self.ep_ns

        def at(count: int, lo: float = 0.05) -> np.ndarray:
            return np.sort(base + (rng.uniform(lo, 0.95, count) * self.ep_ns).astype(np.int64))

        # late rows move back by late_min_s or more: when the episode allows, keep them after its start
        late_lo = 2 * d.late_min_s * NS / self.ep_ns
        late = at(d.late_count, late_lo if late_lo < 0.75 else 0.05)
        pub = np.flatnonzero(self.published)
        return EpisodeFaults(
            late=late, malformed=at(d.malformed_count), nan=at(d.nan_count),
            negative_size=at(d.negative_size_count), unknown=at(d.unknown_count),
            gap_ns=at(d.gap_count), gap_inst=rng.choice(pub, size=d.gap_count) if pub.shape[0] else pub,
        )

    def _in_block(self, b0: int, b1: int, pick: str) -> np.ndarray:
        parts = [getattr(self.faults(e), pick) for e in self._episodes(b0, b1)]
        t = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        return t[(t >= b0) & (t < b1)]

    def seq_bumps(self, b0: int, b1: int) -> list[tuple[int, int]]:
        if not self.config.has("dirty"):
            return []
        out = []
        for e in self._episodes(b0, b1):
            f = self.faults(e)
            for t, i in zip(f.gap_ns.tolist(), f.gap_inst.tolist(), strict=True):
                if b0 <= t < b1:
                    out.append((int(i), int(t)))
        return out

    def apply_crossed(self, rows: SimRows, start_ns: int, b0: int, b1: int) -> None:
        """Swap bid and ask of a handful of quotes of one instrument (in place, on fresh rows)."""
        if self.crossed_inst < 0:
            return
        c = self.config.scenario.crossed
        targets = []
        for e in self._episodes(b0, b1):
            t0 = e * self.ep_ns + int(c.at_frac * self.ep_ns)
            targets += [t0 + int(k * c.spacing_s * NS) for k in range(c.count)]
        tgt = np.array([t for t in targets if b0 <= t < b1], dtype=np.int64)
        if tgt.shape[0] == 0:
            return
        pos = np.flatnonzero((rows.inst == self.crossed_inst) & (rows.kind == KIND_QUOTE))
        k = np.searchsorted(rows.ts_event[pos], start_ns + tgt)
        hit = pos[np.unique(k[k < pos.shape[0]])]
        rows.bid[hit], rows.ask[hit] = rows.ask[hit].copy(), rows.bid[hit].copy()

    def apply_dirty(self, rows: SimRows, rng: np.random.Generator, start_ns: int, b0: int, b1: int,
                    names: list[str], raw_messages: list[str]) -> SimRows:
        """Fresh rows of a block (grouped by instrument, time-sorted in each) plus the dirty faults."""
        d = self.config.scenario.dirty
        n = len(rows)
        order = np.argsort(rows.ts_event, kind="stable")
        ts_sorted = rows.ts_event[order]

        def first_at(times: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
            """Row of the first message at/after each time (restricted to mask); none past the block."""
            o = order if mask is None else order[mask[order]]
            k = np.searchsorted(ts_sorted if mask is None else rows.ts_event[o], start_ns + times)
            return o[k[k < o.shape[0]]]

        is_trade = rows.kind == KIND_TRADE
        # locate every target before anything moves
        late_rows = first_at(self._in_block(b0, b1, "late"))
        nan_rows = first_at(self._in_block(b0, b1, "nan"))
        neg_rows = first_at(self._in_block(b0, b1, "negative_size"), is_trade)
        unk_rows = first_at(self._in_block(b0, b1, "unknown"))
        mal_times = self._in_block(b0, b1, "malformed")

        ooo = rng.random(n) < d.out_of_order_pct / 100.0
        shift = rng.integers(1_000_000, max(1_000_001, d.out_of_order_max_ms * 1_000_000), size=n)
        rows.ts_event[ooo] -= shift[ooo]
        late_shift = np.asarray(rng.uniform(d.late_min_s, 2 * d.late_min_s, size=late_rows.shape[0]))
        rows.ts_event[late_rows] -= (late_shift * NS).astype(np.int64)
        trade_nan = nan_rows[rows.kind[nan_rows] == KIND_TRADE]
        rows.price[trade_nan] = np.nan
        rows.bid[nan_rows[rows.kind[nan_rows] == KIND_QUOTE]] = np.nan
        rows.size[neg_rows] = -np.abs(rows.size[neg_rows])

        extra: list[SimRows] = [rows]
        dup = np.flatnonzero(rng.random(n) < d.duplicate_pct / 100.0)
        if dup.shape[0]:
            copies = rows.take(dup)
            copies.ts_recv += rng.integers(500_000, 100_000_000, size=dup.shape[0])
            extra.append(copies)
        if unk_rows.shape[0]:
            unk = rows.take(unk_rows)
            unk.inst[:] = self.n_inst
            unk.seq[:] = self.unknown_seq + 1 + np.arange(unk_rows.shape[0])
            self.unknown_seq += unk_rows.shape[0]
            extra.append(unk)
        if mal_times.shape[0]:
            mal = SimRows.empty(mal_times.shape[0])
            mal.inst[:] = -1
            mal.kind[:] = KIND_RAW
            mal.ts_recv[:] = start_ns + mal_times
            for j, t in enumerate(mal_times.tolist()):
                mal.raw[j] = len(raw_messages)
                raw_messages.append(_garbage(len(raw_messages), start_ns + t, names[0] if names else "GC.COMEX"))
            extra.append(mal)
        return SimRows.concat(extra)


def _garbage(k: int, ts: int, instrument_id: str) -> str:
    """Undecodable wire messages of the kinds seen in the wild."""
    kind = k % 4
    if kind == 0:  # truncated JSON
        msg = encode(QuoteTick(instrument_id, 1_000_000_000, 1_010_000_000, 5, 5, ts, 0, 1)).decode()
        return msg[: len(msg) // 2]
    if kind == 1:  # not JSON at all
        return "\x1b[0m#@! connection reset by peer; garbage <<<"
    if kind == 2:  # right shape, wrong types
        msg = encode(TradeTick(instrument_id, 1_000_000_000, 1, ts, 0, 1)).decode()
        return msg.replace('"price":1000000000', '"price":"1.0"')
    return '{"type":"tick.v9","instrument_id":"' + instrument_id + '","px":1.0}'  # unknown record type
