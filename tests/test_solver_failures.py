"""Numerical failures name their cause; recovery is configurable; nothing non-finite is kept or
written; an inner loop that ends far from convergence is flagged (jkoflow.solver, "Failures and
recovery")."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import jkoflow
import pytest
import torch
from jkoflow.report import write_metrics, write_particles
from jkoflow.solver import ConvergenceWarning
from torch import Tensor, nn

REGISTRY = jkoflow.default_registry()


def _net(dim: int = 1) -> jkoflow.PotentialNet:
    return REGISTRY.get("net", "ficnn")(dim, widths=[8])


def _potential(V: object) -> jkoflow.Functional:
    return REGISTRY.get("functional", "potential")(V=V)


class NanBeyond:
    """``V(y) = 1/2 |y - c|^2`` inside ``|y|_1 <= R``, NaN outside."""

    def __init__(self, radius: float, center: float = 0.0) -> None:
        self.radius, self.center = radius, center

    def __call__(self, y: Tensor) -> Tensor:
        inside = 0.5 * (y - self.center).pow(2).sum(-1)
        return torch.where(y.abs().sum(-1) > self.radius, torch.full_like(inside, math.nan), inside)


class Concave(jkoflow.PotentialNet):
    """``u(x) = -|x|^2 / 2 + w * sum(x)``: not convex anywhere (``H_u = -I``)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.w = nn.Parameter(torch.zeros(()))

    def forward(self, x: Tensor) -> Tensor:
        return -0.5 * x.pow(2).sum(-1) + self.w * x.sum(-1)


def test_term_nan_at_the_particles_is_named_and_a_smaller_tau_is_not_suggested() -> None:
    x0 = torch.linspace(-3, 3, 50)[:, None]
    outside = int((x0.abs().sum(-1) > 1.5).sum())
    solver = jkoflow.JKOSolver(tau=0.1, steps=2, inner_iters=10)
    with pytest.raises(jkoflow.FlowDivergedError) as info:
        solver.run(_potential(NanBeyond(1.5)), _net, x0)
    message = str(info.value)
    # no learning-rate halving is tried: no smaller step can help a term undefined at the particles
    assert message.startswith("step 1, inner iteration 0: non-finite loss: term 1"), message
    assert "halvings" not in message and not info.value.retryable
    assert "term 1 PotentialEnergy(NanBeyond) is NaN at" in message
    assert f"NaN already at {outside} of 50 current particles" in message
    assert "itself returns NaN/inf on the particles" in message
    assert "a smaller tau or lr will not help" in message
    assert "try a smaller tau" not in message
    assert info.value.flow.steps == 0 and len(info.value.flow.particles) == 1


def test_on_failure_stop_raises_at_the_first_failure() -> None:
    x0 = torch.linspace(-1, 1, 20)[:, None]
    solver = jkoflow.JKOSolver(tau=1.0, steps=1, inner_iters=150, lr=0.05, on_failure="stop")
    with pytest.raises(jkoflow.FlowDivergedError) as info:
        solver.run(_DriftWithACliff(), _net, x0)
    message = str(info.value)
    assert "non-finite loss (on_failure='stop'): term 1 _DriftWithACliff" in message, message
    assert "halvings" not in message and "the map moved too far" in message
    assert info.value.flow.steps == 0


def test_on_failure_is_validated() -> None:
    with pytest.raises(
        ValueError, match=r"^on_failure='retry': expected one of \['halve_lr', 'substeps', 'stop'\]"
    ):
        jkoflow.JKOSolver(tau=0.1, steps=1, on_failure="retry")


def test_non_convex_net_is_named_with_not_positive_definite() -> None:
    entropy = REGISTRY.get("functional", "entropy")()
    exact = REGISTRY.get("logdet", "exact")()
    solver = jkoflow.JKOSolver(tau=0.1, steps=2, inner_iters=5)
    with pytest.raises(jkoflow.FlowDivergedError) as info:
        solver.run(entropy, lambda: Concave(2), torch.randn(20, 2), logdet=exact)
    message = str(info.value)
    assert message.startswith("step 1, inner iteration 0: non-finite loss after 4 learning-rate halvings")
    assert (
        "the log-det estimator ExactLogDet found H_u not positive definite at 20 of 20 particles" in message
    )
    assert "net Concave is not convex there" in message
    assert "jkoflow.testing.assert_valid_potential_net" in message and "strong_convexity" in message
    assert info.value.flow.steps == 0


class NanFromStep2(jkoflow.Functional):
    """``mean |y|^2 / 2`` for the first ``inner_iters`` evaluations (step 1), NaN after."""

    def __init__(self, inner_iters: int) -> None:
        self.inner_iters = inner_iters
        self.calls = 0

    def start(self, x0: Tensor, log_density0: Tensor | None = None) -> None:
        self.calls = 0

    def inner_objective(self, ctx: jkoflow.StepContext) -> Tensor:
        self.calls += 1
        value = 0.5 * ctx.y.pow(2).sum(-1).mean()
        return value * math.nan if self.calls > self.inner_iters else value


def test_failure_at_step_2_keeps_step_1() -> None:
    x0 = torch.randn(20, 1)
    solver = jkoflow.JKOSolver(tau=0.1, steps=3, inner_iters=10)
    with pytest.raises(jkoflow.FlowDivergedError) as info:
        solver.run(NanFromStep2(10), _net, x0)
    message = str(info.value)
    assert message.startswith("step 2, inner iteration 0: non-finite loss")
    assert "term 1 NanFromStep2 is NaN" in message and "will not help" in message
    flow = info.value.flow
    assert flow.steps == 1 and len(flow.particles) == 2 and [r.step for r in flow.records] == [1]
    assert torch.isfinite(flow.particles[1]).all() and flow.records[0].converged in (True, False)


def test_recovered_failures_are_listed_and_counted() -> None:
    """A large lr throws particles beyond the radius where V is NaN (finite at the particles):
    each failure is recovered by halving lr and listed, attributed, in its step's record."""
    solver = jkoflow.JKOSolver(tau=1.0, steps=2, inner_iters=20, lr=0.3, max_lr_drops=6)
    flow = solver.run(_potential(NanBeyond(2.0, center=1.9)), _net, torch.linspace(-1, 1, 20)[:, None])
    assert flow.steps == 2
    drops = [r.lr_drops for r in flow.records]
    assert sum(drops) >= 1
    for record in flow.records:
        assert len(record.failures) == record.lr_drops
        assert record.iterations == 20 and len(record.inner_loss) == 20
        for failure in record.failures:
            assert "non-finite loss: term 1 PotentialEnergy(NanBeyond) is NaN at" in failure
            assert "but finite at the current particles" in failure
    assert all(math.isfinite(r.grad_norm) for r in flow.records)


class NanProject(jkoflow.PotentialNet):
    """``u = |x|^2 / 2 + w x``; its ``project()`` writes NaN into ``w`` on the 3rd call."""

    def __init__(self) -> None:
        super().__init__()
        self.dim = 1
        self.w = nn.Parameter(torch.zeros(1))
        self.calls = 0

    def forward(self, x: Tensor) -> Tensor:
        return 0.5 * x.pow(2).sum(-1) + x @ self.w

    def project(self) -> None:
        self.calls += 1
        if self.calls == 3:
            with torch.no_grad():
                self.w.fill_(math.nan)


def test_non_finite_parameters_after_the_step_are_a_recovered_failure() -> None:
    solver = jkoflow.JKOSolver(tau=0.1, steps=1, inner_iters=5, batch_size=4)
    flow = solver.run(_potential("quadratic"), NanProject, torch.randn(10, 1))
    (record,) = flow.records
    assert record.lr_drops == 1 and len(record.failures) == 1
    assert record.failures[0].startswith(
        "inner iteration 2 (lr 0.01): non-finite parameters: parameter w of net NanProject"
    )
    assert torch.isfinite(flow.potentials[0].w).all()


class CarryBreaks(jkoflow.LogDetEstimator):
    """Exact log det, except for the carried log-densities of step ``bad_step``: ``+inf`` or a
    :class:`LogDetError`."""

    def __init__(self, mode: str, bad_step: int = 2) -> None:
        self.exact = REGISTRY.get("logdet", "exact")()
        self.mode, self.bad_step, self.pushes = mode, bad_step, 0

    def __call__(self, potential: jkoflow.PotentialNet, x: Tensor, *, grad: bool = True) -> jkoflow.LogDet:
        out = self.exact(potential, x, grad=grad)
        if grad:
            return out
        self.pushes += 1
        if self.pushes < self.bad_step:
            return out
        if self.mode == "error":
            raise jkoflow.LogDetError("H_u is not positive definite (Cholesky failed)", 3, x.shape[0])
        value = out.value.clone()
        value[:2] = math.inf
        return jkoflow.LogDet(value=value, surrogate=value)


@pytest.mark.parametrize("mode", ["inf", "error"])
def test_non_finite_carried_log_densities_name_the_estimator(mode: str) -> None:
    entropy = REGISTRY.get("functional", "entropy")()
    solver = jkoflow.JKOSolver(tau=0.1, steps=3, inner_iters=5)
    x0 = torch.randn(20, 1)
    with pytest.raises(jkoflow.FlowDivergedError) as info:
        solver.run(entropy, _net, x0, log_density0=-0.5 * x0[:, 0] ** 2, logdet=CarryBreaks(mode))
    message = str(info.value)
    if mode == "inf":
        assert message.startswith("step 2: 2 of 20 carried log-densities are not finite")
        assert "log-det estimator CarryBreaks on net ICNN" in message
    else:
        assert message.startswith(
            "step 2: carrying the log-densities failed: the log-det estimator CarryBreaks"
        )
        assert "not positive definite at 3 of 20 particles: net ICNN" in message
    flow = info.value.flow
    assert flow.steps == 1 and all(torch.isfinite(ld).all() for ld in flow.log_densities if ld is not None)


def _steep_run() -> jkoflow.Run:
    return jkoflow.build(
        {
            "dim": 1,
            "sampler": {"kind": "gaussian", "n": 50},
            "terms": [{"kind": "potential", "V": {"kind": "quadratic", "matrix": 2e12}}],
            "solver": {"tau": 0.05, "steps": 1, "inner_iters": 20, "lr": 1e-2},
            "potential": {"widths": [8]},
        }
    )


def test_steep_potential_is_flagged_unconverged_with_a_warning() -> None:
    with pytest.warns(
        ConvergenceWarning, match=r"^step 1: the inner loop ended far from convergence"
    ) as caught:
        flow = _steep_run().execute()
    assert len([w for w in caught if issubclass(w.category, ConvergenceWarning)]) == 1
    assert "try more inner_iters (now 20) or a different lr (now 0.01)" in str(caught[0].message)
    (record,) = flow.records
    assert record.converged is False and math.isfinite(record.grad_norm) and record.grad_norm > 0


def test_normal_heat_run_is_converged_without_warning() -> None:
    run = jkoflow.build(
        {
            "problem": {"kind": "heat", "n": 50},
            "solver": {"steps": 2, "inner_iters": 100},
            "potential": {"widths": [8]},
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        flow = run.execute()
    assert [r.converged for r in flow.records] == [True, True]
    assert [r.iterations for r in flow.records] == [100, 100]
    assert all(r.failures == [] and r.lr_drops == 0 for r in flow.records)


def test_write_metrics_writes_null_for_non_finite_and_lists_the_keys(tmp_path: Path) -> None:
    records = [
        {"step": 0, "F": 1.0, "w1": 0.1},
        {"step": 1, "F": math.nan, "transport": math.inf, "w1": 0.2, "failures": []},
    ]
    write_metrics(records, tmp_path)
    text = (tmp_path / "metrics.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    loaded = json.loads(text)
    assert loaded[0] == {"step": 0, "F": 1.0, "w1": 0.1}
    assert loaded[1]["F"] is None and loaded[1]["transport"] is None and loaded[1]["w1"] == 0.2
    assert loaded[1]["non_finite"] == ["F", "transport"]


def test_write_particles_refuses_non_finite_particles_and_log_densities(tmp_path: Path) -> None:
    good = torch.zeros(5, 1)
    bad = good.clone()
    bad[1, 0] = math.nan
    flow = jkoflow.Flow(tau=0.1, potentials=[_net()], particles=[good, bad], log_densities=[None, None])
    with pytest.raises(ValueError, match="step 1 has 1 of 5 non-finite particles"):
        write_particles(flow, tmp_path)
    ld = torch.zeros(5)
    flow = jkoflow.Flow(
        tau=0.1,
        potentials=[_net()],
        particles=[good, good],
        log_densities=[ld, torch.tensor([0.0, -math.inf, math.nan, 0.0, 0.0])],
    )
    with pytest.raises(ValueError, match="step 1 has 2 of 5 non-finite log-densities"):
        write_particles(flow, tmp_path)
    assert not (tmp_path / "particles.npz").exists()


class _DriftWithACliff(jkoflow.Functional):
    """``F = mean_i y_i`` (a drift of speed 1 to the left: the JKO step moves every particle by
    ``-tau``) whose inner objective is NaN where a particle moves more than 0.45 in one step:
    a step of tau = 1 or 0.5 cannot be taken, a step of 0.25 can."""

    def inner_objective(self, ctx: jkoflow.StepContext) -> Tensor:
        moved = (ctx.y - ctx.x).abs().sum(-1)
        return torch.where(moved > 0.45, torch.full_like(moved, math.nan), ctx.y.sum(-1)).mean()

    def value(self, x: Tensor, log_density: Tensor | None = None) -> float:
        return float(x.sum(-1).mean())


def test_substeps_split_a_step_that_the_lr_halvings_cannot_save() -> None:
    x0 = torch.linspace(-1, 1, 20).reshape(-1, 1)
    settings = {"tau": 1.0, "steps": 1, "inner_iters": 150, "lr": 0.05, "max_lr_drops": 2}
    with pytest.raises(jkoflow.FlowDivergedError, match="non-finite loss"):
        jkoflow.JKOSolver(**settings).run(_DriftWithACliff(), lambda: _net(1), x0)
    with pytest.warns(jkoflow.solver.SubstepWarning, match="retrying as 2 substeps of tau = 0.5"):
        flow = jkoflow.JKOSolver(**settings, on_failure="substeps").run(
            _DriftWithACliff(), lambda: _net(1), x0
        )
    # tau = 1 failed, then 0.5 failed, 4 substeps of 0.25 made the step
    assert [r.tau for r in flow.records] == [0.25] * 4
    assert list(flow.times) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert all("split into 4" in r.substep for r in flow.records)
    # each substep moved the particles by -0.25 (the exact JKO step of a unit drift), within the cliff
    moves = [float((b - a).mean()) for a, b in zip(flow.particles, flow.particles[1:])]
    assert moves == pytest.approx([-0.25] * 4, abs=0.02)
    with pytest.raises(jkoflow.FlowDivergedError, match="after splitting step 1 into 2 substeps"):
        jkoflow.JKOSolver(**settings, on_failure="substeps", max_substeps=2).run(
            _DriftWithACliff(), lambda: _net(1), x0
        )


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (
            lambda S, f, x: S.run(f, lambda: _net(1), x.double()),
            "is torch.float32 on cpu but the particles are torch.float64",
        ),
        (
            lambda S, f, x: S.run(f, lambda: _net(2), x),
            "the potential net has dim=2 but the particles have d=1",
        ),
        (lambda S, f, x: S.run(f, _net(1), x), "make_potential is a ICNN instance"),
        (lambda S, f, x: S.run(f, lambda: torch.zeros(1), x), "make_potential() returned Tensor"),
        (lambda S, f, x: S.run(f, lambda: _net(1), x[:, 0]), "expected a floating tensor of shape (n, d)"),
    ],
)
def test_python_api_mistakes_are_clear_errors(call, fragment: str) -> None:
    solver = jkoflow.JKOSolver(tau=0.1, steps=1, inner_iters=2)
    with pytest.raises((ValueError, TypeError)) as info:
        call(solver, _potential("quadratic"), torch.randn(10, 1))
    assert fragment in str(info.value)


def test_a_pair_term_infinite_on_no_single_particle_says_the_term_couples_them() -> None:
    """Two particles of T(x) on one point make the aggregation energy +inf; no single particle
    is to blame, and the diagnosis says so instead of counting 0 bad particles."""
    energy = REGISTRY.get("functional", "interaction")(W="aggregation")
    x = torch.linspace(-1.0, 1.0, 8, dtype=torch.float64)[:, None]
    y = x.clone()
    y[3] = y[4]
    solver = jkoflow.JKOSolver(tau=0.1, steps=1)
    transport = ((y - x) ** 2).sum(1).mean() / 0.2
    cause, _hint, hopeless = solver._diagnose(energy, x, None, y, transport, None)
    assert (
        "is +inf on the particles of T(x) together but at no single one (the term couples particles" in cause
    )
    assert "but finite at the current particles" in cause
    assert not hopeless
    assert "at 0 of" not in cause
