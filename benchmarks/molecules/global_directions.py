"""Oracle 2: is there one global direction in the latent space along which decoded QED rises?

Measures the decoded QED median / mean, validity, uniqueness, Tanimoto to the start decodings
and the surrogate's mean V when the start cloud (``--n`` MOSES test molecules with QED < 0.7,
``--start-seed``) is moved by ``s`` (0.5 ... 8) along

* the ridge-regression direction of QED on 40,000 train embeddings (one direction for all), and
* the surrogate's normalized ``-grad V`` at each point;

and prints the embedding norms, the ridge fit's correlation, the cosine between the mean
``-grad V`` and the ridge direction, and the mean pairwise cosine of the ``-grad V``.

Run (1 thread, 20 s plus encoding the 40k train molecules once)::

    python benchmarks/molecules/global_directions.py
    python benchmarks/molecules/global_directions.py --vae V.pt --surrogate S.pt
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _common import add_common_args, start_cloud  # benchmarks/molecules/_common.py
from jkoflow.contrib.molecules.metrics import cloud_metrics
from jkoflow.contrib.molecules.plugin import get_vae
from jkoflow.contrib.molecules.pools import embed, pool
from jkoflow.contrib.molecules.surrogate import DEFAULT_PATH, load_surrogate


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--surrogate", default=str(DEFAULT_PATH), help="QED surrogate (default: committed)")
    add_common_args(p, n=500)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    t0, c0 = time.perf_counter(), time.process_time()
    vae = get_vae(args.vae)
    _, x0 = start_cloud(args)
    smi_tr, q_tr = pool("train", 40000, 0, source=args.source, progress=False)
    ztr = embed(vae, smi_tr, args.vae)
    print(
        "norms: train mean |z|",
        float(ztr.norm(dim=1).mean()),
        "std per dim mean",
        float(ztr.std(0).mean()),
        "start |z|",
        float(x0.norm(dim=1).mean()),
    )
    Z = torch.cat([ztr, torch.ones(len(ztr), 1)], 1).double()
    y = torch.as_tensor(q_tr).double()
    eye = torch.eye(Z.shape[1], dtype=torch.double)
    w = torch.linalg.solve(Z.T @ Z + 10 * eye, Z.T @ y)[:-1].float()
    pred = ztr @ w
    print("ridge train corr", float(np.corrcoef(pred.numpy(), q_tr)[0, 1]), "|w|", float(w.norm()))
    u = w / w.norm()
    start = vae.decode(x0)
    V, _ = load_surrogate(args.surrogate)
    xg = x0.clone().requires_grad_(True)
    V(xg).sum().backward()
    gv = -xg.grad
    gv = gv / gv.norm(dim=1, keepdim=True)
    print(
        "cos(mean -gradV, ridge dir)",
        float((gv.mean(0) / gv.mean(0).norm()) @ u),
        "mean pairwise cos of -gradV",
        float((gv @ gv.T).mean()),
    )
    for name, dirs in [("ridge", u.expand_as(x0)), ("-gradV", gv)]:
        for s in [0.5, 1, 2, 4, 8]:
            x = x0 + s * dirs
            m = cloud_metrics(vae.decode(x), start=start)
            with torch.no_grad():
                v = float(V(x).mean())
            print(
                f"{name:7s} s={s:4.1f} QEDmed {m['qed_median']:.3f} mean {m['qed_mean']:.3f} "
                f"valid {m['validity']:.1f} uniq {m['uniqueness']:.1f} "
                f"tanimoto {m['tanimoto_to_start']:.3f}  V {v:.2f}",
                flush=True,
            )
    print(f"wall {time.perf_counter() - t0:.0f} s cpu {time.process_time() - c0:.0f} s")


if __name__ == "__main__":
    main()
