"""The convex potential ``u`` whose gradient is a JKO step's transport map.

A JKO step pushes ``rho_t`` forward by ``T = grad u`` (Brenier's theorem): ``rho_{t+1} = T # rho_t``.
``PotentialNet`` is the interface every potential plugin implements: a torch module
``u: R^d -> R`` convex in its input, with the map ``T(x) = grad u(x)`` and the Hessian
``H_u(x)`` available in batch and differentiable with respect to the parameters ``theta``.
"""

from __future__ import annotations

import abc
from collections.abc import Callable

import attrs
import torch
from torch import Tensor, nn


@attrs.frozen
class LowRankHessian:
    """Batched Hessians in the factored form ``H_u(x_i) = L (I_d + W_i diag(c_i) W_i^T) L^T`` with
    ``W_i = V C_i``.

    ``chol``: ``L`` of shape ``(d, d)``, the lower Cholesky factor of the ``x``-independent part
    ``B = L L^T`` of ``H_u`` (for the ICNN, ``A^T A + alpha I``); ``basis``: ``V`` of shape
    ``(d, r)``, shared by all particles; ``coefficients``: ``C_i`` of shape ``(n, r, r)``;
    ``weights``: ``c_i >= 0`` of shape ``(n, r)``. With ``r < d`` the matrix determinant lemma

        log det H_u(x_i) = 2 sum_k log L_kk + log det(I_r + diag(c_i) C_i^T (V^T V) C_i)

    costs ``O(r^3)`` per particle (and ``O(d^2 r)`` once), against the ``O(d^3)`` per particle of
    a dense factorization.
    """

    chol: Tensor
    basis: Tensor
    coefficients: Tensor
    weights: Tensor

    def dense(self) -> Tensor:
        """The ``(n, d, d)`` Hessians (for checks; the point of the form is not to build them)."""
        eye = torch.eye(self.chol.shape[0], dtype=self.chol.dtype, device=self.chol.device)
        factor = torch.matmul(self.basis, self.coefficients)  # W_i, (n, d, r)
        inner = eye + (factor * self.weights[:, None, :]) @ factor.transpose(1, 2)
        return self.chol @ inner @ self.chol.T


class PotentialNet(nn.Module, abc.ABC):
    """A convex potential ``u_theta: R^d -> R``.

    Subclasses implement :meth:`forward`; the gradient and Hessian come from autograd
    unless a subclass supplies faster closed forms.

    Attributes
    ----------
    dim:
        Input dimension ``d``.
    strong_convexity:
        A lower bound ``alpha >= 0`` on the eigenvalues of ``H_u`` that holds by construction
        (``alpha > 0`` makes ``T = grad u`` invertible and ``log det H_u`` finite).
    """

    dim: int
    strong_convexity: float = 0.0

    @abc.abstractmethod
    def forward(self, x: Tensor) -> Tensor:
        """``u(x)`` for a batch ``x`` of shape ``(n, d)``; returns shape ``(n,)``."""

    def transport(self, x: Tensor, create_graph: bool = True) -> Tensor:
        """The map ``T(x) = grad u(x)``, shape ``(n, d)``.

        With ``create_graph=True`` the result stays differentiable in ``theta`` (the inner
        loop needs this); with ``False`` it is a plain push of particles.
        """
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self(x).sum(), x, create_graph=create_graph)
        return grad if create_graph else grad.detach()

    def hessian(self, x: Tensor, create_graph: bool = True) -> Tensor:
        """Batched Hessians ``H_u(x)`` of shape ``(n, d, d)`` (differentiable in ``theta`` when
        ``create_graph`` is true).

        Generic route: one reverse pass for ``T = grad u``, then the ``d`` columns
        ``H e_j`` from reverse passes through ``T`` vectorized over ``j`` (``torch.func`` vmap,
        ``is_grads_batched``); falls back to a loop over columns where vmap is unsupported.
        Subclasses with a closed form (e.g. the ICNN) override this.
        """
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self(x).sum(), x, create_graph=True)
            d = x.shape[1]
            eye = torch.eye(d, dtype=x.dtype, device=x.device)
            try:
                (cols,) = torch.autograd.grad(
                    grad,
                    x,
                    grad_outputs=eye[:, None, :].expand(d, x.shape[0], d),
                    create_graph=create_graph,
                    retain_graph=True,
                    is_grads_batched=True,
                )
                hess = cols.permute(1, 2, 0)  # cols[j] = H e_j
            except RuntimeError:  # pragma: no cover - operator without a vmap rule
                loop = [
                    torch.autograd.grad(grad[:, j].sum(), x, create_graph=create_graph, retain_graph=True)[0]
                    for j in range(d)
                ]
                hess = torch.stack(loop, dim=2)
        return hess if create_graph else hess.detach()

    def transport_and_hessian(self, x: Tensor, create_graph: bool = True) -> tuple[Tensor, Tensor]:
        """``(T(x), H_u(x))`` together: the inner loop's hot path with an exact log-det needs
        both at the same particles. This default calls :meth:`transport` and :meth:`hessian`;
        a net with a closed form (the ICNN) overrides it to share one sweep."""
        return self.transport(x, create_graph=create_graph), self.hessian(x, create_graph=create_graph)

    def hessian_rank(self) -> int | None:
        """``r`` when :meth:`transport_and_low_rank_hessian` is available: ``H_u(x) - B`` has rank
        at most ``r`` at every ``x`` for one SPD matrix ``B(theta)``; ``None`` (the default) when
        the net has no such form. The exact log-det takes the low-rank route when ``r`` is below
        :data:`jkoflow.logdet.LOW_RANK_RATIO` times ``d``."""
        return None

    def transport_and_low_rank_hessian(
        self, x: Tensor, create_graph: bool = True
    ) -> tuple[Tensor, LowRankHessian]:
        """``(T(x), H_u(x))`` with ``H_u`` as a :class:`LowRankHessian`; only where
        :meth:`hessian_rank` is not ``None``."""
        raise NotImplementedError(f"{type(self).__name__} has no low-rank Hessian form")

    def hvp(self, x: Tensor, v: Tensor, create_graph: bool = True) -> Tensor:
        """Hessian-vector products ``H_u(x_i) v_i`` for a batch, shape ``(n, d)``."""
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self(x).sum(), x, create_graph=True)
            (hv,) = torch.autograd.grad(grad, x, grad_outputs=v, create_graph=create_graph)
        return hv

    def hvp_operator(self, x: Tensor, create_graph: bool = False) -> Callable[[Tensor], Tensor]:
        """The batch of operators ``v -> H_u(x_i) v`` at fixed particles, for iterative solvers.

        Returns ``apply(V)`` with ``V`` of shape ``(n, p, d)`` (``p`` vectors per particle) and
        result ``H_u(x_i) V[i, k]`` of the same shape. The pass through ``u`` and ``T`` is done
        once and reused by every call (Lanczos and CG call it many times). With
        ``create_graph=False`` the products are detached (no ``theta`` graph): the cheap mode
        for Krylov iterations; with ``True`` they are differentiable in ``theta``.
        """
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self(xg).sum(), xg, create_graph=True)

        def apply(v: Tensor) -> Tensor:
            with torch.enable_grad():
                (hv,) = torch.autograd.grad(
                    grad,
                    xg,
                    grad_outputs=v.movedim(1, 0),
                    create_graph=create_graph,
                    retain_graph=True,
                    is_grads_batched=True,
                )
            hv = hv.movedim(0, 1)
            return hv if create_graph else hv.detach()

        return apply

    def hessian_baseline(self) -> Tensor | None:
        """An ``x``-independent SPD matrix ``G(theta)`` that approximates ``H_u(x)`` (e.g. the
        Hessian of a learned quadratic part), differentiable in ``theta``; ``None`` if there is
        none. Stochastic log-det estimators precondition with it:
        ``log det H_u = log det G + log det(L^{-1} H_u L^{-T})`` (``G = L L^T``), the first term
        exact, the second near ``log det I`` and so cheap to estimate with small variance."""
        return None

    def project(self) -> None:
        """Restore convexity after an optimizer step (e.g. clip ``W^z`` to be non-negative).

        The solver calls this after every step. Reparametrized nets need not override it.
        """

    def reset_parameters(self) -> None:  # pragma: no cover - subclasses override
        """Re-initialize ``theta`` (used when a JKO step does not warm-start)."""
        raise NotImplementedError
