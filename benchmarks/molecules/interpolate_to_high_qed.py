"""Oracle: is a higher decoded QED reachable at all by moving the start embeddings?

Measures, for the ``molecules`` problem's start cloud (``--n`` MOSES test molecules with
QED < 0.7, drawn with ``--start-seed``), the decoded QED median / mean, validity, uniqueness
and Tanimoto similarity to the start decodings when each start embedding ``z`` is moved a
fraction ``a`` of the way to a target embedding of a test molecule with QED > 0.85: its
nearest one, or a random one (``a`` in 0.1, 0.25, 0.5, 0.75, 1). Also prints the mean
distance to the nearest high-QED embedding and the mean start-to-start nearest-neighbour
distance. Decoding is greedy.

Run (1 thread, 16 s for ``--n 500`` with the MOSES caches warm)::

    python benchmarks/molecules/interpolate_to_high_qed.py --n 500
    python benchmarks/molecules/interpolate_to_high_qed.py --vae path/to/vae.pt

``--source sample`` uses the committed 4k/1k MOSES subset instead (a quick check of the
script, not the figure in docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _common import add_common_args, start_cloud  # benchmarks/molecules/_common.py
from jkoflow.contrib.molecules.metrics import cloud_metrics, qed_values
from jkoflow.contrib.molecules.plugin import get_vae
from jkoflow.contrib.molecules.pools import embed, pool


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(p, n=500)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    t0, c0 = time.perf_counter(), time.process_time()
    vae = get_vae(args.vae)
    samp, x0 = start_cloud(args)
    smi_te, q_te = pool("test", 30000, 0, source=args.source, progress=False)
    smi_te, q_te = smi_te[:10000], q_te[:10000]
    zte = embed(vae, smi_te, args.vae)
    hi = zte[torch.as_tensor(q_te > 0.85)]
    print("start n", len(x0), "high pool", len(hi), flush=True)
    start = vae.decode(x0)
    qs = qed_values(start)
    print(f"start decoded QED median {np.nanmedian(qs):.3f}  (orig {np.median(samp.qed):.3f})", flush=True)
    d = torch.cdist(x0, hi)
    nn = d.argmin(1)
    print(
        "dist to nearest high:",
        float(d.min(1).values.mean()),
        "mean start-start nn:",
        float(torch.cdist(x0, x0).fill_diagonal_(1e9).min(1).values.mean()),
    )
    g = torch.Generator().manual_seed(1)
    rnd = torch.randint(len(hi), (len(x0),), generator=g)
    for name, tgt in [("nearest", hi[nn]), ("random", hi[rnd])]:
        for a in [0.1, 0.25, 0.5, 0.75, 1.0]:
            x = (1 - a) * x0 + a * tgt
            m = cloud_metrics(vae.decode(x), start=start)
            print(
                f"{name:8s} a={a:.2f} |dx|={float((x - x0).norm(dim=1).mean()):.2f} "
                f"QEDmed {m['qed_median']:.3f} mean {m['qed_mean']:.3f} valid {m['validity']:.1f} "
                f"uniq {m['uniqueness']:.1f} tanimoto {m['tanimoto_to_start']:.3f}",
                flush=True,
            )
    print(f"wall {time.perf_counter() - t0:.0f} s cpu {time.process_time() - c0:.0f} s")


if __name__ == "__main__":
    main()
