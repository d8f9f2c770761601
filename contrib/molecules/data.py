"""MOSES data access and cached RDKit QED.

The MOSES benchmark (Polykovskiy et al., 2020, MIT license) ships its SMILES
splits inside the PyPI wheel ``molsets==0.3.1`` as
``moses/dataset/data/{train,test}.csv.gz``.  This module downloads that wheel
once with ``pip download --no-deps`` (the wheel is never installed: its pinned
dependencies are outdated) and reads the csv.gz members straight out of the
zip archive.

A small sample (4,000 train + 1,000 test SMILES) is committed next to this
file (``data/moses_sample.csv.gz``) so that tests and smoke runs need no
network.

Cache layout: ``$JKOFLOW_CACHE/moses`` if the environment variable
``JKOFLOW_CACHE`` is set, else ``~/.cache/jkoflow/moses``.  It holds the
wheel and the QED caches (``qed_<source>_<split>.npz``).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import os
import random
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

Split = Literal["train", "test"]
Source = Literal["moses", "sample"]

MOSES_WHEEL = "molsets-0.3.1-py3-none-any.whl"
MOSES_REQUIREMENT = "molsets==0.3.1"
SAMPLE_PATH = Path(__file__).resolve().parent / "data" / "moses_sample.csv.gz"
SPLITS: tuple[str, ...] = ("train", "test")


def cache_dir() -> Path:
    """Directory for the MOSES wheel and the QED caches (created on demand).

    ``$JKOFLOW_CACHE/moses`` when ``JKOFLOW_CACHE`` is set, otherwise
    ``~/.cache/jkoflow/moses``.
    """
    root = os.environ.get("JKOFLOW_CACHE")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "jkoflow"
    path = base / "moses"
    path.mkdir(parents=True, exist_ok=True)
    return path


def fetch_moses_wheel(cache: Path | None = None) -> Path:
    """Return the path of the ``molsets==0.3.1`` wheel, downloading it if absent.

    Uses ``python -m pip download --no-deps`` into the cache directory; the
    wheel is only read as a zip archive, never installed.
    """
    cache = Path(cache) if cache is not None else cache_dir()
    wheel = cache / MOSES_WHEEL
    if wheel.exists():
        return wheel
    cache.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        MOSES_REQUIREMENT,
        "-d",
        str(cache),
    ]
    subprocess.run(cmd, check=True)
    if not wheel.exists():  # pragma: no cover - pip named it differently
        raise FileNotFoundError(f"pip download did not produce {wheel}")
    return wheel


def _read_smiles_csv(raw: bytes) -> list[str]:
    """Parse a (decompressed) MOSES csv with a ``SMILES`` column."""
    reader = csv.DictReader(io.StringIO(raw.decode("utf-8")))
    return [row["SMILES"] for row in reader]


def load_moses(split: Split = "train", cache: Path | None = None) -> list[str]:
    """All SMILES of a MOSES split (``train``: 1,584,663; ``test``: 176,074)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    wheel = fetch_moses_wheel(cache)
    with zipfile.ZipFile(wheel) as zf:
        raw = gzip.decompress(zf.read(f"moses/dataset/data/{split}.csv.gz"))
    return _read_smiles_csv(raw)


def load_sample(split: Split = "train", path: Path | None = None) -> list[str]:
    """SMILES of the committed MOSES sample (4,000 train / 1,000 test)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    path = Path(path) if path is not None else SAMPLE_PATH
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [row["SMILES"] for row in csv.DictReader(fh) if row["SPLIT"] == split]


def load_smiles(split: Split = "train", source: Source = "moses") -> list[str]:
    """SMILES of ``split`` from ``source`` (``"moses"``: full data, ``"sample"``)."""
    if source == "moses":
        return load_moses(split)
    if source == "sample":
        return load_sample(split)
    raise ValueError(f"source must be 'moses' or 'sample', got {source!r}")


def write_sample(path: Path | None = None, n_train: int = 4000, n_test: int = 1000, seed: int = 0) -> Path:
    """Write a random MOSES subset as csv.gz with columns ``SMILES,SPLIT``."""
    path = Path(path) if path is not None else SAMPLE_PATH
    rng = random.Random(seed)
    rows: list[tuple[str, str]] = []
    for split, n in (("train", n_train), ("test", n_test)):
        smiles = load_moses(split)  # type: ignore[arg-type]
        rows += [(s, split) for s in rng.sample(smiles, n)]
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["SMILES", "SPLIT"])
    writer.writerows(rows)
    # mtime=0 keeps the file byte-identical across regenerations
    with open(path, "wb") as fh, gzip.GzipFile(fileobj=fh, mode="wb", mtime=0) as gz:
        gz.write(buf.getvalue().encode("utf-8"))
    return path


def qed(smiles: str) -> float:
    """RDKit QED of one SMILES; ``nan`` if RDKit cannot parse it."""
    from rdkit import Chem, RDLogger
    from rdkit.Chem import QED

    RDLogger.DisableLog("rdApp.*")  # type: ignore[attr-defined]  # missing from rdkit stubs
    mol = Chem.MolFromSmiles(smiles) if smiles else None
    return float("nan") if mol is None else float(QED.qed(mol))


def compute_qed(smiles: Sequence[str], progress: bool = True) -> np.ndarray:
    """QED of every SMILES (float64 array, ``nan`` for unparsable strings)."""
    from tqdm.auto import tqdm

    it = tqdm(smiles, desc="QED", unit="mol", disable=not progress, mininterval=2.0)
    return np.fromiter((qed(s) for s in it), dtype=np.float64, count=len(smiles))


def _digest(smiles: Sequence[str]) -> str:
    h = hashlib.sha256()
    for s in smiles:
        h.update(s.encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


def cached_qed(
    smiles: Sequence[str], key: str, cache: Path | None = None, progress: bool = True
) -> np.ndarray:
    """QED of ``smiles``, cached on disk as ``qed_<key>.npz``.

    The cache stores a SHA-256 of the SMILES list; a mismatch (different
    molecules under the same key) recomputes and overwrites it.
    """
    cache = Path(cache) if cache is not None else cache_dir()
    path = cache / f"qed_{key}.npz"
    digest = _digest(smiles)
    if path.exists():
        with np.load(path, allow_pickle=False) as npz:
            if str(npz["digest"]) == digest and len(npz["qed"]) == len(smiles):
                return npz["qed"].copy()
    values = compute_qed(smiles, progress=progress)
    cache.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache, suffix=".npz")
    os.close(fd)
    with open(tmp, "wb") as fh:
        np.savez(fh, qed=values, digest=np.array(digest))
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return values


def load_qed(
    split: Split = "test", source: Source = "moses", cache: Path | None = None, progress: bool = True
) -> tuple[list[str], np.ndarray]:
    """SMILES of a split and their QED (computed once, then read from cache)."""
    smiles = load_smiles(split, source)
    return smiles, cached_qed(smiles, f"{source}_{split}", cache=cache, progress=progress)
