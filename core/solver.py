"""The JKO-ICNN solver (paper Algorithm 1).

Each step solves

    rho_{t+1} = argmin_rho  F(rho) + W_2^2(rho, rho_t) / (2 tau)

over ``rho = (grad u_theta) # rho_t`` with ``u_theta`` an input-convex network, by training
``theta`` with a stochastic optimizer on

    L(theta) = Fhat(u_theta; x) + 1/(2 tau) * mean_i |grad u_theta(x_i) - x_i|^2,

then pushing the particles ``x_i <- grad u_theta(x_i)`` and their log-densities
``l_i <- l_i - log det H_u(x_i)``.

With ``fresh_samples = B`` the inner objective is estimated, at every inner iteration, on
``B`` new draws ``z ~ rho_0`` pushed through the maps of the previous steps,
``x = T_t o ... o T_1 (z) ~ rho_t`` (paper Section 3: "particles of rho_t obtained via the
pushforward map of previous point clouds"), with ``log rho_t(x) = log rho_0(z) -
sum_s log det H_{u_s}`` when a term needs densities. Its expectation is then the population
objective ``F((grad u) # rho_t) + E_{rho_t} |grad u(x) - x|^2 / (2 tau)`` rather than its value on one
fixed cloud, so the fitted map approaches the ideal JKO map of ``rho_t`` instead of the
minimizer for the empirical measure of the carried particles (whose sampling error biases
every step the same way and accumulates). The carried particles are only pushed forward,
for evaluation.

Failures and recovery
---------------------
Inside the inner loop three things count as a *numerical failure*: a non-finite loss, a
:class:`~jkoflow.logdet.LogDetError` from the log-det estimator, and non-finite parameters
after ``optimizer.step()`` and ``project()``. Each is attributed before anything else happens:

* a non-finite loss: the transport term and every term of the functional
  (``functional.terms()``, the ``(weight, term)`` parts of ``2 * F + G``) are evaluated alone at
  ``y = T(x)``; for each non-finite one the particles where it is non-finite are counted (by
  bisection over the cloud; not for terms that cannot be evaluated on one particle, such as
  interaction energies), as are the non-finite rows of ``T(x)``. A non-finite term is evaluated
  again at the identity map ``y = x``: non-finite there too, the term itself returns NaN/inf
  on the current particles (``V`` returned NaN, duplicated points met a singular kernel, ...)
  and a smaller ``tau`` or ``lr`` will not help; finite there, the map moved too far and the
  hint is a smaller ``tau`` or ``lr`` (or a larger strong-convexity ``alpha``);
* a ``LogDetError`` is attributed to the potential net: "the log-det estimator found H_u not
  positive definite at k of n particles: net ICNN is not convex there", with a pointer to
  :func:`jkoflow.testing.assert_valid_potential_net` and ``strong_convexity``;
* non-finite parameters name the parameters, the loss and the gradient norm.

:attr:`JKOSolver.on_failure` chooses the recovery: ``"halve_lr"`` (default) restores the last
parameters with a finite loss, halves the learning rate, clears the optimizer state and goes
on, at most ``max_lr_drops`` times per step (each recovered failure is listed, attributed, in
``StepRecord.failures``; ``StepRecord.lr_drops`` counts them); ``"stop"`` raises at the first
failure. Giving up raises :class:`FlowDivergedError` whose message names the step, the inner
iteration, the cause and the hint, and whose ``flow`` holds every completed step.

After a step the pushed particles and, when carried, the log-densities
``l - log det H_u(x)`` are checked: a non-finite one (or a ``LogDetError`` of that final
estimate) raises :class:`FlowDivergedError` naming the step, the count and the net or the
log-det estimator. Nothing non-finite is ever appended to the flow, and
:mod:`jkoflow.report` refuses to write non-finite particles and writes non-finite metrics as
JSON ``null`` listed under ``non_finite``.

Convergence: an inner loop of ``m >= 20`` iterations is flagged ``StepRecord.converged =
False``, with one :class:`ConvergenceWarning` naming the step, the loss change and what to
try, when all three hold: the mean loss of the last tenth of the iterations is below that
of the tenth before by more than ``CONVERGENCE_RTOL = 1e-2`` of its magnitude; that decrease
exceeds ``CONVERGENCE_Z = 3`` standard errors of the loss noise (estimated from the successive
differences of the loss over those two tenths, so the noise of minibatches or fresh samples is
not mistaken for progress); and the final gradient norm (``StepRecord.grad_norm``, over all
parameters) is above ``CONVERGENCE_GRAD = 0.1`` of the step's first. Shorter loops are not
judged. Measured: the heat problem's default run (2 steps, 100 iterations) has decreases of
3e-4 and 1e-4 of ``|loss|`` and gradient ratios 0.003 and 0.03 (converged); ``V = 1e12 |x|^2``
with ``lr = 1e-2`` and 20 iterations, decreases of 0.09-0.12, 50-65 noise standard errors and
gradient ratios 0.46-0.55 (not converged).
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Callable

import attrs
import torch
from torch import Tensor

from .flow import Flow, StepRecord
from .functional import Functional, LogDet, Need, StepContext
from .inner import PLATEAU_DROPS, InnerLoop
from .logdet import LogDetError, LogDetEstimator, transport_and_logdet
from .potential import PotentialNet

Sample0 = Callable[[int, torch.Generator], tuple[Tensor, Tensor | None]]
"""Draws ``(z, log rho_0(z))`` with ``z`` of shape ``(n, d)`` from the initial distribution."""

LR_SCHEDULES = ("constant", "cosine", "plateau")

AUTO_TOL = 0.01
"""``tol = "auto"`` on a deterministic inner objective: with the plateau schedule and windows of
20 it kept the porous-medium deviation from the ideal JKO at 2-17 % of the ideal's own error
(tau 4e-2 .. 2.5e-3, seeds 0-2; docs/benchmarks.md, "Speed of a JKO step")."""

OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
    "lbfgs": torch.optim.LBFGS,
}

LBFGS_HISTORY = 20
"""Curvature pairs kept by ``optimizer = "lbfgs"``."""


def make_optimizer(name: str, params: list[Tensor], lr: float) -> torch.optim.Optimizer:
    """The inner optimizer ``name`` over ``params``: L-BFGS with a strong-Wolfe line search and
    one iteration per ``step()`` call (the inner loop drives the iterations); Adam/AdamW fused
    (one kernel for the whole update) on the CPU and on CUDA. On the ICNNs of
    ``benchmarks/jko_step.py`` the fused CPU step measured 93-234 us against 426-806 us for
    torch's default per-parameter loop (1 thread, ``benchmarks/optimizer_step.py``)."""
    if name == "lbfgs":
        return torch.optim.LBFGS(
            params, lr=lr, max_iter=1, history_size=LBFGS_HISTORY, line_search_fn="strong_wolfe"
        )
    fusable = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    if name in ("adam", "adamw") and params and fusable and len({p.device for p in params}) == 1:
        return OPTIMIZERS[name](params, lr=lr, fused=True)
    return OPTIMIZERS[name](params, lr=lr)


class FlowDivergedError(RuntimeError):
    """A JKO step produced non-finite values it could not recover from.

    ``flow`` holds every step completed before the failure, so nothing is lost.
    """

    def __init__(self, message: str, flow: Flow, retryable: bool = True) -> None:
        super().__init__(message)
        self.flow = flow
        self.retryable = retryable
        """``False`` when a smaller step cannot help (a term undefined at the current particles)."""


class SubstepWarning(UserWarning):
    """A JKO step failed and is retried as two substeps of half its ``tau``
    (``on_failure = "substeps"``)."""


class ConvergenceWarning(UserWarning):
    """An inner loop ended far from convergence (see "Failures and recovery" in the module
    docstring for the criterion); the step is kept, with ``StepRecord.converged = False``."""


ON_FAILURE = ("halve_lr", "substeps", "stop")
"""Recovery policies of :attr:`JKOSolver.on_failure`."""

CONVERGENCE_RTOL = 1e-2
"""Decrease of the mean inner loss between the last two tenths of a step's iterations, relative
to its magnitude, above which the inner loop may count as not converged (module docstring)."""

CONVERGENCE_Z = 3.0
"""... and in standard errors of the loss noise (minibatches and fresh samples make it noisy)."""

CONVERGENCE_GRAD = 0.1
"""... and final over first gradient norm of the step."""

DIAGNOSIS_BUDGET = 512
"""At most this many subset evaluations per term when counting the particles at which a term is
non-finite (bisection); beyond it the count is reported as unknown."""


def _positive(instance: object, attribute: attrs.Attribute, value: float) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not (math.isfinite(value) and value > 0)
    ):
        raise ValueError(f"{attribute.name}={value!r}: expected a positive number, finite")


def _non_negative_int(instance: object, attribute: attrs.Attribute, value: int) -> None:
    if isinstance(value, bool) or not (isinstance(value, int) and value >= 0):
        raise ValueError(f"{attribute.name}={value!r}: expected a non-negative integer")


def _int(instance: object, attribute: attrs.Attribute, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{attribute.name}={value!r}: expected an integer")  # noqa: TRY004 (spec maps ValueError)


def _bool(instance: object, attribute: attrs.Attribute, value: bool) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{attribute.name}={value!r}: expected true or false")  # noqa: TRY004 (spec maps ValueError)


def _on_failure(instance: object, attribute: attrs.Attribute, value: str) -> None:
    if value not in ON_FAILURE:
        raise ValueError(f"on_failure={value!r}: expected one of {list(ON_FAILURE)}")


def _optimizer_name(instance: object, attribute: attrs.Attribute, value: str) -> None:
    if value not in OPTIMIZERS:
        raise ValueError(f"optimizer={value!r}: expected one of {sorted(OPTIMIZERS)}")


def _check_start(x0: object, log_density0: object, make_potential: object) -> None:
    """Refuse a start cloud that would run silently wrong: not an ``(n, d)`` floating tensor,
    non-finite entries, or log-densities that are not one finite value per particle."""
    if not isinstance(x0, Tensor) or not x0.is_floating_point() or x0.ndim != 2:
        what = f"shape {tuple(x0.shape)}, dtype {x0.dtype}" if isinstance(x0, Tensor) else type(x0).__name__
        raise ValueError(f"x0 ({what}): expected a floating tensor of shape (n, d)")
    bad = int((~torch.isfinite(x0)).any(dim=1).sum())
    if bad:
        raise ValueError(f"x0: {bad} of {x0.shape[0]} particles have non-finite coordinates")
    if log_density0 is not None:
        if not isinstance(log_density0, Tensor) or tuple(log_density0.shape) != (x0.shape[0],):
            shape = (
                tuple(log_density0.shape) if isinstance(log_density0, Tensor) else type(log_density0).__name__
            )
            raise ValueError(
                f"log_density0 {shape}: expected a tensor of shape ({x0.shape[0]},), one per particle"
            )
        if log_density0.dtype != x0.dtype:
            raise ValueError(
                f"log_density0 is {log_density0.dtype} but x0 is {x0.dtype}: expected one dtype for both"
            )
        bad = int((~torch.isfinite(log_density0)).sum())
        if bad:
            raise ValueError(f"log_density0: {bad} of {x0.shape[0]} values are non-finite")
    if isinstance(make_potential, PotentialNet):
        raise TypeError(
            f"make_potential is a {type(make_potential).__name__} instance: expected a factory that builds "
            "one (e.g. make_potential=lambda: copy.deepcopy(net))"
        )
    if not callable(make_potential):
        raise TypeError(f"make_potential={make_potential!r}: expected a callable returning a PotentialNet")


@attrs.define
class _Fit:
    """What one inner loop produced (see :meth:`JKOSolver._fit`)."""

    losses: list[float]
    transport: float
    drops: int
    failures: list[str]
    grad_norm: float
    converged: bool
    convergence: str
    stop: str = ""
    evaluations: int = 0


def _check_potential(potential: object, x: Tensor) -> None:
    """``make_potential()`` must give a :class:`PotentialNet` of the particles' dimension,
    dtype and device (a clear error here instead of a torch error in the first iteration)."""
    if not isinstance(potential, PotentialNet):
        raise TypeError(
            f"make_potential() returned {type(potential).__name__}: expected a jkoflow.PotentialNet"
        )
    dim = getattr(potential, "dim", None)
    if dim != x.shape[1]:
        raise ValueError(
            f"the potential net has dim={dim!r} but the particles have d={x.shape[1]} (x0 of shape {tuple(x.shape)})"
        )
    for name, p in potential.named_parameters():
        if p.dtype != x.dtype or p.device != x.device:
            raise ValueError(
                f"parameter {name} of net {type(potential).__name__} is {p.dtype} on {p.device} but the particles are "
                f"{x.dtype} on {x.device}: build the net with .to(x0) (make_potential=lambda: net(...).to(x0))"
            )


def _bad_rows(t: Tensor) -> int:
    """Number of rows (particles) of ``t`` with a non-finite entry."""
    if t.numel() == 0:
        return 0
    return int((~torch.isfinite(t)).reshape(t.shape[0], -1).any(dim=1).sum())


@torch.no_grad()
def _total_norm(tensors: list[Tensor]) -> Tensor:
    """Euclidean norm over all ``tensors`` together (one fused pass where torch has it)."""
    if not tensors:
        return torch.zeros(())
    if hasattr(torch, "_foreach_norm"):
        return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(tensors)))
    return torch.linalg.vector_norm(
        torch.stack([torch.linalg.vector_norm(t) for t in tensors])
    )  # pragma: no cover


def _finite_parameters(params: list[Tensor]) -> bool:
    """Whether every tensor of ``params`` is finite: their joint norm is (one device
    synchronization); a non-finite norm is confirmed entry by entry (it may only overflow)."""
    if bool(torch.isfinite(_total_norm(params))):
        return True
    return all(bool(torch.isfinite(p).all()) for p in params)


def _describe(t: Tensor) -> str:
    """``NaN``, ``+inf``, ``-inf`` or ``inf`` (mixed signs) for a non-finite tensor."""
    if bool(torch.isnan(t).any()):
        return "NaN"
    pos, neg = bool((t == math.inf).any()), bool((t == -math.inf).any())
    return "+inf" if pos and not neg else "-inf" if neg and not pos else "inf"


def _grad_norm(params: list[Tensor]) -> Tensor:
    """Euclidean norm of the gradient over all ``params`` (0 when none has a gradient)."""
    return _total_norm([p.grad for p in params if p.grad is not None])


def _context(
    x: Tensor, y: Tensor, tau: float, ld: LogDet | None, lb: Tensor | None, idx: Tensor | None
) -> StepContext:
    if idx is None:
        return StepContext(x=x, y=y, tau=tau, logdet=ld, log_density=lb)
    sub = None if ld is None else LogDet(value=ld.value[idx], surrogate=ld.surrogate[idx])
    return StepContext(x=x[idx], y=y[idx], tau=tau, logdet=sub, log_density=None if lb is None else lb[idx])


def _evaluate(
    term: Functional,
    x: Tensor,
    y: Tensor,
    tau: float,
    ld: LogDet | None,
    lb: Tensor | None,
    idx: Tensor | None = None,
) -> Tensor | str:
    """``term``'s inner objective alone (detached), or the exception it raised, as text."""
    try:
        value = term.inner_objective(_context(x, y, tau, ld, lb, idx))
    except Exception as exc:  # noqa: BLE001 (a diagnosis must not hide the failure it diagnoses)
        return f"{type(exc).__name__}: {exc}"
    return torch.as_tensor(value).detach()


def _count_bad(
    term: Functional, x: Tensor, y: Tensor, tau: float, ld: LogDet | None, lb: Tensor | None
) -> int | None:
    """At how many particles ``term`` is non-finite, found by bisection over the particles
    (a subset is split while its value is non-finite); ``None`` when the term cannot be
    evaluated on single particles (e.g. an interaction energy) or the search would exceed
    :data:`DIAGNOSIS_BUDGET` evaluations."""
    n = x.shape[0]
    everyone = torch.arange(n, device=x.device)
    stack = [everyone[: n // 2], everyone[n // 2 :]] if n > 1 else []
    bad = 1 if n == 1 else 0
    calls = 0
    while stack:
        idx = stack.pop()
        if idx.numel() == 0:
            continue
        calls += 1
        if calls > DIAGNOSIS_BUDGET:
            return None
        value = _evaluate(term, x, y, tau, ld, lb, idx)
        if isinstance(value, str):
            return None
        if bool(torch.isfinite(value).all()):
            continue
        if idx.numel() == 1:
            bad += 1
        else:
            half = idx.numel() // 2
            stack += [idx[:half], idx[half:]]
    return bad


def _logdet_cause(exc: LogDetError, logdet: LogDetEstimator, potential: PotentialNet | None) -> str:
    """A :class:`LogDetError` attributed to the potential net."""
    net = f"net {type(potential).__name__}" if potential is not None else "one of the previous maps"
    name = type(logdet).__name__
    detail = f"({type(exc).__name__}: {exc})"
    if "positive definite" in str(exc) or "curvature" in str(exc):
        return (
            f"the log-det estimator {name} found H_u not positive definite at {exc.bad} of {exc.total} "
            f"particles: {net} is not convex there {detail}"
        )
    return (
        f"the log-det estimator {name} found log det H_u not finite at {exc.bad} of {exc.total} particles, "
        f"i.e. H_u singular or not positive definite in floating point: {net} is not strongly convex there "
        f"{detail}"
    )


def _logdet_hint(potential: PotentialNet) -> str:
    return (
        f"Check the net with jkoflow.testing.assert_valid_potential_net, and give it a strong_convexity "
        f"> 0 (now {potential.strong_convexity:g}; the ficnn's alpha) so that H_u >= alpha I everywhere"
    )


@attrs.define
class JKOSolver:
    """Settings of the outer (JKO) and inner (ICNN fitting) loops.

    Parameters
    ----------
    tau: JKO step size.
    steps: number of JKO steps ``T``.
    inner_iters: the cap on optimizer iterations per step (``n_u`` in the paper); the loop
        ends earlier when the stopping rule (``tol``) says it has stalled.
    lr: learning rate of the inner optimizer (for ``"lbfgs"``: its initial step length, which
        the line search adapts).
    optimizer: ``"adam"`` (paper; one fused kernel per step), ``"adamw"``, ``"sgd"`` or ``"lbfgs"`` (torch's
        L-BFGS with a strong-Wolfe line search, for deterministic objectives: no
        ``batch_size``, no ``fresh_samples``).
    warm_start: start each step from the previous step's ``theta`` (else re-initialize).
    seed: seeds torch before building potentials and drawing probes.
    max_lr_drops: how often one step may recover from a non-finite loss by restoring the
        last finite parameters and halving the learning rate before giving up
        (``on_failure = "halve_lr"``).
    batch_size: particles per inner iteration (a fresh random minibatch each time); ``None``
        uses them all. With many particles and a small batch the inner objective is an
        unbiased estimate over the whole cloud at the cost of ``batch_size`` particles per
        iteration, which shrinks the bias of fitting each step to one fixed small sample.
    fresh_samples: draw this many new particles ``z ~ rho_0`` at every inner iteration and
        push them through the previous steps' maps (see the module docstring); ``None``
        (or ``0``, for TOML) trains on the carried particles. Needs ``sample0`` in :meth:`run`. The cost per
        inner iteration grows with the step index (one gradient, plus one ``log det`` when a
        term needs densities, per previous map and sample).
    lr_schedule: ``"plateau"`` (default), ``"constant"`` or ``"cosine"`` (the inner learning rate
        decays from ``lr`` to ``lr / 100`` over ``inner_iters`` by a half cosine, restarting every step; with
        stochastic objectives such as ``fresh_samples`` this averages out the gradient noise
        that a constant rate leaves in the last iterate). With ``"plateau"`` the lr starts at
        ``lr`` and is divided by 10 each time the stopping rule finds a stall, ``plateau_drops``
        times, so that the loop ends at ``lr / 10**plateau_drops`` after as many iterations as
        the step needs.
    plateau_drops: divisions of the lr by 10 under ``lr_schedule = "plateau"`` before the next
        stall ends the loop (default :data:`jkoflow.inner.PLATEAU_DROPS` = 1; 2 ends at the
        cosine floor ``lr / 100``, the default before 2026-12-03).
    progress: show a progress bar over JKO steps.
    on_failure: what a non-finite loss, a failed ``log det H_u`` or non-finite parameters
        do inside the inner loop: ``"halve_lr"`` (default) restores the last finite
        parameters, halves the learning rate and goes on, at most ``max_lr_drops`` times per
        step; ``"substeps"`` does the same and, when the halvings do not suffice, retries the
        step as 2 substeps of ``tau / 2`` (recursively, down to ``tau / max_substeps``), each
        recorded as its own entry of the flow (``StepRecord.tau``, ``StepRecord.substep``);
        ``"stop"`` raises :class:`FlowDivergedError` at the first one. Either way the error
        names the cause (see "Failures and recovery" in the module docstring).
    max_substeps: the finest split of one step under ``on_failure = "substeps"`` (a power
        of 2 is reached by halvings: 4 allows 2 and 4 substeps).
    tol: ``"auto"`` (default: :data:`AUTO_TOL` with the plateau schedule on a deterministic
        objective, else off; see :attr:`inner_tol`) or the relative tolerance
        of the inner stopping rule (:mod:`jkoflow.inner`): the loop has
        stalled when the mean loss of the last ``tol_window`` iterations improved on the window
        before by at most ``tol`` times the step's total improvement so far. A stall ends the
        loop, or, with ``lr_schedule = "plateau"``, divides the lr by 10 (``plateau_drops``
        times) before it ends it. ``0`` runs every one of ``inner_iters``.
    tol_window: iterations per window of the stopping rule.
    compile: ``torch.compile`` the net's sweeps (``T = grad u`` and ``H_u``) in the inner loop;
        the compile time is spent in the first step's first iterations (and again for a new
        net or shape); ``StepRecord.compile_seconds`` (``compile_seconds`` in ``metrics.json``)
        reports it apart.
    """

    tau: float = attrs.field(validator=_positive)
    steps: int = attrs.field(validator=_non_negative_int)
    inner_iters: int = attrs.field(default=200, validator=_non_negative_int)
    lr: float = attrs.field(default=1e-2, validator=_positive)
    optimizer: str = attrs.field(default="adam", validator=_optimizer_name)
    warm_start: bool = attrs.field(default=True, validator=_bool)
    seed: int = attrs.field(default=0, validator=_int)
    max_lr_drops: int = attrs.field(default=4, validator=_non_negative_int)
    batch_size: int | None = attrs.field(default=None)
    fresh_samples: int | None = attrs.field(default=None)
    lr_schedule: str = attrs.field(default="plateau")
    progress: bool = attrs.field(default=False, validator=_bool)
    on_failure: str = attrs.field(default="halve_lr", validator=_on_failure)
    max_substeps: int = attrs.field(default=4, validator=_non_negative_int)
    tol: float | str = attrs.field(default="auto")
    tol_window: int = attrs.field(default=20, validator=_non_negative_int)
    plateau_drops: int = attrs.field(default=PLATEAU_DROPS, validator=_non_negative_int)
    compile: bool = attrs.field(default=False, validator=_bool)

    @tol.validator
    def _check_tol(self, attribute: attrs.Attribute, value: float | str) -> None:
        if value == "auto":
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 <= value < 1):
            raise ValueError(
                f"tol={value!r}: expected 'auto' or a number in [0, 1) (0 runs every inner iteration)"
            )

    @property
    def inner_tol(self) -> float:
        """``tol`` as used. ``"auto"`` is :data:`AUTO_TOL` with the plateau schedule on a
        deterministic inner objective, and 0 (off, every one of ``inner_iters``) otherwise:
        with ``fresh_samples`` or ``batch_size`` (measured: stopping the d = 20 Gaussian
        Fokker-Planck's fresh-sample cosine loops at a stall raised its covariance error from
        0.022 to 0.063) and with an explicit ``"constant"`` or ``"cosine"`` schedule (stopping
        the nonlinear Fokker-Planck default's constant-lr loops at a stall raised its W1 to the
        steady state from 0.0075 to 0.019)."""
        if self.tol != "auto":
            return float(self.tol)
        stochastic = bool(self.fresh_samples) or self.batch_size is not None
        return AUTO_TOL if self.lr_schedule == "plateau" and not stochastic else 0.0

    @optimizer.validator
    def _check_lbfgs(self, attribute: attrs.Attribute, value: str) -> None:
        if value == "lbfgs" and (self.batch_size is not None or self.fresh_samples):
            raise ValueError(
                f"optimizer='lbfgs' with batch_size={self.batch_size!r}, fresh_samples={self.fresh_samples!r}: "
                "L-BFGS needs a deterministic objective; expected batch_size = None and fresh_samples = 0 "
                "(or an optimizer such as 'adam')"
            )

    @batch_size.validator
    def _check_batch_size(self, attribute: attrs.Attribute, value: int | None) -> None:
        if value is not None and (isinstance(value, bool) or not (isinstance(value, int) and value >= 2)):
            raise ValueError(f"batch_size={value!r}: expected an integer >= 2 or None (all particles)")

    @fresh_samples.validator
    def _check_fresh_samples(self, attribute: attrs.Attribute, value: int | None) -> None:
        if value is None or value == 0:
            return
        if isinstance(value, bool) or not (isinstance(value, int) and value >= 2):
            raise ValueError(
                f"fresh_samples={value!r}: expected an integer >= 2, or 0 / None (train on the carried particles)"
            )
        if self.batch_size is not None:
            raise ValueError(
                f"fresh_samples={value!r} and batch_size={self.batch_size!r}: expected at most one of them "
                "(fresh samples replace minibatches of the carried particles)"
            )
        if self.inner_iters == 0:
            raise ValueError(
                f"fresh_samples={value!r} with inner_iters=0: expected inner_iters >= 1 "
                "(fresh samples are drawn per inner iteration)"
            )

    @lr_schedule.validator
    def _check_lr_schedule(self, attribute: attrs.Attribute, value: str) -> None:
        if value not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule={value!r}: expected one of {list(LR_SCHEDULES)}")

    def lr_at(self, iteration: int, lr: float | None = None) -> float:
        """Inner learning rate at ``iteration`` (0-based) of a step, starting from ``lr``."""
        lr = self.lr if lr is None else lr
        if self.lr_schedule != "cosine" or self.inner_iters <= 1:
            return lr
        final = lr / 100
        return final + 0.5 * (lr - final) * (1 + math.cos(math.pi * iteration / (self.inner_iters - 1)))

    def run(
        self,
        functional: Functional,
        make_potential: Callable[[], PotentialNet],
        x0: Tensor,
        log_density0: Tensor | None = None,
        logdet: LogDetEstimator | None = None,
        callback: Callable[[Flow], None] | None = None,
        sample0: Sample0 | None = None,
        resume: Flow | None = None,
    ) -> Flow:
        """Run ``steps`` JKO steps from the particles ``x0`` (shape ``(n, d)``).

        ``resume``: a flow of ``k <= steps`` completed JKO steps of this same solver and problem
        (e.g. rebuilt from a checkpoint, with its ``rng_state``): the run continues from its last
        particles, log-densities and potential (the warm start) with torch's generator restored,
        appends steps ``k + 1 .. steps`` to it and returns it. On one thread the result equals the
        uninterrupted run's bit for bit: every per-step generator is seeded by the step index and
        the global one is restored from ``rng_state``. The callback is not called for the
        resumed steps (nor for step 0). ``x0`` and ``log_density0`` are still checked (and
        should be the run's own).

        ``log_density0 = log rho_0(x0)`` lets the solver carry log-densities (needed by
        internal energies); ``logdet`` estimates ``log det H_u`` when a term needs it or when
        log-densities are carried. ``callback(flow)`` runs after step 0 and every step.
        ``sample0(n, generator) -> (z, log rho_0(z))`` draws from ``rho_0``; required by
        ``fresh_samples``.
        """
        _check_start(x0, log_density0, make_potential)
        if self.fresh_samples and sample0 is None:
            raise ValueError(
                f"fresh_samples={self.fresh_samples}: pass sample0(n, generator) drawing from rho_0"
            )
        needs = functional.needs
        if Need.LOG_DENSITY in needs and log_density0 is None:
            raise ValueError(f"{functional!r} needs log-densities: pass log_density0 = log rho_0(x0)")
        track = log_density0 is not None
        if (Need.LOGDET in needs or track) and logdet is None:
            why = (
                f"{functional!r} needs log det H_u"
                if Need.LOGDET in needs
                else "carrying log-densities (log_density0 given)"
            )
            raise ValueError(f"{why}: pass a LogDetEstimator as `logdet`")
        torch.manual_seed(self.seed)
        x = x0.detach().clone()
        lrho = None if log_density0 is None else log_density0.detach().clone()
        if resume is None:
            flow = Flow(tau=self.tau, particles=[x], log_densities=[lrho])
            functional.start(x, lrho)
            flow.initial_F = functional.value(x, lrho)
            _keep_rng(flow)
            if callback:
                with torch.random.fork_rng(devices=[]):  # a callback never shifts the flow's draws
                    callback(flow)
            potential = make_potential()
            first = 1
        else:
            flow, potential, first = self._resume_from(resume, functional, make_potential, x)
            x = flow.particles[-1]
            lrho = flow.log_densities[-1]
        _check_potential(potential, x)
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=self.steps, initial=first - 1, desc="JKO steps", unit="step")
        try:
            for step in range(first, self.steps + 1):
                if step > 1:
                    potential = copy.deepcopy(potential) if self.warm_start else make_potential()
                x, lrho, potential = self._advance(
                    potential,
                    make_potential,
                    functional,
                    x,
                    lrho,
                    logdet,
                    flow,
                    sample0,
                    callback,
                    step,
                    self.tau,
                    1,
                )
                if bar is not None:
                    record = flow.records[-1]
                    bar.set_postfix(F=record.F, loss=record.inner_loss[-1] if record.inner_loss else None)
                    bar.update()
        finally:
            if bar is not None:
                bar.close()
        return flow

    def _resume_from(
        self,
        resume: Flow,
        functional: Functional,
        make_potential: Callable[[], PotentialNet],
        x0: Tensor,
    ) -> tuple[Flow, PotentialNet, int]:
        """Check a flow to resume and return it, the potential the next step starts from and
        that step's index (see :meth:`run`)."""
        if not resume.particles or resume.particles[0].shape != x0.shape:
            got = None if not resume.particles else tuple(resume.particles[0].shape)
            raise ValueError(
                f"resume: the flow's start particles have shape {got}, expected {tuple(x0.shape)}"
            )
        if abs(resume.tau - self.tau) > 1e-12 * self.tau:
            raise ValueError(f"resume: the flow has tau = {resume.tau!r}, this solver tau = {self.tau!r}")
        t = resume.records[-1].t if resume.records else 0.0
        done = round(t / self.tau)
        if abs(t - done * self.tau) > 1e-9 * max(1.0, t) or len(resume.potentials) != len(resume.records):
            raise ValueError(
                f"resume: the flow ends at t = {t!r}, not after a whole JKO step of tau = {self.tau!r} "
                "(resume only from a checkpoint written after a complete step)"
            )
        if done > self.steps:
            raise ValueError(f"resume: the flow has {done} steps, more than steps = {self.steps}")
        if resume.rng_state is not None:
            torch.set_rng_state(resume.rng_state)
        if resume.cuda_rng_state is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(resume.cuda_rng_state)
        functional.start(resume.particles[0], resume.log_densities[0])
        if resume.initial_F is None:
            resume.initial_F = functional.value(resume.particles[0], resume.log_densities[0])
        potential = resume.potentials[-1] if resume.potentials else make_potential()
        return resume, potential, done + 1

    def _advance(
        self,
        potential: PotentialNet,
        make_potential: Callable[[], PotentialNet],
        functional: Functional,
        x: Tensor,
        lrho: Tensor | None,
        logdet: LogDetEstimator | None,
        flow: Flow,
        sample0: Sample0 | None,
        callback: Callable[[Flow], None] | None,
        step: int,
        tau: float,
        parts: int,
    ) -> tuple[Tensor, Tensor | None, PotentialNet]:
        """Advance the flow by ``tau`` (JKO step ``step``, or one of its ``parts`` substeps).

        With ``on_failure = "substeps"`` a (sub)step whose recovery by learning-rate halvings
        failed is retried as two substeps of ``tau / 2``, down to ``tau / max_substeps``; each
        substep is its own entry of the flow (map, particles, record with its ``tau`` and
        ``substep``). Returns the new particles, log-densities and the last potential."""
        start = copy.deepcopy(potential) if self.on_failure == "substeps" else potential
        try:
            return self._step(
                potential, functional, x, lrho, logdet, flow, sample0, callback, step, tau, parts
            )
        except FlowDivergedError as exc:
            if not exc.retryable:
                raise
            if self.on_failure != "substeps" or 2 * parts > self.max_substeps:
                if self.on_failure == "substeps":
                    raise FlowDivergedError(
                        f"{exc} (after splitting step {step} into {parts} substeps of tau = {tau:.3g})", flow
                    ) from exc
                raise
            warnings.warn(
                f"step {step}: {exc}; retrying as 2 substeps of tau = {tau / 2:.3g}",
                SubstepWarning,
                stacklevel=4,
            )
            fresh = copy.deepcopy(start) if self.warm_start else make_potential()
            args = (functional, x, lrho, logdet, flow, sample0, callback, step, tau / 2, 2 * parts)
            x, lrho, last = self._advance(fresh, make_potential, *args)
            nxt = copy.deepcopy(last) if self.warm_start else make_potential()
            args = (functional, x, lrho, logdet, flow, sample0, callback, step, tau / 2, 2 * parts)
            return self._advance(nxt, make_potential, *args)

    def _step(
        self,
        potential: PotentialNet,
        functional: Functional,
        x: Tensor,
        lrho: Tensor | None,
        logdet: LogDetEstimator | None,
        flow: Flow,
        sample0: Sample0 | None,
        callback: Callable[[Flow], None] | None,
        step: int,
        tau: float,
        parts: int,
    ) -> tuple[Tensor, Tensor | None, PotentialNet]:
        """One JKO (sub)step of size ``tau``: fit, push, record, call back."""
        begin = time.perf_counter()
        cpu_begin = time.process_time()
        compile_begin = _compile_clock() if self.compile else 0.0
        fit = self._fit(potential, functional, x, lrho, logdet, flow, sample0, tau)
        with torch.no_grad():
            if lrho is not None:
                assert logdet is not None
                lrho = self._push_log_density(potential, logdet, x, lrho, step, flow)
            x_next = potential.transport(x, create_graph=False)
        bad = _bad_rows(x_next)
        if bad:
            raise FlowDivergedError(
                f"step {step}: {bad} of {x.shape[0]} pushed particles are not finite "
                f"(T = grad u of net {type(potential).__name__} at the end of the inner loop)",
                flow,
            )
        t_before = flow.records[-1].t if flow.records else 0.0
        index = len(flow.records) + 1
        record = StepRecord(
            step=index,
            t=t_before + tau,
            F=functional.value(x_next, lrho),
            transport=fit.transport,
            inner_loss=fit.losses,
            seconds=time.perf_counter() - begin,
            cpu_seconds=time.process_time() - cpu_begin,
            compile_seconds=_compile_clock() - compile_begin if self.compile else 0.0,
            lr_drops=fit.drops,
            converged=fit.converged,
            grad_norm=fit.grad_norm,
            failures=fit.failures,
            iterations=len(fit.losses),
            stop=fit.stop,
            evaluations=fit.evaluations,
            tau=tau,
            substep="" if parts == 1 else f"part of step {step} split into {parts}",
        )
        if not fit.converged:
            warnings.warn(
                f"step {step}: the inner loop ended far from convergence: {fit.convergence}; "
                f"try more inner_iters (now {self.inner_iters}) or a different lr (now {self.lr:g})",
                ConvergenceWarning,
                stacklevel=4,
            )
        flow.potentials.append(potential)
        flow.particles.append(x_next)
        flow.log_densities.append(lrho)
        flow.records.append(record)
        _keep_rng(flow)
        if callback:
            with torch.random.fork_rng(devices=[]):
                callback(flow)
        return x_next, lrho, potential

    def _push_log_density(
        self, potential: PotentialNet, logdet: LogDetEstimator, x: Tensor, lrho: Tensor, step: int, flow: Flow
    ) -> Tensor:
        """``l <- l - log det H_u(x)`` after a step, refusing a failed or non-finite result."""
        name = type(logdet).__name__
        try:
            value = logdet(potential, x, grad=False).value
        except LogDetError as exc:
            raise FlowDivergedError(
                f"step {step}: carrying the log-densities failed: {_logdet_cause(exc, logdet, potential)}. "
                f"{_logdet_hint(potential)}.",
                flow,
            ) from exc
        out = lrho - value
        bad = int((~torch.isfinite(out)).sum())
        if bad:
            raise FlowDivergedError(
                f"step {step}: {bad} of {x.shape[0]} carried log-densities are not finite after "
                f"l <- l - log det H_u (log-det estimator {name} on net {type(potential).__name__}; "
                f"{int((~torch.isfinite(value)).sum())} non-finite log det values)",
                flow,
            )
        return out

    def _fit(
        self,
        potential: PotentialNet,
        functional: Functional,
        x: Tensor,
        lrho: Tensor | None,
        logdet: LogDetEstimator | None,
        flow: Flow,
        sample0: Sample0 | None = None,
        tau: float | None = None,
    ) -> _Fit:
        """Inner loop: fit ``theta`` for one JKO step (:class:`jkoflow.inner.InnerLoop`);
        returns the loss curve, the final transport term, the recoveries, the final gradient
        norm, why it stopped and the convergence flag. ``tau`` defaults to ``self.tau`` (a
        substep fits a fraction of it)."""
        tau = self.tau if tau is None else tau
        step = len(flow.records) + 1
        n = x.shape[0]
        batch = self.batch_size if self.batch_size is not None and self.batch_size < n else None
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + len(flow.records))
        wants_density = Need.LOG_DENSITY in functional.needs
        pool: tuple[Tensor, Tensor | None] | None = None
        if self.fresh_samples:
            assert sample0 is not None
            # with densities, push in chunks of B: log det H_u of a chunk costs what one iteration's does
            pool = self._fresh_checked(
                sample0, generator, flow, logdet if wants_density else None, x, step, wants_density
            )

        def batches(it: int) -> tuple[Tensor, Tensor | None]:
            if batch is not None:
                idx = torch.randperm(n, generator=generator)[:batch].to(x.device)
                return x[idx], None if lrho is None else lrho[idx]
            if pool is not None:
                assert self.fresh_samples is not None
                chunk = slice(it * self.fresh_samples, (it + 1) * self.fresh_samples)
                return pool[0][chunk], None if pool[1] is None else pool[1][chunk]
            return x, lrho

        def diagnose(
            xb: Tensor, lb: Tensor | None, y: Tensor, transport: Tensor, ld: LogDet | None
        ) -> tuple[str, str, bool]:
            return self._diagnose(functional, xb, lb, y, transport, ld, tau)

        def fail(message: str, retryable: bool) -> Exception:
            return FlowDivergedError(message, flow, retryable=retryable)

        def describe_logdet(exc: LogDetError) -> tuple[str, str]:
            assert logdet is not None
            return _logdet_cause(exc, logdet, potential), _logdet_hint(potential)

        loop = InnerLoop(
            self, potential, functional, logdet, tau, step, batches, diagnose, fail, describe_logdet
        )
        state = loop.run()
        converged, convergence = _convergence(state.losses, state.first_grad, state.grad_norm)
        if state.stop == "tol":
            converged, convergence = True, f"stopped by the tolerance after {state.iteration} iterations"
        return _Fit(
            state.losses,
            state.transport,
            state.drops,
            state.failures,
            state.grad_norm,
            converged,
            convergence,
            state.stop,
            state.evaluations,
        )

    def _diagnose(
        self,
        functional: Functional,
        x: Tensor,
        log_density: Tensor | None,
        y: Tensor,
        transport: Tensor,
        ld: LogDet | None,
        tau: float | None = None,
    ) -> tuple[str, str, bool]:
        """Why the inner loss is not finite: ``(cause, hint, hopeless)``, ``hopeless`` when a
        term is already undefined at the current particles (no smaller step can help).

        Evaluates the transport term and every term of ``functional`` separately at
        ``y = T(x)``, counts (by bisection over the particles) where a term is non-finite, and
        evaluates a non-finite term again at the identity map ``y = x`` to tell a map that
        moved particles where the term is undefined (a smaller step may help) from a term
        that is already undefined at the current particles (it will not)."""
        tau = self.tau if tau is None else tau
        n = x.shape[0]
        y = y.detach()
        x = x.detach()
        ld = None if ld is None else LogDet(value=ld.value.detach(), surrogate=ld.surrogate.detach())
        ld_id = (
            None
            if ld is None
            else LogDet(value=torch.zeros_like(ld.value), surrogate=torch.zeros_like(ld.value))
        )
        parts: list[str] = []
        bad_y = _bad_rows(y)
        if bad_y:
            parts.append(f"T(x) = grad u(x) is not finite at {bad_y} of {n} particles")
        if not bool(torch.isfinite(transport.detach())):
            parts.append(f"the transport term |T(x) - x|^2 / (2 tau) is {_describe(transport.detach())}")
        undefined_at_x: list[str] = []
        for k, (weight, term) in enumerate(functional.terms(), start=1):
            label = f"term {k} {term!r}" + ("" if weight == 1 else f" (weight {weight:g})")
            value = _evaluate(term, x, y, tau, ld, log_density)
            if isinstance(value, str):
                parts.append(f"{label} raised {value} when evaluated alone")
                continue
            if bool(torch.isfinite(value * weight)):
                continue
            count = _count_bad(term, x, y, tau, ld, log_density)
            if count is None:
                where = "(no per-particle count) of T(x)"
            elif count == 0:  # non-finite on the cloud, finite on every single particle
                where = (
                    "on the particles of T(x) together but at no single one (the term couples "
                    "particles: e.g. two of them coincide under a kernel singular at 0)"
                )
            else:
                where = f"at {count} of {n} particles of T(x)"
            at_x = _evaluate(term, x, x, tau, ld_id, log_density)
            if isinstance(at_x, str) or not bool(torch.isfinite(at_x * weight)):
                count_x = None if isinstance(at_x, str) else _count_bad(term, x, x, tau, ld_id, log_density)
                shown = _describe(at_x) if not isinstance(at_x, str) else f"raising {at_x}"
                at = f"at {count_x} of {n}" if count_x else "on the"
                parts.append(
                    f"{label} is {_describe(value)} {where}, and {shown} already {at} current "
                    "particles (the identity map T(x) = x)"
                )
                undefined_at_x.append(f"{term!r}")
            else:
                parts.append(f"{label} is {_describe(value)} {where}, but finite at the current particles")
        if not parts:
            parts.append(
                "the transport and every term are finite, but their sum is not (e.g. inf - inf between terms)"
            )
        cause = "; ".join(parts)
        if undefined_at_x:
            hint = (
                f"{' and '.join(undefined_at_x)} itself returns NaN/inf on the particles (e.g. V returned NaN "
                "there, or duplicated points met a singular kernel): a smaller tau or lr will not help; fix "
                "the term, or its domain, or the start particles"
            )
        else:
            hint = (
                "The terms are finite at the current particles, so the map moved too far: try a smaller tau "
                "or lr, or a larger strong-convexity alpha of the net"
            )
        return cause, hint, bool(undefined_at_x)

    def _fresh_checked(
        self,
        sample0: Sample0,
        generator: torch.Generator,
        flow: Flow,
        logdet: LogDetEstimator | None,
        like: Tensor,
        step: int,
        wants_density: bool,
    ) -> tuple[Tensor, Tensor | None]:
        """:meth:`_fresh` for one inner loop, refusing non-finite fresh particles or densities."""
        assert self.fresh_samples is not None
        try:
            pool = self._fresh(
                sample0,
                generator,
                flow,
                logdet,
                like,
                self.inner_iters,
                self.fresh_samples,
                chunk=self.fresh_samples if wants_density else 32768,
            )
        except LogDetError as exc:
            assert logdet is not None
            raise FlowDivergedError(
                f"step {step}: pushing fresh samples through the previous maps failed: "
                f"{_logdet_cause(exc, logdet, None)}",
                flow,
            ) from exc
        bad = _bad_rows(pool[0])
        if bad:
            raise FlowDivergedError(
                f"step {step}: {bad} of {pool[0].shape[0]} fresh samples pushed through the previous "
                f"{flow.steps} maps are not finite",
                flow,
            )
        if pool[1] is not None:
            bad = int((~torch.isfinite(pool[1])).sum())
            if bad:
                raise FlowDivergedError(
                    f"step {step}: {bad} of {pool[1].shape[0]} log-densities of fresh samples are not "
                    f"finite (log-det estimator {type(logdet).__name__})",
                    flow,
                )
        return pool

    def _fresh(
        self,
        sample0: Sample0,
        generator: torch.Generator,
        flow: Flow,
        logdet: LogDetEstimator | None,
        like: Tensor,
        batches: int,
        batch: int,
        chunk: int = 32768,
    ) -> tuple[Tensor, Tensor | None]:
        """``batches`` draws of ``batch`` fresh particles of ``rho_t``, concatenated: ``z ~ rho_0``
        (one ``sample0(batch)`` call per batch, so a stratified sampler stratifies every
        iteration's batch) pushed through ``T_1, ..., T_t`` in chunks of ``chunk`` points, with
        ``log rho_t`` carried when ``logdet`` is given. One call serves a whole inner loop: the
        same samples as per-iteration draws, pushed in a few large batches."""
        draws = [sample0(batch, generator) for _ in range(batches)]
        z = torch.cat([d[0] for d in draws]).to(device=like.device, dtype=like.dtype)
        lz: Tensor | None = None
        if all(d[1] is not None for d in draws):
            lz = torch.cat([d[1] for d in draws if d[1] is not None]).to(device=like.device, dtype=like.dtype)
        if logdet is not None and lz is None:
            raise ValueError("fresh_samples: the functional needs log-densities, but sample0 returned none")
        xs, ls = [], []
        for start in range(0, z.shape[0], chunk):
            xb = z[start : start + chunk]
            lb = None if logdet is None or lz is None else lz[start : start + chunk]
            for previous in flow.potentials:
                if lb is not None and logdet is not None:  # T and log det H_u of the previous map
                    yb, ld = transport_and_logdet(logdet, previous, xb, grad=False)
                    lb = lb - ld.value.detach()
                    xb = yb.detach()
                    continue
                xb = previous.transport(xb, create_graph=False).detach()
            xs.append(xb)
            ls.append(lb)
        return torch.cat(xs), None if ls[0] is None else torch.cat(ls)  # type: ignore[arg-type]


def _compile_clock() -> float:
    """Wall seconds this process has spent in ``torch.compile`` so far (dynamo's own tally)."""
    from torch._dynamo.utils import calculate_time_spent

    return float(calculate_time_spent().get("total_wall_time", 0.0))


def _keep_rng(flow: Flow) -> None:
    """Record torch's generator states (CPU, and CUDA where initialized) in ``flow``."""
    flow.rng_state = torch.get_rng_state()
    flow.cuda_rng_state = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None


def _convergence(losses: list[float], first_grad: float, final_grad: float) -> tuple[bool, str]:
    """``(converged, description)`` of one inner loop's loss curve (criterion in the module
    docstring, "Failures and recovery"): not converged when the mean loss of the last tenth of
    the iterations is below that of the tenth before by more than :data:`CONVERGENCE_RTOL` of
    its magnitude, by more than :data:`CONVERGENCE_Z` standard errors of the loss noise, and the
    final gradient norm is above :data:`CONVERGENCE_GRAD` of the first."""
    m = len(losses)
    tenth = m // 10
    if tenth < 2:
        return True, f"not judged: {m} iterations, fewer than 20"
    prev_t = torch.tensor(losses[-2 * tenth : -tenth], dtype=torch.float64)
    last_t = torch.tensor(losses[-tenth:], dtype=torch.float64)
    prev, last = float(prev_t.mean()), float(last_t.mean())
    # noise of the loss from its successive differences (a smooth trend hardly contributes)
    sigma = float(torch.cat([prev_t, last_t]).diff().std()) / math.sqrt(2)
    decrease = prev - last
    rel = decrease / abs(last) if last != 0 else (math.inf if decrease > 0 else 0.0)
    se = sigma * math.sqrt(2 / tenth)
    z = decrease / se if se > 0 else (math.inf if decrease > 0 else 0.0)
    ratio = final_grad / first_grad if first_grad > 0 else (math.inf if final_grad > 0 else 0.0)
    converged = not (rel > CONVERGENCE_RTOL and z > CONVERGENCE_Z and ratio > CONVERGENCE_GRAD)
    return converged, (
        f"the mean loss fell by {rel:.3g} of its magnitude ({prev:.4g} -> {last:.4g}) between the last two "
        f"tenths of the {m} iterations, {z:.3g} times the loss noise, with the gradient norm at {ratio:.3g} "
        f"of its first value ({final_grad:.3g} / {first_grad:.3g})"
    )
