"""Inverse maps through the convex conjugate and densities by Algorithm 2 (Flow.log_density)."""

from __future__ import annotations

import math

import jkoflow
import numpy as np
import pytest
import torch
from jkoflow.flow import Flow
from jkoflow.inverse import InversionError, invert, invert_flow
from jkoflow.plugins.potentials import ficnn


def _nonlinear_icnn(dim: int, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    u = ficnn(dim, widths=[16, 16], init_scale=2.0, alpha=0.05).double()  # far from the identity
    with torch.no_grad():
        for p in u.parameters():
            p.add_(0.3 * torch.randn_like(p))
    u.project()
    return u


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_round_trip(dim: int) -> None:
    u = _nonlinear_icnn(dim, seed=dim)
    x = 2.0 * torch.randn(200, dim, dtype=torch.float64)
    y = u.transport(x, create_graph=False)
    assert (y - x).norm(dim=1).mean() > 0.05  # the map is not the identity
    res = invert(u, y)
    assert float((res.x - x).abs().max()) < 1e-7
    assert float(res.residual.max()) <= 1e-9


def test_inversion_error_names_the_residual() -> None:
    u = _nonlinear_icnn(2, seed=0)
    y = u.transport(3 * torch.randn(20, 2, dtype=torch.float64), create_graph=False)
    with pytest.raises(InversionError, match="did not invert"):
        invert(u, y, max_iter=0)
    with pytest.raises(ValueError, match="expected"):
        invert(u, torch.zeros(3, 5, dtype=torch.float64))


def test_log_density_matches_change_of_variables_on_a_grid_1d() -> None:
    # independent check: for a monotone 1-D map, rho_1(T(x)) = rho_0(x) / T'(x), with T' by finite
    # differences on a fine grid and no inversion at all
    u1, u2 = _nonlinear_icnn(1, 5), _nonlinear_icnn(1, 6)
    flow = Flow(tau=1.0, potentials=[u1, u2])
    flow.log_rho0 = lambda x: -0.5 * x[:, 0] ** 2 - 0.5 * math.log(2 * math.pi)
    x = torch.linspace(-3, 3, 20001, dtype=torch.float64)[:, None]
    with torch.no_grad():
        y = u2.transport(u1.transport(x, create_graph=False), create_graph=False)[:, 0].numpy()
    dydx = np.gradient(y, x[:, 0].numpy())
    rho1 = np.exp(-0.5 * x[:, 0].numpy() ** 2) / math.sqrt(2 * math.pi) / dydx
    pts = torch.from_numpy(np.linspace(y[2000], y[-2000], 50))[:, None]
    ld, xs = flow.log_density(pts, return_points=True)
    expected = np.interp(pts[:, 0].numpy(), y, rho1)
    np.testing.assert_allclose(np.exp(ld.numpy()), expected, rtol=1e-4)
    assert len(xs) == 3 and torch.equal(xs[-1], pts)


def test_log_density_of_affine_flow_is_gaussian_2d() -> None:
    # maps grad u(x) = (Q^T Q + alpha I) x push N(0, I) to N(0, S S^T), S = Q^T Q + alpha I
    u = ficnn(2, widths=[4], init_scale=0.0, alpha=0.1).double()
    with torch.no_grad():
        u.quad.copy_(torch.tensor([[1.2, 0.3], [0.0, 0.7]], dtype=torch.float64))
        u.out_z.zero_()
    flow = Flow(tau=1.0, potentials=[u])
    flow.log_rho0 = lambda x: -0.5 * (x**2).sum(1) - math.log(2 * math.pi)
    S = u.quad.T @ u.quad + 0.1 * torch.eye(2, dtype=torch.float64)
    cov = S @ S.T
    y = torch.randn(30, 2, dtype=torch.float64)
    exact = torch.distributions.MultivariateNormal(torch.zeros(2, dtype=torch.float64), cov).log_prob(y)
    torch.testing.assert_close(flow.log_density(y), exact, rtol=1e-8, atol=1e-8)
    with pytest.raises(ValueError, match="log rho_0"):
        Flow(tau=1.0, potentials=[u]).log_density(y)
    with pytest.raises(ValueError, match="out of range"):
        flow.log_density(y, step=2)


def test_heat_flow_density_matches_the_gaussian() -> None:
    # a short trained JKO flow of the heat equation: Algorithm 2 against N(0, 1 + 2t) at t = 2 tau
    run = jkoflow.build(
        {"problem": {"kind": "heat", "n": 100}, "solver": {"tau": 0.1, "steps": 2, "inner_iters": 60}}
    )
    flow = run.execute()
    flow.log_rho0 = run.problem.log_density0
    grid = torch.linspace(-2.5, 2.5, 101, dtype=torch.float64)[:, None]
    p = torch.exp(flow.log_density(grid)).numpy()
    exact = run.problem.exact_density(grid.numpy(), 0.2)
    rel_l1 = np.abs(p - exact).sum() / exact.sum()
    assert rel_l1 < 0.05, rel_l1
    xs, _ = invert_flow(flow.potentials, torch.from_numpy(flow.trajectory()[-1]).double())
    assert float((xs[0] - flow.particles[0].double()).abs().max()) < 1e-5  # float32 forward pushes
