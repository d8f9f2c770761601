"""PDE problems of the paper's Section 5 and Appendix C-D, each with its exact solution.

==========================  =====================================  ==========================================
problem                     F(rho)                                 exact reference
==========================  =====================================  ==========================================
fokker-planck-nonlinear     int V rho + int rho^m/(m-1),  V=|x|^2  steady state (C - (m-1)/m V)_+^(1/(m-1))
aggregation                 1/2 int int W(x-x') drho drho          steady state: d=1 (1/pi) sqrt((2-x^2)_+),
                            W(z) = |z|^2/2 - log|z|                d=2 uniform on the unit disk
potential-only              int V rho,                             x_t = mu + e^{-2At}(x_0 - mu)
                            V = (x-mu)^T A (x-mu), A diagonal
==========================  =====================================  ==========================================

fokker-planck-nonlinear and aggregation start from stratified Gaussian particles by default
(sampler ``gaussian-stratified``; ``stratified = false``: i.i.d., the paper's setting): a JKO-ICNN
flow estimates ``F`` on the same particles at every step, so the sampling error of an i.i.d. start
biases every step the same way; stratification removes most of it (docs/benchmarks.md, "PDE
validation": d = 1 nonlinear Fokker-Planck, N = 100, reaches rho_inf within W1 0.008 and F within
0.1 %, i.i.d. stalls 2.6 % above F(rho_inf)). Fresh samples (``solver.fresh_samples``) are no
substitute here: from a Gaussian to a compactly supported rho_inf the network fitted to the whole
population lags the ideal JKO by up to 0.04 and, with 1000 iterations, stalls 2.3 % above F_inf.

Derivations. Nonlinear Fokker-Planck: ``d_t rho = div(rho grad V) + Lap rho^m`` is the flow of
``int V rho + int rho^m/(m-1)`` (first variation ``V + m/(m-1) rho^(m-1)``, and
``rho grad(m/(m-1) rho^(m-1)) = grad rho^m``). At rest the first variation is constant on the
support: ``rho_inf = ((m-1)/m)^(1/(m-1)) (K - V)_+^(1/(m-1)) = (C - (m-1)/m V)_+^(1/(m-1))`` with
``C = (m-1) K / m`` fixed by unit mass. With ``c = (m-1)/m``, ``p = 1/(m-1)`` and ``s = c|x|^2/C``,
``s ~ Beta(d/2, p + 1)``, so ``mass = C^(p + d/2) c^(-d/2) pi^(d/2) Gamma(p+1)/Gamma(p+1+d/2)``.
Aggregation: on the support ``W * rho`` is constant; ``Lap W = d - Lap log|z|``. In d = 2,
``Lap log|z| = 2 pi delta`` gives ``rho_inf = 1/pi`` on the unit disk; in d = 1 the semicircle of
radius ``R`` has ``int log|x-y| rho(y) dy = x^2/R^2 + const`` on its support, which cancels the
``x^2/2`` of the quadratic part iff ``R^2 = 2``. Potential-only: ``dx/dt = -grad V = -2A(x - mu)``.
(The linear Fokker-Planck flow of Figure 2c is ``fokker-planck-gaussian``, in problems_gaussian.)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from jkoflow.metrics import mean_displacement, normal_cdf, w1_to_cdf, w2_between_samples
from jkoflow.problem import Problem
from jkoflow.registry import Registry, hookimpl
from scipy.special import betainc, betaincinv, gammaln
from torch import Tensor

from .samplers import (
    StratifiedGaussian,  # noqa: F401 - re-exported from its old home
    gaussian_log_density,
)

_FLOOR_SEED = 12345
_REF_SAMPLES = 1500
"""Size of the exact reference sample for W2 by exact OT in d >= 2 (cost ~ N x 1500)."""


class CompactProfile:
    """``rho(x) = (C - c |x - center|^2)_+^p / mass`` in ``R^d`` (unit mass after normalizing).

    The radial variable ``s = c |x - center|^2 / C`` is ``Beta(d/2, p + 1)``: exact sampling, and in
    ``d = 1`` an exact CDF and quantile function.
    """

    def __init__(self, d: int, p: float, c: float, C: float, center: float = 0.0) -> None:
        self.d, self.p, self.c, self.C, self.center = int(d), float(p), float(c), float(C), float(center)
        self.mass = math.exp(
            (self.p + self.d / 2) * math.log(self.C)
            - (self.d / 2) * math.log(self.c)
            + (self.d / 2) * math.log(math.pi)
            + gammaln(self.p + 1)
            - gammaln(self.p + 1 + self.d / 2)
        )

    @classmethod
    def unit_mass(cls, d: int, p: float, c: float, center: float = 0.0) -> CompactProfile:
        """The profile with ``C`` chosen so that ``int (C - c|x|^2)_+^p = 1``."""
        base = cls(d, p, c, 1.0, center).mass  # mass = C^(p + d/2) * base
        return cls(d, p, c, base ** (-1.0 / (p + d / 2)), center)

    @property
    def radius(self) -> float:
        return math.sqrt(self.C / self.c)

    def density(self, x: np.ndarray) -> np.ndarray:
        r2 = np.sum((np.asarray(x, dtype=float) - self.center) ** 2, axis=-1)
        return np.clip(self.C - self.c * r2, 0.0, None) ** self.p / self.mass

    def cdf_1d(self, x: np.ndarray) -> np.ndarray:
        z = np.asarray(x, dtype=float) - self.center
        s = np.clip(self.c * z**2 / self.C, 0.0, 1.0)
        return 0.5 + 0.5 * np.sign(z) * betainc(0.5, self.p + 1, s)

    def quantile_1d(self, u: np.ndarray) -> np.ndarray:
        u = np.asarray(u, dtype=float)
        s = betaincinv(0.5, self.p + 1, np.abs(2 * u - 1))
        return self.center + np.sign(u - 0.5) * np.sqrt(s * self.C / self.c)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        s = rng.beta(self.d / 2, self.p + 1, size=n)
        direction = rng.standard_normal((n, self.d))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        return self.center + np.sqrt(s * self.C / self.c)[:, None] * direction


def _gaussian_sampler(n: int, std: float, stratified: bool) -> dict[str, Any]:
    return {"kind": "gaussian-stratified" if stratified else "gaussian", "n": n, "mean": 0.0, "std": std}


class _SteadyStateProblem(Problem):
    """A flow from ``N(mean0, std0^2 I)`` towards a known steady state ``rho_inf``.

    Subclasses define ``steady_density``, ``steady_sample``, ``F_inf`` and, in ``d = 1``,
    ``steady_cdf``. Metrics: W1 (d = 1, through CDFs) or W2 (d >= 2, POT against a large exact
    sample) to ``rho_inf``, with the i.i.d. floor; in ``d = 1`` also the noise-free
    ``map_error_steady = mean_i |x_i - Q_inf(F_0(x^0_i))|`` against the limit of the exact
    Lagrangian flow (the monotone rearrangement of ``rho_0`` onto ``rho_inf``); ``F_inf`` for
    the F-over-time plot.
    """

    dim: int
    std0: float
    mean0: float = 0.0
    F_inf: float

    def steady_density(self, grid: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def steady_sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def steady_cdf(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def steady_quantile(self, u: np.ndarray) -> np.ndarray:
        """Quantile function of ``rho_inf`` in ``d = 1`` (bisection on :meth:`steady_cdf`)."""
        from jkoflow.reference import quantiles

        R = self.steady_radius
        return quantiles(self.steady_cdf, np.clip(u, 0.0, 1.0), -R, R)

    @property
    def steady_radius(self) -> float:
        raise NotImplementedError

    # the exact solution is known at t = inf only
    def exact_density(self, grid: np.ndarray, t: float) -> np.ndarray | None:
        return self.steady_density(grid) if t == math.inf else None

    def exact_sample(self, n: int, t: float, rng: np.random.Generator) -> np.ndarray | None:
        return self.steady_sample(n, rng) if t == math.inf else None

    def exact_F(self, t: float) -> float | None:
        return float(self.F_inf) if t == math.inf else None

    # initial law (for Algorithm 2 and the ideal-JKO reference)
    def log_density0(self, x: Tensor) -> Tensor:
        return gaussian_log_density(x, self.mean0, self.std0)

    def cdf0(self, x: np.ndarray) -> np.ndarray:
        return normal_cdf(x, self.mean0, self.std0)

    def quantile0(self, u: np.ndarray) -> np.ndarray:
        from scipy.stats import norm

        return self.mean0 + self.std0 * norm.ppf(u)

    def metrics(self, t: float, x0: Tensor, x: Tensor, log_density: Tensor | None) -> dict[str, float]:
        xs = x.detach().cpu().double().numpy()
        rng = np.random.default_rng(_FLOOR_SEED)
        floor = self.steady_sample(xs.shape[0], rng)
        out: dict[str, float] = {"F_inf": float(self.F_inf)}
        if self.dim == 1:
            R = self.steady_radius

            def w1(s: np.ndarray) -> float:
                return w1_to_cdf(s[:, 0], self.steady_cdf, -R, R)

            out["w1_steady"] = w1(xs)
            out["w1_iid_floor"] = w1(floor)
            # noise-free: the exact Lagrangian map at t = infinity is Q_inf o F_0 (monotone rearrangement)
            x0s = x0.detach().cpu().double().numpy()[:, 0]
            out["map_error_steady"] = float(np.mean(np.abs(xs[:, 0] - self.steady_quantile(self.cdf0(x0s)))))
        else:
            ref = self.steady_sample(_REF_SAMPLES, np.random.default_rng(_FLOOR_SEED + 1))
            out["w2_steady"] = w2_between_samples(xs, ref)
            out["w2_iid_floor"] = w2_between_samples(floor, ref)
        return out


class FokkerPlanckNonlinear(_SteadyStateProblem):
    """``d_t rho = div(rho grad V) + Lap rho^m`` with ``V = |x|^2`` from ``N(0, variance I)``.

    Paper Section 5.2: ``d = 1``, ``m = 2``, ``variance = 0.2``. The flow of
    ``F = int V rho + int rho^m/(m-1)``; ``rho_inf = (C - (m-1)/m |x|^2)_+^(1/(m-1))``, unit mass
    (``C = (3/(4 sqrt 2))^(2/3) ~= 0.6552`` for ``d = 1, m = 2``; support radius ``sqrt(2C)``).
    """

    def __init__(
        self, dim: int = 1, m: float = 2.0, variance: float = 0.2, n: int = 100, stratified: bool = True
    ) -> None:
        self.stratified = bool(stratified)
        if not m > 1:
            raise ValueError(f"m={m}: expected m > 1")
        if not variance > 0:
            raise ValueError(f"variance={variance}: expected a positive number")
        self.dim, self.m, self.variance, self.n = int(dim), float(m), float(variance), int(n)
        self.std0 = math.sqrt(self.variance)
        self.profile = CompactProfile.unit_mass(self.dim, 1.0 / (self.m - 1), (self.m - 1) / self.m)
        self.F_inf = self._F_inf()

    def spec(self) -> dict[str, Any]:
        return {
            "dim": self.dim,
            "sampler": _gaussian_sampler(self.n, self.std0, self.stratified),
            "terms": [
                {"kind": "potential", "weight": 1.0, "V": {"kind": "quadratic", "matrix": 2.0}},
                {"kind": "porous_medium", "weight": 1.0, "m": self.m},
            ],
            # measured (docs/benchmarks.md): reaches rho_inf by t = 0.6 at a tenth of the paper's cost
            "solver": {"tau": 5e-2, "steps": 12, "inner_iters": 300, "lr": 1e-2},
            "potential": {"kind": "ficnn", "widths": [64, 32]},
        }

    def _F_inf(self) -> float:
        """``int |x|^2 rho_inf + int rho_inf^m/(m-1)`` by the radial Beta law (closed form)."""
        prof = self.profile
        d, p = self.dim, prof.p
        # E|x|^2 = (C/c) E[s], s ~ Beta(d/2, p+1)
        ev = prof.C / prof.c * (d / 2) / (d / 2 + p + 1)
        # int rho^m = E[rho^(m-1)] = E[(C - c|x|^2)^(p(m-1))] / mass^(m-1) = C E[(1-s)] / mass^(m-1) (p(m-1) = 1)
        e_rho = prof.C * (p + 1) / (d / 2 + p + 1) / prof.mass ** (self.m - 1)
        return ev + e_rho / (self.m - 1)

    def steady_density(self, grid: np.ndarray) -> np.ndarray:
        return self.profile.density(grid)

    def steady_sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self.profile.sample(n, rng)

    def steady_cdf(self, x: np.ndarray) -> np.ndarray:
        return self.profile.cdf_1d(x)

    def steady_quantile(self, u: np.ndarray) -> np.ndarray:
        return self.profile.quantile_1d(u)

    @property
    def steady_radius(self) -> float:
        return self.profile.radius


class Aggregation(_SteadyStateProblem):
    """``d_t rho = div(rho grad(W * rho))``, ``W(z) = |z|^2/2 - log|z|``, from ``N(0, std^2 I)``.

    Paper Section 5.3 (``d = 1``, ``std = 1``): ``rho_inf = (1/pi) sqrt((2 - x^2)_+)`` with
    ``F(rho_inf) = 1/4 - (1/2)(log(sqrt 2 / 2) - 1/4)``. In ``d = 2``: uniform on the unit disk,
    ``F(rho_inf) = 1/4 - 1/2 E log|X - Y| = 1/4 + 1/8`` (``E log|X-Y| = -1/4`` on the unit disk).
    """

    def __init__(self, dim: int = 1, std: float = 1.0, n: int = 1000, stratified: bool = True) -> None:
        self.stratified = bool(stratified)
        if dim not in (1, 2):
            raise ValueError(f"dim={dim}: the exact steady state is known here for dim 1 or 2")
        if not std > 0:
            raise ValueError(f"std={std}: expected a positive number")
        self.dim, self.std0, self.n = int(dim), float(std), int(n)
        # E|X-Y|^2/4 = Var-sum/2; semicircle variance 1/2; unit disk E|X|^2 = 1/2
        self.F_inf = 0.25 - 0.5 * (math.log(math.sqrt(2) / 2) - 0.25) if dim == 1 else 0.25 + 0.125

    def spec(self) -> dict[str, Any]:
        return {
            "dim": self.dim,
            "sampler": _gaussian_sampler(self.n, self.std0, self.stratified),
            "terms": [{"kind": "interaction", "weight": 1.0, "W": "aggregation"}],
            # -log|z| is singular: in float32 two i.i.d. particles end up on the same float32
            # value and the energy is +inf (N = 1000, tau = 1, seed 0: step 4 at constant lr, step
            # 7 with the plateau schedule; stratified clouds ran clean, docs/benchmarks.md);
            # float64 runs clean
            "dtype": "float64",
            "solver": {"tau": 1.0, "steps": 10, "inner_iters": 400, "lr": 1e-3},  # the paper code's settings
            "potential": {"kind": "ficnn", "widths": [50, 50, 50]},
        }

    @property
    def steady_radius(self) -> float:
        return math.sqrt(2.0) if self.dim == 1 else 1.0

    def steady_density(self, grid: np.ndarray) -> np.ndarray:
        g = np.asarray(grid, dtype=float)
        r2 = np.sum(g**2, axis=-1)
        if self.dim == 1:
            return np.sqrt(np.clip(2.0 - r2, 0.0, None)) / math.pi
        return np.where(r2 <= 1.0, 1.0 / math.pi, 0.0)

    def steady_cdf(self, x: np.ndarray) -> np.ndarray:
        z = np.clip(np.asarray(x, dtype=float), -math.sqrt(2), math.sqrt(2))
        return (
            0.5
            + z * np.sqrt(np.clip(2 - z**2, 0.0, None)) / (2 * math.pi)
            + np.arcsin(np.clip(z / math.sqrt(2), -1.0, 1.0)) / math.pi
        )

    def steady_sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        if self.dim == 1:
            return (math.sqrt(2) * (2 * rng.beta(1.5, 1.5, size=n) - 1))[:, None]
        r = np.sqrt(rng.uniform(size=n))
        a = rng.uniform(0, 2 * math.pi, size=n)
        return np.stack([r * np.cos(a), r * np.sin(a)], axis=1)


class PotentialOnly(Problem):
    """Potential-only flow ``d_t rho = div(rho grad V)``, ``F = int V rho``,
    ``V(x) = (x-mu)^T A (x-mu)``, ``A = diag(a)``, from ``N(mean0, std0^2 I)`` (paper Figure 2b).

    Every particle follows ``dx/dt = -2A(x - mu)``: ``x_t = mu + e^{-2At}(x_0 - mu)`` exactly; the
    law is ``N(m_t, e^{-4At} std0^2)`` with ``m_t = mu + e^{-2At}(mean0 - mu)``.
    """

    vanishing_at_start = frozenset({"map_error"})

    def __init__(
        self,
        dim: int = 2,
        a: float | list[float] = 1.0,
        mu: float | list[float] = 1.0,
        mean0: float = 0.0,
        std0: float = 1.0,
        n: int = 300,
    ) -> None:
        if not std0 > 0:
            raise ValueError(f"std0={std0}: expected a positive number")
        self.dim, self.mean0, self.std0, self.n = int(dim), float(mean0), float(std0), int(n)
        self.a = np.broadcast_to(np.asarray(a, dtype=float), (self.dim,)).copy()
        self.mu = np.broadcast_to(np.asarray(mu, dtype=float), (self.dim,)).copy()
        if np.any(self.a <= 0):
            raise ValueError(f"a={a}: expected positive diagonal entries of A")

    def spec(self) -> dict[str, Any]:
        V = {"kind": "quadratic", "center": self.mu.tolist(), "matrix": (2 * self.a).tolist()}
        return {
            "dim": self.dim,
            "sampler": {"kind": "gaussian", "n": self.n, "mean": self.mean0, "std": self.std0},
            "terms": [{"kind": "potential", "weight": 1.0, "V": V}],
            "solver": {"tau": 0.05, "steps": 20, "inner_iters": 200, "lr": 1e-2},
            "potential": {"kind": "ficnn", "widths": [32, 32]},
        }

    def moments(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Mean and per-coordinate variance of the exact Gaussian at time ``t``."""
        decay = np.exp(-2 * self.a * t)
        return self.mu + decay * (self.mean0 - self.mu), decay**2 * self.std0**2

    def exact_map(self, x0: np.ndarray, t: float) -> np.ndarray:
        return self.mu + np.exp(-2 * self.a * t) * (np.asarray(x0) - self.mu)

    def log_density0(self, x: Tensor) -> Tensor:
        return gaussian_log_density(x, self.mean0, self.std0)

    def exact_density(self, grid: np.ndarray, t: float) -> np.ndarray:
        mean, var = self.moments(t)
        z = (np.asarray(grid, dtype=float) - mean) ** 2 / var
        return np.exp(-0.5 * z.sum(-1)) / np.sqrt(np.prod(2 * math.pi * var))

    def exact_F(self, t: float) -> float:
        mean, var = self.moments(t)
        return float(np.sum(self.a * (var + (mean - self.mu) ** 2)))

    def exact_sample(self, n: int, t: float, rng: np.random.Generator) -> np.ndarray | None:
        if not math.isfinite(t):
            return None  # the steady state is the Dirac mass at mu: no density
        mean, var = self.moments(t)
        return mean + np.sqrt(var) * rng.standard_normal((n, self.dim))

    def metrics(self, t: float, x0: Tensor, x: Tensor, log_density: Tensor | None) -> dict[str, float]:
        xs, x0s = x.detach().cpu().double().numpy(), x0.detach().cpu().double().numpy()
        mean, var = self.moments(t)
        rng = np.random.default_rng(_FLOOR_SEED)
        floor = mean + np.sqrt(var) * rng.standard_normal(xs.shape)
        out = {"map_error": mean_displacement(xs, self.exact_map(x0s, t)), "F_exact": self.exact_F(t)}
        if self.dim == 1:
            s = math.sqrt(var[0])

            def w1(v: np.ndarray) -> float:
                return w1_to_cdf(
                    v[:, 0], lambda g: normal_cdf(g, mean[0], s), mean[0] - 8 * s, mean[0] + 8 * s
                )

            out["w1"], out["w1_iid_floor"] = w1(xs), w1(floor)
        else:
            ref = mean + np.sqrt(var) * np.random.default_rng(_FLOOR_SEED + 1).standard_normal(
                (_REF_SAMPLES, self.dim)
            )
            out["w2"], out["w2_iid_floor"] = w2_between_samples(xs, ref), w2_between_samples(floor, ref)
        return out


@hookimpl
def jkoflow_register(registry: Registry) -> None:
    registry.add("problem", "fokker-planck-nonlinear", FokkerPlanckNonlinear)
    registry.add("problem", "aggregation", Aggregation)
    registry.add("problem", "potential-only", PotentialOnly)
