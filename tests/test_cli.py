"""The command line: default run writes the documented files; plugins listing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from jkoflow.cli import main


def test_run_default_problem_writes_documented_files(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(["run", "--steps", "2", "--out", str(out), "--no-progress"]) == 0
    for name in ("spec.toml", "metrics.json", "particles.npz", "maps.pt", "summary.png"):
        assert (out / name).stat().st_size > 0, name
    records = json.loads((out / "metrics.json").read_text())
    assert [r["step"] for r in records] == [0, 1, 2]
    for key in ("step", "t", "seconds", "F", "F_exact", "w1", "map_error"):
        assert key in records[-1]
    assert records[-1]["F"] == pytest.approx(records[-1]["F_exact"], abs=0.05)
    data = np.load(out / "particles.npz")
    assert data["x"].shape == (3, 500, 1) and data["t"].shape == (3,)
    np.testing.assert_allclose(data["t"], [r["t"] for r in records])
    # the written spec repeats the run exactly
    out2 = tmp_path / "again"
    assert main(["run", str(out / "spec.toml"), "--out", str(out2), "--no-progress"]) == 0
    np.testing.assert_array_equal(np.load(out2 / "particles.npz")["x"], data["x"])


def test_bad_target_and_bad_spec_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "no-such-problem", "--out", str(tmp_path / "x")]) == 2
    assert "neither a spec file nor a problem" in capsys.readouterr().err
    spec = tmp_path / "s.toml"
    spec.write_text('problem = "heat"\n[solver]\ntau = "big"\n')
    assert main(["run", str(spec), "--out", str(tmp_path / "y")]) == 2
    assert "solver.tau: got 'big'" in capsys.readouterr().err


def test_plugins_json_lists_builtins_with_provider(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert listing["net"]["ficnn"] == "jkoflow"
    assert listing["problem"]["heat"] == "jkoflow"
    assert listing["logdet"]["exact"] == "jkoflow"
