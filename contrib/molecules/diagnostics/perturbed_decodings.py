"""Build (x, QED(decode(x))) pairs: train embeddings z plus random offsets of radius r ~ U[0, rmax]."""

import sys
import time

import numpy as np
import torch

torch.set_num_threads(1)
import os

from jkoflow.contrib.molecules.metrics import qed_values
from jkoflow.contrib.molecules.plugin import get_vae
from jkoflow.contrib.molecules.pools import embed, pool

VAE = os.environ["VAE"]  # a weights-only VAE snapshot (train-surrogate --snapshot writes one)
n, rmax, out = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
t0 = time.perf_counter()
c0 = time.process_time()
vae = get_vae(VAE)
smi_tr, q_tr = pool("train", 40000, 0, progress=False)
ztr = embed(vae, smi_tr, VAE)
g = torch.Generator().manual_seed(123)
idx = torch.randint(len(ztr), (n,), generator=g)
d = torch.randn(n, ztr.shape[1], generator=g)
d = d / d.norm(dim=1, keepdim=True)
r = rmax * torch.rand(n, 1, generator=g)
x = ztr[idx] + r * d
q = []
for i in range(0, n, 1000):
    q.append(qed_values(vae.decode(x[i : i + 1000])))
    print(i, f"{time.perf_counter() - t0:.0f}s", flush=True)
q = np.concatenate(q)
np.savez(out, x=x.numpy(), q=q, r=r[:, 0].numpy(), idx=idx.numpy(), q_orig=q_tr[idx.numpy()])
print(
    "valid",
    np.isfinite(q).mean(),
    "median q",
    np.nanmedian(q),
    f"wall {time.perf_counter() - t0:.0f} s cpu {time.process_time() - c0:.0f} s",
)
for lo, hi in [(0, 1), (1, 2), (2, 4), (4, 6), (6, 99)]:
    m = (r[:, 0].numpy() >= lo) & (r[:, 0].numpy() < hi)
    if m.any():
        print(
            f"r in [{lo},{hi}): n {m.sum()} median decoded QED {np.nanmedian(q[m]):.3f} corr with orig QED {np.corrcoef(np.nan_to_num(q[m]), q_tr[idx.numpy()][m])[0, 1]:.3f}"
        )
