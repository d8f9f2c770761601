"""One Adam step on the ICNN parameter shapes: torch's default loop, ``foreach`` and ``fused``.

The inner loop does one optimizer step per iteration; on the small nets of JKO-ICNN its cost is
per-parameter overhead. Prints the median microseconds of ``optimizer.step()`` for each variant,
alternated (A B C A B C ...) over 5 rounds on one thread. Run:
``python benchmarks/optimizer_step.py``.
"""

from __future__ import annotations

import statistics
import time

import torch
from jkoflow.plugins.potentials import ICNN

NETS = [
    (1, (100, 20), torch.float32),  # porous medium
    (1, (200, 50, 20), torch.float32),  # nonlinear Fokker-Planck
    (1, (50, 50, 50), torch.float64),  # aggregation
    (20, (64, 64), torch.float32),  # Gaussian d = 20
    (128, (8, 8), torch.float32),  # Gaussian d = 128
]
VARIANTS = {"default": {}, "foreach": {"foreach": True}, "fused": {"fused": True}}


def main() -> None:
    torch.set_num_threads(1)
    print("| d | widths | dtype | default us | foreach us | fused us | default / fused |")
    print("|---|---|---|---|---|---|---|")
    for dim, widths, dtype in NETS:
        net = ICNN(dim, widths).to(dtype)
        for p in net.parameters():
            p.grad = torch.randn_like(p)
        opts = {k: torch.optim.Adam(net.parameters(), lr=1e-4, **v) for k, v in VARIANTS.items()}
        times: dict[str, list[float]] = {k: [] for k in VARIANTS}
        for _ in range(5):
            for k, opt in opts.items():
                ts = []
                for _ in range(50):
                    t = time.process_time()
                    opt.step()
                    ts.append(time.process_time() - t)
                times[k].append(statistics.median(ts[5:]))
        med = {k: 1e6 * statistics.median(v) for k, v in times.items()}
        print(
            f"| {dim} | {widths} | {str(dtype).replace('torch.', '')} | {med['default']:.0f} | "
            f"{med['foreach']:.0f} | {med['fused']:.0f} | {med['default'] / med['fused']:.1f} |"
        )


if __name__ == "__main__":
    main()
