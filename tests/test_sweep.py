"""``jkoflow sweep``: a 2 x 2 grid x 2 seeds of a tiny heat flow; the table against direct runs
and an independent mean/std; re-runs skip complete runs and resume interrupted ones; failed runs
are listed with their error; Ray and the local process pool give the same table."""

from __future__ import annotations

import csv
import json
import shutil
import statistics
from pathlib import Path

import pytest
from jkoflow import cli
from jkoflow.plugins.sweep import load_sweep

SWEEP = """
seeds = [0, 1]
metrics = ["F", "w1"]

[base]
problem = { kind = "heat", n = 30 }
potential = { kind = "ficnn", widths = [8] }

[base.solver]
tau = 0.05
steps = 2
inner_iters = 10

[grid]
"solver.lr" = [0.01, 0.02]
"problem.n" = [30, 40]
"""


def _sweep(tmp_path: Path, text: str = SWEEP) -> Path:
    path = tmp_path / "sweep.toml"
    path.write_text(text)
    return path


def _table(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_the_sweep_table_matches_direct_runs_and_its_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep, out = _sweep(tmp_path), tmp_path / "out"
    assert cli.main(["sweep", str(sweep), "--backend", "local", "--workers", "1", "--out", str(out)]) == 0
    rows = _table(out / "results.csv")
    assert len(rows) == 8 and {r["status"] for r in rows} == {"complete"}
    assert [(r["solver.lr"], r["problem.n"], r["seed"]) for r in rows[:3]] == [
        ("0.01", "30", "0"),
        ("0.01", "30", "1"),
        ("0.01", "40", "0"),
    ]
    # one row against the same run made directly with jkoflow run
    spec = tmp_path / "direct.toml"
    spec.write_text(
        'seed = 1\nproblem = { kind = "heat", n = 40 }\npotential = { kind = "ficnn", widths = [8] }\n'
        "[solver]\ntau = 0.05\nsteps = 2\ninner_iters = 10\nlr = 0.02\n"
    )
    assert cli.main(["run", str(spec), "--out", str(tmp_path / "direct"), "--no-progress"]) == 0
    direct = json.loads((tmp_path / "direct" / "metrics.json").read_text())[-1]
    row = next(r for r in rows if (r["solver.lr"], r["problem.n"], r["seed"]) == ("0.02", "40", "1"))
    assert float(row["F"]) == direct["F"] and float(row["w1"]) == direct["w1"] and row["steps"] == "2"
    # the summary: mean and sample standard deviation over the two seeds, computed here again
    summary = {r["case"]: r for r in _table(out / "summary.csv")}
    assert len(summary) == 4
    for case, s in summary.items():
        fs = [float(r["F"]) for r in rows if r["run"].rsplit(",seed=", 1)[0] == case]
        assert float(s["F_mean"]) == pytest.approx(statistics.mean(fs), rel=1e-12)
        assert float(s["F_std"]) == pytest.approx(statistics.stdev(fs), rel=1e-12)
    printed = capsys.readouterr().out
    assert "solver.lr=0.01,problem.n=30" in printed and "±" in printed


def test_a_rerun_skips_complete_runs_and_resumes_interrupted_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep, out = _sweep(tmp_path), tmp_path / "out"
    argv = ["sweep", str(sweep), "--backend", "local", "--workers", "1", "--out", str(out)]
    assert cli.main(argv) == 0
    first = (out / "results.csv").read_text()
    # make one run look killed after step 1: its last checkpoint and final files gone
    cases, _ = load_sweep(sweep)
    victim = out / "runs" / cases[5].dirname
    (victim / "steps" / "000002.pt").unlink()
    for name in ("particles.npz", "maps.pt"):
        (victim / name).unlink()
    record = json.loads((victim / "run.json").read_text())
    record["status"] = "running"
    (victim / "run.json").write_text(json.dumps(record))
    mtimes = {c.dirname: (out / "runs" / c.dirname / "run.json").stat().st_mtime_ns for c in cases}
    capsys.readouterr()
    assert cli.main(argv) == 0
    err = capsys.readouterr().err
    assert err.count("skipped") == 7 and err.count("resumed") == 1
    assert (out / "results.csv").read_text() == first  # the resumed run ends exactly as before
    sessions = json.loads((victim / "run.json").read_text())["sessions"]
    assert [s["command"] for s in sessions] == ["run", "resume"] and sessions[1]["first_step"] == 2
    for c in cases:
        if c.dirname != victim.name:  # skipped runs are not touched
            assert (out / "runs" / c.dirname / "run.json").stat().st_mtime_ns == mtimes[c.dirname]


def test_failed_runs_are_listed_with_their_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = SWEEP.replace('"problem.n" = [30, 40]', "").replace("seeds = [0, 1]", "seeds = [0]")
    text = text.replace('"solver.lr" = [0.01, 0.02]', '"solver.lr" = [0.01, -1.0]')
    out = tmp_path / "out"
    assert (
        cli.main(
            ["sweep", str(_sweep(tmp_path, text)), "--workers", "1", "--backend", "local", "--out", str(out)]
        )
        == 1
    )
    rows = _table(out / "results.csv")
    assert [r["status"] for r in rows] == ["complete", "failed"]
    assert "lr" in rows[1]["error"] and "expected a positive number" in rows[1]["error"]
    printed = capsys.readouterr().out
    assert "1 failed:" in printed and "solver.lr=-1.0,seed=0: SpecError" in printed


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("seeds = [0]\n", "base: got None; expected a spec file name or a [base] table"),
        ('base = "nope.toml"\n', "nope.toml' does not exist"),
        ('[base]\ndim = 1\n[grid]\n"solver.lr" = []\n', "grid.solver.lr: got []; expected a non-empty list"),
        ('[base]\ndim = 1\n[grid]\n"solver..lr" = [1]\n', "'solver..lr' is not a key path"),
        ('[base]\ndim = 1\n[grid]\n"terms[0].weight" = [1]\n', "the base spec has no list 'terms'"),
        ("seeds = [1, 1]\n[base]\ndim = 1\n", "seeds: got [1, 1]; expected a non-empty list of distinct"),
        ('[base]\ndim = 1\n[grid]\n"seed" = [1]\n', "give seeds as `seeds = [...]`"),
        ("colour = 1\n[base]\ndim = 1\n", "unknown key 'colour'"),
    ],
)
def test_bad_sweep_files_exit_2(
    tmp_path: Path, text: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["sweep", str(_sweep(tmp_path, text)), "--out", str(tmp_path / "o")]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_ray_and_the_local_pool_give_the_same_table(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    sweep = _sweep(tmp_path)
    tables = {}
    for backend in ("ray", "local"):
        out = tmp_path / backend
        argv = ["sweep", str(sweep), "--backend", backend, "--workers", "2", "--out", str(out)]
        assert cli.main(argv) == 0
        tables[backend] = (out / "results.csv").read_text()
        assert (out / "summary.csv").is_file()
    assert tables["ray"] == tables["local"]
    assert len(tables["ray"].splitlines()) == 9
    shutil.rmtree(tmp_path / "ray")
