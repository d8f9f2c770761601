"""Training loop for the molecular sequence VAE, with checkpoint/resume and metrics.

* Adam, teacher forcing, gradient-norm clipping, KL weight (default 1e-3;
  the MOSES default of 0.05 collapses the latent space within minutes) and
  optional free bits.
* Wall-clock budget (``minutes``) per invocation; a checkpoint
  ``checkpoint.pt`` (model + optimizer + step + data position + RNG state) is
  written atomically every ``ckpt_every`` minutes and at the end, replacing
  the previous one; ``resume=True`` continues from it.
* ``metrics.jsonl`` receives ``{"type": "train", ...}`` records (running
  loss, KL, token accuracy, molecules/s) and ``{"type": "eval", ...}``
  records: exact-match reconstruction / validity / uniqueness on a fixed
  held-out set of test molecules, and validity / uniqueness of decoded
  prior samples z ~ N(0, I).  Latent collapse (all reconstructions equal, or
  mean KL per dimension below 0.01) is flagged and warned about.
* Property head (``prop_weight > 0``, Gomez-Bombarelli et al. 2018): a QED
  regressor on the sampled ``z`` (linear, or an MLP with ``prop_hidden``
  units) trained jointly with the VAE; the loss gains
  ``prop_weight * MSE(head(z), standardized QED)``.  QED labels are computed
  with RDKit the first time a molecule is drawn and cached in
  ``qed_labels.npz`` next to the checkpoint (keyed by a digest of the train
  list), so a resume reuses them.  The eval records then carry the head's
  held-out Spearman and R^2 on the eval molecules.
* ``init``: start from the weights of an existing VAE file (fine-tuning; the
  optimizer starts fresh because weights-only snapshots carry none).
"""

from __future__ import annotations

import json
import math
import os
import random
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .data import load_smiles
from .tokens import MolTokenizer, canonicalize
from .vae import MoleculeVAE, pad_batch, vae_loss

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
VOCAB = "vocab.json"
QED_LABELS = "qed_labels.npz"
COLLAPSE_KL_PER_DIM = 0.01


@dataclass
class TrainConfig:
    """Settings of one training run (stored in the checkpoint)."""

    repr: str = "selfies"
    data: str = "sample"
    kl_weight: float = 1e-3
    free_bits: float = 0.0
    batch_size: int = 128
    lr: float = 1e-3
    clip: float = 1.0
    seed: int = 0
    n_eval: int = 500
    n_prior: int = 500
    eval_every: float = 10.0  # minutes
    ckpt_every: float = 5.0  # minutes
    log_every: int = 50  # steps
    vocab_sample: int = 50_000
    prop_weight: float = 0.0
    prop_hidden: int = 0
    qed_mean: float = 0.0
    qed_std: float = 1.0
    init: str = ""


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file in the same directory, then ``os.replace``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _append_jsonl(path: Path, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")


def evaluate(
    vae: MoleculeVAE,
    eval_smiles: Sequence[str],
    n_prior: int = 500,
    seed: int = 0,
    head: PropertyHead | None = None,
    eval_qed: np.ndarray | None = None,
) -> dict[str, Any]:
    """Reconstruction and prior-sample metrics (percentages, 0-100).

    * ``recon_exact``: greedy decoding of the posterior mean equals the
      RDKit-canonical input,
    * ``recon_valid`` / ``recon_unique``: RDKit-parsable decodings / distinct
      valid decodings among the valid ones,
    * ``prior_valid`` / ``prior_unique``: same for ``n_prior`` z ~ N(0, I),
    * ``kl_per_dim``: mean KL(q(z|x) || N(0, I)) per latent dimension,
      ``active_units``: dims whose posterior mean varies (var > 0.01),
    * ``collapsed``: all reconstructions identical or ``kl_per_dim < 0.01``,
    * with a property ``head`` and the eval molecules' QED ``eval_qed``:
      ``head_spearman`` / ``head_r2`` of ``head(mu)`` against their QED.
    """
    model = vae.model
    was = model.training
    model.eval()
    with torch.no_grad():
        ids, lengths = vae.to_ids(eval_smiles)
        mu, logvar = model.encode(ids, lengths)
        kl_dim = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).mean(0)
    recon = vae.decode(mu)
    truth = [canonicalize(s) for s in eval_smiles]
    valid = [r for r in recon if canonicalize(r) is not None]
    gen = torch.Generator().manual_seed(seed)
    prior = vae.sample_prior(n_prior, generator=gen) if n_prior > 0 else []
    prior_valid = [p for p in prior if canonicalize(p) is not None]
    model.train(was)
    n = max(len(eval_smiles), 1)
    kl_per_dim = float(kl_dim.mean())
    all_same = len(set(recon)) <= 1 and len(recon) > 1
    extra: dict[str, float] = {}
    if head is not None and eval_qed is not None:
        extra = head_scores(head, mu, eval_qed)
    return {
        **extra,
        "recon_exact": 100.0 * sum(r == t for r, t in zip(recon, truth)) / n,
        "recon_valid": 100.0 * len(valid) / n,
        "recon_unique": 100.0 * len(set(valid)) / max(len(valid), 1),
        "prior_valid": 100.0 * len(prior_valid) / max(len(prior), 1),
        "prior_unique": 100.0 * len(set(prior_valid)) / max(len(prior_valid), 1),
        "kl_per_dim": kl_per_dim,
        "active_units": int((mu.var(0) > 0.01).sum()),
        "collapsed": bool(all_same or kl_per_dim < COLLAPSE_KL_PER_DIM),
        "examples": [[t, r] for t, r in zip(truth[:3], recon[:3])],
    }


class PropertyHead(torch.nn.Module):
    """QED regressor on the latent: linear (``hidden=0``) or ``latent -> hidden -> hidden -> 1`` SiLU MLP.

    It predicts the standardized QED ``(qed - mean) / std``; :meth:`qed` undoes that.
    """

    def __init__(self, latent_dim: int, hidden: int = 0, mean: float = 0.0, std: float = 1.0) -> None:
        super().__init__()
        if hidden < 0:
            raise ValueError(f"prop_hidden must be >= 0 (0 = linear head), got {hidden}")
        if not std > 0:
            raise ValueError(f"QED std must be > 0, got {std}")
        self.hidden, self.mean, self.std = hidden, float(mean), float(std)
        if hidden == 0:
            self.net: torch.nn.Module = torch.nn.Linear(latent_dim, 1)
        else:
            self.net = torch.nn.Sequential(
                torch.nn.Linear(latent_dim, hidden),
                torch.nn.SiLU(),
                torch.nn.Linear(hidden, hidden),
                torch.nn.SiLU(),
                torch.nn.Linear(hidden, 1),
            )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Standardized QED prediction, shape ``(B,)``."""
        return self.net(z)[:, 0]

    @torch.no_grad()
    def qed(self, z: torch.Tensor) -> torch.Tensor:
        """QED prediction on the original scale."""
        return self(z) * self.std + self.mean


def head_scores(head: PropertyHead, z: torch.Tensor, qed: np.ndarray) -> dict[str, float]:
    """Spearman and R^2 of ``head.qed(z)`` against ``qed`` (NaN labels dropped)."""
    from scipy.stats import spearmanr

    pred = head.qed(torch.as_tensor(z, dtype=torch.float32)).numpy().astype(np.float64)
    ok = np.isfinite(qed)
    if ok.sum() < 3:
        return {"head_spearman": float("nan"), "head_r2": float("nan")}
    p, q = pred[ok], np.asarray(qed, dtype=np.float64)[ok]
    r2 = 1.0 - float(((p - q) ** 2).sum()) / max(float(((q - q.mean()) ** 2).sum()), 1e-12)
    return {"head_spearman": float(spearmanr(p, q).statistic), "head_r2": r2}


class QEDLabels:
    """Lazily computed RDKit QED of the train molecules, cached in ``path`` (``nan`` = not yet computed).

    The file stores a digest of the train list; a different list starts a fresh cache.
    Unparsable molecules get QED ``-1`` (masked out of the loss).
    """

    def __init__(self, smiles: Sequence[str], path: Path) -> None:
        from .data import _digest

        self.smiles, self.path = smiles, path
        self.digest = _digest(smiles)
        self.values = np.full(len(smiles), np.nan, dtype=np.float32)
        if path.exists():
            with np.load(path, allow_pickle=False) as npz:
                if str(npz["digest"]) == self.digest and len(npz["qed"]) == len(smiles):
                    self.values = npz["qed"].astype(np.float32).copy()

    def get(self, idx: Sequence[int]) -> np.ndarray:
        from .data import qed

        idx_arr = np.asarray(idx, dtype=np.int64)
        missing = idx_arr[np.isnan(self.values[idx_arr])]
        for i in missing:
            v = qed(self.smiles[int(i)])
            self.values[i] = -1.0 if math.isnan(v) else v
        return self.values[idx_arr]

    @property
    def n_known(self) -> int:
        return int(np.isfinite(self.values).sum())

    def save(self) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name + ".", suffix=".tmp")
        os.close(fd)
        try:
            with open(tmp, "wb") as fh:
                np.savez(fh, qed=self.values, digest=np.array(self.digest))
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)


def _fresh_state(
    cfg: TrainConfig,
    train_smiles: Sequence[str],
    eval_smiles: Sequence[str],
    model_kwargs: dict[str, int] | None,
) -> tuple[MoleculeVAE, dict]:
    state = {"step": 0, "epoch": 0, "pos": 0, "molecules": 0, "train_seconds": 0.0, "skipped": 0}
    if cfg.init:
        vae = MoleculeVAE.load(cfg.init)
        if vae.tokenizer.kind != cfg.repr:
            raise ValueError(f"init VAE {cfg.init!r} has repr {vae.tokenizer.kind!r}, expected {cfg.repr!r}")
        if model_kwargs:
            raise ValueError(f"model_kwargs {model_kwargs!r} cannot be combined with init={cfg.init!r}")
        return vae, state
    rng = random.Random(cfg.seed)
    corpus = list(train_smiles)
    if len(corpus) > cfg.vocab_sample:
        corpus = rng.sample(corpus, cfg.vocab_sample)
    tokenizer = MolTokenizer.build(cfg.repr, list(corpus) + list(eval_smiles))  # type: ignore[arg-type]
    vae = MoleculeVAE.create(tokenizer, **(model_kwargs or {}))
    return vae, state


def _progress(total: int | None, initial: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        initial=initial,
        desc="train-vae",
        unit="step",
        disable=not enabled,
        mininterval=30.0,
        dynamic_ncols=False,
    )


def train_vae(
    out_dir: str | Path,
    repr: str = "selfies",
    data: str = "sample",
    minutes: float = 10.0,
    max_steps: int | None = None,
    kl_weight: float = 1e-3,
    free_bits: float = 0.0,
    batch_size: int = 128,
    lr: float = 1e-3,
    clip: float = 1.0,
    threads: int | None = 1,
    resume: bool = False,
    seed: int = 0,
    n_eval: int = 500,
    n_prior: int = 500,
    eval_every: float = 10.0,
    ckpt_every: float = 5.0,
    log_every: int = 50,
    vocab_sample: int = 50_000,
    progress: bool = True,
    model_kwargs: dict[str, int] | None = None,
    train_smiles: Sequence[str] | None = None,
    eval_smiles: Sequence[str] | None = None,
    prop_weight: float = 0.0,
    prop_hidden: int = 0,
    init: str | Path | None = None,
    n_qed_stats: int = 5000,
) -> dict[str, Any]:
    """Train (or resume training) a :class:`MoleculeVAE`; returns the last eval record.

    Parameters
    ----------
    out_dir: directory for ``checkpoint.pt``, ``metrics.jsonl``, ``vocab.json``.
    repr: ``"selfies"`` or ``"smiles"`` token representation.
    data: ``"sample"`` (committed 4k/1k subset) or ``"moses"`` (full MOSES).
    minutes: wall-clock budget of this invocation (training stops cleanly).
    max_steps: optional cap on the total step count (across resumes).
    kl_weight, free_bits: KL term weight and per-dim free-bits floor (nats).
    threads: ``torch.set_num_threads`` value (``None`` leaves it unchanged).
    resume: continue from ``out_dir/checkpoint.pt`` if it exists.
    eval_every, ckpt_every: minutes between eval records / checkpoints.
    train_smiles, eval_smiles: override the data (tests); ``eval_smiles``
        defaults to ``n_eval`` random molecules of the test split.
    prop_weight: weight of the QED property head's MSE (standardized QED);
        0 (default) trains no head.
    prop_hidden: 0 for a linear head, else the width of a 2-hidden-layer MLP.
    init: VAE file (or checkpoint) whose weights start a fresh run
        (fine-tuning); ignored when resuming from ``out_dir/checkpoint.pt``.
    n_qed_stats: train molecules (seeded draw) whose QED sets the
        standardization mean / std of the head's target.
    """
    if prop_weight < 0 or not math.isfinite(prop_weight):
        raise ValueError(f"prop_weight must be a finite number >= 0, got {prop_weight}")
    if init is not None and not Path(init).exists():
        raise FileNotFoundError(f"init VAE file {str(init)!r} does not exist")
    if threads is not None:
        torch.set_num_threads(threads)
    t_start = time.monotonic()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path, metrics_path = out / CHECKPOINT, out / METRICS
    cfg = TrainConfig(
        repr=repr,
        data=data,
        kl_weight=kl_weight,
        free_bits=free_bits,
        batch_size=batch_size,
        lr=lr,
        clip=clip,
        seed=seed,
        n_eval=n_eval,
        n_prior=n_prior,
        eval_every=eval_every,
        ckpt_every=ckpt_every,
        log_every=log_every,
        vocab_sample=vocab_sample,
        prop_weight=prop_weight,
        prop_hidden=prop_hidden,
        init=str(init) if init is not None else "",
    )

    if train_smiles is None:
        train_smiles = load_smiles("train", data)  # type: ignore[arg-type]
    if eval_smiles is None:
        test = load_smiles("test", data)  # type: ignore[arg-type]
        eval_smiles = random.Random(seed).sample(test, min(n_eval, len(test)))
    train_smiles = list(train_smiles)
    eval_smiles = list(eval_smiles)

    labels = QEDLabels(train_smiles, out / QED_LABELS) if prop_weight > 0 else None
    eval_qed: np.ndarray | None = None
    if labels is not None:
        from .data import compute_qed

        eval_qed = compute_qed(eval_smiles, progress=False)
        stats_idx = random.Random(seed + 1).sample(
            range(len(train_smiles)), min(n_qed_stats, len(train_smiles))
        )
        q0 = labels.get(stats_idx)
        q0 = q0[q0 >= 0]
        cfg.qed_mean, cfg.qed_std = float(q0.mean()), float(max(q0.std(), 1e-3))
    head: PropertyHead | None = None

    gen = torch.Generator().manual_seed(seed)
    if resume and ckpt_path.exists():
        ck = torch.load(str(ckpt_path), map_location="cpu", weights_only=True)
        vae = MoleculeVAE.from_dict(ck["model"])
        if ck["config"].get("repr") != repr:
            raise ValueError(f"checkpoint repr {ck['config'].get('repr')!r} != {repr!r}")
        state = dict(ck["state"])
        if float(ck["config"].get("prop_weight", 0.0)) > 0 and "head" in ck:
            hc = ck["config"]
            head = PropertyHead(vae.latent_dim, int(hc["prop_hidden"]), hc["qed_mean"], hc["qed_std"])
            head.load_state_dict(ck["head"])
            cfg.qed_mean, cfg.qed_std = float(hc["qed_mean"]), float(hc["qed_std"])
            if labels is None:
                raise ValueError("the checkpoint has a property head; resume it with its prop_weight > 0")
        elif labels is not None:
            raise ValueError(
                f"checkpoint {ckpt_path} has no property head; prop_weight={prop_weight} needs one"
            )
        params = list(vae.model.parameters()) + (list(head.parameters()) if head is not None else [])
        optimizer = torch.optim.Adam(params, lr=lr)
        optimizer.load_state_dict(ck["optimizer"])
        for group in optimizer.param_groups:
            group["lr"] = lr
        gen.set_state(ck["rng"])
        print(f"resumed from {ckpt_path} at step {state['step']}", flush=True)
    else:
        vae, state = _fresh_state(cfg, train_smiles, eval_smiles, model_kwargs)
        if labels is not None:
            torch.manual_seed(seed)
            head = PropertyHead(vae.latent_dim, prop_hidden, cfg.qed_mean, cfg.qed_std)
        params = list(vae.model.parameters()) + (list(head.parameters()) if head is not None else [])
        optimizer = torch.optim.Adam(params, lr=lr)
    vae.tokenizer.save(out / VOCAB)
    model = vae.model
    model.train()
    print(
        f"VAE: {vae.n_parameters():,} parameters, vocab {len(vae.tokenizer)}, "
        f"{len(train_smiles):,} train molecules, {len(eval_smiles)} eval molecules"
        + (
            f"; QED head ({'linear' if prop_hidden == 0 else f'MLP {prop_hidden}'}, weight {prop_weight}, "
            f"QED mean {cfg.qed_mean:.3f} std {cfg.qed_std:.3f})"
            if head is not None
            else ""
        ),
        flush=True,
    )

    def save_checkpoint() -> None:
        atomic_torch_save(
            {
                "model": vae.to_dict(),
                "optimizer": optimizer.state_dict(),
                "state": dict(state),
                "rng": gen.get_state(),
                "config": asdict(cfg),
                **({"head": head.state_dict()} if head is not None else {}),
            },
            ckpt_path,
        )
        if labels is not None:
            labels.save()

    def run_eval() -> dict[str, Any]:
        rec = {
            "type": "eval",
            "step": state["step"],
            "epoch": state["epoch"],
            "molecules": state["molecules"],
            "train_seconds": round(state["train_seconds"], 1),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
            **evaluate(vae, eval_smiles, n_prior=n_prior, seed=seed, head=head, eval_qed=eval_qed),
        }
        _append_jsonl(metrics_path, rec)
        if rec["collapsed"] and state["step"] > 0:
            warnings.warn(
                f"latent collapse suspected at step {state['step']}: "
                f"kl_per_dim={rec['kl_per_dim']:.4g}; lower --kl-weight "
                "or use --free-bits",
                RuntimeWarning,
                stacklevel=2,
            )
        print(
            f"[eval step {rec['step']}] recon {rec['recon_exact']:.1f}% "
            f"valid {rec['recon_valid']:.1f}% uniq {rec['recon_unique']:.1f}% | "
            f"prior valid {rec['prior_valid']:.1f}% uniq {rec['prior_unique']:.1f}% | "
            f"kl/dim {rec['kl_per_dim']:.3f}"
            + (
                f" | QED head spearman {rec['head_spearman']:.3f} R2 {rec['head_r2']:.3f}"
                if "head_spearman" in rec
                else ""
            ),
            flush=True,
        )
        return rec

    budget = minutes * 60.0
    last_eval = last_ckpt = time.monotonic()
    last: dict[str, Any] = run_eval() if state["step"] == 0 else {}
    window: dict[str, float] = {}
    win_steps, win_mols, win_time = 0, 0, 0.0
    bar = _progress(max_steps, state["step"], progress)
    N = len(train_smiles)
    perm = torch.randperm(N, generator=torch.Generator().manual_seed(seed + state["epoch"]))
    while True:
        if time.monotonic() - t_start >= budget:
            break
        if max_steps is not None and state["step"] >= max_steps:
            break
        t0 = time.perf_counter()
        if state["pos"] >= N:
            state["epoch"] += 1
            state["pos"] = 0
            perm = torch.randperm(N, generator=torch.Generator().manual_seed(seed + state["epoch"]))
        idx = perm[state["pos"] : state["pos"] + batch_size].tolist()
        state["pos"] += len(idx)
        seqs, kept = [], []
        for i in idx:
            try:
                seqs.append(vae.tokenizer.encode(train_smiles[i]))
                kept.append(i)
            except Exception:  # noqa: BLE001 - a molecule the tokenizer cannot encode is skipped, and counted
                state["skipped"] += 1
        if not seqs:
            continue
        ids, lengths = pad_batch(seqs)
        if head is None:
            logits, mu, logvar = model(ids, lengths, generator=gen)
            loss, stats = vae_loss(logits, ids[:, 1:], mu, logvar, kl_weight, free_bits)
        else:
            assert labels is not None
            mu, logvar = model.encode(ids, lengths)
            z = model.reparameterize(mu, logvar, gen)
            logits = model.decode_logits(z, ids[:, :-1])
            loss, stats = vae_loss(logits, ids[:, 1:], mu, logvar, kl_weight, free_bits)
            q = torch.as_tensor(labels.get(kept), dtype=torch.float32)
            ok = q >= 0
            target = (q - cfg.qed_mean) / cfg.qed_std
            prop = ((head(z) - target) ** 2)[ok].mean() if bool(ok.any()) else z.sum() * 0.0
            loss = loss + prop_weight * prop
            stats["prop_mse"] = float(prop.detach())
            stats["loss"] = float(loss.detach())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        stats["grad_norm"] = float(
            torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], clip)
        )
        optimizer.step()
        dt = time.perf_counter() - t0
        state["step"] += 1
        state["molecules"] += len(seqs)
        state["train_seconds"] += dt
        win_steps += 1
        win_mols += len(seqs)
        win_time += dt
        for k, v in stats.items():
            window[k] = window.get(k, 0.0) + v
        bar.update(1)
        if not math.isfinite(stats["loss"]):
            raise FloatingPointError(f"non-finite loss at step {state['step']}")
        if win_steps >= log_every:
            rec = {
                "type": "train",
                "step": state["step"],
                "epoch": state["epoch"],
                "molecules": state["molecules"],
                "train_seconds": round(state["train_seconds"], 1),
                "mol_per_s": round(win_mols / win_time, 2),
                **{k: round(v / win_steps, 5) for k, v in window.items()},
            }
            _append_jsonl(metrics_path, rec)
            bar.set_postfix(
                loss=f"{rec['loss']:.2f}",
                kl=f"{rec['kl']:.1f}",
                acc=f"{rec['token_acc']:.3f}",
                mps=f"{rec['mol_per_s']:.0f}",
                refresh=False,
            )
            window, win_steps, win_mols, win_time = {}, 0, 0, 0.0
        now = time.monotonic()
        if now - last_eval >= eval_every * 60.0:
            last = run_eval()
            last_eval = time.monotonic()
        if now - last_ckpt >= ckpt_every * 60.0:
            save_checkpoint()
            last_ckpt = time.monotonic()
    bar.close()
    if not last or last.get("step") != state["step"]:
        last = run_eval()
    save_checkpoint()
    print(
        f"stopped at step {state['step']} ({state['molecules']:,} molecules, "
        f"{state['train_seconds'] / 60:.1f} train-minutes); checkpoint {ckpt_path}",
        flush=True,
    )
    return last
