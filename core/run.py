"""Building a run from a resolved spec: the functional, the sampler and start particles, the
net factory, the solver and the log-det estimator (:func:`build`, :class:`Run`)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs
import torch

from . import budget
from .flow import Flow
from .functional import Functional, Need, total
from .logdet import LogDetEstimator
from .params import SpecError
from .params import make as _make
from .potential import PotentialNet
from .problem import Problem
from .registry import Registry, current_import_policy, default_registry, import_policy
from .sampler import Sampler
from .solver import JKOSolver
from .spec import DTYPES, ResolvedSpec, resolve_spec


@attrs.define
class Run:
    """Everything a run needs, built from a resolved spec."""

    spec: dict[str, Any]
    functional: Functional
    make_potential: Callable[[], PotentialNet]
    sampler: Sampler
    logdet: LogDetEstimator
    solver: JKOSolver
    problem: Problem | None
    x0: torch.Tensor
    log_density0: torch.Tensor | None
    imports: list[str] = attrs.field(factory=list)
    """Import strings loaded while building (allowed by the user's ``allow_imports``)."""
    resolved: ResolvedSpec | None = None
    """The typed resolved spec (``spec`` is its ``settings``): ``resolved.dim``, ``.sampler``,
    ``.terms`` are what the run uses, also for a problem."""

    def execute(
        self,
        progress: bool = False,
        callback: Callable[[Flow], None] | None = None,
        resume: Flow | None = None,
    ) -> Flow:
        """Run the JKO flow; ``callback(flow)`` after step 0 and after every step. The run's
        settings are not changed (``progress`` applies to this call only). ``resume``: a flow
        of this run's first ``k`` complete steps (e.g. from a checkpoint) to continue from,
        ending as the uninterrupted run would (:meth:`jkoflow.solver.JKOSolver.run`)."""
        needs_density = Need.LOG_DENSITY in self.functional.needs or Need.LOGDET in self.functional.needs
        if needs_density and self.log_density0 is None:
            raise SpecError(
                "sampler",
                f"{self.functional!r} needs log rho_0, which sampler {self.spec_sampler['kind']!r} does not provide",
            )
        dtype, device = self.x0.dtype, self.x0.device

        def sample0(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
            z, lz = self.sampler.sample(n, generator)
            return z.to(device=device, dtype=dtype), None if lz is None else lz.to(device=device, dtype=dtype)

        return attrs.evolve(self.solver, progress=progress).run(
            self.functional,
            self.make_potential,
            self.x0,
            self.log_density0,
            self.logdet,
            callback=callback,
            sample0=sample0,
            resume=resume,
        )

    @property
    def spec_sampler(self) -> dict[str, Any]:
        """The sampler table the run uses (the problem's, for a problem)."""
        if self.resolved is not None:
            return self.resolved.sampler
        return dict(self.spec["sampler"])

    def problem_metrics(self, flow: Flow) -> dict[str, float]:
        """The problem's exact-solution metrics at the flow's latest step (empty without one)."""
        if self.problem is None:
            return {}
        t = self.problem.t0 + float(flow.times[-1])
        last = flow.log_densities[-1]
        return self.problem.metrics(
            t, flow.particles[0].cpu(), flow.particles[-1].cpu(), None if last is None else last.cpu()
        )


def build(
    spec: Mapping[str, Any], registry: Registry | None = None, *, allow_imports: Iterable[str] = ()
) -> Run:
    """Resolve and build a :class:`Run` from a spec (a resolved spec resolves to itself).

    ``allow_imports``: modules whose import strings the spec may use (see :func:`resolve`);
    the import strings loaded are listed in :attr:`Run.imports`."""
    with import_policy(allow_imports) as policy:
        run = _build(spec, registry)
        run.imports = list(policy.loaded)
        return run


def _check_sample(
    x0: torch.Tensor, log_density0: torch.Tensor | None, dim: int, table: Mapping[str, Any]
) -> None:
    """The sampler must give ``n`` finite points of ``R^dim`` and one finite log-density each."""
    n, kind = table["n"], table["kind"]
    if x0.shape != (n, dim):
        raise SpecError(
            "sampler", f"sampler {kind!r} returned points of shape {tuple(x0.shape)}: expected ({n}, {dim})"
        )
    bad = int((~torch.isfinite(x0)).any(dim=1).sum())
    if bad:
        raise SpecError(
            "sampler", f"sampler {kind!r} returned {bad} of {n} points with NaN or inf coordinates"
        )
    if log_density0 is not None:
        if log_density0.shape != (n,):
            raise SpecError(
                "sampler",
                f"sampler {kind!r} returned log-densities of shape {tuple(log_density0.shape)}: expected ({n},)",
            )
        bad = int((~torch.isfinite(log_density0)).sum())
        if bad:
            raise SpecError("sampler", f"sampler {kind!r} returned {bad} of {n} non-finite log-densities")


def _probe(functional: Functional, x0: torch.Tensor, log_density0: torch.Tensor | None, path: str) -> None:
    """Call ``start`` on the start particles (as the solver will) and evaluate ``F`` on at most
    8 of them, so that a setting that does not fit the dimension (a V center of the wrong
    length, ...) is a :class:`SpecError` before any step instead of a wrong result or a torch
    error mid-run."""
    k = min(x0.shape[0], 8)
    try:
        functional.start(x0, log_density0)  # as the solver does (it calls start() again)
        functional.value(x0[:k], None if log_density0 is None else log_density0[:k])
    except (ValueError, TypeError, RuntimeError, IndexError) as exc:
        raise SpecError(
            path, f"{functional!r} fails on the start particles (shape {tuple(x0[:k].shape)}): {exc}"
        ) from exc


def _build(spec: Mapping[str, Any], registry: Registry | None = None) -> Run:
    registry = registry or default_registry()
    policy = current_import_policy()
    resolved = resolve_spec(
        copy.deepcopy(dict(spec)), registry, allow_imports=policy.allowed if policy else ()
    )
    settings = copy.deepcopy(resolved.settings)
    dim = resolved.dim
    dtype = DTYPES[resolved.dtype]
    problem = None
    if resolved.problem is not None:
        params = {k: v for k, v in resolved.problem.items() if k != "kind"}
        problem = _make(registry.get("problem", resolved.problem["kind"]), params, "problem", registry)

    built = []
    for i, term in enumerate(resolved.terms):
        params = {k: v for k, v in term.items() if k not in ("kind", "weight")}
        built.append(_make(registry.get("functional", term["kind"]), params, f"terms[{i}]", registry))
    functional = total([term["weight"] * f for term, f in zip(resolved.terms, built)])
    budget.check(resolved, needs_logdet=bool(functional.needs))  # before anything large is allocated

    sampler_table = resolved.sampler
    sampler_params = {k: v for k, v in sampler_table.items() if k not in ("kind", "n")}
    sampler = _make(
        registry.get("sampler", sampler_table["kind"]), sampler_params, "sampler", registry, dim=dim
    )
    generator = torch.Generator().manual_seed(resolved.seed)
    x0, log_density0 = sampler.sample(sampler_table["n"], generator)
    device = torch.device(resolved.device)
    x0 = x0.to(device=device, dtype=dtype)
    log_density0 = None if log_density0 is None else log_density0.to(device=device, dtype=dtype)
    _check_sample(x0, log_density0, dim, sampler_table)
    for i, f in enumerate(built):
        _probe(f, x0, log_density0, f"terms[{i}]")

    pot = resolved.potential
    net_factory = registry.get("net", pot["kind"])
    net_params = {k: v for k, v in pot.items() if k != "kind"}
    _make(net_factory, net_params, "potential", registry, dim=dim)  # fail early on bad settings

    def make_potential() -> PotentialNet:
        return _make(net_factory, net_params, "potential", registry, dim=dim).to(device=device, dtype=dtype)

    solver_params = {k: v for k, v in resolved.solver.items() if k != "logdet"}
    try:
        solver = JKOSolver(**solver_params, seed=resolved.seed)
    except (TypeError, ValueError) as exc:
        raise SpecError("solver", str(exc)) from exc
    ld = resolved.solver["logdet"]
    logdet = _make(
        registry.get("logdet", ld["kind"]),
        {k: v for k, v in ld.items() if k != "kind"},
        "solver.logdet",
        registry,
    )
    return Run(
        settings,
        functional,
        make_potential,
        sampler,
        logdet,
        solver,
        problem,
        x0,
        log_density0,
        resolved=resolved,
    )


__all__ = ["Run", "build"]
