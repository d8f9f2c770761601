"""One validation pass before any work: every bad setting is a SpecError naming the key path,
the value and what was expected, raised before the particles are drawn; shapes are checked
against the dimension; a run that cannot fit in memory is refused with its estimate."""

from __future__ import annotations

import copy
import math
import warnings

import pytest
import torch
from jkoflow import budget
from jkoflow import spec as specmod

BASE = {
    "dim": 1,
    "sampler": {"kind": "gaussian", "n": 10},
    "solver": {"tau": 0.1, "steps": 1, "inner_iters": 2},
    "terms": [{"kind": "entropy"}],
}


def _with(path: str, value: object) -> dict:
    spec = copy.deepcopy(BASE)
    *parents, last = path.split(".")
    node = spec
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return spec


QUAD = lambda **v: [{"kind": "potential", "V": {"kind": "quadratic", **v}}]

CASES = [
    # (spec, key path the error names, a fragment of the message)
    (
        _with("terms", QUAD(center=[0.0, 1.0, 2.0])),
        "terms[0]",
        "center of shape (3,) for particles of dimension 1",
    ),
    (_with("terms", QUAD(matrix=[[1.0, 0.0], [0.0, 1.0]])), "terms[0]", "matrix of shape (2, 2)"),
    (
        _with("terms", [{"kind": "potential", "V": {"kind": "nope"}}]),
        "terms[0]",
        "unknown potential_fn 'nope'",
    ),
    (_with("dtype", ["float32"]), "dtype", "expected one of: float32, float64"),
    (_with("potential.init_scale", math.nan), "potential.init_scale", "expected finite numbers"),
    (_with("sampler.std", math.inf), "sampler.std", "expected finite numbers"),
    (_with("sampler.mean", [0.0, 1.0, 2.0]), "sampler", "expected a number or a list of 1 (dim) numbers"),
    (
        _with("terms", [{"kind": "entropy", "weight": math.nan}]),
        "terms[0].weight",
        "expected a finite number",
    ),
    (_with("solver.lr", math.inf), "solver.lr", "expected finite numbers"),
    (_with("solver.tau", math.inf), "solver.tau", "expected finite numbers"),
    (_with("solver.steps", True), "solver.steps", "got True (bool); expected int"),
    (_with("solver.max_lr_drops", -1), "solver", "max_lr_drops=-1"),
    (_with("seed", 2**80), "seed", "expected an integer in [0, 2^63)"),
    (_with("sampler.n", 10**12), "sampler.n", "this run needs at least"),
    (_with("dim", 10**12), "dim", "this run needs at least"),
    (_with("potential.widths", [10**12]), "potential.widths", "this run needs at least"),
    (_with("solver.steps", 10**12), "solver.steps", "this run needs at least"),
    (
        _with("terms", [{"kind": "interaction"}]) | {"sampler": {"kind": "gaussian", "n": 1}},
        "",
        "2 particles",
    ),
    (
        _with("solver.fresh_samples", 10)
        | {"solver": {"tau": 0.1, "steps": 1, "inner_iters": 0, "fresh_samples": 10}},
        "solver",
        "inner_iters >= 1",
    ),
]


@pytest.mark.parametrize(
    ("spec", "path", "fragment"), CASES, ids=[f"{c[1] or 'run'}-{i}" for i, c in enumerate(CASES)]
)
def test_a_bad_setting_is_a_spec_error_naming_its_key(spec: dict, path: str, fragment: str) -> None:
    with pytest.raises(specmod.SpecError) as info:
        specmod.build(spec)
    assert fragment in str(info.value), str(info.value)
    if path:
        assert info.value.path == path, str(info.value)


def test_the_memory_estimate_counts_the_snapshots_the_flow_keeps() -> None:
    resolved = specmod.resolve(_with("sampler.n", 1000) | {"dim": 4} | {"solver": {"tau": 0.1, "steps": 9}})
    parts = budget.estimate(resolved, needs_logdet=True)
    snapshots = next(p for p in parts if "snapshot" in p.formula)
    assert snapshots.nbytes == 10 * 1000 * 5 * 4  # (steps + 1) n (d + 1) float32 bytes
    hessians = next(p for p in parts if "Hessians" in p.formula)
    assert hessians.nbytes == 4 * 1000 * 16 * 4
    with pytest.raises(specmod.SpecError, match="this machine has 0.0001 GiB"):
        budget.check(resolved, needs_logdet=True, limit=2**30 // 10000)


def test_a_negative_weight_warns() -> None:
    with pytest.warns(specmod.SpecWarning, match=r"terms\[0\].weight = -1 < 0"):
        specmod.resolve(_with("terms", [{"kind": "entropy", "weight": -1.0}]))


def test_the_default_specs_stay_silent_and_valid() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", specmod.SpecWarning)
        for problem in ("heat", "porous-medium", "aggregation", "fokker-planck-gaussian"):
            specmod.build({"problem": problem})


def test_a_sampler_that_returns_nan_log_densities_is_a_spec_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from jkoflow.plugins import samplers

    def nan_sample(self, n, generator):
        x = torch.randn(n, self.dim, generator=generator)
        return x, torch.full((n,), float("nan"))

    monkeypatch.setattr(samplers.Gaussian, "sample", nan_sample)
    with pytest.raises(
        specmod.SpecError, match="sampler 'gaussian' returned 10 of 10 non-finite log-densities"
    ):
        specmod.build(BASE)
