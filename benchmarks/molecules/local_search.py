"""Oracle 3: an upper bound no smooth vector field attains, from local random search.

Measures, for the start cloud (``--n`` MOSES test molecules with QED < 0.7, ``--start-seed``),
the median decoded QED of ``K`` random perturbations ``z + r d`` (``|d| = 1``) of each start
embedding for radii ``r`` in 0.5, 1, 2, 3, the median over molecules of the best of the ``K``
(a per-molecule local-search upper bound) against the start's median, and the Tanimoto
similarity of the best to the start decoding. Also prints the VAE encoder's posterior
standard deviation (median, and the mean radius ``sqrt(sum var)``) on the start molecules.

Run (1 thread, 45 s with the defaults)::

    python benchmarks/molecules/local_search.py
    python benchmarks/molecules/local_search.py --vae V.pt --n 300 --k 16
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _common import add_common_args, start_cloud  # benchmarks/molecules/_common.py
from jkoflow.contrib.molecules.metrics import qed_values, tanimoto
from jkoflow.contrib.molecules.plugin import get_vae


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--k", type=int, default=16, help="random perturbations per molecule and radius")
    add_common_args(p, n=300)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    vae = get_vae(args.vae)
    samp, x0 = start_cloud(args)
    ids, lens = vae.to_ids(samp.smiles[: args.n])
    with torch.no_grad():
        _, lv = vae.model.encode(ids, lens)
    print(
        "posterior std: median",
        float((0.5 * lv).exp().median()),
        "mean radius sqrt(sum var)",
        float(lv.exp().sum(1).sqrt().mean()),
    )
    start = vae.decode(x0)
    q0 = qed_values(start)
    g = torch.Generator().manual_seed(5)
    K = args.k
    for r in [0.5, 1.0, 2.0, 3.0]:
        d = torch.randn(K, *x0.shape, generator=g)
        d = r * d / d.norm(dim=2, keepdim=True)
        x = (x0[None] + d).reshape(-1, x0.shape[1])
        sm = vae.decode(x)
        q = qed_values(sm).reshape(K, -1)
        best = np.nanmax(q, 0)
        bi = np.nanargmax(q, 0)
        sims = [tanimoto(start[i], sm[bi[i] * len(x0) + i]) for i in range(len(x0))]
        print(
            f"r={r}: median QED of random perturbations {np.nanmedian(q):.3f}; "
            f"best-of-{K} median {np.median(best):.3f} (start {np.median(q0):.3f}); "
            f"tanimoto of best {np.nanmean(sims):.3f}",
            flush=True,
        )
    print(f"wall {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
