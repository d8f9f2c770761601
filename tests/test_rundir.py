"""Run directories: never silently replaced, one writer at a time (a lock), and a run record
(``run.json``); ``jkoflow show`` reads them back."""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from _cli_run import run_cli, write_spec
from jkoflow import cli
from jkoflow.rundir import LOCK_NAME, RunDir, RunDirBusy, unique_dir

TINY = """
seed = 5
[problem]
kind = "heat"
n = 40
[potential]
kind = "ficnn"
widths = [8]
[solver]
tau = 0.05
steps = 2
inner_iters = 10
"""


def _spec(tmp_path: Path, text: str = TINY) -> Path:
    return write_spec(tmp_path, text)


_run = run_cli


def _digest(directory: Path) -> dict[str, str]:
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def test_a_directory_holding_a_run_is_refused_unless_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec, out = _spec(tmp_path), tmp_path / "run"
    assert _run("run", str(spec), "--out", str(out)) == 0
    (out / "notes.txt").write_text("mine")
    before = _digest(out)
    capsys.readouterr()
    assert _run("run", str(spec), "--seed", "6", "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert f"--out {str(out)!r} already holds a run" in err and "--overwrite" in err
    assert _digest(out) == before  # nothing touched
    assert _run("run", str(spec), "--seed", "6", "--steps", "1", "--out", str(out), "--overwrite") == 0
    assert (out / "notes.txt").read_text() == "mine"  # only the run's own files are replaced
    assert sorted(p.name for p in (out / "steps").iterdir()) == ["000000.pt", "000001.pt"]
    assert "seed = 6" in (out / "spec.toml").read_text()
    assert len(json.loads((out / "run.json").read_text())["sessions"]) == 1


HOLDER = """
import sys, time, filelock
lock = filelock.FileLock(sys.argv[1]); lock.acquire()
print("held", flush=True)
time.sleep(120)
"""


def test_a_second_process_cannot_write_a_locked_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Another process holds DIR's lock (as a running jkoflow does): run, resume and overwrite
    are refused at once and write nothing."""
    spec, out = _spec(tmp_path), tmp_path / "run"
    assert _run("run", str(spec), "--steps", "1", "--out", str(out)) == 0
    before = _digest(out)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(out / LOCK_NAME)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        capsys.readouterr()
        for argv in (
            ["run", str(spec), "--out", str(out), "--overwrite"],
            ["resume", str(out), "--steps", "2"],
        ):
            assert _run(*argv) == 2
            assert "is being written by another jkoflow process" in capsys.readouterr().err
        with pytest.raises(RunDirBusy):
            RunDir.create(tmp_path / "run", overwrite=True)
        assert _digest(out) == before
    finally:
        holder.kill()
        holder.wait()
    assert _run("resume", str(out), "--steps", "2") == 0  # the lock died with its process


def test_the_lock_is_held_for_the_whole_run_and_released_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a run writes DIR (checked from inside its step callback), DIR is locked."""
    from jkoflow import runner
    from jkoflow.rundir import is_locked

    seen: list[bool] = []
    write = runner.checkpoint.write_entry

    def spy(directory, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(is_locked(directory))
        return write(directory, *args, **kwargs)

    monkeypatch.setattr(runner.checkpoint, "write_entry", spy)
    out = tmp_path / "run"
    assert _run("run", str(_spec(tmp_path)), "--out", str(out)) == 0
    assert seen == [True, True, True]
    assert not is_locked(out)


def test_default_directories_are_unique(tmp_path: Path) -> None:
    base = tmp_path / "runs" / "heat-20260101-000000"
    assert [unique_dir(base).name for _ in range(3)] == [base.name, f"{base.name}-2", f"{base.name}-3"]


def test_run_json_records_versions_seed_threads_and_times(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert _run("run", str(_spec(tmp_path)), "--out", str(out)) == 0
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "complete" and record["steps_done"] == record["steps_target"] == 2
    assert record["spec"]["seed"] == 5 and record["spec"]["solver"]["inner_iters"] == 10
    (session,) = record["sessions"]
    assert session["torch"] == torch.__version__ and session["numpy"] == np.__version__
    assert session["python"] == platform.python_version()
    assert session["threads"] == torch.get_num_threads()  # 1 from the root conftest, unless a test changed it
    assert session["seed"] == 5 and session["device"] == "cpu" and session["world_size"] == 1
    here = str(Path(cli.__file__).parent)
    head = subprocess.run(
        ["git", "-C", here, "rev-parse", "HEAD"], check=False, capture_output=True, text=True
    )
    if head.returncode != 0:
        assert session["git_commit"] is None
    else:  # the commit when this process first asked (cached): HEAD, or an ancestor when others committed since
        commit = session["git_commit"]
        assert isinstance(commit, str) and len(commit) == 40
        ancestor = subprocess.run(
            ["git", "-C", here, "merge-base", "--is-ancestor", commit, "HEAD"], check=False
        )
        assert ancestor.returncode == 0
    assert session["wall_seconds"] > 0 and session["cpu_seconds"] > 0
    metrics = json.loads((out / "metrics.json").read_text())
    for r in metrics[1:]:
        assert r["cpu_seconds"] > 0 and r["seconds"] > 0 and r["checkpoint_seconds"] > 0
    # the per-step CPU times add up to at most the session's CPU time
    assert sum(r["cpu_seconds"] for r in metrics) <= session["cpu_seconds"]


def test_show_prints_the_table_and_rerenders_the_plot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert _run("run", str(_spec(tmp_path)), "--out", str(out)) == 0
    (out / "summary.png").unlink()
    capsys.readouterr()
    assert cli.main(["show", str(out)]) == 0
    text = capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    lines = text.splitlines()
    header = next(line.split() for line in lines if line.split()[:2] == ["step", "t"])
    rows = [line.split() for line in lines if line.split() and line.split()[0] in ("0", "1", "2")]
    assert len(rows) == 3
    col = header.index("F_exact")
    for row, record in zip(rows, metrics):
        assert float(row[col]) == pytest.approx(record["F_exact"], rel=1e-3)
    assert "status complete, steps 2/2, seed 5" in text
    assert (out / "summary.png").stat().st_size > 0


def test_show_compares_runs_side_by_side(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = _spec(tmp_path)
    a, b = tmp_path / "a", tmp_path / "b"
    assert _run("run", str(spec), "--out", str(a)) == 0
    assert _run("run", str(spec), "--seed", "9", "--out", str(b)) == 0
    capsys.readouterr()
    assert cli.main(["show", str(a), str(b), "--plot", str(tmp_path / "cmp.png")]) == 0
    lines = [line.split() for line in capsys.readouterr().out.splitlines() if line.strip()]
    rows = {" ".join(cells[:-2]): cells[-2:] for cells in lines}
    assert rows["seed"] == ["5", "9"]  # the one spec key that differs
    assert "solver.lr" not in rows  # keys that agree are not repeated
    last_f = [json.loads((d / "metrics.json").read_text())[-1]["F"] for d in (a, b)]
    assert [float(v) for v in rows["last F"]] == pytest.approx(last_f, rel=1e-3)
    assert last_f[0] != last_f[1]
    assert (tmp_path / "cmp.png").stat().st_size > 0


def test_show_refuses_a_directory_without_a_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["show", str(tmp_path)]) == 2
    assert "is not a run directory" in capsys.readouterr().err


@pytest.mark.slow
def test_two_runs_started_at_once_on_one_directory_never_mix(tmp_path: Path) -> None:
    """Two ``jkoflow run`` processes with different seeds and the same --out: one runs, the
    other is refused (exit 2), and every file in the directory is the winner's."""
    import jkoflow

    spec, out = _spec(tmp_path), tmp_path / "shared"
    procs = {
        seed: subprocess.Popen(
            [sys.executable, "-m", "jkoflow", "--threads", "1", "run", str(spec), "--seed", str(seed)]
            + ["--out", str(out), "--no-progress"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in (11, 12)
    }
    codes = {seed: p.wait(timeout=300) for seed, p in procs.items()}
    assert sorted(codes.values()) == [0, 2], codes
    winner = next(seed for seed, code in codes.items() if code == 0)
    loser = next(seed for seed, code in codes.items() if code == 2)
    err = procs[loser].stderr.read() if procs[loser].stderr is not None else ""
    assert "already holds a run" in err or "is being written by another jkoflow process" in err
    assert f"seed = {winner}" in (out / "spec.toml").read_text()
    assert json.loads((out / "run.json").read_text())["spec"]["seed"] == winner
    expected = jkoflow.build(jkoflow.load(out / "spec.toml")).x0
    assert torch.equal(torch.load(out / "steps" / "000000.pt", weights_only=True)["x"], expected)
    with np.load(out / "particles.npz") as saved:
        assert torch.equal(torch.from_numpy(saved["x"][0]), expected)
