"""Every spec in examples/ resolves, builds and runs a step with the installed plugins."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import jkoflow
import pytest
import torch
from jkoflow import spec as specmod

EXAMPLES_DIR = Path(__file__).parent.parent / "examples"
EXAMPLES = sorted(EXAMPLES_DIR.glob("*.toml"))
EXPECTED = {"fokker_planck_porous.toml", "porous_medium.toml"}


def test_examples_are_the_documented_ones() -> None:
    """A new or removed example must be listed here (and so gets built and run below)."""
    assert {p.name for p in EXAMPLES} == EXPECTED


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_spec_resolves_to_its_own_settings(path: Path) -> None:
    raw = specmod.load(path)
    resolved = jkoflow.resolve(raw)
    for key, value in raw["solver"].items():
        if key != "logdet":
            assert resolved["solver"][key] == value, key
    table = "sampler" if "sampler" in raw else "problem"
    assert resolved[table]["n"] == raw[table]["n"]


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_builds_and_runs_one_step(path: Path) -> None:
    """The example as written, shrunk to 32 particles, one JKO step of 2 inner iterations
    (measured: 1.3 s for the first, most of it one-time set-up; 0.03 s for the second)."""
    spec = copy.deepcopy(specmod.load(path))
    spec["solver"].update(steps=1, inner_iters=2)
    spec["sampler" if "sampler" in spec else "problem"]["n"] = 32
    run = jkoflow.build(spec)
    dim = run.x0.shape[1]
    assert run.x0.shape == (32, dim)
    flow = run.execute()
    assert flow.steps == 1 and len(flow.particles) == 2
    x1 = flow.particles[-1]
    assert x1.shape == (32, dim) and bool(torch.isfinite(x1).all())
    assert float((x1 - flow.particles[0]).abs().max()) > 0  # the step moved the particles
    assert flow.records[-1].F is not None and math.isfinite(flow.records[-1].F)
    if run.problem is not None:  # problems report their exact-solution metrics
        metrics = run.problem_metrics(flow)
        assert metrics and all(math.isfinite(v) for v in metrics.values()), metrics
