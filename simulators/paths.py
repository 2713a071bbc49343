"""Correlated canonical price paths on a fixed time grid, advanced block by block.

World paths are geometric Brownian motions (one per commodity) sharing a global factor; link legs add a
mean-reverting basis deviation (AR(1) in basis points). State carries across blocks, so a run generated in
blocks is one continuous path.
"""

from __future__ import annotations

import math

import numpy as np

SECONDS_PER_YEAR = 365.25 * 86400.0


class WorldPaths:
    """Log-price state per commodity; `advance` returns the log prices at the start of each grid step."""

    def __init__(self, start_prices: np.ndarray, vol_annual: np.ndarray, common_factor: float) -> None:
        if np.any(start_prices <= 0):
            raise ValueError("GBM start prices must be positive")
        self.log_price = np.log(np.asarray(start_prices, dtype=np.float64))
        self.sigma = np.asarray(vol_annual, dtype=np.float64)  # fraction per sqrt(year)
        self.common_factor = common_factor

    @property
    def n(self) -> int:
        return int(self.log_price.shape[0])

    def advance(self, rng: np.random.Generator, step_s: np.ndarray, vol_mult: np.ndarray) -> np.ndarray:
        """(n, G) log prices at the start of each of G steps of lengths `step_s`; the state moves to the end.

        vol_mult (n, G) scales each step's volatility (scenarios); the drift keeps E[price] flat.
        """
        g = step_s.shape[0]
        z_common: np.ndarray = np.asarray(rng.standard_normal(g))
        z_own = rng.standard_normal((self.n, g))
        rho = self.common_factor
        z = math.sqrt(rho) * z_common[None, :] + math.sqrt(1.0 - rho) * z_own
        step_sd: np.ndarray = np.sqrt(step_s / SECONDS_PER_YEAR)
        s = self.sigma[:, None] * vol_mult * step_sd[None, :]
        incr = s * z - 0.5 * s * s
        cum = np.cumsum(incr, axis=1)
        out = np.empty_like(cum)
        out[:, 0] = 0.0
        out[:, 1:] = cum[:, :-1]
        out += self.log_price[:, None]
        self.log_price = self.log_price + cum[:, -1]
        return out


def ar1(x_prev: np.ndarray, a: float, eps: np.ndarray) -> np.ndarray:
    """x[:, k] = a * x[:, k-1] + eps[:, k] with x[:, -1] = x_prev, vectorised.

    Uses x_k = a^k (a x_prev + sum_j a^-j eps_j) on sub-blocks short enough that a^-j stays small.
    """
    n, g = eps.shape
    out = np.empty_like(eps)
    if g == 0:
        return out
    if a <= 0.0:
        out[:] = eps
        return out
    if a >= 1.0:
        return x_prev[:, None] + np.cumsum(eps, axis=1)
    max_len = max(1, int(math.log(1e8) / -math.log(a)))
    x = np.asarray(x_prev, dtype=np.float64)
    for lo in range(0, g, max_len):
        hi = min(g, lo + max_len)
        k = np.arange(hi - lo, dtype=np.float64)
        pw = a**k
        acc = np.cumsum(eps[:, lo:hi] / pw[None, :], axis=1)
        out[:, lo:hi] = pw[None, :] * (a * x[:, None] + acc)
        x = out[:, hi - 1]
    return out


class BasisNoise:
    """Stationary AR(1) deviations in bps (sd `sd_bps`, e-folding `tau_s`), clipped at 3 sd when read."""

    def __init__(self, n: int, sd_bps: float, tau_s: float, step_s: float) -> None:
        self.sd = sd_bps
        self.a = math.exp(-step_s / tau_s) if tau_s > 0 else 0.0
        self.state = np.zeros(n, dtype=np.float64)

    def advance(self, rng: np.random.Generator, g: int) -> np.ndarray:
        n = self.state.shape[0]
        eps = rng.standard_normal((n, g)) * (self.sd * math.sqrt(max(0.0, 1.0 - self.a * self.a)))
        x = ar1(self.state, self.a, eps)
        if g:
            self.state = x[:, -1].copy()
        return np.clip(x, -3.0 * self.sd, 3.0 * self.sd)
