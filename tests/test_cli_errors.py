"""``jkoflow`` maps errors to one line on stderr and an exit code; ``--debug`` re-raises."""

from __future__ import annotations

from pathlib import Path

import jkoflow
import jkoflow.spec
import pytest
import tomli_w
from jkoflow.cli import main

TINY = {
    "dim": 1,
    "sampler": {"kind": "gaussian", "n": 10},
    "solver": {"tau": 0.1, "steps": 1, "inner_iters": 2},
    "terms": [{"kind": "potential", "V": {"kind": "quadratic"}}],
}


def _spec(tmp_path: Path, spec: dict[str, object], name: str = "spec.toml") -> Path:
    path = tmp_path / name
    path.write_text(tomli_w.dumps(spec))
    return path


def _one_line(err: str) -> str:
    """The single stderr line; fails if there are more, or a traceback."""
    text = err.strip()
    assert text, "nothing on stderr"
    assert "\n" not in text, text
    assert "Traceback" not in text, text
    return text


def _run(*args: str, out: Path) -> int:
    return main(["run", *args, "--out", str(out), "--no-progress"])


@pytest.fixture
def out(tmp_path: Path) -> Path:
    return tmp_path / "out"


# --- spec files -----------------------------------------------------------------------------
def test_missing_spec_file(tmp_path: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing.toml"
    assert _run(str(missing), out=out) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("jkoflow run: ") and str(missing) in line and "does not exist" in line
    assert not out.exists()


def test_directory_named_like_a_spec(tmp_path: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = tmp_path / "x.toml"
    directory.mkdir()
    assert _run(str(directory), out=out) == 2
    line = _one_line(capsys.readouterr().err)
    assert str(directory) in line and "directory" in line


def test_binary_spec_file(tmp_path: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> None:
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe" + bytes(range(256)))
    assert _run(str(binary), out=out) == 2
    line = _one_line(capsys.readouterr().err)
    assert str(binary) in line


def test_malformed_toml(tmp_path: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('problem = "heat"\n[solver\nsteps = 1\n')
    assert _run(str(bad), out=out) == 2
    line = _one_line(capsys.readouterr().err)
    assert str(bad) in line and "not valid TOML" in line


def test_unknown_V_kind(tmp_path: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = {**TINY, "terms": [{"kind": "potential", "V": {"kind": "nope"}}]}
    assert _run(str(_spec(tmp_path, spec)), out=out) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("jkoflow run: ") and "'nope'" in line
    assert not out.exists()  # nothing is left behind for a spec that does not build


def test_unknown_top_level_key(tmp_path: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(str(_spec(tmp_path, {**TINY, "bogus": 1})), out=out) == 2
    line = _one_line(capsys.readouterr().err)
    assert "bogus" in line and "unknown top-level key" in line


def test_unknown_problem_name(out: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run("no-such-problem", out=out) == 2
    line = _one_line(capsys.readouterr().err)
    assert "'no-such-problem'" in line and "neither a spec file nor a problem" in line


def test_debug_reraises_the_spec_error(tmp_path: Path, out: Path) -> None:
    missing = str(tmp_path / "missing.toml")
    with pytest.raises(jkoflow.spec.SpecError, match="does not exist"):
        main(["--debug", "run", missing, "--out", str(out), "--no-progress"])
    with pytest.raises(jkoflow.spec.SpecError, match="does not exist"):  # also after ``run``
        main(["run", missing, "--debug", "--out", str(out), "--no-progress"])


# --- numbers --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "argv, value",
    [
        (["--threads", "-1", "plugins"], "'-1'"),
        (["--threads", "0", "plugins"], "'0'"),
        (["--threads", "x", "plugins"], "'x'"),
        (["run", "--steps", "0"], "'0'"),
        (["run", "--steps", "-3"], "'-3'"),
    ],
)
def test_bad_numbers_are_argparse_errors(
    argv: list[str], value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]  # after the usage lines
    assert "error:" in error and value in error and "expected a positive integer" in error


# --- the output directory -------------------------------------------------------------------
def test_out_is_an_existing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "file"
    path.write_text("keep me")
    assert _run(str(_spec(tmp_path, TINY)), out=path) == 2
    line = _one_line(capsys.readouterr().err)
    assert str(path) in line and "existing file" in line
    assert path.read_text() == "keep me"


def test_out_cannot_be_created(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = Path("/proc/jkoflow-test")
    assert _run(str(_spec(tmp_path, TINY)), out=path) == 2
    line = _one_line(capsys.readouterr().err)
    assert str(path) in line and "cannot be created" in line


def test_out_is_not_writable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # a read-only directory does not stop root, so the probe is made to fail as it would
    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(tmp_path / "out"))

    monkeypatch.setattr("tempfile.NamedTemporaryFile", refuse)
    path = tmp_path / "out" / "run"
    assert _run(str(_spec(tmp_path, TINY)), out=path) == 2
    line = _one_line(capsys.readouterr().err)
    assert str(path) in line and "not writable" in line and "Permission denied" in line
    assert not (tmp_path / "out").exists()  # the directories made for the probe are removed


# --- other commands -------------------------------------------------------------------------
def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == f"jkoflow {jkoflow.__version__}"
    assert captured.err == ""


def test_bench_without_a_suite(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "no suite" in line and "pde" in line  # and "molecules" where its extra is installed


# --- failures during the run ----------------------------------------------------------------
def test_unexpected_error_in_the_run_exits_1(
    tmp_path: Path, out: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def boom(self: object, *args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(jkoflow.spec.Run, "execute", boom)
    assert _run(str(_spec(tmp_path, TINY)), out=out) == 1
    line = _one_line(capsys.readouterr().err)
    assert "RuntimeError: boom" in line and "--debug" in line
    with pytest.raises(RuntimeError, match="boom"):
        main(["--debug", "run", str(_spec(tmp_path, TINY)), "--out", str(out), "--no-progress"])


def test_interrupt_while_loading_plugins(
    out: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted() -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("jkoflow.cli.default_registry", interrupted)
    assert _run("heat", out=out) == 130
    assert _one_line(capsys.readouterr().err) == "jkoflow run: interrupted"


def test_tiny_spec_runs(tmp_path: Path, out: Path) -> None:
    """The spec the error tests vary is itself valid."""
    assert _run(str(_spec(tmp_path, TINY)), "--allow-import", "math", out=out) == 0
    assert (out / "metrics.json").is_file()


def test_an_unexpected_error_after_a_step_keeps_the_completed_steps(
    tmp_path: Path, out: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import numpy as np

    execute = jkoflow.spec.Run.execute

    def fails_after_step_1(self: jkoflow.spec.Run, progress: bool = False, callback=None):
        def on_step(flow: jkoflow.Flow) -> None:
            callback(flow)
            if flow.steps == 1:
                raise RuntimeError("boom after step 1")

        return execute(self, progress, on_step)

    monkeypatch.setattr(jkoflow.spec.Run, "execute", fails_after_step_1)
    assert _run(str(_spec(tmp_path, TINY)), "--steps", "3", out=out) == 1
    line = _one_line(capsys.readouterr().err.splitlines()[-1])
    assert "RuntimeError: boom after step 1" in line and "1 completed steps" in line
    with np.load(out / "particles.npz") as saved:
        assert saved["x"].shape[0] == 2  # steps 0 and 1
    assert (out / "maps.pt").exists() and (out / "metrics.json").exists()
