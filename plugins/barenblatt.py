"""Barenblatt-Pattle profiles: exact solutions of the porous medium equation ``d_t rho = Lap rho^m``.

    rho(x, t) = t^(-a) (C - k |x|^2 t^(-2b))_+^(1/(m-1)),
    a = d / (d (m - 1) + 2),   b = a / d,   k = a (m - 1) / (2 m d).

The mass ``M = int rho`` does not depend on ``t``. The profile is self-similar, so the exact
Lagrangian flow map is ``x -> x (t / t0)^b``. With ``s = |x|^2 t^(-2b) k / C`` the radial law of
a sample is ``s ~ Beta(d/2, 1/(m-1) + 1)``, which gives exact sampling.
For the probability ``p = rho / M`` the equation reads ``d_t p = M^(m-1) Lap p^m``: the gradient
flow of ``M^(m-1) int p^m / (m - 1)``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor


class Barenblatt:
    """The Barenblatt profile for dimension ``d``, exponent ``m`` and constant ``C``."""

    def __init__(self, d: int = 1, m: float = 2.0, C: float = (3.0 / 16.0) ** (1.0 / 3.0)) -> None:
        if not m > 1:
            raise ValueError(f"m={m}: expected m > 1")
        if not C > 0:
            raise ValueError(f"C={C}: expected C > 0")
        self.d, self.m, self.C = int(d), float(m), float(C)
        self.a = d / (d * (m - 1) + 2)
        self.b = self.a / d
        self.k = self.a * (m - 1) / (2 * m * d)
        self.p = 1.0 / (m - 1)

    def _radial_integral(self, power: float) -> float:
        """``int_{R^d} (C - k|y|^2)_+^power dy`` in closed form (Beta function)."""
        d, C, k = self.d, self.C, self.k
        sphere = 2 * math.pi ** (d / 2) / math.gamma(d / 2)
        log_beta = math.lgamma(d / 2) + math.lgamma(power + 1) - math.lgamma(d / 2 + power + 1)
        return sphere * 0.5 * C**power * (C / k) ** (d / 2) * math.exp(log_beta)

    @property
    def mass(self) -> float:
        """``M = int rho(x, t) dx`` (constant in time)."""
        return self._radial_integral(self.p)

    def radius(self, t: float) -> float:
        """Radius of the support at time ``t``: ``sqrt(C/k) t^b``."""
        return math.sqrt(self.C / self.k) * t**self.b

    def density(self, x: np.ndarray, t: float, normalized: bool = True) -> np.ndarray:
        """``rho(x, t)`` (divided by the mass when ``normalized``); ``x`` of shape ``(..., d)``."""
        r2 = np.sum(np.asarray(x, dtype=float) ** 2, axis=-1)
        base = np.clip(self.C - self.k * r2 * t ** (-2 * self.b), 0.0, None)
        rho = t ** (-self.a) * base**self.p
        return rho / self.mass if normalized else rho

    def cdf_1d(self, x: np.ndarray, t: float) -> np.ndarray:
        """CDF of the normalized profile in ``d = 1``, exact: with ``s = k x^2 t^(-2b) / C``,
        ``|x|`` has ``s ~ Beta(1/2, 1/(m-1) + 1)``, so ``F(x) = 1/2 + sign(x) I_s(1/2, p + 1) / 2``."""
        from scipy.special import betainc

        if self.d != 1:
            raise ValueError(f"cdf_1d needs d = 1, this profile has d = {self.d}")
        x = np.asarray(x, dtype=float)
        s = np.clip(self.k * x**2 * t ** (-2 * self.b) / self.C, 0.0, 1.0)
        return 0.5 + 0.5 * np.sign(x) * betainc(0.5, self.p + 1, s)

    def quantile_1d(self, u: np.ndarray, t: float) -> np.ndarray:
        """Quantile function ``F_t^{-1}(u)`` of the normalized profile in ``d = 1`` (exact)."""
        from scipy.special import betaincinv

        if self.d != 1:
            raise ValueError(f"quantile_1d needs d = 1, this profile has d = {self.d}")
        u = np.asarray(u, dtype=float)
        s = betaincinv(0.5, self.p + 1, np.abs(2 * u - 1))
        return np.sign(u - 0.5) * np.sqrt(s * self.C / self.k) * t**self.b

    def integral_rho_m(self, t: float, normalized: bool = True) -> float:
        """``int p^m dx`` for ``p = rho / M`` (or ``int rho^m`` when not ``normalized``)."""
        value = t ** (-self.a * (self.m - 1)) * self._radial_integral(self.p * self.m)
        return value / self.mass**self.m if normalized else value

    def sample(self, n: int, t: float, generator: torch.Generator, stratified: bool = False) -> Tensor:
        """``n`` exact samples of the normalized profile at time ``t``, shape ``(n, d)`` (float64).

        With ``stratified`` the radial variable is drawn by stratified sampling: one uniform in
        each of ``n`` equal-probability strata of its CDF, ``u_i = (i + U_i) / n`` (directions stay
        i.i.d.). Each point is still exactly distributed, and Monte Carlo averages over the cloud
        (such as the internal-energy estimate of a JKO step) have an error of order ``1/n``
        instead of ``1/sqrt(n)`` for smooth integrands in ``d = 1``.
        """
        from scipy.special import betaincinv

        rng = np.random.default_rng(int(torch.randint(2**62, (1,), generator=generator)))
        if stratified:
            u = (np.arange(n) + rng.uniform(size=n)) / n
            if self.d == 1:  # the signed quantile: strata of the full CDF
                return torch.from_numpy(self.quantile_1d(u, t))[:, None]
            s = torch.from_numpy(betaincinv(self.d / 2, self.p + 1, u))
        else:
            s = torch.from_numpy(rng.beta(self.d / 2, self.p + 1, size=n))
        r = torch.sqrt(s * self.C / self.k) * t**self.b
        direction = torch.randn(n, self.d, generator=generator, dtype=torch.float64)
        direction = direction / direction.norm(dim=1, keepdim=True)
        return r[:, None] * direction

    def flow_map(self, x0: np.ndarray, t0: float, t: float) -> np.ndarray:
        """The exact Lagrangian map ``x -> x (t / t0)^b``."""
        return np.asarray(x0) * (t / t0) ** self.b
