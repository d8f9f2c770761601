"""Built-in divergences against independent computations, and the divergence_to_start term."""

from __future__ import annotations

import math

import jkoflow
import numpy as np
import pytest
import torch
from jkoflow.registry import default_registry


@pytest.fixture(params=["sinkhorn", "mmd", "w2"])
def divergence(request: pytest.FixtureRequest) -> jkoflow.Divergence:
    return default_registry().get("divergence", request.param)()


def test_zero_on_identical_and_positive_on_different_clouds(divergence: jkoflow.Divergence) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(60, 3, generator=g, dtype=torch.float64)
    assert float(divergence(x, x.clone())) == pytest.approx(0.0, abs=1e-6)
    assert float(divergence(x, x + 1.0)) > 1e-3
    single = torch.zeros(1, 3, dtype=torch.float64)
    assert math.isfinite(float(divergence(single, single)))
    assert math.isfinite(float(divergence(torch.cat([x, x]), x)))


def test_w2_of_a_translation_is_the_squared_shift() -> None:
    x = torch.randn(40, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    shift = torch.tensor([0.3, -0.4], dtype=torch.float64)
    w2 = default_registry().get("divergence", "w2")()
    assert float(w2(x, x + shift)) == pytest.approx(0.25, rel=1e-9)


def test_mmd_matches_the_kernel_formula() -> None:
    g = torch.Generator().manual_seed(2)
    x, y = (
        torch.randn(30, 2, generator=g, dtype=torch.float64),
        torch.randn(20, 2, generator=g, dtype=torch.float64) + 0.5,
    )
    sigma = 0.7
    k = lambda a, b: torch.exp(-torch.cdist(a, b).pow(2) / (2 * sigma**2))
    expected = k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean()
    mmd = default_registry().get("divergence", "mmd")(sigma=sigma)
    # geomloss' "gaussian" loss is half the squared MMD
    assert float(mmd(x, y)) == pytest.approx(0.5 * float(expected), rel=1e-6)


def test_sinkhorn_approaches_w2_half_for_small_blur() -> None:
    """With cost |x-y|^2/2 the debiased Sinkhorn divergence tends to W_2^2 / 2 as blur -> 0."""
    g = torch.Generator().manual_seed(3)
    x, y = (
        torch.randn(50, 2, generator=g, dtype=torch.float64),
        torch.randn(50, 2, generator=g, dtype=torch.float64) + 1.0,
    )
    w2 = float(default_registry().get("divergence", "w2")()(x, y))
    s = float(default_registry().get("divergence", "sinkhorn")(blur=0.01, scaling=0.9)(x, y))
    assert s == pytest.approx(w2 / 2, rel=0.02)


def test_divergence_to_start_pulls_a_drifting_flow_back() -> None:
    """Potential pulling toward c = 2 plus lambda * MMD to the start: the mean stops short of c."""
    base = {
        "dim": 1,
        "sampler": {"kind": "gaussian", "n": 100},
        "solver": {"tau": 0.5, "steps": 2, "inner_iters": 60, "lr": 2e-2},
        "potential": {"widths": [8]},
    }
    drift = [{"kind": "potential", "V": {"kind": "quadratic", "center": 2.0}}]
    free = jkoflow.build({**base, "terms": drift}).execute()
    held = jkoflow.build(
        {
            **base,
            "terms": drift
            + [{"kind": "divergence_to_start", "weight": 20.0, "divergence": {"kind": "mmd", "sigma": 1.0}}],
        }
    ).execute()
    m_free, m_held = float(free.particles[-1].mean()), float(held.particles[-1].mean())
    assert m_held < m_free - 0.1
    assert held.records[-1].F is not None and held.records[-1].F > 0
    assert np.isfinite(held.trajectory()).all()
