"""The result of a JKO run: particles, log-densities, per-step records and the trained maps.

A run of ``T`` steps trains potentials ``u_1, ..., u_T``; ``rho_s = (grad u_s) # rho_{s-1}``.
Keeping the potentials makes the flow *amortized*: ``flow.transport(x_new)`` moves new samples
from ``rho_0`` through the same maps at the cost of forward passes, and carries their
log-densities by the change of variables ``l_s = l_{s-1} - log det H_{u_s}(x_{s-1})``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal, overload

import attrs
import numpy as np
import torch
from torch import Tensor

from .files import atomic_path
from .logdet import LogDetEstimator
from .potential import PotentialNet


@attrs.define
class StepRecord:
    """What one JKO step did.

    ``t`` is the elapsed flow time ``step * tau``; ``F`` the functional on the particles after
    the step (``None`` where not computable); ``transport`` the term
    ``mean_i |T(x_i) - x_i|^2 / (2 tau)`` at the end of the inner loop; ``inner_loss`` the inner
    objective after every iteration; ``seconds`` the step's wall time; ``lr_drops`` how often
    the inner loop recovered from a numerical failure by halving the learning rate, and
    ``failures`` the attributed message of each; ``converged`` is false when the inner loop
    ended far from convergence (criterion in :mod:`jkoflow.solver`, "Failures and recovery");
    ``grad_norm`` the gradient norm over all parameters at the last inner iteration (NaN
    without one); ``iterations`` the optimizer steps taken. The fields after ``seconds`` have
    defaults, so records built by older code stay valid.
    """

    step: int
    t: float
    F: float | None
    transport: float
    inner_loss: list[float]
    seconds: float
    lr_drops: int = 0
    converged: bool = True
    grad_norm: float = float("nan")
    failures: list[str] = attrs.field(factory=list)
    iterations: int = 0
    tau: float | None = None
    """This step's own ``tau`` (``None``: the flow's); a substep has a fraction of it."""
    substep: str = ""
    """Non-empty for a substep (``on_failure = "substeps"``): which step it is part of."""
    stop: str = ""
    """Why the inner loop ended: ``"tol"`` (the stopping rule of :mod:`jkoflow.inner`) or
    ``"cap"`` (``inner_iters`` reached)."""
    evaluations: int = 0
    """Evaluations of the inner objective (L-BFGS line searches make more than iterations)."""
    cpu_seconds: float = float("nan")
    """CPU time of the step (this process, all threads): less inflated than ``seconds`` on a
    shared machine."""
    compile_seconds: float = 0.0
    """Wall seconds ``torch.compile`` spent compiling during the step (``solver.compile``; part of
    ``seconds``, and mostly not of ``cpu_seconds``: inductor compiles in worker processes)."""

    def as_dict(self) -> dict[str, object]:
        return attrs.asdict(self)


@attrs.define(eq=False)
class Flow:
    """Particles ``x^0..x^T``, their log-densities (when tracked) and the maps ``grad u_s``."""

    tau: float
    potentials: list[PotentialNet] = attrs.field(factory=list)
    particles: list[Tensor] = attrs.field(factory=list)
    log_densities: list[Tensor | None] = attrs.field(factory=list)
    records: list[StepRecord] = attrs.field(factory=list)
    initial_F: float | None = None
    log_rho0: Callable[[Tensor], Tensor] | None = None
    """``x -> log rho_0(x)``: the initial log-density as a function, for :meth:`log_density`."""
    rng_state: Tensor | None = None
    """torch's global CPU generator state right after the last completed (sub)step (set by the
    solver before the callback runs): what a checkpoint stores so that
    ``JKOSolver.run(..., resume=flow)`` continues with the same random numbers."""
    cuda_rng_state: list[Tensor] | None = None
    """The CUDA generators' states at the same moment (``torch.cuda.get_rng_state_all()``),
    where CUDA is initialized; ``None`` on a CPU-only run."""

    @property
    def steps(self) -> int:
        """Number of completed JKO steps ``T``."""
        return len(self.potentials)

    @property
    def times(self) -> np.ndarray:
        """Elapsed flow times ``0, t_1, ..., t_T``, shape ``(T + 1,)``: ``s tau`` unless steps
        were split into substeps (then from the records)."""
        if len(self.records) == self.steps and self.steps:
            return np.array([0.0] + [r.t for r in self.records], dtype=float)
        return np.arange(self.steps + 1, dtype=float) * self.tau

    def trajectory(self) -> np.ndarray:
        """All particle positions as an array of shape ``(T + 1, n, d)``."""
        return torch.stack(self.particles).cpu().numpy()

    @torch.no_grad()
    def transport(
        self,
        x: Tensor,
        log_density: Tensor | None = None,
        steps: int | None = None,
        logdet: LogDetEstimator | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Push new samples ``x ~ rho_0`` through the first ``steps`` maps (all by default).

        With ``log_density = log rho_0(x)`` (and a log-det estimator, exact by default in the
        solver), also returns ``log rho_steps`` at the pushed points.
        """
        steps = self.steps if steps is None else steps
        if not 0 <= steps <= self.steps:
            raise ValueError(f"steps={steps} is out of range: expected 0..{self.steps}")
        if log_density is not None and logdet is None:
            raise ValueError("tracking log-densities needs a LogDetEstimator (argument `logdet`)")
        for u in self.potentials[:steps]:
            if log_density is not None:
                assert logdet is not None
                log_density = log_density - logdet(u, x, grad=False).value
            x = u.transport(x, create_graph=False)
        return x, log_density

    @overload
    def log_density(
        self,
        y: Tensor,
        step: int | None = None,
        log_rho0: Callable[[Tensor], Tensor] | None = None,
        tol: float = 1e-9,
        return_points: Literal[False] = False,
    ) -> Tensor: ...

    @overload
    def log_density(
        self,
        y: Tensor,
        step: int | None = None,
        log_rho0: Callable[[Tensor], Tensor] | None = None,
        tol: float = 1e-9,
        *,
        return_points: Literal[True],
    ) -> tuple[Tensor, list[Tensor]]: ...

    def log_density(
        self,
        y: Tensor,
        step: int | None = None,
        log_rho0: Callable[[Tensor], Tensor] | None = None,
        tol: float = 1e-9,
        return_points: bool = False,
    ) -> Tensor | tuple[Tensor, list[Tensor]]:
        """``log rho_step(y)`` at arbitrary points ``y`` (paper Algorithm 2).

        Inverts the maps one at a time through the convex conjugate,
        ``x_{s-1} = argmax_x <x_s, x> - u_s(x)`` (batched Newton in float64, see
        :mod:`jkoflow.inverse`), then ``log rho_step(y) = log rho_0(x_0) - sum_s log det H_{u_s}(x_{s-1})``.
        ``log_rho0`` defaults to the flow's :attr:`log_rho0`. With ``return_points`` also returns
        ``[x_0, ..., x_step = y]``. Result in float64.
        """
        from .inverse import invert_flow

        step = self.steps if step is None else step
        if not 0 <= step <= self.steps:
            raise ValueError(f"step={step} is out of range: expected 0..{self.steps}")
        log_rho0 = log_rho0 or self.log_rho0
        if log_rho0 is None:
            raise ValueError("log_density needs log rho_0: set flow.log_rho0 or pass log_rho0=")
        xs, logdets = invert_flow(self.potentials[:step], y, tol=tol)
        out = log_rho0(xs[0]).to(torch.float64)
        for ld in logdets:
            out = out - ld
        return (out, xs) if return_points else out

    def map(self, step: int) -> Callable[[Tensor], Tensor]:
        """The map ``grad u_step`` (1-based, ``1 <= step <= len(potentials)``) as a function."""
        if isinstance(step, bool) or not isinstance(step, int) or not 1 <= step <= len(self.potentials):
            raise ValueError(
                f"step={step!r}: expected an integer in 1..{len(self.potentials)} (the map of JKO step k)"
            )
        u = self.potentials[step - 1]
        return lambda x: u.transport(x, create_graph=False)

    def save(self, path: str | Path, potential_spec: dict[str, object] | None = None) -> None:
        """Write the trained maps (state dicts, no pickled code) and the tau to ``path``."""
        blob = {
            "tau": self.tau,
            "potential_spec": potential_spec or {},
            "state_dicts": [u.state_dict() for u in self.potentials],
        }
        with atomic_path(path) as tmp:
            torch.save(blob, tmp)

    @classmethod
    def load_maps(cls, path: str | Path, build: Callable[[], PotentialNet]) -> Flow:
        """Rebuild a flow's maps from :meth:`save` output; ``build`` makes an empty potential."""
        blob = torch.load(Path(path), weights_only=True)
        potentials = []
        for state in blob["state_dicts"]:
            u = build()
            u.load_state_dict(state)
            potentials.append(u)
        return cls(tau=float(blob["tau"]), potentials=potentials)
