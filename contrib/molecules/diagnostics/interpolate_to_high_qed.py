"""Oracle: move start embeddings toward high-QED real embeddings; does decoded QED rise?"""

import sys
import time

import numpy as np
import torch

torch.set_num_threads(1)
import os

from jkoflow.contrib.molecules.metrics import cloud_metrics, qed_values
from jkoflow.contrib.molecules.plugin import MosesEmbeddings, get_vae
from jkoflow.contrib.molecules.pools import embed, pool

VAE = os.environ["VAE"]  # a weights-only VAE snapshot (train-surrogate --snapshot writes one)
t0 = time.perf_counter()
c0 = time.process_time()
vae = get_vae(VAE)
samp = MosesEmbeddings(vae=VAE)
x0, _ = samp.sample(int(sys.argv[1]) if len(sys.argv) > 1 else 500, torch.Generator().manual_seed(0))
smi_te, q_te = pool("test", 30000, 0, progress=False)
smi_te, q_te = smi_te[:10000], q_te[:10000]
zte = embed(vae, smi_te, VAE)
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
    "median pairwise start-start nn:",
    float(torch.cdist(x0, x0).fill_diagonal_(1e9).min(1).values.mean()),
)
g = torch.Generator().manual_seed(1)
rnd = torch.randint(len(hi), (len(x0),), generator=g)
for name, tgt in [("nearest", hi[nn]), ("random", hi[rnd])]:
    for a in [0.1, 0.25, 0.5, 0.75, 1.0]:
        x = (1 - a) * x0 + a * tgt
        sm = vae.decode(x)
        m = cloud_metrics(sm, start=start)
        print(
            f"{name:8s} a={a:.2f} |dx|={float((x - x0).norm(dim=1).mean()):.2f} QEDmed {m['qed_median']:.3f} mean {m['qed_mean']:.3f} "
            f"valid {m['validity']:.1f} uniq {m['uniqueness']:.1f} tanimoto {m['tanimoto_to_start']:.3f}",
            flush=True,
        )
print(f"wall {time.perf_counter() - t0:.0f} s cpu {time.process_time() - c0:.0f} s")
