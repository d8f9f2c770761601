"""The inner loop of one JKO step as a step function (paper Algorithm 1, lines 3-6).

A JKO step of size ``tau`` fits the parameters ``theta`` of ``u_theta`` by minimizing

    L(theta) = Fhat(u_theta; x) + 1/(2 tau) * mean_i |grad u_theta(x_i) - x_i|^2

over the particles ``x`` of ``rho_t``. :class:`InnerLoop` holds what does not change during the
fit (net, optimizer, particles, terms) and :meth:`InnerLoop.step` maps an :class:`InnerState` to
the next one, one optimizer iteration at a time; :meth:`InnerLoop.run` drives it until
``state.stop`` says why it ended (the shape of ott-jax's ``one_iteration`` /
``fixed_point_loop``). Everything the solver records of a step (iterations used, the reason it
stopped, final loss and gradient norm, learning-rate drops) is read off the final state.

Stopping rule
-------------
With tolerance ``tol`` and window ``w`` (``JKOSolver.tol``, ``JKOSolver.tol_window``), after
accepted iteration ``k`` (``k >= 2w`` since the last learning-rate change) let
``Lbar_cur`` and ``Lbar_prev`` be the mean loss over the last ``w`` iterations and the ``w``
before them, and ``L_0`` the step's first loss. The loop has *stalled* when

    Lbar_prev - Lbar_cur  <=  tol * |L_0 - Lbar_cur|,

i.e. the last window improved the objective by at most the fraction ``tol`` of all the
improvement the step has made so far. The test is invariant under shifting and scaling ``L``
(``F`` is defined up to a constant), and the window means average out the oscillation of a
stochastic optimizer. With ``lr_schedule = "constant"`` or ``"cosine"`` a stall ends the loop
(``stop = "tol"``); with ``"plateau"`` it divides the learning rate by 10 and restarts the
windows, and after ``plateau_drops`` divisions (default :data:`PLATEAU_DROPS` = 1: ``lr / 10``)
the next stall ends it (L-BFGS, whose line search sets the step length, stops at the first
stall). ``inner_iters`` is always the cap (``stop = "cap"``); ``tol = 0``
switches the rule off.

Hot path
--------
One iteration does one sweep of the net for ``T = grad u`` and, with a dense-Hessian log-det
estimator, ``H_u`` (:meth:`jkoflow.PotentialNet.transport_and_hessian`), one backward pass, one
(fused where torch has it) optimizer step and ``project()``. The parameters with the last finite
loss are kept in preallocated buffers (one fused copy, no allocation) for recovery; the loss is
read to the host once per iteration (its finiteness decides recovery), the gradient norm at
the first and the last iteration only. Non-finite parameters show up as a non-finite loss at the
next iteration (or at the end) and are attributed then.

With ``optimizer = "lbfgs"`` (torch's L-BFGS with a strong-Wolfe line search; deterministic
objectives only, i.e. no ``batch_size`` or ``fresh_samples``) one iteration is one quasi-Newton
step, whose line search may evaluate ``L`` several times (``InnerState.evaluations``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import attrs
import torch
from torch import Tensor

from .functional import Functional, LogDet, Need, StepContext
from .logdet import LogDetError, LogDetEstimator, transport_and_logdet
from .potential import PotentialNet

PLATEAU_DROPS = 1
"""Default ``JKOSolver.plateau_drops``: learning-rate divisions by 10 of ``lr_schedule =
"plateau"`` before a stall ends the loop. One (the loop ends at ``lr / 10``) keeps the porous-medium
deviation from the ideal JKO at 3-17 % of the ideal's own error over the tau table (seeds 0-2, as
with two) in 1.25-1.4x fewer iterations than two (docs/benchmarks.md, "Speed of a JKO step")."""


@attrs.define
class InnerState:
    """The inner loop between two iterations.

    ``iteration``: accepted iterations so far; ``losses``: ``L`` after each; ``lr``: the base
    learning rate (halved by recoveries, divided by the plateau schedule); ``drops`` and
    ``failures``: recovered numerical failures; ``plateau_drops``: plateau divisions so far;
    ``since``: the iteration of the last learning-rate change (the windows restart there);
    ``first_grad`` / ``grad_norm``: gradient norm at the first and (after :meth:`InnerLoop.finish`)
    the last iteration; ``evaluations``: evaluations of ``L`` (L-BFGS line searches add some);
    ``stop``: why the loop ended (``""`` while it runs): ``"tol"``, ``"cap"``.
    """

    lr: float
    iteration: int = 0
    losses: list[float] = attrs.field(factory=list)
    drops: int = 0
    failures: list[str] = attrs.field(factory=list)
    plateau_drops: int = 0
    since: int = 0
    first_grad: float = math.nan
    grad_norm: float = math.nan
    transport: float = math.nan
    evaluations: int = 0
    stop: str = ""


def stalled(losses: list[float], since: int, window: int, tol: float) -> bool:
    """The stopping rule of the module docstring on ``losses[since:]``."""
    if tol <= 0 or window < 1:
        return False
    seen = len(losses) - since
    if seen < 2 * window:
        return False
    cur = sum(losses[-window:]) / window
    prev = sum(losses[-2 * window : -window]) / window
    return prev - cur <= tol * abs(losses[0] - cur)


class _Failure(Exception):
    """A recoverable numerical failure inside one iteration: ``(what, cause, hint)``."""

    def __init__(self, what: str, cause: str, hint: str, back: int = 0) -> None:
        super().__init__(what)
        self.what, self.cause, self.hint = what, cause, hint
        self.back = back  # the failure arose this many iterations before it was seen


class InnerLoop:
    """One JKO step's fit of ``theta`` (see the module docstring).

    ``settings`` is the :class:`~jkoflow.solver.JKOSolver`; ``diagnose(xb, lb, y, transport,
    ld)`` returns ``(cause, hint, hopeless)`` for a non-finite loss; ``fail(message,
    retryable)`` builds the exception that ends the step; ``describe_logdet(exc)`` attributes a
    :class:`LogDetError`; ``batches(iteration)`` gives the particles (and log-densities) of an
    iteration.
    """

    def __init__(
        self,
        settings: Any,
        potential: PotentialNet,
        functional: Functional,
        logdet: LogDetEstimator | None,
        tau: float,
        step: int,
        batches: Callable[[int], tuple[Tensor, Tensor | None]],
        diagnose: Callable[..., tuple[str, str, bool]],
        fail: Callable[[str, bool], Exception],
        describe_logdet: Callable[[LogDetError], tuple[str, str]],
    ) -> None:
        self.s = settings
        self.potential = potential
        self.functional = functional
        self.tau = tau
        self.step_index = step
        self.batches = batches
        self.diagnose = diagnose
        self.fail = fail
        self.describe_logdet = describe_logdet
        self.params: list[Tensor] = list(potential.parameters())
        self.wants_logdet = Need.LOGDET in functional.needs and logdet is not None
        self.logdet = logdet
        self.lbfgs = settings.optimizer == "lbfgs"
        self.optimizer = self._optimizer(settings.lr)
        self.snapshot = [p.detach().clone() for p in self.params]
        self.param_data = [p.detach() for p in self.params]  # views of the parameters' storage
        self.active: list[Tensor] | None = None  # L-BFGS: sign of the last projection's move
        self.objective: Callable[[Tensor, Tensor | None], tuple[Tensor, Tensor]] = self._objective
        # the net's sweeps (pure tensor code); the terms and estimators stay eager (they read
        # counts to the host to refuse non-finite values, which would break a compiled graph), and
        # so does the low-rank Hessian form (it returns a LowRankHessian, not tensors)
        self.transport_and_hessian = potential.transport_and_hessian
        self.transport = potential.transport
        if settings.compile:
            self.transport_and_hessian = torch.compile(potential.transport_and_hessian, dynamic=False)
            self.transport = torch.compile(potential.transport, dynamic=False)

    # --- pieces --------------------------------------------------------------------------
    def _optimizer(self, lr: float) -> torch.optim.Optimizer:
        from .solver import make_optimizer

        return make_optimizer(self.s.optimizer, self.params, lr)

    def _objective(self, xb: Tensor, lb: Tensor | None) -> tuple[Tensor, Tensor]:
        """``(L, transport term)`` at the particles ``xb`` (differentiable in ``theta``)."""
        ld: LogDet | None = None
        if self.wants_logdet:
            assert self.logdet is not None
            y, ld = transport_and_logdet(
                self.logdet,
                self.potential,
                xb,
                transport=self.transport,
                transport_and_hessian=self.transport_and_hessian,
            )
        else:
            y = self.transport(xb)
        transport = ((y - xb) ** 2).sum(dim=1).mean() / (2 * self.tau)
        ctx = StepContext(x=xb, y=y, tau=self.tau, logdet=ld, log_density=lb)
        return self.functional.inner_objective(ctx) + transport, transport

    def _evaluate(self, state: InnerState) -> tuple[Tensor, Tensor, float]:
        """Evaluate ``L`` and its gradient at the current ``theta``; raises :class:`_Failure`."""
        xb, lb = self.batches(state.iteration)
        try:
            loss, transport = self.objective(xb, lb)
        except LogDetError as exc:
            cause, hint = self.describe_logdet(exc)
            raise _Failure("non-finite loss", cause, hint) from exc
        value = loss.item()  # the loop's one host read per evaluation (estimators add their checks)
        state.evaluations += 1
        if not math.isfinite(value):
            self._attribute(xb, lb, state)
        loss.backward()
        return loss, transport, value

    def _attribute(self, xb: Tensor, lb: Tensor | None, state: InnerState) -> None:
        """Raise the attributed failure of a non-finite loss."""
        from .solver import _finite_parameters

        broken = [k for k, p in self.potential.named_parameters() if not bool(torch.isfinite(p).all())]
        if broken and not _finite_parameters(self.params):
            noun, verb = ("parameters", "are") if len(broken) > 1 else ("parameter", "is")
            raise _Failure(
                "non-finite parameters",
                f"{noun} {', '.join(broken)} of net {type(self.potential).__name__} {verb} not finite "
                f"after optimizer.step() and project() (last finite loss "
                f"{state.losses[-1] if state.losses else math.nan:.4g})",
                "The update blew up: try a smaller lr, or check the net's project()",
                back=1 if state.iteration else 0,
            )
        with torch.no_grad():
            y = self.potential.transport(xb, create_graph=False)
        transport = ((y - xb) ** 2).sum(dim=1).mean() / (2 * self.tau)
        ld = None
        if self.wants_logdet:
            assert self.logdet is not None
            try:
                ld = self.logdet(self.potential, xb, grad=False)
            except LogDetError:
                ld = None
        cause, hint, hopeless = self.diagnose(xb, lb, y, transport, ld)
        if hopeless:  # a lower lr or smaller tau cannot help: stop now, naming the term
            raise self.fail(
                f"step {self.step_index}, inner iteration {state.iteration}: non-finite loss: {cause}. {hint}.",
                False,
            )
        raise _Failure("non-finite loss", cause, hint)

    def _keep(self) -> None:
        """Copy the parameters, whose loss was just found finite, into the recovery buffers."""
        with torch.no_grad():
            torch._foreach_copy_(self.snapshot, self.param_data)

    def _grad_norm(self) -> float:
        from .solver import _grad_norm

        return float(_grad_norm(self.params))

    # --- the step function ----------------------------------------------------------------
    def start(self) -> InnerState:
        return InnerState(lr=self.s.lr)

    def step(self, state: InnerState) -> InnerState:
        """One optimizer iteration (or one recovery from a failure) from ``state``."""
        lr_now = self.s.lr_at(state.iteration, state.lr) if self.s.lr_schedule == "cosine" else state.lr
        for group in self.optimizer.param_groups:
            group["lr"] = lr_now
        try:
            if self.lbfgs:
                value, transport = self._lbfgs_iteration(state)
            else:
                self.optimizer.zero_grad(set_to_none=True)
                _, transport_t, value = self._evaluate(state)
                self._keep()
                transport = float(transport_t.detach())
                if state.iteration == 0:
                    state.grad_norm = self._grad_norm()
                self.optimizer.step()
            if self.lbfgs:
                before = [p.detach().clone() for p in self.params]
                self.potential.project()
                self.active = [torch.sign(p.detach() - b) for p, b in zip(self.params, before)]
            else:
                self.potential.project()
        except _Failure as failure:
            return self._recover(state, failure, lr_now)
        if state.iteration == 0:
            state.first_grad = state.grad_norm
        state.losses.append(value)
        state.transport = transport
        state.iteration += 1
        self._maybe_stop(state)
        return state

    def _lbfgs_iteration(self, state: InnerState) -> tuple[float, float]:
        """One L-BFGS iteration; returns the loss at its start and the transport term."""
        first: list[float] = []
        transport: list[float] = []

        def closure() -> Tensor:
            self.optimizer.zero_grad(set_to_none=True)
            loss, transport_t, value = self._evaluate(state)
            if self.active is not None:  # active set: no descent across a bound project() enforced
                for p, sign in zip(self.params, self.active):
                    if p.grad is not None:
                        p.grad.masked_fill_(sign * p.grad > 0, 0.0)
            if not first:
                self._keep()
                first.append(value)
                transport.append(float(transport_t.detach()))
                if state.iteration == 0:
                    state.grad_norm = self._grad_norm()
            return loss.detach()

        self.optimizer.step(closure)  # type: ignore[arg-type]  # LBFGS takes a closure returning a tensor
        return first[0], transport[0]

    def _maybe_stop(self, state: InnerState) -> None:
        if state.iteration >= self.s.inner_iters:
            state.stop = "cap"
            return
        if not stalled(state.losses, state.since, self.s.tol_window, self.s.inner_tol):
            return
        if self.s.lr_schedule == "plateau" and not self.lbfgs and state.plateau_drops < self.s.plateau_drops:
            state.plateau_drops += 1
            state.lr /= 10
            state.since = state.iteration
            return
        state.stop = "tol"

    def _recover(self, state: InnerState, failure: _Failure, lr_now: float) -> InnerState:
        """Restore the last parameters with a finite loss and halve the learning rate (or end the
        step, see ``JKOSolver.on_failure``)."""
        at = state.iteration - failure.back
        where = f"step {self.step_index}, inner iteration {at}"
        what, cause, hint = failure.what, failure.cause, failure.hint
        if self.s.on_failure == "stop":
            raise self.fail(f"{where}: {what} (on_failure='stop'): {cause}. {hint}.", True)
        state.drops += 1
        if state.drops > self.s.max_lr_drops:
            raise self.fail(
                f"{where}: {what} after {self.s.max_lr_drops} learning-rate halvings (lr now "
                f"{state.lr:.3g}): {cause}. {hint}.",
                True,
            )
        state.failures.append(f"inner iteration {at} (lr {lr_now:.3g}): {what}: {cause}")
        with torch.no_grad():
            torch._foreach_copy_(self.param_data, self.snapshot)
        state.lr *= 0.5
        self.optimizer = self._optimizer(state.lr)
        return state

    def finish(self, state: InnerState) -> InnerState:
        """After the last iteration: parameters that the last update made non-finite are
        rolled back to the last finite ones (recorded as a failure)."""
        from .solver import _finite_parameters

        if state.iteration:  # the last iteration's gradient is still in .grad
            state.grad_norm = self._grad_norm()
        if not _finite_parameters(self.params):
            state.drops += 1
            state.failures.append(
                f"inner iteration {state.iteration}: non-finite parameters after the last update: "
                "restored the parameters of the last finite loss"
            )
            with torch.no_grad():
                torch._foreach_copy_(self.param_data, self.snapshot)
        return state

    def run(self) -> InnerState:
        """Iterate :meth:`step` until the state says why it stopped."""
        state = self.start()
        if self.s.inner_iters == 0:
            state.stop = "cap"
        while not state.stop:
            state = self.step(state)
        return self.finish(state)
