"""Linear Fokker-Planck in any dimension, with its exact Gaussian solution (paper App. D).

``F(rho) = int V rho + int rho log rho`` with ``V(x) = (x - mu)^T A (x - mu)``, ``A`` SPD: the
gradient flow is ``d_t rho = div(rho grad V) + Lap rho``. From ``rho_0 = N(m_0, S_0)`` the law
stays Gaussian; with ``B = 2A``:

    m_t = mu + e^{-Bt} (m_0 - mu),      S_t = e^{-Bt} S_0 e^{-Bt} + B^{-1} (I - e^{-2Bt}).

The particles move with the velocity ``-grad V - grad log rho_t = (S_t^{-1} - B)(x - m_t) - B(m_t - mu)``,
so the exact Lagrangian map is affine, ``x_t = m_t + M_t (x_0 - m_0)`` with
``dM/dt = (S_t^{-1} - B) M``, ``M_0 = I``: comparing particles with that map applied to the same
initial particles removes the sampling noise of an i.i.d. comparison.

The ideal JKO step of a Gaussian ``N(m, S)`` is itself an affine map ``x -> m' + M (x - m)``
with ``M`` SPD (the Brenier map between Gaussians): ``m' = (I + tau B)^{-1}(m + tau B mu)``
(implicit Euler) and ``M`` minimizes the convex function

    J(M) = tr(A M S M) - log det M + tr((M - I) S (M - I)) / (2 tau)

(:func:`ideal_jko_step`, Newton-CG). Its trajectory for the run's ``tau`` is the best any JKO
solver can do; the deviation from it is the estimator's and the inner solver's own error.

:func:`ula` is the unadjusted Langevin baseline ``X <- X - h B (X - mu) + sqrt(2h) xi``
(:func:`jkoflow.baselines.ula` with the closed-form gradient). The Gaussian metrics it is
scored with (Bures-Wasserstein, sample covariance, ...) live in :mod:`jkoflow.metrics`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from jkoflow import baselines
from jkoflow.metrics import (  # noqa: F401 - bures_wasserstein, sqrtm_psd: re-exported from their old home
    bures_wasserstein,
    nearest_neighbour_distances,
    relative_frobenius,
    sample_cov,
    sqrtm_psd,
)
from jkoflow.problem import Problem
from jkoflow.registry import Registry, hookimpl
from scipy.integrate import solve_ivp
from torch import Tensor


# --- Gaussian algebra --------------------------------------------------------------------
def random_rotation(dim: int, seed: int) -> np.ndarray:
    """A Haar-random orthogonal ``d x d`` matrix (QR of a Gaussian matrix with sign fix)."""
    z = np.random.default_rng(seed).standard_normal((dim, dim))
    q, r = np.linalg.qr(z)
    return q * np.sign(np.diag(r))


class GaussianFlow:
    """The exact solution for ``V(x) = (x - mu)^T A (x - mu)`` from ``N(m0, S0)``."""

    def __init__(self, A: np.ndarray, mu: np.ndarray, m0: np.ndarray, S0: np.ndarray) -> None:
        self.A, self.mu, self.m0, self.S0 = (np.asarray(v, dtype=float) for v in (A, mu, m0, S0))
        self.B = 2.0 * self.A
        self.b, self.U = np.linalg.eigh(self.B)
        if self.b.min() <= 0:
            raise ValueError(
                f"A has smallest eigenvalue {self.b.min() / 2:.3g}: expected A symmetric positive definite"
            )
        self._S0_rot = self.U.T @ self.S0 @ self.U
        self._maps: dict[float, np.ndarray] = {0.0: np.eye(len(self.b))}

    def mean(self, t: float) -> np.ndarray:
        return self.mu + self.U @ (np.exp(-self.b * t) * (self.U.T @ (self.m0 - self.mu)))

    def cov(self, t: float) -> np.ndarray:
        e = np.exp(-self.b * t)
        inner = e[:, None] * self._S0_rot * e[None, :] + np.diag(-np.expm1(-2 * self.b * t) / self.b)
        return self.U @ inner @ self.U.T

    def lagrangian_matrix(self, t: float) -> np.ndarray:
        """``M_t`` with ``dM/dt = (S_t^{-1} - B) M``, ``M_0 = I`` (scipy ``solve_ivp``, DOP853)."""
        key = round(float(t), 12)
        if key not in self._maps:
            d = len(self.b)
            start = max(k for k in self._maps if k <= key)

            def rhs(s: float, y: np.ndarray) -> np.ndarray:
                m = y.reshape(d, d)
                return (np.linalg.solve(self.cov(s), m) - self.B @ m).ravel()

            sol = solve_ivp(
                rhs, (start, key), self._maps[start].ravel(), method="DOP853", rtol=1e-10, atol=1e-12
            )
            if not sol.success:  # pragma: no cover
                raise RuntimeError(f"exact Lagrangian map: ODE solver failed at t={t}: {sol.message}")
            self._maps[key] = sol.y[:, -1].reshape(d, d)
        return self._maps[key]

    def lagrangian_map(self, x0: np.ndarray, t: float) -> np.ndarray:
        """``m_t + M_t (x_0 - m_0)`` for every row of ``x0``."""
        return self.mean(t) + (x0 - self.m0) @ self.lagrangian_matrix(t).T

    def F(self, t: float) -> float:
        """``F(N(m, S)) = (m - mu)^T A (m - mu) + tr(A S) - 1/2 log det(2 pi e S)``."""
        m, s = self.mean(t), self.cov(t)
        _, logdet = np.linalg.slogdet(2 * math.pi * math.e * s)
        return float((m - self.mu) @ self.A @ (m - self.mu) + np.trace(self.A @ s) - 0.5 * logdet)


def ideal_jko_step(
    A: np.ndarray,
    mu: np.ndarray,
    m: np.ndarray,
    S: np.ndarray,
    tau: float,
    tol: float = 1e-12,
    max_newton: int = 50,
) -> tuple[np.ndarray, np.ndarray]:
    """The exact JKO step ``argmin_rho F(rho) + W_2^2(rho, N(m, S)) / (2 tau)`` as the affine
    map ``x -> m' + M (x - m)``; returns ``(m', M)``.

    ``m' = (I + 2 tau A)^{-1} (m + 2 tau A mu)``; ``M`` (SPD) minimizes the strictly convex
    ``J(M) = tr(A M S M) - log det M + tr((M - I) S (M - I)) / (2 tau)`` by Newton's method with
    matrix-free conjugate gradients on the Hessian ``dM -> G dM S + S dM G + M^{-1} dM M^{-1}``
    (``G = A + I/(2 tau)``) and backtracking that keeps ``M`` positive definite.
    """
    d = len(m)
    eye = np.eye(d)
    m_next = np.linalg.solve(eye + 2 * tau * A, m + 2 * tau * A @ mu)
    G = A + eye / (2 * tau)

    def objective(M: np.ndarray) -> float:
        sign, logdet = np.linalg.slogdet(M)
        if sign <= 0 or not np.all(np.linalg.eigvalsh((M + M.T) / 2) > 0):
            return math.inf
        D = M - eye
        return float(np.trace(A @ M @ S @ M) - logdet + np.trace(D @ S @ D) / (2 * tau))

    M = eye.copy()
    for _ in range(max_newton):
        Minv = np.linalg.inv(M)
        grad = G @ M @ S + S @ M @ G - S / tau - Minv
        grad = (grad + grad.T) / 2
        if float(np.linalg.norm(grad)) <= tol * max(1.0, float(np.linalg.norm(S / tau))):
            break

        def hess(dm: np.ndarray, Minv: np.ndarray = Minv) -> np.ndarray:
            out = G @ dm @ S + S @ dm @ G + Minv @ dm @ Minv
            return (out + out.T) / 2

        # CG on H dM = -grad over symmetric matrices
        dm = np.zeros_like(M)
        r = -grad
        p = r.copy()
        rs = float(np.sum(r * r))
        for _ in range(10 * d):
            hp = hess(p)
            alpha = rs / float(np.sum(p * hp))
            dm += alpha * p
            r -= alpha * hp
            rs_new = float(np.sum(r * r))
            if math.sqrt(rs_new) <= 1e-3 * min(1.0, float(np.linalg.norm(grad))) * float(
                np.linalg.norm(grad)
            ):
                break
            p = r + (rs_new / rs) * p
            rs = rs_new
        step, f0 = 1.0, objective(M)
        slope = float(np.sum(grad * dm))
        while objective(M + step * dm) > f0 + 1e-4 * step * slope and step > 1e-10:
            step /= 2
        M = M + step * dm
        M = (M + M.T) / 2
    return m_next, M


def ideal_jko_trajectory(
    A: np.ndarray, mu: np.ndarray, m0: np.ndarray, S0: np.ndarray, tau: float, steps: int
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``[(m_k, S_k, P_k)]`` for ``k = 0..steps``: the ideal JKO iterates and their cumulative
    Lagrangian matrices ``P_k = M_k ... M_1`` (``x_k = m_k + P_k (x_0 - m_0)``)."""
    out = [(np.asarray(m0, float), np.asarray(S0, float), np.eye(len(m0)))]
    for _ in range(steps):
        m, S, P = out[-1]
        m_next, M = ideal_jko_step(A, mu, m, S, tau)
        out.append((m_next, M @ S @ M, M @ P))
    return out


def ula(
    x0: Tensor,
    A: np.ndarray | Tensor,
    mu: np.ndarray | Tensor,
    h: float,
    times: list[float],
    generator: torch.Generator,
) -> list[Tensor]:
    """Unadjusted Langevin particles ``X <- X - h B (X - mu) + sqrt(2h) xi`` (``B = 2A``) from
    ``x0``, returned at each of ``times`` (rounded to multiples of ``h``): :func:`jkoflow.baselines.ula`
    in float64 with the closed-form gradient ``grad V(x) = B (x - mu)``."""
    B = 2 * torch.as_tensor(A, dtype=torch.float64)
    mu_t = torch.as_tensor(mu, dtype=torch.float64)
    x = x0.detach().to(torch.float64).clone()
    out, steps_done = [], 0
    for t in times:
        target = round(t / h)
        if target > steps_done:
            steps = target - steps_done
            x = baselines.ula(
                None, x, h, steps, generator, record_every=steps, grad_V=lambda z: (z - mu_t) @ B
            )[-1]
        steps_done = max(steps_done, target)
        out.append(x.to(x0.dtype).clone())
    return out


# --- the problem -------------------------------------------------------------------------
def inner_iterations(dim: int) -> int:
    """The problem's suggested inner iterations per JKO step in dimension ``dim`` (fresh samples,
    cosine lr 1e-2): the fewest that kept the noise-free covariance error at or below 0.05 over
    10 steps with a margin (docs/benchmarks.md, "Fokker-Planck (Gaussian) in high dimension").
    Worst step, seeds 0-2: d = 20, 50 iterations 0.035-0.036 (200: 0.031-0.033); d = 64, 150
    iterations 0.037 (seed 0; 50: 0.054); d = 128, 150 iterations 0.039-0.040 (100: 0.044-0.049);
    d = 256, 200 iterations 0.044 (seed 0; with the (4, 4) net)."""
    if dim <= 32:
        return 50
    return 150 if dim <= 128 else 200


class FokkerPlanckGaussian(Problem):
    """``F = int V rho + int rho log rho``, ``V = (x - mu)^T A (x - mu)``,
    ``A = Q diag(linspace(spectrum_min, spectrum_max, dim)) Q^T`` (``Q`` a random rotation from
    ``rotation_seed``), ``rho_0 = N(mean0, std0^2 I)``.

    ``V`` is the registered ``quadratic`` potential with matrix ``2A`` (it is
    ``1/2 (x - c)^T M (x - c)``). ``tau`` is the JKO step of the ideal-JKO reference (and the
    suggested solver step): the ``jko_*`` metrics assume the run uses the same ``tau``.

    Suggested network: FICNN (4, 4) from ``dim = 16``, (64, 64) below (since 2026-12-04; before,
    (64, 64) up to ``dim = 32`` and (8, 8) above). The exact JKO steps are affine maps, which the learned
    quadratic carries; the ridges only add curvature. With few particles per dimension (N/d = 8
    at d = 64, 4 at d = 128 for N = 500) a wide network lowers the particle objective by curving
    ``u`` at the particles themselves (the entropy is estimated by ``log det H_u`` there) and
    drifts from the ideal JKO step: 3.6% after one step and 24% after six at d = 128 with widths
    64, against 0.4% after one step with widths 8 (docs/benchmarks.md). (4, 4) keeps the worst
    covariance error over 10 steps of the wider nets (d = 20, seeds 0-2: 0.035-0.036 against
    0.034-0.035 with (64, 64); d = 64: 0.037, d = 128: 0.039-0.040, as (8, 8)), and with
    ``r = 8`` hidden units the exact log-det takes its low-rank route from d = 16: a JKO step at
    d = 20 costs 0.35-0.39 CPU s against 1.77-1.91 s with (64, 64).

    Suggested solver: ``fresh_samples = n`` with a cosine inner learning rate, so every inner
    iteration sees ``n`` new draws of ``rho_t`` and each step fits the ideal JKO step of the
    population, not of the ``n`` carried particles (whose empirical ideal JKO drifts from the
    exact Lagrangian map by ``~ sqrt(d / n)``: 0.143 after 10 steps at d = 20, N = 500, against
    0.033 at worst with fresh samples; docs/benchmarks.md). Set ``solver.fresh_samples`` to
    ``None`` (in a dict spec) to fit the carried particles as the paper's code does.

    Suggested inner iterations (:func:`inner_iterations`): 50 up to ``dim = 32``, 150 up to
    ``dim = 128``, 200 above (50 are not enough above d = 32: covariance error 0.054 at d = 64 and
    0.094 at d = 128 after 10 steps; 100 at d = 128 reach 0.049); measured in docs/benchmarks.md
    ("Speed of a JKO step").
    """

    vanishing_at_start = frozenset({"map_error", "map_cov_rel_error"})

    def __init__(
        self,
        dim: int = 20,
        n: int = 500,
        mu: float = 0.5,
        spectrum_min: float = 0.5,
        spectrum_max: float = 2.0,
        rotation_seed: int = 0,
        mean0: float = 0.0,
        std0: float = 1.0,
        tau: float = 0.05,
        steps: int = 10,
    ) -> None:
        if not 0 < spectrum_min <= spectrum_max:
            raise ValueError(
                f"spectrum ({spectrum_min}, {spectrum_max}): expected 0 < spectrum_min <= spectrum_max"
            )
        if not std0 > 0 or not tau > 0:
            raise ValueError(f"std0={std0}, tau={tau}: expected positive numbers")
        self.dim, self.n, self.tau, self.steps = int(dim), int(n), float(tau), int(steps)
        if self.dim < 1:
            raise ValueError(f"dim={dim}: expected a positive integer")
        from jkoflow.budget import physical_memory

        memory = physical_memory()
        if memory is not None and 4 * 8 * self.dim**2 > memory:  # A, its rotation and the ideal-JKO matrices
            raise ValueError(
                f"dim={dim}: the exact solution needs 4 x dim^2 x 8 B = {4 * 8 * self.dim**2 / 2**30:.3g} GiB "
                f"(dense d x d matrices); this machine has {memory / 2**30:.3g} GiB"
            )
        self.mu_value, self.mean0, self.std0 = float(mu), float(mean0), float(std0)
        q = random_rotation(self.dim, rotation_seed)
        self.A = (q * np.linspace(spectrum_min, spectrum_max, self.dim)) @ q.T
        self.A = (self.A + self.A.T) / 2
        self.mu = np.full(self.dim, self.mu_value)
        self.exact = GaussianFlow(
            self.A, self.mu, np.full(self.dim, self.mean0), self.std0**2 * np.eye(self.dim)
        )
        self._ideal: list[tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None
        self._empirical: dict[bytes, list[np.ndarray]] = {}

    def spec(self) -> dict[str, Any]:
        V = {"kind": "quadratic", "center": self.mu.tolist(), "matrix": (2 * self.A).tolist()}
        return {
            "dim": self.dim,
            "sampler": {"kind": "gaussian", "n": self.n, "mean": self.mean0, "std": self.std0},
            "terms": [{"kind": "potential", "weight": 1.0, "V": V}, {"kind": "entropy", "weight": 1.0}],
            "solver": {
                "tau": self.tau,
                "steps": self.steps,
                "inner_iters": inner_iterations(self.dim),  # measured there and in docs/benchmarks.md
                "lr": 1e-2,
                "logdet": "auto",
                "fresh_samples": self.n,
                "lr_schedule": "cosine",
            },
            "potential": {"kind": "ficnn", "widths": [4, 4] if self.dim >= 16 else [64, 64]},
        }

    def ideal(self, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(m_k, S_k, P_k)`` of the ideal JKO trajectory at ``step`` (computed once, cached)."""
        if self._ideal is None or len(self._ideal) <= step:
            self._ideal = ideal_jko_trajectory(
                self.A, self.mu, self.exact.m0, self.exact.S0, self.tau, max(step, self.steps)
            )
        return self._ideal[step]

    def empirical_ideal(self, x0: np.ndarray, step: int) -> np.ndarray:
        """The particles of the ideal JKO trajectory *of the empirical measure* of ``x0``: each
        step is :func:`ideal_jko_step` at the particles' own mean and sample covariance, the
        exact minimizer over affine maps of the objective that JKO-ICNN minimizes on the
        particles (``mean_i V(T x_i) + mean_i |T x_i - x_i|^2/(2 tau) - mean_i log det DT``).
        Its distance to the exact flow is the sampling error of a particle JKO with these
        ``n`` particles; the run's distance to it is the estimator's and inner solver's error."""
        key = np.ascontiguousarray(x0).tobytes()
        path = self._empirical.setdefault(key, [np.array(x0, dtype=float)])
        while len(path) <= step:
            x = path[-1]
            m, S = x.mean(axis=0), sample_cov(x)
            m_next, M = ideal_jko_step(self.A, self.mu, m, S, self.tau)
            path.append(m_next + (x - m) @ M.T)
        return path[step]

    def metrics(self, t: float, x0: Tensor, x: Tensor, log_density: Tensor | None) -> dict[str, float]:
        """Per step: ``cov_rel_error`` (``|C(x) - S_t|_F / |S_t|_F``), ``mean_error``
        (``|mean(x) - m_t|``), ``bures_wasserstein`` (exact Gaussian vs the Gaussian fitted to
        the particles); noise-free against the exact map ``y = m_t + M_t (x_0 - m_0)``:
        ``map_cov_rel_error`` (``|C(x) - C(y)|_F / |C(y)|_F``), ``map_error`` (mean ``|x_i - y_i|``),
        ``nn_ratio`` (mean nearest-neighbour distance of ``x`` over that of ``y``: < 1 is
        collapse); against the ideal JKO map for ``tau`` (when ``t`` is a multiple of it):
        ``jko_cov_rel_error``, ``jko_map_error``, and ``ideal_jko_cov_rel_error`` (ideal JKO vs
        exact, the time-discretization error alone); against the ideal JKO of the empirical
        measure (:meth:`empirical_ideal`): ``emp_jko_cov_rel_error``, ``emp_jko_map_error`` (the
        solver's own error) and ``emp_jko_vs_exact_cov_rel_error`` (the sampling floor)."""
        xs, x0s = x.detach().cpu().double().numpy(), x0.detach().cpu().double().numpy()
        m_t, s_t = self.exact.mean(t), self.exact.cov(t)
        mean_x, cov_x = xs.mean(axis=0), sample_cov(xs)
        y = self.exact.lagrangian_map(x0s, t)
        cov_y = sample_cov(y)
        out = {
            "cov_rel_error": relative_frobenius(cov_x, s_t),
            "mean_error": float(np.linalg.norm(mean_x - m_t)),
            "bures_wasserstein": bures_wasserstein(m_t, s_t, mean_x, cov_x),
            "map_cov_rel_error": relative_frobenius(cov_x, cov_y),
            "map_error": float(np.linalg.norm(xs - y, axis=1).mean()),
            "nn_ratio": float(nearest_neighbour_distances(xs).mean() / nearest_neighbour_distances(y).mean()),
            "F_exact": self.exact.F(t),
        }
        k = t / self.tau
        if abs(k - round(k)) < 1e-6:
            m_k, s_k, p_k = self.ideal(round(k))
            z = m_k + (x0s - self.exact.m0) @ p_k.T
            cov_z = sample_cov(z)
            out["jko_cov_rel_error"] = relative_frobenius(cov_x, cov_z)
            out["jko_map_error"] = float(np.linalg.norm(xs - z, axis=1).mean())
            out["ideal_jko_cov_rel_error"] = relative_frobenius(cov_z, cov_y)
            out["ideal_jko_bures_wasserstein"] = bures_wasserstein(m_t, s_t, m_k, s_k)
            e = self.empirical_ideal(x0s, round(k))
            out["emp_jko_cov_rel_error"] = relative_frobenius(cov_x, sample_cov(e))
            out["emp_jko_map_error"] = float(np.linalg.norm(xs - e, axis=1).mean())
            out["emp_jko_vs_exact_cov_rel_error"] = relative_frobenius(sample_cov(e), cov_y)
        return out

    def exact_density(self, grid: np.ndarray, t: float) -> np.ndarray:
        m, s = self.exact.mean(t), self.exact.cov(t)
        z = np.asarray(grid, float) - m
        _, logdet = np.linalg.slogdet(2 * math.pi * s)
        return np.exp(-0.5 * np.sum(z * np.linalg.solve(s, z.T).T, axis=-1) - 0.5 * logdet)

    def exact_F(self, t: float) -> float:
        return self.exact.F(t)

    def exact_sample(self, n: int, t: float, rng: np.random.Generator) -> np.ndarray | None:
        if not math.isfinite(t):
            return None
        return rng.multivariate_normal(self.exact.mean(t), self.exact.cov(t), size=n)


@hookimpl
def jkoflow_register(registry: Registry) -> None:
    registry.add("problem", "fokker-planck-gaussian", FokkerPlanckGaussian)
