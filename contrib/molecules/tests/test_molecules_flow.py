"""The flow half of the molecular experiment: convex surrogate, metrics, warm Sinkhorn,
plugin registration, and the quick preset end to end."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("rdkit")
pytest.importorskip("selfies")
import torch

torch.set_num_threads(1)

from jkoflow.contrib.molecules import metrics as evaluate
from jkoflow.contrib.molecules.sinkhorn import WarmSinkhorn
from jkoflow.contrib.molecules.surrogate import DEFAULT_PATH, QEDSurrogate, load_surrogate, train_surrogate


# --- convex surrogate ------------------------------------------------------------------------
def _synthetic(n: int, dim: int, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """Embeddings with a 'QED' that is high inside a ball: a convex high-QED region."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim, generator=g)
    qed = 0.95 - 0.1 * (x[:, :4].pow(2).sum(1) / 4.0).numpy()  # > 0.85 iff |x_:4|^2 < 4
    return x, qed


@pytest.fixture(scope="module")
def trained() -> QEDSurrogate:
    x, q = _synthetic(1024, 8, 0)
    xt, qt = _synthetic(512, 8, 1)
    model, metrics = train_surrogate(
        x, q, xt, qt, epochs=30, batch_size=64, lr=1e-2, net={"widths": [16] * 4}, progress=False
    )
    model.metrics = metrics  # type: ignore[attr-defined]
    return model


def test_surrogate_learns_orientation(trained: QEDSurrogate) -> None:
    """Lower V = higher QED: the classifier 'high iff V < 0' beats the majority rule."""
    m = trained.metrics  # type: ignore[attr-defined]
    majority = max(m["test"]["positive_rate"], 1 - m["test"]["positive_rate"])
    assert m["test"]["balanced_accuracy"] > 0.8
    assert m["test"]["accuracy"] > majority
    (tn, fp), (fn, tp) = m["test"]["confusion"]
    assert tn + fp + fn + tp == m["test"]["n"] == 512
    assert m["test_spearman_minusV_qed"] > 0.5


def _check_convex(V: QEDSurrogate, dim: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    x, y = 3 * torch.randn(256, dim, generator=g), 3 * torch.randn(256, dim, generator=g)
    lam = torch.rand(256, 1, generator=g)
    with torch.no_grad():  # Jensen along random segments
        gap = lam[:, 0] * V(x) + (1 - lam[:, 0]) * V(y) - V(lam * x + (1 - lam) * y)
        scale = float(V(x).abs().max()) + 1
    assert float(gap.min()) >= -1e-5 * scale
    for p in x[:3]:  # Hessian is positive semi-definite
        H = torch.autograd.functional.hessian(lambda z: V(z[None].double())[0], p.double())
        assert float(torch.linalg.eigvalsh(H).min()) >= -1e-8


def test_surrogate_is_convex(trained: QEDSurrogate) -> None:
    _check_convex(trained.double(), 8, 2)
    trained.float()


@pytest.mark.skipif(not DEFAULT_PATH.exists(), reason="no committed surrogate checkpoint")
def test_committed_surrogate_is_convex_and_loads_safely() -> None:
    model, info = load_surrogate()  # torch.load(weights_only=True) inside
    assert model.dim == 128 and info["threshold"] == 0.85
    _check_convex(model.double(), 128, 3)


SMILES_PAIR = DEFAULT_PATH.parent.parent / "smiles"


@pytest.mark.skipif(not (SMILES_PAIR / "qed_surrogate.pt").exists(), reason="no committed SMILES pair")
def test_committed_smiles_pair_matches_and_reconstructs() -> None:
    """The committed SMILES pair: the surrogate was trained on exactly this VAE (sha256 recorded in
    its JSON), it is convex, and the VAE reconstructs the first 100 test molecules of the committed
    sample (measured: 93 % valid, 74 % exact; at training time, 500 MOSES test molecules: 89.2 % /
    74.2 %). A collapsed or mismatched VAE fails both bounds."""
    from jkoflow.contrib.molecules import data
    from jkoflow.contrib.molecules.plugin import check_pair, get_vae
    from jkoflow.contrib.molecules.tokens import canonicalize

    vae_path, sur_path = str(SMILES_PAIR / "vae.pt"), str(SMILES_PAIR / "qed_surrogate.pt")
    assert check_pair(vae_path, sur_path)
    model, info = load_surrogate(sur_path)
    assert model.dim == 128 and info["threshold"] == 0.85
    _check_convex(model.double(), 128, 4)
    vae = get_vae(vae_path)
    assert vae.tokenizer.kind == "smiles"
    test = data.load_sample("test")[:100]
    decoded = vae.decode(vae.encode(test))
    assert evaluate.validity(decoded) >= 0.75
    exact = np.mean(
        [canonicalize(d) is not None and canonicalize(d) == canonicalize(t) for d, t in zip(decoded, test)]
    )
    assert exact >= 0.55


def test_surrogate_roundtrip(tmp_path, trained: QEDSurrogate) -> None:
    from jkoflow.contrib.molecules.surrogate import save_surrogate

    save_surrogate(trained, tmp_path / "s.pt", metrics={"a": 1.0})
    model, info = load_surrogate(tmp_path / "s.pt")
    x = torch.randn(8, 8)
    assert torch.allclose(model(x), trained(x))
    assert info["metrics"] == {"a": 1.0}


# --- metrics of decoded clouds -------------------------------------------------------------
def test_validity_uniqueness_novelty_hand_computed() -> None:
    assert evaluate.validity(["CCO", "C1CC", ""]) == pytest.approx(1 / 3)  # unclosed ring, empty
    assert evaluate.uniqueness(["CCO", "OCC", "c1ccccc1", "C1CC"]) == pytest.approx(2 / 3)  # CCO == OCC
    assert evaluate.novelty(["CCO", "OCC", "c1ccccc1", "CCN"], {"CCO"}) == pytest.approx(2 / 3)
    assert np.isnan(evaluate.uniqueness(["C1CC"]))


def test_tanimoto() -> None:
    assert evaluate.tanimoto("c1ccccc1O", "Oc1ccccc1") == 1.0  # same molecule, two spellings
    assert np.isnan(evaluate.tanimoto("CCO", "C1CC"))
    # |A & B| / |A | B| on the on-bits, computed independently of RDKit's Tanimoto
    a, b = (set(evaluate.fingerprint(s).GetOnBits()) for s in ("CCO", "CCN"))
    assert evaluate.tanimoto("CCO", "CCN") == pytest.approx(len(a & b) / len(a | b))
    assert 0 < evaluate.tanimoto("CCO", "CCN") < 1


def test_cloud_metrics() -> None:
    from rdkit import Chem
    from rdkit.Chem import QED

    smiles = ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1", "C1CC"]
    q = [QED.qed(Chem.MolFromSmiles(s)) for s in smiles[:3]]
    m = evaluate.cloud_metrics(smiles, start=smiles, training={"CCO"})
    assert m["validity"] == pytest.approx(75.0)
    assert m["uniqueness"] == pytest.approx(100.0)
    assert m["novelty"] == pytest.approx(100.0 * 2 / 3)
    assert m["qed_median"] == pytest.approx(float(np.median(q)))
    assert m["qed_std"] == pytest.approx(float(np.std(q)))
    assert m["tanimoto_to_start"] == pytest.approx(1.0)


# --- warm-started Sinkhorn ------------------------------------------------------------------
@pytest.mark.parametrize("blur,shift", [(0.05, 0.1), (0.5, 0.3)])
def test_warm_sinkhorn_matches_geomloss(blur: float, shift: float) -> None:
    """Cold and warm calls agree with geomloss's debiased Sinkhorn in value and gradient."""
    from jkoflow.plugins.divergences import Sinkhorn

    g = torch.Generator().manual_seed(0)
    ref = torch.randn(120, 16, generator=g, dtype=torch.float64)
    div = WarmSinkhorn(blur=blur, scaling=0.8, warm_iters=200, tol=1e-6)
    exact = Sinkhorn(blur=blur, scaling=0.95)
    for k in range(3):  # first call cold, then warm starts from the previous potentials
        x = (ref + shift * torch.randn(120, 16, generator=g, dtype=torch.float64)).requires_grad_(True)
        v1 = exact(x, ref)
        (g1,) = torch.autograd.grad(v1, x)
        v2 = div(x, ref)
        (g2,) = torch.autograd.grad(v2, x)
        assert v2.item() == pytest.approx(v1.item(), rel=2e-3, abs=1e-6)
        assert float((g1 - g2).norm() / g1.norm()) < 2e-2
        assert div.last_iters >= 1


def test_warm_sinkhorn_zero_on_reference() -> None:
    ref = torch.randn(50, 8, generator=torch.Generator().manual_seed(1))
    assert float(WarmSinkhorn()(ref.clone(), ref)) == pytest.approx(0.0, abs=1e-4)


# --- plugin -----------------------------------------------------------------------------------
def test_plugin_registered() -> None:
    from jkoflow.registry import default_registry

    reg = default_registry()
    assert "molecules" in reg.names("problem")
    assert "qed_surrogate" in reg.names("potential_fn")
    assert "moses_embeddings" in reg.names("sampler")
    assert "sinkhorn_warm" in reg.names("divergence")


def test_plugin_is_silent_without_rdkit() -> None:
    """With rdkit unimportable (a base install without the molecules extra) the molecules
    plugin registers nothing and records no failure: no entries, no command, no bench suite,
    nothing on stderr, and every other entry still works."""
    code = textwrap.dedent("""
        import sys, warnings
        sys.modules["rdkit"] = None  # makes rdkit unimportable
        warnings.simplefilter("error")  # any warning fails the check
        from jkoflow.registry import default_registry
        reg = default_registry()
        assert reg.failures == [], reg.failures
        assert "molecules" not in reg.names("problem") and "heat" in reg.names("problem")
        assert "sinkhorn_warm" not in reg.names("divergence")
        assert "molecules" not in reg.bench_suites() and "pde" in reg.bench_suites()
        import jkoflow
        jkoflow.build({"problem": "heat"})
        print("ok")
    """)
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert res.returncode == 0 and res.stdout.strip().endswith("ok"), res.stderr
    assert res.stderr == "", res.stderr


def test_preset_spec_resolves() -> None:
    from jkoflow.spec import resolve_spec

    resolved = resolve_spec({"problem": {"kind": "molecules", "preset": "paper"}})
    assert resolved.dim == 128
    solver = resolved.solver
    assert solver["tau"] == 1e-4 and solver["inner_iters"] == 500
    assert solver["warm_start"] is False and solver["steps"] == 100
    kinds = [t["kind"] for t in resolved.terms]
    assert kinds == ["potential", "divergence_to_start"]
    assert resolved.terms[1]["weight"] == 1e4
    assert resolved.terms[1]["divergence"] == {"kind": "sinkhorn", "blur": 0.05}


# --- end to end -------------------------------------------------------------------------------
@pytest.mark.skipif(not DEFAULT_PATH.exists(), reason="no committed surrogate checkpoint")
def test_quick_preset_runs_from_spec() -> None:
    """The quick preset (committed MOSES sample, 64 particles, 5 JKO steps) on the SELFIES
    default pair runs from a spec: the
    surrogate objective falls, the predicted P(QED > 0.85) rises, and the decoded cloud stays
    valid and unique.

    Not asserted here: that the median QED of the decoded molecules rises. On this SELFIES pair it
    moves by noise only (3 steps, seeds 0, 1, 2: +0.008, -0.012, +0.002). The quick preset's own
    QED-head pair is tested for a rise beyond its seed spread in test_molecules_issue16.py.
    """
    import jkoflow
    from jkoflow.contrib.molecules.pools import PAIRED_VAE

    # the SELFIES default pair this test was written for (the quick preset's own pair is the
    # SMILES QED-head one since issue 16; its QED rise is tested in test_molecules_issue16.py)
    table = {"kind": "molecules", "preset": "quick", "vae": str(PAIRED_VAE), "surrogate": str(DEFAULT_PATH)}
    run = jkoflow.build({"problem": table})
    flow = run.execute()
    problem = run.problem
    m0 = problem.metrics(0.0, flow.particles[0], flow.particles[0], None)
    m1 = problem.metrics(flow.steps * flow.tau, flow.particles[0], flow.particles[-1], None)
    assert m1["V_mean"] < m0["V_mean"] - 1.0
    assert m1["p_high_mean"] > m0["p_high_mean"]
    assert m1["validity"] >= 95.0 and m1["uniqueness"] >= 95.0
    assert 0.0 < m1["final_sd"] and m1["tanimoto_to_start"] < 1.0  # the cloud moved


def test_perturbed_embeddings_are_labelled_by_their_decoding() -> None:
    """Off-manifold points lie within ``radius`` of a training embedding, are seeded, and carry
    the QED of their own greedy decoding (0 for an invalid one)."""
    from jkoflow.contrib.molecules import data, tokens
    from jkoflow.contrib.molecules import vae as vae_mod
    from jkoflow.contrib.molecules.surrogate import perturbed_embeddings

    train = data.load_sample("train")[:64]
    torch.manual_seed(0)
    vae = vae_mod.MoleculeVAE.create(
        tokens.MolTokenizer.build("selfies", train), embed_dim=16, enc_hidden=32, dec_hidden=48, max_len=40
    )
    z = vae.encode(train[:10])
    x, q = perturbed_embeddings(vae, z, 12, radius=2.0, seed=3)
    assert x.shape == (12, z.shape[1]) and q.shape == (12,)
    assert float(torch.cdist(x, z).min(1).values.max()) <= 2.0 + 1e-5
    assert float(torch.cdist(x, z).min(1).values.max()) > 0.0
    expected = np.nan_to_num(evaluate.qed_values(vae.decode(x)), nan=0.0)
    np.testing.assert_allclose(q, expected)
    x2, q2 = perturbed_embeddings(vae, z, 12, radius=2.0, seed=3)
    assert torch.equal(x, x2) and np.array_equal(q, q2)
    with pytest.raises(ValueError, match="radius"):
        perturbed_embeddings(vae, z, 4, radius=-1.0)
