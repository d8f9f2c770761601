"""MOSES sample loading and the on-disk QED cache."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("rdkit")
from _shim import molecules_module

data = molecules_module("data")


def test_sample_splits() -> None:
    train, test = data.load_sample("train"), data.load_sample("test")
    assert len(train) == 4000 and len(test) == 1000
    assert not set(train) & set(test)
    assert data.load_smiles("test", "sample") == test


def test_cache_dir_env(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("JKOFLOW_CACHE", str(tmp_path))
    assert data.cache_dir() == tmp_path / "moses"
    assert (tmp_path / "moses").is_dir()


def test_qed_values() -> None:
    q = data.compute_qed(["CCO", "c1ccccc1O", "not a smiles"], progress=False)
    assert 0.0 < q[0] < 1.0 and 0.0 < q[1] < 1.0 and np.isnan(q[2])


def test_qed_cache_hit_identical(tmp_path, monkeypatch) -> None:
    smiles = data.load_sample("test")[:30]
    first = data.cached_qed(smiles, "sample_test30", cache=tmp_path, progress=False)
    assert (tmp_path / "qed_sample_test30.npz").exists()

    def boom(*args, **kwargs):  # a cache hit must not recompute
        raise AssertionError("QED recomputed despite cache")

    monkeypatch.setattr(data, "compute_qed", boom)
    second = data.cached_qed(smiles, "sample_test30", cache=tmp_path, progress=False)
    np.testing.assert_array_equal(first, second)
    with pytest.raises(AssertionError):  # different molecules under the same key -> recompute
        data.cached_qed(smiles[:10], "sample_test30", cache=tmp_path, progress=False)


@pytest.mark.slow
def test_full_moses_from_cached_wheel() -> None:
    if not (data.cache_dir() / data.MOSES_WHEEL).exists():
        pytest.skip("molsets wheel not cached (run data.fetch_moses_wheel())")
    test = data.load_moses("test")
    assert len(test) == 176_074
    assert set(data.load_sample("test")) <= set(test)
