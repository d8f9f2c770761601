"""The inner loop as a step function (issue 11): stopping rule, plateau schedule, L-BFGS, the
one-sweep hot path and what a step records."""

from __future__ import annotations

import json

import jkoflow
import pytest
import torch
from jkoflow.inner import PLATEAU_DROPS, stalled
from jkoflow.registry import default_registry

REGISTRY = default_registry()


def _net(dim: int = 1, widths: tuple[int, ...] = (8,)) -> jkoflow.PotentialNet:
    return REGISTRY.get("net", "ficnn")(dim, widths=list(widths))


def _quadratic_energy(a: float) -> jkoflow.Functional:
    """``F(rho) = int a |x|^2 / 2 d rho``: the JKO step is exactly ``x -> x / (1 + a tau)``."""
    return REGISTRY.get("functional", "potential")(V={"kind": "quadratic", "matrix": a})


def test_stalled_is_invariant_under_shift_and_scale_of_the_loss() -> None:
    # geometric decay: the last window improves by 0.9^10 relative to the window before
    losses = [0.9**k for k in range(60)]
    for scale, shift in [(1.0, 0.0), (1e-6, 0.0), (1e6, -3.0), (2.0, 1e3)]:
        ls = [scale * v + shift for v in losses]
        assert stalled(ls, 0, 10, 0.05) == stalled(losses, 0, 10, 0.05)
    assert stalled(losses, 0, 10, 0.05)  # improvement 0.9^40..0.9^60 is ~1 % of the total
    assert not stalled(losses[:25], 0, 10, 0.05)  # 25 iterations: still improving fast
    assert not stalled(losses, 0, 10, 0.0)  # tol = 0: never
    assert not stalled(losses, 45, 10, 0.05)  # fewer than 2 windows since the last lr change


def test_a_constant_loss_after_progress_stalls_and_an_oscillating_one_does_not_until_it_settles() -> None:
    flat = [1.0, 0.5] + [0.25] * 40
    assert stalled(flat, 0, 10, 0.01)
    zigzag = [1.0 - 0.02 * k + (0.05 if k % 2 else 0.0) for k in range(40)]  # still descending
    assert not stalled(zigzag, 0, 10, 0.01)


def test_tol_ends_the_inner_loop_before_the_cap_at_the_exact_jko_step() -> None:
    torch.manual_seed(0)
    x = torch.randn(64, 1)
    a, tau = 2.0, 0.1
    common = {"tau": tau, "steps": 1, "inner_iters": 800, "lr": 1e-2, "seed": 0}
    capped = jkoflow.JKOSolver(**common, tol=0.0).run(_quadratic_energy(a), _net, x)
    early = jkoflow.JKOSolver(**common, tol=1e-3, lr_schedule="plateau").run(_quadratic_energy(a), _net, x)
    (rc,) = capped.records
    (re,) = early.records
    assert rc.iterations == 800 and rc.stop == "cap"
    assert re.stop == "tol" and re.iterations < 400
    exact = x / (1 + a * tau)
    err_early = float((early.particles[-1] - exact).abs().max())
    assert err_early < 5e-3, err_early  # the exact step is ~0.17 |x| away from x


@pytest.mark.parametrize("drops", [None, 0, 2])
def test_plateau_schedule_divides_the_lr_before_stopping(drops: int | None) -> None:
    torch.manual_seed(0)
    x = torch.randn(32, 1)
    seen: list[float] = []
    extra = {} if drops is None else {"plateau_drops": drops}
    solver = jkoflow.JKOSolver(
        tau=0.1, steps=1, inner_iters=3000, lr=1e-2, tol=1e-2, lr_schedule="plateau", **extra
    )
    assert solver.plateau_drops == (PLATEAU_DROPS if drops is None else drops)
    from jkoflow import inner

    original = inner.InnerLoop.step

    def spy(self: inner.InnerLoop, state: inner.InnerState) -> inner.InnerState:
        seen.append(state.lr)
        return original(self, state)

    inner.InnerLoop.step = spy  # type: ignore[method-assign]
    try:
        flow = solver.run(_quadratic_energy(1.0), _net, x)
    finally:
        inner.InnerLoop.step = original  # type: ignore[method-assign]
    assert flow.records[0].stop == "tol"
    assert sorted(set(seen), reverse=True) == pytest.approx(
        [1e-2 / 10**k for k in range(solver.plateau_drops + 1)]
    )


def test_lbfgs_reaches_the_exact_jko_step_in_few_iterations() -> None:
    torch.manual_seed(1)
    x = torch.randn(64, 2, dtype=torch.float64)
    a, tau = 3.0, 0.2
    solver = jkoflow.JKOSolver(tau=tau, steps=1, inner_iters=200, lr=1.0, optimizer="lbfgs", tol=1e-6)
    flow = solver.run(_quadratic_energy(a), lambda: _net(2).double(), x)
    (record,) = flow.records
    err = float((flow.particles[-1] - x / (1 + a * tau)).abs().max())
    assert err < 3e-3, err  # the step moves particles by 0.375 |x|; Adam to its plateau: 1.2e-3
    assert record.stop == "tol" and record.iterations < 100
    assert record.evaluations >= record.iterations
    adam = jkoflow.JKOSolver(tau=tau, steps=1, inner_iters=400, lr=1e-2, tol=1e-4, lr_schedule="plateau").run(
        _quadratic_energy(a), lambda: _net(2).double(), x
    )
    assert record.inner_loss[-1] <= adam.records[0].inner_loss[-1] + 1e-9


@pytest.mark.parametrize("setting", [{"batch_size": 8}, {"fresh_samples": 8}])
def test_lbfgs_refuses_a_stochastic_objective(setting: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="optimizer='lbfgs'.*deterministic objective"):
        jkoflow.JKOSolver(tau=0.1, steps=1, optimizer="lbfgs", **setting)


@pytest.mark.parametrize("tol", [-0.1, 1.0, float("nan"), True, "0.1"])
def test_tol_outside_zero_one_is_refused(tol: object) -> None:
    with pytest.raises(ValueError, match="tol="):
        jkoflow.JKOSolver(tau=0.1, steps=1, tol=tol)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kind", "dim", "widths", "quadratic"),
    [
        ("ficnn", 3, [6, 6], "full"),
        ("resicnn", 3, [6, 6], "full"),
        ("ficnn", 1, [6, 6], "full"),  # d = 1: the element-wise path
        ("resicnn", 1, [5, 5, 5], "scalar"),
        ("ficnn", 1, [7], "none"),
        ("ficnn", 2, [7], "scalar"),  # one layer: only the c_0 Q_0 term
        ("ficnn", 4, [5, 7, 3], "none"),
    ],
)
def test_one_sweep_gives_the_same_transport_and_hessian_as_autograd(
    kind: str, dim: int, widths: list[int], quadratic: str
) -> None:
    torch.manual_seed(2)
    net = REGISTRY.get("net", kind)(dim, widths=widths, quadratic=quadratic).double()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.3 * torch.rand_like(p))
    net.project()
    x = torch.randn(5, dim, dtype=torch.float64)
    y, hess = net.transport_and_hessian(x)
    ref_y = jkoflow.PotentialNet.transport(net, x)
    ref_h = jkoflow.PotentialNet.hessian(net, x)
    torch.testing.assert_close(y, ref_y)
    torch.testing.assert_close(hess, ref_h)
    # the gradient in theta through both equals autograd's (double backpropagation)
    weights = torch.randn(5, dim, dim, dtype=torch.float64)
    params = list(net.parameters())
    grads = torch.autograd.grad(y.pow(2).sum() + (weights * hess).sum(), params, allow_unused=True)
    ref = torch.autograd.grad(ref_y.pow(2).sum() + (weights * ref_h).sum(), params, allow_unused=True)
    for p, g, r in zip(params, grads, ref, strict=True):
        g = torch.zeros_like(p) if g is None else g
        r = torch.zeros_like(p) if r is None else r
        torch.testing.assert_close(g, r)
    assert bool(grads[params.index(net.out_z)].abs().sum() > 0)


def test_exact_logdet_from_the_shared_hessian_equals_its_own_call() -> None:
    torch.manual_seed(3)
    net = _net(2, (6,)).double()
    x = torch.randn(7, 2, dtype=torch.float64)
    est = REGISTRY.get("logdet", "exact")()
    assert est.uses_hessian and est.for_dim(2) is est
    own = est(net, x)
    _, hess = net.transport_and_hessian(x)
    shared = est.from_hessian(hess)
    torch.testing.assert_close(own.value, shared.value)
    torch.testing.assert_close(own.value, torch.logdet(hess.detach()))
    auto = REGISTRY.get("logdet", "auto")(threshold=4)
    assert auto.for_dim(2).uses_hessian and not auto.for_dim(8).uses_hessian


def test_metrics_json_records_inner_iterations_and_stop(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from jkoflow.cli import main

    out = tmp_path / "run"
    spec = tmp_path / "spec.toml"
    spec.write_text(
        '[problem]\nkind = "heat"\nn = 50\n\n[solver]\nsteps = 2\ninner_iters = 400\ntol = 0.05\n'
    )
    code = main(["--threads", "1", "run", str(spec), "--out", str(out), "--no-progress"])
    assert code == 0
    records = json.loads((out / "metrics.json").read_text())
    assert [r["step"] for r in records] == [0, 1, 2]
    for r in records[1:]:
        assert 0 < r["inner_iters_used"] <= 400
        assert r["inner_stop"] in ("tol", "cap")
        assert isinstance(r["converged"], bool)
    assert any(r["inner_stop"] == "tol" and r["inner_iters_used"] < 400 for r in records[1:])


@pytest.mark.slow
def test_compiled_sweeps_give_the_eager_flow() -> None:
    spec = {"problem": {"kind": "porous-medium", "n": 50}, "solver": {"steps": 2, "inner_iters": 30}}
    eager = jkoflow.build(spec).execute()
    compiled = jkoflow.build({**spec, "solver": {**spec["solver"], "compile": True}}).execute()
    torch.testing.assert_close(compiled.particles[-1], eager.particles[-1], rtol=1e-4, atol=1e-5)
    # the compile time is reported apart: spent in step 1 (one net, one shape), none eager
    assert compiled.records[0].compile_seconds > 0
    assert compiled.records[0].compile_seconds <= compiled.records[0].seconds
    assert all(r.compile_seconds == 0 for r in eager.records)


def test_the_low_rank_route_drives_the_same_flow_as_the_dense_hessian(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Fokker-Planck in d = 16 with a (4, 4) ICNN (r = 8 <= d / 2): the inner loop and the push
    take the low-rank route of the exact log-det; with the route switched off
    (``LOW_RANK_RATIO = 0``) the dense Cholesky route gives the same losses and particles (float64).
    No log-densities are carried, so the push after a step needs no log-det."""
    import jkoflow.logdet

    torch.manual_seed(0)
    d = 16
    x = torch.randn(48, d, dtype=torch.float64)
    functional = _quadratic_energy(1.5) + REGISTRY.get("functional", "entropy")()
    settings = {"tau": 0.1, "steps": 2, "inner_iters": 30, "lr": 1e-2, "seed": 0, "tol": 0.0}

    def make() -> jkoflow.PotentialNet:
        torch.manual_seed(1)
        return _net(d, (4, 4)).double()

    calls = []
    original = type(make()).transport_and_low_rank_hessian

    def spy(self, x, create_graph=True):  # type: ignore[no-untyped-def]
        calls.append(create_graph)
        return original(self, x, create_graph)

    monkeypatch.setattr(type(make()), "transport_and_low_rank_hessian", spy)
    exact = REGISTRY.get("logdet", "exact")()
    low = jkoflow.JKOSolver(**settings).run(functional, make, x, logdet=exact)
    assert calls.count(True) == 60 and calls.count(False) == 0  # every inner iteration of both steps
    monkeypatch.setattr(jkoflow.logdet, "LOW_RANK_RATIO", 0.0)
    calls.clear()
    dense = jkoflow.JKOSolver(**settings).run(functional, make, x, logdet=exact)
    assert not calls
    for a, b in zip(low.records, dense.records):
        assert a.inner_loss == pytest.approx(b.inner_loss, rel=1e-9)
    torch.testing.assert_close(low.particles[-1], dense.particles[-1], rtol=1e-9, atol=1e-10)
    assert float((low.particles[-1] - x).abs().max()) > 0.05  # the flow moved
