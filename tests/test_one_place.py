"""One place per concept: every built-in sampler in ``plugins/samplers.py``, every metric in
``jkoflow.metrics``, one ULA (``jkoflow.baselines.ula``), the convexity sweep in
``jkoflow.convexity`` (no hypothesis at run time); the old import paths still work."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from jkoflow.registry import Registry, default_registry

SAMPLERS = ("gaussian", "barenblatt", "gaussian-stratified")


# --- samplers ------------------------------------------------------------------------------
def test_every_builtin_sampler_is_registered_from_plugins_samplers() -> None:
    registry = default_registry()
    for name in SAMPLERS:
        assert registry.entry("sampler", name).factory.__module__ == "jkoflow.plugins.samplers", name
    builtin = [
        name
        for name in registry.names("sampler")
        if registry.entry("sampler", name).factory.__module__.startswith("jkoflow.plugins.")
    ]
    assert sorted(builtin) == sorted(SAMPLERS)


def test_samplers_module_alone_registers_all_three_and_the_problem_modules_none() -> None:
    from jkoflow.plugins import problems, problems_pde, samplers

    alone = Registry()
    alone.register(samplers)
    assert alone.names("sampler") == sorted(SAMPLERS)
    for module in (problems, problems_pde):
        other = Registry()
        other.register(module)
        assert other.names("sampler") == [], module.__name__


def test_old_sampler_import_paths_still_work() -> None:
    from jkoflow.plugins import problems, problems_pde, samplers

    assert problems.BarenblattSampler is samplers.BarenblattSampler
    assert problems_pde.StratifiedGaussian is samplers.StratifiedGaussian


# --- metrics -------------------------------------------------------------------------------
def test_gaussian_metrics_live_in_jkoflow_metrics_and_are_re_exported() -> None:
    from jkoflow import metrics
    from jkoflow.plugins import problems_gaussian

    for name in (
        "bures_wasserstein",
        "sample_cov",
        "relative_frobenius",
        "nearest_neighbour_distances",
        "sqrtm_psd",
    ):
        fn = getattr(metrics, name)
        assert fn.__module__ == "jkoflow.metrics", name
        assert getattr(problems_gaussian, name) is fn, name
    x = np.random.default_rng(0).standard_normal((50, 3))
    assert metrics.relative_frobenius(metrics.sample_cov(x), np.cov(x.T)) == pytest.approx(0.0, abs=1e-15)
    assert metrics.nearest_neighbour_distances(np.array([[0.0], [1.0], [3.0]])).tolist() == [1.0, 1.0, 2.0]


# --- one ULA -------------------------------------------------------------------------------
A = np.array([[1.0, 0.3], [0.3, 0.6]])
MU = np.array([0.5, -0.25])
# the particles at t = 0.2 of the removed quadratic ULA of problems_gaussian (the loop
# ``x = x - h * (x - mu) @ B + sqrt(2h) * noise``), computed before it was replaced
REMOVED_ULA_AT_0_2 = [
    [1.2769776616436943, -0.47644359800946245],
    [-1.484587397712467, 0.7346414934661312],
    [-0.3495585062525532, -1.1082164920136566],
    [0.02764139471354317, 0.19010785165783833],
]


def _x0() -> torch.Tensor:
    return torch.randn(4, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def test_gaussian_ula_reproduces_the_removed_implementation() -> None:
    from jkoflow.plugins.problems_gaussian import ula

    out = ula(_x0(), A, MU, 0.01, [0.05, 0.05, 0.2], torch.Generator().manual_seed(1))
    assert len(out) == 3 and torch.equal(out[0], out[1])
    assert torch.equal(out[-1], torch.tensor(REMOVED_ULA_AT_0_2, dtype=torch.float64))


def test_gaussian_ula_is_the_generic_one_with_the_closed_form_gradient() -> None:
    from jkoflow.baselines import ula as generic
    from jkoflow.plugins.problems_gaussian import ula

    B, mu = 2 * torch.as_tensor(A), torch.as_tensor(MU)
    (x,) = ula(_x0(), A, MU, 0.01, [0.2], torch.Generator().manual_seed(1))
    closed = generic(None, _x0(), 0.01, 20, torch.Generator().manual_seed(1), grad_V=lambda z: (z - mu) @ B)
    assert torch.equal(x, closed[-1])
    # autograd through V = (x - mu)^T A (x - mu) agrees up to rounding
    V = lambda z: (((z - mu) @ torch.as_tensor(A)) * (z - mu)).sum(-1)
    auto = generic(V, _x0(), 0.01, 20, torch.Generator().manual_seed(1), record_every=5)
    assert len(auto) == 5
    torch.testing.assert_close(auto[-1], x, rtol=1e-13, atol=1e-13)
    with pytest.raises(ValueError, match="V or its gradient"):
        generic(None, _x0(), 0.01, 1)


# --- convexity: no hypothesis at run time ---------------------------------------------------
RUNTIME_CHECK = """
import sys, warnings, torch
import jkoflow.plugins.energies as e
def double_well(x):
    return (x.pow(2).sum(-1) - 1) ** 2
x = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
with warnings.catch_warnings(record=True) as rec:
    warnings.simplefilter("always")
    v = e.potential(double_well, check_convexity=True)
    v.start(x)
    w = e.interaction("aggregation", check_convexity=True)
    w.start(x)
    q = e.potential("quadratic", check_convexity=True)
    q.start(x)
messages = [str(r.message) for r in rec if issubclass(r.category, e.ConvexityWarning)]
assert len(messages) == 2, messages
assert "potential V 'double_well' is not convex" in messages[0] and "z=[" in messages[0], messages[0]
assert "kernel W 'aggregation' is not convex" in messages[1], messages[1]
assert v.convexity.counterexample.kind == "hessian" and q.convexity.counterexample is None
print(sorted(m for m in ("hypothesis", "pytest", "jkoflow.testing") if m in sys.modules))
"""


def test_check_convexity_never_imports_hypothesis_or_pytest() -> None:
    done = subprocess.run(
        [sys.executable, "-c", RUNTIME_CHECK], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout


def test_convexity_lives_in_jkoflow_convexity_and_is_re_exported() -> None:
    import jkoflow.testing.convexity as old
    from jkoflow import convexity

    for name in convexity.__all__:
        assert getattr(old, name) is getattr(convexity, name), name
    assert convexity.sweep_convexity.__module__ == "jkoflow.convexity"


def test_check_convexity_names_a_function_of_the_wrong_shape() -> None:
    from jkoflow.plugins.energies import potential

    term = potential(lambda x: x, check_convexity=True)
    with pytest.raises(ValueError, match="check_convexity: potential V .*returned"):
        term.start(torch.randn(8, 2))
