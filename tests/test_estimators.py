"""Log-determinant estimators: every registered ``logdet`` estimator against exact autograd.

The suite iterates ``default_registry().names("logdet")``, so a third-party estimator gets it
for free (with the default tolerances below). Two families of Hessians:

* explicit SPD matrices ``H = Q diag(lambda) Q^T`` with known spectra
  (``lambda = logspace(0, log10 kappa, d)``, condition numbers ``kappa`` = 10 and 1e4) through a
  quadratic potential ``u(x) = 1/2 x^T (H + sym(P)) x`` whose parameter ``P = 0`` gives the exact
  ``theta``-gradient ``d/dP log det = H^{-1}``;
* Hessians of random ICNNs (softplus, learned quadratic), exact value by ``torch.linalg.slogdet``
  of the autograd Hessian (the generic :meth:`PotentialNet.hessian`, independent of the ICNN's
  closed form) and exact gradient by autograd through it.

Measured: the relative error of the particle mean of ``log det H_u`` (what ``F`` uses), the
mean per-particle relative error, and the cosine between the estimator's ``theta``-gradient of
``mean_i log det H_u(x_i)`` and the exact one. Fixed seeds; tolerances per estimator at its
default budget (``slq``: 8 probes x 30 Lanczos steps; ``hutchinson_cg``: 4 CG probes, value by
SLQ 8 x 30; ``hutchpp``: sketch 4 + 4 probes, 30 steps): see ``TOLERANCES``.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from jkoflow.logdet import LogDetError, LogDetWarning
from jkoflow.plugins.estimators import (
    AutoLogDet,
    ExactLogDet,
    HutchinsonCGLogDet,
    SLQLogDet,
    conjugate_gradient,
    lanczos,
)
from jkoflow.plugins.potentials import ficnn, resicnn
from jkoflow.potential import PotentialNet
from jkoflow.registry import default_registry
from jkoflow.spec import SpecError, resolve
from jkoflow.testing import strategies
from torch import Tensor, nn

NAMES = default_registry().names("logdet")

# Tolerances at each estimator's default budget, per dimension:
# (relative error of the particle mean of log det, mean per-particle relative error, minimum
# gradient cosine). The stochastic ones are Hutchinson-variance bound (32-64 particles x 4-8
# probes; the gradient has d^2 or ~10^4 entries, so its cosine drops with d at a fixed
# budget); measured values are 1.5-3x inside these (see docs/benchmarks.md).
EXACT_TOLERANCE = (1e-5, 1e-5, 0.99999)
STOCHASTIC_TOLERANCE = {
    2: (0.06, 0.40, 0.97),
    8: (0.03, 0.12, 0.96),
    32: (0.01, 0.08, 0.88),
    64: (0.015, 0.06, 0.80),
}
TOLERANCES: dict[str, dict[int, tuple[float, float, float]]] = {
    "exact": dict.fromkeys((2, 8, 32, 64), EXACT_TOLERANCE),
    "auto": dict.fromkeys((2, 8, 32, 64), EXACT_TOLERANCE),  # exact for d <= 64
    "slq": STOCHASTIC_TOLERANCE,
    "hutchinson_cg": STOCHASTIC_TOLERANCE,
    "hutchpp": STOCHASTIC_TOLERANCE,
}
DEFAULT_TOLERANCE = (0.1, 0.5, 0.75)  # third-party estimators: a sanity bar


class QuadraticPotential(PotentialNet):
    """``u(x) = 1/2 x^T (H + sym(P)) x``: Hessian ``H + sym(P)`` at every ``x``; at ``P = 0`` the
    exact gradient of ``log det`` in ``P`` is ``H^{-1}``."""

    def __init__(self, hessian: Tensor) -> None:
        super().__init__()
        self.dim = hessian.shape[0]
        self.register_buffer("base", hessian)
        self.P = nn.Parameter(torch.zeros_like(hessian))

    def matrix(self) -> Tensor:
        return self.base + 0.5 * (self.P + self.P.T)

    def forward(self, x: Tensor) -> Tensor:
        return 0.5 * ((x @ self.matrix()) * x).sum(-1)

    # closed forms keep the suite fast; the generic autograd routes are tested on the ICNN
    def hessian(self, x: Tensor, create_graph: bool = True) -> Tensor:
        h = self.matrix().expand(x.shape[0], -1, -1)
        return h if create_graph else h.detach()

    def hvp_operator(self, x: Tensor, create_graph: bool = False):  # type: ignore[no-untyped-def]
        a = self.matrix() if create_graph else self.matrix().detach()
        return lambda v: v @ a


def spd(dim: int, kappa: float, seed: int, dtype: torch.dtype = torch.float64) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=gen, dtype=dtype))
    lam = torch.logspace(0.0, math.log10(kappa), dim, dtype=dtype)
    return (q * lam) @ q.T


def random_icnn(dim: int, seed: int) -> PotentialNet:
    return strategies.random_icnn(dim, seed=seed, widths=(32, 32))


def exact_reference(potential: PotentialNet, x: Tensor) -> tuple[Tensor, list[Tensor]]:
    """Value by slogdet of the generic autograd Hessian; gradient of its mean by autograd."""
    hess = PotentialNet.hessian(potential, x, create_graph=True)
    sign, logdet = torch.linalg.slogdet(hess)
    assert bool((sign > 0).all())
    params = [p for p in potential.parameters()]
    grads = torch.autograd.grad(logdet.mean(), params, allow_unused=True)
    return logdet.detach(), [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]


def estimate(name: str, potential: PotentialNet, x: Tensor, seed: int = 1) -> tuple[Tensor, list[Tensor]]:
    estimator = default_registry().get("logdet", name)()
    torch.manual_seed(seed)
    out = estimator(potential, x)
    params = [p for p in potential.parameters()]
    grads = torch.autograd.grad(out.surrogate.mean(), params, allow_unused=True)
    return out.value, [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]


def compare(name: str, potential: PotentialNet, x: Tensor) -> tuple[float, float, float]:
    ref_value, ref_grad = exact_reference(potential, x)
    value, grad = estimate(name, potential, x)
    assert value.shape == (x.shape[0],)
    mean_err = float((value.mean() - ref_value.mean()).abs() / ref_value.mean().abs())
    particle_err = float(((value - ref_value).abs() / ref_value.abs()).mean())
    g1 = torch.cat([g.flatten() for g in grad])
    g0 = torch.cat([g.flatten() for g in ref_grad])
    cos = float(torch.nn.functional.cosine_similarity(g1.double(), g0.double(), dim=0))
    return mean_err, particle_err, cos


def check(name: str, dim: int, errors: tuple[float, float, float]) -> None:
    mean_tol, particle_tol, cos_min = TOLERANCES.get(name, {}).get(dim, DEFAULT_TOLERANCE)
    mean_err, particle_err, cos = errors
    assert mean_err <= mean_tol, f"{name}: relative error of the mean {mean_err:.4f} > {mean_tol}"
    assert particle_err <= particle_tol, (
        f"{name}: per-particle relative error {particle_err:.4f} > {particle_tol}"
    )
    assert cos >= cos_min, f"{name}: gradient cosine {cos:.4f} < {cos_min}"


@pytest.mark.filterwarnings("ignore::jkoflow.logdet.LogDetWarning")  # CG at kappa = 1e4, d = 64
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dim", [2, 8, 32, 64])
@pytest.mark.parametrize("kappa", [10.0, 1e4])
def test_estimator_on_spd_with_known_spectrum(name: str, dim: int, kappa: float) -> None:
    potential = QuadraticPotential(spd(dim, kappa, seed=dim))
    x = torch.randn(32, dim, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ref = float(torch.log(torch.logspace(0.0, math.log10(kappa), dim, dtype=torch.float64)).sum())
    assert exact_reference(potential, x)[0][0].item() == pytest.approx(ref, rel=1e-10)
    check(name, dim, compare(name, potential, x))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dim", [2, 8, 32, 64])
def test_estimator_on_icnn_hessians(name: str, dim: int) -> None:
    potential = random_icnn(dim, seed=dim)
    x = torch.randn(64, dim, generator=torch.Generator().manual_seed(0))
    check(name, dim, compare(name, potential, x))


@pytest.mark.parametrize("name", NAMES)
def test_non_positive_definite_hessian_is_an_error(name: str) -> None:
    h = spd(8, 10.0, seed=3)
    eigval, eigvec = torch.linalg.eigh(h)
    eigval[0] = -1.0
    potential = QuadraticPotential((eigvec * eigval) @ eigvec.T)
    x = torch.randn(5, 8, dtype=torch.float64)
    torch.manual_seed(0)
    with pytest.raises(LogDetError) as info:
        default_registry().get("logdet", name)()(potential, x)
    assert info.value.total == 5 and 1 <= info.value.bad <= 5
    assert "particles affected" in str(info.value)


@pytest.mark.parametrize("name", NAMES)
def test_non_finite_hessian_is_an_error(name: str) -> None:
    h = spd(4, 10.0, seed=4)
    potential = QuadraticPotential(h)
    with torch.no_grad():
        potential.base[0, 0] = float("nan")
    torch.manual_seed(0)
    with pytest.raises(LogDetError):
        default_registry().get("logdet", name)()(potential, torch.randn(3, 4, dtype=torch.float64))


def test_cg_non_convergence_warns_and_strict_raises() -> None:
    potential = QuadraticPotential(spd(32, 1e4, seed=5))
    x = torch.randn(6, 32, dtype=torch.float64)
    with pytest.warns(LogDetWarning, match="6 of 6 particles affected"):
        HutchinsonCGLogDet(cg_max_iters=2)(potential, x)
    with pytest.raises(LogDetError, match="CG did not reach"):
        HutchinsonCGLogDet(cg_max_iters=2, strict=True)(potential, x)
    with warnings.catch_warnings():
        warnings.simplefilter("error", LogDetWarning)
        HutchinsonCGLogDet(cg_max_iters=200, cg_rtol=1e-6)(potential, x)


def test_lanczos_with_d_steps_is_exact_per_probe_and_cg_solves() -> None:
    h = spd(16, 1e3, seed=6)
    potential = QuadraticPotential(h)
    x = torch.zeros(3, 16, dtype=torch.float64)
    v = torch.randn(3, 2, 16, dtype=torch.float64)
    eigval, eigvec = torch.linalg.eigh(h)
    log_h = (eigvec * torch.log(eigval)) @ eigvec.T
    krylov = lanczos(potential.hvp_operator(x), v, steps=16)
    expected = torch.einsum("npd,de,npe->np", v, log_h, v)
    torch.testing.assert_close(krylov.quadrature(torch.log), expected, rtol=1e-8, atol=1e-8)
    solve = torch.linalg.solve(h, v.reshape(-1, 16).T).T.reshape(3, 2, 16)
    torch.testing.assert_close(krylov.apply(lambda t: 1 / t), solve, rtol=1e-7, atol=1e-8)
    z, residual, _ = conjugate_gradient(potential.hvp_operator(x), v, rtol=1e-10, max_iters=200)
    assert float(residual.max()) <= 1e-10
    torch.testing.assert_close(z, solve, rtol=1e-7, atol=1e-8)


def test_auto_switches_at_threshold() -> None:
    auto = AutoLogDet(threshold=8, stochastic="slq", options={"probes": 2})
    assert isinstance(auto.choose(8), ExactLogDet)
    assert isinstance(auto.choose(9), SLQLogDet) and auto.choose(9).probes == 2
    with pytest.raises(ValueError, match="stochastic='nope'"):
        AutoLogDet(stochastic="nope")


def test_logdet_from_a_spec() -> None:
    base = {"dim": 3, "sampler": {"kind": "gaussian", "n": 4}, "terms": [{"kind": "entropy"}]}
    out = resolve({**base, "solver": {"tau": 0.1, "steps": 1, "logdet": "slq"}})
    assert out["solver"]["logdet"] == {"kind": "slq", "probes": 8, "lanczos_steps": 30, "precondition": True}
    out = resolve(
        {**base, "solver": {"tau": 0.1, "steps": 1, "logdet": {"kind": "hutchinson_cg", "probes": 2}}}
    )
    assert out["solver"]["logdet"]["probes"] == 2 and out["solver"]["logdet"]["cg_rtol"] == 1e-3
    with pytest.raises(SpecError, match="solver.logdet.probes"):
        resolve({**base, "solver": {"tau": 0.1, "steps": 1, "logdet": {"kind": "slq", "probes": "many"}}})


@pytest.mark.parametrize("make", [ficnn, resicnn])
@pytest.mark.parametrize("activation", ["softplus", "celu"])
def test_icnn_closed_forms_match_autograd(make, activation: str) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    net = make(5, widths=(6, 6, 6), activation=activation, init_scale=1.0).double()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.3 * torch.randn_like(p))
    net.project()
    x = torch.randn(7, 5, dtype=torch.float64)
    v = torch.randn(7, 3, 5, dtype=torch.float64)
    torch.testing.assert_close(net.transport(x), PotentialNet.transport(net, x))
    torch.testing.assert_close(net.hessian(x), PotentialNet.hessian(net, x))
    torch.testing.assert_close(net.hvp(x, v[:, 0]), PotentialNet.hvp(net, x, v[:, 0]))
    torch.testing.assert_close(net.hvp_operator(x)(v), PotentialNet.hvp_operator(net, x)(v))
    params = list(net.parameters())
    for closed, generic in [
        (lambda: net.transport(x).pow(2).sum(), lambda: PotentialNet.transport(net, x).pow(2).sum()),
        (
            lambda: torch.logdet(net.hessian(x)).sum(),
            lambda: torch.logdet(PotentialNet.hessian(net, x)).sum(),
        ),
        (
            lambda: (net.hvp_operator(x, True)(v) * v).sum(),
            lambda: (PotentialNet.hvp_operator(net, x, True)(v) * v).sum(),
        ),
    ]:
        grads = [torch.autograd.grad(f(), params, allow_unused=True) for f in (closed, generic)]
        for a, b, p in zip(*grads, params):
            zero = torch.zeros_like(p)
            torch.testing.assert_close(zero if a is None else a, zero if b is None else b)


class BaselinePotential(QuadraticPotential):
    """A quadratic whose :meth:`hessian_baseline` is its whole Hessian (``L^{-1} H L^{-T} = I``)."""

    def hessian_baseline(self) -> Tensor:
        return self.matrix()


@pytest.mark.parametrize("name", ["slq", "hutchinson_cg", "hutchpp"])
def test_preconditioning_with_the_whole_hessian_is_exact(name: str) -> None:
    potential = BaselinePotential(spd(16, 1e3, seed=8))
    x = torch.randn(4, 16, dtype=torch.float64)
    ref_value, ref_grad = exact_reference(potential, x)
    value, grad = estimate(name, potential, x)
    torch.testing.assert_close(value, ref_value, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(grad[0], ref_grad[0], rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("cls", [SLQLogDet, HutchinsonCGLogDet])
def test_preconditioning_by_the_icnn_quadratic_cuts_the_error(cls) -> None:  # type: ignore[no-untyped-def]
    potential = random_icnn(32, seed=9)
    x = torch.randn(64, 32, generator=torch.Generator().manual_seed(0))
    ref_value, _ = exact_reference(potential, x)
    errors = []
    for precondition in (False, True):
        torch.manual_seed(1)
        value = cls(probes=2, precondition=precondition)(potential, x).value
        errors.append(float(((value - ref_value).abs() / ref_value.abs()).mean()))
    assert errors[1] < errors[0] / 3, errors


def test_exact_logdet_in_one_dimension_names_the_bad_particles() -> None:
    """d = 1 (``log h``): ``h <= 0`` at k particles is "not positive definite" at k of n; an
    infinite ``h`` is "not finite"; positive finite ``h`` gives ``log h`` exactly."""
    from jkoflow.plugins.estimators import ExactLogDet

    exact = ExactLogDet()
    h = torch.tensor([2.0, 0.5, 1.0, 3.0])
    torch.testing.assert_close(exact.from_hessian(h.view(-1, 1, 1)).value, torch.log(h))
    with pytest.raises(LogDetError, match="not positive definite") as info:
        exact.from_hessian(torch.tensor([2.0, -1.0, 0.0, 3.0]).view(-1, 1, 1))
    assert (info.value.bad, info.value.total) == (2, 4)
    with pytest.raises(LogDetError, match="not finite") as info:
        exact.from_hessian(torch.tensor([2.0, float("inf"), 1.0, 3.0]).view(-1, 1, 1))
    assert (info.value.bad, info.value.total) == (1, 4)


# --- the low-rank route of the exact estimator (matrix determinant lemma) ---------------------
@pytest.mark.parametrize("name", ["exact", "auto"])
@pytest.mark.parametrize(("dim", "widths"), [(16, (4, 4)), (40, (8, 6, 4)), (128, (8, 8))])
def test_low_rank_route_matches_the_generic_hessian(name: str, dim: int, widths: tuple[int, ...]) -> None:
    """``r = sum(widths) <= d / 2``: ``exact`` (and ``auto``, even above its threshold at
    d = 128) go through :class:`LowRankHessian`; value and theta-gradient against ``slogdet``
    of the generic autograd Hessian."""
    from jkoflow.logdet import low_rank_route

    potential = strategies.random_icnn(dim, seed=dim, widths=widths, spectrum=(0.2, 0.5))
    assert low_rank_route(potential, dim)
    x = torch.randn(24, dim, generator=torch.Generator().manual_seed(0))
    ref_value, _ = exact_reference(potential, x)
    spread = float(ref_value.max() - ref_value.min())
    assert spread > 0.1  # the x-dependent part matters
    check(name, 64, compare(name, potential, x))
    value, _ = estimate(name, potential, x)  # and per particle, on the scale of its variation
    torch.testing.assert_close(value - value.mean(), ref_value - ref_value.mean(), rtol=0, atol=1e-4 * spread)


@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("activation", ["softplus", "celu"])
def test_low_rank_hessian_is_the_closed_form_hessian(residual: bool, activation: str) -> None:
    """``L (I + W diag(c) W^T) L^T`` rebuilt densely equals the closed-form and the autograd
    Hessian; ``log det`` from it (Cholesky + Woodbury) equals the dense Cholesky route in value and
    theta-gradient, in float64, also where some weights ``c`` are 0 (a unit with no curvature)."""
    torch.manual_seed(0)
    net = (resicnn if residual else ficnn)(
        12, widths=(2, 2, 2), activation=activation, init_scale=1.0
    ).double()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.3 * torch.randn_like(p))
        net.out_z.uniform_(0.5, 1.5)
        net.wz[0].uniform_(0.2, 1.0)
        net.wz[1].zero_()  # the middle layer's units get no curvature: c = 0 there (ficnn)
    net.project()
    x = torch.randn(9, 12, dtype=torch.float64)
    y, factored = net.transport_and_low_rank_hessian(x)
    torch.testing.assert_close(y, net.transport(x))
    torch.testing.assert_close(factored.dense(), PotentialNet.hessian(net, x))
    if not residual:
        assert bool((factored.weights[:, 2:4] == 0).all())
    exact = ExactLogDet()
    dense, low = exact.from_hessian(net.hessian(x)), exact.from_low_rank(factored)
    torch.testing.assert_close(low.value, dense.value, rtol=1e-12, atol=1e-12)
    params = list(net.parameters())
    grads = [torch.autograd.grad(out.surrogate.sum(), params, allow_unused=True) for out in (dense, low)]
    for a, b, p in zip(*grads, params):
        zero = torch.zeros_like(p)
        torch.testing.assert_close(zero if b is None else b, zero if a is None else a, rtol=1e-10, atol=1e-12)


def test_low_rank_route_with_negative_weights_and_a_singular_hessian() -> None:
    """A net that is not input-convex (``W^z`` not projected) has negative weights ``c``: the LU
    branch gives the same ``log det`` as ``slogdet`` where ``det > 0``, and a Hessian with
    ``det <= 0`` is a :class:`LogDetError` counting its particles."""
    torch.manual_seed(3)
    net = ficnn(10, widths=(3, 2), init_scale=1.0).double()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.5 * torch.randn_like(p))
        net.out_z.fill_(1.0)
        net.wz[0].uniform_(-1.0, -0.2)  # negative: c < 0 at the first layer
    x = torch.randn(6, 10, dtype=torch.float64)
    sign, ref = torch.linalg.slogdet(PotentialNet.hessian(net, x, create_graph=False))
    positive = sign > 0
    assert int(positive.sum()) >= 3  # the LU branch is compared on these particles
    _, factored = net.transport_and_low_rank_hessian(x[positive])
    assert bool((factored.weights < 0).any())
    exact = ExactLogDet()
    torch.testing.assert_close(exact.from_low_rank(factored).value, ref[positive])
    with torch.no_grad():
        net.out_z.fill_(-50.0)  # strongly concave ridges: det H <= 0 at some particles
    _, factored = net.transport_and_low_rank_hessian(x)
    sign, _ = torch.linalg.slogdet(PotentialNet.hessian(net, x))
    bad = int((sign <= 0).sum())
    assert bad >= 1
    with pytest.raises(LogDetError, match="not positive definite") as info:
        exact.from_low_rank(factored)
    assert (info.value.bad, info.value.total) == (bad, 6)


def test_auto_takes_the_exact_low_rank_route_above_its_threshold_where_it_is_cheaper() -> None:
    auto = AutoLogDet(threshold=8)  # SLQ p = 2, m = 8: 18 matvecs
    assert isinstance(auto.choose(32, ficnn(32, widths=(8, 8))), ExactLogDet)  # r = 16: 256 <= 18 * 48
    assert isinstance(auto.choose(32, ficnn(32, widths=(16, 16))), SLQLogDet)  # r = 32 > 32 / 2
    assert isinstance(auto.choose(300, ficnn(300, widths=(64, 64))), SLQLogDet)  # 128^2 > 18 * 428
    assert isinstance(auto.choose(32, ficnn(32, widths=(8, 8), alpha=0.0)), SLQLogDet)  # B may be singular
    assert isinstance(auto.choose(32), SLQLogDet)  # no net: by d alone


def test_low_rank_route_with_non_finite_parameters_is_a_logdet_error() -> None:
    """A NaN in the learned quadratic (a blown-up update) must reach the solver as a
    :class:`LogDetError` (which it recovers from), not as a failed Cholesky."""
    net = ficnn(12, widths=(2, 2))
    with torch.no_grad():
        net.quad[0, 0] = float("nan")
    x = torch.randn(5, 12)
    with pytest.raises(LogDetError, match="5 of 5"):
        ExactLogDet()(net, x)
