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

Closed forms (no double backpropagation). With pre-activations ``h_k`` and the adjoint
``delta_k = du/dz_{k+1}`` (one reverse sweep), ``T(x) = grad u`` is that sweep, and since the
only non-linear nodes are the element-wise ``g``, the Hessian is exactly

    H_u(x) = sum_k J_k^T diag(delta_k * g''(h_k)) J_k  +  A^T A  +  alpha I,     J_k = dh_k/dx,

with ``J_k`` from a forward recursion. Hessian-vector products use the same sum with ``J_k v``
(a forward tangent sweep) and ``J_k^T (.)`` (a reverse sweep): ``O(K w (w + d))`` per vector
instead of a pass through autograd's graph of the gradient.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import cast

import torch
import torch.nn.functional as nnf
from jkoflow.potential import LowRankHessian, PotentialNet
from jkoflow.registry import hookimpl
from torch import Tensor, nn

_Cache = tuple[list[Tensor], list[Tensor], Tensor | None]

ACTIVATIONS = {
    "softplus": nnf.softplus,
    "celu": nnf.celu,
    "elu": nnf.elu,
}
"""Smooth (or C^1) convex non-decreasing activations. ReLU-type activations are refused:
their Hessian vanishes almost everywhere, which breaks log-determinants."""


def _softplus_derivatives(h: Tensor) -> tuple[Tensor, Tensor]:
    s = torch.sigmoid(h)
    return s, torch.addcmul(s, s, s, value=-1.0)  # s (1 - s) in one op


def _elu_derivatives(h: Tensor) -> tuple[Tensor, Tensor]:  # celu/elu with alpha = 1
    e = torch.exp(torch.clamp(h, max=0.0))
    positive = h > 0
    return torch.where(positive, torch.ones_like(h), e), torch.where(positive, torch.zeros_like(h), e)


DERIVATIVES: dict[str, Callable[[Tensor], tuple[Tensor, Tensor]]] = {
    "softplus": _softplus_derivatives,
    "celu": _elu_derivatives,
    "elu": _elu_derivatives,
}
"""``(g', g'')`` of each activation, for the closed-form gradient and Hessian."""


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
        self.wz = nn.ParameterList(
            [nn.Parameter(torch.empty(w_out, w_in)) for w_in, w_out in itertools.pairwise(widths)]
        )
        self.out_z = nn.Parameter(torch.empty(widths[-1]))
        self.out_x = nn.Linear(dim, 1)
        if quadratic == "full":
            self.quad = nn.Parameter(torch.empty(dim, dim))
        elif quadratic == "scalar":
            self.quad = nn.Parameter(torch.empty(()))
        else:
            self.register_parameter("quad", None)
        self.reset_parameters()

    def _lin(self, k: int) -> nn.Linear:
        """The input layer ``W^x_k`` (typed: ``nn.ModuleList`` items are plain modules)."""
        return cast(nn.Linear, self.wx[k])

    def reset_parameters(self) -> None:
        """``u ~= |x|^2/2`` at initialization: ``A^T A = (1 - alpha) I``, small ``w^z``."""
        for k in range(len(self.wx)):
            self._lin(k).reset_parameters()
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

    # --- closed forms of T = grad u, H_u and H_u v ------------------------------------------
    def _sweep(self, x: Tensor) -> tuple[Tensor, _Cache]:
        """Forward pass and one reverse sweep: ``grad u(x)`` and the cache
        ``([g'(h_k)], [delta_k * g''(h_k)], A^T A or None)`` for Hessians."""
        g = self._g
        deriv = DERIVATIVES[self.activation]
        hs = [self.wx[0](x)]
        z = g(hs[0])
        for wx, wz in zip(self.wx[1:], self.wz):
            h = nnf.linear(z, wz) + wx(x)
            hs.append(h)
            z = z + g(h) if self.residual else g(h)
        firsts, curvs = [], []
        for h in hs:
            g1, g2 = deriv(h)
            firsts.append(g1)
            curvs.append(g2)
        dz = self.out_z.expand(x.shape[0], -1)
        grad = self.out_x.weight.expand(x.shape[0], -1)
        for k in reversed(range(len(hs))):
            curvs[k] = dz * curvs[k]
            delta = dz * firsts[k]
            grad = grad + delta @ self._lin(k).weight
            if k >= 1:
                dz = delta @ self.wz[k - 1] + dz if self.residual else delta @ self.wz[k - 1]
        gram = None
        if self.quadratic == "full":
            gram = self.quad.T @ self.quad
            grad = grad + x @ gram
        elif self.quadratic == "scalar":
            grad = grad + self.quad.pow(2) * x
        if self.strong_convexity:
            grad = grad + self.strong_convexity * x
        return grad, (firsts, curvs, gram)

    def _diag_shift(self) -> Tensor | float:
        """The multiple of the identity in ``H_u``: ``alpha`` (+ ``s^2`` for a scalar quadratic)."""
        shift: Tensor | float = self.strong_convexity
        if self.quadratic == "scalar":
            shift = shift + self.quad.pow(2)
        return shift

    def hessian_baseline(self) -> Tensor | None:
        """``A^T A + alpha I`` (full quadratic) or ``(s^2 + alpha) I``: the ``x``-independent part
        of ``H_u``; ``None`` without a quadratic term and ``alpha = 0``."""
        eye = torch.eye(self.dim, dtype=self.out_z.dtype, device=self.out_z.device)
        if self.quadratic == "full":
            return self.quad.T @ self.quad + self.strong_convexity * eye
        if self.quadratic == "scalar" or self.strong_convexity > 0:
            return self._diag_shift() * eye
        return None

    def transport(self, x: Tensor, create_graph: bool = True) -> Tensor:
        """``T(x) = grad u(x)`` by one explicit reverse sweep (same values as autograd)."""
        x = x.detach()
        with torch.set_grad_enabled(create_graph):
            grad, _ = self._sweep(x)
        return grad if create_graph else grad.detach()

    def hessian(self, x: Tensor, create_graph: bool = True) -> Tensor:
        """``H_u(x) = sum_k J_k^T diag(delta_k g''(h_k)) J_k + A^T A + alpha I`` (closed form)."""
        return self.transport_and_hessian(x, create_graph=create_graph)[1]

    def transport_and_hessian(self, x: Tensor, create_graph: bool = True) -> tuple[Tensor, Tensor]:
        """``T(x) = grad u(x)`` and ``H_u(x)`` from one forward and one reverse sweep (the
        Hessian reuses the sweep's ``g'(h_k)`` and ``delta_k g''(h_k)``).

        The forward recursion carries ``J_k^T = (dh_k/dx)^T`` as ``(n, d, w_k)`` so that each
        layer is one matrix product with ``W^z_k^T`` over all particles (not ``n`` small ones);
        the first layer's term is ``c_0 Q_0`` with ``Q_0[m] = w_m w_m^T`` the outer products of
        the rows of ``W^x_0`` (``J_0 = W^x_0`` for every particle), and in ``d = 1`` every
        ``J_k`` is a vector per particle, so the sum is element-wise."""
        x = x.detach()
        with torch.set_grad_enabled(create_graph):
            grad, (firsts, curvs, gram) = self._sweep(x)
            n, d = x.shape
            w0 = self._lin(0).weight  # (w_0, d): J_0 = W^x_0, shared by all particles
            if d == 1:
                shift: Tensor | float = self._diag_shift()
                if gram is not None:
                    shift = gram[0, 0] + shift
                hess1 = curvs[0] @ w0[:, 0].square()
                dz = firsts[0] * w0[:, 0]  # dz_1/dx, (n, w_0)
                for k in range(1, len(firsts)):
                    jac = torch.addmm(self._lin(k).weight[:, 0], dz, self.wz[k - 1].T)  # J_k, (n, w_k)
                    hess1 = hess1 + (curvs[k] * jac.square()).sum(1)
                    if k + 1 < len(firsts):
                        step = firsts[k] * jac
                        dz = dz + step if self.residual else step
                hess = (hess1 + shift).view(n, 1, 1)
            else:
                eye = torch.eye(d, dtype=x.dtype, device=x.device)
                base = self._diag_shift() * eye
                if gram is not None:
                    base = base + gram
                q0 = (w0[:, :, None] * w0[:, None, :]).reshape(w0.shape[0], d * d)
                first = torch.addmm(base.reshape(1, d * d), curvs[0], q0).view(n, d, d)
                jts = self._input_jacobians(firsts, [self._lin(k).weight.T for k in range(len(firsts))])
                if jts:
                    jt_all = torch.cat(jts, dim=2) if len(jts) > 1 else jts[0]  # (n, d, sum_k w_k)
                    c_all = torch.cat(curvs[1:], dim=1) if len(jts) > 1 else curvs[1]
                    # one fused batched product: H = base + c_0 Q_0 + sum_k J_k^T diag(c_k) J_k
                    hess = torch.baddbmm(first, jt_all * c_all[:, None, :], jt_all.transpose(1, 2))
                else:
                    hess = first
        if not create_graph:
            return grad.detach(), hess.detach()
        return grad, hess

    def _input_jacobians(self, firsts: list[Tensor], inputs: list[Tensor]) -> list[Tensor]:
        """``J_k^T = (dh_k/dx)^T`` of shape ``(n, d, w_k)`` for ``k >= 1`` by the forward recursion
        ``J_k^T = (g'(h_{k-1}) * J_{k-1}^T) W^z_k^T + W^x_k^T`` (plus the skip term), with
        ``inputs[k]`` (``(d, w_k)``) in the place of ``W^x_k^T``. The recursion is linear in
        ``inputs``, so ``inputs[k] = L^{-1} W^x_k^T`` gives the whitened ``L^{-1} J_k^T``."""
        dzt = firsts[0][:, None, :] * inputs[0]  # (dz_1/dx)^T, (n, d, w_0)
        jts = []
        for k in range(1, len(firsts)):
            jt = torch.matmul(dzt, self.wz[k - 1].T) + inputs[k]
            jts.append(jt)
            if k + 1 < len(firsts):
                step = firsts[k][:, None, :] * jt
                dzt = dzt + step if self.residual else step
        return jts

    def hessian_rank(self) -> int | None:
        """``r = w_1 + ... + w_K``: ``H_u(x) - (A^T A + alpha I)`` is a sum of ``K`` terms
        ``J_k^T diag(c_k) J_k`` of rank ``w_k``; ``None`` when ``alpha = 0`` (the constant part may
        then be singular)."""
        return sum(self.widths) if self.strong_convexity > 0 else None

    def transport_and_low_rank_hessian(
        self, x: Tensor, create_graph: bool = True
    ) -> tuple[Tensor, LowRankHessian]:
        """``T(x)`` and ``H_u(x) = L (I + W diag(c) W^T) L^T`` (:class:`LowRankHessian`) from one
        sweep, with ``L L^T = A^T A + alpha I`` (one ``d x d`` Cholesky per call) and ``c`` the
        concatenated ``delta_k * g''(h_k)``.

        Every ``J_k`` is a combination of the input layers' rows: with ``X`` the ``(r, d)``
        stack of ``W^x_0, ..., W^x_K``, ``J_k^T = X^T C_{k,i}``, and the Jacobian recursion run on
        the selectors ``E_k^T`` (the blocks of ``I_r``) in the place of ``W^x_k^T`` gives the
        coefficients ``C_i = [C_{0,i}, ..., C_{K,i}]`` (``(n, r, r)``, no ``d`` in them). Then
        ``W_i = L^{-1} X^T C_i``: basis ``V = L^{-1} X^T`` from one triangular solve."""
        x = x.detach()
        with torch.set_grad_enabled(create_graph):
            grad, (firsts, curvs, gram) = self._sweep(x)
            n, d = x.shape
            assert self.strong_convexity > 0, "hessian_rank() is None: alpha = 0"
            base = self._diag_shift() * torch.eye(d, dtype=x.dtype, device=x.device)  # B = A^T A + alpha I
            # cholesky_ex: non-finite parameters give a non-finite L (and log-det) that the
            # estimator reports as a LogDetError, which the solver recovers from
            chol = torch.linalg.cholesky_ex(base if gram is None else base + gram)[0]
            inputs = torch.cat([self._lin(k).weight for k in range(len(firsts))], dim=0)  # X, (r, d)
            basis = torch.linalg.solve_triangular(chol, inputs.T, upper=False)  # V = L^{-1} X^T
            r = inputs.shape[0]
            selectors = list(torch.eye(r, dtype=x.dtype, device=x.device).split(self.widths, dim=1))
            blocks = [selectors[0].expand(n, r, self.widths[0]), *self._input_jacobians(firsts, selectors)]
            coefficients = torch.cat(blocks, dim=2) if len(blocks) > 1 else blocks[0]
            weights = torch.cat(curvs, dim=1) if len(curvs) > 1 else curvs[0]
        if not create_graph:
            return grad.detach(), LowRankHessian(
                chol.detach(), basis.detach(), coefficients.detach(), weights.detach()
            )
        return grad, LowRankHessian(chol, basis, coefficients, weights)

    def hvp(self, x: Tensor, v: Tensor, create_graph: bool = True) -> Tensor:
        """``H_u(x_i) v_i`` by one tangent and one reverse sweep (closed form)."""
        return self.hvp_operator(x, create_graph=create_graph)(v[:, None, :])[:, 0, :]

    def hvp_operator(self, x: Tensor, create_graph: bool = False) -> Callable[[Tensor], Tensor]:
        """``V -> H_u(x_i) V[i, k]`` for ``V`` of shape ``(n, p, d)``, reusing one forward sweep."""
        x = x.detach()
        with torch.set_grad_enabled(create_graph):
            _, (firsts, curvs, gram) = self._sweep(x)
            shift = self._diag_shift()
        if not create_graph:
            firsts = [f.detach() for f in firsts]
            curvs = [c.detach() for c in curvs]
            gram = None if gram is None else gram.detach()
            shift = shift.detach() if isinstance(shift, Tensor) else shift
        residual = self.residual

        def apply(v: Tensor) -> Tensor:
            with torch.set_grad_enabled(create_graph):
                # tangent sweep: a_k = J_k v
                tangents = []
                a = v @ self._lin(0).weight.T
                tangents.append(a)
                dz = firsts[0][:, None, :] * a
                for k in range(1, len(firsts)):
                    a = dz @ self.wz[k - 1].T + v @ self._lin(k).weight.T
                    tangents.append(a)
                    step = firsts[k][:, None, :] * a
                    dz = dz + step if residual else step
                # reverse sweep: sum_k J_k^T (c_k * a_k)
                out = shift * v
                if gram is not None:
                    out = out + v @ gram
                lam: Tensor | float = 0.0
                for k in reversed(range(len(firsts))):
                    mu = curvs[k][:, None, :] * tangents[k] + firsts[k][:, None, :] * lam
                    out = out + mu @ self._lin(k).weight
                    if k >= 1:
                        lam = mu @ self.wz[k - 1] + (lam if residual else 0.0)
            return out if create_graph else out.detach()

        return apply

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
def jkoflow_register(registry) -> None:
    registry.add("net", "ficnn", ficnn)
    registry.add("net", "resicnn", resicnn)
