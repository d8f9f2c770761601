"""Does the surrogate's descent direction raise decoded QED? Plain gradient descent on V as a
proxy for the flow (lambda_2 = 0: no divergence term, no JKO step).

Trains a QED surrogate variant (or loads one with ``--load``) on ``--onman`` train embeddings
plus the ``--aug`` files of ``perturbed_decodings.py`` (90 % of each; the other 10 % give a
held-out Spearman of ``-V`` against decoded QED), prints its train / test accuracy, AUC and
Spearman(-V, QED), then follows ``x <- x - eta grad (V(x) + prior/2 |x|^2)`` from the start
cloud (``--n`` MOSES test molecules with QED < 0.7, ``--start-seed``) and, at the iterations
``--iters``, prints the mean displacement and norm, mean V, and the decoded QED median / mean,
uniqueness and Tanimoto to the start decodings.

Run (1 thread, 15 s plus training)::

    SUR=contrib/molecules/checkpoints/surrogate/qed_surrogate.pt
    python benchmarks/molecules/surrogate_descent.py --load $SUR --iters 0,10,25,50,100,200,400
    python benchmarks/molecules/surrogate_descent.py --aug perturbed.npz --epochs 100 --wd 1e-4
    python benchmarks/molecules/surrogate_descent.py --load S.pt --prior 0.5
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
from jkoflow.contrib.molecules.surrogate import _plain, load_surrogate, save_surrogate, train_surrogate
from scipy.stats import spearmanr


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--aug", nargs="*", default=[], help="perturbed_decodings.py files to train on")
    p.add_argument("--onman", type=int, default=40000, help="train embeddings of real molecules to use")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--wd", type=float, default=0.0, help="Adam weight decay")
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--load", default=None, help="evaluate this surrogate instead of training one")
    p.add_argument("--out", default=None, help="save the trained surrogate here")
    p.add_argument("--eta", type=float, default=0.02, help="gradient-descent step")
    p.add_argument("--iters", default="0,10,25,50,100,200", help="iterations at which to decode")
    p.add_argument(
        "--prior", type=float, default=0.0, help="descend on V + c/2 |z|^2 (a Gaussian-prior pull)"
    )
    add_common_args(p, n=500)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    a = parse_args(argv)
    torch.set_num_threads(a.threads)
    t0, c0 = time.perf_counter(), time.process_time()
    vae = get_vae(a.vae)
    xs, qs = [], []
    if a.onman:
        smi_tr, q_tr = pool("train", 40000, 0, source=a.source, progress=False)
        xs.append(embed(vae, smi_tr, a.vae)[: a.onman])
        qs.append(q_tr[: a.onman])
    xa_te, qa_te = [], []
    for f in a.aug:
        d = np.load(f)
        x, q = torch.from_numpy(d["x"]), np.nan_to_num(d["q"], nan=0.0)
        k = int(0.9 * len(q))
        xs.append(x[:k])
        qs.append(q[:k])
        xa_te.append(x[k:])
        qa_te.append(q[k:])
    smi_te, q_te = pool("test", 30000, 0, source=a.source, progress=False)
    smi_te, q_te = smi_te[:10000], q_te[:10000]
    zte = embed(vae, smi_te, a.vae)
    if a.load:
        V, _ = load_surrogate(a.load)
    else:
        if not xs:
            raise SystemExit("nothing to train on: give --onman > 0 or --aug files (or --load)")
        x, q = torch.cat(xs), np.concatenate(qs)
        V, met = train_surrogate(x, q, zte, q_te, epochs=a.epochs, lr=a.lr, weight_decay=a.wd, progress=False)
        for p_ in V.parameters():
            p_.requires_grad_(False)
        print(
            f"train acc {met['train']['accuracy']:.3f} test acc {met['test']['accuracy']:.3f} "
            f"auc {met['test']['auc']:.3f} spearman(-V,QED) test {met['test_spearman_minusV_qed']:.3f}  "
            f"{met['seconds']:.0f}s",
            flush=True,
        )
        if a.out:
            save_surrogate(V, a.out, metrics=_plain(met))
    if xa_te:
        xt, qt = torch.cat(xa_te), np.concatenate(qa_te)
        with torch.no_grad():
            rho = spearmanr(-V(xt).numpy(), qt).statistic
        print(f"aug held-out spearman(-V, decoded QED) {rho:.3f}")
    _, x0 = start_cloud(a)
    start = vae.decode(x0)
    x = x0.clone()
    its = [int(s) for s in a.iters.split(",")]
    for k in range(max(its) + 1):
        if k in its:
            with torch.no_grad():
                v = V(x)
            m = cloud_metrics(vae.decode(x), start=start)
            print(
                f"gd it {k:4d} |dx| {float((x - x0).norm(dim=1).mean()):.2f} "
                f"|z| {float(x.norm(dim=1).mean()):.2f} "
                f"V {float(v.mean()):7.2f} QEDmed {m['qed_median']:.3f} mean {m['qed_mean']:.3f} "
                f"uniq {m['uniqueness']:.1f} tanimoto {m['tanimoto_to_start']:.3f}",
                flush=True,
            )
        xg = x.clone().requires_grad_(True)
        (V(xg).sum() + 0.5 * a.prior * (xg**2).sum()).backward()
        x = x - a.eta * xg.grad
    print(f"wall {time.perf_counter() - t0:.0f} s cpu {time.process_time() - c0:.0f} s")


if __name__ == "__main__":
    main()
