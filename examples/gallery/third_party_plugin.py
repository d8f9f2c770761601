"""A third-party plugin: the double-well Fokker-Planck flow of ``contrib/example-plugin``.

``jkoflow-example-plugin`` is a separate package (``pip install --no-build-isolation
./contrib/example-plugin``) whose entry point registers a ``double_well`` functional,
``F(rho) = int V d rho`` with ``V(x) = h (|x|^2 - a^2)^2 / a^4`` (not convex), and a
``quad_softplus`` convex network. Its example spec names both as if they were built in, adds the
entropy with weight ``T = 0.3``, and flows a narrow Gaussian at the barrier top ``x = 0``: the
stationary law is ``rho_inf ~ exp(-V / T)``, bimodal. The figure shows the particles (KDE) at
a few times against ``rho_inf`` (dashed), and ``F`` per step.

Run: ``python examples/gallery/third_party_plugin.py`` (writes
docs/gallery/figures/third_party_plugin.png).
"""

import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import jkoflow
import matplotlib.pyplot as plt
import numpy as np
import torch
from scipy.stats import gaussian_kde

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[2]
FIGURE = ROOT / "docs" / "gallery" / "figures" / "third_party_plugin.png"

registry = jkoflow.default_registry()
for kind, name in [("functional", "double_well"), ("net", "quad_softplus")]:
    print(f"{kind} {name!r} is provided by {registry.entry(kind, name).provider}")

spec = jkoflow.load(ROOT / "contrib" / "example-plugin" / "examples" / "double_well.toml")
spec["solver"].update(tau=0.1, steps=20)  # run longer than the example file: t = 2
run = jkoflow.build(spec)
start = time.perf_counter()
flow = run.execute()
seconds = time.perf_counter() - start

a, height, T = 1.0, 0.5, 0.3  # from double_well.toml
grid = np.linspace(-2.0, 2.0, 400)
V = height * (grid**2 - a**2) ** 2 / a**4
rho_inf = np.exp(-V / T)
dx = grid[1] - grid[0]
rho_inf /= rho_inf.sum() * dx
F_inf = float(np.sum((V + T * np.log(rho_inf)) * rho_inf) * dx)  # F(rho_inf), by quadrature

traj = flow.trajectory()


def kde(x: np.ndarray, bandwidth: float = 0.1) -> np.ndarray:
    """Gaussian KDE on ``grid`` with a fixed bandwidth (Scott's rule oversmooths two modes)."""
    return gaussian_kde(x, bw_method=bandwidth / x.std(ddof=1))(grid)


fig, (ax_d, ax_f) = plt.subplots(1, 2, figsize=(10, 3.8))
for s, c in zip([0, 2, 5, flow.steps], plt.cm.viridis(np.linspace(0, 0.9, 4))):
    ax_d.plot(grid, kde(traj[s, :, 0]), color=c, lw=1.5, label=f"t = {float(flow.times[s]):.1f}")
ax_d.plot(grid, rho_inf, "k--", lw=1.2, label=r"$\rho_\infty \propto e^{-V/T}$")
ax_d.set_ylim(0, 1.6)
ax_d.set_xlabel("x")
ax_d.set_ylabel("density (particles: KDE)")
ax_d.set_title("double well (plugin: jkoflow-example-plugin)", fontsize=9)
ax_d.legend(fontsize=8)
F = [flow.initial_F] + [r.F for r in flow.records]
ax_f.plot(flow.times, F, "o-", ms=3, label="particles")
ax_f.axhline(F_inf, color="k", ls="--", label=r"$F(\rho_\infty)$")
ax_f.legend(fontsize=8)
ax_f.set_xlabel("t")
ax_f.set_ylabel(r"$F = \int V\,d\rho + T\int\rho\log\rho$")
ax_f.set_title("F over time", fontsize=9)
fig.tight_layout()
FIGURE.parent.mkdir(parents=True, exist_ok=True)
fig.savefig(FIGURE, dpi=100)

print(f"{flow.steps} steps in {seconds:.1f} s; F {F[0]:.4f} -> {F[-1]:.4f} (F(rho_inf) = {F_inf:.4f})")
print(f"figure: {FIGURE}")
