"""Decoder link along the joint QED head's direction: decode x0 + t w/|w| for a few t.

``w`` is the committed linear QED head's weight (``qed_head.pt`` beside ``--vae``); ``x0`` the
``molecules`` problem's start cloud (MOSES test molecules with QED < 0.7, seed ``--start-seed``).
For each step length t it prints the head's predicted QED median, the decoded (greedy) QED median,
validity, and Tanimoto to the start molecule; and the cosine between ``-grad V`` of the paired
surrogate and ``w`` at x0 (does the surrogate's descent follow the head's QED direction?).

Run (1 thread, about 1-2 minutes)::

    python benchmarks/molecules/head_direction.py --vae contrib/molecules/checkpoints/qedhead/vae.pt \
        --surrogate contrib/molecules/checkpoints/qedhead/qed_surrogate.pt --n 500
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from _common import add_common_args, start_cloud  # benchmarks/molecules/_common.py
from jkoflow.contrib.molecules.metrics import paired_tanimoto, qed_values
from jkoflow.contrib.molecules.plugin import get_vae, qed_surrogate
from jkoflow.contrib.molecules.train import PropertyHead


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--surrogate", required=True, help="the surrogate paired with --vae")
    p.add_argument("--t", default="0,1,2,3,4,6", help="step lengths along w/|w|")
    add_common_args(p)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    sampler, x0 = start_cloud(args)
    hd = torch.load(Path(args.vae).with_name("qed_head.pt"), weights_only=True)
    head = PropertyHead(128, int(hd["hidden"]), float(hd["qed_mean"]), float(hd["qed_std"]))
    head.load_state_dict(hd["state_dict"])
    if int(hd["hidden"]) != 0:
        raise SystemExit(f"the head in {args.vae} is an MLP (hidden={hd['hidden']}); this needs a linear one")
    w = head.net.weight.detach()[0]
    u = w / w.norm()
    V = qed_surrogate(args.surrogate)
    x = x0.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(V(x).sum(), x)
    cos = torch.nn.functional.cosine_similarity(-g, u.expand_as(g), dim=1)
    print(
        f"|w| {float(w.norm()):.3f} (head QED per latent unit along w: {float(w.norm()) * head.std:.4f}); "
        f"cos(-grad V, w) at x0: median {float(cos.median()):.3f}, mean {float(cos.mean()):.3f}"
    )
    vae = get_vae(args.vae)
    for t in [float(v) for v in args.t.split(",")]:
        xt = x0 + t * u
        dec = vae.decode(xt)
        q = qed_values(dec)
        ok = np.isfinite(q)
        sim = paired_tanimoto(sampler.smiles, dec)
        print(
            f"t {t:g}: head QED median {float(head.qed(xt).median()):.3f} | decoded QED median "
            f"{np.median(q[ok]):.3f}, validity {100 * ok.mean():.1f} %, uniqueness "
            f"{100 * len(set(np.array(dec)[ok])) / max(ok.sum(), 1):.1f} %, Tanimoto to start molecule "
            f"{np.nanmean(sim):.3f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
