"""Seconds per JKO step of the built-in default problems (heat, porous-medium), 1 thread.

Prints wall and CPU (``time.process_time``) seconds per step, medians over the steps, and the
exact-solution metrics at the last step. CPU time is robust to other jobs on a shared machine.

    python benchmarks/default_problems.py [--steps 10]
"""

from __future__ import annotations

import argparse
import statistics
import time

import jkoflow
import torch


def measure(problem: str, steps: int) -> dict[str, float]:
    run = jkoflow.build({"problem": problem, "solver": {"steps": steps}})
    cpu: list[float] = []
    clock = [time.process_time()]

    def on_step(flow: jkoflow.Flow) -> None:
        now = time.process_time()
        if flow.steps:
            cpu.append(now - clock[0])
        clock[0] = now

    flow = run.execute(callback=on_step)
    wall = [r.seconds for r in flow.records]
    iters = run.spec["solver"]["inner_iters"]
    return {
        "wall_s_per_step": statistics.median(wall),
        "cpu_s_per_step": statistics.median(cpu),
        "cpu_ms_per_inner_iter": 1e3 * statistics.median(cpu) / iters,
        **run.problem_metrics(flow),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for problem in ("heat", "porous-medium"):
        row = measure(problem, args.steps)
        print(problem, " ".join(f"{k}={v:.4g}" for k, v in row.items()), flush=True)


if __name__ == "__main__":
    main()
