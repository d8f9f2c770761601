"""Interaction energy: every ordered pair (the square), each pair once by autograd over gathered
pairs (the triangle), and each pair once with the closed-form gradient in dense row blocks
(``pair_sum_and_grad``, what ``InteractionEnergy`` uses for the built-in kernels).

Times one forward + backward of ``1/2 mean_{i != j} W(y_i - y_j)`` (the aggregation kernel
``W(z) = |z|^2/2 - log|z|``) on ``N`` particles, alternating the three variants (A B C A B C ...)
on one thread, and prints medians and ratios to the closed form.
Run: ``python benchmarks/interaction_pairs.py``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from jkoflow.plugins.energies import InteractionEnergy


class _GatheredPairs:
    """The aggregation kernel without ``value_and_grad``: autograd through gathered pairs."""

    even = True

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        r2 = z.pow(2).sum(-1)
        return 0.5 * r2 - 0.5 * torch.log(r2)


def _square(energy: InteractionEnergy, y: torch.Tensor) -> torch.Tensor:
    n = y.shape[0]
    diff = y[:, None, :] - y[None, :, :]
    eye = torch.eye(n, dtype=torch.bool)
    diff = torch.where(eye[..., None], torch.ones_like(diff), diff)
    return 0.5 * energy.W(diff).masked_fill(eye, 0.0).sum() / (n * (n - 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[1000, 4000])
    parser.add_argument("--dim", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    args = parser.parse_args()
    torch.set_num_threads(1)
    dtype = getattr(torch, args.dtype)
    energy = InteractionEnergy(W="aggregation")
    gathered = InteractionEnergy(W=_GatheredPairs())
    variants = {
        "square": lambda y: _square(energy, y),
        "triangle": gathered._energy,
        "closed form": energy._energy,
    }
    print(
        "| N | square ms | triangle (autograd) ms | closed form ms | square / closed | triangle / closed |"
        f"  ({args.dtype}, d = {args.dim}, 1 thread)"
    )
    print("|---|---|---|---|---|---|")
    for n in args.n:
        y = torch.randn(n, args.dim, dtype=dtype, requires_grad=True)
        times: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.repeats):
            for name, fn in variants.items():
                t = time.perf_counter()
                fn(y).backward()
                times[name].append(time.perf_counter() - t)
        sq, tri, closed = (statistics.median(times[name][1:]) for name in variants)
        print(
            f"| {n} | {1e3 * sq:.2f} | {1e3 * tri:.2f} | {1e3 * closed:.2f} | {sq / closed:.2f} | {tri / closed:.2f} |"
        )


if __name__ == "__main__":
    main()
