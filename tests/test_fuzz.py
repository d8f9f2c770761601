"""Fuzzing (hypothesis): mutated specs give a run or a SpecError, never another exception;
random clouds fed to every registered functional, log-det estimator and divergence give a
finite value or a clear error (ValueError), never NaN, inf or a foreign exception.

The default run draws a few hundred examples; ``pytest -m slow tests/test_fuzz.py`` runs the
5,000-spec budget stated in docs/robustness.md."""

from __future__ import annotations

import copy
import math
import warnings
from typing import Any

import jkoflow
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jkoflow import spec as specmod
from jkoflow.functional import LogDet, StepContext

BASES: list[dict[str, Any]] = [
    {"problem": "heat"},
    {"problem": {"kind": "porous-medium", "n": 50}},
    {"problem": {"kind": "aggregation", "n": 50}},
    {"problem": {"kind": "fokker-planck-gaussian", "dim": 3, "n": 40}},
    {
        "dim": 2,
        "seed": 1,
        "dtype": "float64",
        "sampler": {"kind": "gaussian", "n": 30, "mean": [0.0, 1.0], "std": 0.5},
        "potential": {"kind": "ficnn", "widths": [8, 8]},
        "solver": {"tau": 0.1, "steps": 2, "inner_iters": 5, "lr": 0.01, "logdet": {"kind": "exact"}},
        "terms": [
            {
                "kind": "potential",
                "weight": 1.0,
                "V": {"kind": "quadratic", "center": [1.0, 0.0], "matrix": [1.0, 2.0]},
            },
            {"kind": "entropy", "weight": 0.5},
            {"kind": "interaction", "W": "aggregation"},
        ],
    },
    {
        "dim": 1,
        "sampler": {"kind": "gaussian", "n": 20},
        "solver": {"tau": 0.05, "steps": 1, "inner_iters": 3, "fresh_samples": 8, "lr_schedule": "cosine"},
        "terms": [{"kind": "divergence_to_start", "divergence": "mmd"}, {"kind": "porous_medium", "m": 2.0}],
    },
]

VALUES = st.one_of(
    st.sampled_from(
        [
            None,
            True,
            False,
            0,
            1,
            -1,
            2,
            10**12,
            2**80,
            -0.5,
            0.0,
            1e-300,
            1e300,
            "",
            "x",
            "float64",
            "exact",
            "heat",
        ]
    ),
    st.sampled_from([math.nan, math.inf, -math.inf]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**70), 2**70),
    st.text(max_size=5),
    st.lists(st.one_of(st.floats(-10, 10), st.integers(-3, 3), st.none()), max_size=4),
    st.just({}),
    st.just({"kind": "nope"}),
    st.just([{"kind": "entropy"}]),
    st.just([[1.0, 0.0], [0.0, 1.0]]),
)


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


KEYS = ["extra", "kind", "n", "dim", "weight", "m", "V", "W", "f", "steps"]


@st.composite
def mutated_specs(draw: st.DrawFn) -> dict[str, Any]:
    """A base spec with 1-3 mutations (replace a value, delete a key, add a key). The plan is
    drawn first, independently of the spec's shape, so that hypothesis replays it exactly."""
    spec = copy.deepcopy(draw(st.sampled_from(BASES)))
    plan = draw(
        st.lists(
            st.tuples(
                st.integers(0, 10**6),
                st.sampled_from(["replace", "replace", "delete", "add"]),
                VALUES,
                st.sampled_from(KEYS),
            ),
            min_size=1,
            max_size=3,
        )
    )
    for where, action, value, key in plan:
        paths = _paths(spec)
        if not paths:
            break
        path = paths[where % len(paths)]
        parent = spec
        for step in path[:-1]:
            parent = parent[step]
        if action == "replace":
            parent[path[-1]] = copy.deepcopy(value)
        elif action == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[key] = copy.deepcopy(value)
    return spec


def _build_or_spec_error(spec: dict[str, Any]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            run = specmod.build(spec)
        except specmod.SpecError as exc:
            assert str(exc), "a SpecError must say what is wrong"
            return
    assert run.x0.ndim == 2 and bool(torch.isfinite(run.x0).all())


FUZZ = settings(deadline=None, database=None, suppress_health_check=list(HealthCheck), derandomize=True)


@settings(FUZZ, max_examples=300)
@given(spec=mutated_specs())
def test_mutated_specs_give_a_run_or_a_spec_error(spec: dict[str, Any]) -> None:
    _build_or_spec_error(spec)


@pytest.mark.slow  # 5,000 specs: about 16 s on 1 thread
@settings(FUZZ, max_examples=5000)
@given(spec=mutated_specs())
def test_five_thousand_mutated_specs(spec: dict[str, Any]) -> None:
    _build_or_spec_error(spec)


# --- random clouds through every registered functional, estimator and divergence ----------
@st.composite
def hard_clouds(draw: st.DrawFn, dim: int) -> torch.Tensor:
    n = draw(st.integers(1, 12))
    scale = 10.0 ** draw(st.integers(-6, 6))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    x = scale * torch.randn(n, dim, generator=gen, dtype=torch.float64)
    if draw(st.booleans()) and n > 1:
        x[1:] = x[0]  # all points duplicated
    elif draw(st.booleans()) and n > 2:
        x[n // 2 :] = x[: n - n // 2].clone()  # half of them
    return x


def _clear(exc: BaseException) -> bool:
    return isinstance(exc, (ValueError, jkoflow.LogDetError)) and bool(str(exc))


def _functional_names() -> list[str]:
    return jkoflow.default_registry().names("functional")


@settings(FUZZ, max_examples=40)
@given(data=st.data(), dtype=st.sampled_from([torch.float32, torch.float64]))
@pytest.mark.parametrize("name", _functional_names())
def test_functionals_on_hard_clouds_are_finite_or_refuse(
    name: str, data: st.DataObject, dtype: torch.dtype
) -> None:
    registry = jkoflow.default_registry()
    factory = registry.get("functional", name)
    try:
        functional = factory(registry=registry) if "registry" in factory.__code__.co_varnames else factory()
    except (TypeError, ValueError):
        pytest.skip(f"{name} needs parameters")
    dim = data.draw(st.integers(1, 3))
    x = data.draw(hard_clouds(dim)).to(dtype)
    log_rho = -0.5 * x.double().pow(2).sum(-1).to(dtype)
    try:
        functional.start(x, log_rho)
        value = functional.value(x, log_rho)
        theta = torch.zeros((), dtype=dtype, requires_grad=True)
        ctx = StepContext(
            x=x,
            y=x * (1 + theta),
            tau=0.1,
            logdet=LogDet(torch.zeros_like(log_rho), dim * torch.log1p(theta).expand(x.shape[0])),
            log_density=log_rho,
        )
        objective = functional.inner_objective(ctx)
    except Exception as exc:  # noqa: BLE001 - the property: only clear errors
        assert _clear(exc), f"{name} raised {type(exc).__name__}: {exc} on {tuple(x.shape)} {dtype}"
        return
    assert value is None or math.isfinite(value), (
        f"{name}.value = {value} on a cloud of shape {tuple(x.shape)}"
    )
    assert bool(torch.isfinite(objective)), f"{name}.inner_objective = {objective} on {tuple(x.shape)}"


@settings(FUZZ, max_examples=40)
@given(data=st.data(), dtype=st.sampled_from([torch.float32, torch.float64]))
@pytest.mark.parametrize("name", jkoflow.default_registry().names("divergence"))
def test_divergences_on_hard_clouds_are_finite_or_refuse(
    name: str, data: st.DataObject, dtype: torch.dtype
) -> None:
    divergence = jkoflow.default_registry().get("divergence", name)()
    x = data.draw(hard_clouds(2)).to(dtype)
    y = data.draw(hard_clouds(2)).to(dtype)
    try:
        value = divergence(x, y)
    except Exception as exc:  # noqa: BLE001
        assert _clear(exc), f"{name} raised {type(exc).__name__}: {exc}"
        return
    assert bool(torch.isfinite(value)) and float(value) >= -1e-6 * (
        1 + float(torch.cat([x, y]).abs().max()) ** 2
    ), f"{name}(x, y) = {float(value)} on clouds of shapes {tuple(x.shape)}, {tuple(y.shape)} ({dtype})"


@settings(FUZZ, max_examples=25)
@given(data=st.data())
@pytest.mark.parametrize("name", jkoflow.default_registry().names("logdet"))
def test_logdet_estimators_on_hard_clouds_are_finite_or_refuse(name: str, data: st.DataObject) -> None:
    dim = data.draw(st.integers(1, 3))
    net = jkoflow.default_registry().get("net", "ficnn")(dim, widths=[8]).double()
    estimator = jkoflow.default_registry().get("logdet", name)()
    x = data.draw(hard_clouds(dim))
    try:
        out = estimator(net, x, grad=False)
    except Exception as exc:  # noqa: BLE001
        assert _clear(exc), f"{name} raised {type(exc).__name__}: {exc}"
        return
    assert bool(torch.isfinite(out.value).all()), f"{name} gave {out.value} on {tuple(x.shape)}"
