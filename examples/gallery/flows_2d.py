"""Two 2-D flows as particle scatters: linear Fokker-Planck and aggregation.

Left: ``fokker-planck-gaussian`` with ``dim = 2``, ``F = int V rho + int rho log rho`` with
``V(x) = (x - mu)^T A (x - mu)``; the exact law stays Gaussian, and its 2-sigma ellipses
(dashed) are drawn at the same times as the particles, with the exact path of the mean. Right: ``aggregation`` with ``dim = 2``
(``W(z) = |z|^2/2 - log|z|``), whose steady state is the uniform law on the unit disk (dashed
circle).

Run: ``python examples/gallery/flows_2d.py`` (writes docs/gallery/figures/flows_2d.png).
"""

import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import jkoflow
import matplotlib.pyplot as plt
import numpy as np
import torch

torch.set_num_threads(1)
FIGURE = Path(__file__).resolve().parents[2] / "docs" / "gallery" / "figures" / "flows_2d.png"
SNAPSHOTS = [0, 3, 10]  # steps shown


def ellipse(mean: np.ndarray, cov: np.ndarray, k: float = 2.0) -> np.ndarray:
    """Points of the ``k``-sigma ellipse of ``N(mean, cov)``, shape ``(200, 2)``."""
    w, u = np.linalg.eigh(cov)
    a = np.linspace(0, 2 * np.pi, 200)
    return mean + k * (np.stack([np.cos(a), np.sin(a)], 1) * np.sqrt(w)) @ u.T


fokker_planck = {
    "seed": 0,
    "problem": {"kind": "fokker-planck-gaussian", "dim": 2, "n": 300, "tau": 0.05, "steps": 10},
    "solver": {"inner_iters": 150, "logdet": "exact"},  # fresh samples, cosine lr: the problem's defaults
}
aggregation = {
    "seed": 0,
    "problem": {"kind": "aggregation", "dim": 2, "n": 300, "stratified": False},
    "solver": {"tau": 0.5, "steps": 10, "inner_iters": 150, "lr": 1e-2},
}

start = time.perf_counter()
runs, flows, seconds = {}, {}, {}
for name, spec in [("fokker-planck", fokker_planck), ("aggregation", aggregation)]:
    t = time.perf_counter()
    runs[name] = jkoflow.build(spec)
    flows[name] = runs[name].execute()
    seconds[name] = time.perf_counter() - t
total = time.perf_counter() - start

fig, axes = plt.subplots(1, 2, figsize=(10, 4.8))
colors = plt.cm.viridis(np.linspace(0, 0.9, len(SNAPSHOTS)))

ax = axes[0]
problem, flow = runs["fokker-planck"].problem, flows["fokker-planck"]
traj = flow.trajectory()
for s, c in zip(SNAPSHOTS, colors):
    t = problem.t0 + float(flow.times[s])
    ax.scatter(traj[s, :, 0], traj[s, :, 1], s=4, color=c, alpha=0.6, label=f"t = {t:.2f}")
    e = ellipse(problem.exact.mean(t), problem.exact.cov(t))
    ax.plot(e[:, 0], e[:, 1], "--", color=c, lw=1.2)
path = np.array([problem.exact.mean(problem.t0 + float(t)) for t in np.linspace(0, flow.times[-1], 50)])
ax.plot(path[:, 0], path[:, 1], "k-", lw=1, label="exact mean")
final = problem.metrics(problem.t0 + float(flow.times[-1]), flow.particles[0], flow.particles[-1], None)
ax.set_title(f"Fokker-Planck, d = 2 (cov. rel. error at t = 0.5: {final['cov_rel_error']:.3f})", fontsize=9)
ax.set_aspect("equal", adjustable="datalim")
ax.legend(fontsize=7, loc="upper left")

ax = axes[1]
problem, flow = runs["aggregation"].problem, flows["aggregation"]
traj = flow.trajectory()
for s, c in zip(SNAPSHOTS, colors):
    ax.scatter(traj[s, :, 0], traj[s, :, 1], s=4, color=c, alpha=0.6, label=f"step {s}")
a = np.linspace(0, 2 * np.pi, 200)
ax.plot(np.cos(a), np.sin(a), "k--", lw=1.2, label="unit circle")
final = runs["aggregation"].problem_metrics(flow)
ax.set_title(
    f"aggregation, d = 2 (W2 to the disk: {final['w2_steady']:.3f}, i.i.d. floor {final['w2_iid_floor']:.3f})",
    fontsize=9,
)
ax.set_aspect("equal", adjustable="datalim")
ax.legend(fontsize=7, loc="upper left")
fig.tight_layout()
FIGURE.parent.mkdir(parents=True, exist_ok=True)
fig.savefig(FIGURE, dpi=100)

for name, s in seconds.items():
    print(f"{name}: {flows[name].steps} steps in {s:.1f} s")
print(f"total {total:.1f} s; figure: {FIGURE}")
