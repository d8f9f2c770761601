"""Two surrogate-free controls for a QED rise: (1) scale the start cloud toward the prior mode,
z -> s z; (2) plain gradient descent on V(z) + c/2 |z|^2 (the surrogate plus a Gaussian-prior pull
that keeps particles in the VAE's typical set), eta = $ETA (default 0.02), decoding along the way.

Usage: ``python shrink_and_prior.py [c1,c2,...]`` (default 0.5,2); needs ``$VAE`` and ``$SUR``.
A QED gain seen in (1) comes from decoding nearer the prior mode, not from the surrogate.
"""
import os, sys, time, torch
torch.set_num_threads(1)
from jkoflow.contrib.molecules.plugin import MosesEmbeddings, get_vae
from jkoflow.contrib.molecules.metrics import cloud_metrics
from jkoflow.contrib.molecules.surrogate import load_surrogate
VAE, SUR = os.environ["VAE"], os.environ["SUR"]
t0 = time.perf_counter(); c0 = time.process_time()
vae = get_vae(VAE); V, _ = load_surrogate(SUR)
for p in V.parameters(): p.requires_grad_(False)
x0, _ = MosesEmbeddings(vae=VAE).sample(500, torch.Generator().manual_seed(int(os.environ.get("START_SEED", "0"))))
start = vae.decode(x0)
for s in [1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.3]:
    m = cloud_metrics(vae.decode(s * x0), start=start)
    print(f"scale {s:.1f} QEDmed {m['qed_median']:.3f} mean {m['qed_mean']:.3f} uniq {m['uniqueness']:.1f} "
          f"tanimoto {m['tanimoto_to_start']:.3f}", flush=True)
eta = float(os.environ.get("ETA", "0.02"))
for c in [float(v) for v in (sys.argv[1] if len(sys.argv) > 1 else "0.5,2").split(",")]:
    x = x0.clone()
    for k in range(401):
        if k in (25, 50, 100, 200, 400):
            m = cloud_metrics(vae.decode(x), start=start)
            print(f"c {c:4.2f} it {k:3d} |dx| {float((x - x0).norm(dim=1).mean()):.2f} |z| {float(x.norm(dim=1).mean()):.2f} "
                  f"V {float(V(x).mean()):7.2f} QEDmed {m['qed_median']:.3f} mean {m['qed_mean']:.3f} "
                  f"uniq {m['uniqueness']:.1f} tanimoto {m['tanimoto_to_start']:.3f}", flush=True)
        xg = x.clone().requires_grad_(True)
        (V(xg).sum() + 0.5 * c * (xg ** 2).sum()).backward()
        x = x - eta * xg.grad
print(f"wall {time.perf_counter() - t0:.0f} s cpu {time.process_time() - c0:.0f} s")
