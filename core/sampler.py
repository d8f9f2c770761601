"""Initial distributions ``rho_0``: particles and, where known, their log-densities."""

from __future__ import annotations

import abc

import torch
from torch import Tensor


class Sampler(abc.ABC):
    """Draws ``n`` particles ``x_i ~ rho_0`` in ``R^dim``.

    :meth:`sample` returns ``(x, log rho_0(x))``; the log-density is ``None`` when it is not
    known in closed form (internal energies then need an estimate supplied another way).
    """

    dim: int

    @abc.abstractmethod
    def sample(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor | None]:
        """Shapes ``(n, dim)`` and ``(n,)``."""
