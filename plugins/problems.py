"""Problems with exact solutions: ``heat`` and ``porous-medium`` (any ``dim``, any ``m > 1``).

Each bundles a spec (sampler, dimension, functional terms, suggested solver and network)
with metrics against its exact solution, including the noise-free error against the exact
Lagrangian flow applied to the same initial particles, with the i.i.d. floor beside it for
scale (the W1 distance of a fresh exact sample of the same size to the exact law).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from jkoflow.metrics import (
    mean_displacement,
    normal_cdf,
    w1_between_samples,
    w1_to_cdf,
    w2_between_samples,
)
from jkoflow.problem import Problem
from jkoflow.registry import Registry, hookimpl
from torch import Tensor

from .barenblatt import Barenblatt
from .samplers import BarenblattSampler  # noqa: F401 - re-exported from its old home

_FLOOR_SEED = 12345


class Heat(Problem):
    """Heat equation ``d_t rho = Lap rho``: the gradient flow of ``F = int rho log rho``.

    From ``rho_0 = N(mean, std^2 I)`` the exact solution is ``N(mean, (std^2 + 2t) I)`` and the
    exact Lagrangian map is affine: ``x -> mean + sqrt(1 + 2t/std^2) (x0 - mean)``.
    """

    vanishing_at_start = frozenset({"map_error"})

    def __init__(self, dim: int = 1, mean: float = 0.0, std: float = 1.0, n: int = 500) -> None:
        if not std > 0:
            raise ValueError(f"std={std}: expected a positive number")
        self.dim, self.mean, self.std, self.n = int(dim), float(mean), float(std), int(n)

    def spec(self) -> dict[str, Any]:
        return {
            "dim": self.dim,
            "sampler": {"kind": "gaussian", "n": self.n, "mean": self.mean, "std": self.std},
            "terms": [{"kind": "entropy", "weight": 1.0}],
            "solver": {"tau": 0.05, "steps": 10, "inner_iters": 150, "lr": 1e-2},
            "potential": {"kind": "ficnn", "widths": [32, 32]},
        }

    def std_at(self, t: float) -> float:
        return math.sqrt(self.std**2 + 2 * t)

    def metrics(self, t: float, x0: Tensor, x: Tensor, log_density: Tensor | None) -> dict[str, float]:
        xs, x0s = x.detach().cpu().double().numpy(), x0.detach().cpu().double().numpy()
        s = self.std_at(t)
        lo, hi = self.mean - 8 * s, self.mean + 8 * s

        def w1(samples: np.ndarray) -> float:  # mean over coordinates of marginal W1
            return float(
                np.mean(
                    [
                        w1_to_cdf(samples[:, j], lambda g: normal_cdf(g, self.mean, s), lo, hi)
                        for j in range(self.dim)
                    ]
                )
            )

        floor = self.mean + s * np.random.default_rng(_FLOOR_SEED).standard_normal(xs.shape)
        exact_map = self.mean + (s / self.std) * (x0s - self.mean)
        return {
            "w1": w1(xs),
            "w1_iid_floor": w1(floor),
            "map_error": mean_displacement(xs, exact_map),
            "var_rel_error": float(np.mean(xs.var(axis=0, ddof=1)) / s**2 - 1.0),
            "F_exact": float(self.exact_F(t)),
        }

    def exact_density(self, grid: np.ndarray, t: float) -> np.ndarray:
        s = self.std_at(t)
        z = (np.asarray(grid) - self.mean) / s
        return np.exp(-0.5 * np.sum(z**2, axis=-1)) / (math.sqrt(2 * math.pi) * s) ** self.dim

    def exact_F(self, t: float) -> float:
        return -0.5 * self.dim * (1.0 + math.log(2 * math.pi * self.std_at(t) ** 2))

    def exact_sample(self, n: int, t: float, rng: np.random.Generator) -> np.ndarray | None:
        if not math.isfinite(t):
            return None  # no steady state: the Gaussian spreads for ever
        return self.mean + self.std_at(t) * rng.standard_normal((n, self.dim))

    # initial law: for density evaluation (Algorithm 2) and the ideal 1-D JKO reference
    def log_density0(self, x: Tensor) -> Tensor:
        """``log rho_0(x)`` for ``x`` of shape ``(n, dim)``."""
        z = (x - self.mean) / self.std
        return -0.5 * z.pow(2).sum(-1) - self.dim * (math.log(self.std) + 0.5 * math.log(2 * math.pi))

    def cdf0(self, x: np.ndarray) -> np.ndarray:
        return normal_cdf(x, self.mean, self.std)

    def quantile0(self, u: np.ndarray) -> np.ndarray:
        from scipy.stats import norm

        return self.mean + self.std * norm.ppf(u)

    def exact_quantile(self, u: np.ndarray, t: float) -> np.ndarray:
        """Quantile function of the exact solution at time ``t`` (each coordinate)."""
        from scipy.stats import norm

        return self.mean + self.std_at(t) * norm.ppf(u)


class PorousMedium(Problem):
    """Porous medium equation ``d_t rho = Lap rho^m`` from a Barenblatt profile at ``t0 > 0``.

    The particles follow the probability ``p = rho / M``, the gradient flow of
    ``M^(m-1) int p^m / (m - 1)`` (``M`` the profile's mass; ``M = 2`` for the paper's
    ``d = 1, m = 2, C = (3/16)^(1/3)``). Exact at every ``t``; the exact flow map is
    ``x -> x (t / t0)^b``.

    ``stratified`` (default) draws the initial particles by stratified sampling of the radial
    CDF, ``stratified = false`` i.i.d. (the paper's setting). A JKO-ICNN flow estimates the
    internal energy on the same particles at every step, so the sampling error of an i.i.d.
    cloud biases every step alike; stratified, it falls like ``1/n`` rather than ``1/sqrt(n)``.
    Measured (docs/benchmarks.md, "PDE validation"; d = 1, m = 2, N = 100, tau = 1e-2, 3 steps
    of 100 iterations, lr 1e-2, seeds 0-2): worst deviation from the ideal JKO over the ideal's
    own error 0.23-0.62 with i.i.d. particles, 0.03-0.04 with stratified ones (fresh samples,
    ``solver.fresh_samples = n``: 0.15-0.32 i.i.d., 0.06-0.13 stratified, at higher cost).
    """

    vanishing_at_start = frozenset({"map_error"})

    def __init__(
        self,
        dim: int = 1,
        m: float = 2.0,
        C: float = (3 / 16) ** (1 / 3),
        t0: float = 1e-3,
        n: int = 200,
        stratified: bool = True,
    ) -> None:
        if not t0 > 0:
            raise ValueError(f"t0={t0}: expected t0 > 0 (the profile is a Dirac mass at t = 0)")
        self.dim, self.m, self.C, self.t0, self.n = int(dim), float(m), float(C), float(t0), int(n)
        self.stratified = bool(stratified)
        self.profile = Barenblatt(self.dim, self.m, self.C)

    @property
    def weight(self) -> float:
        """``M^(m-1)``: the factor of ``int p^m/(m-1)`` for the normalized profile."""
        return self.profile.mass ** (self.m - 1)

    def spec(self) -> dict[str, Any]:
        return {
            "dim": self.dim,
            "sampler": {
                "kind": "barenblatt",
                "n": self.n,
                "m": self.m,
                "C": self.C,
                "t0": self.t0,
                "stratified": self.stratified,
            },
            "terms": [{"kind": "porous_medium", "weight": self.weight, "m": self.m}],
            "solver": {"tau": 1e-2, "steps": 10, "inner_iters": 300, "lr": 1e-2},
            "potential": {"kind": "ficnn", "widths": [32, 32]},
        }

    def metrics(self, t: float, x0: Tensor, x: Tensor, log_density: Tensor | None) -> dict[str, float]:
        xs, x0s = x.detach().cpu().double().numpy(), x0.detach().cpu().double().numpy()
        floor = self.profile.sample(xs.shape[0], t, torch.Generator().manual_seed(_FLOOR_SEED)).numpy()
        if self.dim == 1:
            radius = self.profile.radius(t)

            def w1(samples: np.ndarray) -> float:
                return w1_to_cdf(samples[:, 0], lambda g: self.profile.cdf_1d(g, t), -radius, radius)
        else:  # W1 of the radial laws, against a large exact sample
            big = self.profile.sample(20000, t, torch.Generator().manual_seed(_FLOOR_SEED + 1)).numpy()
            ref = np.linalg.norm(big, axis=1)

            def w1(samples: np.ndarray) -> float:
                return w1_between_samples(np.linalg.norm(samples, axis=1), ref)

        out = {
            "w1": w1(xs),
            "w1_iid_floor": w1(floor),
            "map_error": mean_displacement(xs, self.profile.flow_map(x0s, self.t0, t)),
            "F_exact": float(self.exact_F(t)),
        }
        if self.dim >= 2:  # W2 by exact OT against an exact sample (first 1500 points)
            out["w2"] = w2_between_samples(xs, big[:1500])
            out["w2_iid_floor"] = w2_between_samples(floor, big[:1500])
        return out

    def exact_density(self, grid: np.ndarray, t: float) -> np.ndarray:
        return self.profile.density(grid, t)

    # initial law: for density evaluation (Algorithm 2) and the ideal 1-D JKO reference
    def log_density0(self, x: Tensor) -> Tensor:
        """``log rho_{t0}(x)`` of the normalized profile (``-inf`` outside its support)."""
        with np.errstate(divide="ignore"):
            return torch.from_numpy(np.log(self.profile.density(x.detach().cpu().double().numpy(), self.t0)))

    def cdf0(self, x: np.ndarray) -> np.ndarray:
        return self.profile.cdf_1d(x, self.t0)

    def quantile0(self, u: np.ndarray) -> np.ndarray:
        return self.profile.quantile_1d(u, self.t0)

    def exact_quantile(self, u: np.ndarray, t: float) -> np.ndarray:
        """Quantile function of the exact solution at time ``t`` (``d = 1``)."""
        return self.profile.quantile_1d(u, t)

    def support_radius(self, t: float) -> float:
        return self.profile.radius(t)

    def exact_F(self, t: float) -> float:
        return self.weight * self.profile.integral_rho_m(t) / (self.m - 1)

    def exact_sample(self, n: int, t: float, rng: np.random.Generator) -> np.ndarray | None:
        if not math.isfinite(t):
            return None  # the profile spreads for ever
        generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
        return self.profile.sample(n, t, generator).double().numpy()


@hookimpl
def jkoflow_register(registry: Registry) -> None:
    registry.add("problem", "heat", Heat)
    registry.add("problem", "porous-medium", PorousMedium)
