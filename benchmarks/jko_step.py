"""Seconds per JKO step on the paper code's own settings, and how they scale (issue 11).

For each setting this prints one row: seconds per JKO step (median over the steps after the
first, whose time includes one-off work), milliseconds per inner iteration, inner iterations
used per step (median; the solver may stop before ``inner_iters`` when converged), the ratio of
one inner iteration to one plain forward + backward + optimizer step of the same net on the same
batch, and the problem's accuracy metric at the last step.

Settings (the paper code's notebooks, see ``../shared/reference-code/README.md``):

* ``pme``: porous medium d = 1, m = 2, N = 200, tau = 1e-2, 400 iterations, FICNN (100, 20),
  10 steps (to t0 + 0.1); metric W1 and map error to the Barenblatt solution;
* ``fp``: nonlinear Fokker-Planck, N = 100, tau = 1e-2, 1000 iterations, (200, 50, 20), 4 steps;
  metric W1 to the steady state;
* ``agg``: aggregation, N = 1000, tau = 1, 400 iterations, (50, 50, 50), 4 steps; W1 to the
  steady state;
* ``gauss20``: Gaussian Fokker-Planck d = 20, N = 500, tau = 0.05, 3 steps, the problem's own
  50 cosine iterations per step (the paper's code runs 200) and its FICNN (4, 4) (the paper's:
  (100, 100); ``--potential '{"widths": [100, 100]}'`` runs that one);
  metric the noise-free covariance error ``map_cov_rel_error``;
* scaling rows ``pme1e3``, ``pme1e4``, ``pme1e5`` (N) and ``gauss64``, ``gauss128``,
  ``gauss256`` (d).

Usage::

    python benchmarks/jko_step.py                       # the four settings
    python benchmarks/jko_step.py --only pme agg --steps 3
    python benchmarks/jko_step.py --scaling             # the scaling rows
    python benchmarks/jko_step.py --quick               # smoke run: 2 steps, 20 iterations
    python benchmarks/jko_step.py --only pme --solver '{"optimizer": "lbfgs"}' --json out.jsonl
    python benchmarks/jko_step.py --only gauss20 --potential '{}' --potential '{"widths": [100, 100]}'

Run on 1 thread (the default ``--threads 1``); this VM's speed drifts by 2x within minutes, so
compare variants only within one run that alternates them (``--repeat``).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from typing import Any

import torch

SETTINGS: dict[str, dict[str, Any]] = {
    "pme": {
        "problem": {"kind": "porous-medium", "n": 200},
        "solver": {"tau": 1e-2, "steps": 10, "inner_iters": 400},
        "potential": {"kind": "ficnn", "widths": [100, 20]},
        "metrics": ["w1", "map_error"],
    },
    "fp": {
        "problem": {"kind": "fokker-planck-nonlinear", "n": 100},
        "solver": {"tau": 1e-2, "steps": 4, "inner_iters": 1000},
        "potential": {"kind": "ficnn", "widths": [200, 50, 20]},
        "metrics": ["w1_steady"],
    },
    "agg": {
        "problem": {"kind": "aggregation", "n": 1000},
        "solver": {"tau": 1.0, "steps": 4, "inner_iters": 400},
        "potential": {"kind": "ficnn", "widths": [50, 50, 50]},
        "metrics": ["w1_steady"],
    },
    "gauss20": {
        "problem": {"kind": "fokker-planck-gaussian", "dim": 20, "n": 500},
        "solver": {"tau": 0.05, "steps": 3},  # inner iterations: the problem's (50 at d = 20)
        "potential": {},
        "metrics": ["map_cov_rel_error", "cov_rel_error"],
    },
}
SCALING: dict[str, dict[str, Any]] = {
    **{
        f"pme1e{k}": {
            "problem": {"kind": "porous-medium", "n": 10**k},
            "solver": {"tau": 1e-2, "steps": 3, "inner_iters": 400},
            "potential": {"kind": "ficnn", "widths": [100, 20]},
            "metrics": ["w1", "map_error"],
        }
        for k in (3, 4, 5)
    },
    **{
        f"gauss{d}": {
            "problem": {"kind": "fokker-planck-gaussian", "dim": d, "n": 500},
            "solver": {"tau": 0.05, "steps": 3},  # the problem's inner iterations (150 to d = 128, then 200)
            "potential": {},
            "metrics": ["map_cov_rel_error", "cov_rel_error"],
        }
        for d in (64, 128, 256)
    },
}
ALL = {**SETTINGS, **SCALING}


def spec_of(
    name: str,
    solver: dict[str, Any],
    steps: int | None,
    iters: int | None,
    potential: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The run spec of setting ``name`` with solver (and potential) overrides."""
    s = ALL[name]
    settings = {**s["solver"], **solver}
    if steps is not None:
        settings["steps"] = steps
    if iters is not None:
        settings["inner_iters"] = iters
    spec: dict[str, Any] = {"problem": dict(s["problem"]), "solver": settings}
    net = {**s["potential"], **(potential or {})}
    if net:
        spec["potential"] = net
    return spec


def plain_step_ms(run: Any, repeats: int = 30) -> float:
    """Median ms of one forward + backward + optimizer step of the run's net on its particles
    (the unit the inner iteration is compared with)."""
    net = run.make_potential()
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    x = run.x0
    times = []
    for _ in range(repeats + 3):
        t0 = time.process_time()
        opt.zero_grad(set_to_none=True)
        net(x).sum().backward()
        opt.step()
        times.append(time.process_time() - t0)
    return 1e3 * statistics.median(times[3:])


def measure(
    name: str,
    solver: dict[str, Any],
    steps: int | None,
    iters: int | None,
    particles: str | None = None,
    potential: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run setting ``name`` once and return its row; with ``particles`` (a directory) also write
    the last step's particles to ``particles/NAME.npy`` (to score them with other code)."""
    import warnings

    import jkoflow

    spec = spec_of(name, solver, steps, iters, potential)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run = jkoflow.build(spec)
        begin = time.perf_counter()
        cpu0 = time.process_time()
        flow = run.execute()
        wall = time.perf_counter() - begin
        cpu = time.process_time() - cpu0
    records = flow.records
    if particles is not None:
        import pathlib

        import numpy as np

        pathlib.Path(particles).mkdir(parents=True, exist_ok=True)
        np.save(pathlib.Path(particles) / f"{name}.npy", flow.particles[-1].detach().cpu().double().numpy())
    later = records[1:] or records
    sec = statistics.median(r.seconds for r in later)
    cpu_sec = statistics.median(getattr(r, "cpu_seconds", math.nan) for r in later)
    its = statistics.median(max(r.iterations, 1) for r in later)
    if math.isnan(cpu_sec):  # records of a version without per-step CPU time
        cpu_sec = cpu / max(len(records), 1)
    metrics = run.problem_metrics(flow)
    plain = plain_step_ms(run)
    row = {
        "setting": name,
        "solver": solver,
        "potential": potential or {},
        "n": int(run.x0.shape[0]),
        "d": int(run.x0.shape[1]),
        "dtype": str(run.x0.dtype).replace("torch.", ""),
        "steps": len(records),
        "s_per_step": sec,
        "cpu_s_per_step": cpu_sec,
        "ms_per_iter": 1e3 * cpu_sec / its,
        "iters_used": its,
        "iters_per_step": [r.iterations for r in records],
        "converged": [r.converged for r in records],
        "plain_step_ms": plain,
        "iter_over_plain": 1e3 * cpu_sec / its / plain,
        "wall_s": wall,
        "cpu_s": cpu,
        "compile_s": sum(getattr(r, "compile_seconds", 0.0) for r in records),
    }
    for key in ALL[name]["metrics"]:
        value = metrics.get(key)
        row[key] = None if value is None else float(value)
    return row


def _format(row: dict[str, Any]) -> str:
    extra = " ".join(f"{k}={row[k]:.4g}" for k in ALL[row["setting"]]["metrics"] if row.get(k) is not None)
    label = row["setting"] + (f" {json.dumps(row['solver'])}" if row["solver"] else "")
    label += f" {json.dumps(row['potential'])}" if row.get("potential") else ""
    return (
        f"{label:<40} N={row['n']:<6} d={row['d']:<4} {row['s_per_step']:8.3f} s/step "
        f"(CPU {row['cpu_s_per_step']:.3f}, all steps {row['cpu_s'] / max(row['steps'], 1):.3f}) "
        f"{row['ms_per_iter']:7.2f} ms/it  its {row['iters_used']:6.0f}  it/plain {row['iter_over_plain']:5.1f}  "
        f"{extra}" + (f"  compile {row['compile_s']:.1f} s (wall, apart)" if row.get("compile_s") else "")
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="+", choices=sorted(ALL), help="settings to run (default: the four)")
    ap.add_argument("--scaling", action="store_true", help="the scaling rows (N and d)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 steps of 20 inner iterations")
    ap.add_argument("--steps", type=int, default=None, help="JKO steps (default: the setting's)")
    ap.add_argument("--iters", type=int, default=None, help="inner iterations cap (default: the setting's)")
    ap.add_argument(
        "--solver",
        action="append",
        default=None,
        help="JSON object of solver settings (repeat to alternate variants A B A B within one run)",
    )
    ap.add_argument(
        "--potential",
        action="append",
        default=None,
        help="JSON object overriding the setting's potential, e.g. the paper's net '{\"widths\": [100, 100]}' "
        "(repeat to alternate, like --solver; every solver variant runs with every potential variant)",
    )
    ap.add_argument("--repeat", type=int, default=1, help="rounds over the variants (alternated)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None, help="append one JSON line per row to this file")
    ap.add_argument("--particles", default=None, help="write each run's last particles to DIR/SETTING.npy")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    names = args.only or (sorted(SCALING) if args.scaling else list(SETTINGS))
    variants = [json.loads(s) for s in args.solver] if args.solver else [{}]
    nets = [json.loads(s) for s in args.potential] if args.potential else [{}]
    steps, iters = args.steps, args.iters
    if args.quick:
        steps, iters = steps or 2, iters or 20
    for _ in range(args.repeat):
        for name in names:
            for variant, net in ((v, p) for v in variants for p in nets):
                row = measure(name, variant, steps, iters, args.particles, net)
                print(_format(row), flush=True)
                if args.json:
                    with open(args.json, "a", encoding="utf-8") as fh:
                        fh.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
