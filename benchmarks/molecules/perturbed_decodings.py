"""Data for the surrogate's ``--augment`` and for ``predictability.py``: off-manifold points
labelled by the QED of their decoding.

Draws ``--n`` points ``z + r u``: ``z`` a random embedding of the 40,000 MOSES train molecules,
``u`` uniform on the unit sphere, ``r ~ U[0, --rmax]``; decodes each greedily and writes
``x, q`` (decoded QED, ``nan`` when invalid), ``r``, ``idx`` (which train molecule) and
``q_orig`` (its QED) to ``OUT.npz``. Prints the fraction of valid decodings, the median decoded
QED and, per radius band, the median decoded QED and its correlation with the original
molecule's QED.

Run (1 thread, 50 s for 20,000 points)::

    python benchmarks/molecules/perturbed_decodings.py --n 20000 --rmax 6 --out perturbed.npz
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _common import add_common_args  # benchmarks/molecules/_common.py
from jkoflow.contrib.molecules.metrics import qed_values
from jkoflow.contrib.molecules.plugin import get_vae
from jkoflow.contrib.molecules.pools import embed, pool


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, required=True, help="points to draw and decode")
    p.add_argument("--rmax", type=float, required=True, help="largest offset radius R")
    p.add_argument("--out", required=True, help="output .npz")
    p.add_argument("--seed", type=int, default=123)
    add_common_args(p, n=None)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    n = args.n
    t0, c0 = time.perf_counter(), time.process_time()
    vae = get_vae(args.vae)
    smi_tr, q_tr = pool("train", 40000, 0, source=args.source, progress=False)
    ztr = embed(vae, smi_tr, args.vae)
    g = torch.Generator().manual_seed(args.seed)
    idx = torch.randint(len(ztr), (n,), generator=g)
    d = torch.randn(n, ztr.shape[1], generator=g)
    d = d / d.norm(dim=1, keepdim=True)
    r = args.rmax * torch.rand(n, 1, generator=g)
    x = ztr[idx] + r * d
    q = []
    for i in range(0, n, 1000):
        q.append(qed_values(vae.decode(x[i : i + 1000])))
        print(i, f"{time.perf_counter() - t0:.0f}s", flush=True)
    q = np.concatenate(q)
    q_orig = q_tr[idx.numpy()]
    np.savez(args.out, x=x.numpy(), q=q, r=r[:, 0].numpy(), idx=idx.numpy(), q_orig=q_orig)
    print(
        "valid",
        np.isfinite(q).mean(),
        "median q",
        np.nanmedian(q),
        f"wall {time.perf_counter() - t0:.0f} s cpu {time.process_time() - c0:.0f} s",
    )
    radius = r[:, 0].numpy()
    for lo, hi in [(0, 1), (1, 2), (2, 4), (4, 6), (6, 99)]:
        m = (radius >= lo) & (radius < hi)
        if m.any():
            corr = np.corrcoef(np.nan_to_num(q[m]), q_orig[m])[0, 1]
            print(
                f"r in [{lo},{hi}): n {m.sum()} median decoded QED {np.nanmedian(q[m]):.3f} "
                f"corr with orig QED {corr:.3f}"
            )


if __name__ == "__main__":
    main()
