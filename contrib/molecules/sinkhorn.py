"""A warm-started debiased Sinkhorn divergence to a fixed reference cloud.

The divergence term ``lambda_2 S_eps((grad u) # rho_t, rho_0)`` of the molecular flow is
evaluated at every inner iteration on clouds that move very little between calls, against a
reference ``rho_0`` that never moves. Two savings follow, without changing the quantity:

1. ``S_eps(a, b) = OT_eps(a, b) - OT_eps(a, a)/2 - OT_eps(b, b)/2``: the reference's self term
   ``OT_eps(b, b)`` is a constant; it is computed once (full epsilon-scaling) and cached.
2. The dual potentials of the previous call are an excellent start for the next one: after a
   first cold solve (epsilon-scaling from the clouds' diameter down to ``eps = blur^2``, as in
   geomloss), each call runs ``warm_iters`` log-domain Sinkhorn iterations at the final
   ``eps`` only, stopping early when the potentials change by less than ``tol * eps``.

Cost ``C(x, y) = |x - y|^2 / 2`` as in geomloss ``SamplesLoss("sinkhorn", p=2)``. With dual
potentials ``f_ba, g_ab`` (transport ``a -> b``) and ``f_aa, g_bb`` (symmetric self problems),

    S_eps(a, b) = <a, f_ba - f_aa> + <b, g_ab - g_bb>,

and the gradient in the positions of ``a`` comes from one last differentiable Sinkhorn update
from the (detached) converged potentials -- geomloss's "last extrapolation", which gives the
envelope-theorem gradient ``grad_{x_i} S = sum_j pi_ij (x_i - y_j) - sum_k pi^aa_ik (x_i - x_k)``
(positions enter only the potentials that live on them). Values and gradients agree with geomloss (tested).
"""

from __future__ import annotations

import math

import torch
from jkoflow.divergence import Divergence
from torch import Tensor


def _softmin(eps: float, cost: Tensor, h: Tensor) -> Tensor:
    """``-eps * log sum_j exp(h_j - C_ij / eps)``: shape ``(n,)`` for ``C`` of shape ``(n, m)``."""
    return -eps * torch.logsumexp(h[None, :] - cost / eps, dim=1)


def _cost(x: Tensor, y: Tensor) -> Tensor:
    """``C_ij = |x_i - y_j|^2 / 2`` (clamped at 0 against round-off)."""
    c = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2.0 * x @ y.T
    return 0.5 * c.clamp_min(0.0)


def _eps_schedule(diameter: float, blur: float, scaling: float) -> list[float]:
    """``diameter^2, (diameter*scaling)^2, ..., blur^2`` (geomloss's epsilon-scaling)."""
    steps = max(math.ceil(math.log(max(diameter, blur) / blur) / math.log(1.0 / scaling)), 0)
    return [max(diameter * scaling**k, blur) ** 2 for k in range(steps + 1)] + [blur**2]


def self_potential(x: Tensor, loga: Tensor, eps_list: list[float]) -> Tensor:
    """Converged symmetric potential ``p`` of ``OT_eps(a, a)`` (averaged updates), detached."""
    with torch.no_grad():
        c = _cost(x, x)
        p = _softmin(eps_list[0], c, loga)
        for eps in eps_list:
            p = 0.5 * (p + _softmin(eps, c, loga + p / eps))
    return p


class WarmSinkhorn(Divergence):
    """Debiased Sinkhorn divergence ``S_eps(x, y)`` for a *fixed* ``y`` (the reference), warm
    started from the previous call's potentials (see the module docstring).

    Parameters
    ----------
    blur: ``sqrt(eps)``, as in geomloss.
    scaling: epsilon-scaling ratio of the cold solves.
    warm_iters: at most this many Sinkhorn iterations at the final ``eps`` per warm call.
    tol: stop early once the potentials move by less than ``tol * eps`` (sup norm).
    """

    symmetric = False
    supports_weights = False
    """Uniform weights only (the warm-started potentials are kept per particle)."""

    def __init__(
        self, blur: float = 0.05, scaling: float = 0.5, warm_iters: int = 5, tol: float = 1e-3
    ) -> None:
        if not blur > 0:
            raise ValueError(f"blur={blur}: expected a positive number")
        if not 0 < scaling < 1:
            raise ValueError(f"scaling={scaling}: expected 0 < scaling < 1")
        if warm_iters < 1:
            raise ValueError(f"warm_iters={warm_iters}: expected at least 1")
        self.blur, self.scaling, self.warm_iters, self.tol = (
            float(blur),
            float(scaling),
            int(warm_iters),
            float(tol),
        )
        self._ref: Tensor | None = None
        self._g_bb: Tensor | None = None
        self._state: tuple[Tensor, Tensor, Tensor] | None = None
        self.last_iters = 0
        """Sinkhorn iterations at the final eps used by the last call (cold solves: the schedule length)."""

    def reset(self) -> None:
        """Forget the cached reference and potentials (the next call is a cold solve)."""
        self._ref, self._g_bb, self._state = None, None, None

    def __call__(self, x: Tensor, y: Tensor, a: Tensor | None = None, b: Tensor | None = None) -> Tensor:
        if a is not None or b is not None:
            raise ValueError("WarmSinkhorn supports uniform weights only")
        if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
            raise ValueError(
                f"clouds of shapes {tuple(x.shape)} and {tuple(y.shape)}: expected (n, d) and (m, d)"
            )
        n, m = x.shape[0], y.shape[0]
        loga = torch.full((n,), -math.log(n), dtype=x.dtype, device=x.device)
        logb = torch.full((m,), -math.log(m), dtype=y.dtype, device=y.device)
        eps = self.blur**2
        new_ref = self._ref is None or self._ref is not y
        if new_ref:
            self.reset()
            self._ref = y
            with torch.no_grad():
                diam_y = float((y.max(0).values - y.min(0).values).norm())
            self._g_bb = self_potential(
                y.detach(), logb, _eps_schedule(max(diam_y, self.blur), self.blur, self.scaling)
            )
        # as in geomloss, x carries gradients only through the potential that lives on x:
        # C_xy for f_ba and C(x, x.detach()) for f_aa (else the envelope gradient is doubled)
        c_xy = _cost(x, y.detach())
        c_xx = _cost(x, x.detach())
        state = self._state
        with torch.no_grad():
            cxy, cxx = c_xy.detach(), c_xx.detach()
            if state is None or state[0].shape[0] != n:
                both = torch.cat([x.detach(), y.detach()])
                diam = max(float((both.max(0).values - both.min(0).values).norm()), self.blur)
                schedule = _eps_schedule(diam, self.blur, self.scaling)
                e0 = schedule[0]
                f_ba, g_ab, f_aa = _softmin(e0, cxy, logb), _softmin(e0, cxy.T, loga), _softmin(e0, cxx, loga)
                for e in schedule:
                    ft = _softmin(e, cxy, logb + g_ab / e)
                    gt = _softmin(e, cxy.T, loga + f_ba / e)
                    f_aa = 0.5 * (f_aa + _softmin(e, cxx, loga + f_aa / e))
                    f_ba, g_ab = 0.5 * (f_ba + ft), 0.5 * (g_ab + gt)
                self.last_iters = len(schedule)
            else:
                f_ba, g_ab, f_aa = state
                for it in range(self.warm_iters):
                    f_new = _softmin(eps, cxy, logb + g_ab / eps)
                    g_new = _softmin(eps, cxy.T, loga + f_new / eps)
                    faa_new = 0.5 * (f_aa + _softmin(eps, cxx, loga + f_aa / eps))
                    change = max(
                        float((f_new - f_ba).abs().max()),
                        float((g_new - g_ab).abs().max()),
                        float((faa_new - f_aa).abs().max()),
                    )
                    f_ba, g_ab, f_aa = f_new, g_new, faa_new
                    if change < self.tol * eps:
                        break
                self.last_iters = it + 1
        # last extrapolation, differentiable in x (envelope theorem)
        f_ba_x = _softmin(eps, c_xy, logb + g_ab / eps)
        g_ab_x = _softmin(eps, c_xy.detach().T, loga + f_ba / eps)
        f_aa_x = _softmin(eps, c_xx, loga + f_aa / eps)
        self._state = (f_ba_x.detach(), g_ab_x.detach(), 0.5 * (f_aa + f_aa_x.detach()))
        assert self._g_bb is not None
        value = (f_ba_x - f_aa_x).mean() + (g_ab_x - self._g_bb).mean()
        return value.clamp_min(0.0)


__all__ = ["WarmSinkhorn", "self_potential"]
