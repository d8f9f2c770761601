"""A small convex potential network, convex by reparametrization (no ``project`` needed):

    u(x) = 1/2 x^T (L L^T + alpha I) x + b . x + sum_k s_k softplus(a_k . x + c_k),
    s_k = softplus(sigma_k) >= 0.

A sum of a strongly convex quadratic and non-negative multiples of convex ridge functions, so
``u`` is ``alpha``-strongly convex for *every* parameter value; the optimizer may move the
parameters anywhere. At initialization ``L L^T + alpha I = I``, ``b = 0`` and the ``s_k`` are
small, so ``grad u ~= identity``. Closed forms: ``grad u = A x + b + sum_k s_k sigmoid(.) a_k``,
``H_u = A + sum_k s_k sigmoid'(.) a_k a_k^T``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as nnf
from jkoflow.potential import PotentialNet
from torch import Tensor, nn


class QuadSoftplus(PotentialNet):
    """``quad_softplus``: quadratic + ``ridges`` softplus ridge functions (see module docstring)."""

    def __init__(self, dim: int, ridges: int = 32, alpha: float = 1e-2, init_scale: float = 1e-2) -> None:
        super().__init__()
        if dim < 1 or ridges < 1:
            raise ValueError(f"dim={dim}, ridges={ridges}: expected positive integers")
        if not 0 < alpha < 1:
            raise ValueError(f"alpha={alpha}: expected 0 < alpha < 1")
        self.dim, self.ridges, self.strong_convexity, self.init_scale = (
            dim,
            ridges,
            float(alpha),
            float(init_scale),
        )
        self.factor = nn.Parameter(torch.empty(dim, dim))
        self.shift = nn.Parameter(torch.empty(dim))
        self.ridge_in = nn.Linear(dim, ridges)
        self.ridge_scale_raw = nn.Parameter(torch.empty(ridges))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``u ~= |x|^2 / 2``: ``L = sqrt(1 - alpha) I``, ``b = 0``, ``s_k = init_scale / ridges``."""
        with torch.no_grad():
            self.factor.copy_(math.sqrt(1 - self.strong_convexity) * torch.eye(self.dim))
            self.shift.zero_()
            self.ridge_in.reset_parameters()
            s = self.init_scale / self.ridges
            self.ridge_scale_raw.fill_(math.log(math.expm1(s)))  # softplus^-1(s)

    def _matrix(self) -> Tensor:
        eye = torch.eye(self.dim, dtype=self.factor.dtype, device=self.factor.device)
        return self.factor @ self.factor.T + self.strong_convexity * eye

    def forward(self, x: Tensor) -> Tensor:
        quad = 0.5 * ((x @ self._matrix()) * x).sum(-1)
        ridge = nnf.softplus(self.ridge_in(x)) @ nnf.softplus(self.ridge_scale_raw)
        return quad + x @ self.shift + ridge

    def transport(self, x: Tensor, create_graph: bool = True) -> Tensor:
        """Closed-form ``grad u(x)`` (differentiable in ``theta`` unless ``create_graph`` is false)."""
        with torch.set_grad_enabled(create_graph and torch.is_grad_enabled()):
            sig = torch.sigmoid(self.ridge_in(x)) * nnf.softplus(self.ridge_scale_raw)
            grad = x @ self._matrix() + self.shift + sig @ self.ridge_in.weight
        return grad if create_graph else grad.detach()

    def hessian(self, x: Tensor, create_graph: bool = True) -> Tensor:
        """Closed-form ``H_u(x) = A + sum_k s_k sigma'(a_k . x + c_k) a_k a_k^T``."""
        with torch.set_grad_enabled(create_graph and torch.is_grad_enabled()):
            z = self.ridge_in(x)
            curv = torch.sigmoid(z) * torch.sigmoid(-z) * nnf.softplus(self.ridge_scale_raw)
            w = self.ridge_in.weight
            hess = self._matrix() + torch.einsum("nk,ki,kj->nij", curv, w, w)
        return hess if create_graph else hess.detach()


def quad_softplus(dim: int, ridges: int = 32, alpha: float = 1e-2, init_scale: float = 1e-2) -> QuadSoftplus:
    """Factory registered as net ``quad_softplus``."""
    return QuadSoftplus(dim, ridges, alpha, init_scale)
