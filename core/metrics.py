"""Distances between particle clouds and known distributions used by problems and reports:
1-D W1 through CDFs and quantiles, W2 by exact OT in any dimension, density L1 on a grid, and
the Gaussian/covariance metrics (Bures-Wasserstein, sample covariance, relative Frobenius error,
nearest-neighbour distances). Every metric function lives here (``jkoflow.metrics``)."""

from __future__ import annotations

import math
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


# --- Gaussian and covariance metrics -------------------------------------------------------
def sqrtm_psd(s: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix."""
    w, u = np.linalg.eigh((s + s.T) / 2)
    return (u * np.sqrt(np.clip(w, 0.0, None))) @ u.T


def bures_wasserstein(m1: np.ndarray, s1: np.ndarray, m2: np.ndarray, s2: np.ndarray) -> float:
    """``W_2(N(m1, S1), N(m2, S2))``: ``|m1 - m2|^2 + tr S1 + tr S2 - 2 tr (S1^{1/2} S2 S1^{1/2})^{1/2}``."""
    r = sqrtm_psd(s1)
    cross = np.trace(sqrtm_psd(r @ s2 @ r))
    return float(math.sqrt(max(float(np.sum((m1 - m2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * cross), 0.0)))


def sample_cov(x: np.ndarray) -> np.ndarray:
    """Unbiased sample covariance of the rows of ``x``."""
    return np.cov(x, rowvar=False, ddof=1).reshape(x.shape[1], x.shape[1])


def relative_frobenius(a: np.ndarray, b: np.ndarray) -> float:
    """``|a - b|_F / |b|_F``."""
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def nearest_neighbour_distances(x: np.ndarray) -> np.ndarray:
    """Distance of every row of ``x`` to its nearest other row."""
    from scipy.spatial import cKDTree

    dist, _ = cKDTree(x).query(x, k=2)
    return dist[:, 1]


__all__ = [
    "bures_wasserstein",
    "density_l1",
    "mean_displacement",
    "nearest_neighbour_distances",
    "normal_cdf",
    "relative_frobenius",
    "sample_cov",
    "sqrtm_psd",
    "w1_between_samples",
    "w1_to_cdf",
    "w2_between_samples",
]
