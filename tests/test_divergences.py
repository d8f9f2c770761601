"""Built-in divergences against independent computations, and the divergence_to_start term."""

from __future__ import annotations

import jkoflow
import numpy as np
import pytest
import torch
from jkoflow.registry import default_registry


def _gaussian_mmd_half(x: np.ndarray, y: np.ndarray, sigma: float) -> float:
    """Half the squared Gaussian-kernel MMD between two uniform Dirac clouds, by its closed form
    ``(mean k(x, x') + mean k(y, y') - 2 mean k(x, y)) / 2`` in numpy (geomloss' "gaussian" loss)."""

    def k(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.exp(-((a[:, None, :] - b[None, :, :]) ** 2).sum(-1) / (2 * sigma**2))

    return 0.5 * float(k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean())


SHIFT = np.array([1.0, 1.0, 1.0])  # |v|^2 = 3


def _translate_value(name: str, x: np.ndarray) -> float:
    """D(x, x + v) exactly. w2: |v|^2 (translation is an optimal map for the quadratic cost).
    sinkhorn: |v|^2 / 2 for every blur, not only as blur -> 0: with cost |x - y|^2 / 2,
    c(x, y + v) = c(x, y) - <x - y, v> + |v|^2 / 2 and the extra terms are separable, so under the
    marginal constraints they add the constant <mean y - mean x, v> + |v|^2 / 2 = |v|^2 / 2 to
    OT_eps(a, a) without changing the plan; the debiasing terms are translation invariant.
    mmd: the closed form above."""
    if name == "w2":
        return float(SHIFT @ SHIFT)
    if name == "sinkhorn":
        return float(SHIFT @ SHIFT) / 2
    return _gaussian_mmd_half(x, x + SHIFT, sigma=1.0)


@pytest.mark.parametrize("name", ["sinkhorn", "mmd", "w2"])
def test_exact_values_on_identical_and_translated_clouds(name: str) -> None:
    divergence = default_registry().get("divergence", name)()  # defaults: blur 0.05, sigma 1
    g = torch.Generator().manual_seed(0)
    x = torch.randn(60, 3, generator=g, dtype=torch.float64)
    v = torch.from_numpy(SHIFT)
    assert float(divergence(x, x.clone())) == pytest.approx(0.0, abs=1e-12)
    # the same empirical measure with every point doubled: still 0
    assert float(divergence(torch.cat([x, x]), x)) == pytest.approx(0.0, abs=1e-12)
    # measured (seed 0): w2 3 - 3e-15; sinkhorn 1.5 to the last digit even at scaling 0.5 (1.7e-7
    # off at blur 0.5, scaling 0.5); mmd 0.10923662539601839 = the numpy closed form to 1e-16
    assert float(divergence(x, x + v)) == pytest.approx(_translate_value(name, x.numpy()), rel=1e-9)
    single = torch.zeros(1, 3, dtype=torch.float64)
    assert float(divergence(single, single)) == pytest.approx(0.0, abs=1e-12)
    assert float(divergence(single, single + v)) == pytest.approx(
        _translate_value(name, single.numpy()), rel=1e-9
    )


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
    """With cost |x-y|^2/2 the debiased Sinkhorn divergence tends to W_2^2 / 2 as blur -> 0.

    For two 50-point clouds (a unique optimal assignment) the entropic bias vanishes
    exponentially in 1/eps (eps = blur^2): the eps log n of OT_eps(x, y) cancels against the
    debiasing terms. Measured relative error at scaling 0.99: 3.6e-4 (blur 0.05), 6.8e-6 (0.02),
    3.1e-9 (0.01). At scaling 0.9 the error stalls at 3.8e-3 for every blur <= 0.02: it is the
    truncation of geomloss' epsilon-scaling (about log(diameter / blur) / log(1 / scaling)
    iterations), not the blur."""
    g = torch.Generator().manual_seed(3)
    x, y = (
        torch.randn(50, 2, generator=g, dtype=torch.float64),
        torch.randn(50, 2, generator=g, dtype=torch.float64) + 1.0,
    )
    w2 = float(default_registry().get("divergence", "w2")()(x, y))

    def sinkhorn(blur: float, scaling: float) -> float:
        return float(default_registry().get("divergence", "sinkhorn")(blur=blur, scaling=scaling)(x, y))

    assert sinkhorn(0.01, 0.99) == pytest.approx(w2 / 2, rel=1e-7)
    assert sinkhorn(0.02, 0.99) == pytest.approx(w2 / 2, rel=3e-5)
    assert sinkhorn(0.05, 0.99) == pytest.approx(w2 / 2, rel=1e-3)
    assert sinkhorn(0.01, 0.9) == pytest.approx(w2 / 2, rel=6e-3)


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
