"""Ceiling for any surrogate: how well does an unconstrained MLP predict QED(decode(z)) from z?

Input: a ``perturbed_decodings.py`` file (points ``z + r u``, labels = QED of their greedy
decoding, 0 where invalid). A 128-256-256-1 SiLU MLP (non-convex, so an upper bound for the
convex surrogate) is fitted by least squares (Adam, lr 1e-3, weight decay 1e-4, batch 256) on
the first 90 % and scored on the last 10 %: held-out Spearman and R^2 every 10 epochs, then the
Spearman per radius band. If even this model cannot rank decoded QED, no potential V on this
latent can steer it.

Run (1 thread, 45 s for 40,000 points)::

    python benchmarks/molecules/predictability.py perturbed.npz [--valid-only]

``--valid-only`` scores QED on the valid decodings alone (the default labels invalid ones 0, which
mixes validity into the score).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from scipy.stats import spearmanr


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", help="the .npz written by perturbed_decodings.py")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--valid-only",
        action="store_true",
        help="drop the points whose decoding is invalid (default: label them QED 0), so the score is "
        "about QED alone, not validity",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    t0, c0 = time.perf_counter(), time.process_time()
    d = np.load(args.data)
    keep = np.isfinite(d["q"]) if args.valid_only else np.ones(len(d["q"]), dtype=bool)
    x = torch.from_numpy(d["x"][keep]).float()
    q = torch.from_numpy(np.nan_to_num(d["q"][keep])).float()
    k = int(0.9 * len(q))
    xt, qt, xv, qv = x[:k], q[:k], x[k:], q[k:]
    net = torch.nn.Sequential(
        torch.nn.Linear(x.shape[1], 256),
        torch.nn.SiLU(),
        torch.nn.Linear(256, 256),
        torch.nn.SiLU(),
        torch.nn.Linear(256, 1),
    )
    opt = torch.optim.Adam(net.parameters(), 1e-3, weight_decay=1e-4)
    for ep in range(args.epochs):
        perm = torch.randperm(k)
        for i in range(0, k, 256):
            b = perm[i : i + 256]
            loss = ((net(xt[b])[:, 0] - qt[b]) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        if ep % 10 == 9 or ep == args.epochs - 1:
            with torch.no_grad():
                pv = net(xv)[:, 0]
            print(
                f"epoch {ep + 1}: held-out Spearman {spearmanr(pv.numpy(), qv.numpy()).statistic:.3f} "
                f"R2 {float(1 - ((pv - qv) ** 2).mean() / qv.var()):.3f}",
                flush=True,
            )
    with torch.no_grad():
        pv = net(xv)[:, 0]
    r = d["r"][keep][k:]
    for lo, hi in [(0, 1), (1, 2), (2, 4), (4, 6)]:
        m = (r >= lo) & (r < hi)
        if m.sum() > 10:
            rho = spearmanr(pv.numpy()[m], qv.numpy()[m]).statistic
            print(f"r in [{lo},{hi}): n {m.sum()} Spearman {rho:.3f}")
    print(f"wall {time.perf_counter() - t0:.0f} s cpu {time.process_time() - c0:.0f} s")


if __name__ == "__main__":
    main()
