"""The plugin-author kit (jkoflow.testing) rejects plugins a real author could write by accident.

Each wrong plugin below is small and plausible: a net convex only near the origin, a net with a
tiny non-convex bump, a divergence that pairs points in order, one that is biased in float32 or
on large clouds, one that never separates, a functional that averages the log-determinants.
For each, the check must raise with a message saying what is wrong, and the failure is verified
independently of the kit (the Hessian recomputed at the reported point, the divergence
recomputed on permuted clouds, ...), so a test passes only when the plugin really is wrong.
"""

from __future__ import annotations

import copy
import functools
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import jkoflow
import pytest
import torch
from jkoflow.functional import Functional, Need, StepContext
from jkoflow.testing import (
    ConformanceError,
    ConvexityError,
    assert_valid_divergence,
    assert_valid_functional,
    assert_valid_potential_net,
)
from torch import Tensor

pytest_plugins = ["pytester"]
HOME = os.path.expanduser("~")  # pytester points HOME at a temporary folder; plugins' caches live here


# --- wrong potential nets ---------------------------------------------------------------
class _ProjectedQuadratic(jkoflow.PotentialNet):
    """Base of the nets below: ``0.5 (1 + w) |x|^2 + extra(x)`` with ``w = 0`` initially and
    ``project()`` clamping ``w >= 0`` (so ``w`` affects forward, transport and Hessian)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.w = torch.nn.Parameter(torch.zeros(()))

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.w.zero_()

    def project(self) -> None:
        with torch.no_grad():
            self.w.clamp_(min=0.0)


class TailNonConvex(_ProjectedQuadratic):
    """``u = sum_j (1 + w) x_j^2 / 2 - 0.5 relu(|x_j| - a)^3``: ``u_jj = 1 + w - 3 relu(|x_j| - a)``,
    convex on ``[-a, a]^d`` and beyond it up to ``|x_j| = a + 1/3``, not further out."""

    def __init__(self, dim: int, threshold: float = 2.0) -> None:
        super().__init__(dim)
        self.threshold = threshold

    def forward(self, x: Tensor) -> Tensor:
        tail = torch.relu(x.abs() - self.threshold).pow(3)
        return ((1 + self.w) * x.pow(2) / 2 - 0.5 * tail).sum(-1)


class SmallBump(_ProjectedQuadratic):
    """``u = 0.5 (1 + w) |x|^2 + c exp(-|x - c0|^2 / (2 s^2))`` with ``c = 2 s^2``: the Hessian at
    ``c0`` is ``(1 - c / s^2) I = -I``, non-convex on a ball of radius ~s only."""

    S = 0.1
    CENTRES: ClassVar[dict[int, list[float]]] = {2: [0.7, -0.4], 3: [0.7, -0.4, 0.3]}

    def __init__(self, dim: int) -> None:
        super().__init__(dim)
        self.c = 2 * self.S**2
        self.register_buffer("c0", torch.tensor(self.CENTRES[dim]))

    def forward(self, x: Tensor) -> Tensor:
        c0 = self.c0.to(x.dtype)
        bump = torch.exp(-(x - c0).pow(2).sum(-1) / (2 * self.S**2))
        return 0.5 * (1 + self.w) * x.pow(2).sum(-1) + self.c * bump


def _hessian64(net: jkoflow.PotentialNet, z: list[float]) -> Tensor:
    """The Hessian of ``net`` at ``z`` by torch.autograd.functional (not the net's own
    ``hessian``, not the kit's), in float64."""
    net64 = copy.deepcopy(net).double()
    return torch.autograd.functional.hessian(
        lambda p: net64(p[None])[0], torch.tensor(z, dtype=torch.float64)
    )


def _verify_counterexample(net: jkoflow.PotentialNet, exc: ConvexityError) -> None:
    """The reported counterexample really violates convexity, recomputed from ``forward``."""
    ce = exc.counterexample
    assert ce.kind in ("hessian", "jensen"), ce
    if ce.kind == "hessian":
        lam = float(torch.linalg.eigvalsh(_hessian64(net, ce.z))[0])
        assert lam < 0, (lam, ce)
        assert lam == pytest.approx(ce.lhs, rel=1e-6, abs=1e-9)
    else:
        net64 = copy.deepcopy(net).double()
        x, y, z = (torch.tensor([v], dtype=torch.float64) for v in (ce.x, ce.y, ce.z))
        assert torch.allclose(z, ce.t * x + (1 - ce.t) * y)
        with torch.no_grad():
            fx, fy, fz = float(net64(x)), float(net64(y)), float(net64(z))
        assert fz > ce.t * fx + (1 - ce.t) * fy, (fz, fx, fy, ce)


@functools.cache
def _tail_error(dim: int) -> ConvexityError:
    """The kit's error on TailNonConvex(dim) (computed once: hypothesis shrinks it, ~2 s)."""
    with pytest.raises(ConvexityError) as info:
        assert_valid_potential_net(TailNonConvex(dim))
    return info.value


@pytest.mark.parametrize("dim", [2, 3])
def test_a_net_convex_only_near_the_origin_is_caught_on_the_default_box(dim: int) -> None:
    exc = _tail_error(dim)
    assert "checked on the default box [-5, 5]^" in str(exc)
    _verify_counterexample(TailNonConvex(dim), exc)
    # and the reported point lies where u_jj = 1 - 3 (|z_j| - 2) < 0 for some j
    assert max(abs(c) for c in exc.counterexample.z) > 7 / 3


@pytest.mark.parametrize("dim", [2, 3])
def test_the_same_net_passes_on_the_old_small_box(dim: int) -> None:
    """Documents that the region matters: on [-2, 2]^d the net is convex, and passes."""
    assert_valid_potential_net(TailNonConvex(dim), bounds=2.0)


@pytest.mark.parametrize("dim", [2, 3])
def test_a_small_non_convex_bump_is_caught(dim: int) -> None:
    net = SmallBump(dim)
    # independently of the kit: the Hessian at the bump's centre is -I
    h = _hessian64(net, SmallBump.CENTRES[dim])
    assert torch.allclose(h, -torch.eye(dim, dtype=torch.float64), atol=1e-12)
    with pytest.raises(ConvexityError, match="is not convex") as info:
        assert_valid_potential_net(net)
    _verify_counterexample(net, info.value)
    # the deterministic sweep is what finds it ...
    assert "found by the sweep" in str(info.value)
    # ... and hypothesis alone (30 segments, no sweep) misses a bump of radius ~0.1 in [-5, 5]^d.
    # Asserted because it is deterministic: the search is seeded (seed=0) with no example
    # database, so the same segments are drawn on every run of a given hypothesis version.
    assert_valid_potential_net(SmallBump(dim), max_examples=30, sweep=0)


@pytest.mark.parametrize("dim", [2, 3])
def test_a_region_given_as_points_is_checked(dim: int) -> None:
    net = TailNonConvex(dim, threshold=6.0)  # convex on [-6, 6]^d (and up to 6 1/3), not beyond
    assert_valid_potential_net(net)  # the default box [-5, 5]^d is inside the convex part
    pts = 4 * torch.randn(500, dim, generator=torch.Generator().manual_seed(dim), dtype=torch.float64)
    assert float(pts.abs().max()) > 6  # the points (and their widened box) reach the tails
    with pytest.raises(ConvexityError, match="the given points") as info:
        assert_valid_potential_net(net, region=pts)
    _verify_counterexample(net, info.value)
    assert max(abs(c) for c in info.value.counterexample.z) > 6 + 1 / 3


# --- wrong divergences ------------------------------------------------------------------
@pytest.fixture(scope="module")
def energy_distance() -> type[jkoflow.Divergence]:
    registry = jkoflow.default_registry()
    if "energy_distance" not in registry.names("divergence"):
        pytest.skip("the divergence 'energy_distance' (jkoflow-example-plugin) is not installed")
    return registry.get("divergence", "energy_distance")


class PairwiseInOrder(jkoflow.Divergence):
    """``mean_{i < min(n, m)} |x_i - y_i|^2``: pairs the points in the order they are listed."""

    supports_weights = False

    def __call__(self, x: Tensor, y: Tensor, a: Tensor | None = None, b: Tensor | None = None) -> Tensor:
        k = min(x.shape[0], y.shape[0])
        return (x[:k] - y[:k]).pow(2).sum(-1).mean()


class _Wrapped(jkoflow.Divergence):
    def __init__(self, inner: jkoflow.Divergence) -> None:
        self.inner = inner


class Float32Negative(_Wrapped):
    """The energy distance, minus 1e-3 in float32 (a "correction" applied in the wrong dtype)."""

    def __call__(self, x: Tensor, y: Tensor, a: Tensor | None = None, b: Tensor | None = None) -> Tensor:
        d = self.inner(x, y, a, b)
        return d - 1e-3 if x.dtype == torch.float32 else d


class LargeCloudBiased(_Wrapped):
    """The energy distance on the first 64 points of a cloud of more than 100 (a "speed-up")."""

    @staticmethod
    def _head(c: Tensor, w: Tensor | None) -> tuple[Tensor, Tensor | None]:
        if c.shape[0] <= 100:
            return c, w
        return c[:64], None if w is None else w[:64] / w[:64].sum()

    def __call__(self, x: Tensor, y: Tensor, a: Tensor | None = None, b: Tensor | None = None) -> Tensor:
        (x, a), (y, b) = self._head(x, a), self._head(y, b)
        return self.inner(x, y, a, b)


class Zero(jkoflow.Divergence):
    """``0``: satisfies every identity of a divergence but separation."""

    def __call__(self, x: Tensor, y: Tensor, a: Tensor | None = None, b: Tensor | None = None) -> Tensor:
        return 0 * x.sum()


def _cloud(n: int, dim: int = 2, seed: int = 0, dtype: torch.dtype = torch.float64) -> Tensor:
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype)


def test_a_divergence_that_pairs_points_in_order_is_caught() -> None:
    with pytest.raises(ConformanceError, match="reordering the points changes D|listed twice"):
        assert_valid_divergence(PairwiseInOrder())
    # independently: permuting one cloud changes the value
    x, y = _cloud(10, seed=1), _cloud(10, seed=2)
    d, d_perm = PairwiseInOrder()(x, y), PairwiseInOrder()(x.flip(0), y)
    assert abs(float(d) - float(d_perm)) > 0.1, (float(d), float(d_perm))


def test_a_divergence_negative_in_float32_only_is_caught(energy_distance) -> None:
    with pytest.raises(ConformanceError, match="float32") as info:
        assert_valid_divergence(Float32Negative(energy_distance()))
    assert "torch.float32" in str(info.value)
    # independently: D(x, x) < 0 in float32, exactly 0 in float64
    div = Float32Negative(energy_distance())
    x = _cloud(50)
    assert float(div(x.float(), x.float())) < -5e-4
    assert float(div(x, x)) == 0.0


def test_a_divergence_biased_on_large_clouds_is_caught(energy_distance) -> None:
    with pytest.raises(ConformanceError, match="reordering the points changes D|listed twice|expected 0"):
        assert_valid_divergence(LargeCloudBiased(energy_distance()))
    # independently: exact on small clouds (so small hypothesis clouds cannot see it) ...
    exact, div = energy_distance(), LargeCloudBiased(energy_distance())
    xs, ys = _cloud(50, seed=1), 0.5 + _cloud(60, seed=2)
    assert float(div(xs, ys)) == pytest.approx(float(exact(xs, ys)), rel=1e-12)
    # ... but on 200 / 300 points it depends on their order: D(x, x permuted) != 0 (the same measure)
    x, y = _cloud(200, seed=1), 0.5 + 1.3 * _cloud(300, seed=2)
    p = torch.randperm(200, generator=torch.Generator().manual_seed(0))
    d, d_perm = float(div(x, y)), float(div(x[p], y))
    assert abs(d - d_perm) > 1e-2 * abs(float(exact(x, y))), (d, d_perm)
    assert float(div(x[p], x)) > 1e-3


def test_a_divergence_that_never_separates_is_caught(energy_distance) -> None:
    with pytest.raises(ConformanceError, match="separate"):
        assert_valid_divergence(Zero())
    x = _cloud(200)
    shifted = x + torch.tensor([1.0, 0.0], dtype=torch.float64)
    assert float(Zero()(x, shifted)) == 0.0
    assert float(energy_distance()(x, shifted)) > 0.1  # the measures do differ


@pytest.mark.parametrize("name", ["energy_distance", "mmd", "w2"])
def test_the_builtin_divergences_still_pass(name: str) -> None:
    registry = jkoflow.default_registry()
    if name not in registry.names("divergence"):
        pytest.skip(f"divergence {name!r} is not installed")
    assert_valid_divergence(registry.get("divergence", name)())


# --- a wrong functional -----------------------------------------------------------------
class PorousMedium(Functional):
    """``F(rho) = int rho^2 dx = E_rho[rho]``: value ``mean_i exp(l_i)``; after the step the
    pushed particle ``T(x_i)`` has log-density ``l_i - log det H_u(x_i)``."""

    needs = frozenset({Need.LOGDET, Need.LOG_DENSITY})

    def inner_objective(self, ctx: StepContext) -> Tensor:
        assert ctx.logdet is not None and ctx.log_density is not None
        return torch.exp(ctx.log_density - ctx.logdet.surrogate).mean()

    def value(self, x: Tensor, log_density: Tensor | None = None) -> float | None:
        return None if log_density is None else float(torch.exp(log_density).mean())


class PorousMediumMeanLogdet(PorousMedium):
    """The same with the particles' *mean* log-det: right only when ``H_u`` is the same everywhere."""

    def inner_objective(self, ctx: StepContext) -> Tensor:
        assert ctx.logdet is not None and ctx.log_density is not None
        return torch.exp(ctx.log_density - ctx.logdet.surrogate.mean()).mean()


def test_the_correct_porous_medium_surrogate_passes() -> None:
    assert_valid_functional(PorousMedium())
    assert_valid_functional(PorousMedium(), dim=1)


def test_a_functional_using_the_mean_logdet_is_caught_only_along_non_affine_maps() -> None:
    # the first direction is an affine map, whose log-det is the same at every particle:
    # the mistake cannot show there
    assert_valid_functional(PorousMediumMeanLogdet(), directions=1)
    with pytest.raises(ConformanceError, match="the surrogate's gradient is not F's") as info:
        assert_valid_functional(PorousMediumMeanLogdet())
    assert "H_u differs between particles" in str(info.value)


# --- the pytest plugin ------------------------------------------------------------------
def test_conformance_counts_add_up(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", HOME)
    pytester.makepyfile("def test_ordinary():\n    assert True\n")
    result = pytester.runpytest("--jkoflow-conformance", "-p", "no:cacheprovider", "-k", "ficnn")
    text = result.stdout.str()
    match = re.search(r"collected (-?\d+) items? / (-?\d+) deselected / (-?\d+) selected", text)
    assert match, text[-3000:]
    collected, deselected, selected = map(int, match.groups())
    assert min(collected, deselected, selected) >= 0, match.group(0)
    assert collected == deselected + selected, match.group(0)
    assert selected >= 2, match.group(0)
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) == selected and "failed" not in outcomes, outcomes


def test_a_plugin_missing_an_optional_extra_is_skipped_with_its_reason(tmp_path: Path) -> None:
    """A third-party distribution whose plugin needs a module listed only under one of its
    extras (``Requires-Dist: jkoflow_missing_dep; extra == "fancy"``): on an install without
    that extra the conformance item is skipped with the install command, not failed; a plugin
    that fails for any other reason still fails."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "fakeplug_optional.py").write_text("import jkoflow_missing_dep  # only in the 'fancy' extra\n")
    (site / "fakeplug_broken.py").write_text("raise RuntimeError('a real bug')\n")
    for dist, module, requires in (
        ("fakeplug-optional", "fakeplug_optional", 'Requires-Dist: jkoflow_missing_dep; extra == "fancy"\n'),
        ("fakeplug-broken", "fakeplug_broken", ""),
    ):
        info = site / f"{dist.replace('-', '_')}-0.1.dist-info"  # normalized: importlib dedups by it
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n{requires}")
        (info / "entry_points.txt").write_text(f"[jkoflow.plugins]\n{module} = {module}\n")
    env = {**os.environ, "HOME": HOME, "PYTHONPATH": str(site)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "--jkoflow-conformance",
            "-k",
            "load",
            "-rs",
            "-W",
            "ignore",
        ],
        check=False,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    out = proc.stdout + proc.stderr
    assert "1 skipped" in out and "1 failed" in out, out[-3000:]
    assert "optional extra 'fancy' (pip install 'fakeplug-optional[fancy]')" in out, out[-3000:]
    assert "fakeplug-broken" in out and "a real bug" in out, out[-3000:]


def test_a_convexity_failure_message_is_short() -> None:
    message = str(_tail_error(2))
    assert len(message) < 600, (len(message), message)
    assert "TailNonConvex" in message
    assert "<module" not in message
    assert "Falsifying example" not in message


# --- the fused Hessian paths of a potential net ------------------------------------------------
def _icnn(dim: int = 12) -> jkoflow.PotentialNet:
    from jkoflow.plugins.potentials import ficnn

    torch.manual_seed(0)
    net = ficnn(dim, widths=(2, 3), init_scale=1.0)
    with torch.no_grad():
        net.out_z.uniform_(0.5, 1.5)
    return net


def test_the_icnn_low_rank_form_passes() -> None:
    net = _icnn()
    assert net.hessian_rank() == 5
    assert_valid_potential_net(net, max_examples=5, sweep=64)


def test_a_low_rank_form_that_drops_the_curvature_weights_is_caught() -> None:
    """``H_u = L (I + W diag(c) W^T) L^T`` with ``c`` set to 1: shapes and T are right, the Hessian
    is not; the solver would fit a wrong log-det."""
    from jkoflow.plugins.potentials import ICNN
    from jkoflow.potential import LowRankHessian

    class OnesWeights(ICNN):
        def transport_and_low_rank_hessian(self, x, create_graph=True):  # type: ignore[no-untyped-def]
            y, low = super().transport_and_low_rank_hessian(x, create_graph)
            return y, LowRankHessian(low.chol, low.basis, low.coefficients, torch.ones_like(low.weights))

    net = OnesWeights(12, widths=(2, 3), init_scale=1.0)
    net.load_state_dict(_icnn().state_dict())
    with pytest.raises(AssertionError, match="transport_and_low_rank_hessian"):
        assert_valid_potential_net(net, max_examples=5, sweep=64)


def test_a_transport_and_hessian_that_disagrees_with_transport_is_caught() -> None:
    """The one-sweep path (what the inner loop uses with an exact log-det) returning a shifted
    ``T``, while ``transport`` and ``hessian`` are right."""
    from jkoflow.plugins.potentials import ICNN

    class ShiftedSweep(ICNN):
        def transport_and_hessian(self, x, create_graph=True):  # type: ignore[no-untyped-def]
            y, h = super().transport_and_hessian(x, create_graph)
            return y + 1e-3, h

    net = ShiftedSweep(12, widths=(2, 3), init_scale=1.0)
    net.load_state_dict(_icnn().state_dict())
    with pytest.raises(AssertionError, match="transport_and_hessian"):
        assert_valid_potential_net(net, max_examples=5, sweep=64)
