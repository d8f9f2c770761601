"""End-to-end JKO flows against exact solutions (small, fast settings)."""

from __future__ import annotations

import math

import jkoflow
import numpy as np
import pytest
import torch


def _run(spec: dict) -> tuple[jkoflow.Run, jkoflow.Flow]:
    run = jkoflow.build(spec)
    return run, run.execute()


def test_potential_flow_moves_the_mean_at_the_jko_rate() -> None:
    """V(x) = |x - c|^2 / 2: the JKO step is x -> c + (x - c)/(1 + tau) exactly."""
    tau, c = 0.5, [0.0, 0.5]
    _, flow = _run(
        {
            "dim": 2,
            "sampler": {"kind": "gaussian", "n": 200, "mean": [1.0, -1.0]},
            "terms": [{"kind": "potential", "V": {"kind": "quadratic", "center": c}}],
            "solver": {"tau": tau, "steps": 3, "inner_iters": 100, "lr": 2e-2},
            "potential": {"widths": [16, 16]},
        }
    )
    center = torch.tensor(c)
    for k in range(3):
        expected = center + (flow.particles[k].mean(0) - center) / (1 + tau)
        assert torch.allclose(flow.particles[k + 1].mean(0), expected, atol=2e-3)
    # and the whole map is that affine map, not just the mean
    expected_x = center + (flow.particles[0] - center) / (1 + tau) ** 3
    assert (flow.particles[-1] - expected_x).norm(dim=1).max() < 0.02


@pytest.mark.parametrize("dim", [1, 2])
def test_heat_flow_variance(dim: int) -> None:
    """Heat flow from N(0, I): variance after T steps within 5% of 1 + 2 T tau, and within 2%
    of the exact flow applied to the same sample (noise-free: var_T / var_0 = 1 + 2 T tau)."""
    tau, steps = 0.1, 3
    run, flow = _run(
        {
            "problem": {"kind": "heat", "dim": dim, "n": 1000},
            "solver": {"tau": tau, "steps": steps, "inner_iters": 100},
            "potential": {"widths": [16, 16]},
        }
    )
    target = 1 + 2 * steps * tau
    var0 = flow.particles[0].var(0)
    var = flow.particles[-1].var(0)
    assert torch.all((var / target - 1).abs() < 0.05), var
    assert torch.all((var / var0 / target - 1).abs() < 0.02), var / var0
    assert run.problem_metrics(flow)["map_error"] < 0.02


def test_heat_entropy_from_carried_log_densities_matches_exact() -> None:
    run, flow = _run(
        {
            "problem": {"kind": "heat", "dim": 1, "n": 1000},
            "solver": {"tau": 0.1, "steps": 2, "inner_iters": 100},
            "potential": {"widths": [16, 16]},
        }
    )
    assert run.problem is not None
    for rec in flow.records:
        exact = run.problem.exact_F(rec.t)
        assert rec.F is not None and abs(rec.F - exact) < 0.03 * abs(exact) + 0.03


def test_porous_medium_w1_to_barenblatt_over_first_steps() -> None:
    """Porous medium (d = 1, m = 2, C = (3/16)^(1/3), t0 = 1e-3, tau = 1e-2).

    Bound: the ideal JKO (exact inner solve) is itself 0.031 from the PDE after one step and
    0.018 at t0 + 0.1 in mean displacement (issue 4's table). The particles are stratified, so
    their own sampling error is 0.002-0.003 in W1 (not the 0.01-0.04 of an i.i.d. cloud of 200);
    measured here W1 = 0.0307 / 0.0292 / 0.0270 at steps 1-3. We allow W1 <= 0.031 + 0.003 +
    0.002 (ideal JKO's error + stratified sampling error + the solver's deviation) = 0.036 and a
    noise-free displacement <= 0.04.
    """
    run, flow = _run({"problem": {"kind": "porous-medium", "n": 200}, "solver": {"steps": 3}})
    for k in range(1, flow.steps + 1):
        t = run.problem.t0 + k * flow.tau
        m = run.problem.metrics(t, flow.particles[0], flow.particles[k], flow.log_densities[k])
        assert m["w1"] < 0.036, (k, m)
        assert m["map_error"] < 0.04, (k, m)


def test_failure_keeps_completed_steps() -> None:
    """A functional that turns non-finite at step 2 raises FlowDivergedError carrying step 1."""

    class Explodes(jkoflow.Functional):
        calls = 0

        def inner_objective(self, ctx: jkoflow.StepContext) -> torch.Tensor:
            Explodes.calls += 1
            bad = Explodes.calls > 5
            return ctx.y.sum() * (math.inf if bad else 0.0)

    solver = jkoflow.JKOSolver(tau=0.1, steps=3, inner_iters=5, max_lr_drops=2)
    from jkoflow.plugins.potentials import ficnn

    with pytest.raises(jkoflow.FlowDivergedError, match="non-finite loss") as info:
        solver.run(Explodes(), lambda: ficnn(1, [4]), torch.randn(10, 1))
    assert info.value.flow.steps == 1
    assert len(info.value.flow.particles) == 2
    assert np.isfinite(info.value.flow.trajectory()).all()


def test_minibatch_inner_loop_reaches_the_same_jko_step() -> None:
    """batch_size < n: each inner iteration sees a random minibatch; for V = |x - c|^2/2 the
    JKO map x -> c + (x - c)/(1 + tau) is the same for every batch, so all particles follow it."""
    tau, c = 0.5, 1.0
    _, flow = _run(
        {
            "dim": 1,
            "sampler": {"kind": "gaussian", "n": 1000},
            "terms": [{"kind": "potential", "V": {"kind": "quadratic", "center": c}}],
            "solver": {"tau": tau, "steps": 1, "inner_iters": 150, "lr": 2e-2, "batch_size": 50},
            "potential": {"widths": [8]},
        }
    )
    expected = c + (flow.particles[0] - c) / (1 + tau)
    assert (flow.particles[1] - expected).abs().max() < 0.02


def test_batch_size_is_validated() -> None:
    with pytest.raises(ValueError, match="batch_size=1: expected an integer >= 2"):
        jkoflow.JKOSolver(tau=0.1, steps=1, batch_size=1)


def _heat_population_scale(tau: float, var: float) -> float:
    """Ideal JKO step of the heat flow from N(m, var) in 1-D: the affine map x -> m + a (x - m)
    minimizing -log a + (a - 1)^2 var / (2 tau), i.e. a = (1 + sqrt(1 + 4 tau / var)) / 2."""
    return (1 + math.sqrt(1 + 4 * tau / var)) / 2


@pytest.mark.parametrize("fresh", [False, True])
def test_fresh_samples_fit_the_population_jko_step_not_the_carried_cloud(fresh: bool) -> None:
    """Heat flow from N(0, 1) carrying only n = 12 particles (sample variance far from 1).
    Fitted on those particles, a JKO step is the ideal step of their *empirical* measure
    (scale a(var_hat)); fitted on 400 fresh draws of rho_0 pushed through the previous maps
    at every inner iteration, it is the ideal step of the *population* (scale a(var_t)); over
    two steps the two differ by 5 % here, so each assertion fails for the other setting."""
    tau, steps = 0.1, 2
    solver: dict = {"tau": tau, "steps": steps, "inner_iters": 200, "lr": 2e-2, "lr_schedule": "cosine"}
    if fresh:
        solver["fresh_samples"] = 400
    _, flow = _run(
        {
            "problem": {"kind": "heat", "dim": 1, "n": 12},
            "seed": 3,
            "solver": solver,
            "potential": {"widths": [8]},
        }
    )
    x0 = flow.particles[0][:, 0].double()
    var_hat = float(x0.var(unbiased=False))
    assert abs(var_hat - 1) > 0.25  # the carried sample is far from its law
    pop = emp = 1.0
    var_pop, var_emp = 1.0, var_hat
    for _ in range(steps):
        a, b = _heat_population_scale(tau, var_pop), _heat_population_scale(tau, var_emp)
        pop, emp = pop * a, emp * b
        var_pop, var_emp = var_pop * a * a, var_emp * b * b
    assert abs(pop / emp - 1) > 0.02
    xt = flow.particles[-1][:, 0].double()
    scale = float(
        ((xt - xt.mean()) * (x0 - x0.mean())).sum() / ((x0 - x0.mean()) ** 2).sum()
    )  # least-squares slope
    if fresh:
        assert abs(scale / pop - 1) < 0.005, (scale, pop, emp)
    else:  # biased towards the empirical step (an ICNN is not affine between 12 points: 1.5 %)
        assert abs(scale / emp - 1) < 0.015 and abs(scale / pop - 1) > 0.03, (scale, pop, emp)


def test_fresh_samples_pushed_like_the_carried_particles() -> None:
    """The fresh-sample push (z ~ rho_0 through T_1..T_t with log rho_t carried by log det H_u)
    applied to the initial particles themselves reproduces the carried particles and densities."""
    run, flow = _run(
        {
            "problem": {"kind": "porous-medium", "dim": 1, "n": 50},
            "solver": {"steps": 2, "inner_iters": 20},
            "potential": {"widths": [8]},
        }
    )
    x0, l0 = flow.particles[0], flow.log_densities[0]
    solver = jkoflow.JKOSolver(tau=flow.tau, steps=2, fresh_samples=50)
    x, lx = solver._fresh(
        lambda n, g: (x0[:n], l0[:n]), torch.Generator(), flow, run.logdet, x0, 2, 25, chunk=16
    )
    twice = torch.cat([flow.particles[-1][:25]] * 2), torch.cat([flow.log_densities[-1][:25]] * 2)
    assert torch.allclose(x, twice[0], atol=1e-6)
    assert lx is not None and torch.allclose(lx, twice[1], atol=1e-5)


def test_fresh_samples_are_validated() -> None:
    from jkoflow.plugins.energies import entropy
    from jkoflow.plugins.potentials import ficnn

    with pytest.raises(ValueError, match="fresh_samples=1: expected an integer >= 2, or 0"):
        jkoflow.JKOSolver(tau=0.1, steps=1, fresh_samples=1)
    with pytest.raises(ValueError, match="at most one of them"):
        jkoflow.JKOSolver(tau=0.1, steps=1, fresh_samples=10, batch_size=10)
    with pytest.raises(ValueError, match="lr_schedule='linear': expected one of"):
        jkoflow.JKOSolver(tau=0.1, steps=1, lr_schedule="linear")
    assert (
        jkoflow.JKOSolver(tau=0.1, steps=1, fresh_samples=0, batch_size=10).batch_size == 10
    )  # 0 = off (TOML has no None)
    solver = jkoflow.JKOSolver(tau=0.1, steps=1, fresh_samples=10)
    with pytest.raises(ValueError, match="pass sample0"):
        solver.run(entropy(), lambda: ficnn(1, [4]), torch.zeros(3, 1))


def test_cosine_schedule_runs_from_lr_to_lr_over_100() -> None:
    solver = jkoflow.JKOSolver(tau=0.1, steps=1, inner_iters=11, lr=1e-2, lr_schedule="cosine")
    assert solver.lr_at(0) == pytest.approx(1e-2)
    assert solver.lr_at(5) == pytest.approx((1e-2 + 1e-4) / 2)
    assert solver.lr_at(10) == pytest.approx(1e-4)


def test_fresh_batches_from_a_stratified_sampler_are_each_stratified() -> None:
    """Every inner iteration's fresh batch is one ``sample0(B)`` call: with the porous medium's
    stratified sampler each batch of B points has exactly one point per quantile stratum."""
    run = jkoflow.build({"problem": {"kind": "porous-medium", "dim": 1, "n": 20}, "solver": {"steps": 0}})
    flow = run.execute()
    solver = jkoflow.JKOSolver(tau=flow.tau, steps=1, fresh_samples=20)
    sample0 = lambda n, g: run.sampler.sample(n, g)
    x, _ = solver._fresh(sample0, torch.Generator().manual_seed(1), flow, None, run.x0, 3, 20)
    u = np.asarray(run.problem.cdf0(x[:, 0].double().numpy()))
    for k in range(3):
        strata = np.floor(np.sort(u[20 * k : 20 * (k + 1)]) * 20).astype(int)
        assert strata.tolist() == list(range(20))
