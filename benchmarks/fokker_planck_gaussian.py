"""Linear Fokker-Planck in high dimension: JKO-ICNN vs ULA vs the exact and ideal-JKO solutions.

Protocol (issue 3): N = 500, tau = 0.05, 10 steps (t = 0.5), mu = 0.5, A = Q diag(linspace(0.5, 2, d)) Q^T,
S_0 = I; ULA with h = 1e-3 from the same initial particles. Prints, per dimension and step, the
noise-free relative covariance error against the exact Lagrangian map (``map_cov_rel_error``),
the deviation from the ideal JKO of the population (``jko_cov_rel_error``) and of the empirical
measure (``emp_jko_cov_rel_error``), the nearest-neighbour-distance ratio and seconds per step,
and writes everything to a JSON file.

    python benchmarks/fokker_planck_gaussian.py --dims 20 64 128 --out /tmp/fp_gaussian.json
"""

from __future__ import annotations

import argparse
import json
import time

import jkoflow
import torch
from jkoflow.plugins.problems_gaussian import ula

KEYS = (
    "map_cov_rel_error",
    "cov_rel_error",
    "mean_error",
    "bures_wasserstein",
    "jko_cov_rel_error",
    "emp_jko_cov_rel_error",
    "emp_jko_vs_exact_cov_rel_error",
    "ideal_jko_cov_rel_error",
    "nn_ratio",
)


def run_dim(
    dim: int,
    logdet: str | dict,
    steps: int,
    inner_iters: int,
    n: int,
    lr: float,
    h: float,
    seed: int,
    widths: list[int] | None = None,
    solver_extra: dict | None = None,
) -> dict:
    spec = {
        "problem": {"kind": "fokker-planck-gaussian", "dim": dim, "n": n, "steps": steps},
        "seed": seed,
        "solver": {
            "logdet": logdet,
            "inner_iters": inner_iters,
            "steps": steps,
            "lr": lr,
            **(solver_extra or {}),
        },
    }
    if widths:
        spec["potential"] = {"widths": widths}
    run = jkoflow.build(spec)
    problem = run.problem
    rows: list[dict] = []
    clock = [time.process_time()]

    def callback(flow: jkoflow.Flow) -> None:  # type: ignore[name-defined]
        cpu = time.process_time() - clock[0]  # CPU seconds of the step (1 thread: robust to load)
        if not flow.steps:
            clock[0] = time.process_time()
            return
        m = run.problem_metrics(flow)
        rec = flow.records[-1]
        row = {
            "step": flow.steps,
            "t": rec.t,
            "seconds": rec.seconds,
            "cpu_seconds": cpu,
            **{k: m[k] for k in KEYS if k in m},
        }
        rows.append(row)
        print(
            f"d={dim} step {flow.steps:2d} {rec.seconds:6.1f}s wall {cpu:6.1f}s cpu "
            + " ".join(f"{k}={row[k]:.4f}" for k in KEYS if k in row),
            flush=True,
        )
        clock[0] = time.process_time()

    start = time.perf_counter()
    run.execute(callback=callback)
    total = time.perf_counter() - start
    times = [run.solver.tau * (k + 1) for k in range(steps)]
    ula_start = time.perf_counter()
    ula_x = ula(run.x0, problem.A, problem.mu, h, times, torch.Generator().manual_seed(seed + 1))
    ula_seconds = time.perf_counter() - ula_start
    ula_rows = []
    for t, x in zip(times, ula_x):
        m = problem.metrics(t, run.x0, x, None)
        ula_rows.append({"t": t, **{k: m[k] for k in KEYS if k in m}})
    print(
        f"d={dim} ULA(h={h}) t={times[-1]}: "
        + " ".join(f"{k}={ula_rows[-1][k]:.4f}" for k in KEYS if k in ula_rows[-1]),
        flush=True,
    )
    return {
        "dim": dim,
        "logdet": run.spec["solver"]["logdet"],
        "solver": {k: v for k, v in run.spec["solver"].items() if k != "logdet"},
        "potential": run.spec["potential"],
        "n": n,
        "jko": rows,
        "jko_total_seconds": total,
        "ula": ula_rows,
        "ula_h": h,
        "ula_seconds": ula_seconds,
    }


def markdown(result: dict) -> str:
    """Per-step table of one dimension's run: JKO-ICNN vs ULA vs the exact and ideal-JKO references."""
    head = (
        f"d = {result['dim']}, logdet = {result['logdet']}, N = {result['n']}, "
        f"{result['solver'].get('inner_iters')} inner iterations, lr {result['solver'].get('lr')}, "
        f"ICNN widths {result['potential'].get('widths')}, "
        + "".join(
            f"{k} {result['solver'][k]}, "
            for k in ("fresh_samples", "lr_schedule", "batch_size")
            if result["solver"].get(k) not in (None, "constant")
        )
        + f"ULA h = {result['ula_h']}\n\n"
        "| step | t | JKO noise-free cov err | ULA noise-free cov err | JKO cov err (vs S_t) | ULA cov err (vs S_t) "
        "| JKO mean err | JKO BW | ULA BW | ideal JKO vs exact | empirical ideal JKO vs exact (floor) "
        "| JKO vs empirical ideal | JKO vs ideal JKO | JKO NN ratio | wall s | CPU s |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for j, u in zip(result["jko"], result["ula"]):
        cpu = j.get("cpu_seconds")
        lines.append(
            f"| {j['step']} | {j['t']:.2f} | {j['map_cov_rel_error']:.4f} | {u['map_cov_rel_error']:.4f} | {j['cov_rel_error']:.4f} | "
            f"{u['cov_rel_error']:.4f} | {j['mean_error']:.4f} | {j['bures_wasserstein']:.4f} | {u['bures_wasserstein']:.4f} | "
            f"{j['ideal_jko_cov_rel_error']:.4f} | {j['emp_jko_vs_exact_cov_rel_error']:.4f} | {j['emp_jko_cov_rel_error']:.4f} | "
            f"{j['jko_cov_rel_error']:.4f} | "
            f"{j['nn_ratio']:.3f} | {j['seconds']:.1f} | {'-' if cpu is None else f'{cpu:.1f}'} |"
        )
    return head + "\n".join(lines) + "\n"


def plot(results: list[dict], path: str) -> None:
    """Noise-free covariance error per step, one panel per dimension: JKO-ICNN, ULA, the ideal
    JKO (time discretization alone) and the empirical ideal JKO (the floor of fitting the
    carried particles)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 3.6), squeeze=False)
    for ax, r in zip(axes[0], results):
        t = [row["t"] for row in r["jko"]]
        fresh = r["solver"].get("fresh_samples")
        ax.plot(
            t,
            [row["map_cov_rel_error"] for row in r["jko"]],
            "o-",
            label=f"JKO-ICNN ({'fresh samples' if fresh else 'carried particles'})",
        )
        ax.plot(t, [row["map_cov_rel_error"] for row in r["ula"]], "s--", label=f"ULA (h = {r['ula_h']})")
        ax.plot(t, [row["ideal_jko_cov_rel_error"] for row in r["jko"]], "k:", label="ideal JKO (same tau)")
        ax.plot(
            t,
            [row["emp_jko_vs_exact_cov_rel_error"] for row in r["jko"]],
            "-.",
            color="gray",
            label="ideal JKO of the carried cloud",
        )
        ax.axhline(0.05, color="red", lw=0.8, alpha=0.6)
        ax.set_yscale("log")
        ax.set_title(f"d = {r['dim']}, N = {r['n']}")
        ax.set_xlabel("t")
    axes[0][0].set_ylabel("noise-free relative covariance error")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dims", type=int, nargs="+", default=[20, 64, 128])
    parser.add_argument(
        "--logdet", nargs="+", default=["auto"], help="one estimator name per dim (or one for all)"
    )
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--inner-iters", type=int, default=200)
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--ula-h", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--widths", type=int, nargs="+", help="ICNN hidden widths (default: the problem's, [4, 4])"
    )
    parser.add_argument(
        "--solver",
        default="{}",
        help='extra solver settings as JSON, e.g. \'{"fresh_samples": 500, "lr_schedule": "cosine"}\'',
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="/tmp/fp_gaussian.json")
    parser.add_argument("--render", nargs="+", help="print markdown tables from result JSON files and exit")
    parser.add_argument("--plot", help="with --render: also draw the error curves into this PNG")
    args = parser.parse_args()
    if args.render:
        loaded = []
        for path in args.render:
            with open(path) as fh:
                loaded.extend(json.load(fh))
        for result in loaded:
            print(markdown(result))
        if args.plot:
            plot(loaded, args.plot)
            print(f"wrote {args.plot}")
        return
    torch.set_num_threads(args.threads)
    names = args.logdet if len(args.logdet) == len(args.dims) else args.logdet[:1] * len(args.dims)
    results = []
    for dim, name in zip(args.dims, names):
        logdet = json.loads(name) if name.startswith("{") else name
        results.append(
            run_dim(
                dim,
                logdet,
                args.steps,
                args.inner_iters,
                args.n,
                args.lr,
                args.ula_h,
                args.seed,
                args.widths,
                json.loads(args.solver),
            )
        )
        with open(args.out, "w") as fh:
            json.dump(results, fh, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
