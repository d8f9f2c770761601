"""Distances between particle clouds and known distributions used by problems and reports
(1-D W1 through CDFs and quantiles, W2 by exact OT in any dimension, density L1 on a grid)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def w1_to_cdf(
    samples: np.ndarray, cdf: Callable[[np.ndarray], np.ndarray], lo: float, hi: float, grid: int = 20001
) -> float:
    """1-D Wasserstein-1 distance ``int |F_n(x) - F(x)| dx`` between the empirical measure of
    ``samples`` and a law with CDF ``cdf`` whose mass lies in ``[lo, hi]`` (the grid is widened
    to cover every sample; trapezoid rule on ``grid`` points)."""
    s = np.sort(np.asarray(samples, dtype=float).ravel())
    lo, hi = min(lo, s[0]), max(hi, s[-1])
    xs = np.linspace(lo, hi, grid)
    emp = np.searchsorted(s, xs, side="right") / s.size
    return float(np.trapezoid(np.abs(emp - cdf(xs)), xs))


def w1_between_samples(a: np.ndarray, b: np.ndarray) -> float:
    """1-D Wasserstein-1 distance between two equally weighted samples (via quantiles)."""
    a = np.sort(np.asarray(a, dtype=float).ravel())
    b = np.sort(np.asarray(b, dtype=float).ravel())
    if a.size == b.size:
        return float(np.abs(a - b).mean())
    qs = (np.arange(max(a.size, b.size) * 4) + 0.5) / (max(a.size, b.size) * 4)
    return float(np.abs(np.quantile(a, qs) - np.quantile(b, qs)).mean())


def mean_displacement(x: np.ndarray, y: np.ndarray) -> float:
    """``mean_i |x_i - y_i|``: the noise-free error of particles ``x`` against the exact flow
    ``y`` applied to the same initial particles."""
    return float(np.linalg.norm(np.asarray(x) - np.asarray(y), axis=-1).mean())


def normal_cdf(x: np.ndarray, mean: float, std: float) -> np.ndarray:
    """CDF of ``N(mean, std^2)``."""
    from math import erf, sqrt

    return 0.5 * (1.0 + np.vectorize(erf)((np.asarray(x) - mean) / (std * sqrt(2.0))))


def w2_between_samples(a: np.ndarray, b: np.ndarray) -> float:
    """Wasserstein-2 distance between two uniformly weighted point clouds ``(n, d)`` and ``(m, d)``
    by exact optimal transport (POT's network simplex, ``ot.emd2`` on squared distances)."""
    import ot

    a = np.asarray(a, dtype=float).reshape(len(a), -1)
    b = np.asarray(b, dtype=float).reshape(len(b), -1)
    cost = ot.dist(a, b, metric="sqeuclidean")
    wa, wb = np.full(len(a), 1.0 / len(a)), np.full(len(b), 1.0 / len(b))
    return float(np.sqrt(max(ot.emd2(wa, wb, cost, numItermax=10**7), 0.0)))


def density_l1(p: np.ndarray, q: np.ndarray, cell: float | np.ndarray) -> tuple[float, float]:
    """``int |p - q|`` on a grid (Riemann sum with cell volume ``cell``) and its relative value
    ``int |p - q| / int q``: the density error of a flow ``p`` against an exact ``q``."""
    p, q = np.asarray(p, dtype=float), np.asarray(q, dtype=float)
    diff = float(np.sum(np.abs(p - q) * cell))
    return diff, diff / float(np.sum(q * cell))
