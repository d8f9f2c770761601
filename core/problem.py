"""Problems: a spec bundled with its exact solution and the metrics that compare against it."""

from __future__ import annotations

import abc
from typing import Any

import numpy as np
from torch import Tensor


class Problem(abc.ABC):
    """A gradient-flow problem with a known (exact) solution.

    ``spec()`` gives the sampler, dimension and functional terms (and suggested solver and
    potential settings); ``metrics`` compares particles with the exact solution at a step.
    ``t0`` is the physical time of the initial condition: step ``s`` is at ``t0 + s * tau``.
    """

    t0: float = 0.0

    @abc.abstractmethod
    def spec(self) -> dict[str, Any]:
        """Keys ``dim``, ``sampler`` and ``terms``, optionally ``solver`` and ``potential``."""

    @abc.abstractmethod
    def metrics(self, t: float, x0: Tensor, x: Tensor, log_density: Tensor | None) -> dict[str, float]:
        """Exact-solution metrics at physical time ``t`` for particles ``x`` that started at ``x0``."""

    def exact_density(self, grid: np.ndarray, t: float) -> np.ndarray | None:
        """Exact density at points ``grid`` (shape ``(m, dim)``) and time ``t``, if known."""
        return None

    def exact_F(self, t: float) -> float | None:
        """``F`` of the exact solution at time ``t``, if known."""
        return None
