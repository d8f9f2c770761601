"""JKOSolver refuses settings that used to run silently wrong (tau = inf wrote t = NaN, ...)."""

from __future__ import annotations

import math

import pytest
import torch
from jkoflow import JKOSolver


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("tau", math.inf),
        ("tau", math.nan),
        ("tau", -0.1),
        ("tau", "0.1"),
        ("tau", True),
        ("lr", math.inf),
        ("steps", True),
        ("steps", 2.0),
        ("inner_iters", -1),
        ("max_lr_drops", -1),
        ("max_lr_drops", 1.5),
        ("seed", "0"),
        ("warm_start", 1),
        ("progress", "yes"),
        ("batch_size", True),
    ],
)
def test_bad_setting_is_named_with_its_value(key: str, value: object) -> None:
    settings: dict[str, object] = {"tau": 0.1, "steps": 2, key: value}
    with pytest.raises(ValueError, match=rf"^{key}={value!r}: expected"):
        JKOSolver(**settings)  # type: ignore[arg-type]


def test_fresh_samples_need_inner_iterations() -> None:
    with pytest.raises(ValueError, match="inner_iters=0"):
        JKOSolver(tau=0.1, steps=1, inner_iters=0, fresh_samples=8)


def test_good_settings_are_kept() -> None:
    s = JKOSolver(tau=0.05, steps=3, inner_iters=0, max_lr_drops=0, seed=7, warm_start=False)
    assert (s.tau, s.steps, s.inner_iters, s.max_lr_drops, s.seed, s.warm_start) == (0.05, 3, 0, 0, 7, False)


def _entropy_run(x0: object, log_density0: object, make_potential: object = None) -> None:
    from jkoflow.registry import default_registry

    registry = default_registry()
    functional = registry.get("functional", "entropy")()
    solver = JKOSolver(tau=0.1, steps=1, inner_iters=1)
    solver.run(functional, make_potential, x0, log_density0)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("x0", "log_density0", "message"),
    [
        (torch.zeros(5), None, r"x0 \(shape \(5,\).*expected a floating tensor of shape \(n, d\)"),
        (torch.zeros(5, 1, dtype=torch.long), None, "expected a floating tensor"),
        (torch.tensor([[0.0], [math.nan], [1.0]]), torch.zeros(3), "1 of 3 particles have non-finite"),
        (torch.zeros(4, 1), torch.zeros(4, 1), r"log_density0 \(4, 1\): expected a tensor of shape \(4,\)"),
        (torch.zeros(4, 1), torch.tensor([0.0, math.nan, 0.0, 0.0]), "1 of 4 values are non-finite"),
    ],
)
def test_bad_start_cloud_is_refused_before_any_work(x0: object, log_density0: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _entropy_run(x0, log_density0, make_potential=lambda: None)


def test_non_callable_potential_factory_is_refused() -> None:
    with pytest.raises(TypeError, match="make_potential=3: expected a callable"):
        _entropy_run(torch.zeros(4, 1), torch.zeros(4), make_potential=3)
