"""The tiny VAE and data slices that the molecules tests train and decode with."""

from __future__ import annotations

import torch
from _shim import molecules_module

data = molecules_module("data")
tokens = molecules_module("tokens")
vae_mod = molecules_module("vae")

TRAIN = data.load_sample("train")[:256]
TEST = data.load_sample("test")[:16]
SMALL = {"embed_dim": 16, "enc_hidden": 32, "dec_hidden": 48, "max_len": 60}


def small_vae(kind: str):
    """A seeded, untrained :class:`MoleculeVAE` of :data:`SMALL` size over ``kind`` tokens."""
    torch.manual_seed(0)
    return vae_mod.MoleculeVAE.create(tokens.MolTokenizer.build(kind, TRAIN), **SMALL)
