"""Import the molecules subpackage whether or not ``jkoflow`` packaging exists yet."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType


def molecules_module(name: str) -> ModuleType:
    """``jkoflow.contrib.molecules.<name>``, falling back to ``contrib/`` on sys.path."""
    try:
        return importlib.import_module(f"jkoflow.contrib.molecules.{name}")
    except ImportError:
        contrib = str(Path(__file__).resolve().parents[2])
        if contrib not in sys.path:
            sys.path.insert(0, contrib)
        return importlib.import_module(f"molecules.{name}")
