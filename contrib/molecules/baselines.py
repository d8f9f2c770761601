"""Direct optimization baselines and the amortization table (paper Section 6, Tables 6-8).

Direct optimization moves the embeddings themselves down the same objective,

    x <- x - lr * grad_x [ lambda_1 mean_i V(x_i) + lambda_2 D(x, x_0) ]     (SGD or Adam),

a forward (explicit) discretization of ``dX_t = -grad V(X_t) dt - lambda_2 grad D(mu_t, rho_0)``,
for ``iters`` iterations. The paper's grid is optimizer x lr in {5e-1, 1e-1, 1e-2, 1e-3, 1e-4}
x lambda_2 in {0, 1, 10, 100, 1e3, 1e4}; the ``cpu`` grid trims it (see :data:`GRIDS`).

Amortization: a trained JKO flow's maps ``grad u_1, ..., grad u_T`` transport a *new* cloud
``x ~ rho_0`` by ``T`` forward passes (:meth:`jkoflow.Flow.transport`), whereas direct
optimization must be re-run on every new cloud.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from jkoflow.divergence import Divergence
from torch import Tensor

GRIDS: dict[str, dict[str, list[float]]] = {
    "paper": {"lr": [5e-1, 1e-1, 1e-2, 1e-3, 1e-4], "lambda_2": [0, 1, 10, 100, 1e3, 1e4]},
    "cpu": {"lr": [5e-1, 1e-1, 1e-2, 1e-3], "lambda_2": [0, 1, 100, 1e4]},
}
OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}


def direct_optimize(
    x0: Tensor,
    V: Callable[[Tensor], Tensor],
    divergence: Divergence | None,
    *,
    lambda_1: float = 1.0,
    lambda_2: float = 0.0,
    optimizer: str = "adam",
    lr: float = 1e-1,
    iters: int = 100,
) -> tuple[Tensor, dict[str, Any]]:
    """Minimize ``lambda_1 mean V(x) + lambda_2 D(x, x0)`` over the positions ``x`` (start ``x0``).

    Returns the final positions and ``{"seconds", "iters", "diverged", "objective"}``; a
    non-finite objective stops early (``diverged=True``, last finite positions returned).
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer={optimizer!r}: expected one of {sorted(OPTIMIZERS)}")
    ref = x0.detach()
    x = ref.clone().requires_grad_(True)
    opt = OPTIMIZERS[optimizer]([x], lr=lr)
    use_div = divergence is not None and lambda_2 != 0
    diverged, objective, done = False, float("nan"), 0
    start = time.perf_counter()
    for _ in range(iters):
        loss = lambda_1 * V(x).mean()
        if use_div:
            assert divergence is not None
            loss = loss + lambda_2 * divergence(x, ref)
        if not torch.isfinite(loss):
            diverged = True
            break
        last = x.detach().clone()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        objective = loss.item()
        done += 1
        if not torch.isfinite(x).all():
            diverged = True
            with torch.no_grad():
                x.copy_(last)
            break
    return x.detach(), {
        "seconds": time.perf_counter() - start,
        "iters": done,
        "diverged": diverged,
        "objective": objective,
    }


def make_divergence(problem: Any) -> Divergence:
    """A fresh instance of the problem's divergence (warm-started ones keep per-run state)."""
    from jkoflow.registry import default_registry

    table = dict(problem.divergence_table())
    return default_registry().get("divergence", table.pop("kind"))(**table)


def run_grid(
    problem: Any,
    x0: Tensor,
    start_smiles: list[str],
    *,
    grid: str = "cpu",
    iters: int = 100,
    optimizers: tuple[str, ...] = ("sgd", "adam"),
    progress: bool = True,
    log: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Run direct optimization over ``GRIDS[grid]`` and evaluate each final cloud like the flow:
    validity, uniqueness, novelty, QED, Final SD, Tanimoto to the start molecule."""
    from tqdm.auto import tqdm

    from .metrics import cloud_metrics, qed_values, training_set
    from .plugin import qed_surrogate, sinkhorn_sd

    V = qed_surrogate(problem.surrogate_path)
    lambda_1 = float(problem.settings["lambda_1"])
    training = training_set(problem.settings["source"]) if problem.novelty else None
    configs = [(o, lr, l2) for o in optimizers for l2 in GRIDS[grid]["lambda_2"] for lr in GRIDS[grid]["lr"]]
    rows = []
    for opt, lr, l2 in tqdm(configs, desc="baselines", disable=not progress):
        x, info = direct_optimize(
            x0,
            V,
            make_divergence(problem),
            lambda_1=lambda_1,
            lambda_2=float(l2),
            optimizer=opt,
            lr=lr,
            iters=iters,
        )
        smiles = problem.decode(x)
        row: dict[str, Any] = {"optimizer": opt, "lr": lr, "lambda_2": float(l2), **info}
        row.update(cloud_metrics(smiles, start=start_smiles, training=training))
        row["final_sd"] = sinkhorn_sd(x, x0)
        row["V_mean"] = float(V(x).mean())
        row["qed"] = qed_values(smiles).tolist()
        rows.append(row)
        if log:
            log(row)
    return rows


MATCHED_CHECKS: tuple[int, ...] = (5, 10, 15, 20, 30, 40, 50, 65, 80, 100)
"""Iterations at which :func:`matched_baselines` decodes a baseline's cloud."""


def matched_configs(lambda_2: float) -> list[tuple[str, float, float]]:
    """The direct-optimization configurations :func:`matched_baselines` runs by default:
    SGD and Adam, two step sizes each, without the divergence (lambda_2 = 0), and the larger
    step of each with the flow's own ``lambda_2``."""
    out: list[tuple[str, float, float]] = [
        ("sgd", 0.02, 0.0),
        ("sgd", 0.005, 0.0),
        ("adam", 0.1, 0.0),
        ("adam", 0.02, 0.0),
    ]
    if lambda_2:
        out += [("sgd", 0.02, float(lambda_2)), ("adam", 0.02, float(lambda_2))]
    return out


def matched_baselines(
    problem: Any,
    x0: Tensor,
    target_qed_median: float,
    *,
    configs: list[tuple[str, float, float]] | None = None,
    checks: tuple[int, ...] = MATCHED_CHECKS,
    start_molecules: list[str] | None = None,
    progress: bool = True,
    log: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Direct optimization stopped where it first reaches the flow's median QED (a fair closeness test).

    Each configuration ``(optimizer, lr, lambda_2)`` descends ``lambda_1 mean V + lambda_2 D`` from
    ``x0`` (the flow's start cloud, same surrogate and divergence) and greedily decodes its cloud at
    the iterations ``checks``; at the first check whose decoded median QED is at least
    ``target_qed_median`` it stops and reports the cloud's metrics there (validity, uniqueness, QED,
    Final SD, ``final_sd_rel``, Tanimoto to the start decoding and, with ``start_molecules``, to the
    start molecule). A configuration that never reaches the target reports its last check with
    ``reached = False`` and its best median along the way.
    """
    from tqdm.auto import tqdm

    from .metrics import cloud_metrics, qed_values
    from .plugin import closeness, mean_tanimoto, qed_surrogate

    if not checks or any(c < 1 for c in checks) or list(checks) != sorted(set(checks)):
        raise ValueError(f"checks must be increasing positive iteration counts, got {checks!r}")
    V = qed_surrogate(problem.surrogate_path)
    lambda_1 = float(problem.settings["lambda_1"])
    configs = configs if configs is not None else matched_configs(float(problem.settings["lambda_2"]))
    start_decoded = problem.decode(x0)
    rows: list[dict[str, Any]] = []
    for opt_name, lr, l2 in tqdm(configs, desc="matched baselines", disable=not progress):
        if opt_name not in OPTIMIZERS:
            raise ValueError(f"optimizer={opt_name!r}: expected one of {sorted(OPTIMIZERS)}")
        ref = x0.detach()
        div = make_divergence(problem) if l2 else None
        x = ref.clone().requires_grad_(True)
        opt = OPTIMIZERS[opt_name]([x], lr=lr)
        done, seconds, best_median, diverged = 0, 0.0, -math.inf, False
        row: dict[str, Any] = {}
        for check in checks:
            start = time.perf_counter()
            while done < check:
                loss = lambda_1 * V(x).mean()
                if div is not None:
                    loss = loss + l2 * div(x, ref)
                if not torch.isfinite(loss):
                    diverged = True
                    break
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                done += 1
            seconds += time.perf_counter() - start
            xd = x.detach()
            if diverged or not torch.isfinite(xd).all():
                diverged = True
                break
            smiles = problem.decode(xd)
            q = qed_values(smiles)
            median = float(np.median(q[np.isfinite(q)])) if np.isfinite(q).any() else float("nan")
            best_median = max(best_median, median) if math.isfinite(median) else best_median
            reached = bool(median >= target_qed_median)
            if not reached and check != checks[-1]:
                continue
            m = cloud_metrics(smiles, start=start_decoded)
            row = {
                **_config_row(opt_name, lr, l2, done, seconds),
                **m,
                **closeness(xd, ref),
                "V_mean": float(V(xd).mean()),
                "reached": reached,
                "best_qed_median": best_median,
                "diverged": False,
                "qed": q.tolist(),
            }
            if start_molecules is not None:
                row["tanimoto_to_start_molecule"] = mean_tanimoto(start_molecules, smiles)
            if row["reached"]:
                break
        if diverged:
            row = {
                **_config_row(opt_name, lr, l2, done, seconds),
                "reached": False,
                "diverged": True,
                "best_qed_median": best_median,
            }
        rows.append(row)
        if log:
            log(row)
    return rows


def _config_row(opt_name: str, lr: float, l2: float, done: int, seconds: float) -> dict[str, Any]:
    """The leading columns of a baseline row: the configuration and what it cost."""
    return {"optimizer": opt_name, "lr": lr, "lambda_2": float(l2), "iters": done, "seconds": seconds}


def best_rows(rows: list[dict[str, Any]], min_validity: float = 90.0) -> list[dict[str, Any]]:
    """Per optimizer, the configuration with the highest QED median among those whose validity
    is at least ``min_validity`` percent (the paper's 'best' baselines)."""
    out = []
    for opt in sorted({r["optimizer"] for r in rows}):
        ok = [
            r
            for r in rows
            if r["optimizer"] == opt and r["validity"] >= min_validity and math.isfinite(r["qed_median"])
        ]
        if ok:
            out.append(max(ok, key=lambda r: (r["qed_median"], -r["final_sd"])))
    return out


def amortization(
    flow: Any,
    problem: Any,
    sampler: Any,
    exclude: set[int],
    best: dict[str, Any],
    *,
    sizes: list[int],
    iters: int = 100,
    seed: int = 1,
    full_up_to: int = 1000,
    timing_iters: int = 5,
) -> list[dict[str, Any]]:
    """Paper Table 8: new clouds of each size (test molecules not in the flow's start cloud),
    moved by the flow's maps and by direct optimization with the ``best`` configuration.

    Direct optimization runs in full for sizes up to ``full_up_to``; above that it is timed
    over ``timing_iters`` iterations and its time extrapolated linearly to ``iters``
    (``extrapolated=True``); QED and Final SD are then reported for the maps only.
    """
    from .metrics import qed_values
    from .plugin import qed_surrogate, sinkhorn_sd

    V = qed_surrogate(problem.surrogate_path)
    rows = []
    for n in sizes:
        gen = torch.Generator().manual_seed(seed + n)
        x, _ = sampler.sample(n, gen, exclude=exclude)
        start = time.perf_counter()
        y, _ = flow.transport(x)
        t_maps = time.perf_counter() - start
        q_maps = qed_values(problem.decode(y))
        row: dict[str, Any] = {
            "size": n,
            "maps_seconds": t_maps,
            "maps_qed_median": float(np.nanmedian(q_maps)),
            "maps_validity": 100.0 * float(np.isfinite(q_maps).mean()),
            "maps_final_sd": sinkhorn_sd(y, x) if n <= full_up_to else None,
            "start_qed_median": float(np.nanmedian(qed_values(problem.decode(x)))),
        }
        full = n <= full_up_to
        z, info = direct_optimize(
            x,
            V,
            make_divergence(problem),
            lambda_1=float(problem.settings["lambda_1"]),
            lambda_2=float(best["lambda_2"]),
            optimizer=best["optimizer"],
            lr=float(best["lr"]),
            iters=iters if full else timing_iters,
        )
        per_iter = info["seconds"] / max(info["iters"], 1)
        row["direct_seconds"] = info["seconds"] if full else per_iter * iters
        row["direct_extrapolated"] = not full
        if full:
            q_dir = qed_values(problem.decode(z))
            row["direct_qed_median"] = float(np.nanmedian(q_dir))
            row["direct_final_sd"] = sinkhorn_sd(z, x)
        row["speedup"] = row["direct_seconds"] / max(t_maps, 1e-9)
        rows.append(row)
    return rows


def main_baselines(
    out: str | Path,
    maps: str | None = None,
    preset: str = "cpu",
    iters: int = 50,
    grid: str = "cpu",
    sizes: list[int] | None = None,
    seed: int = 0,
    vae: str | None = None,
    surrogate: str | None = None,
) -> dict[str, Any]:
    """``jkoflow molecules baselines``: grid on the preset's start cloud (same seed as the flow),
    then, with ``maps``, the amortization table. Writes ``baselines.json`` in ``out``."""
    from .plugin import Molecules, MosesEmbeddings

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    problem = Molecules(preset=preset, novelty=True, vae=vae, surrogate=surrogate)
    spec = problem.spec()
    sampler = MosesEmbeddings(128, source=spec["sampler"]["source"], vae=vae, qed_max=problem.qed_max)
    x0, _ = sampler.sample(spec["sampler"]["n"], torch.Generator().manual_seed(seed))
    start_smiles = problem.decode(x0)

    def log(row: dict[str, Any]) -> None:  # partial results survive an interruption
        done.append(row)
        (out / "baselines.partial.json").write_text(
            json.dumps({"grid": grid, "iters": iters, "rows": done}, indent=1, default=float)
        )

    done: list[dict[str, Any]] = []
    rows = run_grid(problem, x0, start_smiles, grid=grid, iters=iters, log=log)
    result: dict[str, Any] = {
        "grid": grid,
        "iters": iters,
        "preset": preset,
        "rows": rows,
        "best": best_rows(rows),
    }
    if maps:
        from jkoflow.flow import Flow
        from jkoflow.plugins.potentials import ficnn

        widths = [int(w) for w in cast(list, problem.settings["widths"])]
        flow = Flow.load_maps(maps, lambda: ficnn(128, widths=widths))
        best = result["best"][-1] if result["best"] else rows[0]
        result["amortization"] = amortization(
            flow,
            problem,
            sampler,
            set(sampler.indices),
            best,
            sizes=sizes or [1000, 2000, 3000, 4000, 5000],
            iters=iters,
        )
    (out / "baselines.json").write_text(json.dumps(result, indent=1, default=float))
    result["summary"] = {
        "best": [
            {k: r[k] for k in ("optimizer", "lr", "lambda_2", "validity", "qed_median", "final_sd")}
            for r in result["best"]
        ]
    }
    return result


__all__ = [
    "GRIDS",
    "amortization",
    "best_rows",
    "direct_optimize",
    "main_baselines",
    "matched_baselines",
    "matched_configs",
    "run_grid",
]
