"""The molecules command line run on tiny inputs: each command's files and printed numbers.

``write-sample`` and ``baselines`` are not run here: the first needs the full MOSES download,
the second a trained flow and minutes of direct optimization."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("rdkit")
pytest.importorskip("selfies")
import torch
from _shim import molecules_module

cli = molecules_module("cli")
data = molecules_module("data")
pools = molecules_module("pools")
vae_mod = molecules_module("vae")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch) -> None:
    """QED and embedding caches go to a fresh directory, not ~/.cache."""
    monkeypatch.setenv("JKOFLOW_CACHE", str(tmp_path / "cache"))
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)  # the commands set the thread count


def _last_json(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


@pytest.mark.filterwarnings("ignore:latent collapse")
def test_train_vae_trains_resumes_and_writes_a_loadable_checkpoint(tmp_path, capsys) -> None:
    """Two steps of the default-size SMILES VAE on the committed sample, then --resume to step 3
    (SMILES: building the SELFIES vocabulary of the 4,000 molecules alone takes 1.5 s)."""
    out = tmp_path / "vae"
    tiny = [
        "--repr",
        "smiles",
        "--data",
        "sample",
        "--out",
        str(out),
        "--batch-size",
        "8",
        "--n-eval",
        "4",
        "--n-prior",
        "4",
    ]
    assert cli.main(["train-vae", *tiny, "--max-steps", "2", "--minutes", "1", "--no-progress"]) == 0
    rec = _last_json(capsys.readouterr().out)
    assert rec["type"] == "eval" and (rec["step"], rec["molecules"]) == (2, 16)
    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ck["state"]["step"] == 2 and ck["config"]["repr"] == "smiles" and ck["config"]["batch_size"] == 8
    vae = vae_mod.load_vae(out / "checkpoint.pt")
    assert vae.latent_dim == 128 and vae.encode(data.load_sample("test")[:3]).shape == (3, 128)
    evals = [r["step"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())]
    assert evals == [0, 2]  # an eval before the first step and one at the end

    assert cli.main(["train-vae", *tiny, "--max-steps", "3", "--resume", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert f"resumed from {out / 'checkpoint.pt'} at step 2" in printed
    assert _last_json(printed)["step"] == 3
    assert torch.load(out / "checkpoint.pt", weights_only=True)["state"]["molecules"] == 24


def test_train_vae_rejects_an_unknown_representation(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["train-vae", "--repr", "inchi", "--out", str(tmp_path / "o")])
    assert exc.value.code == 2 and "invalid choice: 'inchi'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_qed_computes_caches_and_summarizes_the_split(tmp_path, capsys) -> None:
    """``qed --data sample`` on the committed 1,000 test molecules: the printed summary is that of
    the cached values, the cached values are RDKit's QED, and a second call reads the cache."""
    from rdkit import Chem
    from rdkit.Chem import QED

    assert cli.main(["qed", "--split", "test", "--data", "sample"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    cache = tmp_path / "cache" / "moses" / "qed_sample_test.npz"
    with np.load(cache) as npz:
        q = npz["qed"]
    smiles = data.load_sample("test")
    assert len(q) == len(smiles) == 1000 and np.isfinite(q).all()
    assert line == (
        f"1000 molecules, QED median {np.median(q):.3f}, "
        f"QED < 0.7: {int((q < 0.7).sum())}, QED > 0.85: {int((q > 0.85).sum())}"
    )
    # measured: median 0.821, 116 below 0.7, 376 above 0.85
    assert line == "1000 molecules, QED median 0.821, QED < 0.7: 116, QED > 0.85: 376"
    for i in range(0, 1000, 50):  # 20 molecules checked against RDKit directly
        assert q[i] == pytest.approx(QED.qed(Chem.MolFromSmiles(smiles[i])), abs=1e-12)
    mtime = cache.stat().st_mtime_ns
    assert cli.main(["qed", "--split", "test", "--data", "sample"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == line
    assert cache.stat().st_mtime_ns == mtime  # read, not rewritten


@pytest.mark.skipif(not pools.PAIRED_VAE.exists(), reason="no committed VAE snapshot")
def test_train_surrogate_fits_and_writes_a_checkpoint_paired_with_its_vae(tmp_path, monkeypatch, capsys):
    """The command with the MOSES download replaced by 200 molecules of the committed sample per
    split (the only substitution): QED labels, VAE embeddings, 2 epochs, checkpoint + JSON."""
    monkeypatch.setattr(pools, "load_smiles", lambda split, source="moses": data.load_sample(split)[:200])
    surrogate = molecules_module("surrogate")
    out = tmp_path / "sur" / "qed_surrogate.pt"
    argv = ["train-surrogate", "--vae", str(pools.PAIRED_VAE), "--out", str(out)]
    argv += ["--n-train", "100", "--n-test", "50", "--epochs", "2", "--no-progress"]
    assert cli.main(argv) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    metrics = json.loads(out.with_suffix(".json").read_text())
    assert (metrics["n_train"], metrics["n_test"], metrics["labels"]) == (100, 50, "original")
    assert metrics["vae_sha256"] == pools.file_sha256(pools.PAIRED_VAE)
    assert metrics["test"]["n"] == 50
    model, info = surrogate.load_surrogate(out)
    assert model.dim == 128 and info["threshold"] == 0.85
    with torch.no_grad():
        assert torch.isfinite(model(torch.zeros(4, 128))).all()
