"""The spec key ``device`` and ``jkoflow run --device`` (issue 11, item 7). Only the CPU path runs
here; on a machine without CUDA a CUDA device is refused before any work, naming why."""

from __future__ import annotations

import jkoflow
import pytest
import torch
from jkoflow.params import SpecError

SPEC = {"problem": {"kind": "heat", "n": 20}, "solver": {"steps": 1, "inner_iters": 3}}


def test_cpu_device_puts_particles_and_nets_on_the_cpu_and_is_recorded() -> None:
    run = jkoflow.build({**SPEC, "device": "cpu"})
    assert run.x0.device.type == "cpu"
    assert all(p.device.type == "cpu" for p in run.make_potential().parameters())
    assert run.spec["device"] == "cpu"
    assert jkoflow.build(SPEC).spec["device"] == "cpu"  # the default, written into spec.toml


@pytest.mark.parametrize(
    ("device", "match"),
    [
        ("tpu", "expected a torch device|expected 'cpu'"),
        (3, "expected a string"),
        ("cuda:x", "expected a torch device"),
    ],
)
def test_bad_devices_are_refused_naming_the_value(device: object, match: str) -> None:
    with pytest.raises(SpecError, match=match) as info:
        jkoflow.build({**SPEC, "device": device})
    assert "device" in str(info.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_refused_before_any_work(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SpecError, match=r"torch.cuda.is_available\(\) is False"):
        jkoflow.build({**SPEC, "device": "cuda"})
    from jkoflow.cli import main

    out = tmp_path / "run"
    assert main(["run", "heat", "--device", "cuda", "--out", str(out), "--no-progress"]) == 2
    assert "is_available() is False" in capsys.readouterr().err
    assert not (out / "particles.npz").exists()
