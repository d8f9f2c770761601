"""Seeded molecule pools with cached QED and cached VAE embeddings.

The molecular flow needs three sets of molecules, all drawn reproducibly:

* a *train pool* (a random subset of MOSES train) to fit the convex QED surrogate,
* a *test pool* (a random subset of MOSES test) for the surrogate's test accuracy and
  for the start clouds ``rho_0`` (molecules with QED < 0.7, as in the paper).

QED comes from :func:`.data.cached_qed` (cached per pool); embeddings are the VAE's
posterior means ``mu(x)`` and are cached on disk keyed by the VAE file's SHA-256, so a
retrained VAE never reuses stale embeddings.
"""

from __future__ import annotations

import hashlib
import os
import random
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .data import Source, Split, cache_dir, cached_qed, load_smiles

DEFAULT_VAE = Path(__file__).resolve().parent / "checkpoints" / "selfies" / "checkpoint.pt"
"""The VAE being trained (helper of the data half); it changes while training runs."""
PAIRED_VAE = Path(__file__).resolve().parent / "checkpoints" / "surrogate" / "vae.pt"
"""The VAE snapshot the committed QED surrogate was trained on (model weights only)."""


def default_vae() -> Path:
    """The VAE the flow uses by default: the surrogate's paired snapshot when it exists (so
    embeddings and surrogate live in the same latent space), else :data:`DEFAULT_VAE`."""
    return PAIRED_VAE if PAIRED_VAE.exists() else DEFAULT_VAE


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes (identifies a VAE checkpoint)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def pool(
    split: Split, n: int | None, seed: int = 0, source: Source = "moses", progress: bool = True
) -> tuple[list[str], np.ndarray]:
    """``n`` SMILES drawn without replacement (seeded) from ``split`` and their QED.

    ``n=None`` (or ``n`` at least the split's size) takes the whole split in order.
    Molecules whose QED is ``nan`` (unparsable) are dropped.
    """
    smiles = load_smiles(split, source)
    if n is not None and n < len(smiles):
        idx = sorted(random.Random(seed).sample(range(len(smiles)), n))
        smiles = [smiles[i] for i in idx]
        key = f"{source}_{split}_n{n}_s{seed}"
    else:
        key = f"{source}_{split}"
    q = cached_qed(smiles, key, progress=progress)
    keep = np.isfinite(q)
    return [s for s, k in zip(smiles, keep) if k], q[keep]


def embed(
    vae, smiles: Sequence[str], vae_path: str | Path | None = None, cache: Path | None = None
) -> torch.Tensor:
    """VAE posterior means of ``smiles`` (``(N, latent)`` float32), cached when ``vae_path``
    is given (key: the checkpoint's SHA-256 and the SMILES list's SHA-256)."""
    if vae_path is None:
        return vae.encode(list(smiles))
    h = hashlib.sha256()
    for s in smiles:
        h.update(s.encode())
        h.update(b"\n")
    cache = Path(cache) if cache is not None else cache_dir() / "embeddings"
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"{file_sha256(vae_path)[:16]}_{h.hexdigest()[:16]}.npy"
    if path.exists():
        return torch.from_numpy(np.load(path, allow_pickle=False))
    z = vae.encode(list(smiles))
    fd, tmp = tempfile.mkstemp(dir=cache, suffix=".npy")
    os.close(fd)
    with open(tmp, "wb") as fh:
        np.save(fh, z.numpy())
    os.replace(tmp, path)
    return z
