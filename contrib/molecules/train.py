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

import torch

from .data import load_smiles
from .tokens import MolTokenizer, canonicalize
from .vae import MoleculeVAE, pad_batch, vae_loss

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
VOCAB = "vocab.json"
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
    vae: MoleculeVAE, eval_smiles: Sequence[str], n_prior: int = 500, seed: int = 0
) -> dict[str, Any]:
    """Reconstruction and prior-sample metrics (percentages, 0-100).

    * ``recon_exact``: greedy decoding of the posterior mean equals the
      RDKit-canonical input,
    * ``recon_valid`` / ``recon_unique``: RDKit-parsable decodings / distinct
      valid decodings among the valid ones,
    * ``prior_valid`` / ``prior_unique``: same for ``n_prior`` z ~ N(0, I),
    * ``kl_per_dim``: mean KL(q(z|x) || N(0, I)) per latent dimension,
      ``active_units``: dims whose posterior mean varies (var > 0.01),
    * ``collapsed``: all reconstructions identical or ``kl_per_dim < 0.01``.
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
    return {
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


def _fresh_state(
    cfg: TrainConfig,
    train_smiles: Sequence[str],
    eval_smiles: Sequence[str],
    model_kwargs: dict[str, int] | None,
) -> tuple[MoleculeVAE, dict]:
    rng = random.Random(cfg.seed)
    corpus = list(train_smiles)
    if len(corpus) > cfg.vocab_sample:
        corpus = rng.sample(corpus, cfg.vocab_sample)
    tokenizer = MolTokenizer.build(cfg.repr, list(corpus) + list(eval_smiles))  # type: ignore[arg-type]
    vae = MoleculeVAE.create(tokenizer, **(model_kwargs or {}))
    state = {"step": 0, "epoch": 0, "pos": 0, "molecules": 0, "train_seconds": 0.0, "skipped": 0}
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
    """
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
    )

    if train_smiles is None:
        train_smiles = load_smiles("train", data)  # type: ignore[arg-type]
    if eval_smiles is None:
        test = load_smiles("test", data)  # type: ignore[arg-type]
        eval_smiles = random.Random(seed).sample(test, min(n_eval, len(test)))
    train_smiles = list(train_smiles)
    eval_smiles = list(eval_smiles)

    gen = torch.Generator().manual_seed(seed)
    if resume and ckpt_path.exists():
        ck = torch.load(str(ckpt_path), map_location="cpu", weights_only=True)
        vae = MoleculeVAE.from_dict(ck["model"])
        if ck["config"].get("repr") != repr:
            raise ValueError(f"checkpoint repr {ck['config'].get('repr')!r} != {repr!r}")
        state = dict(ck["state"])
        optimizer = torch.optim.Adam(vae.model.parameters(), lr=lr)
        optimizer.load_state_dict(ck["optimizer"])
        for group in optimizer.param_groups:
            group["lr"] = lr
        gen.set_state(ck["rng"])
        print(f"resumed from {ckpt_path} at step {state['step']}", flush=True)
    else:
        vae, state = _fresh_state(cfg, train_smiles, eval_smiles, model_kwargs)
        optimizer = torch.optim.Adam(vae.model.parameters(), lr=lr)
    vae.tokenizer.save(out / VOCAB)
    model = vae.model
    model.train()
    print(
        f"VAE: {vae.n_parameters():,} parameters, vocab {len(vae.tokenizer)}, "
        f"{len(train_smiles):,} train molecules, {len(eval_smiles)} eval molecules",
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
            },
            ckpt_path,
        )

    def run_eval() -> dict[str, Any]:
        rec = {
            "type": "eval",
            "step": state["step"],
            "epoch": state["epoch"],
            "molecules": state["molecules"],
            "train_seconds": round(state["train_seconds"], 1),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
            **evaluate(vae, eval_smiles, n_prior=n_prior, seed=seed),
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
            f"kl/dim {rec['kl_per_dim']:.3f}",
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
        seqs = []
        for i in idx:
            try:
                seqs.append(vae.tokenizer.encode(train_smiles[i]))
            except Exception:  # noqa: BLE001 - a molecule the tokenizer cannot encode is skipped, and counted
                state["skipped"] += 1
        if not seqs:
            continue
        ids, lengths = pad_batch(seqs)
        logits, mu, logvar = model(ids, lengths, generator=gen)
        loss, stats = vae_loss(logits, ids[:, 1:], mu, logvar, kl_weight, free_bits)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        stats["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(model.parameters(), clip))
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
