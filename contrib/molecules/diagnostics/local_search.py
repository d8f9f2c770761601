"""Oracle 3: best-of-k random perturbations of radius r (local-search upper bound), and encoder sigma."""

import time

import numpy as np
import torch

torch.set_num_threads(1)
import os

from jkoflow.contrib.molecules.metrics import qed_values, tanimoto
from jkoflow.contrib.molecules.plugin import MosesEmbeddings, get_vae

VAE = os.environ["VAE"]  # a weights-only VAE snapshot (train-surrogate --snapshot writes one)
t0 = time.perf_counter()
vae = get_vae(VAE)
samp = MosesEmbeddings(vae=VAE)
x0, _ = samp.sample(300, torch.Generator().manual_seed(0))
ids, lens = vae.to_ids(samp.smiles[:300])
with torch.no_grad():
    mu, lv = vae.model.encode(ids, lens)
print(
    "posterior std: median",
    float((0.5 * lv).exp().median()),
    "mean radius sqrt(sum var)",
    float(lv.exp().sum(1).sqrt().mean()),
)
start = vae.decode(x0)
q0 = qed_values(start)
g = torch.Generator().manual_seed(5)
K = 16
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
        f"r={r}: median QED of random perturbations {np.nanmedian(q):.3f}; best-of-{K} median {np.median(best):.3f} (start {np.median(q0):.3f}); tanimoto of best {np.nanmean(sims):.3f}",
        flush=True,
    )
print(f"wall {time.perf_counter() - t0:.0f}")
