"""Molecular discovery with JKO-ICNN (paper Section 6): MOSES data, QED, sequence VAE.

Public API (``jkoflow.contrib.molecules``):

* data: :func:`load_smiles`, :func:`load_moses`, :func:`load_sample`,
  :func:`load_qed`, :func:`cached_qed`, :func:`compute_qed`, :func:`qed`
* tokens: :class:`MolTokenizer`, :func:`canonicalize`
* VAE: :class:`MoleculeVAE` (``encode(smiles) -> (N, 128)``,
  ``decode(z) -> list[str]``), :func:`load_vae`
* training: :func:`train_vae`, :func:`evaluate`; command line ``jkoflow molecules`` (:mod:`.cli`)

Needs the optional dependencies ``rdkit`` and ``selfies``
(``pip install jkoflow[molecules]``); without them the plugin (:mod:`.plugin`) registers nothing
and stays silent.
"""

from .data import cache_dir, cached_qed, compute_qed, load_moses, load_qed, load_sample, load_smiles, qed
from .tokens import MolTokenizer, canonicalize
from .train import evaluate, train_vae
from .vae import MoleculeVAE, SeqVAE, VAEConfig, load_vae

__all__ = [
    "MolTokenizer",
    "MoleculeVAE",
    "SeqVAE",
    "VAEConfig",
    "cache_dir",
    "cached_qed",
    "canonicalize",
    "compute_qed",
    "evaluate",
    "load_moses",
    "load_qed",
    "load_sample",
    "load_smiles",
    "load_vae",
    "qed",
    "train_vae",
]
