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
    ``t0`` is the physical time of the initial condition: step ``s`` is at ``t0 + s * tau``;
    ``t = inf`` stands for the steady state ``rho_inf`` where a problem knows only that.

    The exact-solution methods (:meth:`exact_density`, :meth:`exact_sample`,
    :meth:`exact_F`) are optional; where given, ``pytest --jkoflow-conformance`` checks them
    against each other (:func:`jkoflow.testing.problem_checks.assert_valid_problem`).
    """

    t0: float = 0.0

    vanishing_at_start: frozenset[str] = frozenset()
    """Names of metrics that are 0 at step 0 (``x = x0``), e.g. the error against the exact
    Lagrangian map; the conformance suite checks them."""

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

    def exact_sample(self, n: int, t: float, rng: np.random.Generator) -> np.ndarray | None:
        """``n`` i.i.d. points ``(n, dim)`` of the exact solution ``rho_t``, if known."""
        return None
