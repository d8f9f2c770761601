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

import collections.abc
import copy
import inspect
import math
import sys
import types
import typing
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import torch

from . import budget
from .flow import Flow
from .functional import Functional, Need, total
from .logdet import LogDetEstimator
from .potential import PotentialNet
from .problem import Problem
from .registry import (
    ImportNotAllowedError,
    Registry,
    RegistryError,
    current_import_policy,
    default_registry,
    import_policy,
)
from .sampler import Sampler
from .solver import JKOSolver

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

TOP_KEYS = ("problem", "dim", "seed", "dtype", "sampler", "potential", "solver", "terms")
DTYPES = {"float32": torch.float32, "float64": torch.float64}
INJECTED = ("dim", "registry")
"""Factory parameters the builder supplies itself (never set in a spec section)."""

DEFAULT_POTENTIAL: dict[str, Any] = {"kind": "ficnn"}
DEFAULT_LOGDET = "exact"


class SpecWarning(UserWarning):
    """A spec is valid but probably not what was meant (e.g. a negative term weight)."""


class SpecError(ValueError):
    """A spec is invalid; ``path`` is the offending key path (e.g. ``terms[0].m``)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path


# --- loading -----------------------------------------------------------------------------
def load(path: str | Path) -> dict[str, Any]:
    """Read a TOML spec file."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise SpecError("", f"spec file {str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise SpecError("", f"spec file {str(path)!r} is a directory; expected a TOML file") from None
    except PermissionError:
        raise SpecError("", f"spec file {str(path)!r} cannot be read (permission denied)") from None
    except UnicodeDecodeError as exc:
        raise SpecError(
            "", f"{path} is not a text (UTF-8 TOML) file: {exc.reason} at byte {exc.start}"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError("", f"{path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise SpecError("", f"spec file {str(path)!r} cannot be read: {exc.strerror or exc}") from None


def dump(spec: Mapping[str, Any], path: str | Path) -> None:
    """Write a (resolved) spec as TOML, atomically (see :mod:`jkoflow.files`)."""
    import tomli_w

    from .files import atomic_write_text

    atomic_write_text(path, tomli_w.dumps(_toml_ready(spec)))


def _toml_ready(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _toml_ready(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_toml_ready(v) for v in value]
    return value


# --- type checking of parameters ---------------------------------------------------------
def _describe(hint: Any) -> str:
    text = getattr(hint, "__name__", None) if not typing.get_args(hint) else None
    return text or str(hint).replace("typing.", "").replace("collections.abc.", "")


def _type_ok(value: Any, hint: Any) -> bool:
    if hint is Any or hint is inspect.Parameter.empty:
        return True
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        return any(_type_ok(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (list, tuple, collections.abc.Sequence):
        if not isinstance(value, (list, tuple)):
            return False
        inner = args[0] if args else Any
        return all(_type_ok(v, inner) for v in value)
    if origin in (dict, collections.abc.Mapping) or hint in (dict, collections.abc.Mapping):
        return isinstance(value, Mapping)
    return True  # callables, tensors, objects: checked by the factory itself


def _non_finite(value: Any, path: str = "") -> str | None:
    """The sub-path (``""`` for the value itself, ``"[2]"``, ``".a"``) of the first nan or inf
    number in ``value``, or ``None``."""
    if isinstance(value, float) and not math.isfinite(value):
        return path
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            found = _non_finite(item, f"{path}[{i}]")
            if found is not None:
                return found
    if isinstance(value, Mapping):
        for key, item in value.items():
            found = _non_finite(item, f"{path}.{key}")
            if found is not None:
                return found
    return None


def _hints(factory: Callable[..., Any]) -> dict[str, Any]:
    target = factory.__init__ if inspect.isclass(factory) else factory
    try:
        return typing.get_type_hints(target)
    except Exception:  # noqa: BLE001 - unresolvable annotations: skip type checks
        return {}


def check_params(
    path: str,
    factory: Callable[..., Any],
    params: Mapping[str, Any],
    what: str,
    injected: tuple[str, ...] = INJECTED,
) -> dict[str, Any]:
    """Validate ``params`` against ``factory``'s signature and fill defaults.

    Unknown keys, missing required keys and mistyped values raise :class:`SpecError` naming
    ``path.key`` and the expected type or the allowed keys.
    """
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return dict(params)
    accepted = {
        name: p
        for name, p in signature.parameters.items()
        if name not in injected and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }
    takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    hints = _hints(factory)
    for key, value in params.items():
        if key in injected:
            raise SpecError(f"{path}.{key}", f"is set by jkoflow itself and cannot be given in {what}")
        if key not in accepted:
            if takes_kwargs:
                continue
            raise SpecError(
                f"{path}.{key}",
                f"unknown parameter of {what}; expected one of: {', '.join(accepted) or '(none)'}",
            )
        hint = hints.get(key, accepted[key].annotation)
        bad = _non_finite(value)
        if bad is not None:
            raise SpecError(f"{path}.{key}{bad}", f"got {value!r}; expected finite numbers (no nan or inf)")
        if not _type_ok(value, hint):
            raise SpecError(
                f"{path}.{key}", f"got {value!r} ({type(value).__name__}); expected {_describe(hint)}"
            )
    resolved = dict(params)
    for name, p in accepted.items():
        if name in resolved:
            continue
        if p.default is inspect.Parameter.empty:
            raise SpecError(f"{path}.{name}", f"missing required parameter of {what}")
        default = p.default
        if isinstance(default, tuple):
            default = list(default)
        if default is None or isinstance(default, (bool, int, float, str, list, dict)):
            resolved[name] = default
    return resolved


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


def resolve(
    spec: Mapping[str, Any], registry: Registry | None = None, *, allow_imports: Iterable[str] = ()
) -> dict[str, Any]:
    """Validate ``spec`` and return it with every default filled in.

    Import strings (``"pkg.mod:attr"`` in a ``kind``, ``V``, ``W``, ``f`` or ``divergence``)
    are refused unless their module is in ``allow_imports`` (given by the user, never by the
    spec); they are checked before any plugin code runs. Registered names need no allowance."""
    with import_policy(allow_imports) as policy:
        for path, name in _import_strings(spec):
            try:
                policy.check(name)
            except ImportNotAllowedError as exc:
                raise SpecError(path, str(exc)) from None
        return _resolve(spec, registry)


def _resolve(spec: Mapping[str, Any], registry: Registry | None = None) -> dict[str, Any]:
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
    out["solver"] = check_params("solver", JKOSolver, solver, "the solver")
    out["solver"].pop("seed", None)
    out["solver"].pop("progress", None)
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
    else:
        out["_derived"] = {"dim": dim, "sampler": resolved_sampler, "terms": resolved_terms}
    return out


def _make(
    factory: Callable[..., Any], params: Mapping[str, Any], path: str, registry: Registry, **injected: Any
) -> Any:
    """Call ``factory`` with ``params`` plus whichever of ``injected``/``registry`` it takes."""
    try:
        accepted = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        accepted = {}
    extra = {k: v for k, v in {**injected, "registry": registry}.items() if k in accepted}
    try:
        return factory(**params, **extra)
    except SpecError:
        raise
    except (TypeError, ValueError, RegistryError, ImportError) as exc:  # a bad setting, an unknown V kind
        raise SpecError(path, str(exc)) from exc
    except (ArithmeticError, LookupError, RuntimeError, MemoryError) as exc:  # a plugin that did not validate
        raise SpecError(path, f"the settings {dict(params)!r} fail: {type(exc).__name__}: {exc}") from exc


# --- building ----------------------------------------------------------------------------
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

    def execute(self, progress: bool = False, callback: Callable[[Flow], None] | None = None) -> Flow:
        """Run the JKO flow; ``callback(flow)`` after step 0 and after every step."""
        self.solver.progress = progress
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

        return self.solver.run(
            self.functional,
            self.make_potential,
            self.x0,
            self.log_density0,
            self.logdet,
            callback=callback,
            sample0=sample0,
        )

    @property
    def spec_sampler(self) -> dict[str, Any]:
        return self.spec.get("sampler") or self.spec["_derived"]["sampler"]

    def problem_metrics(self, flow: Flow) -> dict[str, float]:
        """The problem's exact-solution metrics at the flow's latest step (empty without one)."""
        if self.problem is None:
            return {}
        t = self.problem.t0 + float(flow.times[-1])
        return self.problem.metrics(t, flow.particles[0], flow.particles[-1], flow.log_densities[-1])


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
    spec = resolve(copy.deepcopy(dict(spec)), registry, allow_imports=policy.allowed if policy else ())
    derived = spec.get("_derived", spec)
    dim = derived["dim"]
    dtype = DTYPES[spec["dtype"]]
    problem = None
    if "problem" in spec:
        params = {k: v for k, v in spec["problem"].items() if k != "kind"}
        problem = _make(registry.get("problem", spec["problem"]["kind"]), params, "problem", registry)

    built = []
    for i, term in enumerate(derived["terms"]):
        params = {k: v for k, v in term.items() if k not in ("kind", "weight")}
        built.append(_make(registry.get("functional", term["kind"]), params, f"terms[{i}]", registry))
    functional = total([term["weight"] * f for term, f in zip(derived["terms"], built)])
    budget.check(spec, needs_logdet=bool(functional.needs))  # before anything large is allocated

    sampler_params = {k: v for k, v in derived["sampler"].items() if k not in ("kind", "n")}
    sampler = _make(
        registry.get("sampler", derived["sampler"]["kind"]), sampler_params, "sampler", registry, dim=dim
    )
    generator = torch.Generator().manual_seed(spec["seed"])
    x0, log_density0 = sampler.sample(derived["sampler"]["n"], generator)
    x0 = x0.to(dtype)
    log_density0 = None if log_density0 is None else log_density0.to(dtype)
    _check_sample(x0, log_density0, dim, derived["sampler"])
    for i, f in enumerate(built):
        _probe(f, x0, log_density0, f"terms[{i}]")

    pot = spec["potential"]
    net_factory = registry.get("net", pot["kind"])
    net_params = {k: v for k, v in pot.items() if k != "kind"}
    _make(net_factory, net_params, "potential", registry, dim=dim)  # fail early on bad settings

    def make_potential() -> PotentialNet:
        return _make(net_factory, net_params, "potential", registry, dim=dim).to(dtype)

    solver_params = {k: v for k, v in spec["solver"].items() if k != "logdet"}
    try:
        solver = JKOSolver(**solver_params, seed=spec["seed"])
    except (TypeError, ValueError) as exc:
        raise SpecError("solver", str(exc)) from exc
    ld = spec["solver"]["logdet"]
    logdet = _make(
        registry.get("logdet", ld["kind"]),
        {k: v for k, v in ld.items() if k != "kind"},
        "solver.logdet",
        registry,
    )
    return Run(spec, functional, make_potential, sampler, logdet, solver, problem, x0, log_density0)


def public(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The resolved spec as written to disk (without derived, informational parts)."""
    return {k: v for k, v in spec.items() if not k.startswith("_")}
