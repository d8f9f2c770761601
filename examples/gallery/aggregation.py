"""Aggregation equation ``d_t rho = div(rho grad(W * rho))`` in d = 1, towards its steady state.

The problem ``aggregation`` (paper Section 5.3) takes the attractive-repulsive kernel
``W(z) = |z|^2/2 - log|z|`` and ``rho_0 = N(0, 1)``; the flow converges to the semicircle
``rho_inf(x) = (1/pi) sqrt((2 - x^2)_+)`` with ``F(rho_inf) = 1/4 - (log(sqrt 2 / 2) - 1/4)/2``.
Left: histograms of the particles at a few steps against ``rho_inf``; middle: ``F`` per step
against ``F_inf``; right: the W1 distance to ``rho_inf`` per step, with the W1 of an i.i.d.
sample of ``rho_inf`` of the same size (the floor an ``n``-point sample meets).

Run: ``python examples/gallery/aggregation.py`` (writes docs/gallery/figures/aggregation.png).
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
FIGURE = Path(__file__).resolve().parents[2] / "docs" / "gallery" / "figures" / "aggregation.png"

spec = {
    "seed": 0,
    "problem": {"kind": "aggregation", "dim": 1, "n": 300},  # float64, FICNN (50, 50, 50)
    "solver": {"tau": 1.0, "steps": 8, "inner_iters": 200, "lr": 1e-2},
}
run = jkoflow.build(spec)
problem = run.problem
metrics = []
start = time.perf_counter()
flow = run.execute(callback=lambda f: metrics.append(run.problem_metrics(f)))  # after step 0 and every step
seconds = time.perf_counter() - start

F = [flow.initial_F] + [r.F for r in flow.records]
steps = np.arange(len(F))
traj = flow.trajectory()  # (steps + 1, n, 1)

fig, (ax_d, ax_f, ax_w) = plt.subplots(1, 3, figsize=(13, 3.6))
grid = np.linspace(-2.5, 2.5, 400)
bins = np.linspace(-2.5, 2.5, 41)
for s, color in zip([0, 1, 2, flow.steps], plt.cm.viridis(np.linspace(0, 0.9, 4))):
    ax_d.hist(traj[s, :, 0], bins=bins, density=True, histtype="step", color=color, lw=1.5, label=f"step {s}")
ax_d.plot(grid, problem.steady_density(grid[:, None]), "k--", lw=1.2, label=r"$\rho_\infty$")
ax_d.set_xlabel("x")
ax_d.set_ylabel("density")
ax_d.set_title("particles and the steady state")
ax_d.legend(fontsize=8)

ax_f.plot(steps, F, "o-", label=r"$F(\hat\rho_k)$ (particles)")
ax_f.axhline(problem.F_inf, color="k", ls="--", label=r"$F(\rho_\infty)$")
ax_f.set_xlabel("JKO step (tau = 1)")
ax_f.set_title("energy")
ax_f.legend(fontsize=8)

w1 = [m["w1_steady"] for m in metrics]
ax_w.semilogy(steps, w1, "s-", color="tab:orange", label=r"$W_1(\hat\rho_k, \rho_\infty)$")
floor = metrics[-1]["w1_iid_floor"]
ax_w.axhline(floor, color="gray", ls=":", label=f"i.i.d. sample of $\\rho_\\infty$, n = {traj.shape[1]}")
ax_w.set_xlabel("JKO step (tau = 1)")
ax_w.set_title("distance to the steady state")
ax_w.legend(fontsize=8)
fig.tight_layout()
FIGURE.parent.mkdir(parents=True, exist_ok=True)
fig.savefig(FIGURE, dpi=100)

print(f"{flow.steps} steps in {seconds:.1f} s")
print(
    f"F {F[-1]:.4f} vs F_inf {problem.F_inf:.4f}; W1 to rho_inf {metrics[-1]['w1_steady']:.4f} "
    f"(i.i.d. floor {metrics[-1]['w1_iid_floor']:.4f})"
)
print(f"figure: {FIGURE}")
