"""Checkpoint and exact resume: a run killed (SIGKILL, SIGINT, SIGTERM) after any step and
continued with ``jkoflow resume`` ends with the same particles, log-densities and maps, bit for
bit, as the uninterrupted run (one thread, as the root conftest sets)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from _cli_run import fit_interrupted_at, run_cli, write_spec
from jkoflow import checkpoint
from jkoflow.solver import JKOSolver

TINY = """
seed = 3
[problem]
kind = "heat"
n = 50
[potential]
kind = "ficnn"
widths = [8, 8]
[solver]
tau = 0.05
steps = 4
inner_iters = 20
"""

# stochastic log-det probes (torch's global generator) and a fresh net every step (its
# initialization draws from the global generator too): resume must restore that generator
STOCHASTIC = TINY.replace(
    "inner_iters = 20", 'inner_iters = 20\nwarm_start = false\nlogdet = { kind = "hutchinson_cg" }'
)


def _spec(tmp_path: Path, text: str = TINY) -> Path:
    return write_spec(tmp_path, text)


_run = run_cli


def _assert_same_run(a: Path, b: Path) -> None:
    """Particles, log-densities, times and every map's parameters identical (torch.equal)."""
    with np.load(a / "particles.npz") as pa, np.load(b / "particles.npz") as pb:
        assert sorted(pa.files) == sorted(pb.files)
        for key in pa.files:
            assert torch.equal(torch.from_numpy(pa[key]), torch.from_numpy(pb[key])), key
    ma = torch.load(a / "maps.pt", weights_only=True)["state_dicts"]
    mb = torch.load(b / "maps.pt", weights_only=True)["state_dicts"]
    assert len(ma) == len(mb)
    for sa, sb in zip(ma, mb):
        assert sa.keys() == sb.keys()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    fa = [r["F"] for r in json.loads((a / "metrics.json").read_text())]
    fb = [r["F"] for r in json.loads((b / "metrics.json").read_text())]
    assert fa == fb


KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from jkoflow import cli, files
    from jkoflow.solver import JKOSolver

    how, k = sys.argv[1], int(sys.argv[2])
    fit, replace = JKOSolver._fit, os.replace
    calls = [0]

    def fit_then_kill(self, *args, **kwargs):
        calls[0] += 1
        if how == "mid-step" and calls[0] == k + 1:
            os.kill(os.getpid(), signal.SIGKILL)  # step k+1 has begun: nothing of it is on disk
        return fit(self, *args, **kwargs)

    def replace_then_kill(src, dst):
        if how == "mid-write" and str(dst).endswith(f"{k + 1:06d}.pt"):
            os.kill(os.getpid(), signal.SIGKILL)  # step k+1's checkpoint is written, not renamed
        return replace(src, dst)

    JKOSolver._fit = fit_then_kill
    files.os.replace = replace_then_kill
    sys.exit(cli.main(["--threads", "1", "run", sys.argv[3], "--out", sys.argv[4], "--no-progress"]))
    """
)


def _kill_run(spec: Path, out: Path, how: str, k: int) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", KILLER, how, str(k), str(spec), str(out)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr


@pytest.mark.parametrize(
    ("text", "how", "k"),
    [
        pytest.param(TINY, "mid-step", 2, id="exact-mid-step-3", marks=pytest.mark.slow),
        pytest.param(STOCHASTIC, "mid-write", 1, id="stochastic-mid-write-2", marks=pytest.mark.slow),
        pytest.param(TINY, "mid-step", 0, id="exact-mid-step-1", marks=pytest.mark.slow),
    ],
)
def test_sigkill_then_resume_is_bit_identical(tmp_path: Path, text: str, how: str, k: int) -> None:
    spec = _spec(tmp_path, text)
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    assert _run("run", str(spec), "--out", str(ref)) == 0
    _kill_run(spec, killed, how, k)
    # what the kill left: the checkpoints of steps 0..k, no final files, status "running"
    names = sorted(p.name for p in (killed / "steps").iterdir() if not p.name.startswith("."))
    assert names == [f"{i:06d}.pt" for i in range(k + 1)]
    temporaries = [p.name for p in (killed / "steps").iterdir() if p.name.startswith(".")]
    assert len(temporaries) == (how == "mid-write")  # the checkpoint the kill cut short
    assert not (killed / "particles.npz").exists()
    record = json.loads((killed / "run.json").read_text())
    assert record["status"] == "running" and record["steps_done"] == k  # current after every step
    assert len(json.loads((killed / "metrics.json").read_text())) == k + 1
    assert _run("resume", str(killed)) == 0
    _assert_same_run(ref, killed)
    record = json.loads((killed / "run.json").read_text())
    assert record["status"] == "complete" and record["steps_done"] == 4
    assert [s["command"] for s in record["sessions"]] == ["run", "resume"]
    assert record["sessions"][1]["first_step"] == k + 1
    assert not [p for p in (killed / "steps").iterdir() if p.name.startswith(".")]  # temporaries removed


@pytest.mark.parametrize("how", ["sigint", "sigterm"])
def test_sigint_and_sigterm_leave_a_resumable_directory(
    how: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = _spec(tmp_path)
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    assert _run("run", str(spec), "--out", str(ref)) == 0
    with monkeypatch.context() as m:
        m.setattr(JKOSolver, "_fit", fit_interrupted_at(3, how))
        assert _run("run", str(spec), "--out", str(cut)) == 130
    err = capsys.readouterr().err
    assert f"the 2 completed steps are in {cut}" in err and f"jkoflow resume {cut}" in err
    with np.load(cut / "particles.npz") as saved:
        assert saved["x"].shape[0] == 3  # "results so far are in DIR" is true
    assert json.loads((cut / "run.json").read_text())["status"] == "interrupted"
    assert _run("resume", str(cut)) == 0
    _assert_same_run(ref, cut)


def test_resume_steps_extends_a_finished_run(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    ref, short = tmp_path / "ref", tmp_path / "short"
    assert _run("run", str(spec), "--out", str(ref)) == 0
    assert _run("run", str(spec), "--steps", "2", "--out", str(short)) == 0
    assert _run("resume", str(short), "--steps", "4") == 0
    _assert_same_run(ref, short)
    assert "steps = 4" in (short / "spec.toml").read_text()  # the spec now repeats the whole run


def test_resume_refuses_fewer_steps_an_edited_spec_and_a_foreign_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = _spec(tmp_path)
    out = tmp_path / "run"
    assert _run("run", str(spec), "--steps", "2", "--out", str(out)) == 0
    capsys.readouterr()
    assert _run("resume", str(out), "--steps", "1") == 2
    assert "already has 2 complete steps; expected N >= 2" in capsys.readouterr().err
    text = (out / "spec.toml").read_text()
    (out / "spec.toml").write_text(text.replace("lr = 0.01", "lr = 0.02"))
    assert _run("resume", str(out), "--steps", "3") == 2
    assert "holds a run of another spec: it differs at solver.lr" in capsys.readouterr().err
    (out / "spec.toml").write_text(text)
    # a checkpoint that would unpickle code is refused (weights_only=True), naming the file
    bad = out / "steps" / "000001.pt"
    torch.save({"format": 1, "index": 1, "evil": _Evil()}, bad)
    assert _run("resume", str(out), "--steps", "3") == 2
    assert f"checkpoint {bad} cannot be read" in capsys.readouterr().err
    assert not (tmp_path / "pwned").exists()


class _Evil:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, ("touch pwned",))


def test_whole_step_entry_skips_a_split_step() -> None:
    """Entries inside a step split into substeps are not a place to resume from."""

    def entry(index: int, t: float | None) -> dict[str, object]:
        return {"index": index, "tau": 0.1, "record": None if t is None else {"t": t}}

    ckpt = checkpoint.Checkpoint([entry(0, None), entry(1, 0.1), entry(2, 0.15), entry(3, 0.175)])
    assert ckpt.whole_step_entry() == 1
    ckpt.entries.append(entry(4, 0.2))
    assert ckpt.whole_step_entry() == 4
    assert checkpoint.whole_steps(0.30000000000000004, 0.1) == 3


def test_checkpoints_hold_plain_data(tmp_path: Path) -> None:
    """Every checkpoint of a run loads with weights_only=True and holds plain data only."""
    out = tmp_path / "run"
    assert _run("run", str(_spec(tmp_path)), "--steps", "1", "--out", str(out)) == 0
    for path in sorted((out / "steps").glob("*.pt")):
        blob = torch.load(path, weights_only=True)
        assert set(blob) >= {"x", "log_density", "state_dict", "record", "metrics", "rng_state"}


def test_a_signal_during_a_checkpoint_write_waits_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """SIGINT and SIGTERM are held while a step's checkpoint and metrics are written: the step
    is kept whole, then the run stops (130) and resumes to the uninterrupted result."""
    from jkoflow import runner

    spec = _spec(tmp_path)
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    assert _run("run", str(spec), "--out", str(ref)) == 0
    write = runner.checkpoint.write_entry

    def signal_then_write(directory, flow, index, *args, **kwargs):  # type: ignore[no-untyped-def]
        if index == 2:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGTERM)
        return write(directory, flow, index, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(runner.checkpoint, "write_entry", signal_then_write)
        assert _run("run", str(spec), "--out", str(cut)) == 130
    assert "the 2 completed steps are in" in capsys.readouterr().err
    assert len(json.loads((cut / "metrics.json").read_text())) == 3  # steps 0, 1, 2: written whole
    assert sorted(p.name for p in (cut / "steps").iterdir()) == [f"{i:06d}.pt" for i in range(3)]
    assert _run("resume", str(cut)) == 0
    _assert_same_run(ref, cut)
