"""Conformance checks of :class:`~jkoflow.problem.Problem` plugins: exact solutions and metrics.

A problem is trusted to score runs, so its exact solution is checked against itself by
independent Monte Carlo, at ``t0``, at the end of its suggested run (``t0 + tau * steps``) and
at ``t = inf`` (the steady state, for problems that only know that):

* **mass**: ``int rho_t = 1`` by importance sampling, ``mean_k rho_t(z_k) / q(z_k)`` with
  ``z_k ~ q = N(mu, (1.5 sigma)^2)`` (``mu``, ``sigma`` the per-coordinate mean and standard
  deviation of the exact sample, widened so that ``q`` covers the tails of ``rho_t``);
* **density against samples**: for test functions ``g`` (the coordinates, their squares, and
  four random Fourier features ``cos(w . (x - mu) / sigma + b)``), ``E_{rho_t}[g]`` by the same
  importance sampling equals the mean of ``g`` over :meth:`~Problem.exact_sample`;
* **F**: ``exact_F(t)`` equals the functional's ``value`` on exact samples (carrying their exact
  log-densities), averaged over ``batches`` independent samples.

Each comparison allows ``z`` standard errors of the Monte Carlo estimates on both sides
(default 5: a correct problem fails with probability ~1e-6 per comparison; everything is
seeded, so a run is reproducible). Also checked: ``spec()`` builds a run; at step 0
(``x = x0``) every metric is a finite float, the metrics listed in
:attr:`~Problem.vanishing_at_start` are 0, and a reported ``F_exact`` equals ``exact_F(t0)``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from jkoflow.problem import Problem

from .checks import _fail


def _test_functions(
    dim: int, mu: np.ndarray, sigma: np.ndarray, rng: np.random.Generator
) -> list[tuple[str, Callable[[np.ndarray], np.ndarray]]]:
    """``(name, g)`` pairs: coordinates, squares, and 4 random Fourier features."""

    def power(j: int, p: int) -> Callable[[np.ndarray], np.ndarray]:
        return lambda x: np.asarray(x[:, j] ** p)

    def fourier(w: np.ndarray, b: float) -> Callable[[np.ndarray], np.ndarray]:
        return lambda x: np.asarray(np.cos(((x - mu) / sigma) @ w + b))

    out = [(f"x_{j}", power(j, 1)) for j in range(dim)] + [(f"x_{j}^2", power(j, 2)) for j in range(dim)]
    for k in range(4):
        w, b = rng.standard_normal(dim), float(rng.uniform(0, 2 * math.pi))
        out.append((f"cos(w_{k} . (x - mu)/sigma + b_{k})", fourier(w, b)))
    return out


def _times(problem: Problem, spec: dict[str, Any]) -> list[float]:
    solver = spec.get("solver") or {}
    tau, steps = solver.get("tau"), solver.get("steps")
    times = [float(problem.t0)]
    if isinstance(tau, (int, float)) and isinstance(steps, int) and tau > 0 and steps > 0:
        times.append(float(problem.t0 + tau * steps))
    return [*times, math.inf]


def assert_valid_problem(
    problem: Problem | Callable[[], Problem],
    *,
    n: int = 50000,
    batches: int = 32,
    batch_size: int = 2000,
    proposal: int = 200000,
    z: float = 5.0,
    start_particles: int = 64,
    seed: int = 0,
    registry: Any = None,
) -> None:
    """Check a :class:`Problem` (module docstring): ``spec()`` builds; step-0 metrics are
    finite and the declared ones vanish; at each time where :meth:`~Problem.exact_sample`
    gives samples, the exact density has mass 1 and matches them on test functions, and
    ``exact_F`` matches the functional's value on them. ``n`` exact samples against
    ``proposal`` importance-sampling points for the density, ``batches`` batches of
    ``batch_size`` exact samples for ``F``, ``z`` standard errors allowed; the start cloud is
    the spec's sampler with ``start_particles`` points. The defaults catch a 2 % error in
    ``F`` of the heat equation and a 3 % error in the standard deviation of its density.
    """
    from jkoflow.spec import SpecError, build

    if not isinstance(problem, Problem) and callable(problem):
        problem = problem()
    what = f"problem {type(problem).__name__}"
    if not isinstance(problem, Problem):
        _fail(what, f"got {type(problem).__name__}; expected a jkoflow.Problem")

    # spec() builds a run
    spec = problem.spec()
    if not isinstance(spec, dict) or not {"dim", "sampler", "terms"} <= set(spec):
        keys = sorted(spec) if isinstance(spec, dict) else type(spec).__name__
        _fail(what, f"spec() returned {keys}: expected a dict with keys 'dim', 'sampler' and 'terms'")
    small = copy.deepcopy(spec)
    if isinstance(small.get("sampler"), dict):
        small["sampler"]["n"] = start_particles
    try:
        run = build(small, registry)
    except SpecError as exc:
        _fail(what, f"spec() does not build a run: {exc}")
    dim = int(spec["dim"])

    # step 0: finite metrics, the declared ones vanish
    x0 = run.x0.double()
    ld0 = None if run.log_density0 is None else run.log_density0.double()
    metrics = problem.metrics(problem.t0, x0, x0, ld0)
    if not isinstance(metrics, dict):
        _fail(what, f"metrics() returned {type(metrics).__name__}: expected a dict of floats")
    bad = {k: v for k, v in metrics.items() if not (isinstance(v, (int, float)) and math.isfinite(v))}
    if bad:
        _fail(what, f"metrics at step 0 (x = x0, t = t0 = {problem.t0:g}) are not finite floats: {bad}")
    scale = 1.0 + float(x0.abs().mean())
    for name in sorted(problem.vanishing_at_start):
        if name not in metrics:
            _fail(
                what,
                f"vanishing_at_start lists {name!r}, which metrics() does not report (it has {sorted(metrics)})",
            )
        if not abs(metrics[name]) <= 1e-8 * scale:
            _fail(
                what,
                f"metric {name!r} = {metrics[name]:.6g} at step 0 (x = x0, t = t0 = {problem.t0:g}): "
                "declared vanishing at the start, expected 0",
            )
    exact_f0 = problem.exact_F(problem.t0)
    if (
        "F_exact" in metrics
        and exact_f0 is not None
        and not math.isclose(metrics["F_exact"], exact_f0, rel_tol=1e-9, abs_tol=1e-12)
    ):
        _fail(
            what, f"metrics reports F_exact = {metrics['F_exact']:.9g} at t0 but exact_F(t0) = {exact_f0:.9g}"
        )

    rng = np.random.default_rng(seed)
    for t in _times(problem, spec):
        first = problem.exact_sample(n, t, rng)
        if first is None:
            continue
        at = f"t = {t:g}"
        xs = np.asarray(first, dtype=float)
        if xs.shape != (n, dim) or not np.all(np.isfinite(xs)):
            _fail(
                what,
                f"exact_sample({n}, {at}) has shape {xs.shape}, finite={bool(np.all(np.isfinite(xs)))}: expected finite ({n}, {dim})",
            )
        density = problem.exact_density(xs[:1], t)
        if density is None:
            _fail(what, f"exact_sample gives samples at {at} but exact_density is None there")

        # importance sampling from a Gaussian wider than the exact sample
        mu, sigma = xs.mean(0), np.maximum(1.5 * xs.std(0), 1e-12)
        zq = mu + sigma * rng.standard_normal((proposal, dim))
        log_q = (
            -0.5 * np.sum(((zq - mu) / sigma) ** 2, 1)
            - np.sum(np.log(sigma))
            - 0.5 * dim * math.log(2 * math.pi)
        )
        p = np.asarray(problem.exact_density(zq, t), dtype=float)
        if p.shape != (proposal,) or not np.all(np.isfinite(p)) or np.any(p < 0):
            _fail(
                what,
                f"exact_density at {at} returned shape {p.shape}, finite={bool(np.all(np.isfinite(p)))}, min={p.min():.3g}: expected finite, non-negative ({proposal},)",
            )
        w = p * np.exp(-log_q)
        mass, mass_se = float(w.mean()), float(w.std() / math.sqrt(proposal))
        if not abs(mass - 1) <= z * mass_se + 1e-9:
            _fail(
                what,
                f"exact_density at {at} integrates to {mass:.5f} +- {mass_se:.1e} (importance sampling, "
                f"{proposal} points of N(mu, (1.5 sigma)^2)): expected 1",
            )
        for name, g in _test_functions(dim, mu, sigma, rng):
            gz, gx = g(zq), g(xs)
            by_density, se_d = float(np.mean(w * gz)), float(np.std(w * gz) / math.sqrt(proposal))
            by_sample, se_s = float(gx.mean()), float(gx.std() / math.sqrt(n))
            if not abs(by_density - by_sample) <= z * math.hypot(se_d, se_s) + 1e-12:
                _fail(
                    what,
                    f"E[{name}] at {at} is {by_density:.5g} +- {se_d:.1e} by exact_density but {by_sample:.5g} +- "
                    f"{se_s:.1e} over exact_sample ({n} points): the density and the samples describe different laws",
                )

        exact_f = problem.exact_F(t)
        if exact_f is None:
            continue
        values = []
        for k in range(batches):
            xb = np.asarray(problem.exact_sample(batch_size, t, rng), dtype=float)
            with np.errstate(divide="ignore"):
                lb = np.log(np.asarray(problem.exact_density(xb, t), dtype=float))
            v = run.functional.value(torch.from_numpy(xb), torch.from_numpy(lb))
            if v is None:
                break
            values.append(float(v))
        if len(values) < batches:
            continue  # a functional that cannot be evaluated from samples and log-densities
        est, se = float(np.mean(values)), float(np.std(values, ddof=1) / math.sqrt(batches))
        if not abs(est - exact_f) <= z * se + 1e-9 * (1 + abs(exact_f)):
            _fail(
                what,
                f"exact_F({at}) = {exact_f:.6g} but the functional {run.functional!r} on exact samples gives "
                f"{est:.6g} +- {se:.1e} ({batches} batches of {batch_size}): F_exact and the spec's terms disagree",
            )


__all__ = ["assert_valid_problem"]
