"""Metrics of decoded molecule clouds (paper Tables 2, 4, 6-8).

For a list of decoded SMILES (one per particle):

* validity   -- fraction that RDKit parses (an empty string is invalid);
* uniqueness -- distinct canonical SMILES among the valid ones / number of valid ones;
* novelty    -- distinct valid molecules absent from the training set / distinct valid ones;
* QED        -- median, mean and standard deviation over the valid molecules;
* similarity -- mean Tanimoto similarity (Morgan fingerprints, radius 2, 2048 bits) of each
  decoded molecule to the molecule its particle started from, over pairs where both parse.

RDKit is imported inside the functions (the package imports without it).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

MORGAN_RADIUS = 2
MORGAN_BITS = 2048


def _mol(smiles: str | None) -> Any:
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")  # type: ignore[attr-defined]  # missing from rdkit stubs
    if not smiles:
        return None
    return Chem.MolFromSmiles(smiles)


def canonical(smiles: Sequence[str]) -> list[str | None]:
    """RDKit canonical SMILES of each string (``None`` where it does not parse)."""
    from rdkit import Chem

    out: list[str | None] = []
    for s in smiles:
        m = _mol(s)
        out.append(None if m is None else Chem.MolToSmiles(m))
    return out


def validity(smiles: Sequence[str]) -> float:
    """Fraction of strings RDKit parses into a molecule."""
    if not smiles:
        raise ValueError("validity of an empty list is undefined")
    return sum(c is not None for c in canonical(smiles)) / len(smiles)


def uniqueness(smiles: Sequence[str]) -> float:
    """Distinct valid molecules / valid molecules (``nan`` when none is valid)."""
    valid = [c for c in canonical(smiles) if c is not None]
    return len(set(valid)) / len(valid) if valid else float("nan")


def novelty(smiles: Sequence[str], training: Iterable[str]) -> float:
    """Distinct valid molecules not in ``training`` (canonical SMILES) / distinct valid ones."""
    unique = {c for c in canonical(smiles) if c is not None}
    if not unique:
        return float("nan")
    train = training if isinstance(training, (set, frozenset)) else set(training)
    return sum(c not in train for c in unique) / len(unique)


def fingerprint(smiles: str) -> Any:
    """Morgan bit-vector fingerprint (radius 2, 2048 bits), or ``None`` if invalid."""
    m = _mol(smiles)
    if m is None:
        return None
    return _generator().GetFingerprint(m)


@functools.lru_cache(maxsize=1)
def _generator() -> Any:
    from rdkit.Chem import rdFingerprintGenerator

    return rdFingerprintGenerator.GetMorganGenerator(radius=MORGAN_RADIUS, fpSize=MORGAN_BITS)


def tanimoto(a: str, b: str) -> float:
    """Tanimoto similarity of the Morgan fingerprints of two SMILES (``nan`` if one is invalid)."""
    from rdkit import DataStructs

    fa, fb = fingerprint(a), fingerprint(b)
    if fa is None or fb is None:
        return float("nan")
    return float(DataStructs.TanimotoSimilarity(fa, fb))


def paired_tanimoto(start: Sequence[str], end: Sequence[str]) -> np.ndarray:
    """Tanimoto similarity of ``end[i]`` to ``start[i]`` for every ``i`` (``nan`` where invalid)."""
    if len(start) != len(end):
        raise ValueError(f"{len(start)} start molecules but {len(end)} end molecules")
    return np.array([tanimoto(a, b) for a, b in zip(start, end)], dtype=float)


def qed_values(smiles: Sequence[str]) -> np.ndarray:
    """RDKit QED of each string (``nan`` where invalid)."""
    from rdkit.Chem import QED

    out = []
    for s in smiles:
        m = _mol(s)
        out.append(float("nan") if m is None else float(QED.qed(m)))
    return np.array(out, dtype=float)


def cloud_metrics(
    smiles: Sequence[str], start: Sequence[str] | None = None, training: Iterable[str] | None = None
) -> dict[str, float]:
    """Validity, uniqueness, (novelty), QED median/mean/std and (similarity to ``start``), as
    percentages where the paper uses them (validity, uniqueness, novelty)."""
    q = qed_values(smiles)
    ok = np.isfinite(q)
    out = {
        "validity": 100.0 * float(ok.mean()),
        "uniqueness": 100.0 * uniqueness(smiles),
        "qed_median": float(np.median(q[ok])) if ok.any() else float("nan"),
        "qed_mean": float(q[ok].mean()) if ok.any() else float("nan"),
        "qed_std": float(q[ok].std()) if ok.any() else float("nan"),
    }
    if training is not None:
        out["novelty"] = 100.0 * novelty(smiles, training)
    if start is not None:
        sims = paired_tanimoto(start, smiles)
        out["tanimoto_to_start"] = float(np.nanmean(sims)) if np.isfinite(sims).any() else float("nan")
    return out


@functools.lru_cache(maxsize=2)
def training_set(source: str = "moses") -> frozenset[str]:
    """Canonical SMILES of the training split (MOSES SMILES are RDKit-canonical already:
    a 1,000-molecule sample was unchanged by re-canonicalization with this RDKit)."""
    from .data import load_smiles

    return frozenset(load_smiles("train", source))  # type: ignore[arg-type]


__all__ = [
    "canonical",
    "cloud_metrics",
    "fingerprint",
    "novelty",
    "paired_tanimoto",
    "qed_values",
    "tanimoto",
    "training_set",
    "uniqueness",
    "validity",
]
