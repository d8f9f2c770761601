"""An interrupted ``jkoflow run`` (Ctrl-C or SIGTERM) writes every completed step."""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from _cli_run import fit_interrupted_at
from jkoflow import cli
from jkoflow.solver import JKOSolver


@pytest.mark.parametrize("how", ["sigint", "sigterm"])
def test_interrupt_after_two_steps_keeps_them(
    how: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(JKOSolver, "_fit", fit_interrupted_at(3, how))
    out = tmp_path / "run"
    handler_before = signal.getsignal(signal.SIGTERM)
    code = cli.main(["run", "heat", "--steps", "5", "--out", str(out), "--no-progress"])
    assert code == 130
    particles = np.load(out / "particles.npz")
    assert particles["x"].shape[0] == 3  # step 0 and the two completed steps
    maps = torch.load(out / "maps.pt", weights_only=True)
    assert len(maps["state_dicts"]) == 2
    assert (out / "summary.png").is_file()
    assert signal.getsignal(signal.SIGTERM) is handler_before  # the run restores the SIGTERM handler
