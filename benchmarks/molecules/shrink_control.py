"""Surrogate-free control for a QED rise: decode the start cloud scaled toward the prior mode.

Measures the decoded QED median / mean, uniqueness and Tanimoto to the start decodings of
``s z`` for the start cloud ``z`` (``--n`` MOSES test molecules with QED < 0.7,
``--start-seed``) and ``s`` in 1, 0.9, ..., 0.3. A gain seen here comes from decoding nearer the
prior mode, not from any surrogate. (Descent on V plus a Gaussian-prior pull ``c/2 |z|^2``:
``surrogate_descent.py --prior c``.)

Run (1 thread, 15 s)::

    python benchmarks/molecules/shrink_control.py
    python benchmarks/molecules/shrink_control.py --vae V.pt --start-seed 1
"""

from __future__ import annotations

import argparse
import time

import torch
from _common import add_common_args, start_cloud  # benchmarks/molecules/_common.py
from jkoflow.contrib.molecules.metrics import cloud_metrics
from jkoflow.contrib.molecules.plugin import get_vae


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(p, n=500)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    t0, c0 = time.perf_counter(), time.process_time()
    vae = get_vae(args.vae)
    _, x0 = start_cloud(args)
    start = vae.decode(x0)
    for s in [1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.3]:
        m = cloud_metrics(vae.decode(s * x0), start=start)
        print(
            f"scale {s:.1f} QEDmed {m['qed_median']:.3f} mean {m['qed_mean']:.3f} "
            f"uniq {m['uniqueness']:.1f} tanimoto {m['tanimoto_to_start']:.3f}",
            flush=True,
        )
    print(f"wall {time.perf_counter() - t0:.0f} s cpu {time.process_time() - c0:.0f} s")


if __name__ == "__main__":
    main()
