"""Estimators of ``log det H_u(x)`` and of its gradient in ``theta``.

Internal energies (entropy, porous medium, any convex ``f``) change with the push-forward
only through ``log det H_u`` (change of variables, paper Lemma 3.2):
``log rho_{t+1}(T(x)) = log rho_t(x) - log det H_u(x)``.
An estimator returns, per particle, a detached value and a surrogate whose
``theta``-gradient is the gradient of ``log det H_u`` (see :class:`jkoflow.functional.LogDet`).
"""

from __future__ import annotations

import abc
import warnings
from collections.abc import Callable

import torch
from torch import Tensor

from .functional import LogDet
from .potential import LowRankHessian, PotentialNet

LOW_RANK_RATIO = 0.5
"""The exact log-det takes the low-rank route (:class:`~jkoflow.potential.LowRankHessian`, the
matrix determinant lemma) when the net's :meth:`~jkoflow.PotentialNet.hessian_rank` ``r`` is at most
this fraction of ``d`` (docs/benchmarks.md, "Log-determinant estimators")."""


def low_rank_route(potential: PotentialNet, dim: int) -> bool:
    """Whether ``H_u`` of ``potential`` in dimension ``dim`` is cheaper in its low-rank form."""
    rank = potential.hessian_rank()
    return rank is not None and dim > 1 and rank <= LOW_RANK_RATIO * dim


class LogDetError(ArithmeticError):
    """``log det H_u`` could not be computed (non-finite, or ``H_u`` not positive definite)."""

    def __init__(self, message: str, bad: int, total: int) -> None:
        super().__init__(f"{message}: {bad} of {total} particles affected")
        self.bad = bad
        self.total = total


class LogDetWarning(RuntimeWarning):
    """An estimate was computed but may be inaccurate (e.g. CG did not converge)."""


class LogDetEstimator(abc.ABC):
    """Per-particle ``log det H_u(x_i)`` with a differentiable surrogate.

    An estimator that works from the dense Hessians sets ``uses_hessian = True`` and implements
    :meth:`from_hessian`; the solver then gets ``T = grad u`` and ``H_u`` from one sweep
    (:meth:`PotentialNet.transport_and_hessian`) instead of two.
    """

    uses_hessian: bool = False
    supports_low_rank: bool = False
    """Implements :meth:`from_low_rank` (the solver then asks nets with a
    :meth:`~jkoflow.PotentialNet.hessian_rank` for the factored ``H_u``, see :func:`low_rank_route`)."""

    def for_dim(self, dim: int) -> LogDetEstimator:
        """The estimator that does the work in dimension ``dim`` (a dispatcher such as
        ``auto`` returns its choice; others themselves)."""
        return self

    def for_potential(self, potential: PotentialNet, dim: int) -> LogDetEstimator:
        """The estimator that does the work for ``potential`` in dimension ``dim``: by default
        :meth:`for_dim`; a dispatcher may also look at the net (``auto`` takes the exact route
        wherever the net's low-rank Hessian form makes it cheap)."""
        return self.for_dim(dim)

    def from_low_rank(self, hess: LowRankHessian, *, grad: bool = True) -> LogDet:
        """The estimate from the factored Hessians; only where ``supports_low_rank``."""
        raise NotImplementedError(f"{type(self).__name__} does not work from low-rank Hessians")

    def from_hessian(self, hess: Tensor, *, grad: bool = True) -> LogDet:
        """The estimate from the batched Hessians ``H_u(x_i)`` (shape ``(n, d, d)``,
        differentiable in ``theta`` when ``grad``); only where ``uses_hessian``."""
        raise NotImplementedError(f"{type(self).__name__} does not work from dense Hessians")

    @abc.abstractmethod
    def __call__(self, potential: PotentialNet, x: Tensor, *, grad: bool = True) -> LogDet:
        """Estimate at the particles ``x`` (shape ``(n, d)``).

        With ``grad=False`` only ``value`` is needed; ``surrogate`` may then be the value.
        Raises :class:`LogDetError` when the result would poison the flow.
        """


def check_finite(values: Tensor, what: str = "log det H_u") -> None:
    """Raise :class:`LogDetError` naming how many entries of ``values`` are not finite."""
    bad = int((~torch.isfinite(values)).sum())
    if bad:
        raise LogDetError(f"{what} is not finite", bad, values.numel())


def warn(message: str) -> None:
    """Emit a :class:`LogDetWarning` attributed to the caller of the estimator."""
    warnings.warn(message, LogDetWarning, stacklevel=3)


def transport_and_logdet(
    logdet: LogDetEstimator,
    potential: PotentialNet,
    x: Tensor,
    *,
    grad: bool = True,
    transport: Callable[..., Tensor] | None = None,
    transport_and_hessian: Callable[..., tuple[Tensor, Tensor]] | None = None,
) -> tuple[Tensor, LogDet]:
    """``T(x) = grad u(x)`` and ``log det H_u(x)`` by the cheapest route that ``logdet`` (for
    ``potential``, :meth:`LogDetEstimator.for_potential`) and the net share: the low-rank form
    (:func:`low_rank_route`), else ``T`` and the dense ``H_u`` from one sweep (estimators with
    ``uses_hessian``), else ``T`` and the estimator's own Hessian-vector products.
    ``transport`` / ``transport_and_hessian`` replace the net's methods (e.g. compiled ones); with
    ``grad=False`` nothing is differentiable in ``theta``."""
    dim = x.shape[1]
    est = logdet.for_potential(potential, dim)
    if est.supports_low_rank and low_rank_route(potential, dim):
        y, factored = potential.transport_and_low_rank_hessian(x, create_graph=grad)
        return y, est.from_low_rank(factored, grad=grad)
    if est.uses_hessian:
        y, hess = (transport_and_hessian or potential.transport_and_hessian)(x, create_graph=grad)
        return y, est.from_hessian(hess, grad=grad)
    return (transport or potential.transport)(x, create_graph=grad), est(potential, x, grad=grad)
