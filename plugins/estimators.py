"""Built-in log-determinant estimators."""

from __future__ import annotations

import torch
from torch import Tensor

from jkoflow.functional import LogDet
from jkoflow.logdet import LogDetError, LogDetEstimator, check_finite
from jkoflow.potential import PotentialNet
from jkoflow.registry import Registry, hookimpl


class ExactLogDet(LogDetEstimator):
    """``log det H_u(x_i) = 2 sum_k log L_kk`` with ``H_u = L L^T`` (batched Cholesky).

    Costs ``d`` Hessian-vector passes and a ``d x d`` factorization per particle: the right
    choice in low dimension. The value is itself the surrogate (exact gradient by autograd).
    """

    def __call__(self, potential: PotentialNet, x: Tensor, *, grad: bool = True) -> LogDet:
        hess = potential.hessian(x, create_graph=grad)
        chol, info = torch.linalg.cholesky_ex(hess)
        bad = int((info != 0).sum())
        if bad:
            raise LogDetError("H_u is not positive definite (Cholesky failed)", bad, x.shape[0])
        logdet = 2.0 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
        check_finite(logdet.detach())
        return LogDet(value=logdet.detach(), surrogate=logdet)


@hookimpl
def jkoflow_register(registry: Registry) -> None:
    registry.add("logdet", "exact", ExactLogDet)
