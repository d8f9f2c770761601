"""Conformance suites over every registered plugin (what ``pytest --jkoflow-conformance`` runs).

For every entry of the registry, :func:`cases` yields one :class:`Case` per set of factory
parameters: the entry is built and handed to the matching ``assert_valid_*`` check of
:mod:`jkoflow.testing.checks`. A factory is built with its defaults (plus ``dim`` and
``registry`` where it takes them); a plugin whose factory needs more can list parameter sets
in a ``jkoflow_conformance_params`` attribute on the factory, e.g.::

    def my_divergence_term(reference: str, blur: float = 0.1): ...
    my_divergence_term.jkoflow_conformance_params = [{"reference": "gaussian", "dim": 2}]

A ``dim`` key sets the dimension of the check (and is passed to factories that take ``dim``).
Entries that need parameters and list none are skipped, with the reason. Problems are
checked by :func:`jkoflow.testing.problem_checks.assert_valid_problem` in the dimensions of
``DIMS`` when their factory takes ``dim``, else once with their defaults (``d=default``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import attrs
from jkoflow.params import injectable
from jkoflow.registry import Registry, default_registry

from . import checks, problem_checks

CONFORMANCE_ATTR = "jkoflow_conformance_params"
"""Factory attribute listing parameter sets for the conformance suite."""

DIMS: dict[str, tuple[int, ...]] = {
    "net": (1, 3),
    "functional": (1, 2),
    "logdet": (3,),
    "divergence": (2,),
    "potential_fn": (2,),
    "kernel": (2,),
    "internal_fn": (1,),
    "sampler": (2,),
    "problem": (1, 2),
}
"""Default dimensions each kind is checked in (small: the suite must stay cheap)."""


@attrs.define(frozen=True)
class Case:
    """One conformance check: ``run()`` raises :class:`checks.ConformanceError` on failure;
    ``skip`` is a reason when the entry cannot be built without parameters."""

    kind: str
    name: str
    provider: str
    params: dict[str, Any]
    dim: int | None
    run: Callable[[], None]
    skip: str | None = None

    @property
    def id(self) -> str:
        extra = ",".join(f"{k}={v!r}" for k, v in self.params.items())
        d = "default" if self.dim is None else self.dim
        return f"{self.kind}::{self.name}[d={d}{',' + extra if extra else ''}]"


def _accepts(factory: Callable[..., Any], name: str) -> bool:
    try:
        return name in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False


def _build(
    factory: Callable[..., Any], params: Mapping[str, Any], dim: int | None, registry: Registry
) -> Any:
    return factory(**params, **injectable(factory, dim=dim, registry=registry))


def _runner(
    kind: str, factory: Callable[..., Any], params: dict[str, Any], dim: int | None, registry: Registry
) -> Callable[[], None]:
    def run() -> None:
        obj = _build(factory, params, dim, registry)
        if kind == "problem":
            problem_checks.assert_valid_problem(obj, registry=registry)
            return
        d = 2 if dim is None else dim  # only problems may run in their own default dimension
        if kind == "net":
            checks.assert_valid_potential_net(obj, n=6, max_examples=20)
        elif kind == "functional":
            checks.assert_valid_functional(obj, dim=d)
        elif kind == "logdet":
            checks.assert_valid_logdet_estimator(obj, dim=d)
        elif kind == "divergence":
            checks.assert_valid_divergence(obj, dim=d)
        elif kind == "potential_fn":
            checks.assert_valid_potential_fn(obj, dim=d)
        elif kind == "kernel":
            checks.assert_valid_kernel(obj, dim=d)
        elif kind == "internal_fn":
            checks.assert_valid_internal_fn(obj)
        elif kind == "sampler":
            checks.assert_valid_sampler(obj)
        else:  # pragma: no cover - DIMS lists the kinds
            raise ValueError(f"no conformance check for kind {kind!r}")

    return run


def cases(registry: Registry | None = None, kinds: tuple[str, ...] | None = None) -> Iterator[Case]:
    """Every conformance case of every entry of ``registry`` (default: the process-wide one)."""
    registry = registry or default_registry()
    for kind, dims in DIMS.items():
        if kinds is not None and kind not in kinds:
            continue
        for name in registry.names(kind):
            entry = registry.entry(kind, name)
            declared = getattr(entry.factory, CONFORMANCE_ATTR, None)
            param_sets = [dict(p) for p in declared] if declared else [{}]
            for params in param_sets:
                dim_list: tuple[int | None, ...] = (params.pop("dim"),) if "dim" in params else dims
                if kind == "problem" and "dim" not in params and not _accepts(entry.factory, "dim"):
                    dim_list = (None,)
                missing = [] if declared else checks.factory_parameters(entry.factory)
                skip = (
                    f"{kind} {name!r} needs parameters {missing} and its factory lists no {CONFORMANCE_ATTR}"
                    if missing
                    else None
                )
                for dim in dim_list:
                    d = None if dim is None else int(dim)
                    yield Case(
                        kind,
                        name,
                        entry.provider,
                        params,
                        d,
                        _runner(kind, entry.factory, params, d, registry),
                        skip,
                    )


def run_all(registry: Registry | None = None) -> dict[str, str]:
    """Run every case; ``{case id: "ok" | "skipped: ..." | "FAILED: ..."}`` (for scripts)."""
    results: dict[str, str] = {}
    for case in cases(registry):
        if case.skip:
            results[case.id] = f"skipped: {case.skip}"
            continue
        try:
            case.run()
        except Exception as exc:  # noqa: BLE001 - a report, not a test
            results[case.id] = f"FAILED: {type(exc).__name__}: {exc}"
        else:
            results[case.id] = "ok"
    return results


__all__ = ["CONFORMANCE_ATTR", "DIMS", "Case", "cases", "run_all"]
