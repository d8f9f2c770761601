"""Sequence VAE: shapes, save/load, training smoke run, checkpoint resume."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("rdkit")
pytest.importorskip("selfies")
import torch
from _shim import molecules_module

torch.set_num_threads(1)
data = molecules_module("data")
tokens = molecules_module("tokens")
vae_mod = molecules_module("vae")
train_mod = molecules_module("train")

TRAIN = data.load_sample("train")[:256]
TEST = data.load_sample("test")[:16]
SMALL = {"embed_dim": 16, "enc_hidden": 32, "dec_hidden": 48, "max_len": 60}


def small_vae(kind: str = "selfies"):
    torch.manual_seed(0)
    return vae_mod.MoleculeVAE.create(tokens.MolTokenizer.build(kind, TRAIN), **SMALL)


def test_default_size_and_latent_dim() -> None:
    vae = vae_mod.MoleculeVAE.create(tokens.MolTokenizer.build("selfies", TRAIN[:50]))
    assert vae.latent_dim == 128
    assert 500_000 <= vae.n_parameters() <= 1_000_000


@pytest.mark.parametrize("kind", ["selfies", "smiles"])
def test_encode_decode_shapes(kind: str) -> None:
    vae = small_vae(kind)
    z = vae.encode(TEST[:10])
    assert z.shape == (10, 128) and z.dtype == torch.float32
    out = vae.decode(z)
    assert len(out) == 10 and all(isinstance(s, str) for s in out)
    sampled = vae.decode(z, greedy=False, generator=torch.Generator().manual_seed(0))
    assert len(sampled) == 10
    assert vae.encode([]).shape == (0, 128)


def test_selfies_decodings_are_valid() -> None:
    vae = small_vae("selfies")
    out = vae.sample_prior(20, generator=torch.Generator().manual_seed(1))
    assert len(out) == 20
    # SELFIES: any non-empty decoding is a valid molecule (untrained nets may emit "")
    assert all(tokens.canonicalize(s) is not None for s in out if s)


def test_save_load_identical(tmp_path) -> None:
    vae = small_vae()
    path = tmp_path / "vae.pt"
    vae.save(path)
    back = vae_mod.load_vae(path)
    z1, z2 = vae.encode(TEST), back.encode(TEST)
    assert torch.equal(z1, z2)
    assert vae.decode(z1) == back.decode(z2)
    raw = torch.load(path, weights_only=True)  # plain dict: no code unpickled
    assert raw["format"] == vae_mod.FORMAT and raw["config"]["latent_dim"] == 128


def _records(path, kind):
    return [r for r in map(json.loads, path.read_text().splitlines()) if r["type"] == kind]


@pytest.mark.filterwarnings("ignore:latent collapse")
def test_training_smoke_decreases_loss(tmp_path) -> None:
    rec = train_mod.train_vae(
        tmp_path,
        repr="selfies",
        minutes=1.0,
        max_steps=20,
        batch_size=32,
        lr=3e-3,
        log_every=5,
        n_prior=8,
        progress=False,
        model_kwargs=SMALL,
        train_smiles=TRAIN,
        eval_smiles=TEST,
    )
    train = _records(tmp_path / "metrics.jsonl", "train")
    assert [r["step"] for r in train] == [5, 10, 15, 20]
    assert train[-1]["loss"] < train[0]["loss"]
    assert rec["step"] == 20 and {"recon_exact", "recon_valid", "prior_valid"} <= rec.keys()
    assert (tmp_path / "checkpoint.pt").exists() and (tmp_path / "vocab.json").exists()
    assert not list(tmp_path.glob("*.tmp"))
    # the training checkpoint loads as a model
    assert vae_mod.load_vae(tmp_path / "checkpoint.pt").encode(TEST[:2]).shape == (2, 128)


@pytest.mark.filterwarnings("ignore:latent collapse")
def test_resume_continues_step_count(tmp_path) -> None:
    kw = dict(
        repr="selfies",
        minutes=1.0,
        batch_size=32,
        log_every=2,
        n_prior=4,
        progress=False,
        model_kwargs=SMALL,
        train_smiles=TRAIN,
        eval_smiles=TEST[:4],
    )
    train_mod.train_vae(tmp_path, max_steps=4, **kw)
    first = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert first["state"]["step"] == 4
    rec = train_mod.train_vae(tmp_path, max_steps=7, resume=True, **kw)
    ck = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert rec["step"] == 7 and ck["state"]["step"] == 7
    assert ck["state"]["molecules"] == 7 * 32
    assert ck["state"]["pos"] == first["state"]["pos"] + 3 * 32
    steps = [r["step"] for r in _records(tmp_path / "metrics.jsonl", "train")]
    assert steps == [2, 4, 6]  # resumed run continues numbering, no restart at 0


def test_collapse_flag() -> None:
    vae = small_vae()
    with torch.no_grad():  # posterior = prior exactly -> KL 0 -> collapsed
        for p in (vae.model.to_mu, vae.model.to_logvar):
            p.weight.zero_()
            p.bias.zero_()
    rec = train_mod.evaluate(vae, TEST[:8], n_prior=4)
    assert rec["collapsed"] and rec["kl_per_dim"] < 1e-6 and rec["recon_unique"] <= 100 / 8 + 1e-9
