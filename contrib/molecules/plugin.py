"""jkoflow plugin of the molecular experiment (paper Section 6): registered entries

=============  ===================  ==========================================================
kind           name                 what
=============  ===================  ==========================================================
potential_fn   ``qed_surrogate``    the convex QED surrogate ``V`` (checkpoint ``path``)
sampler        ``moses_embeddings`` VAE means of MOSES test molecules with QED < ``qed_max``
divergence     ``sinkhorn_warm``    debiased Sinkhorn to a fixed reference, warm started
problem        ``molecules``        ``F = lambda_1 E V + lambda_2 D(rho, rho_0)`` + metrics
=============  ===================  ==========================================================

The problem minimizes ``F(rho) = lambda_1 int V d rho + lambda_2 D(rho, rho_0)`` on 128-d
VAE embeddings by JKO steps; at chosen steps it decodes every particle and reports validity,
uniqueness, novelty, QED statistics, the Sinkhorn divergence to the start cloud (Final SD,
geomloss, blur 0.05) and the Tanimoto similarity of each molecule to the one it started from.

It also adds the command ``jkoflow molecules ...`` (:mod:`.cli`) and the bench suite
``jkoflow bench molecules`` (:mod:`.bench`) through the hooks ``jkoflow_add_commands`` and
``jkoflow_bench_suites``.

Needs the ``molecules`` extra (rdkit, selfies). Without it this module still imports, and its
hooks add nothing: no entry, no command, no suite, no warning and no failure record (an optional
plugin is silent on a base install; ``pip install 'jkoflow[molecules]'`` turns it on).
"""

from __future__ import annotations

import argparse
import importlib.util
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from jkoflow.problem import Problem
from jkoflow.registry import Registry, hookimpl
from jkoflow.sampler import Sampler
from torch import Tensor


def _missing(names: tuple[str, ...]) -> list[str]:
    """Names among ``names`` that cannot be imported (checked without importing them)."""
    out = []
    for name in names:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # e.g. sys.modules[name] = None
            found = False
        if not found:
            out.append(name)
    return out


_MISSING = _missing(("rdkit", "selfies"))
AVAILABLE = not _MISSING
"""Whether the ``molecules`` extra is installed; without it the hooks below add nothing."""

from .pools import default_vae, embed, pool  # these three need neither rdkit nor selfies
from .sinkhorn import WarmSinkhorn
from .surrogate import load_surrogate

EVAL_BLUR = 0.05
"""Blur of the evaluation Sinkhorn divergence (Final SD), whatever the flow used."""
TEST_POOL = 60000
"""Size of the seeded MOSES test pool the start clouds are drawn from."""

_CPU: dict[str, Any] = {
    "n": 1000,
    "tau": 0.05,
    "steps": 20,
    "inner_iters": 30,
    "lr": 1e-3,
    "lambda_1": 1.0,
    "lambda_2": 3.0,
    "divergence": "sinkhorn_warm",
    "blur": 0.05,
    "warm_start": True,
    "widths": [100, 100],
    "source": "moses",
}
"""This machine's budget (``cpu`` preset; ``paper-cpu`` changes ``lambda_2`` and the pair)."""

PRESETS: dict[str, dict[str, Any]] = {
    # the paper's settings (Section 6): hours per run on this CPU
    "paper": {
        "n": 1000,
        "tau": 1e-4,
        "steps": 100,
        "inner_iters": 500,
        "lr": 1e-3,
        "lambda_1": 1.0,
        "lambda_2": 1e4,
        "divergence": "sinkhorn",
        "blur": 0.05,
        "warm_start": False,
        "widths": [100, 100],
        "source": "moses",
    },
    # this machine's settings (see docs/benchmarks.md, "Molecules")
    "cpu": _CPU,
    # issue 16: the QED-head SMILES pair (checkpoints/qedhead/), this machine's budget (< 30 min)
    "paper-cpu": {**_CPU, "lambda_2": 0.3, "pair": "qedhead"},
    # smoke test / CI: the committed MOSES sample, a handful of steps, the QED-head pair (on which
    # the median QED rises by more than its seed-to-seed spread; the SELFIES pair's moves by noise)
    "quick": {
        "n": 64,
        "tau": 0.1,
        "steps": 5,
        "inner_iters": 20,
        "lr": 1e-3,
        "lambda_1": 1.0,
        "lambda_2": 0.3,
        "divergence": "sinkhorn_warm",
        "blur": 0.05,
        "warm_start": True,
        "widths": [32, 32],
        "source": "sample",
        "pair": "qedhead",
    },
}


# --- potential V ---------------------------------------------------------------------------
_SURROGATES: dict[str, Any] = {}


CHECKPOINTS = Path(__file__).resolve().parent / "checkpoints"
DECODE_K = 16
"""Default number of sampled draws of the ``valid_first`` decoding."""
DECODE_TEMPERATURE = 0.7
"""Default temperature of the ``sample`` and ``valid_first`` decodings."""


def preset_pair(preset: str) -> tuple[str | None, str | None]:
    """The (VAE, surrogate) files a preset names (``checkpoints/<pair>/``), or ``(None, None)``."""
    name = PRESETS[preset].get("pair")
    if not name:
        return None, None
    return str(CHECKPOINTS / name / "vae.pt"), str(CHECKPOINTS / name / "qed_surrogate.pt")


def qed_surrogate(path: str | None = None) -> Any:
    """The frozen convex QED surrogate ``V`` (``(n, 128) -> (n,)``; lower = more drug-like)."""
    key = str(Path(path).resolve()) if path else ""
    if key not in _SURROGATES:
        _SURROGATES[key] = load_surrogate(path)[0]
    return _SURROGATES[key]


# --- VAE (shared, loaded once) ---------------------------------------------------------------
_VAES: dict[str, Any] = {}


def get_vae(path: str | None = None) -> Any:
    """The molecular VAE at ``path`` (default: :func:`.pools.default_vae`), cached."""
    from .vae import load_vae

    p = str(Path(path).resolve()) if path else str(default_vae())
    if p not in _VAES:
        _VAES[p] = load_vae(p)
    return _VAES[p]


# --- sampler rho_0 ---------------------------------------------------------------------------
def low_qed_pool(
    source: str = "moses", qed_max: float = 0.7, pool_size: int = TEST_POOL, pool_seed: int = 0
) -> tuple[list[str], np.ndarray]:
    """Test-split molecules with QED < ``qed_max`` (from a seeded pool of ``pool_size``
    MOSES test molecules, or the whole committed sample) and their QED."""
    smiles, q = pool(
        "test",
        pool_size if source == "moses" else None,
        pool_seed,
        source=source,  # type: ignore[arg-type]  # "moses" or "sample": checked in __init__
        progress=False,
    )
    keep = q < qed_max
    return [s for s, k in zip(smiles, keep) if k], q[keep]


class MosesEmbeddings(Sampler):
    """``n`` start embeddings: VAE posterior means of test molecules with QED < ``qed_max``,
    drawn at random (the spec's seed); no closed-form log-density.

    After :meth:`sample`, ``smiles``, ``qed`` and ``indices`` describe the drawn molecules.
    """

    def __init__(
        self,
        dim: int = 128,
        source: str = "moses",
        vae: str | None = None,
        qed_max: float = 0.7,
        pool_size: int = TEST_POOL,
        pool_seed: int = 0,
    ) -> None:
        if source not in ("moses", "sample"):
            raise ValueError(f"source={source!r}: expected 'moses' or 'sample'")
        self.dim, self.source, self.vae_path, self.qed_max = int(dim), source, vae, float(qed_max)
        self.pool_size, self.pool_seed = int(pool_size), int(pool_seed)
        self.smiles: list[str] = []
        self.qed = np.zeros(0)
        self.indices: list[int] = []

    def candidates(self) -> tuple[list[str], np.ndarray]:
        return low_qed_pool(self.source, self.qed_max, self.pool_size, self.pool_seed)

    def sample(
        self, n: int, generator: torch.Generator, exclude: set[int] | None = None
    ) -> tuple[Tensor, None]:
        smiles, q = self.candidates()
        allowed = [i for i in range(len(smiles)) if not exclude or i not in exclude]
        if n > len(allowed):
            raise ValueError(
                f"asked for {n} start molecules but only {len(allowed)} test molecules with "
                f"QED < {self.qed_max} are available (source={self.source!r})"
            )
        order = torch.randperm(len(allowed), generator=generator)[:n].tolist()
        self.indices = [allowed[i] for i in order]
        self.smiles = [smiles[i] for i in self.indices]
        self.qed = q[self.indices]
        vae = get_vae(self.vae_path)
        if vae.latent_dim != self.dim:
            raise ValueError(f"dim={self.dim} but the VAE's latent dimension is {vae.latent_dim}")
        vae_file = self.vae_path or str(default_vae())
        return embed(vae, self.smiles, vae_file).float(), None


def check_pair(vae: str | None, surrogate: str | None) -> bool:
    """Warn (and return False) when the surrogate was trained on another VAE checkpoint than
    ``vae``: its embeddings would then live in a different latent space."""
    import warnings

    from .pools import file_sha256

    try:
        _, info = load_surrogate(surrogate)
    except FileNotFoundError:
        return False
    expected = info.get("vae_sha256")
    actual = file_sha256(vae or default_vae())
    if expected and expected != actual:
        warnings.warn(
            f"the QED surrogate {surrogate or 'default'} was trained on VAE {expected[:12]}, but the VAE "
            f"{vae or default_vae()} is {actual[:12]}: retrain it with `jkoflow molecules train-surrogate`",
            RuntimeWarning,
            stacklevel=2,
        )
        return False
    return True


# --- problem ---------------------------------------------------------------------------------
class Molecules(Problem):
    """Raise drug-likeness while staying close: ``F = lambda_1 E V + lambda_2 D(rho, rho_0)``.

    ``preset`` ("quick", "cpu", "paper") fills every parameter left at ``None``. ``divergence``
    is ``"sinkhorn"`` (geomloss), ``"sinkhorn_warm"`` (same quantity, warm started, see
    :mod:`.sinkhorn`) or ``"mmd"`` (``blur`` is then the Gaussian kernel's sigma). Decoding
    metrics are computed at ``metric_steps`` (default: first, middle and last step); every
    other step reports cheap metrics only (mean ``V``, mean predicted ``P(QED > 0.85)``, RMS
    displacement). Set the number of steps here (``[problem] steps = ...``) rather than with
    ``solver.steps`` / ``--steps``, so that the default ``metric_steps`` include the last step.
    ``vae`` / ``surrogate`` default to the preset's pair (``paper-cpu``: ``checkpoints/qedhead``)
    or else the committed default pair (:func:`.pools.default_vae`).

    Decoding: the reported ``validity`` etc. always come from one greedy decoding per particle
    (the paper's). With ``decoding = "valid_first"`` (or ``"sample"``) the same metrics of that
    decoding are added beside them under the prefix ``valid_first_`` (``sample_``), with
    ``decode_k`` draws at ``decode_temperature``, seeded by ``decode_seed``; neither looks at QED.
    """

    t0 = 0.0

    def __init__(
        self,
        preset: str = "cpu",
        n: int | None = None,
        tau: float | None = None,
        steps: int | None = None,
        inner_iters: int | None = None,
        lr: float | None = None,
        lambda_1: float | None = None,
        lambda_2: float | None = None,
        divergence: str | None = None,
        blur: float | None = None,
        warm_start: bool | None = None,
        widths: list[int] | None = None,
        source: str | None = None,
        vae: str | None = None,
        surrogate: str | None = None,
        qed_max: float = 0.7,
        metric_steps: list[int] | None = None,
        novelty: bool = True,
        decoding: str = "greedy",
        decode_k: int = DECODE_K,
        decode_temperature: float = DECODE_TEMPERATURE,
        decode_seed: int = 0,
    ) -> None:
        from .vae import DECODINGS

        if preset not in PRESETS:
            raise ValueError(f"preset={preset!r}: expected one of {sorted(PRESETS)}")
        if decoding not in DECODINGS:
            raise ValueError(f"decoding={decoding!r}: expected one of {DECODINGS}")
        if int(decode_k) < 1:
            raise ValueError(f"decode_k={decode_k!r}: expected a number of draws >= 1")
        if not float(decode_temperature) > 0:
            raise ValueError(f"decode_temperature={decode_temperature!r}: expected a temperature > 0")
        self.decoding, self.decode_k = decoding, int(decode_k)
        self.decode_temperature, self.decode_seed = float(decode_temperature), int(decode_seed)
        pair_vae, pair_surrogate = preset_pair(preset)
        if vae is None and surrogate is None:
            vae, surrogate = pair_vae, pair_surrogate
        given = {
            "n": n,
            "tau": tau,
            "steps": steps,
            "inner_iters": inner_iters,
            "lr": lr,
            "lambda_1": lambda_1,
            "lambda_2": lambda_2,
            "divergence": divergence,
            "blur": blur,
            "warm_start": warm_start,
            "widths": widths,
            "source": source,
        }
        self.settings: dict[str, Any] = {
            k: (v if v is not None else PRESETS[preset][k]) for k, v in given.items()
        }
        if self.settings["divergence"] not in ("sinkhorn", "sinkhorn_warm", "mmd"):
            raise ValueError(
                f"divergence={self.settings['divergence']!r}: expected 'sinkhorn', 'sinkhorn_warm' or 'mmd'"
            )
        self.preset, self.vae_path, self.surrogate_path = preset, vae, surrogate
        self.qed_max, self.novelty = float(qed_max), bool(novelty)
        steps_ = int(self.settings["steps"])
        self.metric_steps = sorted(
            set(metric_steps if metric_steps is not None else [0, steps_ // 2, steps_])
        )
        self.pair_ok = check_pair(vae, surrogate)
        self.start_molecules: list[str] | None = None
        """The molecules the particles started from (set by the caller, e.g. ``jkoflow molecules
        run``); when set, ``tanimoto_to_start_molecule`` is reported as well."""
        self.alt_decoded: dict[int, list[str]] = {}
        self.alt_qed: dict[int, np.ndarray] = {}
        self.decoded: dict[int, list[str]] = {}
        self.qed: dict[int, np.ndarray] = {}
        self.results: dict[int, dict[str, float]] = {}

    # spec ------------------------------------------------------------------------------------
    def divergence_table(self) -> dict[str, Any]:
        kind, blur = self.settings["divergence"], float(self.settings["blur"])
        return {"kind": kind, "sigma": blur} if kind == "mmd" else {"kind": kind, "blur": blur}

    def spec(self) -> dict[str, Any]:
        s = self.settings
        sampler: dict[str, Any] = {
            "kind": "moses_embeddings",
            "n": int(s["n"]),
            "source": s["source"],
            "qed_max": self.qed_max,
        }
        V: dict[str, Any] = {"kind": "qed_surrogate"}
        if self.vae_path:
            sampler["vae"] = self.vae_path
        if self.surrogate_path:
            V["path"] = self.surrogate_path
        return {
            "dim": 128,
            "sampler": sampler,
            "terms": [
                {"kind": "potential", "weight": float(s["lambda_1"]), "V": V},
                {
                    "kind": "divergence_to_start",
                    "weight": float(s["lambda_2"]),
                    "divergence": self.divergence_table(),
                },
            ],
            "solver": {
                "tau": float(s["tau"]),
                "steps": int(s["steps"]),
                "inner_iters": int(s["inner_iters"]),
                "lr": float(s["lr"]),
                "warm_start": bool(s["warm_start"]),
            },
            "potential": {"kind": "ficnn", "widths": list(s["widths"])},
        }

    # metrics ---------------------------------------------------------------------------------
    def step_of(self, t: float) -> int:
        return int(round((t - self.t0) / float(self.settings["tau"])))  # noqa: RUF046 - numpy 1.x rounds to float

    def decode(self, x: Tensor, mode: str = "greedy", step: int = 0) -> list[str]:
        """Decode particles ``x``: ``greedy`` (default) or this problem's sampled mode, seeded by
        ``decode_seed`` and ``step`` (so each step's draws are reproducible)."""
        return get_vae(self.vae_path).decode(
            x.detach().float(),
            mode=mode,
            k=self.decode_k,
            temperature=self.decode_temperature,
            seed=self.decode_seed * 100_003 + step,
        )

    def metrics(self, t: float, x0: Tensor, x: Tensor, log_density: Tensor | None) -> dict[str, float]:
        V = qed_surrogate(self.surrogate_path)
        with torch.no_grad():
            v = V(x.float())
            out = {
                "V_mean": float(v.mean()),
                "p_high_mean": float(torch.sigmoid(-v).mean()),
                "displacement_rms": float((x - x0).pow(2).sum(1).mean().sqrt()),
            }
        step = self.step_of(t)
        if step not in self.metric_steps:
            return out
        out.update(self.decoded_metrics(step, x0, x))
        return out

    def decoded_metrics(self, step: int, x0: Tensor, x: Tensor) -> dict[str, float]:
        """Decode every particle and compute the paper's metrics (cached per step)."""
        from .metrics import cloud_metrics, qed_values, training_set

        if 0 not in self.decoded:
            self.decoded[0] = self.decode(x0)
            self.qed[0] = qed_values(self.decoded[0])
        if step not in self.decoded:
            self.decoded[step] = self.decode(x)
            self.qed[step] = qed_values(self.decoded[step])
        training = training_set(self.settings["source"]) if self.novelty else None
        res = cloud_metrics(self.decoded[step], start=self.decoded[0], training=training)
        if self.start_molecules is not None:
            res["tanimoto_to_start_molecule"] = mean_tanimoto(self.start_molecules, self.decoded[step])
        res.update(closeness(x, x0))
        q = self.qed[step]
        res["qed_above_085"] = (
            100.0 * float((q[np.isfinite(q)] > 0.85).mean()) if np.isfinite(q).any() else 0.0
        )
        if self.decoding != "greedy":
            mode = self.decoding
            if step not in self.alt_decoded:
                self.alt_decoded[step] = self.decode(x, mode=mode, step=step)
                self.alt_qed[step] = qed_values(self.alt_decoded[step])
            alt = cloud_metrics(self.alt_decoded[step], start=self.start_molecules, training=None)
            if "tanimoto_to_start" in alt:  # measured against the start molecule, not a decoding
                alt["tanimoto_to_start_molecule"] = alt.pop("tanimoto_to_start")
            res.update({f"{mode}_{k}": v for k, v in alt.items()})
        self.results[step] = res
        return res


def mean_tanimoto(start: list[str], end: list[str]) -> float:
    """Mean Morgan Tanimoto similarity of ``end[i]`` to ``start[i]`` over pairs where both parse."""
    from .metrics import paired_tanimoto

    sims = paired_tanimoto(start, end)
    return float(np.nanmean(sims)) if np.isfinite(sims).any() else float("nan")


def closeness(x: Tensor, x0: Tensor) -> dict[str, float]:
    """How far the cloud ``x`` is from its start ``x0``, absolute and relative to ``x0``'s own scale.

    * ``final_sd``: the evaluation Sinkhorn divergence ``S(x, x0)`` (0 when ``x is x0``),
    * ``final_sd_rel``: ``final_sd / (tr Cov(x0) / 2)``, the divergence as a fraction of
      ``W_2^2(x0, delta_mean) / 2`` (collapsing the start cloud onto its mean; the cost is
      ``|x - y|^2 / 2``), so latents of different scales compare,
    * ``displacement_rms``: root mean square of ``|x_i - x0_i|``,
    * ``displacement_rel``: that over the start cloud's RMS radius ``sqrt(tr Cov(x0))``,
    * ``start_radius_rms``: the start cloud's RMS radius ``sqrt(tr Cov(x0))``.
    """
    x, x0 = x.detach().float(), x0.detach().float()
    trace = float(((x0 - x0.mean(0)) ** 2).sum(1).mean())
    disp = float((x - x0).pow(2).sum(1).mean().sqrt())
    same = x.shape == x0.shape and bool(torch.equal(x, x0))
    sd = 0.0 if same else sinkhorn_sd(x, x0)
    return {
        "final_sd": sd,
        "final_sd_rel": sd / (0.5 * trace) if trace > 0 else float("nan"),
        "displacement_rms": disp,
        "displacement_rel": disp / math.sqrt(trace) if trace > 0 else float("nan"),
        "start_radius_rms": math.sqrt(trace),
    }


def sinkhorn_sd(x: Tensor, x0: Tensor, blur: float = EVAL_BLUR) -> float:
    """Evaluation Sinkhorn divergence ``S_eps(x, x0)`` (geomloss, ``eps = blur^2``)."""
    from jkoflow.plugins.divergences import Sinkhorn

    x, x0 = x.detach().float(), x0.detach().float()
    if not (torch.isfinite(x).all() and torch.isfinite(x0).all()):
        return float("nan")
    try:
        with torch.no_grad():
            value = float(Sinkhorn(blur=blur)(x, x0))
    except (ValueError, RuntimeError, MemoryError):  # geomloss cannot schedule astronomically large clouds
        return float("nan")
    return value if math.isfinite(value) else float("nan")


# Both live in the VAE's latent space: the conformance suite must check them in d = 128.
qed_surrogate.jkoflow_conformance_params = [{"dim": 128}]  # type: ignore[attr-defined]
MosesEmbeddings.jkoflow_conformance_params = [{"dim": 128}]  # type: ignore[attr-defined]


@hookimpl
def jkoflow_register(registry: Registry) -> None:
    if not AVAILABLE:
        return
    registry.add("potential_fn", "qed_surrogate", qed_surrogate)
    registry.add("sampler", "moses_embeddings", MosesEmbeddings)
    registry.add("divergence", "sinkhorn_warm", WarmSinkhorn)
    registry.add("problem", "molecules", Molecules)


@hookimpl
def jkoflow_add_commands(subparsers: Any) -> None:
    """``jkoflow molecules SUBCOMMAND ...``: the command line of :mod:`.cli`."""
    if not AVAILABLE:
        return
    molecules = subparsers.add_parser(
        "molecules", help="molecular tools (jkoflow molecules --help)", add_help=False
    )
    molecules.add_argument("rest", nargs=argparse.REMAINDER)
    molecules.set_defaults(handler=_molecules_command, extra_args=True)


def _molecules_command(args: argparse.Namespace, ctx: Any) -> int:
    from .cli import main

    return int(main(list(args.rest) + list(ctx.rest), prog="jkoflow molecules") or 0)


@hookimpl
def jkoflow_bench_suites() -> dict[str, Any]:
    """``jkoflow bench molecules``: :mod:`.bench`."""
    if not AVAILABLE:
        return {}
    from . import bench

    return {"molecules": bench}
