"""Input-convex neural networks (ICNNs) as convex potentials ``u``.

Fully input-convex network (Amos et al. 2017; paper App. B.1)::

    z_1     = g(W^x_0 x + b_0)
    z_{k+1} = g(W^z_k z_k + W^x_k x + b_k),        W^z_k >= 0
    u(x)    = w^z . z_K + w^x . x + c  +  1/2 |A x|^2  +  alpha/2 |x|^2,   w^z >= 0

``u`` is convex in ``x`` because every ``g`` is convex and non-decreasing and every ``W^z``
is non-negative (restored by :meth:`project` after each optimizer step); ``alpha > 0`` makes it
``alpha``-strongly convex so ``T = grad u`` is invertible and ``log det H_u`` is finite.
The quadratic ``1/2 |A x|^2`` (``A`` a free ``d x d`` matrix, or a scalar) starts at
``A^T A = (1 - alpha) I`` and the network's output weights start small, so at initialization
``u ~= |x|^2 / 2`` and ``T ~= identity``: the first JKO step starts next to its answer. The
quadratic also makes affine maps (the exact JKO steps between Gaussians) exactly
representable.

The residual variant adds ``z_k`` to each layer's output: ``z_{k+1} = z_k + g(...)`` (a sum of
convex functions, so still convex), which eases training of deeper nets.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as nnf
from torch import Tensor, nn

from jkoflow.potential import PotentialNet
from jkoflow.registry import hookimpl

ACTIVATIONS = {
    "softplus": nnf.softplus,
    "celu": nnf.celu,
    "elu": nnf.elu,
}
"""Smooth (or C^1) convex non-decreasing activations. ReLU-type activations are refused:
their Hessian vanishes almost everywhere, which breaks log-determinants."""


class ICNN(PotentialNet):
    """Fully input-convex potential network (``ficnn``); ``residual=True`` gives ``resicnn``.

    Parameters
    ----------
    dim: input dimension ``d``.
    widths: hidden widths ``(w_1, ..., w_K)`` (equal widths when ``residual``).
    activation: one of ``softplus`` (default), ``celu``, ``elu``.
    alpha: strong-convexity modulus added as ``alpha/2 |x|^2`` (``0 <= alpha < 1``).
    quadratic: ``"full"`` (learned ``1/2 |A x|^2``), ``"scalar"`` (``s^2/2 |x|^2``) or ``"none"``.
    init_scale: scale of the output weights ``w^z`` at initialization (small: ``T ~= id``).
    residual: skip connections ``z_{k+1} = z_k + g(...)``.
    """

    def __init__(
        self,
        dim: int,
        widths: Sequence[int] = (64, 64),
        activation: str = "softplus",
        alpha: float = 1e-3,
        quadratic: str = "full",
        init_scale: float = 1e-2,
        residual: bool = False,
    ) -> None:
        super().__init__()
        widths = [int(w) for w in widths]
        if dim < 1:
            raise ValueError(f"dim={dim}: expected a positive integer")
        if not widths or min(widths) < 1:
            raise ValueError(f"widths={widths}: expected a non-empty list of positive integers")
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"activation={activation!r}: expected one of {sorted(ACTIVATIONS)} (smooth, convex, "
                "non-decreasing; ReLU-type activations have a zero Hessian almost everywhere)"
            )
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f"alpha={alpha}: expected 0 <= alpha < 1")
        if quadratic not in ("full", "scalar", "none"):
            raise ValueError(f"quadratic={quadratic!r}: expected 'full', 'scalar' or 'none'")
        if residual and len(set(widths)) != 1:
            raise ValueError(f"widths={widths}: a residual ICNN needs equal widths")
        self.dim = dim
        self.widths = widths
        self.activation = activation
        self.strong_convexity = float(alpha)
        self.quadratic = quadratic
        self.init_scale = float(init_scale)
        self.residual = residual
        self._g = ACTIVATIONS[activation]
        self.wx = nn.ModuleList([nn.Linear(dim, w) for w in widths])
        self.wz = nn.ParameterList([nn.Parameter(torch.empty(w_out, w_in)) for w_in, w_out in zip(widths, widths[1:])])
        self.out_z = nn.Parameter(torch.empty(widths[-1]))
        self.out_x = nn.Linear(dim, 1)
        if quadratic == "full":
            self.quad = nn.Parameter(torch.empty(dim, dim))
        elif quadratic == "scalar":
            self.quad = nn.Parameter(torch.empty(()))
        else:
            self.register_parameter("quad", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``u ~= |x|^2/2`` at initialization: ``A^T A = (1 - alpha) I``, small ``w^z``."""
        for lin in self.wx:
            lin.reset_parameters()
        for wz in self.wz:
            nn.init.uniform_(wz, 0.0, 1.0 / wz.shape[1])
        nn.init.uniform_(self.out_z, 0.0, self.init_scale / self.widths[-1])
        nn.init.zeros_(self.out_x.weight)
        nn.init.zeros_(self.out_x.bias)
        scale = math.sqrt(1.0 - self.strong_convexity)
        with torch.no_grad():
            if self.quadratic == "full":
                self.quad.copy_(scale * torch.eye(self.dim))
            elif self.quadratic == "scalar":
                self.quad.fill_(scale)

    def forward(self, x: Tensor) -> Tensor:
        g = self._g
        z = g(self.wx[0](x))
        for wx, wz in zip(self.wx[1:], self.wz):
            h = g(nnf.linear(z, wz) + wx(x))
            z = z + h if self.residual else h
        u = z @ self.out_z + self.out_x(x).squeeze(-1)
        if self.quadratic == "full":
            u = u + 0.5 * (x @ self.quad.T).pow(2).sum(-1)
        elif self.quadratic == "scalar":
            u = u + 0.5 * self.quad.pow(2) * x.pow(2).sum(-1)
        if self.strong_convexity:
            u = u + 0.5 * self.strong_convexity * x.pow(2).sum(-1)
        return u

    @torch.no_grad()
    def project(self) -> None:
        """Clip ``W^z`` and ``w^z`` to be non-negative (restores input convexity)."""
        for wz in self.wz:
            wz.clamp_(min=0.0)
        self.out_z.clamp_(min=0.0)

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, widths={self.widths}, activation={self.activation!r}, "
            f"alpha={self.strong_convexity}, quadratic={self.quadratic!r}, residual={self.residual}"
        )


def resicnn(
    dim: int,
    widths: Sequence[int] = (64, 64, 64),
    activation: str = "softplus",
    alpha: float = 1e-3,
    quadratic: str = "full",
    init_scale: float = 1e-2,
) -> ICNN:
    """Residual ICNN: ``z_{k+1} = z_k + g(W^z_k z_k + W^x_k x + b_k)`` (equal widths)."""
    return ICNN(dim, widths, activation, alpha, quadratic, init_scale, residual=True)


def ficnn(
    dim: int,
    widths: Sequence[int] = (64, 64),
    activation: str = "softplus",
    alpha: float = 1e-3,
    quadratic: str = "full",
    init_scale: float = 1e-2,
) -> ICNN:
    """Fully input-convex network (see :class:`ICNN`)."""
    return ICNN(dim, widths, activation, alpha, quadratic, init_scale, residual=False)


@hookimpl
def jkoflow_register(registry) -> None:  # type: ignore[no-untyped-def]
    registry.add("net", "ficnn", ficnn)
    registry.add("net", "resicnn", resicnn)
