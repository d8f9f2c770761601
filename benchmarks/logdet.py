"""Log-determinant estimators: wall time, value error and gradient cosine against the exact method.

For each dimension d and N = 512 particles, on a random ICNN (FICNN (64, 64), softplus, learned
quadratic with ``A^T A`` spectrum in [1, 3], all parameters perturbed so the network part of
``H_u`` is not negligible), times (CPU seconds) one call ``estimator(potential, x)`` plus the backward pass of
``mean_i surrogate_i`` (what one inner iteration of the solver pays), median of ``--repeats``,
1 thread, and compares with the exact estimator (Cholesky of the closed-form Hessian; its
surrogate's gradient is exactly ``tr(H^{-1} dH/dtheta)``):

* ``rel err``: mean over particles of ``|est_i - exact_i| / |exact_i|``;
* ``mean err``: ``|mean_i est_i - mean_i exact_i| / |mean_i exact_i|`` (what ``F`` uses);
* ``cos``: cosine between the ``theta``-gradients of ``mean_i log det H_u(x_i)``;
* ``matvecs``: the budget in Hessian-vector products per particle.

Stochastic estimators precondition with ``G = A^T A + alpha I`` (the ICNN's learned quadratic,
``PotentialNet.hessian_baseline``) unless marked "no precond.".

``exact-autograd`` is the generic route (``PotentialNet.hessian`` by vmapped double
backpropagation) for reference. ``exact`` takes the route :func:`jkoflow.logdet.low_rank_route`
chooses; ``exact-dense`` (Cholesky of the ``(n, d, d)`` Hessians) and ``exact-lowrank`` (matrix
determinant lemma on :class:`jkoflow.potential.LowRankHessian`, rank ``r = sum(widths)``; only
where ``r < d``) force one route, to place the crossover ``LOW_RANK_RATIO``.

    python benchmarks/logdet.py --dims 2 8 32 128 512 --markdown
    python benchmarks/logdet.py --dims 16 32 64 128 256 --widths 8 8 \
        --only exact-dense exact-lowrank "slq p=2 m=8" --markdown
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch
from jkoflow.logdet import LogDetEstimator
from jkoflow.plugins.estimators import (
    ExactLogDet,
    HutchinsonCGLogDet,
    HutchPPLogDet,
    SLQLogDet,
)
from jkoflow.plugins.potentials import ICNN
from jkoflow.potential import PotentialNet
from jkoflow.testing.strategies import random_icnn

CONFIGS: list[tuple[str, Any]] = [
    ("exact", ExactLogDet),
    ("slq p=4 m=10 (no precond.)", lambda: SLQLogDet(probes=4, lanczos_steps=10, precondition=False)),
    (
        "hutchinson_cg p=4 (no precond.)",
        lambda: HutchinsonCGLogDet(
            probes=4, cg_rtol=1e-2, value_probes=4, lanczos_steps=10, precondition=False
        ),
    ),
    (
        "hutchpp k=4 p=4 m=10 (no precond.)",
        lambda: HutchPPLogDet(sketch=4, probes=4, lanczos_steps=10, precondition=False),
    ),
    ("slq p=1 m=4", lambda: SLQLogDet(probes=1, lanczos_steps=4)),
    ("slq p=1 m=6", lambda: SLQLogDet(probes=1, lanczos_steps=6)),
    ("slq p=1 m=8", lambda: SLQLogDet(probes=1, lanczos_steps=8)),
    ("slq p=2 m=5", lambda: SLQLogDet(probes=2, lanczos_steps=5)),
    ("slq p=2 m=8", lambda: SLQLogDet(probes=2, lanczos_steps=8)),
    ("slq p=4 m=10", lambda: SLQLogDet(probes=4, lanczos_steps=10)),
    ("slq p=8 m=30", lambda: SLQLogDet(probes=8, lanczos_steps=30)),
    (
        "hutchinson_cg p=2 (value p=2 m=8)",
        lambda: HutchinsonCGLogDet(probes=2, cg_rtol=1e-2, value_probes=2, lanczos_steps=8),
    ),
    ("hutchpp k=2 p=2 m=8", lambda: HutchPPLogDet(sketch=2, probes=2, lanczos_steps=8)),
]
"""Budgets: ``p`` probes, ``m`` Lanczos steps, ``k`` Hutch++ sketch columns, CG to ``rtol = 1e-2``.
Stochastic estimators precondition with the ICNN's quadratic part unless marked otherwise."""


class _DenseExact(ExactLogDet):
    """The exact estimator forced onto the dense Cholesky route."""

    def __call__(self, potential: PotentialNet, x: torch.Tensor, *, grad: bool = True):  # type: ignore[no-untyped-def]
        return self.from_hessian(potential.hessian(x, create_graph=grad), grad=grad)


class _LowRankExact(ExactLogDet):
    """The exact estimator forced onto the low-rank route."""

    def __call__(self, potential: PotentialNet, x: torch.Tensor, *, grad: bool = True):  # type: ignore[no-untyped-def]
        return self.from_low_rank(
            potential.transport_and_low_rank_hessian(x, create_graph=grad)[1], grad=grad
        )


class _GenericHessian(LogDetEstimator):
    """The exact estimator on the generic autograd Hessian (``PotentialNet.hessian``)."""

    def __call__(self, potential: PotentialNet, x: torch.Tensor, *, grad: bool = True):  # type: ignore[no-untyped-def]
        from jkoflow.functional import LogDet

        hess = PotentialNet.hessian(potential, x, create_graph=grad)
        logdet = torch.linalg.slogdet(hess)[1]
        return LogDet(value=logdet.detach(), surrogate=logdet)

    def matvecs(self, dim: int) -> int:
        return dim


def make_icnn(dim: int, seed: int = 0, widths: tuple[int, ...] = (64, 64)) -> ICNN:
    """The shared fixed-seed test ICNN (:func:`jkoflow.testing.strategies.random_icnn`)."""
    return random_icnn(dim, seed=seed, widths=widths)  # type: ignore[return-value]


def measure(
    estimator: LogDetEstimator, net: PotentialNet, x: torch.Tensor, repeats: int
) -> tuple[float, torch.Tensor, torch.Tensor]:
    """Median CPU seconds (``time.process_time``: on 1 thread, robust to other jobs sharing
    the machine) of value + gradient, the last value and the flattened gradient."""
    params = list(net.parameters())
    times = []
    for r in range(repeats):
        torch.manual_seed(100 + r)
        start = time.process_time()
        out = estimator(net, x)
        grads = torch.autograd.grad(out.surrogate.mean(), params, allow_unused=True)
        times.append(time.process_time() - start)
    flat = torch.cat([(torch.zeros_like(p) if g is None else g).flatten() for g, p in zip(grads, params)])
    return statistics.median(times), out.value, flat


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dims", type=int, nargs="+", default=[2, 8, 32, 128, 512])
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--autograd-max-dim", type=int, default=128, help="largest d for exact-autograd")
    parser.add_argument("--widths", type=int, nargs="+", default=[64, 64], help="the ICNN's hidden widths")
    parser.add_argument("--only", nargs="+", default=None, help="estimator names to run (and exact)")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    rank = sum(args.widths)
    for dim in args.dims:
        net = make_icnn(dim, widths=tuple(args.widths))
        x = torch.randn(args.n, dim, generator=torch.Generator().manual_seed(1))
        t_exact, v_exact, g_exact = measure(ExactLogDet(), net, x, args.repeats)
        configs = list(CONFIGS)
        configs.insert(1, ("exact-dense", _DenseExact))
        if rank < dim:
            configs.insert(2, ("exact-lowrank", _LowRankExact))
        if dim <= args.autograd_max_dim:
            configs.insert(1, ("exact-autograd", _GenericHessian))
        if args.only:
            configs = [c for c in configs if c[0] in args.only or c[0] == "exact"]
        for name, make in configs:
            estimator = make()
            if name == "exact":
                seconds, value, grad = t_exact, v_exact, g_exact
            else:
                seconds, value, grad = measure(estimator, net, x, args.repeats)
            rel = float(((value - v_exact).abs() / v_exact.abs()).mean())
            mean_err = float((value.mean() - v_exact.mean()).abs() / v_exact.mean().abs())
            cos = float(torch.nn.functional.cosine_similarity(grad.double(), g_exact.double(), dim=0))
            row = {
                "d": dim,
                "r": rank,
                "estimator": name,
                "matvecs": estimator.matvecs(dim),
                "seconds": seconds,
                "vs_exact": seconds / t_exact,
                "rel_err": rel,
                "mean_err": mean_err,
                "cos": cos,
                "mean_logdet": float(v_exact.mean()),
            }
            rows.append(row)
            print(
                f"d={dim:4d} {name:45s} matvecs={row['matvecs']:5d} {seconds:8.3f}s ({row['vs_exact']:.2f}x exact) "
                f"rel err {rel:.4f} mean err {mean_err:.4f} cos {cos:.4f}",
                flush=True,
            )
    if args.markdown:
        print(
            f"\n| d | r | estimator | matvecs/particle | CPU s (N={args.n}, 1 thread) | time / exact | rel err | mean err | grad cos |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            print(
                f"| {r['d']} | {r['r']} | {r['estimator']} | {r['matvecs']} | {r['seconds']:.3f} | {r['vs_exact']:.2f} | "
                f"{r['rel_err']:.4f} | {r['mean_err']:.4f} | {r['cos']:.4f} |"
            )


if __name__ == "__main__":
    main()
