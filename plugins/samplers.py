"""Built-in initial distributions ``rho_0``."""

from __future__ import annotations

import math

import torch
from jkoflow.registry import Registry, hookimpl
from jkoflow.sampler import Sampler
from torch import Tensor


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


@hookimpl
def jkoflow_register(registry: Registry) -> None:
    registry.add("sampler", "gaussian", Gaussian)
