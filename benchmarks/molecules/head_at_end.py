"""Which link fails? The flow's end points judged by the surrogate, the joint QED head and the decoder.

For a finished ``jkoflow molecules run --out DIR`` (its ``maps.pt``, ``molecules.csv``, ``run.json``):
rebuilds the start cloud (same preset and seed), transports it through the saved maps and reports,
at the start and at the end, the surrogate's predicted P(QED > 0.85), the committed joint QED
head's predicted QED (``qed_head.pt`` beside the VAE), and the QED of the greedy decodings
(``molecules.csv``): median, share above 0.85, and the Spearman correlation of head vs decoded QED
over the particles; plus how far the end points are from any start embedding (nearest-neighbour
distance over the start cloud's own nearest-neighbour distance), a measure of leaving the data.

Run (1 thread, about 1 minute)::

    python benchmarks/molecules/head_at_end.py runs/i16/paper_cpu_s0
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir", help="output directory of `jkoflow molecules run`")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    import jkoflow
    from jkoflow.contrib.molecules.metrics import qed_values
    from jkoflow.contrib.molecules.plugin import qed_surrogate
    from jkoflow.contrib.molecules.train import PropertyHead
    from jkoflow.flow import Flow
    from jkoflow.plugins.potentials import ficnn

    out = Path(args.run_dir)
    info = json.loads((out / "run.json").read_text())
    s = info["settings"]
    table = {"kind": "molecules", "preset": "paper-cpu", "vae": info["vae"], "surrogate": info["surrogate"]}
    table.update({k: s[k] for k in ("n", "steps", "lambda_2", "tau", "inner_iters", "source")})
    run = jkoflow.build({"problem": table, "seed": info["seed"]})
    x0 = run.x0.float()
    flow = Flow.load_maps(out / "maps.pt", lambda: ficnn(128, widths=[int(w) for w in s["widths"]]))
    xT, _ = flow.transport(x0)
    xT = xT.detach().float()
    V = qed_surrogate(info["surrogate"])
    hd = torch.load(Path(info["vae"]).with_name("qed_head.pt"), weights_only=True)
    head = PropertyHead(128, int(hd["hidden"]), float(hd["qed_mean"]), float(hd["qed_std"]))
    head.load_state_dict(hd["state_dict"])
    with open(out / "molecules.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    steps = sorted({int(r["step"]) for r in rows})
    dec = {st: [r["smiles"] for r in rows if int(r["step"]) == st] for st in (steps[0], steps[-1])}
    nn0 = torch.cdist(x0, x0).fill_diagonal_(float("inf")).min(1).values.median()
    for label, x, st in (("start", x0, steps[0]), ("end", xT, steps[-1])):
        with torch.no_grad():
            ph = torch.sigmoid(-V(x)).numpy()
            qh = head.qed(x).numpy()
        qd = qed_values(dec[st])
        ok = np.isfinite(qd)
        nn = torch.cdist(x, x0).min(1).values.median() if label == "end" else nn0
        print(
            f"{label} (step {st}): surrogate P(QED>0.85) mean {ph.mean():.3f} | head QED median {np.median(qh):.3f}, "
            f"share > 0.85 {100 * (qh > 0.85).mean():.1f} % | decoded QED median {np.median(qd[ok]):.3f}, share > 0.85 "
            f"{100 * (qd[ok] > 0.85).mean():.1f} %, validity {100 * ok.mean():.1f} % | Spearman(head, decoded) "
            f"{spearmanr(qh[ok], qd[ok]).statistic:.3f} | median NN distance to the start cloud {float(nn):.2f} "
            f"(start cloud's own {float(nn0):.2f}) | mean |x| {float(x.norm(dim=1).mean()):.2f}"
        )


if __name__ == "__main__":
    main()
