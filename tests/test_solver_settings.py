"""JKOSolver refuses settings that used to run silently wrong (tau = inf wrote t = NaN, ...)."""

from __future__ import annotations

import math

import pytest
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
