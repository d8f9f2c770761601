"""Double-well potential energy ``F(rho) = int V d rho`` with

    V(x) = h (|x|^2 - a^2)^2 / a^4,

two wells (a sphere of wells in ``d > 1``) at ``|x| = a`` of depth ``h`` below the barrier at
``x = 0``. ``V`` is *not* convex (``H_V(0) = -4 h / a^2 I``): with the entropy, the flow is the
Fokker-Planck equation whose stationary law ``rho_inf ~ exp(-V / temperature)`` is bimodal.

The inner objective of a JKO step is ``mean_i V(grad u(x_i))`` (no densities needed).
"""

from __future__ import annotations

import torch
from jkoflow.functional import Functional, StepContext
from torch import Tensor


class DoubleWell:
    """``V(x) = height (|x|^2 - a^2)^2 / a^4`` as a ``potential_fn``: ``(n, d) -> (n,)``."""

    def __init__(self, a: float = 1.0, height: float = 1.0) -> None:
        if not a > 0:
            raise ValueError(f"a={a}: expected a positive well radius")
        if not height > 0:
            raise ValueError(f"height={height}: expected a positive barrier height")
        self.a, self.height = float(a), float(height)

    def __call__(self, x: Tensor) -> Tensor:
        r2 = x.pow(2).sum(-1)
        return self.height * (r2 - self.a**2).pow(2) / self.a**4


class DoubleWellEnergy(Functional):
    """``F(rho) = int V d rho`` with the double-well ``V``; needs nothing but the particles."""

    def __init__(self, a: float = 1.0, height: float = 1.0) -> None:
        self.V = DoubleWell(a, height)

    def inner_objective(self, ctx: StepContext) -> Tensor:
        return self.V(ctx.y).mean()

    def value(self, x: Tensor, log_density: Tensor | None = None) -> float | None:
        with torch.no_grad():
            return float(self.V(x).mean())

    def __repr__(self) -> str:
        return f"DoubleWellEnergy(a={self.V.a:g}, height={self.V.height:g})"


def double_well(a: float = 1.0, height: float = 1.0) -> DoubleWellEnergy:
    """The ``double_well`` functional: ``int V d rho``, ``V(x) = height (|x|^2 - a^2)^2 / a^4``."""
    return DoubleWellEnergy(a, height)
