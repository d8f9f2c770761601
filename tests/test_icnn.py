"""Input-convex networks: convexity (Hessian PSD/PD, Jensen), identity initialization, projection."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from jkoflow.plugins.potentials import ICNN, ficnn, resicnn

configs = st.fixed_dictionaries(
    {
        "dim": st.integers(1, 5),
        "widths": st.lists(st.integers(2, 12), min_size=1, max_size=3),
        "residual": st.booleans(),
        "alpha": st.sampled_from([0.0, 1e-3, 0.1]),
        "activation": st.sampled_from(["softplus", "celu", "elu"]),
        "seed": st.integers(0, 2**16),
    }
)


def _random_net(cfg: dict) -> ICNN:
    torch.manual_seed(cfg["seed"])
    widths = [cfg["widths"][0]] * len(cfg["widths"]) if cfg["residual"] else cfg["widths"]
    net = ICNN(cfg["dim"], widths, cfg["activation"], cfg["alpha"], residual=cfg["residual"]).double()
    # move away from the near-quadratic initialization: random (then projected) weights
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p))
    net.project()
    return net


@settings(max_examples=25, deadline=None)
@given(cfg=configs)
def test_hessian_is_symmetric_psd_and_pd_with_alpha(cfg: dict) -> None:
    net = _random_net(cfg)
    x = 3 * torch.randn(
        16, cfg["dim"], dtype=torch.float64, generator=torch.Generator().manual_seed(cfg["seed"])
    )
    hess = net.hessian(x, create_graph=False)
    assert torch.allclose(hess, hess.transpose(1, 2), atol=1e-10)
    eig = torch.linalg.eigvalsh(hess)
    assert eig.min() >= cfg["alpha"] - 1e-9
    if cfg["alpha"] > 0:
        assert eig.min() > 0


@settings(max_examples=25, deadline=None)
@given(cfg=configs, lam=st.floats(0.05, 0.95))
def test_jensen_along_random_segments(cfg: dict, lam: float) -> None:
    net = _random_net(cfg)
    g = torch.Generator().manual_seed(cfg["seed"] + 1)
    a = 3 * torch.randn(32, cfg["dim"], dtype=torch.float64, generator=g)
    b = 3 * torch.randn(32, cfg["dim"], dtype=torch.float64, generator=g)
    with torch.no_grad():
        mid = net(lam * a + (1 - lam) * b)
        chord = lam * net(a) + (1 - lam) * net(b)
        # strong convexity: u(mid) <= chord - alpha/2 lam (1-lam) |a-b|^2
        gap = 0.5 * cfg["alpha"] * lam * (1 - lam) * (a - b).pow(2).sum(-1)
    assert torch.all(mid <= chord - gap + 1e-9 * (1 + chord.abs()))


def test_non_convex_weights_are_detected_by_the_same_check() -> None:
    """The Hessian check above can fail: negative z-weights give a non-convex u."""
    torch.manual_seed(0)
    net = ficnn(1, [8, 8], alpha=0.0).double()
    with torch.no_grad():
        net.wz[0].copy_(-5 * torch.rand_like(net.wz[0]))
        net.out_z.copy_(5 * torch.rand_like(net.out_z))
        net.quad.zero_()
    x = torch.linspace(-4, 4, 200, dtype=torch.float64)[:, None]
    assert net.hessian(x, create_graph=False).min() < 0
    net.project()
    assert net.hessian(x, create_graph=False).min() >= -1e-12


@pytest.mark.parametrize("factory", [ficnn, resicnn])
@pytest.mark.parametrize("dim", [1, 3])
def test_initial_map_is_close_to_identity(factory, dim: int) -> None:
    torch.manual_seed(1)
    net = factory(dim)
    x = torch.randn(100, dim)
    y = net.transport(x, create_graph=False)
    assert (y - x).abs().max() < 0.05 * (1 + x.abs().max())


def test_bad_settings_name_the_value() -> None:
    with pytest.raises(ValueError, match="activation='relu'"):
        ficnn(2, activation="relu")
    with pytest.raises(ValueError, match="alpha=1.5"):
        ficnn(2, alpha=1.5)
    with pytest.raises(ValueError, match="equal widths"):
        resicnn(2, widths=[4, 8])
