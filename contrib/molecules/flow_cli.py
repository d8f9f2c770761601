"""Sub-commands of the flow half, mounted in :mod:`.cli` (``jkoflow molecules ...``):

* ``train-surrogate``  fit the convex QED surrogate on VAE embeddings (:mod:`.surrogate`),
* ``baselines``        direct optimization grid and amortization table (:mod:`.baselines`).

The flow itself runs with ``jkoflow run molecules`` (problem ``molecules``) or
``jkoflow bench molecules`` (full report).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from typing import Any

COMMANDS = ("train-surrogate", "baselines")


def add_commands(sub: Any) -> None:
    """Add this module's sub-commands to the ``molecules`` sub-parser collection ``sub``."""
    from .pools import DEFAULT_VAE
    from .surrogate import DEFAULT_PATH

    s = sub.add_parser("train-surrogate", help="fit the convex QED surrogate V on VAE embeddings")
    s.add_argument("--vae", default=str(DEFAULT_VAE), help="VAE checkpoint")
    s.add_argument("--out", default=str(DEFAULT_PATH), help="surrogate checkpoint to write")
    s.add_argument("--n-train", type=int, default=40000, help="MOSES train molecules (seeded subset)")
    s.add_argument("--n-test", type=int, default=10000, help="MOSES test molecules for the test metrics")
    s.add_argument("--epochs", type=int, default=100, help="paper: 100")
    s.add_argument("--lr", type=float, default=1e-2)
    s.add_argument(
        "--weight-decay", type=float, default=0.0, help="Adam weight decay (L2 on the ICNN weights)"
    )
    s.add_argument(
        "--labels",
        choices=["original", "decoded"],
        default="original",
        help="label each training embedding by the QED of its molecule or of its greedy decoding",
    )
    s.add_argument(
        "--augment",
        type=int,
        default=0,
        help="off-manifold points z + r u (r ~ U[0, R], u uniform on the sphere) labelled by the QED of "
        "their decoding",
    )
    s.add_argument("--augment-radius", type=float, default=3.0, help="R of --augment")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--threads", type=int, default=1)
    s.add_argument(
        "--snapshot",
        action="store_true",
        help="first save a weights-only copy of --vae as vae.pt beside --out and train on that copy "
        "(the pair the flow then uses by default)",
    )
    s.add_argument("--no-progress", action="store_true")

    b = sub.add_parser(
        "baselines", help="direct optimization grid (paper Tables 6/7) and amortization (Table 8)"
    )
    b.add_argument("--out", required=True, help="output directory")
    b.add_argument("--maps", default=None, help="maps.pt of a trained flow (for the amortization table)")
    b.add_argument("--preset", default="cpu", help="problem preset giving n, lambdas, divergence")
    b.add_argument("--iters", type=int, default=50, help="optimizer iterations of direct optimization")
    b.add_argument("--vae", default=None, help="VAE checkpoint (default: the committed one)")
    b.add_argument("--surrogate", default=None, help="QED surrogate checkpoint (default: the committed one)")
    b.add_argument("--grid", choices=["cpu", "paper"], default="cpu", help="learning-rate x lambda_2 grid")
    b.add_argument(
        "--sizes", default="1000,2000,3000,4000,5000", help="cloud sizes of the amortization table"
    )
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--threads", type=int, default=1)


def run(args: argparse.Namespace, argv: list[str] | None = None) -> int:
    import torch

    torch.set_num_threads(args.threads)
    command = "jkoflow molecules " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    if args.command == "train-surrogate":
        from pathlib import Path

        from .surrogate import fit_from_pools, format_metrics

        if args.snapshot:
            from .vae import load_vae

            copy = Path(args.out).parent / "vae.pt"
            copy.parent.mkdir(parents=True, exist_ok=True)
            load_vae(args.vae).save(copy)
            print(f"saved a weights-only copy of {args.vae} to {copy}")
            args.vae = str(copy)
        metrics = fit_from_pools(
            args.vae,
            args.out,
            n_train=args.n_train,
            n_test=args.n_test,
            seed=args.seed,
            epochs=args.epochs,
            lr=args.lr,
            weight_decay=args.weight_decay,
            labels=args.labels,
            augment=args.augment,
            augment_radius=args.augment_radius,
            progress=not args.no_progress,
            command=command,
        )
        print(format_metrics(metrics))
        print(f"wrote {args.out}")
        return 0
    if args.command == "baselines":
        from .baselines import main_baselines

        result = main_baselines(
            args.out,
            maps=args.maps,
            preset=args.preset,
            iters=args.iters,
            grid=args.grid,
            sizes=[int(s) for s in args.sizes.split(",") if s],
            seed=args.seed,
            vae=args.vae,
            surrogate=args.surrogate,
        )
        print(json.dumps(result.get("summary", {}), indent=1))
        return 0
    raise ValueError(f"unknown command {args.command!r}")
