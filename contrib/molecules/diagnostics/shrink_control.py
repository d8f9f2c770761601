"""Surrogate-free control for a QED rise: decode the start cloud scaled toward the prior mode,
z -> s z. A gain seen here comes from decoding nearer the prior mode, not from any surrogate.
(Descent on V plus a Gaussian-prior pull c/2 |z|^2: ``surrogate_descent.py --load $SUR --prior c``.)

Usage: ``python shrink_control.py``; needs ``$VAE`` (start seed ``$START_SEED``, default 0).
"""

import os
import time

import torch

torch.set_num_threads(1)
from jkoflow.contrib.molecules.metrics import cloud_metrics
from jkoflow.contrib.molecules.plugin import MosesEmbeddings, get_vae

VAE = os.environ["VAE"]
t0 = time.perf_counter()
c0 = time.process_time()
vae = get_vae(VAE)
x0, _ = MosesEmbeddings(vae=VAE).sample(
    500, torch.Generator().manual_seed(int(os.environ.get("START_SEED", "0")))
)
start = vae.decode(x0)
for s in [1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.3]:
    m = cloud_metrics(vae.decode(s * x0), start=start)
    print(
        f"scale {s:.1f} QEDmed {m['qed_median']:.3f} mean {m['qed_mean']:.3f} uniq {m['uniqueness']:.1f} "
        f"tanimoto {m['tanimoto_to_start']:.3f}",
        flush=True,
    )
print(f"wall {time.perf_counter() - t0:.0f} s cpu {time.process_time() - c0:.0f} s")
