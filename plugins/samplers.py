"""Built-in initial distributions ``rho_0``: every registered sampler lives here.

==========================  ===============================================================
sampler                     law
==========================  ===============================================================
``gaussian``                ``N(mean, std^2 I)``, i.i.d. draws (:class:`Gaussian`)
``gaussian-stratified``     ``N(mean, std^2 I)``, one draw per equal-probability stratum
                            (:class:`StratifiedGaussian`)
``barenblatt``              the normalized Barenblatt profile at ``t0`` (:class:`BarenblattSampler`)
==========================  ===============================================================

Every sampler returns the points and their exact log-densities. (``BarenblattSampler`` was
defined in :mod:`jkoflow.plugins.problems` and ``StratifiedGaussian`` in
:mod:`jkoflow.plugins.problems_pde`; both names are still importable from there.)
"""

from __future__ import annotations

import math

import numpy as np
import torch
from jkoflow.registry import Registry, hookimpl
from jkoflow.sampler import Sampler
from torch import Tensor

from .barenblatt import Barenblatt


def gaussian_log_density(x: Tensor, mean: float, std: float) -> Tensor:
    """``log N(mean, std^2 I)`` at the rows of ``x`` (shape ``(n, d)``)."""
    d = x.shape[-1]
    z = (x - mean) / std
    return -0.5 * z.pow(2).sum(-1) - d * (math.log(std) + 0.5 * math.log(2 * math.pi))


class Gaussian(Sampler):
    """``rho_0 = N(mean, std^2 I)`` in ``R^dim`` (``mean`` a scalar or a list of ``dim``)."""

    def __init__(self, dim: int, mean: float | list[float] = 0.0, std: float = 1.0) -> None:
        if not std > 0:
            raise ValueError(f"std={std}: expected a positive number")
        self.dim = dim
        mean_t = torch.as_tensor(mean, dtype=torch.float64)
        if mean_t.ndim > 1 or (mean_t.ndim == 1 and mean_t.numel() not in (1, dim)):
            raise ValueError(f"mean={mean!r}: expected a number or a list of {dim} (dim) numbers")
        if not bool(torch.isfinite(mean_t).all()):
            raise ValueError(f"mean={mean!r}: expected finite numbers")
        self.mean = mean_t.expand(dim).clone()
        self.std = float(std)

    def sample(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        x = self.mean + self.std * z
        log_rho = -0.5 * z.pow(2).sum(-1) - self.dim * (math.log(self.std) + 0.5 * math.log(2 * math.pi))
        dtype = torch.get_default_dtype()
        return x.to(dtype), log_rho.to(dtype)


class StratifiedGaussian(Sampler):
    """``N(mean, std^2 I)`` by stratified sampling: one point in each of ``n`` equal-probability
    strata, ``u_i = (i + U_i)/n``, of the CDF (``d = 1``) or of the radial chi law (``d >= 2``,
    i.i.d. uniform directions). Every point is exactly ``N(mean, std^2 I)``-distributed, and
    averages over the cloud (a JKO step's energy estimate) have a far smaller error than with
    i.i.d. points; the log-densities are exact.
    """

    def __init__(self, dim: int, mean: float = 0.0, std: float = 1.0) -> None:
        if not std > 0:
            raise ValueError(f"std={std}: expected a positive number")
        self.dim, self.mean, self.std = int(dim), float(mean), float(std)

    def sample(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        from scipy.stats import chi, norm

        rng = np.random.default_rng(int(torch.randint(2**62, (1,), generator=generator)))
        u = (np.arange(n) + rng.uniform(size=n)) / n
        if self.dim == 1:
            z = norm.ppf(u)[:, None]
        else:
            direction = rng.standard_normal((n, self.dim))
            z = chi.ppf(u, self.dim)[:, None] * direction / np.linalg.norm(direction, axis=1, keepdims=True)
        x = torch.from_numpy(self.mean + self.std * z)
        log_rho = gaussian_log_density(x, self.mean, self.std)
        dtype = torch.get_default_dtype()
        return x.to(dtype), log_rho.to(dtype)


class BarenblattSampler(Sampler):
    """Exact samples of the normalized Barenblatt profile at time ``t0`` and their log-densities
    (``stratified``: one sample per equal-probability stratum of the radial CDF, see
    :meth:`Barenblatt.sample`)."""

    vanishing_at_start = frozenset({"map_error"})

    def __init__(
        self,
        dim: int = 1,
        m: float = 2.0,
        C: float = (3 / 16) ** (1 / 3),
        t0: float = 1e-3,
        stratified: bool = False,
    ) -> None:
        self.dim = dim
        self.profile = Barenblatt(dim, m, C)
        self.t0 = float(t0)
        self.stratified = bool(stratified)

    def sample(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        x = self.profile.sample(n, self.t0, generator, stratified=self.stratified)
        log_rho = torch.from_numpy(np.log(self.profile.density(x.numpy(), self.t0)))
        dtype = torch.get_default_dtype()
        return x.to(dtype), log_rho.to(dtype)


@hookimpl
def jkoflow_register(registry: Registry) -> None:
    registry.add("sampler", "gaussian", Gaussian)
    registry.add("sampler", "gaussian-stratified", StratifiedGaussian)
    registry.add("sampler", "barenblatt", BarenblattSampler)


__all__ = ["BarenblattSampler", "Gaussian", "StratifiedGaussian", "gaussian_log_density"]
