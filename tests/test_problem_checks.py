"""jkoflow.testing.assert_valid_problem: the built-in problems pass, and problems whose exact
solution is wrong in a way a real author could write are rejected, each failure checked
against an independent computation of the same quantity."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from jkoflow.plugins.problems import Heat
from jkoflow.plugins.problems_pde import Aggregation
from jkoflow.testing import ConformanceError, assert_valid_problem


def _numbers(message: str) -> list[float]:
    return [float(v) for v in re.findall(r"-?\d+\.\d+(?:e-?\d+)?", message)]


class _HeatWrongF(Heat):
    """``exact_F`` 2 % off (e.g. a wrong constant in the Gaussian entropy)."""

    def exact_F(self, t: float) -> float:
        return 1.02 * super().exact_F(t)


class _HeatWrongSpread(Heat):
    """``exact_density`` with the standard deviation 3 % too large (e.g. ``sqrt(std^2 + 2.1 t)``);
    the samples are right."""

    def exact_density(self, grid: np.ndarray, t: float) -> np.ndarray:
        s = 1.03 * self.std_at(t)
        z = (np.asarray(grid) - self.mean) / s
        return np.exp(-0.5 * np.sum(z**2, axis=-1)) / (math.sqrt(2 * math.pi) * s) ** self.dim


class _HeatUnnormalized(Heat):
    """``exact_density`` 2 % too heavy (a wrong normalizing constant)."""

    def exact_density(self, grid: np.ndarray, t: float) -> np.ndarray:
        return 1.02 * super().exact_density(grid, t)


class _AggregationWrongRadius(Aggregation):
    """The 1-D steady state as a (normalized) semicircle of radius 1.35 instead of sqrt(2)."""

    def steady_density(self, grid: np.ndarray) -> np.ndarray:
        r2 = np.sum(np.asarray(grid, dtype=float) ** 2, axis=-1)
        return 2 / (math.pi * 1.35**2) * np.sqrt(np.clip(1.35**2 - r2, 0.0, None))


class _HeatMapErrorAtStart(Heat):
    """Reports a map error at step 0 (e.g. the exact map evaluated at ``t0 + tau``)."""

    def metrics(self, t, x0, x, log_density):
        out = super().metrics(t, x0, x, log_density)
        out["map_error"] += 0.01
        return out


@pytest.mark.parametrize("dim", [1, 2])
def test_a_wrong_exact_F_is_caught(dim: int) -> None:
    problem = _HeatWrongF(dim=dim)
    with pytest.raises(ConformanceError, match="F_exact and the spec's terms disagree") as info:
        assert_valid_problem(problem)
    reported, estimate, se = _numbers(str(info.value).split("exact_F(t = ")[1])[:3]
    # independently: the negative entropy of N(0, I) in dim d is -d/2 (1 + log 2 pi)
    truth = -0.5 * dim * (1 + math.log(2 * math.pi))
    assert reported == pytest.approx(1.02 * truth, rel=1e-5)
    assert abs(estimate - truth) < 5 * se < abs(reported - truth)
    assert_valid_problem(Heat(dim=dim))  # the right one passes


@pytest.mark.parametrize("dim", [1, 2])
def test_a_density_that_disagrees_with_the_samples_is_caught(dim: int) -> None:
    with pytest.raises(ConformanceError, match="describe different laws") as info:
        assert_valid_problem(_HeatWrongSpread(dim=dim))
    by_density, _, by_sample = _numbers(str(info.value).split(" is ")[1])[:3]
    # independently: E[x_0^2] is 1.03^2 under the wrong density and 1 under the samples (t0 = 0, std 1)
    assert by_density == pytest.approx(1.03**2, abs=0.01)
    assert by_sample == pytest.approx(1.0, abs=0.03)


@pytest.mark.parametrize("dim", [1, 2])
def test_an_unnormalized_density_is_caught(dim: int) -> None:
    with pytest.raises(ConformanceError, match="integrates to") as info:
        assert_valid_problem(_HeatUnnormalized(dim=dim))
    assert _numbers(str(info.value))[0] == pytest.approx(1.02, abs=0.006)


def test_a_wrong_steady_state_is_caught() -> None:
    with pytest.raises(ConformanceError, match=r"at t = inf .*describe different laws") as info:
        assert_valid_problem(_AggregationWrongRadius(dim=1))
    by_density = _numbers(str(info.value).split(" is ")[1])[0]
    assert by_density == pytest.approx(1.35**2 / 4, abs=0.01)  # variance of a semicircle: R^2/4
    assert_valid_problem(Aggregation(dim=1))


def test_a_metric_declared_vanishing_must_vanish_at_step_0() -> None:
    with pytest.raises(ConformanceError, match="'map_error' = 0.01 at step 0"):
        assert_valid_problem(_HeatMapErrorAtStart(dim=1))


def test_a_problem_whose_spec_does_not_build_is_caught() -> None:
    class _BadSpec(Heat):
        def spec(self):
            out = super().spec()
            out["terms"] = [{"kind": "entropyy"}]
            return out

    with pytest.raises(ConformanceError, match="does not build a run.*entropyy"):
        assert_valid_problem(_BadSpec())
