"""``jkoflow bench molecules``: the molecular experiment end to end, as one markdown report.

    jkoflow bench molecules [--preset cpu] [--out DIR] [--grid cpu] [--iters 100] [--skip-baselines]

1. runs the JKO flow of problem ``molecules`` (decoding metrics at five steps),
2. runs the direct-optimization grid on the same start cloud (paper Tables 6/7),
3. applies the flow's maps to new clouds and times direct optimization on them (Table 8),
4. times one inner iteration of each divergence option (the CPU-speed study),
5. writes ``report.md`` with the paper's columns (rows: start cloud, JKO flow, best baselines),
   ``qed_histograms.png`` (paper Figures 6/8), ``pairs.png`` (start/end molecules drawn with
   RDKit), ``flow.json``, ``baselines.json`` and the flow's ``maps.pt``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch

if TYPE_CHECKING:
    from .plugin import Molecules, MosesEmbeddings

COLUMNS = (
    "validity",
    "uniqueness",
    "novelty",
    "qed_median",
    "qed_mean",
    "qed_std",
    "final_sd",
    "tanimoto_to_start",
)
HEAD = "| row | validity % | uniqueness % | novelty % | QED median | QED mean | QED std | Final SD | Tanimoto to start |"


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    if isinstance(v, float):
        if abs(v) >= 1000:
            return f"{v:.0f}"
        return f"{v:.{digits}f}"
    return str(v)


def _row(name: str, m: dict[str, Any]) -> str:
    cells = [
        _fmt(m.get("validity"), 1),
        _fmt(m.get("uniqueness"), 1),
        _fmt(m.get("novelty"), 1),
        _fmt(m.get("qed_median")),
        _fmt(m.get("qed_mean")),
        _fmt(m.get("qed_std")),
        _fmt(m.get("final_sd")),
        _fmt(m.get("tanimoto_to_start")),
    ]
    return f"| {name} | " + " | ".join(cells) + " |"


def speed_study(x0: torch.Tensor, blur: float = 0.05, repeats: int = 3) -> list[dict[str, Any]]:
    """Median seconds of one divergence evaluation + gradient between a moved copy of ``x0`` and
    ``x0`` (what every inner iteration pays), for each option."""
    from jkoflow.plugins.divergences import MMD, Sinkhorn

    from .sinkhorn import WarmSinkhorn

    g = torch.Generator().manual_seed(0)
    options = [
        ("sinkhorn (geomloss, blur 0.05, scaling 0.5) [paper]", Sinkhorn(blur=blur, scaling=0.5)),
        ("sinkhorn (geomloss, blur 0.05, scaling 0.3)", Sinkhorn(blur=blur, scaling=0.3)),
        ("sinkhorn (geomloss, blur 1.0, scaling 0.5)", Sinkhorn(blur=1.0, scaling=0.5)),
        ("sinkhorn_warm (blur 0.05, reference cached, warm start)", WarmSinkhorn(blur=blur)),
        ("mmd (gaussian, sigma 1)", MMD(sigma=1.0)),
    ]
    rows = []
    for name, div in options:
        times, values = [], []
        for k in range(repeats + 1):  # the first call of sinkhorn_warm is its cold solve
            y = (x0 + 0.01 * (k + 1) * torch.randn(x0.shape, generator=g)).requires_grad_(True)
            start = time.perf_counter()
            v = div(y, x0)
            v.backward()
            times.append(time.perf_counter() - start)
            values.append(float(v.detach()))
        rows.append(
            {
                "option": name,
                "seconds": float(np.median(times[1:])),
                "first_call_seconds": times[0],
                "value_last": values[-1],
            }
        )
    return rows


def _histograms(path: Path, series: list[tuple[str, np.ndarray]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(series), figsize=(2.6 * len(series), 2.6), sharey=True)
    bins = np.linspace(0, 1, 26)
    for ax, (label, q) in zip(np.atleast_1d(axes), series):
        q = q[np.isfinite(q)]
        ax.hist(q, bins=bins, color="tab:blue", alpha=0.8)
        if len(q):
            ax.axvline(float(np.median(q)), color="k", lw=1)
        ax.set_title(f"{label}\nmedian {np.median(q):.3f}" if len(q) else label, fontsize=8)
        ax.set_xlabel("QED", fontsize=8)
    fig.suptitle("QED of decoded molecules (1 thread CPU run)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _pairs(path: Path, start: list[str], end: list[str], q0: np.ndarray, q1: np.ndarray, k: int = 6) -> None:
    """Start/end pairs with the largest QED gain among valid, changed molecules."""
    from rdkit import Chem
    from rdkit.Chem import Draw

    from .metrics import tanimoto

    gains = [
        (q1[i] - q0[i], i)
        for i in range(len(start))
        if np.isfinite(q0[i]) and np.isfinite(q1[i]) and start[i] != end[i]
    ]
    chosen = [i for _, i in sorted(gains, reverse=True)[:k]]
    mols, legends = [], []
    for i in chosen:
        mols += [Chem.MolFromSmiles(start[i]), Chem.MolFromSmiles(end[i])]
        legends += [f"start QED {q0[i]:.2f}", f"end QED {q1[i]:.2f}, sim {tanimoto(start[i], end[i]):.2f}"]
    if not mols:
        return
    img = Draw.MolsToGridImage(mols, molsPerRow=4, subImgSize=(260, 200), legends=legends)
    img.save(str(path))


def paper_run(problem: Any, steps: int, inner_iters: int, seed: int) -> dict[str, Any]:
    """The paper preset for ``steps`` JKO steps (``inner_iters`` each) from the same start cloud
    and with the same VAE / surrogate as ``problem``; returns its settings, timing and metrics."""
    import jkoflow

    table = {
        "kind": "molecules",
        "preset": "paper",
        "n": int(problem.settings["n"]),
        "steps": steps,
        "inner_iters": inner_iters,
        "source": problem.settings["source"],
        "metric_steps": [0, steps],
    }
    if problem.vae_path:
        table["vae"] = problem.vae_path
    if problem.surrogate_path:
        table["surrogate"] = problem.surrogate_path
    run = jkoflow.build({"problem": table, "seed": seed})
    start = time.perf_counter()
    flow = run.execute(progress=True)
    seconds = time.perf_counter() - start
    final = run.problem_metrics(flow)
    return {
        "settings": cast("Molecules", run.problem).settings,
        "seconds": seconds,
        "seconds_per_step": seconds / max(steps, 1),
        "final": final,
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="jkoflow bench molecules", description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="cpu", choices=["quick", "cpu", "paper"])
    p.add_argument("--out", default="runs/bench-molecules")
    p.add_argument("--steps", type=int, default=None, help="override the preset's JKO steps")
    p.add_argument("--inner-iters", type=int, default=None)
    p.add_argument(
        "--grid", default="cpu", choices=["cpu", "paper", "none"], help="baseline grid ('none' skips)"
    )
    p.add_argument("--iters", type=int, default=50, help="direct-optimization iterations")
    p.add_argument(
        "--baselines-json",
        default=None,
        help="reuse the grid of `jkoflow molecules baselines` (its baselines.json) instead of --grid",
    )
    p.add_argument(
        "--wait-baselines",
        type=float,
        default=3600.0,
        help="seconds to wait for --baselines-json to appear (then its partial results are used)",
    )
    p.add_argument(
        "--amortize-with",
        default="adam,0.1,1",
        help="optimizer,lr,lambda_2 of direct optimization in the amortization table when no grid is "
        "available (default: the paper's best configuration)",
    )
    p.add_argument("--sizes", default="1000,2000,3000,4000,5000", help="amortization cloud sizes ('' skips)")
    p.add_argument("--vae", default=None, help="VAE checkpoint (default: the committed one)")
    p.add_argument("--surrogate", default=None, help="QED surrogate checkpoint (default: the committed one)")
    p.add_argument("--lambda-2", type=float, default=None, help="override the preset's lambda_2")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-speed", action="store_true", help="skip the divergence timing study")
    p.add_argument(
        "--paper-steps",
        type=int,
        default=0,
        help="also run the paper's settings (tau 1e-4, lambda_2 1e4, geomloss Sinkhorn, no warm start) "
        "for this many JKO steps on the same start cloud (0: skip)",
    )
    p.add_argument("--paper-inner", type=int, default=500, help="inner iterations of that paper-settings run")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    import jkoflow
    from jkoflow.report import step_record, write_metrics

    from .baselines import amortization, best_rows, run_grid
    from .surrogate import load_surrogate

    problem_table: dict[str, Any] = {"kind": "molecules", "preset": args.preset}
    if args.steps is not None:
        problem_table["steps"] = args.steps
    if args.inner_iters is not None:
        problem_table["inner_iters"] = args.inner_iters
    if args.lambda_2 is not None:
        problem_table["lambda_2"] = args.lambda_2
    if args.vae:
        problem_table["vae"] = args.vae
    if args.surrogate:
        problem_table["surrogate"] = args.surrogate
    run = jkoflow.build({"problem": problem_table, "seed": args.seed})
    problem = cast("Molecules", run.problem)  # the molecules problem, with its own attributes
    sampler = cast("MosesEmbeddings", run.sampler)
    steps = int(problem.settings["steps"])
    problem.metric_steps = sorted({0, steps // 4, steps // 2, (3 * steps) // 4, steps})
    records: list[dict[str, Any]] = []

    def on_step(flow: Any) -> None:
        records.append(step_record(flow, flow.steps, run.problem_metrics(flow)))
        write_metrics(records, out)

    t0 = time.perf_counter()
    flow = run.execute(progress=True, callback=on_step)
    flow_seconds = time.perf_counter() - t0
    flow.save(out / "maps.pt", potential_spec=run.spec["potential"])

    start: dict[str, Any] = dict(problem.results[0])
    start["final_sd"] = None
    final = problem.results[steps]
    flow_json = {
        "settings": problem.settings,
        "spec": jkoflow.spec.public(run.spec),
        "seconds": flow_seconds,
        "seconds_per_step": [r.seconds for r in flow.records],
        "metrics": records,
        "decoded": {str(k): v for k, v in problem.decoded.items()},
        "start_smiles": sampler.smiles,
    }
    (out / "flow.json").write_text(json.dumps(flow_json, indent=1, default=float))

    rows: list[dict[str, Any]] = []
    best: list[dict[str, Any]] = []
    amort: list[dict[str, Any]] = []
    if args.grid != "none" and not args.baselines_json:
        rows = run_grid(problem, flow.particles[0], problem.decoded[0], grid=args.grid, iters=args.iters)
    best = best_rows(rows) if rows else []
    sizes = [int(v) for v in args.sizes.split(",") if v]
    if sizes:
        if best:
            chosen = max(best, key=lambda r: r["qed_median"])
        else:
            o, lr, l2 = args.amortize_with.split(",")
            chosen = {"optimizer": o, "lr": float(lr), "lambda_2": float(l2)}
        amort = amortization(
            flow, problem, sampler, set(sampler.indices), chosen, sizes=sizes, iters=args.iters
        )
        for a in amort:
            a["direct_config"] = f"{chosen['optimizer']} lr {chosen['lr']:g} lambda_2 {chosen['lambda_2']:g}"
    speed = [] if args.no_speed else speed_study(flow.particles[0])
    paper: dict[str, Any] = {}
    if args.paper_steps:
        paper = paper_run(problem, args.paper_steps, args.paper_inner, args.seed)
        (out / "paper_settings.json").write_text(json.dumps(paper, indent=1, default=float))
    partial = False
    if args.baselines_json:  # produced by a parallel `jkoflow molecules baselines` run: wait for it
        path = Path(args.baselines_json)
        waited = 0.0
        while not path.exists() and waited < args.wait_baselines:
            time.sleep(10.0)
            waited += 10.0
        if not path.exists() and path.with_name("baselines.partial.json").exists():
            path, partial = path.with_name("baselines.partial.json"), True
        if path.exists():
            loaded = json.loads(path.read_text())
            rows = loaded["rows"]
            best = best_rows(rows)
            args.grid, args.iters = loaded.get("grid", "?"), int(loaded.get("iters", args.iters))

    (out / "baselines.json").write_text(
        json.dumps(
            {"grid": args.grid, "iters": args.iters, "rows": rows, "best": best, "amortization": amort},
            indent=1,
            default=float,
        )
    )

    # figures
    series = [(f"step {s}" + (" (start)" if s == 0 else ""), problem.qed[s]) for s in problem.metric_steps]
    for r in best:
        series.append(
            (f"{r['optimizer']} lr {r['lr']:g} l2 {r['lambda_2']:g}", np.array(r["qed"], dtype=float))
        )
    _histograms(out / "qed_histograms.png", series)
    _pairs(out / "pairs.png", problem.decoded[0], problem.decoded[steps], problem.qed[0], problem.qed[steps])

    # report
    _, sinfo = load_surrogate(problem.surrogate_path)
    sm = sinfo.get("metrics", {})
    s = problem.settings
    lines = [
        f"# Molecules benchmark (preset `{args.preset}`)",
        "",
        (
            f"Command: `jkoflow bench molecules {' '.join(argv or [])}`; 1 thread, {platform.processor() or platform.machine()}; "
            f"flow wall time {flow_seconds:.0f} s ({steps} JKO steps x {s['inner_iters']} inner iterations, "
            f"N = {s['n']}, tau = {s['tau']:g}, lambda_1 = {s['lambda_1']:g}, lambda_2 = {s['lambda_2']:g}, "
            f"D = {s['divergence']} (blur {s['blur']:g}), warm start {s['warm_start']}, ICNN {s['widths']})."
        ),
        "",
        "## Start cloud, JKO flow and best direct-optimization baselines (paper Table 2 columns)",
        "",
        HEAD,
        "|" + "---|" * 9,
        _row("rho_0 (start)", start),
        _row(f"JKO-ICNN (step {steps})", final),
    ]
    for r in best:
        lines.append(_row(f"direct {r['optimizer']} lr {r['lr']:g}, lambda_2 {r['lambda_2']:g}", r))
    lines += [
        "",
        (
            "Final SD: debiased Sinkhorn divergence (geomloss, blur 0.05) between the final and start "
            "embeddings. Tanimoto: Morgan (r=2, 2048 bits) similarity of each decoded molecule to the decoding "
            "of its start embedding. Best baseline: highest QED median with validity >= 90%."
        ),
        "",
        "### Flow over time",
        "",
        "| step | " + " | ".join(COLUMNS) + " | mean V |",
        "|" + "---|" * (len(COLUMNS) + 2),
    ]
    for st in problem.metric_steps:
        m = problem.results[st]
        rec = next((r for r in records if r["step"] == st), {})
        lines.append(
            f"| {st} | " + " | ".join(_fmt(m.get(c)) for c in COLUMNS) + f" | {_fmt(rec.get('V_mean'))} |"
        )
    if paper:
        ps = paper["settings"]
        lines += [
            "",
            (
                f"### The paper's settings on a shorter run ({ps['steps']} JKO steps x {ps['inner_iters']} inner "
                f"iterations, same start cloud)"
            ),
            "",
            (
                f"tau = {ps['tau']:g}, lambda_2 = {ps['lambda_2']:g}, D = {ps['divergence']} (blur {ps['blur']:g}), "
                f"warm start {ps['warm_start']}, lr {ps['lr']:g}, ICNN {ps['widths']}: {paper['seconds_per_step']:.1f} s "
                f"per JKO step here, so the paper's 100 steps would take {paper['seconds_per_step'] * 100 / 3600:.1f} h "
                f"(at {ps['inner_iters']} inner iterations per step)."
            ),
            "",
            HEAD,
            "|" + "---|" * 9,
            _row("rho_0 (start)", start),
            _row(f"paper settings, step {ps['steps']}", paper["final"]),
            _row(f"cpu preset, step {ps['steps']}", problem.results.get(ps["steps"], {}))
            if ps["steps"] in problem.results
            else "",
        ]
    if rows:
        lines += [
            "",
            f"## Direct optimization grid ({args.grid} grid, {args.iters} iterations; paper Tables 6/7)"
            + (" -- PARTIAL (the grid run had not finished)" if partial else ""),
            "",
            "| optimizer | lambda_2 | lr | validity % | uniqueness % | QED median | Final SD | seconds |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            lines.append(
                f"| {r['optimizer']} | {r['lambda_2']:g} | {r['lr']:g} | {_fmt(r['validity'], 1)} | "
                f"{_fmt(r['uniqueness'], 1)} | {_fmt(r['qed_median'])} | {_fmt(r['final_sd'])} | "
                f"{r['seconds']:.1f}{' (diverged)' if r['diverged'] else ''} |"
            )
    if amort:
        lines += [
            "",
            "## Amortization (paper Table 8): flow maps vs re-running direct optimization on new clouds",
            "",
            (
                f"New clouds of test molecules with QED < 0.7 not in the start cloud. Direct optimization: "
                f"{amort[0]['direct_config']}, {args.iters} iterations; above 1,000 embeddings its time is "
                "extrapolated from 5 timed iterations."
            ),
            "",
            "| size | start QED median | maps QED median | maps Final SD | maps s | direct QED median | direct Final SD | direct s | speedup |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for a in amort:
            ds = f"{a['direct_seconds']:.1f}" + (" (extrapolated)" if a["direct_extrapolated"] else "")
            lines.append(
                f"| {a['size']} | {_fmt(a['start_qed_median'])} | {_fmt(a['maps_qed_median'])} | {_fmt(a['maps_final_sd'])} | "
                f"{a['maps_seconds']:.3f} | {_fmt(a.get('direct_qed_median'))} | {_fmt(a.get('direct_final_sd'))} | "
                f"{ds} | {a['speedup']:.0f}x |"
            )
    if speed:
        lines += [
            "",
            f"## Cost of one divergence + gradient at N = {s['n']}, d = 128 (1 thread, median)",
            "",
            "| option | seconds | paper run (100 x 500 iterations) at this cost |",
            "|---|---|---|",
        ]
        for r in speed:
            lines.append(f"| {r['option']} | {r['seconds']:.3f} | {r['seconds'] * 50000 / 3600:.1f} h |")
    if sm:
        t = sm.get("test", {})
        lines += [
            "",
            "## Convex QED surrogate",
            "",
            (
                f"Residual ICNN 4 x 128 on VAE means; test n = {t.get('n')}: accuracy {_fmt(t.get('accuracy'))}, "
                f"balanced accuracy {_fmt(t.get('balanced_accuracy'))}, AUC {_fmt(t.get('auc'))}, "
                f"confusion [[TN, FP], [FN, TP]] = {t.get('confusion')} (label: QED > 0.85)."
            ),
        ]
    lines += [
        "",
        (
            "Figures: `qed_histograms.png` (QED over flow time, and the best baselines), `pairs.png` "
            "(start -> end molecules with the largest QED gains)."
        ),
        "",
    ]
    (out / "report.md").write_text("\n".join(lines))
    print("\n".join(lines))
    print(f"wrote {out}/report.md")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
