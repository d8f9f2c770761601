"""Inverse JKO maps through the convex conjugate (paper Algorithm 2).

A JKO step pushes ``rho_{s-1}`` by ``T_s = grad u_s`` with ``u_s`` alpha-strongly convex. Its
inverse is the gradient of the convex conjugate: for a point ``y``

    T_s^{-1}(y) = grad u_s^*(y) = argmax_x  <y, x> - u_s(x),

a strongly concave problem in ``x``, solved here for a whole batch at once by damped Newton:

    x <- x + eta H_u(x)^{-1} (y - grad u(x)),

with a per-point backtracking (Armijo) line search on ``phi(x) = u(x) - <y, x>`` and the
residual ``|grad u(x) - y|`` as the stopping rule. Densities then follow by the change of
variables, one step at a time:

    log rho_T(y) = log rho_0(x_0) - sum_{s=1..T} log det H_{u_s}(x_{s-1}),
    x_T = y,  x_{s-1} = T_s^{-1}(x_s).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import attrs
import torch
from torch import Tensor

from .potential import PotentialNet


class InversionError(RuntimeError):
    """Newton on the convex conjugate did not reach the tolerance for some points."""

    def __init__(self, message: str, residual: Tensor) -> None:
        super().__init__(message)
        self.residual = residual


@attrs.define
class InverseResult:
    """``x = T^{-1}(y)``, the final residuals ``|grad u(x) - y|`` and the Newton iterations used."""

    x: Tensor
    residual: Tensor
    iters: int


def _phi(u: PotentialNet, x: Tensor, y: Tensor) -> Tensor:
    with torch.no_grad():
        return u(x) - (x * y).sum(-1)


def invert(
    u: PotentialNet,
    y: Tensor,
    x_init: Tensor | None = None,
    tol: float = 1e-9,
    max_iter: int = 50,
    strict: bool = True,
    accept: float = 1e3,
) -> InverseResult:
    """``T^{-1}(y) = argmin_x u(x) - <y, x>`` for a batch ``y`` of shape ``(n, d)`` (batched Newton).

    Newton runs until the residual ``|grad u(x) - y|`` is below ``tol`` (in the potential's dtype:
    use float64 for tolerances below ~1e-6) or ``max_iter``; ``x_init`` defaults to ``y`` (JKO
    maps are near the identity). With ``strict`` an :class:`InversionError` reports points whose
    residual is still above ``accept * tol`` (round-off in ``grad u`` far from the data can stall
    Newton just above ``tol``).
    """
    if y.ndim != 2 or y.shape[1] != u.dim:
        raise ValueError(f"y has shape {tuple(y.shape)}: expected (n, {u.dim})")
    x = (y if x_init is None else x_init).detach().clone()
    y = y.detach()
    residual = torch.full((y.shape[0],), float("inf"), dtype=y.dtype)
    it = 0
    for it in range(max_iter + 1):
        g = u.transport(x, create_graph=False) - y
        residual = g.norm(dim=1)
        active = residual > tol
        if not bool(active.any()) or it == max_iter:
            break
        hess = u.hessian(x[active], create_graph=False)
        step = torch.linalg.solve(hess, -g[active].unsqueeze(-1)).squeeze(-1)
        xa, ya = x[active], y[active]
        phi0 = _phi(u, xa, ya)
        slope = (g[active] * step).sum(-1)  # directional derivative of phi, < 0
        eta = torch.ones(xa.shape[0], dtype=x.dtype)
        for _ in range(30):
            trial = xa + eta[:, None] * step
            ok = _phi(u, trial, ya) <= phi0 + 1e-4 * eta * slope + 1e-12 * phi0.abs()
            if bool(ok.all()):
                break
            eta = torch.where(ok, eta, 0.5 * eta)
        x[active] = xa + eta[:, None] * step
    if strict and bool((residual > accept * tol).any()):
        bad = int((residual > accept * tol).sum())
        raise InversionError(
            f"{bad} of {y.shape[0]} points did not invert to |grad u(x) - y| <= {accept * tol:g} in {max_iter} Newton "
            f"iterations (worst residual {float(residual.max()):.3g}); use float64 or a looser tol",
            residual,
        )
    return InverseResult(x=x, residual=residual, iters=it)


def invert_flow(
    potentials: Sequence[PotentialNet],
    y: Tensor,
    tol: float = 1e-9,
    max_iter: int = 50,
    dtype: torch.dtype | None = torch.float64,
) -> tuple[list[Tensor], list[Tensor]]:
    """Invert ``T_s`` for ``s = len(potentials), ..., 1`` from ``y``: returns the points
    ``[x_0, ..., x_T = y]`` and the log-determinants ``[log det H_{u_s}(x_{s-1})]_{s=1..T}``.

    ``dtype`` (float64 by default) runs the solves on a copy of each potential in that dtype.
    """
    xs = [y.detach().to(dtype) if dtype is not None else y.detach()]
    logdets: list[Tensor] = []
    for u in reversed(list(potentials)):
        v = copy.deepcopy(u).to(dtype) if dtype is not None else u
        prev = invert(v, xs[0], tol=tol, max_iter=max_iter).x
        sign, ld = torch.linalg.slogdet(v.hessian(prev, create_graph=False))
        if bool((sign <= 0).any()):
            raise InversionError("H_u is not positive definite at some inverted points", torch.zeros(0))
        xs.insert(0, prev)
        logdets.insert(0, ld)
    return xs, logdets


__all__ = ["InverseResult", "InversionError", "invert", "invert_flow"]
