"""Command line for the molecular pipeline: ``jkoflow molecules ...``.

Sub-commands:

* ``train-vae``  train / resume the sequence VAE (see :func:`.train.train_vae`),
* ``qed``        compute (and cache) RDKit QED of a data split,
* ``write-sample`` regenerate ``data/moses_sample.csv.gz`` from the full MOSES data,
* ``run``        one flow of problem ``molecules`` with molecules.csv, report.md and figures
  (:mod:`.run_cli`).

``python -m jkoflow.contrib.molecules ...`` runs the same. :func:`main` takes ``argv`` and
``prog``: the molecules plugin mounts it as the command ``jkoflow molecules`` through the hook
``jkoflow_add_commands`` (see :mod:`.plugin`).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence


def build_parser(prog: str = "python -m jkoflow.contrib.molecules") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train-vae", help="train or resume the molecular sequence VAE")
    t.add_argument("--repr", choices=["selfies", "smiles"], default="selfies")
    t.add_argument("--data", choices=["sample", "moses"], default="sample")
    t.add_argument("--out", required=True, help="output directory (checkpoint, metrics)")
    t.add_argument("--minutes", type=float, default=10.0, help="wall-clock budget of this run")
    t.add_argument("--max-steps", type=int, default=None)
    t.add_argument("--kl-weight", type=float, default=1e-3)
    t.add_argument("--free-bits", type=float, default=0.0, help="per-dim KL floor (nats)")
    t.add_argument("--batch-size", type=int, default=128)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--clip", type=float, default=1.0)
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--eval-every", type=float, default=10.0, help="minutes between evals")
    t.add_argument("--ckpt-every", type=float, default=5.0, help="minutes between checkpoints")
    t.add_argument("--n-eval", type=int, default=500)
    t.add_argument("--n-prior", type=int, default=500)
    t.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    t.add_argument(
        "--prop-weight",
        type=float,
        default=0.0,
        help="weight of the joint QED regression head on z (standardized-QED MSE); 0 = no head",
    )
    t.add_argument("--prop-hidden", type=int, default=0, help="QED head width (0 = linear head)")
    t.add_argument(
        "--init", default=None, help="VAE file whose weights start a fresh run (fine-tune; fresh optimizer)"
    )
    t.add_argument("--no-progress", action="store_true")

    q = sub.add_parser("qed", help="compute and cache QED of a split")
    q.add_argument("--split", choices=["train", "test"], default="test")
    q.add_argument("--data", choices=["sample", "moses"], default="moses")

    sub.add_parser("write-sample", help="regenerate data/moses_sample.csv.gz")
    from .flow_cli import add_commands  # flow half: train-surrogate, baselines
    from .run_cli import add_command as add_run

    add_commands(sub)
    add_run(sub)
    return p


def main(argv: Sequence[str] | None = None, prog: str = "python -m jkoflow.contrib.molecules") -> int:
    """Run ``argv`` (default: ``sys.argv[1:]``); ``prog`` is the command shown in usage and errors."""
    args = build_parser(prog).parse_args(argv)
    from . import flow_cli

    if args.command in flow_cli.COMMANDS:
        return flow_cli.run(args, None if argv is None else list(argv))
    if args.command == "run":
        import sys

        from .run_cli import run_molecules

        return run_molecules(args, list(argv) if argv is not None else sys.argv[1:])
    if args.command == "train-vae":
        import torch

        torch.set_num_threads(args.threads)
        from .train import train_vae

        rec = train_vae(
            args.out,
            repr=args.repr,
            data=args.data,
            minutes=args.minutes,
            max_steps=args.max_steps,
            kl_weight=args.kl_weight,
            free_bits=args.free_bits,
            batch_size=args.batch_size,
            lr=args.lr,
            clip=args.clip,
            threads=args.threads,
            resume=args.resume,
            seed=args.seed,
            n_eval=args.n_eval,
            n_prior=args.n_prior,
            eval_every=args.eval_every,
            ckpt_every=args.ckpt_every,
            progress=not args.no_progress,
            prop_weight=args.prop_weight,
            prop_hidden=args.prop_hidden,
            init=args.init,
        )
        print(json.dumps(rec))
    elif args.command == "qed":
        import numpy as np
        import torch

        torch.set_num_threads(1)
        from .data import load_qed

        smiles, q = load_qed(args.split, args.data)
        print(
            f"{len(smiles)} molecules, QED median {np.nanmedian(q):.3f}, "
            f"QED < 0.7: {int((q < 0.7).sum())}, QED > 0.85: {int((q > 0.85).sum())}"
        )
    elif args.command == "write-sample":
        from .data import write_sample

        print(write_sample())
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
