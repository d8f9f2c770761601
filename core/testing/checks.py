"""Property checks a plugin author calls: ``assert_valid_*`` for every plugin interface.

Each check raises :class:`ConformanceError` (an ``AssertionError``, so pytest reports it as a
plain failure) whose message names the plugin, the property that failed, the inputs and the
numbers on both sides. Convexity is property-tested with hypothesis: Jensen's inequality

    f(t x + (1 - t) y) <= t f(x) + (1 - t) f(y) - alpha/2 t (1 - t) |x - y|^2

along drawn segments ``[x, y]`` of a box, and ``lambda_min(H_f(z)) >= alpha`` at a point of each
segment; a failure is shrunk to a simple counterexample (coordinates near 0, ``t`` near 0.5)
reported in :class:`ConvexityError` (``.counterexample``).

All checks run in float64 on small inputs (a few to a few dozen points, ``d <= 3``) so that a
full conformance run over every registered plugin takes seconds on one thread.
"""

from __future__ import annotations

import copy
import inspect
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn

import attrs
import numpy as np
import torch
from hypothesis import HealthCheck, Verbosity, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from jkoflow.convexity import (
    DEFAULT_SWEEP,
    Bounds,
    ConvexFn,
    Counterexample,
    Region,
    as_float64,
    box_of,
    resolve_region,
    row_hessian,
    sweep_convexity,
)
from jkoflow.divergence import Divergence
from jkoflow.functional import Functional, LogDet, Need, StepContext
from jkoflow.logdet import LogDetError, LogDetEstimator
from jkoflow.potential import PotentialNet
from jkoflow.spec import INJECTED
from torch import Tensor

from .strategies import clouds, random_convex_potential


class ConformanceError(AssertionError):
    """A plugin violates the jkoflow plugin contract; the message says which part and how."""


class ConvexityError(ConformanceError):
    """A potential is not (``alpha``-strongly) convex; ``counterexample`` says where."""

    def __init__(self, message: str, counterexample: Counterexample) -> None:
        super().__init__(message)
        self.counterexample = counterexample


class _Violation(Exception):
    """Raised inside the hypothesis search; carries the counterexample out of it."""

    def __init__(self, counterexample: Counterexample) -> None:
        super().__init__(counterexample.describe())
        self.counterexample = counterexample


# --- helpers ----------------------------------------------------------------------------
def _settings(max_examples: int) -> settings:
    """Quiet, database-free, deadline-free hypothesis settings (usable inside other tests,
    inside ``@given`` tests, and at run time inside a CLI run)."""
    return settings(
        max_examples=max_examples,
        database=None,
        deadline=None,
        derandomize=False,
        verbosity=Verbosity.quiet,
        report_multiple_bugs=False,
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )


def _inside_hypothesis() -> bool:
    """Whether we run inside a hypothesis test: nested ``@given`` is refused there, so the
    checks fall back to a seeded random search (the outer test does the shrinking)."""
    from hypothesis.control import currently_in_test_context

    return bool(currently_in_test_context())


def _run_property(
    probe: Callable[..., None],
    strategies: dict[str, st.SearchStrategy[Any]],
    fallback: Callable[[np.random.Generator], dict[str, Any]],
    max_examples: int,
    seed: int,
) -> None:
    """Run ``probe(**example)`` on hypothesis-drawn, shrunk examples; inside another
    hypothesis test, on ``max_examples`` examples from ``fallback(rng)`` instead."""
    if _inside_hypothesis():
        rng = np.random.default_rng(seed)
        for _ in range(max_examples):
            probe(**fallback(rng))
        return
    try:
        hypothesis_seed(seed)(_settings(max_examples)(given(**strategies)(probe)))()
    except ConformanceError as exc:
        # hypothesis attaches its "Falsifying example" notes; the message already holds the example
        if hasattr(exc, "__notes__"):
            del exc.__notes__
        raise exc.with_traceback(None) from None


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed torch inside, restoring the caller's RNG state afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _name(obj: Any) -> str:
    """A short name: a function's ``__name__``, else the class name (never a module's repr)."""
    name = getattr(obj, "__name__", None)
    return name if isinstance(name, str) else type(obj).__name__


def _fail(what: str, message: str) -> NoReturn:
    raise ConformanceError(f"{what}: {message}")


def _close(a: Tensor, b: Tensor, rtol: float, atol: float) -> tuple[bool, float]:
    err = float((a - b).abs().max()) if a.numel() else 0.0
    return bool(torch.allclose(a, b, rtol=rtol, atol=atol)), err


# --- convexity --------------------------------------------------------------------------
def find_convexity_counterexample(
    f: ConvexFn,
    dim: int,
    alpha: float = 0.0,
    *,
    bounds: Bounds = 3.0,
    max_examples: int = 100,
    seed: int = 0,
    hessian: bool = True,
    rtol: float = 1e-8,
    atol: float = 1e-10,
) -> Counterexample | None:
    """Search for a point where ``f`` is not ``alpha``-strongly convex; ``None`` if none found.

    Hypothesis draws segments ``[x, y]`` in the box ``bounds`` and ``t`` in ``[0, 1]``; Jensen's
    inequality is checked at ``t`` and at ``t = 1/4, 1/2, 3/4`` (float64), and, when
    ``hessian`` and ``f`` is differentiable by torch, ``lambda_min(H_f) >= alpha`` at
    ``z = t x + (1 - t) y``. Inequalities are tested up to ``atol + rtol * (|f(x)| + |f(y)| +
    |f(z)|)``. A failure is shrunk and returned as a :class:`Counterexample`. ``+inf`` at an end
    point satisfies Jensen trivially (extended-valued convex functions); ``+inf`` strictly
    inside a segment with finite ends, ``-inf`` or NaN anywhere, count as violations.
    """
    low, high = box_of(bounds, dim)
    f64 = as_float64(f)
    coords = st.tuples(
        *(st.floats(lo, hi, allow_nan=False, allow_subnormal=False) for lo, hi in zip(low, high))
    )
    state = {"hessian": hessian}

    def evaluate(points: Tensor) -> Tensor:
        with torch.no_grad():
            out = f64(points)
        if not isinstance(out, Tensor) or out.shape != (points.shape[0],):
            shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ConformanceError(
                f"{_name(f)} returned {shape} for input of shape {tuple(points.shape)}: expected ({points.shape[0]},)"
            )
        return out.to(torch.float64)

    def probe(x: tuple[float, ...], y: tuple[float, ...], t: float) -> None:
        xt = torch.tensor(x, dtype=torch.float64)
        yt = torch.tensor(y, dtype=torch.float64)
        ts = torch.tensor([t, 0.25, 0.5, 0.75], dtype=torch.float64)
        zs = ts[:, None] * xt + (1 - ts[:, None]) * yt
        vals = evaluate(torch.cat([xt[None], yt[None], zs]))
        fx, fy, fz = vals[0], vals[1], vals[2:]
        for end, pt in ((fx, x), (fy, y)):
            if bool(torch.isnan(end)) or float(end) == -math.inf:
                raise _Violation(
                    Counterexample("value", list(x), list(y), t, list(pt), float(end), math.nan, alpha)
                )
        if float(fx) == math.inf or float(fy) == math.inf:
            return  # Jensen holds trivially with an infinite end point
        gap = 0.5 * alpha * ts * (1 - ts) * float((xt - yt).pow(2).sum())
        for i, ti in enumerate(ts.tolist()):
            rhs = ti * fx + (1 - ti) * fy - gap[i]
            lhs = fz[i]
            bad_value = bool(torch.isnan(lhs) or torch.isnan(rhs) or lhs == -math.inf or rhs == -math.inf)
            if not bad_value:
                if rhs == math.inf:
                    continue
                tol = atol + rtol * float(fx.abs() + fy.abs() + (lhs.abs() if torch.isfinite(lhs) else 0))
                if not lhs > rhs + tol:
                    continue
            raise _Violation(
                Counterexample("jensen", list(x), list(y), ti, zs[i].tolist(), float(lhs), float(rhs), alpha)
            )
        if state["hessian"] and torch.isfinite(vals).all():
            h = row_hessian(f64, zs[:1])
            if h is None:
                state["hessian"] = False
                return
            eig = torch.linalg.eigvalsh(h[0])
            tol = atol + rtol * 1e2 * float(eig.abs().max())
            if not bool(torch.isfinite(eig).all()) or float(eig[0]) < alpha - tol:
                raise _Violation(
                    Counterexample(
                        "hessian", list(x), list(y), t, zs[0].tolist(), float(eig[0]), alpha, alpha
                    )
                )

    def fallback(rng: np.random.Generator) -> dict[str, Any]:
        return {
            "x": tuple(rng.uniform(low, high)),
            "y": tuple(rng.uniform(low, high)),
            "t": float(rng.uniform()),
        }

    try:
        _run_property(
            probe, {"x": coords, "y": coords, "t": st.floats(0.0, 1.0)}, fallback, max_examples, seed
        )
    except _Violation as exc:
        return exc.counterexample
    return None


def _region_of(region: Region, bounds: Bounds | None) -> Region:
    """``bounds`` (the older name of a box region) or ``region``; not both."""
    if bounds is not None and region is not None:
        raise ValueError("give region= or bounds= (a box), not both")
    return bounds if bounds is not None else region


def _hessian_fn(f: ConvexFn) -> Callable[[Tensor], Tensor | None]:
    return lambda z: row_hessian(f, z)


def find_violation(
    f: ConvexFn,
    dim: int,
    alpha: float = 0.0,
    *,
    region: Region = None,
    max_examples: int = 100,
    sweep: int = DEFAULT_SWEEP,
    seed: int = 0,
    hessian: bool = True,
    rtol: float = 1e-8,
    atol: float = 1e-10,
) -> tuple[Counterexample | None, str]:
    """Both searches for a violation of ``alpha``-strong convexity on ``region`` (a
    :data:`~jkoflow.testing.convexity.Region`): hypothesis' shrinking search over segments of
    the region's box, then the dense deterministic sweep
    (:func:`jkoflow.testing.convexity.sweep_convexity`) on ``sweep`` quasi-random points and
    the region's own points. Returns the counterexample (or ``None``) and a sentence stating
    the region and the budget, for messages."""
    resolved = resolve_region(region, dim, seed=seed)
    f64 = as_float64(f)
    budget = (
        f"checked on {resolved.description}: {max_examples} hypothesis segments"
        f"{f' and a sweep of {sweep} quasi-random points' if sweep else ''}"
        f"{' (Hessian eigenvalues and midpoint inequalities)' if hessian else ' (midpoint inequalities)'}"
    )
    found = find_convexity_counterexample(
        f64,
        dim,
        alpha,
        bounds=(torch.as_tensor(resolved.low), torch.as_tensor(resolved.high)),
        max_examples=max_examples,
        seed=seed,
        hessian=hessian,
        rtol=rtol,
        atol=atol,
    )
    if found is None and (sweep or resolved.points is not None):
        try:
            found = sweep_convexity(
                f64,
                dim,
                alpha,
                resolved,
                budget=sweep,
                seed=seed,
                hessian=_hessian_fn(f64) if hessian else None,
                rtol=rtol,
                atol=atol,
            )
        except ValueError as exc:
            raise ConformanceError(f"{_name(f)} {exc}") from None
        if found is not None:
            budget += "; found by the sweep"
    return found, budget


def assert_strongly_convex(
    potential: ConvexFn,
    alpha: float,
    dim: int | None = None,
    *,
    region: Region = None,
    bounds: Bounds | None = None,
    max_examples: int = 100,
    sweep: int = DEFAULT_SWEEP,
    seed: int = 0,
    hessian: bool = True,
    rtol: float = 1e-8,
    atol: float = 1e-10,
) -> None:
    """Assert ``potential`` is ``alpha``-strongly convex where it will be used.

    ``potential`` maps ``(n, d)`` to ``(n,)`` row by row (a :class:`PotentialNet`, a potential
    ``V`` or a kernel ``W``); ``dim`` defaults to ``potential.dim``. ``region`` says where
    (:data:`~jkoflow.testing.convexity.Region`: default the box ``[-5, 5]^d``, or a box, the
    author's points, or a sampler the potential is run on); ``bounds`` is the older name of a
    box region. Two searches (:func:`find_violation`): hypothesis draws ``max_examples``
    segments and shrinks a failure (:func:`find_convexity_counterexample`), then ``sweep``
    quasi-random points are tested deterministically. Raises :class:`ConvexityError` with the
    :class:`Counterexample`, the region and the budget in its message.
    """
    dim = dim if dim is not None else getattr(potential, "dim", None)
    if dim is None:
        raise ValueError(f"{_name(potential)} has no attribute 'dim': pass dim=")
    found, budget = find_violation(
        potential,
        dim,
        alpha,
        region=_region_of(region, bounds),
        max_examples=max_examples,
        sweep=sweep,
        seed=seed,
        hessian=hessian,
        rtol=rtol,
        atol=atol,
    )
    if found is not None:
        what = "convex" if not alpha else f"{alpha:g}-strongly convex"
        raise ConvexityError(f"{_name(potential)} is not {what}: {found.describe('f')} ({budget})", found)


def assert_convex(
    potential: ConvexFn,
    dim: int | None = None,
    *,
    region: Region = None,
    bounds: Bounds | None = None,
    max_examples: int = 100,
    sweep: int = DEFAULT_SWEEP,
    seed: int = 0,
    hessian: bool = True,
    rtol: float = 1e-8,
    atol: float = 1e-10,
) -> None:
    """Assert ``potential`` is convex on ``region`` (see :func:`assert_strongly_convex`: Jensen
    along drawn segments, PSD Hessians, a dense sweep); raises :class:`ConvexityError` with a
    counterexample."""
    assert_strongly_convex(
        potential,
        0.0,
        dim,
        region=region,
        bounds=bounds,
        max_examples=max_examples,
        sweep=sweep,
        seed=seed,
        hessian=hessian,
        rtol=rtol,
        atol=atol,
    )


# --- potential networks -----------------------------------------------------------------
def _central_gradient(f: Callable[[Tensor], Tensor], x: Tensor, h: float) -> Tensor:
    """``d/dx_j f(x)`` by central differences, column by column; ``f: (n, d) -> (n, ...)``."""
    cols = []
    for j in range(x.shape[1]):
        e = torch.zeros_like(x)
        e[:, j] = h
        cols.append((f(x + e) - f(x - e)) / (2 * h))
    return torch.stack(cols, dim=-1)


def _jensen_gap(net: PotentialNet, x: Tensor, y: Tensor) -> Tensor:
    """``mean(1/2 u(x) + 1/2 u(y) - u((x + y)/2))``: positive for convex ``u``."""
    return (0.5 * net(x) + 0.5 * net(y) - net(0.5 * (x + y))).mean()


def _check_fused_hessians(net: PotentialNet, x: Tensor, t: Tensor, hess: Tensor, what: str) -> None:
    """``transport_and_hessian`` (the solver's one-sweep path) and, where ``hessian_rank()`` is not
    ``None``, ``transport_and_low_rank_hessian`` (the low-rank log-det) against ``transport`` and
    ``hessian``; the factored form's shapes, its lower-triangular ``L`` with a positive diagonal,
    and its rank."""
    n, d = x.shape
    t2, h2 = net.transport_and_hessian(x, create_graph=False)
    ok, err = _close(t2, t, 1e-8, 1e-8)
    ok2, err2 = _close(h2, hess, 1e-8, 1e-8)
    if not (ok and ok2):
        _fail(
            what,
            f"transport_and_hessian(x) differs from (transport(x), hessian(x)) by {max(err, err2):.3g}: "
            "the solver's hot path must give the same T and H_u",
        )
    rank = net.hessian_rank()
    if rank is None:
        return
    if not (isinstance(rank, int) and rank >= 1):
        _fail(what, f"hessian_rank() returned {rank!r}: expected a positive int or None")
    t3, low = net.transport_and_low_rank_hessian(x, create_graph=False)
    shapes = (
        tuple(low.chol.shape),
        tuple(low.basis.shape),
        tuple(low.coefficients.shape),
        tuple(low.weights.shape),
    )
    if shapes != ((d, d), (d, rank), (n, rank, rank), (n, rank)):
        _fail(
            what,
            f"transport_and_low_rank_hessian(x): LowRankHessian shapes (chol, basis, coefficients, weights) "
            f"{shapes}; expected {((d, d), (d, rank), (n, rank, rank), (n, rank))} for hessian_rank() = {rank}",
        )
    diag = torch.diagonal(low.chol)
    if not (torch.equal(low.chol, torch.tril(low.chol)) and bool((diag > 0).all())):
        _fail(
            what, "LowRankHessian.chol is not lower-triangular with a positive diagonal (a Cholesky factor)"
        )
    ok, err = _close(t3, t, 1e-8, 1e-8)
    ok2, err2 = _close(low.dense(), hess, 1e-8, 1e-8)
    if not (ok and ok2):
        _fail(
            what,
            f"transport_and_low_rank_hessian(x) differs from (transport(x), hessian(x)) by {max(err, err2):.3g}: "
            "L (I + W diag(c) W^T) L^T with W = V C must be H_u",
        )


def assert_valid_potential_net(
    net: PotentialNet | Callable[[], PotentialNet],
    *,
    n: int = 8,
    seed: int = 0,
    max_examples: int = 30,
    region: Region = None,
    bounds: Bounds | None = None,
    sweep: int = DEFAULT_SWEEP,
    adversarial_steps: int = 3,
) -> None:
    """Check a :class:`PotentialNet` against the contract.

    * ``forward``: ``(n, d) -> (n,)``, row by row (a row's value does not depend on the
      others), float32 and float64, finite; ``copy.deepcopy`` works (the solver warm-starts
      from copies); ``dim`` matches and ``strong_convexity >= 0``;
    * ``transport(x) = grad u(x)``: matches central differences of ``u``; with
      ``create_graph=True`` it is differentiable in ``theta``, with ``False`` detached;
    * ``hessian``: ``(n, d, d)``, symmetric, matches central differences of ``transport``;
      ``hvp(x, v) = H_u(x) v`` and ``hvp_operator(x)(V) = H_u(x) V``;
      ``transport_and_hessian`` gives the same pair, and a net with a ``hessian_rank()`` gives the
      same ``T`` and ``H_u`` from ``transport_and_low_rank_hessian`` (shapes, Cholesky factor);
    * ``u`` is ``strong_convexity``-strongly convex where it will be used
      (:func:`assert_strongly_convex` on ``region``: default the box ``[-5, 5]^d``, which holds
      the tails of standard clouds; pass the points or the sampler the net is run on, or a box;
      ``bounds`` is the older name of a box): ``max_examples`` hypothesis segments and a sweep of
      ``sweep`` quasi-random points (Hessian eigenvalues and midpoint inequalities);
    * ``project()`` leaves a valid net unchanged and, after ``adversarial_steps`` Adam steps
      (lr 1) that *maximize* non-convexity (minimize the Jensen gap on the region's box),
      restores ``strong_convexity``-strong convexity there.

    ``net`` may be a zero-argument factory.
    """
    if not isinstance(net, PotentialNet) and callable(net):
        net = net()
    what = f"potential net {type(net).__name__}"
    if not isinstance(net, PotentialNet):
        _fail(what, f"got {type(net).__name__}; expected a jkoflow.PotentialNet subclass")
    d = getattr(net, "dim", None)
    if not (isinstance(d, int) and d >= 1):
        _fail(what, f"attribute dim={d!r}: expected a positive int")
    alpha = float(getattr(net, "strong_convexity", 0.0))
    if not alpha >= 0:
        _fail(what, f"strong_convexity={alpha}: expected >= 0")
    try:
        net64 = copy.deepcopy(net).double()
    except Exception as exc:  # noqa: BLE001
        _fail(what, f"copy.deepcopy failed ({type(exc).__name__}: {exc}); the solver warm-starts from copies")
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)

    # forward
    with torch.no_grad():
        u = net64(x)
    if not isinstance(u, Tensor) or u.shape != (n,):
        _fail(
            what, f"forward returned {getattr(u, 'shape', type(u))} for x of shape {(n, d)}: expected ({n},)"
        )
    if u.dtype != torch.float64 or not torch.isfinite(u).all():
        _fail(what, f"forward in float64 returned dtype {u.dtype}, finite={bool(torch.isfinite(u).all())}")
    with torch.no_grad():
        u_rows = torch.cat([net64(x[i : i + 1]) for i in range(n)])
        u32 = copy.deepcopy(net).float()(x.float())
    ok, err = _close(u_rows, u, 1e-10, 1e-10)
    if not ok:
        _fail(
            what,
            f"u(x_i) depends on the other rows of the batch (max difference {err:.3g}); u must act row by row",
        )
    if u32.dtype != torch.float32:
        _fail(what, f"forward on float32 input returned dtype {u32.dtype}: expected float32")
    ok, err = _close(u32.double(), u, 1e-4, 1e-4)
    if not ok:
        _fail(what, f"float32 and float64 forward differ by {err:.3g}")

    # transport
    h = 1e-5
    t_plain = net64.transport(x, create_graph=False)
    if t_plain.shape != (n, d) or t_plain.requires_grad:
        _fail(
            what,
            f"transport(x, create_graph=False) has shape {tuple(t_plain.shape)}, requires_grad={t_plain.requires_grad}: expected ({n}, {d}) and detached",
        )
    with torch.no_grad():
        t_fd = _central_gradient(net64, x, h)
    ok, err = _close(t_plain, t_fd, 1e-5, 1e-6)
    if not ok:
        _fail(what, f"transport(x) differs from central differences of u by {err:.3g}: T must be grad u")
    t_graph = net64.transport(x, create_graph=True)
    params = [p for p in net64.parameters() if p.requires_grad]
    if params:
        if not t_graph.requires_grad:
            _fail(what, "transport(x, create_graph=True) is not differentiable in the parameters")
        grads = torch.autograd.grad(t_graph.pow(2).sum(), params, allow_unused=True)
        if all(g is None or not torch.any(g != 0) for g in grads):
            _fail(what, "transport(x, create_graph=True) has zero gradient in every parameter")

    # hessian and hvp
    hess = net64.hessian(x, create_graph=False)
    if hess.shape != (n, d, d) or hess.requires_grad:
        _fail(
            what,
            f"hessian(x, create_graph=False) has shape {tuple(hess.shape)}, requires_grad={hess.requires_grad}: expected ({n}, {d}, {d}), detached",
        )
    ok, err = _close(hess, hess.transpose(1, 2), 1e-8, 1e-8)
    if not ok:
        _fail(what, f"hessian is not symmetric (max |H - H^T| = {err:.3g})")
    h_fd = _central_gradient(lambda z: net64.transport(z, create_graph=False), x, h)
    ok, err = _close(hess, h_fd, 1e-4, 1e-5)
    if not ok:
        _fail(what, f"hessian differs from central differences of transport by {err:.3g}")
    if params and not net64.hessian(x, create_graph=True).requires_grad:
        _fail(what, "hessian(x, create_graph=True) is not differentiable in the parameters")
    v = torch.randn(n, d, generator=gen, dtype=torch.float64)
    hv = net64.hvp(x, v, create_graph=False)
    ok, err = _close(hv.detach(), torch.einsum("nij,nj->ni", hess, v), 1e-8, 1e-8)
    if not ok:
        _fail(what, f"hvp(x, v) differs from hessian(x) @ v by {err:.3g}")

    op = getattr(net64, "hvp_operator", None)
    if callable(op):
        vs = torch.randn(n, 2, d, generator=gen, dtype=torch.float64)
        ok, err = _close(op(x)(vs).detach(), torch.einsum("nij,npj->npi", hess, vs), 1e-8, 1e-8)
        if not ok:
            _fail(what, f"hvp_operator(x)(V) differs from hessian(x) @ V by {err:.3g}")
    _check_fused_hessians(net64, x, t_plain, hess, what)

    # convexity, as built, where the net is used
    region = _region_of(region, bounds)
    resolved = resolve_region(region, d, seed=seed)
    try:
        assert_strongly_convex(
            net64, alpha, d, region=region, max_examples=max_examples, sweep=sweep, seed=seed
        )
    except ConvexityError as exc:
        raise ConvexityError(f"{what}: {exc}", exc.counterexample) from None

    # project(): harmless on a valid net, restores convexity after an adversarial step
    with torch.no_grad():
        before = net64(x)
    net64.project()
    with torch.no_grad():
        ok, err = _close(net64(x), before, 1e-12, 1e-12)
    if not ok:
        _fail(what, f"project() changed a valid (convex) net: u moved by {err:.3g}")
    adv = copy.deepcopy(net64)
    optimizer = torch.optim.Adam(adv.parameters(), lr=1.0)
    for _ in range(adversarial_steps):
        low, high = torch.as_tensor(resolved.low), torch.as_tensor(resolved.high)
        a = low + (high - low) * torch.rand(64, d, generator=gen, dtype=torch.float64)
        b = low + (high - low) * torch.rand(64, d, generator=gen, dtype=torch.float64)
        optimizer.zero_grad()
        _jensen_gap(adv, a, b).backward()
        optimizer.step()
    adv.project()
    try:
        assert_strongly_convex(
            adv, alpha, d, region=region, max_examples=max_examples, sweep=sweep, seed=seed + 1
        )
    except ConvexityError as exc:
        raise ConvexityError(
            f"{what}: project() did not restore convexity after {adversarial_steps} adversarial Adam steps: {exc}",
            exc.counterexample,
        ) from None


# --- functionals ------------------------------------------------------------------------
@attrs.define
class _SmoothStep:
    """The JKO map ``T_theta(x) = x + theta grad phi(x)`` of ``u_theta(x) = |x|^2/2 + theta phi(x)``
    with

        phi(x) = sum_k w_k log cosh(a_k . x + b_k) + x^T B x / 2 + c . x     (B symmetric),

    so ``H_u(x) = I + theta H_phi(x)``, ``H_phi(x) = sum_k w_k sech^2(a_k . x + b_k) a_k a_k^T + B``
    differs from particle to particle (``w = 0``: the affine map ``x + theta (B x + c)``).
    Scaled so that ``||H_phi|| <= 1``: ``u_theta`` is convex for ``|theta| < 1`` and
    ``log det H_u(x_i) = log det(I + theta H_phi(x_i))`` is exact per particle."""

    a: Tensor  # (k, d)
    b: Tensor  # (k,)
    w: Tensor  # (k,)
    bmat: Tensor  # (d, d)
    c: Tensor  # (d,)

    @classmethod
    def draw(cls, dim: int, gen: torch.Generator, *, affine: bool) -> _SmoothStep:
        f64 = torch.float64
        k = 0 if affine else 3
        a = torch.randn(k, dim, generator=gen, dtype=f64)
        w = torch.randn(k, generator=gen, dtype=f64)
        w = 0.7 * w / max(float((w.abs() * a.pow(2).sum(1)).sum()), 1e-12)
        g = torch.randn(dim, dim, generator=gen, dtype=f64)
        bmat = 0.5 * (g + g.T)
        bmat = (0.5 if affine else 0.3) * bmat / max(float(torch.linalg.matrix_norm(bmat, ord=2)), 1e-12)
        b = torch.randn(k, generator=gen, dtype=f64)
        return cls(a, b, w, bmat, 0.5 * torch.randn(dim, generator=gen, dtype=f64))

    def _arg(self, x: Tensor) -> Tensor:
        return x @ self.a.T + self.b  # (n, k)

    def push(self, x: Tensor, theta: Tensor) -> Tensor:
        grad_phi = torch.tanh(self._arg(x)) @ (self.w[:, None] * self.a) + x @ self.bmat + self.c
        return x + theta * grad_phi

    def logdet(self, x: Tensor, theta: Tensor) -> Tensor:
        sech2 = torch.cosh(self._arg(x)).pow(-2)  # (n, k)
        h_phi = torch.einsum("nk,k,ki,kj->nij", sech2, self.w, self.a, self.a) + self.bmat
        eye = torch.eye(x.shape[1], dtype=x.dtype)
        return torch.linalg.slogdet(eye + theta * h_phi)[1]


def _gaussian_cloud(n: int, dim: int, gen: torch.Generator, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """``x ~ N(m, s^2 I)`` with its exact log-density."""
    m = 0.5 * torch.randn(dim, generator=gen, dtype=torch.float64)
    s = 0.8
    z = torch.randn(n, dim, generator=gen, dtype=torch.float64)
    x = m + s * z
    log_rho = -0.5 * z.pow(2).sum(-1) - dim * (math.log(s) + 0.5 * math.log(2 * math.pi))
    return x.to(dtype), log_rho.to(dtype)


def assert_valid_functional(
    functional: Functional | Callable[[], Functional],
    *,
    dim: int = 2,
    n: int = 16,
    seed: int = 0,
    directions: int = 3,
    thetas: Sequence[float] = (0.0, 0.3),
    eps: float = 1e-5,
    rtol: float = 1e-4,
    atol: float = 1e-7,
) -> None:
    """Check a :class:`Functional`: its inner objective's ``theta``-gradient must equal the
    derivative of ``F`` along the transport.

    Particles ``x_i ~ N(m, s^2 I)`` carry their exact log-density ``l_i``. Along ``directions``
    random transports ``T_theta = grad u_theta``, ``u_theta(x) = |x|^2/2 + theta phi(x)``: the first
    affine (``phi = x^T B x/2 + c.x``, ``H_u = I + theta B`` the same at every particle), the others
    non-affine (``phi`` adds ``sum_k w_k log cosh(a_k.x + b_k)``, so ``H_u(x_i)`` differs from particle
    to particle and a functional that mixes the particles' log-determinants fails), each with the
    exact per-particle ``log det H_u(x_i) = log det(I + theta H_phi(x_i))`` (``||H_phi|| <= 1``).
    At each ``theta`` in ``thetas``,

        d/dtheta inner_objective(StepContext(x, T_theta(x), tau, logdet, log_density))

    (autograd) must match the central difference in ``theta`` of
    ``F.value(T_theta(x), l - log det H_u)`` within ``rtol`` (relative) + ``atol * (1 + |F|)``.
    ``F.start(x0, l0)`` is called first (as the solver does) with a separate Gaussian cloud as
    ``rho_0``. The context carries ``logdet`` / ``log_density`` only if ``F.needs`` declares them, so an
    undeclared need fails here, not in a user's run. Also checked: ``needs`` is a set of
    :class:`Need`, the objective is a finite 0-dim tensor of the particles' dtype (float32 and
    float64), and ``ctx.x`` is not modified.
    """
    if not isinstance(functional, Functional) and callable(functional):
        functional = functional()
    what = f"functional {functional!r}"
    if not isinstance(functional, Functional):
        _fail(what, f"got {type(functional).__name__}; expected a jkoflow.Functional")
    needs = functional.needs
    if not isinstance(needs, frozenset) or not all(isinstance(k, Need) for k in needs):
        _fail(what, f"needs={needs!r}: expected a frozenset of jkoflow.Need")
    gen = torch.Generator().manual_seed(seed)
    start = getattr(functional, "start", None)

    def begin(dtype: torch.dtype) -> None:
        """Hand ``rho_0`` (a cloud of its own, so ``rho_t != rho_0``) to ``start()``."""
        if callable(start):
            x0, log_rho0 = _gaussian_cloud(n, dim, gen, dtype)
            start(x0, log_rho0)

    def context(x: Tensor, y: Tensor, logdet: Tensor, log_rho: Tensor) -> StepContext:
        ld = LogDet(value=logdet.detach(), surrogate=logdet) if Need.LOGDET in needs else None
        return StepContext(
            x=x, y=y, tau=0.1, logdet=ld, log_density=log_rho if Need.LOG_DENSITY in needs else None
        )

    def objective(ctx: StepContext) -> Tensor:
        try:
            with _seeded(seed):
                return functional.inner_objective(ctx)
        except Exception as exc:
            declared = sorted(k.name for k in needs) or ["nothing"]
            raise ConformanceError(
                f"{what}: inner_objective raised {type(exc).__name__}: {exc} (needs declares {', '.join(declared)}; "
                f"the context held logdet={'set' if ctx.logdet is not None else 'None'}, "
                f"log_density={'set' if ctx.log_density is not None else 'None'}: declare every Need you use)"
            ) from exc

    # dtype handling, in float32 and float64, at the identity map
    for dtype in (torch.float32, torch.float64):
        begin(dtype)
        x, log_rho = _gaussian_cloud(n, dim, gen, dtype)
        x_before = x.clone()
        theta = torch.zeros((), dtype=dtype, requires_grad=True)
        y = x + theta * x
        logdet = torch.zeros(n, dtype=dtype) + 0 * theta
        obj = objective(context(x, y, logdet, log_rho))
        if not isinstance(obj, Tensor) or obj.ndim != 0:
            _fail(
                what, f"inner_objective returned {getattr(obj, 'shape', type(obj))}: expected a 0-dim tensor"
            )
        if obj.dtype != dtype or not torch.isfinite(obj):
            _fail(
                what,
                f"inner_objective on {dtype} particles returned {obj.item()} of dtype {obj.dtype}: expected a finite {dtype}",
            )
        if not torch.equal(x, x_before):
            _fail(what, "inner_objective modified ctx.x in place")
        value = functional.value(x, log_rho)
        if value is not None and not math.isfinite(value):
            _fail(what, f"value(x, log_density) = {value} on {dtype} particles: expected a finite float")

    # gradient against finite differences of the value along T_theta
    begin(torch.float64)
    x, log_rho = _gaussian_cloud(n, dim, gen, torch.float64)
    if functional.value(x, log_rho) is None:
        _fail(
            what,
            "value(x, log_density) returned None with both given: cannot check inner_objective against F",
        )
    for k in range(directions):
        step = _SmoothStep.draw(dim, gen, affine=k == 0)

        def f_value(th: float, step: _SmoothStep = step) -> float:
            t = torch.tensor(th, dtype=torch.float64)
            out = functional.value(step.push(x, t), log_rho - step.logdet(x, t))
            assert out is not None
            return float(out)

        for th in thetas:
            theta = torch.tensor(float(th), dtype=torch.float64, requires_grad=True)
            y = step.push(x, theta)
            logdet = step.logdet(x, theta)
            obj = objective(context(x, y, logdet, log_rho))
            (grad,) = torch.autograd.grad(obj, theta, allow_unused=True)
            auto = 0.0 if grad is None else float(grad)
            with _seeded(seed):
                fd = (f_value(th + eps) - f_value(th - eps)) / (2 * eps)
            scale = 1.0 + abs(f_value(th))
            if not abs(auto - fd) <= rtol * max(abs(auto), abs(fd)) + atol * scale:
                _fail(
                    what,
                    f"d/dtheta inner_objective = {auto:.9g} but d/dtheta F((grad u_theta)#rho) = {fd:.9g} "
                    f"(central difference of value(), eps={eps:g}) for the map T(x) = x + theta grad phi(x) "
                    f"with {'phi quadratic (H_u the same at every particle)' if k == 0 else 'phi non-quadratic (H_u differs between particles)'}, "
                    f"direction {k}, theta={th:g}, d={dim}, n={n}: the surrogate's gradient is not F's",
                )


# --- log-determinant estimators ---------------------------------------------------------
class _Concave(PotentialNet):
    """``u(x) = -|x|^2 / 2 + 0 * w``: ``H_u = -I`` (an estimator must refuse it)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.w = torch.nn.Parameter(torch.zeros((), dtype=torch.float64))

    def forward(self, x: Tensor) -> Tensor:
        return -0.5 * x.pow(2).sum(-1) + self.w * x.sum(-1)

    def reset_parameters(self) -> None:
        """Nothing to reset."""


def assert_valid_logdet_estimator(
    estimator: LogDetEstimator | Callable[[], LogDetEstimator],
    *,
    dim: int = 3,
    n: int = 64,
    seed: int = 0,
    value_tol: float = 0.1,
    grad_rtol: float = 0.25,
    check_indefinite: bool = True,
) -> None:
    """Check a :class:`LogDetEstimator` on a random convex potential with a closed-form Hessian
    (:func:`jkoflow.testing.strategies.random_convex_potential`, eigenvalues spread over a
    factor ~10 and more).

    * returns a :class:`LogDet` with ``value`` ``(n,)``, detached, finite, of ``x``'s dtype, and a
      ``surrogate`` ``(n,)`` differentiable in ``theta`` (``grad=True``); parameters' ``.grad``
      are left untouched;
    * bias: ``|mean_i (value_i - log det H(x_i))| <= value_tol * (1 + mean_i |log det H(x_i)|)``;
    * gradient: the ``theta``-gradient of ``sum_i surrogate_i`` is within ``grad_rtol``
      (relative, Euclidean norm over all parameters) of the exact gradient of
      ``sum_i log det H(x_i)``, computed by autograd through the closed-form Hessian;
    * ``grad=False`` gives a finite, detached ``value``;
    * an indefinite Hessian (``u = -|x|^2/2``) raises :class:`LogDetError`.

    Stochastic estimators are run seeded; the default tolerances admit Monte Carlo error of a
    reasonable budget averaged over ``n`` particles and are met to ~1e-10 by exact estimators.
    """
    if not isinstance(estimator, LogDetEstimator) and callable(estimator):
        estimator = estimator()
    what = f"log-det estimator {type(estimator).__name__}"
    if not isinstance(estimator, LogDetEstimator):
        _fail(what, f"got {type(estimator).__name__}; expected a jkoflow.LogDetEstimator")
    potential = random_convex_potential(dim, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    x = 0.8 * torch.randn(n, dim, generator=gen, dtype=torch.float64)
    params = list(potential.parameters())

    with _seeded(seed):
        out = estimator(potential, x, grad=True)
    if not isinstance(out, LogDet):
        _fail(what, f"returned {type(out).__name__}: expected jkoflow.LogDet(value, surrogate)")
    if out.value.shape != (n,) or out.surrogate.shape != (n,):
        _fail(
            what,
            f"value {tuple(out.value.shape)}, surrogate {tuple(out.surrogate.shape)}: expected ({n},) each",
        )
    if out.value.requires_grad:
        _fail(what, "value requires grad: expected a detached estimate")
    if out.value.dtype != x.dtype or not torch.isfinite(out.value).all():
        _fail(
            what,
            f"value has dtype {out.value.dtype}, finite={bool(torch.isfinite(out.value).all())}: expected finite {x.dtype}",
        )
    if not out.surrogate.requires_grad:
        _fail(what, "surrogate (grad=True) is not differentiable in the potential's parameters")
    if any(p.grad is not None for p in params):
        _fail(what, "the estimator wrote parameter .grad (it must build a graph, not call backward)")

    with torch.enable_grad():
        exact = torch.linalg.slogdet(potential.hessian_exact(x))[1]
        exact_grad = torch.autograd.grad(exact.sum(), params, allow_unused=True)
    exact = exact.detach()
    bias = float((out.value - exact).mean())
    allowed = value_tol * (1 + float(exact.abs().mean()))
    if not abs(bias) <= allowed:
        _fail(
            what,
            f"mean error of value is {bias:.4g} (> {allowed:.3g}) against the exact log det H_u "
            f"(mean {float(exact.mean()):.4g}, d={dim}, n={n}); max per-particle error {float((out.value - exact).abs().max()):.3g}",
        )
    est_grad = torch.autograd.grad(out.surrogate.sum(), params, allow_unused=True)
    flat = lambda gs: torch.cat(
        [(torch.zeros_like(p) if g is None else g).reshape(-1) for g, p in zip(gs, params)]
    )
    ge, gx = flat(est_grad), flat(exact_grad)  # the center does not enter H: zero
    rel = float((ge - gx).norm() / gx.norm())
    if not rel <= grad_rtol:
        cos = float(torch.dot(ge, gx) / (ge.norm() * gx.norm() + 1e-300))
        _fail(
            what,
            f"theta-gradient of sum(surrogate) is off by {rel:.3g} (relative, > {grad_rtol}) from the exact "
            f"gradient of sum log det H_u (cosine {cos:.3f}, d={dim}, n={n})",
        )

    with _seeded(seed):
        plain = estimator(potential, x, grad=False)
    if plain.value.shape != (n,) or plain.value.requires_grad or not torch.isfinite(plain.value).all():
        _fail(what, "grad=False: expected a finite, detached value of shape (n,)")

    if check_indefinite:
        try:
            with _seeded(seed):
                bad = estimator(_Concave(dim), x, grad=False)
        except LogDetError:
            pass
        else:
            _fail(
                what,
                f"H_u = -I (u = -|x|^2/2) gave value {bad.value[:3].tolist()}... instead of raising "
                "jkoflow.LogDetError: a non-convex u must not silently feed log-densities",
            )


# --- divergences ------------------------------------------------------------------------
def _cloud_repr(x: Tensor, name: str = "x") -> str:
    """A short description of a cloud for messages: its shape and at most 4 points."""
    pts = ", ".join("[" + ", ".join(f"{c:.4g}" for c in row) + "]" for row in x[:4].tolist())
    more = f", ... ({x.shape[0] - 4} more)" if x.shape[0] > 4 else ""
    return f"{name} of shape {tuple(x.shape)} {x.dtype}: [{pts}{more}]"


def realistic_clouds(
    dim: int, seed: int = 0, sizes: tuple[int, int] = (200, 300)
) -> list[tuple[str, Tensor, Tensor]]:
    """Pairs ``(label, x, y)`` of float64 clouds of realistic size (``n, m = sizes``) on which
    divergences are checked: two Gaussians of scale ~1 (``x ~ N(0, I)``,
    ``y ~ N(0.5, 1.3^2 I)``), and a wide pair (``x`` two clusters ``N(+-2 e_1, 0.3^2 I)``,
    ``y`` uniform on ``[-4, 4]^d``)."""
    gen = torch.Generator().manual_seed(seed)
    n, m = sizes
    f64 = torch.float64
    x1 = torch.randn(n, dim, generator=gen, dtype=f64)
    y1 = 0.5 + 1.3 * torch.randn(m, dim, generator=gen, dtype=f64)
    sign = torch.where(torch.rand(n, generator=gen, dtype=f64) < 0.5, -1.0, 1.0)
    x2 = 0.3 * torch.randn(n, dim, generator=gen, dtype=f64)
    x2[:, 0] += 2.0 * sign
    y2 = 8.0 * torch.rand(m, dim, generator=gen, dtype=f64) - 4.0
    return [("two Gaussians", x1, y1), ("two clusters vs a uniform box", x2, y2)]


def assert_valid_divergence(
    divergence: Divergence | Callable[[], Divergence],
    *,
    dim: int = 2,
    max_size: int = 8,
    max_examples: int = 15,
    seed: int = 0,
    atol: float = 1e-5,
    rtol: float = 1e-4,
    check_weights: bool = True,
    cloud_sizes: tuple[int, int] | None = (200, 300),
) -> None:
    """Check a :class:`Divergence` as a function of two measures ``alpha, beta``.

    Tolerance: ``tol = atol * max(1, R^2)`` (``R`` the largest coordinate, so it follows the
    scale of squared-distance divergences) plus ``rtol * |D|`` where two values are compared.

    On hypothesis-drawn clouds (``n, m <= max_size``, scales 0.1-10, near-degenerate ones
    included), in float64:

    * ``D(x, y)`` is a finite 0-dim tensor of the inputs' dtype, ``>= -tol``;
      ``|D(x, x)| <= tol``;
    * permutation invariance, always: ``D`` of the clouds in reverse order equals ``D(x, y)``;
    * ``D(x, y) = D(y, x)`` when ``symmetric`` is declared;
    * duplication invariance, always: ``D([x; x], y) = D(x, y)`` (the same measure);
    * weights (unless ``supports_weights = False``): explicit uniform weights change nothing,
      and a point listed twice weighs as one point of double weight.

    On clouds of realistic size (:func:`realistic_clouds`, ``cloud_sizes = (n, m)``; ``None``
    skips this part), in float32 (the solver's default dtype) and float64: finite and
    ``>= -tol``; ``|D(x, x)| <= tol``; invariance under random permutations of both clouds;
    symmetry where declared; ``D([x; x], y) = D(x, y)`` and ``|D(x, [x; x])| <= tol``; and
    separation, ``D(x, x + e_1) > 10 tol`` (a divergence that is 0 everywhere is no divergence).

    Edge cases run first (they fail fast): single points, identical and duplicated clouds,
    float32, each with a finite gradient in ``x``.
    """
    if not isinstance(divergence, Divergence) and callable(divergence):
        divergence = divergence()
    what = f"divergence {type(divergence).__name__}"
    if not isinstance(divergence, Divergence):
        _fail(what, f"got {type(divergence).__name__}; expected a jkoflow.Divergence")

    def call(
        x: Tensor, y: Tensor, a: Tensor | None = None, b: Tensor | None = None, *, grad: bool = False
    ) -> Tensor:
        x = x.detach().clone().requires_grad_(grad)
        try:
            with _seeded(seed):
                val = divergence(x, y, a, b)
        except Exception as exc:
            weights = "" if a is None and b is None else " with explicit weights a, b"
            raise ConformanceError(
                f"{what}: raised {type(exc).__name__}: {exc} on clouds of shapes {tuple(x.shape)}, {tuple(y.shape)}{weights}"
            ) from exc
        if not isinstance(val, Tensor) or val.ndim != 0:
            _fail(
                what,
                f"returned {getattr(val, 'shape', type(val))} for clouds {tuple(x.shape)}, {tuple(y.shape)}: expected a 0-dim tensor",
            )
        if val.dtype != x.dtype:
            _fail(what, f"returned dtype {val.dtype} for {x.dtype} inputs")
        if not torch.isfinite(val):
            _fail(what, f"D = {val.item()} (not finite) for {_cloud_repr(x.detach())}, {_cloud_repr(y, 'y')}")
        if grad:
            (g,) = torch.autograd.grad(val, x, allow_unused=True)
            if g is not None and not torch.isfinite(g).all():
                _fail(
                    what, f"gradient in x is not finite for {_cloud_repr(x.detach())}, {_cloud_repr(y, 'y')}"
                )
        return val.detach()

    def tol(*clouds_: Tensor) -> float:
        r = max(float(c.abs().max()) for c in clouds_)
        return atol * max(1.0, r * r)

    def same(d1: Tensor, d2: Tensor, eps: float) -> bool:
        return abs(float(d1) - float(d2)) <= eps + rtol * max(abs(float(d1)), abs(float(d2)))

    weighted = check_weights and getattr(divergence, "supports_weights", True)
    cloud = clouds(dim, min_size=1, max_size=max_size, scales=(0.1, 10.0))

    def measures_only(
        x: Tensor, y: Tensor, dxy: Tensor, eps: float, x_p: Tensor, y_p: Tensor, where: str
    ) -> None:
        """Permutation, symmetry and duplication: ``D`` must depend on the measures only."""
        both = f"{_cloud_repr(x)}, {_cloud_repr(y, 'y')}{where}"
        d_perm = call(x_p, y_p)
        if not same(d_perm, dxy, eps):
            _fail(
                what,
                f"reordering the points changes D: D(x, y) = {float(dxy):.9g} but {float(d_perm):.9g} with the "
                f"points of x and y permuted; D must depend on the measures only ({both})",
            )
        if divergence.symmetric:
            dyx = call(y, x)
            if not same(dyx, dxy, eps):
                _fail(
                    what,
                    f"declared symmetric but D(x, y) = {float(dxy):.9g} != D(y, x) = {float(dyx):.9g} ({both})",
                )
        d_dup = call(torch.cat([x, x]), y)
        if not same(d_dup, dxy, eps):
            _fail(
                what,
                f"D([x; x], y) = {float(d_dup):.9g} but D(x, y) = {float(dxy):.9g}: x listed twice is the same "
                f"measure; D must depend on the measures only ({both})",
            )

    def probe(x: Tensor, y: Tensor) -> None:
        dxy = call(x, y, grad=True)
        eps = tol(x, y)
        if float(dxy) < -eps:
            _fail(
                what,
                f"D(x, y) = {float(dxy):.6g} < 0 (tolerance {eps:.2g}) for {_cloud_repr(x)}, {_cloud_repr(y, 'y')}",
            )
        dxx = call(x, x, grad=True)
        if abs(float(dxx)) > tol(x):
            _fail(
                what, f"D(x, x) = {float(dxx):.6g}, expected 0 (tolerance {tol(x):.2g}) for {_cloud_repr(x)}"
            )
        measures_only(x, y, dxy, eps, x.flip(0), y.flip(0), "")
        if weighted:
            weights_ok(x, y, dxy, eps)

    def weights_ok(x: Tensor, y: Tensor, dxy: Tensor, eps: float) -> None:
        n, m = x.shape[0], y.shape[0]
        a = torch.full((n,), 1.0 / n, dtype=x.dtype)
        b = torch.full((m,), 1.0 / m, dtype=x.dtype)
        d_ab = call(x, y, a, b)
        if not same(d_ab, dxy, eps):
            _fail(what, f"explicit uniform weights give {float(d_ab):.9g}, default weights {float(dxy):.9g}")
        x_dup = torch.cat([x, x[:1]])
        a_merged = a * n / (n + 1)
        a_merged[0] *= 2
        d_dup, d_merged = call(x_dup, y), call(x, y, a_merged, b)
        if not same(d_dup, d_merged, eps):
            _fail(
                what,
                f"x with its first point listed twice gives {float(d_dup):.9g} but x with that point's weight "
                f"doubled gives {float(d_merged):.9g}: D must depend on the measures only "
                f"({_cloud_repr(x)}, {_cloud_repr(y, 'y')})",
            )

    def realistic() -> None:
        gen = torch.Generator().manual_seed(seed + 1)
        assert cloud_sizes is not None
        for label, x64, y64 in realistic_clouds(dim, seed, cloud_sizes):
            for dtype in (torch.float32, torch.float64):
                x, y = x64.to(dtype), y64.to(dtype)
                where = f"; {label}, {dtype}"
                eps = tol(x, y)
                dxy = call(x, y)
                if float(dxy) < -eps:
                    _fail(
                        what,
                        f"D(x, y) = {float(dxy):.6g} < 0 (tolerance {eps:.2g}) on {_cloud_repr(x)}, {_cloud_repr(y, 'y')}{where}",
                    )
                for name, c in (("x", x), ("y", y)):
                    dcc = call(c, c)
                    if abs(float(dcc)) > tol(c):
                        _fail(
                            what,
                            f"D({name}, {name}) = {float(dcc):.6g}, expected 0 (tolerance {tol(c):.2g}) on {_cloud_repr(c, name)}{where}",
                        )
                p = torch.randperm(x.shape[0], generator=gen)
                q = torch.randperm(y.shape[0], generator=gen)
                measures_only(x, y, dxy, eps, x[p], y[q], where)
                d_self = call(x, torch.cat([x, x]))
                if abs(float(d_self)) > tol(x):
                    _fail(
                        what,
                        f"D(x, [x; x]) = {float(d_self):.6g}, expected 0 (the same measure; tolerance {tol(x):.2g}) on {_cloud_repr(x)}{where}",
                    )
        label, x, _ = realistic_clouds(dim, seed, cloud_sizes)[0]
        shifted = x + torch.eye(dim, dtype=x.dtype)[0]
        d_sep = call(x, shifted)
        if not float(d_sep) > 10 * tol(x, shifted):
            _fail(
                what,
                f"D(x, x + e_1) = {float(d_sep):.6g}: expected > {10 * tol(x, shifted):.2g} for a unit shift "
                f"(D must separate different measures) on {_cloud_repr(x)}; {label}",
            )

    # the edge cases first (cheap, and where divergences break): single points, identical
    # and duplicated clouds, float32
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(5, dim, generator=gen, dtype=torch.float64)
    y = torch.randn(4, dim, generator=gen, dtype=torch.float64)
    call(x[:1], y[:1], grad=True)
    call(x[:1], x[:1], grad=True)
    call(torch.cat([x, x]), x, grad=True)
    call(x.float(), y.float())
    if weighted:
        weights_ok(x, y, call(x, y), tol(x, y))

    def fallback(rng: np.random.Generator) -> dict[str, Any]:
        size = lambda: (int(rng.integers(1, max_size + 1)), dim)
        scale = 10 ** rng.uniform(-1, 1)
        return {
            "x": torch.as_tensor(scale * rng.uniform(-1, 1, size())),
            "y": torch.as_tensor(scale * rng.uniform(-1, 1, size())),
        }

    _run_property(probe, {"x": cloud, "y": cloud}, fallback, max_examples, seed)
    if cloud_sizes is not None:
        realistic()


# --- the remaining registry kinds -------------------------------------------------------
def assert_valid_potential_fn(
    V: Callable[[Tensor], Tensor], *, dim: int = 2, n: int = 8, seed: int = 0
) -> None:
    """A potential ``V`` maps ``(n, d) -> (n,)`` row by row, keeps the dtype, is finite and
    differentiable by torch (the inner objective is ``mean_i V(grad u(x_i))``)."""
    _check_rowwise(V, f"potential V {_name(V)}", (dim,), n, seed)


def assert_valid_kernel(W: Callable[[Tensor], Tensor], *, dim: int = 2, n: int = 5, seed: int = 0) -> None:
    """A kernel ``W`` maps differences ``(..., d) -> (...)`` (the interaction energy calls it
    on ``(n, n, d)``), keeps the dtype, is finite off ``z = 0`` and differentiable."""
    what = f"kernel W {_name(W)}"
    _check_rowwise(W, what, (dim,), n, seed)
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, n, dim, generator=gen, dtype=torch.float64)
    out = W(z)
    if not isinstance(out, Tensor) or out.shape != (n, n):
        _fail(
            what,
            f"W on differences of shape {(n, n, dim)} returned {getattr(out, 'shape', type(out))}: expected {(n, n)}",
        )
    ok, err = _close(out, W(z.reshape(n * n, dim)).reshape(n, n), 1e-12, 1e-12)
    if not ok:
        _fail(what, f"W on (n, n, d) differs from W on the flattened (n*n, d) differences by {err:.3g}")


def _check_rowwise(
    fn: Callable[[Tensor], Tensor], what: str, shape: tuple[int, ...], n: int, seed: int
) -> None:
    gen = torch.Generator().manual_seed(seed)
    for dtype in (torch.float32, torch.float64):
        x = torch.randn(n, *shape, generator=gen, dtype=torch.float64).to(dtype).requires_grad_(True)
        out = fn(x)
        if not isinstance(out, Tensor) or out.shape != (n,):
            _fail(
                what,
                f"input of shape {tuple(x.shape)} gave {getattr(out, 'shape', type(out))}: expected ({n},)",
            )
        if out.dtype != dtype or not torch.isfinite(out).all():
            _fail(what, f"{dtype} input gave dtype {out.dtype}, finite={bool(torch.isfinite(out).all())}")
        if not out.requires_grad:
            _fail(what, "output is not differentiable by torch (the inner objective needs gradients)")
        (g,) = torch.autograd.grad(out.sum(), x)
        if not torch.isfinite(g).all():
            _fail(what, "gradient is not finite")
        with torch.no_grad():
            rows = torch.cat([fn(x[i : i + 1]) for i in range(n)])
        ok, err = _close(rows, out.detach(), 1e-5, 1e-6)
        if not ok:
            _fail(what, f"a row's value depends on the other rows (max difference {err:.3g})")


def assert_valid_internal_fn(fn: Any, *, eps: float = 1e-6) -> None:
    """An internal-energy density ``f`` (``F = int f(rho)``) supplies ``f_over_r(s) = f(r)/r`` and
    ``pressure_over_r(s) = P(r)/r = f'(r) - f(r)/r`` in ``s = log r``. Since
    ``d/ds [f(e^s) e^-s] = P(e^s) e^-s``, the second must be the derivative of the first (central
    differences on ``s in [-3, 3]``), and ``f`` must be convex in ``r`` (non-decreasing slopes
    of ``r -> r f_over_r(log r)`` on that grid)."""
    what = f"internal_fn {type(fn).__name__}"
    for attr in ("f_over_r", "pressure_over_r"):
        if not callable(getattr(fn, attr, None)):
            _fail(what, f"has no method {attr}(log_r)")
    s = torch.linspace(-3.0, 3.0, 25, dtype=torch.float64)
    g = fn.f_over_r(s)
    p = fn.pressure_over_r(s)
    if g.shape != s.shape or p.shape != s.shape or not (torch.isfinite(g).all() and torch.isfinite(p).all()):
        _fail(what, "f_over_r / pressure_over_r must map (m,) log-densities to finite (m,) values")
    fd = (fn.f_over_r(s + eps) - fn.f_over_r(s - eps)) / (2 * eps)
    ok, err = _close(p, fd, 1e-5, 1e-7)
    if not ok:
        _fail(
            what,
            f"pressure_over_r differs from d/ds f_over_r(s) by {err:.3g}: expected P(r)/r = f'(r) - f(r)/r",
        )
    r = torch.exp(s)
    slopes = (r[1:] * g[1:] - r[:-1] * g[:-1]) / (r[1:] - r[:-1])
    if not bool((slopes[1:] - slopes[:-1] >= -1e-9 * (1 + slopes.abs().max())).all()):
        _fail(what, "f(r) = r * f_over_r(log r) is not convex in r on r in [e^-3, e^3]")


def assert_valid_sampler(sampler: Any, *, n: int = 16, seed: int = 0) -> None:
    """A sampler returns ``(x (n, d), log_rho0 (n,) | None)``, finite, reproducible from the
    ``torch.Generator`` it is given, with ``d = sampler.dim``."""
    what = f"sampler {type(sampler).__name__}"
    out1 = sampler.sample(n, torch.Generator().manual_seed(seed))
    out2 = sampler.sample(n, torch.Generator().manual_seed(seed))
    if not (isinstance(out1, tuple) and len(out1) == 2):
        _fail(what, f"sample() returned {type(out1).__name__}: expected a tuple (x, log_rho0 or None)")
    x, lr = out1
    d = getattr(sampler, "dim", None)
    if not isinstance(x, Tensor) or x.shape != (n, d) or not torch.isfinite(x).all():
        _fail(what, f"x has shape {getattr(x, 'shape', None)}: expected finite ({n}, {d})")
    if lr is not None and (lr.shape != (n,) or not torch.isfinite(lr).all()):
        _fail(what, f"log_rho0 has shape {tuple(lr.shape)}: expected finite ({n},)")
    if not torch.equal(x, out2[0]):
        _fail(
            what, "two draws from equally seeded generators differ: use the generator argument for randomness"
        )


def factory_parameters(factory: Callable[..., Any]) -> list[str]:
    """Required parameters of a registry factory other than the injected ``dim``/``registry``."""
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return []
    return [
        name
        for name, p in sig.parameters.items()
        if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and name not in INJECTED
    ]


__all__ = [
    "ConformanceError",
    "ConvexityError",
    "Counterexample",
    "assert_convex",
    "assert_strongly_convex",
    "assert_valid_divergence",
    "assert_valid_functional",
    "assert_valid_internal_fn",
    "assert_valid_kernel",
    "assert_valid_logdet_estimator",
    "assert_valid_potential_fn",
    "assert_valid_potential_net",
    "assert_valid_sampler",
    "factory_parameters",
    "find_convexity_counterexample",
    "find_violation",
    "realistic_clouds",
]
