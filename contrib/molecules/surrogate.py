"""Convex surrogate of drug-likeness on VAE embeddings (paper Section 6, App. E.1).

A residual ICNN ``V: R^128 -> R`` (4 hidden layers of 128, softplus) is trained as a binary
classifier on VAE embeddings ``x = mu(molecule)`` with labels ``y = 1[QED > 0.85]``:

    P(QED > 0.85 | x) = sigmoid(-V(x)),    i.e.  V(x) = logit P(QED <= 0.85 | x),

so *lower V means higher QED* and ``V`` -- the ICNN output itself, before the sigmoid -- is
convex in ``x`` (non-negative ``W^z``, convex non-decreasing activations; an affine
standardization of the inputs keeps convexity). Loss: binary cross-entropy on the logit
``-V(x)`` with the positive class weighted by ``n_negative / n_positive`` (class balance).
Minimizing ``E_rho V`` then drives a cloud of embeddings toward the convex region that the
classifier believes is drug-like.

Checkpoints are plain dicts of tensors, numbers and strings (``torch.load(weights_only=True)``).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as nnf
from torch import Tensor, nn

FORMAT = "jkoflow.molecules.qed_surrogate/1"
THRESHOLD = 0.85
"""QED above which a molecule counts as drug-like (MOSES setting of the paper)."""
DEFAULT_PATH = Path(__file__).resolve().parent / "checkpoints" / "surrogate" / "qed_surrogate.pt"
DEFAULT_NET: dict[str, Any] = {
    "widths": [128] * 4,
    "activation": "softplus",
    "alpha": 1e-3,
    "quadratic": "none",
    "init_scale": 1.0,
}


class QEDSurrogate(nn.Module):
    """``V(x) = u((x - m) / s)`` with ``u`` a residual ICNN: convex; ``V`` is the logit of
    ``P(QED <= threshold | x)``. Call it on ``(n, d)`` embeddings to get ``(n,)`` values."""

    def __init__(
        self, dim: int = 128, net: dict[str, Any] | None = None, threshold: float = THRESHOLD
    ) -> None:
        super().__init__()
        from jkoflow.plugins.potentials import resicnn

        self.net_config = {**DEFAULT_NET, **(net or {})}
        self.dim = int(dim)
        self.threshold = float(threshold)
        self.icnn = resicnn(dim, **self.net_config)
        self.mean: Tensor
        self.scale: Tensor
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        if x.dtype != self.mean.dtype:  # e.g. float64 particles: evaluate a cast copy
            return self._cast(x.dtype)(x)
        return self.icnn((x - self.mean) / self.scale)

    def _cast(self, dtype: torch.dtype) -> QEDSurrogate:
        """A copy of this (frozen) surrogate in ``dtype``, made once and kept until the next
        :meth:`project` (i.e. the next training step)."""
        copies = self.__dict__.setdefault("_copies", {})
        if dtype not in copies:
            copies[dtype] = copy.deepcopy(self).to(dtype)
            copies[dtype].__dict__["_copies"] = {}
        return copies[dtype]

    def prob_high(self, x: Tensor) -> Tensor:
        """``P(QED > threshold | x) = sigmoid(-V(x))``."""
        return torch.sigmoid(-self(x))

    def project(self) -> None:
        """Restore input convexity (non-negative ``W^z``) after an optimizer step."""
        self.__dict__.pop("_copies", None)
        self.icnn.project()

    # --- persistence ---------------------------------------------------------------------
    def to_dict(self, **extra: Any) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "dim": self.dim,
            "threshold": self.threshold,
            "net": self.net_config,
            "state_dict": {k: v.detach().clone() for k, v in self.state_dict().items()},
            **extra,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QEDSurrogate:
        if d.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} file (format={d.get('format')!r})")
        model = cls(int(d["dim"]), dict(d["net"]), float(d["threshold"]))
        model.load_state_dict(d["state_dict"])
        model.eval()
        return model


def load_surrogate(path: str | Path | None = None) -> tuple[QEDSurrogate, dict[str, Any]]:
    """Load a surrogate checkpoint (default: the committed one); returns ``(model, info)``
    with ``info`` the checkpoint's metadata (metrics, VAE fingerprint, command)."""
    path = Path(path) if path is not None else DEFAULT_PATH
    if not path.exists():
        raise FileNotFoundError(
            f"no QED surrogate at {path}: train one with `jkoflow molecules train-surrogate`"
        )
    d = torch.load(str(path), map_location="cpu", weights_only=True)
    model = QEDSurrogate.from_dict(d)
    for p in model.parameters():
        p.requires_grad_(False)
    return model, {k: v for k, v in d.items() if k != "state_dict"}


def classification_metrics(v: Tensor, high: Tensor) -> dict[str, Any]:
    """Accuracy, balanced accuracy, confusion matrix and ROC AUC of the rule
    ``predict high QED iff V(x) < 0`` against labels ``high`` (bool)."""
    pred = (v < 0).cpu().numpy()
    truth = high.cpu().numpy().astype(bool)
    tp = int((pred & truth).sum())
    tn = int((~pred & ~truth).sum())
    fp = int((pred & ~truth).sum())
    fn = int((~pred & truth).sum())
    n_pos, n_neg = tp + fn, tn + fp
    # AUC = P(score of a random positive > score of a random negative), score = -V (ties: 1/2)
    from scipy.stats import rankdata

    ranks = rankdata(-v.cpu().numpy())
    auc = (ranks[truth].sum() - n_pos * (n_pos + 1) / 2) / max(n_pos * n_neg, 1)
    return {
        "n": len(truth),
        "accuracy": (tp + tn) / max(len(truth), 1),
        "balanced_accuracy": 0.5 * (tp / max(n_pos, 1) + tn / max(n_neg, 1)),
        "auc": float(auc),
        "positive_rate": n_pos / max(len(truth), 1),
        # rows: true (low, high); columns: predicted (low, high)
        "confusion": [[tn, fp], [fn, tp]],
    }


def train_surrogate(
    x: Tensor,
    qed: np.ndarray,
    x_test: Tensor,
    qed_test: np.ndarray,
    *,
    epochs: int = 30,
    batch_size: int = 1024,
    lr: float = 1e-2,
    weight_decay: float = 0.0,
    threshold: float = THRESHOLD,
    net: dict[str, Any] | None = None,
    seed: int = 0,
    progress: bool = True,
) -> tuple[QEDSurrogate, dict[str, Any]]:
    """Fit the convex surrogate by class-weighted BCE (Adam, lr reduced on plateau of the
    training loss, ``project()`` after each step). Returns the model and its metrics
    (train/test classification metrics, loss curve, seconds)."""
    if x.ndim != 2 or x.shape[0] != len(qed):
        raise ValueError(f"x has shape {tuple(x.shape)} but there are {len(qed)} QED values")
    torch.manual_seed(seed)
    y = torch.as_tensor(np.asarray(qed) > threshold, dtype=torch.float32)
    n_pos = float(y.sum())
    if n_pos == 0 or n_pos == len(y):
        raise ValueError(f"all {len(y)} training molecules fall in one class at threshold {threshold}")
    pos_weight = torch.tensor((len(y) - n_pos) / n_pos)
    model = QEDSurrogate(x.shape[1], net, threshold)
    with torch.no_grad():
        model.mean.copy_(x.mean(0))
        model.scale.copy_(x.std(0).clamp_min(1e-6))
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=2)
    gen = torch.Generator().manual_seed(seed)
    from tqdm.auto import tqdm

    curve: list[float] = []
    start = time.perf_counter()
    bar = tqdm(range(epochs), desc="train-surrogate", unit="epoch", disable=not progress)
    for _ in bar:
        perm = torch.randperm(len(y), generator=gen)
        total = 0.0
        for i in range(0, len(y), batch_size):
            idx = perm[i : i + batch_size]
            logit_high = -model(x[idx])
            loss = nnf.binary_cross_entropy_with_logits(logit_high, y[idx], pos_weight=pos_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            model.project()
            total += loss.item() * len(idx)
        curve.append(total / len(y))
        sched.step(curve[-1])
        bar.set_postfix(loss=f"{curve[-1]:.4f}", lr=f"{opt.param_groups[0]['lr']:.1e}")
    model.eval()
    with torch.no_grad():
        v_train, v_test = model(x), model(x_test)
    high_test = torch.as_tensor(np.asarray(qed_test) > threshold)
    from scipy.stats import spearmanr

    metrics = {
        "train": classification_metrics(v_train, y.bool()),
        "test": classification_metrics(v_test, high_test),
        "test_spearman_minusV_qed": float(spearmanr(-v_test.numpy(), np.asarray(qed_test)).statistic),
        "loss_curve": curve,
        "seconds": time.perf_counter() - start,
        "epochs": epochs,
        "lr": lr,
        "batch_size": batch_size,
        "pos_weight": float(pos_weight),
    }
    return model, metrics


def save_surrogate(model: QEDSurrogate, path: str | Path, **info: Any) -> None:
    """Write ``model`` (plus metadata such as metrics, the VAE's SHA-256 and the command)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.to_dict(**info), str(path))


def format_metrics(m: dict[str, Any]) -> str:
    """A short human-readable summary of :func:`train_surrogate`'s metrics."""
    t = m["test"]
    (tn, fp), (fn, tp) = t["confusion"]
    return (
        f"test n={t['n']}: accuracy {t['accuracy']:.3f}, balanced {t['balanced_accuracy']:.3f}, "
        f"AUC {t['auc']:.3f}, Spearman(-V, QED) {m['test_spearman_minusV_qed']:.3f}; "
        f"confusion [true low: pred low {tn}, pred high {fp}] [true high: pred low {fn}, pred high {tp}]; "
        f"train accuracy {m['train']['accuracy']:.3f}; {m['seconds']:.0f} s"
    )


def perturbed_embeddings(
    vae, z: Tensor, n: int, radius: float, seed: int = 0, batch_size: int = 1000
) -> tuple[Tensor, np.ndarray]:
    """Off-manifold training points: ``x_k = z_{i_k} + r_k u_k`` with ``i_k`` uniform over the
    rows of ``z``, ``u_k`` uniform on the unit sphere and ``r_k ~ U[0, radius]``, labelled by
    the QED of the *decoded* molecule ``decode(x_k)`` (0 where the decoding is invalid).

    The flow moves particles away from the encoder's means; these points teach the surrogate
    what the decoder makes of the space around them (seeded, ``n`` greedy decodings)."""
    if n < 0 or radius < 0:
        raise ValueError(f"n={n} and radius={radius} must be non-negative")
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(len(z), (n,), generator=g)
    u = torch.randn(n, z.shape[1], generator=g)
    u = u / u.norm(dim=1, keepdim=True).clamp_min(1e-12)
    x = z[idx].float() + radius * torch.rand(n, 1, generator=g) * u
    return x, _decoded_qed(vae, x, batch_size)


def fit_from_pools(
    vae_path: str | Path,
    out: str | Path,
    n_train: int = 40000,
    n_test: int = 10000,
    seed: int = 0,
    epochs: int = 30,
    lr: float = 1e-2,
    weight_decay: float = 0.0,
    labels: str = "original",
    augment: int = 0,
    augment_radius: float = 3.0,
    progress: bool = True,
    command: str = "",
) -> dict[str, Any]:
    """The ``train-surrogate`` pipeline: MOSES train/test pools -> QED (cached) -> VAE means
    (cached) -> surrogate -> checkpoint at ``out`` (metrics beside it as JSON).

    ``labels="decoded"`` labels each training embedding by the QED of its greedy decoding
    instead of the original molecule's; ``augment > 0`` adds that many off-manifold points
    (:func:`perturbed_embeddings`, radius ``augment_radius``) labelled by decoded QED. Test
    metrics always use the original test molecules' QED."""
    import json

    from .pools import embed, file_sha256, pool
    from .vae import load_vae

    if labels not in ("original", "decoded"):
        raise ValueError(f"labels={labels!r}: expected 'original' or 'decoded'")
    vae = load_vae(vae_path)
    smi_tr, q_tr = pool("train", n_train, seed, progress=progress)
    smi_te, q_te = pool("test", 30000, seed, progress=progress)
    smi_te, q_te = smi_te[:n_test], q_te[:n_test]
    t0 = time.perf_counter()
    x_tr = embed(vae, smi_tr, vae_path)
    x_te = embed(vae, smi_te, vae_path)
    enc_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    if labels == "decoded":
        q_tr = _decoded_qed(vae, x_tr)
    if augment:
        x_aug, q_aug = perturbed_embeddings(vae, x_tr, augment, augment_radius, seed)
        x_tr, q_tr = torch.cat([x_tr, x_aug]), np.concatenate([q_tr, q_aug])
    label_seconds = time.perf_counter() - t0
    model, metrics = train_surrogate(
        x_tr, q_tr, x_te, q_te, epochs=epochs, lr=lr, weight_decay=weight_decay, seed=seed, progress=progress
    )
    metrics.update(
        {
            "n_train": len(smi_tr),
            "n_test": len(smi_te),
            "encode_seconds": enc_seconds,
            "labels": labels,
            "augment": augment,
            "augment_radius": augment_radius,
            "weight_decay": weight_decay,
            "label_seconds": label_seconds,
            "vae_sha256": file_sha256(vae_path),
            "command": command,
        }
    )
    save_surrogate(model, out, metrics=_plain(metrics), vae_sha256=metrics["vae_sha256"], command=command)
    Path(out).with_suffix(".json").write_text(json.dumps(_plain(metrics), indent=1))
    return metrics


def _decoded_qed(vae, z: Tensor, batch_size: int = 1000) -> np.ndarray:
    """QED of the greedy decoding of each row of ``z`` (0 where invalid)."""
    from .metrics import qed_values

    q = [qed_values(vae.decode(z[i : i + batch_size])) for i in range(0, len(z), batch_size)]
    return np.nan_to_num(np.concatenate(q) if q else np.zeros(0), nan=0.0)


def _plain(obj: Any) -> Any:
    """Numbers/str/lists/dicts only (what ``torch.load(weights_only=True)`` accepts)."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def surrogate_V(path: str | Path | None = None) -> QEDSurrogate:
    """The potential ``V`` (a frozen :class:`QEDSurrogate`) for ``int V d rho``."""
    return load_surrogate(path)[0]


__all__: Sequence[str] = [
    "THRESHOLD",
    "QEDSurrogate",
    "classification_metrics",
    "fit_from_pools",
    "format_metrics",
    "load_surrogate",
    "perturbed_embeddings",
    "save_surrogate",
    "surrogate_V",
    "train_surrogate",
]
