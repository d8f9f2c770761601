"""The quadratic potential refuses parameters that would broadcast to a wrong V."""

from __future__ import annotations

import math

import pytest
import torch
from jkoflow.plugins.energies import Quadratic


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"center": [[1.0]]}, "expected a number or a vector"),
        ({"matrix": [[1.0, 2.0]]}, r"matrix of shape \(1, 2\)"),
        ({"center": math.nan}, "center=nan: expected finite"),
        ({"matrix": [1.0, math.inf]}, "matrix=.*expected finite"),
    ],
)
def test_bad_parameters_are_refused_at_construction(params: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Quadratic(**params)  # type: ignore[arg-type]


def test_center_of_another_dimension_is_refused() -> None:
    with pytest.raises(ValueError, match=r"center of shape \(3,\) for particles of dimension 1"):
        Quadratic(center=[1.0, 2.0, 3.0])(torch.zeros(4, 1))


def test_value_against_the_formula() -> None:
    x = torch.tensor([[0.0, 1.0], [2.0, -1.0]])
    a = torch.tensor([[2.0, 0.5], [0.5, 1.0]])
    c = torch.tensor([1.0, 0.0])
    z = x - c
    expected = 0.5 * torch.einsum("ni,ij,nj->n", z, a, z)
    torch.testing.assert_close(Quadratic(center=c.tolist(), matrix=a.tolist())(x), expected)
    torch.testing.assert_close(
        Quadratic(center=1.0, matrix=[2.0, 3.0])(x), 0.5 * (torch.tensor([2.0, 3.0]) * (x - 1) ** 2).sum(-1)
    )


def test_interaction_refuses_a_single_particle_at_the_start() -> None:
    from jkoflow.plugins.energies import InteractionEnergy

    with pytest.raises(ValueError, match="at least 2 particles, got n = 1"):
        InteractionEnergy(W="quadratic").start(torch.zeros(1, 1))


class _AutogradOnly:
    """The aggregation kernel without ``value_and_grad``: the autograd path over gathered pairs."""

    even = True

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        r2 = z.pow(2).sum(-1)
        return 0.5 * r2 - 0.5 * torch.log(r2)


@pytest.mark.parametrize("n", [2, 7, 300])
@pytest.mark.parametrize("block", [1 << 22, 50])
@pytest.mark.parametrize("dim", [1, 2])
@pytest.mark.parametrize("closed_form", [True, False])
def test_even_kernel_pairs_once_match_all_ordered_pairs(
    n: int, block: int, dim: int, closed_form: bool, monkeypatch
) -> None:
    """sum_{i<j} W equals 1/2 sum_{i != j} W (value and gradient), also when rows are blocked,
    by the closed-form gradient and by autograd."""
    from jkoflow.plugins import energies
    from jkoflow.plugins.energies import InteractionEnergy

    energy = InteractionEnergy(W="aggregation" if closed_form else _AutogradOnly())
    monkeypatch.setattr(InteractionEnergy, "PAIR_BLOCK", block)
    monkeypatch.setattr(energies, "PAIR_ROWS_ELEMENTS", block)
    monkeypatch.setattr(energies.pair_sum_and_grad, "__defaults__", (block,))
    y = torch.randn(
        n, dim, dtype=torch.float64, generator=torch.Generator().manual_seed(n), requires_grad=True
    )
    fast = energy._energy(y)
    (g_fast,) = torch.autograd.grad(fast, y)
    diff = y[:, None, :] - y[None, :, :]
    r2 = diff.pow(2).sum(-1) + torch.eye(n, dtype=y.dtype)  # r2 = 1 on i == j: W = 1/2 there
    w = (0.5 * r2 - 0.5 * torch.log(r2)) * (1 - torch.eye(n, dtype=y.dtype))
    full = 0.5 * w.sum() / (n * (n - 1))
    (g_full,) = torch.autograd.grad(full, y)
    torch.testing.assert_close(fast, full, rtol=1e-12, atol=0)
    torch.testing.assert_close(g_fast, g_full, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("kind", ["aggregation", "quadratic"])
@pytest.mark.parametrize("dim", [1, 3])
def test_closed_form_kernel_gradients_equal_autograd(kind: str, dim: int) -> None:
    """``value_and_grad`` of each built-in kernel: its ``W`` and autograd's gradient of ``W``."""
    from jkoflow.plugins.energies import AggregationKernel, QuadraticKernel

    kernel = AggregationKernel() if kind == "aggregation" else QuadraticKernel()
    z = torch.randn(
        4, 5, dim, dtype=torch.float64, generator=torch.Generator().manual_seed(dim), requires_grad=True
    )
    value, grad = kernel.value_and_grad(z)
    (ref_grad,) = torch.autograd.grad(kernel(z).sum(), z)
    torch.testing.assert_close(value, kernel(z))
    torch.testing.assert_close(grad, ref_grad)


@pytest.mark.parametrize("where", [(3, 4), (0, 299)])  # in one row block, and across blocks
def test_coinciding_particles_make_the_aggregation_energy_infinite_and_are_named(
    where: tuple[int, int],
) -> None:
    """Two particles on one point under ``-log|z|``: the energy is +inf (not NaN, also when the
    pair sits in a block's masked corner), and ``value`` names the duplicate."""
    from jkoflow.plugins.energies import InteractionEnergy

    energy = InteractionEnergy(W="aggregation")
    x = torch.linspace(-1.0, 1.0, 300, dtype=torch.float64)[:, None]
    x[where[1]] = x[where[0]]
    assert energy._energy(x).item() == float("inf")
    with pytest.raises(
        ValueError, match="is inf on these 300 particles: 1 of 300 particles duplicate another"
    ):
        energy.value(x)
