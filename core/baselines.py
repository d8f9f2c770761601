"""Baselines for JKO-ICNN on the same problems.

* :func:`particle_jko` -- direct particle optimization: each JKO step optimizes the particle
  positions themselves,

      y^{k+1} = argmin_y  Fhat(y) + 1/(2 tau) mean_i |y_i - y^k_i|^2 ,

  with ``Fhat`` the functional's particle estimate. This is possible only where ``F`` is a
  function of the particles (potential and interaction energies); internal energies need
  densities, hence a map, and are refused.
* :func:`ula` -- the unadjusted Langevin algorithm for the linear Fokker-Planck equation
  ``d_t rho = div(rho grad V) + Lap rho``: ``x_{k+1} = x_k - eta grad V(x_k) + sqrt(2 eta) xi_k``
  (the one ULA of jkoflow: :func:`jkoflow.plugins.problems_gaussian.ula`, the quadratic-``V``
  baseline of ``fokker-planck-gaussian``, calls it).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import Tensor

from .functional import Functional, StepContext


def particle_jko(
    functional: Functional,
    x0: Tensor,
    tau: float,
    steps: int,
    max_iter: int = 200,
    tol: float = 1e-10,
) -> tuple[list[Tensor], list[float]]:
    """Direct particle JKO: ``steps`` proximal steps on the particle positions (L-BFGS).

    Returns the particles after every step (step 0 included) and the seconds per step.
    Raises ``ValueError`` for functionals that need log-densities or log-determinants.
    """
    if functional.needs:
        raise ValueError(
            f"{functional!r} needs {sorted(n.value for n in functional.needs)}: direct particle optimization "
            "handles only functionals of the particle positions (potential, interaction)"
        )
    xs = [x0.detach().clone()]
    seconds: list[float] = []
    for _ in range(steps):
        start = time.perf_counter()
        xs.append(_proximal_step(functional, xs[-1], tau, max_iter, tol))
        seconds.append(time.perf_counter() - start)
    return xs, seconds


def _proximal_step(functional: Functional, x: Tensor, tau: float, max_iter: int, tol: float) -> Tensor:
    """``argmin_y Fhat(y) + mean_i |y_i - x_i|^2 / (2 tau)`` by L-BFGS from ``y = x``."""
    y = x.clone().requires_grad_(True)
    opt = torch.optim.LBFGS(
        [y],
        lr=1.0,
        max_iter=max_iter,
        tolerance_grad=tol,
        tolerance_change=tol * 1e-2,
        history_size=50,
        line_search_fn="strong_wolfe",
    )

    def closure() -> Tensor:
        opt.zero_grad()
        loss = functional.inner_objective(StepContext(x=x, y=y, tau=tau)) + ((y - x) ** 2).sum(1).mean() / (
            2 * tau
        )
        loss.backward()
        return loss

    opt.step(closure)
    return y.detach().clone()


def ula(
    V: Callable[[Tensor], Tensor] | None,
    x0: Tensor,
    step_size: float,
    n_steps: int,
    generator: torch.Generator | None = None,
    record_every: int = 1,
    *,
    grad_V: Callable[[Tensor], Tensor] | None = None,
) -> list[Tensor]:
    """Unadjusted Langevin ``x <- x - eta grad V(x) + sqrt(2 eta) xi``; returns the particles every
    ``record_every`` steps (step 0 included). ``V`` maps ``(n, d)`` to ``(n,)``; its gradient is
    taken by autograd unless ``grad_V`` (``(n, d) -> (n, d)``) gives it in closed form (then ``V``
    may be ``None``). The noise ``xi`` is drawn from ``generator`` in the dtype of ``x0``, one
    ``(n, d)`` draw per step, so a run split into consecutive calls sharing the generator gives
    the same particles as one call."""
    if not step_size > 0:
        raise ValueError(f"step_size={step_size}: expected a positive number")
    if V is None and grad_V is None:
        raise ValueError("ula: give the potential V or its gradient grad_V")
    x = x0.detach().clone()
    out = [x.clone()]
    for k in range(1, n_steps + 1):
        if grad_V is not None:
            g = grad_V(x)
        else:
            assert V is not None
            with torch.enable_grad():
                xr = x.requires_grad_(True)
                (g,) = torch.autograd.grad(V(xr).sum(), xr)
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype)
        x = (x.detach() - step_size * g + (2 * step_size) ** 0.5 * noise).detach()
        if k % record_every == 0:
            out.append(x.clone())
    return out


__all__ = ["particle_jko", "ula"]
