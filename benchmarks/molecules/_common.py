"""What the molecule diagnostics share: their command-line options for the VAE, the data source
and the thread count, and the start cloud (the ``molecules`` problem's: MOSES test molecules with
QED < 0.7, VAE means)."""

from __future__ import annotations

import argparse

import torch
from jkoflow.contrib.molecules.plugin import MosesEmbeddings
from jkoflow.contrib.molecules.pools import default_vae


def add_common_args(p: argparse.ArgumentParser, *, n: int | None = 500) -> None:
    """``--vae``, ``--source``, ``--threads``; with ``n`` also ``--n`` (start molecules, default
    ``n``) and ``--start-seed``."""
    p.add_argument("--vae", default=str(default_vae()), help="weights-only VAE snapshot (default: committed)")
    if n is not None:
        p.add_argument("--n", type=int, default=n, help="start molecules")
        p.add_argument("--start-seed", type=int, default=0, help="seed of the start-cloud draw")
    p.add_argument(
        "--source",
        choices=["moses", "sample"],
        default="moses",
        help="MOSES, or the committed 4k/1k subset (a quick check; 116 start molecules at most)",
    )
    p.add_argument("--threads", type=int, default=1)


def start_cloud(args: argparse.Namespace) -> tuple[MosesEmbeddings, torch.Tensor]:
    """The problem's sampler and the ``args.n`` start embeddings it draws with
    ``args.start_seed`` (its ``smiles`` and ``qed`` are the start molecules')."""
    sampler = MosesEmbeddings(vae=args.vae, source=args.source)
    x0, _ = sampler.sample(args.n, torch.Generator().manual_seed(args.start_seed))
    return sampler, x0
