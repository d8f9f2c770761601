"""Helpers of the run-directory tests: write a spec, call the CLI, interrupt a run mid-way."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jkoflow import cli
from jkoflow.solver import JKOSolver


def write_spec(tmp_path: Path, text: str) -> Path:
    """``tmp_path/spec.toml`` holding ``text``."""
    path = tmp_path / "spec.toml"
    path.write_text(text)
    return path


def run_cli(*argv: str) -> int:
    """``jkoflow ARGV --no-progress`` in this process; its exit code."""
    return cli.main([*argv, "--no-progress"])


def fit_interrupted_at(call: int, how: str) -> Callable[..., Any]:
    """A stand-in for ``JKOSolver._fit`` that raises ``KeyboardInterrupt`` (``how = "sigint"``)
    or sends this process SIGTERM (``"sigterm"``) when step ``call`` starts fitting."""
    fit = JKOSolver._fit
    calls = {"n": 0}

    def fit_then_interrupt(self: JKOSolver, *args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == call:
            if how == "sigint":
                raise KeyboardInterrupt
            os.kill(os.getpid(), signal.SIGTERM)
        return fit(self, *args, **kwargs)

    return fit_then_interrupt
