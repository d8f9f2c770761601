"""Declarative run specifications (TOML files or the same dict in Python).

A spec names everything a run needs::

    dim = 1
    seed = 0
    dtype = "float32"

    [sampler]                   # rho_0 (kind: a registered sampler)
    kind = "gaussian"
    n = 500
    std = 1.0

    [potential]                 # the convex network u (kind: a registered net)
    kind = "ficnn"
    widths = [32, 32]

    [solver]                    # JKO settings (see jkoflow.solver.JKOSolver)
    tau = 0.05
    steps = 10
    inner_iters = 150
    logdet = "exact"            # or a table: { kind = "...", ... }

    [[terms]]                   # F = sum of weighted terms (kind: a registered functional)
    kind = "porous_medium"
    weight = 1.0
    m = 2

or names a problem, which supplies ``dim``, the sampler and the terms (and suggests solver and
network settings that the spec may override)::

    [problem]
    kind = "porous-medium"
    n = 200

:func:`resolve` validates a spec against the registry (errors name the key path and what was
expected) and fills in every default; the resolved spec, written beside every run, repeats the
run exactly. :func:`build` turns it into a :class:`Run`.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import attrs
import torch

from .params import INJECTED, SpecError, SpecWarning, _type_ok, check_params
from .params import make as _make
from .registry import (
    ImportNotAllowedError,
    Registry,
    RegistryError,
    default_registry,
    import_policy,
)
from .solver import JKOSolver
from .spec_io import dump, load

TOP_KEYS = ("problem", "dim", "seed", "dtype", "device", "sampler", "potential", "solver", "terms")
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def check_device(device: object) -> str:
    """The spec's ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...), refused with the reason
    when torch cannot parse it or it is not available on this machine."""
    if not isinstance(device, str):
        raise SpecError("device", f"got {device!r}; expected a string such as 'cpu' or 'cuda'")
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError) as exc:
        raise SpecError(
            "device", f"got {device!r}; expected a torch device such as 'cpu' or 'cuda:0' ({exc})"
        )
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise SpecError(
                "device", f"got {device!r}, but torch.cuda.is_available() is False on this machine"
            )
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise SpecError(
                "device", f"got {device!r}, but this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
    elif parsed.type != "cpu":
        raise SpecError("device", f"got {device!r}; expected 'cpu' or 'cuda[:index]'")
    return device


DEFAULT_POTENTIAL: dict[str, Any] = {"kind": "ficnn"}
DEFAULT_LOGDET = "exact"


def _table(spec: Mapping[str, Any], key: str, path: str) -> dict[str, Any]:
    value = spec.get(key, {})
    if isinstance(value, str):
        value = {"kind": value}
    if not isinstance(value, Mapping):
        raise SpecError(path, f"got {value!r}; expected a table (or a name)")
    return dict(value)


def _kind(table: Mapping[str, Any], path: str, registry: Registry, kind: str) -> Callable[..., Any]:
    name = table.get("kind")
    if not isinstance(name, str):
        raise SpecError(
            f"{path}.kind", f"missing or not a string; expected one of: {', '.join(registry.names(kind))}"
        )
    try:
        return registry.get(kind, name)
    except (RegistryError, ImportError, ValueError) as exc:
        raise SpecError(f"{path}.kind", str(exc)) from None


# --- resolving ---------------------------------------------------------------------------
CODE_SLOTS = ("kind", "V", "W", "f", "divergence")
"""Keys whose string values jkoflow resolves to code: a registered name, or an import string
``"pkg.mod:attr"`` when the user allowed ``pkg`` (see :class:`jkoflow.registry.ImportPolicy`)."""


def _import_strings(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """``(key path, import string)`` for every string containing ``":"`` in a :data:`CODE_SLOTS` key."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            sub = f"{path}.{key}" if path else str(key)
            if key in CODE_SLOTS and isinstance(item, str) and ":" in item:
                yield sub, item
            else:
                yield from _import_strings(item, sub)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _import_strings(item, f"{path}[{i}]")


@attrs.define(frozen=True)
class ResolvedSpec:
    """A validated spec with every default filled in.

    ``settings`` is the resolved spec as a plain dict: what ``spec.toml`` holds and what repeats
    the run exactly (for a problem: ``[problem]`` plus the overridden sections). ``dim``,
    ``sampler`` and ``terms`` are what the run uses, derived from the problem where there is one.
    """

    settings: dict[str, Any]
    dim: int
    sampler: dict[str, Any]
    terms: list[dict[str, Any]]

    @property
    def seed(self) -> int:
        return int(self.settings["seed"])

    @property
    def dtype(self) -> str:
        return str(self.settings["dtype"])

    @property
    def device(self) -> str:
        return str(self.settings.get("device", "cpu"))

    @property
    def solver(self) -> dict[str, Any]:
        return dict(self.settings["solver"])

    @property
    def potential(self) -> dict[str, Any]:
        return dict(self.settings["potential"])

    @property
    def problem(self) -> dict[str, Any] | None:
        problem = self.settings.get("problem")
        return None if problem is None else dict(problem)


def resolve_spec(
    spec: Mapping[str, Any], registry: Registry | None = None, *, allow_imports: Iterable[str] = ()
) -> ResolvedSpec:
    """Validate ``spec`` and return it resolved (:class:`ResolvedSpec`).

    Import strings (``"pkg.mod:attr"`` in a ``kind``, ``V``, ``W``, ``f`` or ``divergence``)
    are refused unless their module is in ``allow_imports`` (given by the user, never by the
    spec); they are checked before any plugin code runs. Registered names need no allowance.
    The input is not modified."""
    with import_policy(allow_imports) as policy:
        for path, name in _import_strings(spec):
            try:
                policy.check(name)
            except ImportNotAllowedError as exc:
                raise SpecError(path, str(exc)) from None
        return _resolve(copy.deepcopy(spec) if isinstance(spec, Mapping) else spec, registry)


def resolve(
    spec: Mapping[str, Any], registry: Registry | None = None, *, allow_imports: Iterable[str] = ()
) -> dict[str, Any]:
    """Validate ``spec`` and return it with every default filled in, as a dict (the
    ``settings`` of :func:`resolve_spec`; a resolved spec resolves to itself)."""
    return resolve_spec(spec, registry, allow_imports=allow_imports).settings


def _resolve(spec: Mapping[str, Any], registry: Registry | None = None) -> ResolvedSpec:
    registry = registry or default_registry()
    if not isinstance(spec, Mapping):
        raise SpecError("", f"a spec must be a table/dict, got {type(spec).__name__}")
    for key in spec:
        if key not in TOP_KEYS:
            raise SpecError(key, f"unknown top-level key; expected one of: {', '.join(TOP_KEYS)}")
    out: dict[str, Any] = {}
    suggested: dict[str, Any] = {}
    if "problem" in spec:
        table = _table(spec, "problem", "problem")
        factory = _kind(table, "problem", registry, "problem")
        params = {k: v for k, v in table.items() if k != "kind"}
        out["problem"] = {
            "kind": table["kind"],
            **check_params("problem", factory, params, f"problem {table['kind']!r}", ("registry",)),
        }
        for key in ("dim", "sampler", "terms"):
            if key in spec:
                raise SpecError(
                    key,
                    f"is defined by problem {table['kind']!r}; set the problem's parameters under [problem] instead",
                )
        problem = _make(
            factory, {k: v for k, v in out["problem"].items() if k != "kind"}, "problem", registry
        )
        try:
            suggested = problem.spec()
        except (ValueError, TypeError, ArithmeticError, LookupError, RuntimeError, MemoryError) as exc:
            raise SpecError(
                "problem", f"problem {table['kind']!r} cannot make its spec: {type(exc).__name__}: {exc}"
            ) from exc
        source: dict[str, Any] = {**suggested, **{k: v for k, v in spec.items() if k not in ("problem",)}}
    else:
        source = dict(spec)
        for key in ("dim", "sampler", "terms"):
            if key not in source:
                raise SpecError(key, "missing; a spec without a problem must give dim, sampler and terms")

    dim = source["dim"]
    if not (isinstance(dim, int) and not isinstance(dim, bool) and dim >= 1):
        raise SpecError("dim", f"got {dim!r}; expected a positive integer")
    seed = source.get("seed", 0)
    if not (isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed < 2**63):
        raise SpecError("seed", f"got {seed!r}; expected an integer in [0, 2^63)")
    dtype = source.get("dtype", "float32")
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise SpecError("dtype", f"got {dtype!r}; expected one of: {', '.join(DTYPES)}")
    if "problem" not in out:
        out["dim"] = dim
    out["seed"], out["dtype"] = seed, dtype
    out["device"] = check_device(source.get("device", "cpu"))

    # sampler
    sampler = _table(source, "sampler", "sampler")
    factory = _kind(sampler, "sampler", registry, "sampler")
    n = sampler.pop("n", None)
    if not (isinstance(n, int) and not isinstance(n, bool) and n >= 1):
        raise SpecError("sampler.n", f"got {n!r}; expected a positive integer (number of particles)")
    kind = sampler.pop("kind")
    resolved_sampler = {
        "kind": kind,
        "n": n,
        **check_params("sampler", factory, sampler, f"sampler {kind!r}"),
    }

    # potential network (user's table overrides the problem's suggestion of the same kind)
    pot = dict(suggested.get("potential", DEFAULT_POTENTIAL))
    if "potential" in spec:
        user = _table(spec, "potential", "potential")
        pot = {**pot, **user} if user.get("kind", pot.get("kind")) == pot.get("kind") else user
    pot.setdefault("kind", DEFAULT_POTENTIAL["kind"])
    factory = _kind(pot, "potential", registry, "net")
    kind = pot.pop("kind")
    out["potential"] = {"kind": kind, **check_params("potential", factory, pot, f"net {kind!r}")}

    # solver
    solver = {**suggested.get("solver", {}), **_table(spec, "solver", "solver")}
    logdet = solver.pop("logdet", DEFAULT_LOGDET)
    logdet_table = (
        {"kind": logdet} if isinstance(logdet, str) else dict(logdet) if isinstance(logdet, Mapping) else None
    )
    if logdet_table is None:
        raise SpecError("solver.logdet", f"got {logdet!r}; expected a name or a table with 'kind'")
    for key in ("seed", "progress"):
        if key in solver:
            raise SpecError(
                f"solver.{key}",
                "is not a solver setting here: use the top-level seed / the CLI's progress bar",
            )
    out["solver"] = check_params("solver", JKOSolver, solver, "the solver", ("seed", "progress"))
    factory = _kind(logdet_table, "solver.logdet", registry, "logdet")
    kind = logdet_table.pop("kind")
    out["solver"]["logdet"] = {
        "kind": kind,
        **check_params("solver.logdet", factory, logdet_table, f"logdet {kind!r}"),
    }

    # terms
    terms = source["terms"]
    if not isinstance(terms, list) or not terms:
        raise SpecError("terms", f"got {terms!r}; expected a non-empty list of tables")
    resolved_terms = []
    for i, term in enumerate(terms):
        path = f"terms[{i}]"
        if not isinstance(term, Mapping):
            raise SpecError(path, f"got {term!r}; expected a table with 'kind' and 'weight'")
        term = dict(term)
        factory = _kind(term, path, registry, "functional")
        kind = term.pop("kind")
        weight = term.pop("weight", 1.0)
        if not _type_ok(weight, float) or not math.isfinite(weight):
            raise SpecError(f"{path}.weight", f"got {weight!r}; expected a finite number")
        if weight < 0:
            warnings.warn(
                f"{path}.weight = {weight:g} < 0: the term {kind!r} is maximized, not minimized; a negative "
                "multiple of a convex functional is concave and the JKO step may have no minimizer",
                SpecWarning,
                stacklevel=2,
            )
        resolved_terms.append(
            {
                "kind": kind,
                "weight": float(weight),
                **check_params(path, factory, term, f"functional {kind!r}"),
            }
        )
    if "problem" not in out:
        out["sampler"] = resolved_sampler
        out["terms"] = resolved_terms
    return ResolvedSpec(out, dim, resolved_sampler, resolved_terms)


def public(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The resolved spec as written to disk (without private ``_``-keys, kept for old callers)."""
    return {k: v for k, v in spec.items() if not k.startswith("_")}


from .run import Run, build  # last: run.py builds on resolve_spec above

__all__ = [
    "DTYPES",
    "INJECTED",
    "ResolvedSpec",
    "Run",
    "SpecError",
    "SpecWarning",
    "build",
    "check_params",
    "dump",
    "load",
    "public",
    "resolve",
    "resolve_spec",
]
