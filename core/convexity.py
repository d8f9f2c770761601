"""Where and how densely convexity is checked: regions and the deterministic sweep
(``jkoflow.convexity``; torch and numpy only, no hypothesis or pytest).

The runtime option ``check_convexity = true`` of the ``potential`` and ``interaction`` terms
(:mod:`jkoflow.plugins.energies`) uses :func:`sweep_convexity` directly; the testing kit's
checks (:mod:`jkoflow.testing.checks`) add hypothesis' shrinking search in front of it.
:mod:`jkoflow.testing.convexity` re-exports this module.

A potential net is only ever evaluated where the particles are, so its convexity must be checked
there (and in the tails of the clouds it will be run on), not in an arbitrary small box. A
:data:`Region` is resolved by :func:`resolve_region` into a box ``[low, high]`` plus, when the
author gave them, the points themselves:

* ``None``: the default box ``[-5, 5]^d`` (:data:`DEFAULT_HALF_WIDTH`), which holds every
  coordinate of an ``N(0, I)`` cloud but for a fraction ``2 (1 - Phi(5)) = 5.7e-7`` of them;
* ``s`` (a number): ``[-s, s]^d``; ``(low, high)``: the box with those corners;
* an ``(m, d)`` array or tensor of points: their bounding box, widened by 10 % of its width
  on every side, and the points themselves;
* a sampler (an object with ``sample(n, generator)`` and ``dim``): 2048 seeded draws of it,
  treated as points.

:func:`sweep_convexity` is the dense deterministic part of the convexity checks (the
hypothesis search of :mod:`jkoflow.testing.checks` is the shrinking part). On ``budget``
quasi-random points ``z`` (scrambled Sobol: half uniform on the box, half Gaussian around its
centre with standard deviation a third of the half-width, clipped to the box) plus the given
points, it tests

* ``lambda_min(H_f(z)) >= alpha`` (batched ``eigvalsh``, when ``f`` is differentiable by torch or a
  :class:`PotentialNet` with its own ``hessian``), and
* the midpoint inequality on short segments ``[z - h v, z + h v]`` (``v`` unit vectors: the
  coordinate axes and two random directions, ``h`` 1 % of the box's mean width), forward passes
  only, so a net whose ``hessian`` is wrong cannot hide a non-convex ``forward``:
  ``f(z + h v) + f(z - h v) - 2 f(z) >= alpha h^2``.

It returns the worst violation as a :class:`Counterexample`, or ``None``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import numpy as np
import torch
from torch import Tensor

ConvexFn = Callable[[Tensor], Tensor]
"""A function ``f: (n, d) -> (n,)`` applied row by row (a ``PotentialNet``, a potential ``V``)."""

Bounds = float | tuple[Sequence[float] | Tensor, Sequence[float] | Tensor]
"""A box: ``s`` for ``[-s, s]^d``, or ``(low, high)`` corner vectors."""

Region = Bounds | Tensor | np.ndarray | Any | None
"""Where convexity is checked: ``None`` (the default box), a :data:`Bounds` box, an ``(m, d)``
array of points, or a sampler (see the module docstring)."""

DEFAULT_HALF_WIDTH = 5.0
"""Half-width of the default box ``[-5, 5]^d``: it covers the tails of standard clouds."""

SAMPLER_POINTS = 2048
"""Draws taken from a sampler given as the region."""

DEFAULT_SWEEP = 8192
"""Quasi-random points of the deterministic sweep in the ``assert_*`` checks."""


@attrs.define(frozen=True)
class Counterexample:
    """Where convexity fails.

    ``kind == "jensen"``: ``f(z) > t f(x) + (1 - t) f(y) - alpha/2 t (1-t) |x-y|^2`` at
    ``z = t x + (1 - t) y`` (``lhs = f(z)``, ``rhs`` the right side).
    ``kind == "hessian"``: the smallest eigenvalue of ``H_f(z)`` is ``lhs < rhs = alpha``.
    ``kind == "value"``: ``f(z) = lhs`` is NaN or ``-inf``.
    """

    kind: str
    x: list[float]
    y: list[float]
    t: float
    z: list[float]
    lhs: float
    rhs: float
    alpha: float

    def describe(self, name: str = "f") -> str:
        fmt = lambda v: "[" + ", ".join(f"{c:.6g}" for c in v) + "]"
        if self.kind == "value":
            return f"{name}({fmt(self.z)}) = {self.lhs} (NaN or -inf: not a convex function's value)"
        if self.kind == "jensen":
            strong = f" - {self.alpha:g}/2 t(1-t)|x-y|^2" if self.alpha else ""
            return (
                f"Jensen's inequality fails on the segment x={fmt(self.x)}, y={fmt(self.y)} at t={self.t:.6g} "
                f"(z = t x + (1-t) y = {fmt(self.z)}): {name}(z) = {self.lhs:.9g} > "
                f"t {name}(x) + (1-t) {name}(y){strong} = {self.rhs:.9g}"
            )
        where = (
            ""
            if self.x == self.y
            else f" (found on the segment x={fmt(self.x)}, y={fmt(self.y)}, t={self.t:.6g})"
        )
        return f"the Hessian of {name} at z={fmt(self.z)} has smallest eigenvalue {self.lhs:.6g} < {self.rhs:g}{where}"


@attrs.define(frozen=True)
class ResolvedRegion:
    """A box ``[low, high]`` (float64 vectors), the author's points in it (or ``None``) and a
    description for messages."""

    low: np.ndarray
    high: np.ndarray
    points: Tensor | None
    description: str


def _fmt_box(low: np.ndarray, high: np.ndarray) -> str:
    if np.all(low == low[0]) and np.all(high == high[0]):
        return f"[{low[0]:.3g}, {high[0]:.3g}]^{low.size}"
    return "[" + ", ".join(f"[{lo:.3g}, {hi:.3g}]" for lo, hi in zip(low, high)) + "]"


def box_of(bounds: Bounds, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """The corners of a :data:`Bounds` box in ``R^dim`` (``ValueError`` naming a bad box)."""
    if isinstance(bounds, bool) or not isinstance(bounds, (int, float, tuple, list)):
        raise ValueError(  # noqa: TRY004 - the checks report bad arguments as ValueError
            f"bounds={bounds!r}: expected a half-width s > 0 or a pair (low, high)"
        )
    if isinstance(bounds, (int, float)):
        if not (math.isfinite(bounds) and bounds > 0):
            raise ValueError(f"bounds={bounds}: expected a positive, finite half-width")
        return np.full(dim, -float(bounds)), np.full(dim, float(bounds))
    if len(bounds) != 2:
        raise ValueError(f"bounds of length {len(bounds)}: expected a pair (low, high)")
    low, high = (
        np.asarray(torch.as_tensor(b, dtype=torch.float64).detach().cpu(), dtype=float).reshape(-1)
        for b in bounds
    )
    if low.shape != (dim,) or high.shape != (dim,) or not np.all(low < high):
        raise ValueError(f"bounds=({low}, {high}): expected two vectors of length {dim} with low < high")
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
        raise ValueError(f"bounds=({low}, {high}): expected finite corners")
    return low, high


def resolve_region(region: Region, dim: int, *, seed: int = 0) -> ResolvedRegion:
    """Turn a :data:`Region` into a box, points and a description (see the module docstring)."""
    if region is None:
        low, high = box_of(DEFAULT_HALF_WIDTH, dim)
        return ResolvedRegion(low, high, None, f"the default box {_fmt_box(low, high)}")
    if isinstance(region, (int, float, tuple, list)) and not isinstance(region, bool):
        low, high = box_of(region, dim)  # type: ignore[arg-type]  # box_of names a bad box
        return ResolvedRegion(low, high, None, f"the box {_fmt_box(low, high)}")
    source = "the given points"
    sample = getattr(region, "sample", None)
    if callable(sample):
        sampler_dim = getattr(region, "dim", dim)
        if sampler_dim != dim:
            raise ValueError(f"sampler {type(region).__name__} has dim={sampler_dim}: expected {dim}")
        drawn = sample(SAMPLER_POINTS, torch.Generator().manual_seed(seed))
        region = drawn[0] if isinstance(drawn, tuple) else drawn
        source = f"{SAMPLER_POINTS} draws of the sampler"
    if isinstance(region, (Tensor, np.ndarray)):
        pts = torch.as_tensor(np.asarray(region.detach().cpu() if isinstance(region, Tensor) else region))
        pts = pts.to(torch.float64)
        if pts.ndim != 2 or pts.shape[1] != dim or pts.shape[0] < 1:
            raise ValueError(f"region points of shape {tuple(pts.shape)}: expected (m, {dim}) with m >= 1")
        if not bool(torch.isfinite(pts).all()):
            raise ValueError("region points contain NaN or inf")
        lo, hi = pts.min(0).values.numpy(), pts.max(0).values.numpy()
        margin = np.maximum(0.1 * (hi - lo), 0.1)
        low, high = lo - margin, hi + margin
        return ResolvedRegion(
            low,
            high,
            pts,
            f"{source} ({pts.shape[0]} in d={dim}) and their box {_fmt_box(low, high)}",
        )
    raise ValueError(
        f"region of type {type(region).__name__}: expected None, a half-width, (low, high), "
        "an (m, d) array of points or a sampler"
    )


def sweep_points(region: ResolvedRegion, budget: int, seed: int) -> Tensor:
    """``budget`` scrambled-Sobol points (half uniform on the box, half Gaussian around its
    centre, clipped) followed by the region's own points; float64 ``(m, d)``."""
    low = torch.as_tensor(region.low)
    high = torch.as_tensor(region.high)
    dim = low.numel()
    half = budget // 2
    parts = []
    if budget > 0:
        sobol = torch.quasirandom.SobolEngine(dim, scramble=True, seed=seed)
        u = sobol.draw(budget, dtype=torch.float64).clamp(1e-9, 1 - 1e-9)
        centre, half_width = 0.5 * (low + high), 0.5 * (high - low)
        parts.append(low + (high - low) * u[: budget - half])
        gauss = centre + (half_width / 3) * math.sqrt(2) * torch.erfinv(2 * u[budget - half :] - 1)
        parts.append(torch.minimum(torch.maximum(gauss, low), high))
    if region.points is not None:
        parts.append(region.points)
    if not parts:
        raise ValueError("an empty sweep: give budget > 0 or points")
    return torch.cat(parts)


def as_float64(f: ConvexFn) -> ConvexFn:
    """``f`` itself, or a float64 copy when it is a ``torch.nn.Module`` (so checks are not
    drowned by float32 rounding)."""
    if isinstance(f, torch.nn.Module):
        return copy.deepcopy(f).double()
    return f


def row_hessian(f: ConvexFn, z: Tensor) -> Tensor | None:
    """Hessians ``(n, d, d)`` of a row-wise ``f`` at the rows of ``z``: a :class:`PotentialNet`'s
    own ``hessian``, else autograd; ``None`` when ``f`` is not differentiable by torch (e.g.
    computed in numpy). The ``hessian`` argument of :func:`sweep_convexity`."""
    from jkoflow.potential import PotentialNet

    if isinstance(f, PotentialNet):
        return f.hessian(z, create_graph=False)
    with torch.enable_grad():
        z = z.detach().requires_grad_(True)
        out = f(z)
        if not isinstance(out, Tensor) or not out.requires_grad:
            return None
        (g,) = torch.autograd.grad(out.sum(), z, create_graph=True)
        rows = []
        for j in range(z.shape[1]):
            if not g.requires_grad:  # affine f: zero Hessian
                rows.append(torch.zeros_like(z))
                continue
            (r,) = torch.autograd.grad(g[:, j].sum(), z, retain_graph=True, allow_unused=True)
            rows.append(torch.zeros_like(z) if r is None else r)
    h = torch.stack(rows, dim=1).detach()
    return 0.5 * (h + h.transpose(1, 2))


def _values(f: ConvexFn, z: Tensor) -> Tensor:
    with torch.no_grad():
        out = f(z)
    if not isinstance(out, Tensor) or out.shape != (z.shape[0],):
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"returned {shape} for input of shape {tuple(z.shape)}: expected ({z.shape[0]},)")
    return out.to(torch.float64)


def sweep_convexity(
    f: ConvexFn,
    dim: int,
    alpha: float,
    region: ResolvedRegion,
    *,
    budget: int = DEFAULT_SWEEP,
    seed: int = 0,
    hessian: Callable[[Tensor], Tensor | None] | None = None,
    rtol: float = 1e-8,
    atol: float = 1e-10,
    batch: int = 2048,
) -> Counterexample | None:
    """The worst violation of ``alpha``-strong convexity of ``f`` on the sweep of ``region``
    (module docstring), or ``None``. ``hessian(z)`` gives ``(m, d, d)`` Hessians or ``None``
    (then only the midpoint inequality is tested). ``f`` must be float64-ready."""
    z_all = sweep_points(region, budget, seed)
    gen = torch.Generator().manual_seed(seed)
    width = float(np.mean(region.high - region.low))
    h = 0.01 * width
    rand = torch.randn(2, dim, generator=gen, dtype=torch.float64)
    dirs = torch.cat([torch.eye(dim, dtype=torch.float64), rand / rand.norm(dim=1, keepdim=True)])
    worst: tuple[float, Counterexample] | None = None

    def consider(score: float, ce: Counterexample) -> None:
        nonlocal worst
        if worst is None or score < worst[0]:
            worst = (score, ce)

    for start in range(0, z_all.shape[0], batch):
        z = z_all[start : start + batch]
        fz = _values(f, z)
        bad = torch.isnan(fz) | (fz == -math.inf)
        if bool(bad.any()):
            i = int(bad.nonzero()[0])
            zi = z[i].tolist()
            return Counterexample("value", zi, zi, 0.5, zi, float(fz[i]), math.nan, alpha)
        finite = torch.isfinite(fz)
        for v in dirs:
            fp, fm = _values(f, z + h * v), _values(f, z - h * v)
            ok = finite & torch.isfinite(fp) & torch.isfinite(fm)
            # midpoint form of Jensen with the strong-convexity gap: (f(x) + f(y))/2 - f(z) >= alpha h^2/2
            rhs = 0.5 * (fp + fm) - 0.5 * alpha * h * h
            tol = atol + rtol * (fp.abs() + fm.abs() + fz.abs())
            excess = torch.where(ok, fz - rhs - tol, torch.full_like(fz, -math.inf))
            i = int(excess.argmax())
            if float(excess[i]) > 0:
                x, y = (z[i] - h * v).tolist(), (z[i] + h * v).tolist()
                ce = Counterexample("jensen", x, y, 0.5, z[i].tolist(), float(fz[i]), float(rhs[i]), alpha)
                consider(-float(excess[i]) / (h * h), ce)
        hess = hessian(z[finite]) if hessian is not None and bool(finite.any()) else None
        if hess is not None:
            eig = torch.linalg.eigvalsh(0.5 * (hess + hess.transpose(1, 2)))
            scale = eig.abs().max(dim=1).values
            lam = torch.where(torch.isfinite(eig).all(dim=1), eig[:, 0], torch.full_like(scale, -math.inf))
            short = lam - (alpha - atol - rtol * 1e2 * torch.nan_to_num(scale, posinf=0.0))
            i = int(short.argmin())
            if float(short[i]) < 0:
                zi = z[finite][i].tolist()
                consider(
                    float(lam[i]) - alpha,
                    Counterexample("hessian", zi, zi, 0.5, zi, float(lam[i]), alpha, alpha),
                )
    return None if worst is None else worst[1]


__all__ = [
    "DEFAULT_HALF_WIDTH",
    "DEFAULT_SWEEP",
    "SAMPLER_POINTS",
    "Bounds",
    "ConvexFn",
    "Counterexample",
    "Region",
    "ResolvedRegion",
    "as_float64",
    "box_of",
    "resolve_region",
    "row_hessian",
    "sweep_convexity",
    "sweep_points",
]
