"""Built-in energy terms: potential, interaction and internal energies (paper Table 1, 3).

=============  ==============================  ==============================================
term           F(rho)                          inner objective at ``y_i = grad u(x_i)``
=============  ==============================  ==============================================
potential      int V d rho                     mean_i V(y_i)
interaction    1/2 int int W(x - x') drho drho  1/2 mean_{i != j} W(y_i - y_j)
internal       int f(rho(x)) dx                - mean_i sg(P(xi_i)/xi_i) log det H_u(x_i)
=============  ==============================  ==============================================

For internal energies each particle carries ``l_i = log rho_t(x_i)``; after the step its
log-density is ``log xi_i = l_i - log det H_u(x_i)`` and
``F(rho_{t+1}) ~= mean_i f(xi_i) / xi_i``. With the pressure ``P(r) = r f'(r) - f(r)`` the
gradient in ``theta`` is ``- mean_i P(xi_i)/xi_i * grad log det H_u(x_i)`` (sg = stop-gradient),
so one surrogate serves every convex ``f``:

* entropy ``f(r) = r log r``: ``P(r)/r = 1`` (heat equation);
* porous medium ``f(r) = r^m/(m-1)``: ``P(r)/r = r^(m-1)`` (paper eq. 12).
"""

from __future__ import annotations

import abc
import functools
import math
import warnings
from collections.abc import Callable, Mapping
from typing import Any, cast

import torch
from jkoflow.convexity import ResolvedRegion, as_float64, row_hessian, sweep_convexity
from jkoflow.functional import Functional, Need, StepContext
from jkoflow.registry import Registry, default_registry, hookimpl
from torch import Tensor

FnSpec = str | Mapping[str, Any] | Callable[..., Any]
"""A registered name, ``{"kind": name, **params}``, an import string, or the object itself."""


def _resolve(kind: str, spec: FnSpec, registry: Registry | None) -> Any:
    """Build a ``potential_fn`` / ``kernel`` / ``internal_fn`` from a name, table or object."""
    if callable(spec) and not isinstance(spec, str):
        return spec
    registry = registry or default_registry()
    if isinstance(spec, str):
        obj = registry.get(kind, spec)
        if ":" in spec and not isinstance(obj, type):
            return obj  # an import string names the function itself, e.g. "pkg.mod:my_V"
        return obj()
    if isinstance(spec, Mapping):
        params = dict(spec)
        if "kind" not in params:
            raise ValueError(f"{kind} table {dict(spec)!r}: expected a 'kind' key naming the {kind}")
        return registry.get(kind, params.pop("kind"))(**params)
    raise TypeError(f"{kind}={spec!r}: expected a name, a table with 'kind', or a callable")


def _vector(value: float | list[float] | Tensor, name: str = "value") -> Tensor:
    try:
        return torch.as_tensor(value, dtype=torch.get_default_dtype())
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(
            f"{name}={value!r}: expected a number, a list of numbers or a list of equal-length lists of numbers"
        ) from None


# --- potentials V and kernels W ----------------------------------------------------------
class Quadratic:
    """``V(x) = 1/2 (x - c)^T A (x - c)``; ``A`` defaults to the identity (``A`` may be a
    scalar, a diagonal given as a list, or a full matrix)."""

    def __init__(self, center: float | list[float] = 0.0, matrix: float | list[Any] = 1.0) -> None:
        self.center = _vector(center, "center")
        self.matrix = _vector(matrix, "matrix")
        if self.center.ndim > 1:
            raise ValueError(f"center={center!r}: expected a number or a vector")
        if self.matrix.ndim > 2 or (self.matrix.ndim == 2 and self.matrix.shape[0] != self.matrix.shape[1]):
            raise ValueError(
                f"matrix of shape {tuple(self.matrix.shape)}: expected a scalar, a diagonal or a square matrix"
            )
        for name, value in (("center", self.center), ("matrix", self.matrix)):
            if not bool(torch.isfinite(value).all()):
                raise ValueError(f"{name}={value.tolist()!r}: expected finite entries")

    def _check_dim(self, d: int) -> None:
        """``center`` and ``matrix`` must be scalars or of the particles' dimension ``d``
        (a length-3 center on 1-D particles would otherwise broadcast to a wrong ``V``)."""
        for name, value in (("center", self.center), ("matrix", self.matrix)):
            if value.ndim >= 1 and value.shape[-1] not in (1, d):
                raise ValueError(
                    f"{name} of shape {tuple(value.shape)} for particles of dimension {d}: "
                    f"expected a scalar or size {d}"
                )

    def __call__(self, x: Tensor) -> Tensor:
        self._check_dim(x.shape[-1])
        z = x - self.center.to(x)
        a = self.matrix.to(x)
        if a.ndim < 2:
            return 0.5 * (a * z * z).sum(-1)
        return 0.5 * ((z @ a) * z).sum(-1)


class AggregationKernel:
    """``W(z) = |z|^2/2 - log|z|`` (attractive-repulsive; paper Section 5.3)."""

    even = True  # W(-z) = W(z): the interaction energy sums each pair once

    def __call__(self, z: Tensor) -> Tensor:
        r2 = z.pow(2).sum(-1)
        return 0.5 * r2 - 0.5 * torch.log(r2)

    def value_and_grad(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """``W(z)`` and ``grad W(z) = z (1 - 1/|z|^2)`` (in ``d = 1``: ``r - 1/r``)."""
        if z.shape[-1] == 1:
            r = z[..., 0]
            return 0.5 * r.square() - torch.log(r.abs()), (r - r.reciprocal())[..., None]
        r2 = z.square().sum(-1)
        return 0.5 * r2 - 0.5 * torch.log(r2), z * (1.0 - r2.reciprocal())[..., None]


class QuadraticKernel:
    """``W(z) = |z|^2 / 2``."""

    even = True

    def __call__(self, z: Tensor) -> Tensor:
        return 0.5 * z.pow(2).sum(-1)

    def value_and_grad(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """``W(z)`` and ``grad W(z) = z``."""
        return 0.5 * z.square().sum(-1), z


# --- internal energy densities f ---------------------------------------------------------
class InternalFn(abc.ABC):
    """A convex ``f`` of an internal energy ``int f(rho(x)) dx``, evaluated in ``log r``.

    ``pressure_is_constant`` marks an ``f`` whose ``P(r)/r`` does not depend on ``r`` (the
    entropy: ``P(r) = r``); its inner objective then needs ``log det H_u`` but not the
    densities ``rho_t(x_i)``, which spares the solver from carrying them for fresh samples.
    """

    pressure_is_constant: bool = False

    @abc.abstractmethod
    def f_over_r(self, log_r: Tensor) -> Tensor:
        """``f(r)/r`` (so ``int f(rho) = E_rho[f(rho)/rho]``)."""

    @abc.abstractmethod
    def pressure_over_r(self, log_r: Tensor) -> Tensor:
        """``P(r)/r = f'(r) - f(r)/r``."""


class Entropy(InternalFn):
    """``f(r) = r log r`` (negative entropy; heat equation)."""

    pressure_is_constant = True

    def f_over_r(self, log_r: Tensor) -> Tensor:
        return log_r

    def pressure_over_r(self, log_r: Tensor) -> Tensor:
        return torch.ones_like(log_r)


class PorousMedium(InternalFn):
    """``f(r) = r^m / (m - 1)``, ``m > 1`` (porous medium equation ``d_t rho = Lap rho^m``)."""

    def __init__(self, m: float = 2.0) -> None:
        if not m > 1:
            raise ValueError(f"m={m}: expected m > 1")
        self.m = float(m)

    def f_over_r(self, log_r: Tensor) -> Tensor:
        return torch.exp((self.m - 1) * log_r) / (self.m - 1)

    def pressure_over_r(self, log_r: Tensor) -> Tensor:
        return torch.exp((self.m - 1) * log_r)


class FromFunction(InternalFn):
    """Any convex ``f(r)`` given as a torch function; ``f'`` comes from autograd."""

    def __init__(self, f: Callable[[Tensor], Tensor]) -> None:
        self.f = f

    def f_over_r(self, log_r: Tensor) -> Tensor:
        r = torch.exp(log_r)
        return self.f(r) / r

    def pressure_over_r(self, log_r: Tensor) -> Tensor:
        with torch.enable_grad():
            r = torch.exp(log_r.detach()).requires_grad_(True)
            fr = self.f(r)
            (df,) = torch.autograd.grad(fr.sum(), r)
        return (df - fr / r).detach()


def _internal_fn(spec: FnSpec | InternalFn, registry: Registry | None) -> InternalFn:
    fn = _resolve("internal_fn", spec, registry) if not isinstance(spec, InternalFn) else spec
    if isinstance(fn, InternalFn):
        return fn
    if callable(fn):  # a plain f(r), e.g. from an import string
        return FromFunction(fn)
    raise TypeError(f"f={spec!r}: expected an InternalFn or a callable f(r)")


# --- optional convexity check of user-supplied V and W --------------------------------------
class ConvexityWarning(UserWarning):
    """A potential ``V`` or kernel ``W`` failed the convexity property check (``check_convexity``).

    The JKO-ICNN theory (paper Sec. 3) asks for convex ``V`` and ``W``; the scheme still runs,
    so this is a warning, naming the points where Jensen's inequality or the Hessian fails.
    """


def _fn_label(spec: Any, fn: Any) -> str:
    if isinstance(spec, str):
        return spec
    if isinstance(spec, Mapping) and isinstance(spec.get("kind"), str):
        return spec["kind"]
    return getattr(fn, "__name__", type(fn).__name__)


class _ConvexityCheck:
    """Run :func:`jkoflow.convexity.sweep_convexity` once, before the first step, on the box the
    particles span widened by half its span on every side (``V``) or on ``+-1.5`` times the span
    (the box of their differences, ``W``): ``SWEEP`` quasi-random points, Hessian eigenvalues
    (autograd) and midpoint inequalities. Torch and numpy only: no hypothesis, no pytest."""

    SWEEP = 2048
    """Quasi-random points of the sweep (half uniform on the box, half Gaussian around its centre)."""

    def __init__(
        self, enabled: bool, fn: Callable[..., Any], what: str, label: str, differences: bool
    ) -> None:
        self.enabled, self.fn, self.what, self.label, self.differences = enabled, fn, what, label, differences
        self.done = False
        self.counterexample: Any = None

    def __call__(self, x: Tensor) -> None:
        if not self.enabled or self.done:
            return
        self.done = True
        x = x.detach().to(torch.float64).cpu()
        span = torch.clamp(x.max(0).values - x.min(0).values, min=1e-3)
        if self.differences:
            low, high = -1.5 * span, 1.5 * span
        else:
            low, high = x.min(0).values - 0.5 * span, x.max(0).values + 0.5 * span
        box = ", ".join(f"[{a:.3g}, {b:.3g}]" for a, b in zip(low.tolist(), high.tolist()))
        region = ResolvedRegion(low.numpy(), high.numpy(), None, f"the box {box}")
        f64 = as_float64(self.fn)
        try:
            found = sweep_convexity(
                f64, x.shape[1], 0.0, region, budget=self.SWEEP, seed=0, hessian=lambda z: row_hessian(f64, z)
            )
        except ValueError as exc:  # f returned the wrong shape
            raise ValueError(f"check_convexity: {self.what} {self.label!r} {exc}") from None
        self.counterexample = found
        if found is not None:
            warnings.warn(
                f"{self.what} {self.label!r} is not convex on the box {box} "
                f"({'differences of ' if self.differences else ''}the particles): {found.describe(self.what[-1])}. "
                "The JKO-ICNN theory assumes a convex one; the run continues.",
                ConvexityWarning,
                stacklevel=3,
            )


# --- functionals -------------------------------------------------------------------------
class PotentialEnergy(Functional):
    """``F(rho) = int V d rho``; inner objective ``mean_i V(grad u(x_i))``."""

    def __init__(
        self, V: FnSpec = "quadratic", registry: Registry | None = None, check_convexity: bool = False
    ) -> None:
        self.V = _resolve("potential_fn", V, registry)
        self._label = V if isinstance(V, str) else type(self.V).__name__
        self.convexity = _ConvexityCheck(
            check_convexity, self.V, "potential V", _fn_label(V, self.V), differences=False
        )

    def start(self, x0: Tensor, log_density0: Tensor | None = None) -> None:
        """With ``check_convexity``: property-check ``V`` on the box of ``rho_0``'s particles
        and warn (:class:`ConvexityWarning`) with a counterexample if it is not convex."""
        self.convexity(x0)

    def inner_objective(self, ctx: StepContext) -> Tensor:
        self.convexity(ctx.x)
        return self.V(ctx.y).mean()

    def value(self, x: Tensor, log_density: Tensor | None = None) -> float | None:
        self.convexity(x)
        return float(self.V(x).mean())

    def reference_parts(self) -> dict[str, object]:
        """The pieces the ideal 1-D JKO reference needs (:class:`jkoflow.functional.ReferenceTerm`)."""
        return {"V": self.V}

    def __repr__(self) -> str:
        return f"PotentialEnergy({self._label})"


PAIR_ROWS_ELEMENTS = 1 << 16
"""Pair differences per row block of :func:`pair_sum_and_grad` (64k: the block's temporaries stay
in cache; measured fastest of 8k-256k at N = 1000, float64: 6.4 ms against 8.3 at 128k and 22 at 8k)."""


def pair_sum_and_grad(
    y: Tensor, kernel: Any, block_elements: int = PAIR_ROWS_ELEMENTS
) -> tuple[Tensor, Tensor]:
    """``S = sum_{i < j} W(y_i - y_j)`` and ``grad_y S`` for an even kernel with a closed-form
    gradient (``kernel.value_and_grad(z) -> (W(z), grad W(z))``), without autograd.

    Rows ``a <= i < b`` are taken in blocks against the columns ``j >= a``; in the block's own
    ``m x m`` corner only ``j > i`` counts (the diagonal ``z = 0`` is replaced by a finite dummy and
    masked out). With ``G_ij = grad W(y_i - y_j)``, ``grad_{y_i} S = sum_{j > i} G_ij - sum_{j < i} G_ji``.
    The sums are dense per block (no gather of pair indices, no scatter in the backward pass)."""
    n, d = y.shape
    total = y.new_zeros(())
    grad = torch.zeros_like(y)
    rows = max(1, min(n - 1, block_elements // max(n, 1)))
    for a in range(0, n - 1, rows):
        b = min(a + rows, n - 1)
        m = b - a
        if d == 1:  # a 2-D difference (a broadcast over a trailing unit axis is 2x slower)
            z = (y[a:b, 0, None] - y[None, a:, 0])[..., None]
        else:
            z = y[a:b, None, :] - y[None, a:, :]  # (m, n - a, d): z[i, c] = y[a + i] - y[a + c]
        z[:, :m].diagonal(dim1=0, dim2=1).fill_(1.0)  # z = 0 on i == j: any finite value, masked
        w, g = kernel.value_and_grad(z)
        lower = torch.ones(m, m, dtype=torch.bool, device=y.device).tril_()  # j <= i: not counted
        corner_w = w[:, :m].masked_fill(lower, 0.0)  # (not a product: W may be inf there)
        corner_g = g[:, :m].masked_fill(lower[..., None], 0.0)
        total = total + corner_w.sum() + w[:, m:].sum()
        grad[a:b] += corner_g.sum(1) + g[:, m:].sum(1)
        grad[a:b] -= corner_g.sum(0)
        grad[b:] -= g[:, m:].sum(0)
    return total, grad


class _EvenPairSum(torch.autograd.Function):
    """``sum_{i < j} W(y_i - y_j)`` with its gradient computed in the forward pass
    (:func:`pair_sum_and_grad`); differentiable once in ``y``."""

    @staticmethod
    def forward(ctx: Any, y: Tensor, kernel: Any) -> Tensor:
        with torch.no_grad():
            total, grad = pair_sum_and_grad(y.detach(), kernel)
        ctx.save_for_backward(grad)
        return total

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, upstream: Tensor) -> tuple[Tensor, None]:
        (grad,) = ctx.saved_tensors
        return upstream * grad, None


@functools.lru_cache(maxsize=16)
def _upper_pairs(n: int, start: int, stop: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Index pairs ``(i, j)`` with ``start <= i < stop`` and ``i < j < n`` (rebuilt per call:
    caching them measured no faster, 22.6-26.8 vs 23.2-26.2 ms per energy + gradient at N = 1000)."""
    i, j = torch.triu_indices(stop - start, n - start, offset=1, device=device)
    return i + start, j + start


class InteractionEnergy(Functional):
    """``F(rho) = 1/2 int int W(x - x') drho(x) drho(x')``, estimated by the U-statistic
    ``1/2 mean_{i != j} W(y_i - y_j)`` (the diagonal is excluded, so singular kernels such
    as ``-log|z|`` are fine)."""

    def __init__(
        self, W: FnSpec = "aggregation", registry: Registry | None = None, check_convexity: bool = False
    ) -> None:
        self.W = _resolve("kernel", W, registry)
        self._label = W if isinstance(W, str) else type(self.W).__name__
        self.convexity = _ConvexityCheck(
            check_convexity, self.W, "kernel W", _fn_label(W, self.W), differences=True
        )

    def start(self, x0: Tensor, log_density0: Tensor | None = None) -> None:
        """With ``check_convexity``: property-check ``W`` on the box of differences of
        ``rho_0``'s particles and warn (:class:`ConvexityWarning`) if it is not convex.
        Refuses fewer than 2 particles before any work (the pair mean would be empty)."""
        if x0.shape[0] < 2:
            raise ValueError(f"an interaction energy needs at least 2 particles, got n = {x0.shape[0]}")
        self.convexity(x0)

    def _energy(self, y: Tensor) -> Tensor:
        n = y.shape[0]
        if n < 2:
            raise ValueError(f"an interaction energy needs at least 2 particles, got {n}")
        if getattr(self.W, "even", False):
            return self._pairs_once(y) / (n * (n - 1))
        diff = y[:, None, :] - y[None, :, :]
        eye = torch.eye(n, dtype=torch.bool, device=y.device)
        diff = torch.where(eye[..., None], torch.ones_like(diff), diff)  # keep W finite on i == j
        w = self.W(diff).masked_fill(eye, 0.0)
        return 0.5 * w.sum() / (n * (n - 1))

    PAIR_BLOCK = 1 << 22
    """Pairs per block of :meth:`_pairs_once` (4M pairs: 100 MB of differences in d = 3, float64)."""

    def _pairs_once(self, y: Tensor) -> Tensor:
        """``sum_{i < j} W(y_i - y_j)``, which equals ``1/2 sum_{i != j} W(y_i - y_j)`` for an
        even kernel (``W.even = True``: ``W(-z) = W(z)``) at half the kernel evaluations.
        A kernel with ``value_and_grad`` (both built-ins) goes through :func:`pair_sum_and_grad`
        (dense row blocks, closed-form gradient: 1.8x faster at N = 1000 and 3.9x at N = 4000 than
        autograd through gathered pairs, ``benchmarks/interaction_pairs.py``); any other even kernel through autograd over the gathered pairs ``i < j``,
        in row blocks of about ``PAIR_BLOCK`` pairs. Either way memory stays bounded for large N."""
        n = y.shape[0]
        if hasattr(self.W, "value_and_grad"):
            return cast(Tensor, _EvenPairSum.apply(y, self.W))
        rows = max(1, min(n - 1, self.PAIR_BLOCK // n))
        total = y.new_zeros(())
        for start in range(0, n - 1, rows):
            i, j = _upper_pairs(n, start, min(start + rows, n - 1), y.device)
            total = total + self.W(y[i] - y[j]).sum()
        return total

    def inner_objective(self, ctx: StepContext) -> Tensor:
        self.convexity(ctx.x)
        return self._energy(ctx.y)

    def value(self, x: Tensor, log_density: Tensor | None = None) -> float | None:
        """``F`` of the cloud; ``ValueError`` when it is infinite or NaN (e.g. duplicated
        particles under a kernel singular at 0, such as ``-log|z|``), naming the cause."""
        self.convexity(x)
        energy = float(self._energy(x))
        if not math.isfinite(energy):
            n = x.shape[0]
            coincident = n - int(torch.unique(x.detach(), dim=0).shape[0])
            why = (
                f"{coincident} of {n} particles duplicate another and W is singular at 0"
                if coincident
                else "W is not finite on some pair of particles"
            )
            raise ValueError(f"{self!r}: the interaction energy is {energy} on these {n} particles: {why}")
        return energy

    def reference_parts(self) -> dict[str, object]:
        """The pieces the ideal 1-D JKO reference needs (:class:`jkoflow.functional.ReferenceTerm`)."""
        return {"W": self.W}

    def __repr__(self) -> str:
        return f"InteractionEnergy({self._label})"


class InternalEnergy(Functional):
    """``F(rho) = int f(rho(x)) dx`` through carried log-densities and ``log det H_u``."""

    needs = frozenset({Need.LOGDET, Need.LOG_DENSITY})

    def __init__(
        self, f: FnSpec | InternalFn = "entropy", registry: Registry | None = None, **params: Any
    ) -> None:
        if params:
            if not isinstance(f, str):
                raise TypeError(f"parameters {sorted(params)} given with a non-name f={f!r}")
            f = {"kind": f, **params}
        self.f = _internal_fn(f, registry)
        if self.f.pressure_is_constant:
            self.needs = frozenset({Need.LOGDET})

    def inner_objective(self, ctx: StepContext) -> Tensor:
        """``-mean_i P(xi_i)/xi_i * log det H_u(x_i)`` with ``xi_i = rho_t(x_i) / det H_u(x_i)``
        the density at the pushed particle (weights detached: their gradient is that of
        ``int f((grad u) # rho_t)``)."""
        assert ctx.logdet is not None
        if ctx.log_density is None:
            if not self.f.pressure_is_constant:
                raise ValueError(f"{self!r} needs the log-densities log rho_t(x_i) of the particles")
            log_xi = -ctx.logdet.value
        else:
            log_xi = ctx.log_density - ctx.logdet.value
        weight = self.f.pressure_over_r(log_xi).detach()
        return -(weight * ctx.logdet.surrogate).mean()

    def value(self, x: Tensor, log_density: Tensor | None = None) -> float | None:
        if log_density is None:
            return None
        return float(self.f_over_r_mean(log_density))

    def f_over_r_mean(self, log_density: Tensor) -> Tensor:
        """``mean_i f(rho_i)/rho_i``: the Monte Carlo estimate of ``int f(rho)``."""
        return self.f.f_over_r(log_density).mean()

    def reference_parts(self) -> dict[str, object]:
        """The pieces the ideal 1-D JKO reference needs (:class:`jkoflow.functional.ReferenceTerm`)."""
        return {"f": self.f}

    def __repr__(self) -> str:
        return f"InternalEnergy({type(self.f).__name__})"


def entropy() -> InternalEnergy:
    """``F(rho) = int rho log rho`` (its gradient flow is the heat equation)."""
    return InternalEnergy(Entropy())


def porous_medium(m: float = 2.0) -> InternalEnergy:
    """``F(rho) = int rho^m / (m - 1)`` (porous medium equation ``d_t rho = Lap rho^m``)."""
    return InternalEnergy(PorousMedium(m))


def potential(
    V: str | dict[str, Any] = "quadratic", registry: Registry | None = None, check_convexity: bool = False
) -> PotentialEnergy:
    """Potential energy ``int V d rho``; ``V`` a registered name, ``{kind = ..., ...}`` or an
    import string ``"pkg.mod:V"`` of the function ``V(x)`` itself. ``check_convexity = true``
    property-tests ``V`` before the run and warns (:class:`ConvexityWarning`) with the points
    where it fails to be convex."""
    return PotentialEnergy(V, registry, check_convexity)


def interaction(
    W: str | dict[str, Any] = "aggregation", registry: Registry | None = None, check_convexity: bool = False
) -> InteractionEnergy:
    """Interaction energy with kernel ``W`` (name, ``{kind = ..., ...}`` or import string of
    ``W(z)``); ``check_convexity = true`` property-tests ``W`` before the run (a warning)."""
    return InteractionEnergy(W, registry, check_convexity)


def internal(f: str | dict[str, Any] = "entropy", registry: Registry | None = None) -> InternalEnergy:
    """Internal energy ``int f(rho)``; ``f`` a registered name, table, or import string of ``f(r)``."""
    return InternalEnergy(f, registry)


@hookimpl
def jkoflow_register(registry: Registry) -> None:
    registry.add("functional", "potential", potential)
    registry.add("functional", "interaction", interaction)
    registry.add("functional", "internal", internal)
    registry.add("functional", "entropy", entropy)
    registry.add("functional", "porous_medium", porous_medium)
    registry.add("potential_fn", "quadratic", Quadratic)
    registry.add("kernel", "aggregation", AggregationKernel)
    registry.add("kernel", "quadratic", QuadraticKernel)
    registry.add("internal_fn", "entropy", Entropy)
    registry.add("internal_fn", "porous_medium", PorousMedium)
