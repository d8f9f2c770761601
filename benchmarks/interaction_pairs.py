"""Interaction energy: every ordered pair (the square) against each pair once (the triangle).

Times one forward + backward of ``1/2 mean_{i != j} W(y_i - y_j)`` (the aggregation kernel
``W(z) = |z|^2/2 - log|z|``) on ``N`` particles, alternating the two variants (A B A B ...) on one
thread, and prints medians and their ratio. Run: ``python benchmarks/interaction_pairs.py``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from jkoflow.plugins.energies import InteractionEnergy


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
    print(f"| N | square ms | triangle ms | square / triangle |  ({args.dtype}, d = {args.dim}, 1 thread)")
    print("|---|---|---|---|")
    for n in args.n:
        y = torch.randn(n, args.dim, dtype=dtype, requires_grad=True)
        times: dict[str, list[float]] = {"square": [], "triangle": []}
        for _ in range(args.repeats):
            for name, fn in (("square", _square), ("triangle", InteractionEnergy._energy)):
                t = time.perf_counter()
                fn(energy, y).backward()
                times[name].append(time.perf_counter() - t)
        sq, tri = statistics.median(times["square"][1:]), statistics.median(times["triangle"][1:])
        print(f"| {n} | {1e3 * sq:.2f} | {1e3 * tri:.2f} | {sq / tri:.2f} |")


if __name__ == "__main__":
    main()
