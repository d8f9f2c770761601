"""Train a surrogate variant and evaluate its descent direction by decoding (proxy for the flow)."""

import argparse
import time

import numpy as np
import torch

torch.set_num_threads(1)
from jkoflow.contrib.molecules.metrics import cloud_metrics
from jkoflow.contrib.molecules.plugin import MosesEmbeddings, get_vae
from jkoflow.contrib.molecules.pools import embed, pool
from jkoflow.contrib.molecules.surrogate import _plain, load_surrogate, save_surrogate, train_surrogate
from scipy.stats import spearmanr

p = argparse.ArgumentParser()
p.add_argument("--aug", nargs="*", default=[])
p.add_argument("--onman", type=int, default=40000)
p.add_argument("--epochs", type=int, default=100)
p.add_argument("--wd", type=float, default=0.0)
p.add_argument("--lr", type=float, default=1e-2)
p.add_argument("--load", default=None)
p.add_argument("--out", default=None)
p.add_argument("--eta", type=float, default=0.02)
p.add_argument("--iters", default="0,10,25,50,100,200")
p.add_argument("--prior", type=float, default=0.0, help="descend on V + c/2 |z|^2 (a Gaussian-prior pull)")
a = p.parse_args()
import os

VAE = os.environ["VAE"]  # a weights-only VAE snapshot (train-surrogate --snapshot writes one)
t0 = time.perf_counter()
c0 = time.process_time()
vae = get_vae(VAE)
xs, qs = [], []
if a.onman:
    smi_tr, q_tr = pool("train", 40000, 0, progress=False)
    xs.append(embed(vae, smi_tr, VAE)[: a.onman])
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
x, q = torch.cat(xs), np.concatenate(qs)
smi_te, q_te = pool("test", 30000, 0, progress=False)
smi_te, q_te = smi_te[:10000], q_te[:10000]
zte = embed(vae, smi_te, VAE)
if a.load:
    V, info = load_surrogate(a.load)
    met = info.get("metrics", {})
else:
    V, met = train_surrogate(x, q, zte, q_te, epochs=a.epochs, lr=a.lr, weight_decay=a.wd, progress=False)
    for p_ in V.parameters():
        p_.requires_grad_(False)
    print(
        f"train acc {met['train']['accuracy']:.3f} test acc {met['test']['accuracy']:.3f} auc {met['test']['auc']:.3f} "
        f"spearman(-V,QED) test {met['test_spearman_minusV_qed']:.3f}  {met['seconds']:.0f}s",
        flush=True,
    )
    if a.out:
        save_surrogate(V, a.out, metrics=_plain(met))
if xa_te:
    xt, qt = torch.cat(xa_te), np.concatenate(qa_te)
    with torch.no_grad():
        print(f"aug held-out spearman(-V, decoded QED) {spearmanr(-V(xt).numpy(), qt).statistic:.3f}")
samp = MosesEmbeddings(vae=VAE)
x0, _ = samp.sample(500, torch.Generator().manual_seed(int(os.environ.get("START_SEED", "0"))))
start = vae.decode(x0)
x = x0.clone()
its = [int(s) for s in a.iters.split(",")]
for k in range(max(its) + 1):
    if k in its:
        with torch.no_grad():
            v = V(x)
        m = cloud_metrics(vae.decode(x), start=start)
        print(
            f"gd it {k:4d} |dx| {float((x - x0).norm(dim=1).mean()):.2f} |z| {float(x.norm(dim=1).mean()):.2f} V {float(v.mean()):7.2f} QEDmed {m['qed_median']:.3f} "
            f"mean {m['qed_mean']:.3f} uniq {m['uniqueness']:.1f} tanimoto {m['tanimoto_to_start']:.3f}",
            flush=True,
        )
    xg = x.clone().requires_grad_(True)
    (V(xg).sum() + 0.5 * a.prior * (xg**2).sum()).backward()
    x = x - a.eta * xg.grad
print(f"wall {time.perf_counter() - t0:.0f} s cpu {time.process_time() - c0:.0f} s")
