"""Tests of the example plugin, written the way a plugin author would: with jkoflow.testing.

Run after installing the package: ``pip install ./contrib/example-plugin`` then
``pytest contrib/example-plugin/tests``. Skipped when the package is not installed.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import pytest

jkoflow_example = pytest.importorskip("jkoflow_example", reason="pip install ./contrib/example-plugin first")

import jkoflow
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from jkoflow.testing import (
    ConvexityError,
    assert_convex,
    assert_strongly_convex,
    assert_valid_divergence,
    assert_valid_functional,
    assert_valid_potential_fn,
    assert_valid_potential_net,
)
from jkoflow.testing.strategies import clouds
from jkoflow_example import DoubleWell, DoubleWellEnergy, EnergyDistance, QuadSoftplus

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_registered_through_the_entry_point() -> None:
    listing = jkoflow.default_registry().listing()
    assert listing["functional"]["double_well"] == "jkoflow-example-plugin"
    assert listing["potential_fn"]["double_well"] == "jkoflow-example-plugin"
    assert listing["net"]["quad_softplus"] == "jkoflow-example-plugin"
    assert listing["divergence"]["energy_distance"] == "jkoflow-example-plugin"


# --- the potential net ------------------------------------------------------------------
@pytest.mark.parametrize("dim", [1, 2, 3])
def test_quad_softplus_is_a_valid_potential_net(dim: int) -> None:
    torch.manual_seed(dim)
    assert_valid_potential_net(QuadSoftplus(dim, ridges=8, init_scale=1.0))


@given(seed=st.integers(0, 2**16), scale=st.floats(-5.0, 5.0))
@settings(max_examples=10, deadline=None)
def test_quad_softplus_is_strongly_convex_for_any_parameters(seed: int, scale: float) -> None:
    """Convex by reparametrization: random parameters of any size keep alpha-strong convexity."""
    torch.manual_seed(seed)
    net = QuadSoftplus(2, ridges=4, alpha=0.1).double()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn_like(p) * math.exp(scale))
    assert_strongly_convex(net, 0.1, max_examples=20)


def test_quad_softplus_starts_at_the_identity_map() -> None:
    x = torch.randn(20, 3)
    assert torch.allclose(QuadSoftplus(3).transport(x, create_graph=False), x, atol=2e-2)


# --- the double well --------------------------------------------------------------------
def test_double_well_functional_gradient_matches_its_value() -> None:
    assert_valid_functional(DoubleWellEnergy(a=1.5, height=2.0), dim=2)
    assert_valid_potential_fn(DoubleWell(), dim=3)


def test_double_well_is_caught_as_non_convex_with_a_real_counterexample() -> None:
    V = DoubleWell(a=1.0, height=1.0)
    with pytest.raises(ConvexityError) as info:
        assert_convex(V, dim=1, bounds=2.0)
    ce = info.value.counterexample
    z = torch.tensor([ce.z], dtype=torch.float64)
    if ce.kind == "jensen":  # recompute Jensen independently at the reported points
        x, y = torch.tensor([ce.x], dtype=torch.float64), torch.tensor([ce.y], dtype=torch.float64)
        assert float(V(z)) > ce.t * float(V(x)) + (1 - ce.t) * float(V(y))
    else:  # V''(z) = 4 (3 z^2 - 1) < 0 for |z| < 1/sqrt(3)
        assert abs(ce.z[0]) < 1 / math.sqrt(3)


def test_double_well_is_convex_outside_its_barrier() -> None:
    """V''(x) = 4 (3x^2 - 1) >= 0 for x >= 1/sqrt(3): the check must not raise there."""
    assert_convex(DoubleWell(), dim=1, bounds=([0.6], [3.0]))


# --- energy distance --------------------------------------------------------------------
def test_energy_distance_passes_the_divergence_contract() -> None:
    assert_valid_divergence(EnergyDistance(), dim=2)
    assert_valid_divergence(EnergyDistance(), dim=1)


@given(
    x=clouds(1, min_size=1, max_size=6, degenerate=False),
    y=clouds(1, min_size=1, max_size=6, degenerate=False),
)
@settings(max_examples=30, deadline=None)
def test_energy_distance_in_1d_is_twice_the_l2_distance_of_cdfs(x: torch.Tensor, y: torch.Tensor) -> None:
    """In d = 1, ED(alpha, beta) = 2 int (F_alpha(t) - F_beta(t))^2 dt (Szekely): an exact,
    independent formula through the empirical CDFs."""
    grid, _ = torch.sort(torch.cat([x[:, 0], y[:, 0]]))
    cdf = lambda pts, t: (pts[:, 0][None, :] <= t[:, None]).double().mean(1)
    widths = grid[1:] - grid[:-1]
    exact = 2 * float(((cdf(x, grid[:-1]) - cdf(y, grid[:-1])) ** 2 * widths).sum())
    assert float(EnergyDistance()(x, y)) == pytest.approx(
        exact, rel=1e-9, abs=1e-12 * float(grid.abs().max() + 1)
    )


# --- using it by name from a spec -------------------------------------------------------
def test_example_spec_runs_by_name() -> None:
    spec = jkoflow.load(EXAMPLES / "double_well.toml")
    spec["solver"].update(steps=2, inner_iters=20)
    spec["sampler"]["n"] = 64
    run = jkoflow.build(spec)
    assert isinstance(run.make_potential(), QuadSoftplus)
    flow = run.execute()
    assert flow.steps == 2
    assert all(math.isfinite(r.F) for r in flow.records)


def test_convexity_check_spec_warns_with_a_counterexample() -> None:
    spec = jkoflow.load(EXAMPLES / "convexity_check.toml")
    spec["solver"].update(steps=1, inner_iters=5)
    spec["sampler"]["n"] = 64
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        jkoflow.build(spec).execute()
    messages = [str(w.message) for w in caught if "not convex" in str(w.message)]
    assert len(messages) == 1 and "double_well" in messages[0], messages
