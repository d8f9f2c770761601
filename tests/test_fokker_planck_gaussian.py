"""The ``fokker-planck-gaussian`` problem: exact solution, exact Lagrangian map, ideal JKO, ULA.

Independent checks: the covariance solves ``dS/dt = -BS - SB + 2I``; the exact Lagrangian map
pushes ``N(m_0, S_0)`` to ``N(m_t, S_t)`` (``M_t S_0 M_t^T = S_t``) for a non-commuting ``S_0``
and equals ``S_t^{1/2}`` when ``S_0 = I``; the ideal JKO step matches the per-eigenvalue closed
form when everything commutes, is stationary for the convex objective otherwise, and is a
first-order scheme (error halves with ``tau``); Bures-Wasserstein against the commuting formula;
ULA against the exact covariance; a short JKO-ICNN run against the ideal JKO of its particles.
"""

from __future__ import annotations

import itertools
import math

import jkoflow
import numpy as np
import pytest
import torch
from jkoflow.plugins.problems_gaussian import (
    FokkerPlanckGaussian,
    GaussianFlow,
    bures_wasserstein,
    ideal_jko_step,
    ideal_jko_trajectory,
    random_rotation,
    relative_frobenius,
    sample_cov,
    sqrtm_psd,
    ula,
)


def random_spd(d: int, seed: int, lo: float = 0.5, hi: float = 2.0) -> np.ndarray:
    q = random_rotation(d, seed)
    return (q * np.linspace(lo, hi, d)) @ q.T


def test_exact_covariance_solves_the_moment_ode_and_map_pushes_forward() -> None:
    d = 4
    A, S0 = random_spd(d, 1), random_spd(d, 2, 0.3, 3.0)  # S0 does not commute with A
    mu, m0 = np.full(d, 0.5), np.linspace(-1, 1, d)
    flow = GaussianFlow(A, mu, m0, S0)
    B, t, h = 2 * A, 0.3, 1e-5
    dS = (flow.cov(t + h) - flow.cov(t - h)) / (2 * h)
    np.testing.assert_allclose(dS, -B @ flow.cov(t) - flow.cov(t) @ B + 2 * np.eye(d), atol=1e-6)
    dm = (flow.mean(t + h) - flow.mean(t - h)) / (2 * h)
    np.testing.assert_allclose(dm, -B @ (flow.mean(t) - mu), atol=1e-8)
    np.testing.assert_allclose(flow.cov(0.0), S0, atol=1e-12)
    M = flow.lagrangian_matrix(t)
    np.testing.assert_allclose(M @ S0 @ M.T, flow.cov(t), atol=1e-8)
    # S0 = I: the map is the symmetric S_t^{1/2}
    flow_i = GaussianFlow(A, mu, m0, np.eye(d))
    np.testing.assert_allclose(flow_i.lagrangian_matrix(0.5), sqrtm_psd(flow_i.cov(0.5)), atol=1e-8)


def test_ideal_jko_step_matches_commuting_closed_form() -> None:
    d, tau = 6, 0.05
    A = random_spd(d, 3)
    lam, U = np.linalg.eigh(A)
    mu, m = np.full(d, 0.5), np.zeros(d)
    m_next, M = ideal_jko_step(A, mu, m, np.eye(d), tau)
    g = lam + 1 / (2 * tau)  # per eigenvalue: 2 g m^2 - m / tau - 1 = 0 (s = 1)
    expected = (1 / tau + np.sqrt(1 / tau**2 + 8 * g)) / (4 * g)
    np.testing.assert_allclose(M, (U * expected) @ U.T, atol=1e-10)
    np.testing.assert_allclose(m_next, np.linalg.solve(np.eye(d) + 2 * tau * A, 2 * tau * A @ mu), atol=1e-12)


def test_ideal_jko_step_is_stationary_for_non_commuting_covariance() -> None:
    d, tau = 5, 0.1
    A, S = random_spd(d, 4), random_spd(d, 5, 0.2, 4.0)
    _, M = ideal_jko_step(A, np.zeros(d), np.zeros(d), S, tau)
    assert np.allclose(M, M.T) and np.linalg.eigvalsh(M).min() > 0
    G = A + np.eye(d) / (2 * tau)
    grad = G @ M @ S + S @ M @ G - S / tau - np.linalg.inv(M)
    assert np.linalg.norm(grad + grad.T) / 2 <= 1e-8 * np.linalg.norm(S / tau)

    def J(m: np.ndarray) -> float:
        D = m - np.eye(d)
        return float(np.trace(A @ m @ S @ m) - np.linalg.slogdet(m)[1] + np.trace(D @ S @ D) / (2 * tau))

    rng = np.random.default_rng(0)
    for _ in range(5):
        E = rng.standard_normal((d, d)) * 1e-3
        assert J(M + (E + E.T) / 2) >= J(M) - 1e-12


def test_ideal_jko_is_first_order_in_tau() -> None:
    d, t = 4, 0.4
    A = random_spd(d, 6)
    mu, m0, S0 = np.full(d, 0.5), np.zeros(d), np.eye(d)
    exact = GaussianFlow(A, mu, m0, S0)
    errors = []
    for tau in (0.1, 0.05, 0.025):
        _, S, _ = ideal_jko_trajectory(A, mu, m0, S0, tau, round(t / tau))[-1]
        errors.append(relative_frobenius(S, exact.cov(t)))
    assert errors[0] < 0.1
    for coarse, fine in itertools.pairwise(errors):
        assert 1.6 < coarse / fine < 2.4


def test_bures_wasserstein_commuting_formula() -> None:
    s1, s2 = np.array([1.0, 2.0, 0.5]), np.array([0.3, 2.0, 4.0])
    m1, m2 = np.zeros(3), np.array([1.0, 0.0, -1.0])
    q = random_rotation(3, 7)
    got = bures_wasserstein(m1, (q * s1) @ q.T, m2, (q * s2) @ q.T)
    assert got == pytest.approx(math.sqrt(2.0 + np.sum((np.sqrt(s1) - np.sqrt(s2)) ** 2)), rel=1e-10)
    assert bures_wasserstein(m1, np.diag(s1), m1, np.diag(s1)) == pytest.approx(0.0, abs=1e-7)


def test_ula_matches_exact_covariance() -> None:
    problem = FokkerPlanckGaussian(dim=2, n=4000)
    x0 = torch.randn(4000, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    (x,) = ula(x0, problem.A, problem.mu, 1e-3, [0.5], torch.Generator().manual_seed(1))
    xs = x.numpy()
    # i.i.d. floor for n = 4000 in d = 2: ~ sqrt(2/4000) ~ 0.02; Euler bias O(h)
    assert relative_frobenius(sample_cov(xs), problem.exact.cov(0.5)) < 0.06
    assert np.linalg.norm(xs.mean(0) - problem.exact.mean(0.5)) < 0.06


def test_problem_spec_builds_the_right_functional() -> None:
    run = jkoflow.build(
        {"problem": {"kind": "fokker-planck-gaussian", "dim": 3, "n": 50}, "solver": {"steps": 0}}
    )
    problem = run.problem
    x = torch.randn(7, 3, dtype=torch.float64)
    V = ((x.numpy() - problem.mu) @ problem.A * (x.numpy() - problem.mu)).sum(-1)
    potential_term = run.functional.terms()[0][1]
    assert float(potential_term.value(x.float())) == pytest.approx(float(V.mean()), rel=1e-5)
    assert run.spec["solver"]["logdet"]["kind"] == "auto"
    np.testing.assert_allclose(np.linalg.eigvalsh(problem.A), np.linspace(0.5, 2.0, 3), atol=1e-12)


def test_metrics_of_the_reference_trajectories() -> None:
    problem = FokkerPlanckGaussian(dim=3, n=200, tau=0.05)
    x0 = torch.randn(200, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    exact = torch.from_numpy(problem.exact.lagrangian_map(x0.numpy(), 0.1))
    m = problem.metrics(0.1, x0, exact, None)
    assert m["map_cov_rel_error"] < 1e-10 and m["map_error"] < 1e-10 and m["nn_ratio"] == pytest.approx(1.0)
    assert 0 < m["ideal_jko_cov_rel_error"] < 0.05
    emp = torch.from_numpy(problem.empirical_ideal(x0.numpy(), 2))
    m = problem.metrics(0.1, x0, emp, None)
    assert m["emp_jko_cov_rel_error"] < 1e-12 and m["emp_jko_map_error"] < 1e-12


def _jko_run_metrics(
    dim: int, n: int, steps: int, inner_iters: int, widths: list[int], fresh: int | None = None
) -> dict[str, float]:
    spec = {
        "problem": {"kind": "fokker-planck-gaussian", "dim": dim, "n": n, "steps": steps},
        "solver": {"inner_iters": inner_iters, "logdet": "exact", "fresh_samples": fresh},
        "potential": {"widths": widths},
    }
    run = jkoflow.build(spec)
    return run.problem_metrics(run.execute())


def test_tiny_jko_icnn_run_tracks_the_ideal_jko_of_its_particles() -> None:
    m = _jko_run_metrics(dim=3, n=100, steps=1, inner_iters=60, widths=[8, 8])
    assert m["emp_jko_cov_rel_error"] < 0.02, m
    assert abs(m["nn_ratio"] - 1) < 0.2, m


def test_fresh_samples_track_the_population_ideal_jko_not_the_particles_one() -> None:
    """30 carried particles in d = 3 (sample covariance ~ 30 % off): trained on 300 fresh draws
    per inner iteration (the problem's default), the step follows the ideal JKO of rho_t itself,
    so the carried particles follow the exact Lagrangian map far closer than their own
    empirical ideal JKO does."""
    m = _jko_run_metrics(dim=3, n=30, steps=2, inner_iters=150, widths=[8, 8], fresh=300)
    assert m["jko_cov_rel_error"] < 0.02, m
    assert m["emp_jko_vs_exact_cov_rel_error"] > 0.05, m
    assert m["map_cov_rel_error"] < m["ideal_jko_cov_rel_error"] + 0.02, m


def test_problem_suggests_fresh_samples() -> None:
    run = jkoflow.build({"problem": {"kind": "fokker-planck-gaussian", "dim": 3, "n": 40}})
    assert run.solver.fresh_samples == 40 and run.solver.lr_schedule == "cosine"


@pytest.mark.slow
def test_short_jko_icnn_run_tracks_the_ideal_jko_of_its_particles() -> None:
    m = _jko_run_metrics(dim=4, n=200, steps=2, inner_iters=100, widths=[16, 16])
    assert m["emp_jko_cov_rel_error"] < 0.02, m
    assert abs(m["nn_ratio"] - 1) < 0.2, m
    assert m["map_cov_rel_error"] < m["emp_jko_vs_exact_cov_rel_error"] + 0.02, m
