"""The energy distance (Szekely & Rizzo) between weighted clouds:

    ED(alpha, beta) = 2 sum_ij a_i b_j |x_i - y_j| - sum_ij a_i a_j |x_i - x_j| - sum_ij b_i b_j |y_i - y_j|.

It is the squared MMD of the conditionally negative definite kernel ``-|x - y|``, so it is
non-negative, zero iff ``alpha = beta``, symmetric, and depends on the measures only. ``|z|``
is not differentiable at ``z = 0`` (identical points, duplicated rows): the distance uses the
subgradient 0 there instead of ``sqrt``'s infinite derivative, so gradients stay finite.
"""

from __future__ import annotations

import torch
from jkoflow.divergence import Divergence
from torch import Tensor


def _distances(x: Tensor, y: Tensor) -> Tensor:
    """``|x_i - y_j|`` with a zero (sub)gradient where ``x_i = y_j``."""
    sq = (x[:, None, :] - y[None, :, :]).pow(2).sum(-1)
    positive = sq > 0
    return torch.where(
        positive, torch.sqrt(torch.where(positive, sq, torch.ones_like(sq))), torch.zeros_like(sq)
    )


def _weights(w: Tensor | None, n: int, like: Tensor) -> Tensor:
    if w is None:
        return torch.full((n,), 1.0 / n, dtype=like.dtype, device=like.device)
    if w.shape != (n,):
        raise ValueError(f"weights of shape {tuple(w.shape)}: expected ({n},)")
    return w.to(like)


class EnergyDistance(Divergence):
    """``ED(alpha, beta)`` (see module docstring); clamped at 0 against round-off."""

    symmetric = True

    def __call__(self, x: Tensor, y: Tensor, a: Tensor | None = None, b: Tensor | None = None) -> Tensor:
        if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
            raise ValueError(
                f"clouds of shapes {tuple(x.shape)} and {tuple(y.shape)}: expected (n, d) and (m, d)"
            )
        a = _weights(a, x.shape[0], x)
        b = _weights(b, y.shape[0], x)
        cross = a @ _distances(x, y) @ b
        self_x = a @ _distances(x, x) @ a
        self_y = b @ _distances(y, y) @ b
        return (2 * cross - self_x - self_y).clamp_min(0.0)
