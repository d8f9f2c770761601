"""Oracle 2: is there a global direction (ridge regression of QED on z) along which decoded QED rises?
Also: the surrogate's own -grad V direction, and norms."""

import time

import numpy as np
import torch

torch.set_num_threads(1)
import os

from jkoflow.contrib.molecules.metrics import cloud_metrics
from jkoflow.contrib.molecules.plugin import MosesEmbeddings, get_vae
from jkoflow.contrib.molecules.pools import embed, pool
from jkoflow.contrib.molecules.surrogate import load_surrogate

VAE = os.environ["VAE"]  # a weights-only VAE snapshot (train-surrogate --snapshot writes one)
t0 = time.perf_counter()
c0 = time.process_time()
vae = get_vae(VAE)
samp = MosesEmbeddings(vae=VAE)
x0, _ = samp.sample(500, torch.Generator().manual_seed(0))
smi_tr, q_tr = pool("train", 40000, 0, progress=False)
ztr = embed(vae, smi_tr, VAE)
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
w = torch.linalg.solve(Z.T @ Z + 10 * torch.eye(Z.shape[1], dtype=torch.double), Z.T @ y)[:-1].float()
pred = ztr @ w
print("ridge train corr", float(np.corrcoef(pred.numpy(), q_tr)[0, 1]), "|w|", float(w.norm()))
u = w / w.norm()
start = vae.decode(x0)
V, _ = load_surrogate(os.environ["SUR"])
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
        sm = vae.decode(x)
        m = cloud_metrics(sm, start=start)
        print(
            f"{name:7s} s={s:4.1f} QEDmed {m['qed_median']:.3f} mean {m['qed_mean']:.3f} valid {m['validity']:.1f} "
            f"uniq {m['uniqueness']:.1f} tanimoto {m['tanimoto_to_start']:.3f}  V {float(V(x).mean()):.2f}",
            flush=True,
        )
print(f"wall {time.perf_counter() - t0:.0f} s cpu {time.process_time() - c0:.0f} s")
