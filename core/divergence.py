"""Divergences ``D(alpha, beta)`` between weighted point clouds.

Used as functional terms (``D((grad u) # rho_t, rho_ref)``) and for evaluation. A divergence
is differentiable in the positions of both clouds and returns a scalar tensor.
"""

from __future__ import annotations

import abc

from torch import Tensor


class Divergence(abc.ABC):
    """``D(alpha, beta)`` with ``alpha = sum_i a_i delta_{x_i}``, ``beta = sum_j b_j delta_{y_j}``."""

    symmetric: bool = True
    """Whether ``D(alpha, beta) == D(beta, alpha)``."""

    @abc.abstractmethod
    def __call__(self, x: Tensor, y: Tensor, a: Tensor | None = None, b: Tensor | None = None) -> Tensor:
        """Scalar ``D``; ``x`` is ``(n, d)``, ``y`` is ``(m, d)``; weights default to uniform."""
