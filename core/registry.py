"""The plugin registry: every concrete piece of jkoflow is found here by kind and name.

Plugins (built-ins included) are modules or objects implementing the hook
:func:`jkoflow_register`, advertised through the entry-point group ``jkoflow.plugins``::

    [project.entry-points."jkoflow.plugins"]
    myplugin = "mypkg.jkoflow_plugin"

    # mypkg/jkoflow_plugin.py
    from jkoflow.registry import hookimpl

    @hookimpl
    def jkoflow_register(registry):
        registry.add("functional", "double_well", DoubleWell)

Two more hooks reach the command line: :func:`jkoflow_add_commands` adds ``jkoflow``
subcommands (``jkoflow run`` and ``jkoflow plugins`` arrive this way, from the built-in plugin
``jkoflow.plugins.commands``) and :func:`jkoflow_bench_suites` names the suites of
``jkoflow bench NAME``::

    @hookimpl
    def jkoflow_add_commands(subparsers):
        p = subparsers.add_parser("hello", help="say hello")
        p.add_argument("--name", default="world")
        p.set_defaults(handler=lambda args, ctx: print(f"hello {args.name}"))

    @hookimpl
    def jkoflow_bench_suites():
        return {"mine": mypkg.bench}  # a module with main(argv), or a callable main(argv)

The registry loads jkoflow's own entry points first, then third-party ones (sorted by
distribution name), and calls every hook in that order. A plugin that fails to import is
recorded in :attr:`Registry.failures` and reported with its package name, without taking the
others down; so is one whose command or bench-suite hook fails.
"""

from __future__ import annotations

import contextlib
import contextvars
import difflib
import functools
import importlib
import re
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from importlib.metadata import entry_points
from typing import Any

import attrs
import pluggy

PROJECT = "jkoflow"
ENTRY_POINT_GROUP = "jkoflow.plugins"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

KINDS: dict[str, str] = {
    "functional": "terms of F (callable(**params) -> Functional)",
    "net": "convex potential networks (callable(dim, **params) -> PotentialNet)",
    "logdet": "log-determinant estimators (callable(**params) -> LogDetEstimator)",
    "divergence": "divergences between clouds (callable(**params) -> Divergence)",
    "sampler": "initial distributions (callable(dim, **params) -> Sampler)",
    "problem": "problems with exact solutions (callable(**params) -> Problem)",
    "potential_fn": "potentials V for the potential energy (callable(**params) -> (x -> V(x)))",
    "kernel": "interaction kernels W (callable(**params) -> (z -> W(z)))",
    "internal_fn": "convex f of internal energies (callable(**params) -> InternalFn)",
}


class HookSpecs:
    """The hooks a jkoflow plugin may implement."""

    @hookspec
    def jkoflow_register(self, registry: Registry) -> None:
        """Add this plugin's entries with ``registry.add(kind, name, factory)``."""

    @hookspec
    def jkoflow_add_commands(self, subparsers: Any) -> None:
        """Add ``jkoflow`` subcommands to ``subparsers`` (the argparse subparsers of the ``jkoflow``
        parser; use its ``add_parser`` as usual).

        Each command's parser sets ``set_defaults(handler=fn)``: ``jkoflow NAME ...`` calls
        ``fn(args, ctx)`` with the parsed namespace and a :class:`jkoflow.cli.CommandContext`
        (``ctx.registry``, ``ctx.rest``, ``ctx.phase``) and exits with its return value (``None``
        is 0). Arguments the parser does not know are an error unless the parser also sets
        ``set_defaults(extra_args=True)``; they are then in ``ctx.rest``. A name another plugin
        already added is refused (:class:`DuplicateNameError`, recorded as a failure of the later
        plugin)."""

    @hookspec
    def jkoflow_bench_suites(self) -> dict[str, Any]:  # type: ignore[empty-body]
        """``{name: suite}``: the suites this plugin adds to ``jkoflow bench NAME ARGS...``.

        A suite is a module with a function ``main(argv) -> int | None`` or such a callable
        itself; ``jkoflow bench NAME ARGS...`` calls it with ``ARGS`` and exits with its return
        value. Called only when ``jkoflow bench`` runs (import heavy modules here, not at the
        plugin's import)."""


class RegistryError(LookupError):
    """Base class of registry errors."""


class UnknownNameError(RegistryError, KeyError):
    """No entry of that kind has that name; the message lists close matches."""

    def __init__(self, kind: str, name: str, known: list[str]) -> None:
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        message = f"unknown {kind} {name!r}{hint} (known: {', '.join(sorted(known)) or 'none'})"
        super().__init__(message)
        self.kind, self.name, self.close_matches = kind, name, close

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class DuplicateNameError(RegistryError):
    """Two plugins registered the same kind and name."""


class ImportNotAllowedError(RegistryError, ValueError):
    """An import string names a module the current :class:`ImportPolicy` does not allow."""


_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


@attrs.define
class ImportPolicy:
    """Which modules import strings (``"pkg.mod:attr"``) may load while a spec is processed.

    A spec reaches code only through registered plugins unless the *user* allows more: the
    modules in ``allowed`` (each with its submodules) are given on the command line
    (``jkoflow run --allow-import pkg``) or in the Python call (``jkoflow.build(spec,
    allow_imports=["pkg"])``), never by the spec itself. ``loaded`` lists the import strings
    loaded under this policy, in order (``jkoflow run`` prints them)."""

    allowed: tuple[str, ...] = ()
    loaded: list[str] = attrs.field(factory=list)

    def __attrs_post_init__(self) -> None:
        for name in self.allowed:
            if not isinstance(name, str) or not _MODULE.match(name):
                raise ValueError(
                    f"allowed import {name!r}: expected a module name such as 'mypkg' or 'mypkg.energies'"
                )

    def permits(self, module: str) -> bool:
        """Whether ``module`` is one of the allowed modules or inside one of them."""
        return any(module == a or module.startswith(a + ".") for a in self.allowed)

    def check(self, spec: str) -> None:
        """Raise :class:`ImportNotAllowedError` unless the module of import string ``spec`` is allowed."""
        module = spec.partition(":")[0]
        if not self.permits(module):
            top = module.split(".")[0] or module
            allowed = f" (allowed: {', '.join(self.allowed)})" if self.allowed else ""
            raise ImportNotAllowedError(
                f"import string {spec!r}: a spec may only name registered plugins unless you allow its module{allowed}; "
                f"if you trust {top!r}, run with --allow-import {top} (Python: allow_imports=[{top!r}])"
            )


_POLICY: contextvars.ContextVar[ImportPolicy | None] = contextvars.ContextVar(
    "jkoflow_import_policy", default=None
)


@contextlib.contextmanager
def import_policy(allowed: Iterable[str] | ImportPolicy = ()) -> Iterator[ImportPolicy]:
    """Enforce an :class:`ImportPolicy` on every :meth:`Registry.get` inside the block (the spec
    loader runs resolving and building inside one). An enclosing policy is kept: a nested block
    cannot allow more than its caller did."""
    outer = _POLICY.get()
    policy = allowed if isinstance(allowed, ImportPolicy) else ImportPolicy(tuple(allowed))
    if outer is not None:
        policy = outer
    token = _POLICY.set(policy)
    try:
        yield policy
    finally:
        _POLICY.reset(token)


def current_import_policy() -> ImportPolicy | None:
    """The policy in force, or ``None`` outside spec processing (plain Python code, which may
    import what it likes)."""
    return _POLICY.get()


@attrs.define(frozen=True)
class Entry:
    """A registered factory and the distribution (package) that provided it."""

    kind: str
    name: str
    factory: Callable[..., Any]
    provider: str


@attrs.define(frozen=True)
class PluginFailure:
    """A plugin that could not be loaded or could not register.

    ``missing_module`` and ``extra`` are set when the import failed on a module that the
    providing distribution requires only under an optional extra (``pip install 'pkg[extra]'``):
    an expected absence on an install without that extra, not a broken plugin.
    """

    provider: str
    entry_point: str
    error: str
    missing_module: str | None = None
    extra: str | None = None

    @property
    def optional(self) -> bool:
        """Whether the plugin only lacks an optional extra's dependency."""
        return self.extra is not None

    def describe(self) -> str:
        """One line for users: which plugin, from which package, and why."""
        if self.extra is not None:
            return (
                f"plugin {self.entry_point} from {self.provider!r} is not loaded: it needs {self.missing_module!r} "
                f"from the optional extra {self.extra!r} (pip install '{self.provider}[{self.extra}]')"
            )
        return f"plugin {self.entry_point} from {self.provider!r} failed to load: {self.error}"


_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)[^;]*;.*\bextra\s*==\s*['\"]([^'\"]+)['\"]")


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _missing_extra(ep: Any, exc: BaseException) -> tuple[str, str] | None:
    """``(module, extra)`` when ``exc`` is an ImportError naming a module that the entry
    point's distribution requires only under an optional extra (its ``Requires-Dist`` lines
    with an ``extra == ...`` marker); else ``None``."""
    module = getattr(exc, "name", None) if isinstance(exc, ImportError) else None
    dist = getattr(ep, "dist", None)
    if not module or dist is None:
        return None
    top = _normalize(module.split(".")[0])
    for line in dist.requires or []:
        match = _REQUIREMENT.match(line)
        if match and _normalize(match.group(1)) == top:
            return module.split(".")[0], match.group(2)
    return None


class Registry:
    """Entries by kind and name, filled by plugins through :func:`jkoflow_register`."""

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
        self.failures: list[PluginFailure] = []
        self._manager = pluggy.PluginManager(PROJECT)
        self._manager.add_hookspecs(HookSpecs)
        self._providers: dict[int, str] = {}
        self._provider: str | None = None
        self._plugins: list[tuple[object, str]] = []  # in registration order: the hooks' call order

    # --- filling ------------------------------------------------------------------------
    def add(self, kind: str, name: str, factory: Callable[..., Any]) -> None:
        """Register ``factory`` as ``kind`` ``name`` (called from a plugin's hook)."""
        if kind not in KINDS:
            raise UnknownNameError("registry kind", kind, list(KINDS))
        provider = self._provider or "local"
        existing = self._entries[kind].get(name)
        if existing is not None:
            raise DuplicateNameError(
                f"{kind} {name!r} is registered twice: by {existing.provider!r} and by {provider!r}"
            )
        self._entries[kind][name] = Entry(kind, name, factory, provider)

    def register(self, plugin: object, provider: str = "local") -> None:
        """Register a plugin object (module or instance with hook implementations) now."""
        self._manager.register(plugin)
        self._providers[id(plugin)] = provider
        self._plugins.append((plugin, provider))
        impls = [i for i in self._manager.hook.jkoflow_register.get_hookimpls() if i.plugin is plugin]
        for impl in impls:
            self._provider = provider
            try:
                impl.function(registry=self)
            finally:
                self._provider = None

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> None:
        """Import and register every plugin advertised in the entry-point group.

        jkoflow's own plugins come first; an import failure is recorded in
        :attr:`failures` and warned about, naming the package, except a module missing because
        an optional extra of the package is not installed (recorded with ``extra`` set).
        """
        eps = sorted(
            entry_points(group=group),
            key=lambda ep: (_dist_name(ep) != PROJECT, _dist_name(ep), ep.name),
        )
        for ep in eps:
            provider = _dist_name(ep)
            try:
                plugin = ep.load()
            except Exception as exc:  # noqa: BLE001 - any import error of a third party
                missing = _missing_extra(ep, exc)
                failure = PluginFailure(
                    provider,
                    f"{ep.name} = {ep.value}",
                    f"{type(exc).__name__}: {exc}",
                    *(missing or (None, None)),
                )
                self.failures.append(failure)
                if not failure.optional:  # a missing optional extra is expected: recorded, not warned
                    warnings.warn(
                        f"jkoflow plugin {ep.name!r} from package {provider!r} failed to load "
                        f"({failure.error}); its entries are unavailable",
                        RuntimeWarning,
                        stacklevel=2,
                    )
                continue
            if self._manager.is_registered(plugin):
                continue
            self.register(plugin, provider)

    # --- command line -------------------------------------------------------------------
    def add_commands(self, subparsers: Any) -> dict[str, str]:
        """Let every plugin add its subcommands to ``subparsers`` (hook :func:`jkoflow_add_commands`,
        plugins in load order); returns ``{command: provider}``.

        A plugin whose hook raises (a name already taken included) is recorded in
        :attr:`failures` and warned about; the commands of the others are still added."""
        owners: dict[str, str] = {}
        for plugin, provider, function in self._hook_functions("jkoflow_add_commands"):
            try:
                function(subparsers=_Subparsers(subparsers, owners, provider))
            except Exception as exc:  # noqa: BLE001 - a third party's bug must not take the CLI down
                self._hook_failed(plugin, provider, "jkoflow_add_commands", exc, "its commands")
        return owners

    def bench_suites(self) -> dict[str, Any]:
        """``{name: suite}`` from every plugin's :func:`jkoflow_bench_suites` (load order); a suite is a
        module with ``main(argv)`` or a callable ``main(argv)``.

        A plugin whose hook raises or returns something else than such a dict, or a name an earlier
        plugin gave, is recorded in :attr:`failures` and warned about (none of its suites is
        added); the suites of the others are kept."""
        suites: dict[str, Any] = {}
        owners: dict[str, str] = {}
        for plugin, provider, function in self._hook_functions("jkoflow_bench_suites"):
            try:
                given = function()
                if given is None:
                    continue
                if not isinstance(given, Mapping):
                    raise TypeError(f"expected a dict {{name: suite}}, got {type(given).__name__}")
                for name, suite in given.items():
                    if not isinstance(name, str) or not name:
                        raise TypeError(f"suite name {name!r}: expected a non-empty string")
                    if suite_main(suite) is None:
                        raise TypeError(
                            f"suite {name!r}: expected a module with main(argv) or a callable, got {suite!r}"
                        )
                    if name in owners:
                        raise DuplicateNameError(
                            f"bench suite {name!r} is given twice: by {owners[name]!r} and by {provider!r}"
                        )
            except Exception as exc:  # noqa: BLE001 - a third party's bug must not take the CLI down
                self._hook_failed(plugin, provider, "jkoflow_bench_suites", exc, "its bench suites")
                continue
            for name, suite in given.items():
                suites[name], owners[name] = suite, provider
        return suites

    def _hook_functions(self, hook: str) -> Iterator[tuple[object, str, Callable[..., Any]]]:
        """``(plugin, provider, implementation)`` of ``hook`` for every registered plugin, in order."""
        impls = getattr(self._manager.hook, hook).get_hookimpls()
        for plugin, provider in list(self._plugins):
            for impl in impls:
                if impl.plugin is plugin:
                    yield plugin, provider, impl.function

    def _hook_failed(self, plugin: object, provider: str, hook: str, exc: Exception, lost: str) -> None:
        name = getattr(plugin, "__name__", None) or type(plugin).__name__
        failure = PluginFailure(provider, f"{name} ({hook})", f"{type(exc).__name__}: {exc}")
        if failure not in self.failures:  # the CLI may call a hook more than once per process
            self.failures.append(failure)
        warnings.warn(
            f"jkoflow plugin {name!r} from package {provider!r}: {hook} failed ({failure.error}); "
            f"{lost} are unavailable",
            RuntimeWarning,
            stacklevel=3,
        )

    # --- lookup -------------------------------------------------------------------------
    def entry(self, kind: str, name: str) -> Entry:
        """The entry ``kind``/``name``; :class:`UnknownNameError` lists close matches."""
        if kind not in KINDS:
            raise UnknownNameError("registry kind", kind, list(KINDS))
        try:
            return self._entries[kind][name]
        except KeyError:
            raise UnknownNameError(kind, name, list(self._entries[kind])) from None

    def get(self, kind: str, name: str) -> Callable[..., Any]:
        """The factory registered as ``kind`` ``name``, or one given as ``"pkg.mod:attr"``.

        Inside spec processing (:func:`import_policy`) an import string loads only if its module
        is allowed; outside it (plain Python) it always loads."""
        if ":" in name and name not in self._entries.get(kind, {}):
            policy = _POLICY.get()
            if policy is not None:
                policy.check(name)
            obj = import_string(name)
            if policy is not None:
                policy.loaded.append(name)
            return obj
        return self.entry(kind, name).factory

    def names(self, kind: str) -> list[str]:
        """Sorted names registered under ``kind``."""
        return sorted(self._entries[kind])

    def __iter__(self) -> Iterator[Entry]:
        for kind in KINDS:
            yield from (self._entries[kind][n] for n in sorted(self._entries[kind]))

    def listing(self) -> dict[str, dict[str, str]]:
        """``{kind: {name: provider}}`` for every entry (what ``jkoflow plugins --json`` prints)."""
        return {
            kind: {n: e.provider for n, e in sorted(ents.items())} for kind, ents in self._entries.items()
        }


class _Subparsers:
    """The argparse subparsers a :func:`jkoflow_add_commands` hook gets: ``add_parser`` refuses a
    command name (or alias) that another plugin added, naming both packages, and records the
    provider of each; everything else is the argparse object's."""

    def __init__(self, action: Any, owners: dict[str, str], provider: str) -> None:
        self._action, self._owners, self._provider = action, owners, provider

    def add_parser(self, name: str, **kwargs: Any) -> Any:
        names = [name, *kwargs.get("aliases", ())]
        for n in names:
            owner = self._owners.get(n)
            if owner is None and n in getattr(self._action, "choices", {}):
                owner = "jkoflow"  # a command of the core parser (jkoflow bench)
            if owner is not None:
                raise DuplicateNameError(
                    f"command {n!r} is added twice: by {owner!r} and by {self._provider!r}"
                )
        parser = self._action.add_parser(name, **kwargs)
        for n in names:
            self._owners[n] = self._provider
        return parser

    def __getattr__(self, name: str) -> Any:
        return getattr(self._action, name)


def suite_main(suite: Any) -> Callable[..., Any] | None:
    """The ``main(argv)`` of a bench suite: the module's (or object's) ``main``, or the suite itself
    when it is callable; ``None`` when it is neither."""
    main = getattr(suite, "main", None)
    if callable(main):
        return main
    return suite if callable(suite) else None


def _dist_name(ep: Any) -> str:
    dist = getattr(ep, "dist", None)
    return dist.name if dist is not None else ep.value.split(":")[0].split(".")[0]


def import_string(spec: str) -> Any:
    """Import ``"pkg.mod:attr"`` (``attr`` may be dotted); errors name the string."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"{spec!r} is not an import string: expected 'package.module:attribute'")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportError(f"cannot import module {module_name!r} from {spec!r}: {exc}") from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ImportError(f"module {module_name!r} has no attribute {attr!r} (from {spec!r})") from None
    return obj


@functools.lru_cache(maxsize=1)
def default_registry() -> Registry:
    """The process-wide registry with every installed plugin loaded (built once)."""
    registry = Registry()
    registry.load_entry_points()
    return registry
