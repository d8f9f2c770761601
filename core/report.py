"""Files a run writes: resolved spec, per-step metrics, particles, maps and a summary figure.

=================  ==========================================================================
file               contents
=================  ==========================================================================
``spec.toml``      the resolved spec: ``jkoflow run spec.toml`` repeats the run exactly
``metrics.json``   list of per-step records, step 0 included: ``step``, ``t`` (elapsed flow
                   time), ``t_physical`` (problem time ``t0 + t``), ``seconds``, ``F`` (null
                   where not computable), ``transport``, ``inner_loss_final``, ``lr_drops``,
                   ``converged``, ``inner_iters_used`` (optimizer iterations of the step),
                   ``inner_stop`` (``"tol"``: the stopping rule of :mod:`jkoflow.inner`;
                   ``"cap"``: ``inner_iters`` reached), ``grad_norm``, ``failures`` (the recovered numerical
                   failures of the step, see :mod:`jkoflow.solver`), ``compile_seconds``
                   (with ``solver.compile``: wall seconds spent compiling) and the problem's
                   exact-solution metrics (``F_exact``, ``w1``, ...). JSON has no NaN: a
                   non-finite number is written as null and its key listed in the record's
                   ``non_finite``
``particles.npz``  ``x`` (steps + 1, N, d), ``t`` (steps + 1,), ``log_density`` (steps + 1, N)
                   when log-densities were carried; never non-finite (refused)
``maps.pt``        trained potentials (state dicts; ``torch.load(..., weights_only=True)``)
``summary.png``    density snapshots against the exact solution, F over time
=================  ==========================================================================
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .files import atomic_path, atomic_write_text
from .flow import Flow
from .problem import Problem


def step_record(flow: Flow, step: int, problem_metrics: dict[str, float], t0: float = 0.0) -> dict[str, Any]:
    """The ``metrics.json`` record of ``step`` (0 = the initial cloud); non-finite numbers are
    null, with their keys in ``non_finite`` (see :func:`finite_record`)."""
    if step == 0:
        base: dict[str, Any] = {
            "step": 0,
            "t": 0.0,
            "seconds": 0.0,
            "F": flow.initial_F,
            "transport": None,
            "inner_loss_final": None,
            "lr_drops": 0,
            "converged": True,
            "inner_iters_used": 0,
            "inner_stop": None,
            "grad_norm": None,
            "failures": [],
        }
    else:
        rec = flow.records[step - 1]
        base = {
            "step": step,
            "t": rec.t,
            "seconds": rec.seconds,
            "F": rec.F,
            "transport": rec.transport,
            "inner_loss_final": rec.inner_loss[-1] if rec.inner_loss else None,
            "lr_drops": rec.lr_drops,
            "converged": rec.converged,
            "inner_iters_used": rec.iterations,
            "inner_stop": rec.stop or None,
            "grad_norm": rec.grad_norm,
            "failures": list(rec.failures),
        }
        if rec.compile_seconds:  # solver.compile: the step's compile time, apart
            base["compile_seconds"] = rec.compile_seconds
        if rec.substep:  # on_failure = "substeps" split a step: this entry covers rec.tau of it
            base["tau"], base["substep"] = rec.tau, rec.substep
    base["t_physical"] = t0 + base["t"]
    base.update(problem_metrics)
    return finite_record(base)


def _finite(value: Any, key: str, found: list[str]) -> Any:
    """``value`` with every non-finite float (nested in lists and dicts too) replaced by
    ``None``; the key path of each is appended to ``found``."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        found.append(key)
        return None
    if isinstance(value, dict):
        return {k: _finite(v, f"{key}.{k}", found) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v, f"{key}[{i}]", found) for i, v in enumerate(value)]
    return value


def finite_record(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` with non-finite numbers replaced by ``None`` and their keys listed in
    ``non_finite`` (merged with any list already there); unchanged when all are finite."""
    found: list[str] = list(record.get("non_finite") or [])
    out = {k: _finite(v, k, found) for k, v in record.items() if k != "non_finite"}
    if found:
        out["non_finite"] = list(dict.fromkeys(found))
    return out


def write_metrics(records: list[dict[str, Any]], out: Path) -> None:
    """Write ``metrics.json`` atomically (a crash never leaves a half-written file).

    JSON has no NaN or infinity: such values are written as ``null`` and listed, per record,
    under ``"non_finite"``."""
    text = json.dumps([finite_record(r) for r in records], indent=1, allow_nan=False)
    atomic_write_text(out / "metrics.json", text)


def write_particles(flow: Flow, out: Path) -> None:
    """Write ``particles.npz``: ``x`` (T+1, N, d), ``t`` (T+1,), optional ``log_density``.

    Raises ``ValueError`` (naming the step and the count) instead of writing non-finite
    particles or log-densities: the solver never hands them over, this is a last guard."""
    for step, x in enumerate(flow.particles):
        bad = int((~torch.isfinite(x)).reshape(x.shape[0], -1).any(dim=1).sum()) if x.numel() else 0
        if bad:
            raise ValueError(
                f"particles.npz: step {step} has {bad} of {x.shape[0]} non-finite particles; refusing to write them"
            )
    for step, ld in enumerate(flow.log_densities):
        bad = 0 if ld is None else int((~torch.isfinite(ld)).sum())
        if bad:
            assert ld is not None
            raise ValueError(
                f"particles.npz: step {step} has {bad} of {ld.shape[0]} non-finite log-densities; "
                "refusing to write them"
            )
    arrays: dict[str, np.ndarray] = {"x": flow.trajectory(), "t": flow.times}
    if flow.log_densities and all(ld is not None for ld in flow.log_densities):
        arrays["log_density"] = np.stack([ld.cpu().numpy() for ld in flow.log_densities])  # type: ignore[union-attr]
    with atomic_path(out / "particles.npz") as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)  # type: ignore[arg-type]  # numpy types **kwds as allow_pickle


def plot_summary(
    flow: Flow, records: list[dict[str, Any]], problem: Problem | None, path: Path, title: str = ""
) -> None:
    """Density snapshots (against the exact solution where known) and F over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    traj = flow.trajectory()
    steps = traj.shape[0] - 1
    snaps = sorted({0, steps // 3, (2 * steps) // 3, steps})
    t0 = problem.t0 if problem is not None else 0.0
    fig, (ax_d, ax_f) = plt.subplots(1, 2, figsize=(11, 4.2))
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(snaps)))
    if traj.shape[2] == 1:
        lo, hi = float(traj.min()), float(traj.max())
        pad = 0.1 * (hi - lo + 1e-12)
        grid = np.linspace(lo - pad, hi + pad, 400)
        from scipy.stats import gaussian_kde

        for s, c in zip(snaps, colors):
            t = t0 + float(flow.times[s])
            ax_d.plot(
                grid, gaussian_kde(traj[s, :, 0])(grid), color=c, lw=1.5, label=f"particles (KDE) t={t:.3g}"
            )
            exact = problem.exact_density(grid[:, None], t) if problem is not None else None
            if exact is not None:
                ax_d.plot(grid, exact, color=c, lw=1.2, ls="--")
        ax_d.set_xlabel("x")
        ax_d.set_ylabel("density (dashed: exact)")
    else:
        for s, c in zip(snaps, colors):
            ax_d.scatter(
                traj[s, :, 0],
                traj[s, :, 1],
                s=4,
                color=c,
                alpha=0.6,
                label=f"t={t0 + float(flow.times[s]):.3g}",
            )
        ax_d.set_xlabel("x_1")
        ax_d.set_ylabel("x_2")
        ax_d.set_aspect("equal", adjustable="datalim")
    ax_d.legend(fontsize=7)
    ax_d.set_title("density snapshots")
    ts = [r["t_physical"] for r in records]
    fs = [r["F"] if r["F"] is not None else np.nan for r in records]
    ax_f.plot(ts, fs, "o-", label="F (particles)")
    if any(r.get("F_exact") is not None for r in records):
        fe = [r.get("F_exact") if r.get("F_exact") is not None else np.nan for r in records]
        ax_f.plot(ts, fe, "k--", label="F exact")
    ax_f.set_xlabel("t")
    ax_f.set_ylabel("F")
    ax_f.set_title("F over time")
    ax_f.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format=Path(path).suffix.lstrip(".") or "png")
    plt.close(fig)
