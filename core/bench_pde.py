"""Deprecated alias of the ``jkoflow bench pde`` suite, which moved out of core.

The suite is the built-in plugin module ``jkoflow.plugins.bench_pde``, reached through the hook
``jkoflow_bench_suites`` like any plugin's suite; import it from there. This module emits a
``DeprecationWarning`` on import and hands out the suite's names (``PRESETS``, ``Case``,
``run_case``, ``table``, ``ideal_table``, ``figure``, ``main``, ...) from the suite that the
registry knows as ``pde``, so that core imports no plugin.
"""

from __future__ import annotations

import warnings
from typing import Any

from .registry import default_registry

warnings.warn(
    "jkoflow.bench_pde is deprecated: the pde bench suite is the plugin module jkoflow.plugins.bench_pde",
    DeprecationWarning,
    stacklevel=2,
)

# the suite's public names, resolved on first use by __getattr__ (so F822 cannot see them)
__all__ = ["PRESETS", "Case", "figure", "ideal_table", "main", "run_case", "table"]  # noqa: F822


def _suite() -> Any:
    suite = default_registry().bench_suites().get("pde")
    if suite is None:
        raise ImportError(
            "jkoflow.bench_pde: no plugin gives the bench suite 'pde' (is jkoflow installed with its entry points?)"
        )
    return suite


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    try:
        return getattr(_suite(), name)
    except AttributeError:
        raise AttributeError(f"module 'jkoflow.bench_pde' has no attribute {name!r}") from None


def __dir__() -> list[str]:
    return sorted(set(globals()) | {n for n in dir(_suite()) if not n.startswith("__")})
