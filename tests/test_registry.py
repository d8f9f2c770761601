"""Plugin registry: entry-point discovery of a third-party distribution, errors."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import jkoflow
import pytest
from jkoflow.registry import DuplicateNameError, Registry, UnknownNameError, default_registry, hookimpl


def _install_fake_distribution(
    root: Path, dist: str, module: str, source: str, entry: str | None = None
) -> None:
    """Write an importable module plus a ``.dist-info`` advertising it in ``jkoflow.plugins``
    (what ``pip install`` of a plugin package leaves on ``sys.path``)."""
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[jkoflow.plugins]\n{entry or module} = {module}\n")


PLUGIN = """
import torch
from jkoflow.functional import Functional
from jkoflow.registry import hookimpl


class LinearDrift(Functional):
    '''F(rho) = <b, E_rho x>: the JKO step translates every particle by -tau b.'''

    def __init__(self, b: float = 1.0) -> None:
        self.b = b

    def inner_objective(self, ctx):
        return self.b * ctx.y.sum(-1).mean()

    def value(self, x, log_density=None):
        return float(self.b * x.sum(-1).mean())


@hookimpl
def jkoflow_register(registry):
    registry.add("functional", "linear_drift", LinearDrift)
"""


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith("fakeplug")]:
        del sys.modules[name]


def test_third_party_entry_point_adds_a_functional_usable_from_a_spec(site: Path) -> None:
    _install_fake_distribution(site, "fakeplug-drift", "fakeplug_drift", PLUGIN)
    registry = Registry()
    registry.load_entry_points()
    assert registry.listing()["functional"]["linear_drift"] == "fakeplug-drift"
    assert registry.listing()["net"]["ficnn"] == "jkoflow"
    tau, b = 0.1, 2.0
    run = jkoflow.build(
        {
            "dim": 1,
            "sampler": {"kind": "gaussian", "n": 50},
            "terms": [{"kind": "linear_drift", "b": b}],
            "solver": {"tau": tau, "steps": 1, "inner_iters": 150, "lr": 2e-2},
            "potential": {"widths": [4]},
        },
        registry,
    )
    flow = run.execute()
    shift = (flow.particles[1] - flow.particles[0]).mean()
    assert abs(float(shift) + tau * b) < 2e-3  # argmin b y + (y - x)^2 / (2 tau) = x - tau b


def test_broken_plugin_is_reported_and_others_survive(site: Path) -> None:
    _install_fake_distribution(
        site, "fakeplug-broken", "fakeplug_broken", "raise ImportError('missing dependency zzz')\n"
    )
    registry = Registry()
    with pytest.warns(RuntimeWarning, match="fakeplug-broken"):
        registry.load_entry_points()
    assert [f.provider for f in registry.failures] == ["fakeplug-broken"]
    assert "zzz" in registry.failures[0].error
    assert "ficnn" in registry.names("net")


def test_duplicate_names_name_both_providers(site: Path) -> None:
    _install_fake_distribution(
        site,
        "fakeplug-dup",
        "fakeplug_dup",
        """
from jkoflow.registry import hookimpl

@hookimpl
def jkoflow_register(registry):
    registry.add("net", "ficnn", object)
""",
    )
    registry = Registry()
    with pytest.raises(DuplicateNameError, match=r"'jkoflow'.*'fakeplug-dup'"):
        registry.load_entry_points()


def test_unknown_names_list_close_matches() -> None:
    registry = default_registry()
    with pytest.raises(UnknownNameError, match="did you mean 'porous_medium'"):
        registry.get("functional", "porous_medum")
    with pytest.raises(UnknownNameError, match="unknown registry kind 'nett'.*did you mean 'net'"):
        registry.get("nett", "ficnn")


def test_local_registration_without_packaging() -> None:
    class Plugin:
        @hookimpl
        def jkoflow_register(self, registry: Registry) -> None:
            registry.add("kernel", "zero", lambda: lambda z: z.sum(-1) * 0)

    registry = Registry()
    registry.register(Plugin(), provider="my-notebook")
    assert registry.listing()["kernel"] == {"zero": "my-notebook"}
