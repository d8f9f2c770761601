"""Spec errors and the checks of settings against a factory's signature.

:func:`check_params` validates one table of a spec (``[sampler]``, ``[[terms]]``, ...) against the
signature and type hints of the factory it names; :func:`make` calls the factory and turns its
errors into :class:`SpecError` naming the key path.
"""

from __future__ import annotations

import collections.abc
import inspect
import math
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

from .registry import Registry, RegistryError

INJECTED = ("dim", "registry")
"""Factory parameters the builder supplies itself (never set in a spec section)."""


class SpecWarning(UserWarning):
    """A spec is valid but probably not what was meant (e.g. a negative term weight)."""


class SpecError(ValueError):
    """A spec is invalid; ``path`` is the offending key path (e.g. ``terms[0].m``)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path


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


def injectable(factory: Callable[..., Any], **candidates: Any) -> dict[str, Any]:
    """The ``candidates`` (e.g. ``dim``, ``registry``) that ``factory`` takes and that are not
    ``None``: what the builder passes besides a table's own settings."""
    try:
        accepted: Mapping[str, inspect.Parameter] = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return {}
    return {k: v for k, v in candidates.items() if k in accepted and v is not None}


def make(
    factory: Callable[..., Any], params: Mapping[str, Any], path: str, registry: Registry, **injected: Any
) -> Any:
    """Call ``factory`` with ``params`` plus whichever of ``injected``/``registry`` it takes."""
    extra = injectable(factory, **injected, registry=registry)
    try:
        return factory(**params, **extra)
    except SpecError:
        raise
    except (TypeError, ValueError, RegistryError, ImportError) as exc:  # a bad setting, an unknown V kind
        raise SpecError(path, str(exc)) from exc
    except (ArithmeticError, LookupError, RuntimeError, MemoryError) as exc:  # a plugin that did not validate
        raise SpecError(path, f"the settings {dict(params)!r} fail: {type(exc).__name__}: {exc}") from exc


__all__ = ["INJECTED", "SpecError", "SpecWarning", "check_params", "injectable", "make"]
