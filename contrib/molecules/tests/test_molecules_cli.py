"""Argument parsing of the molecules command line."""

from __future__ import annotations

import pytest

pytest.importorskip("rdkit")
from _shim import molecules_module

cli = molecules_module("cli")


def test_train_vae_arguments() -> None:
    args = cli.build_parser().parse_args(
        [
            "train-vae",
            "--repr",
            "smiles",
            "--out",
            "runs/x",
            "--minutes",
            "3",
            "--kl-weight",
            "0.002",
            "--resume",
            "--threads",
            "2",
            "--data",
            "moses",
        ]
    )
    assert (args.command, args.repr, args.out, args.minutes) == ("train-vae", "smiles", "runs/x", 3.0)
    assert args.kl_weight == 0.002 and args.resume and args.threads == 2 and args.data == "moses"
    defaults = cli.build_parser().parse_args(["train-vae", "--out", "o"])
    assert defaults.repr == "selfies" and defaults.kl_weight == 1e-3 and not defaults.resume
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["train-vae", "--repr", "inchi", "--out", "o"])


def test_train_surrogate_arguments() -> None:
    args = cli.build_parser().parse_args(
        [
            "train-surrogate",
            "--vae",
            "v.pt",
            "--out",
            "s.pt",
            "--weight-decay",
            "1e-4",
            "--labels",
            "decoded",
            "--augment",
            "500",
            "--augment-radius",
            "2.5",
            "--epochs",
            "7",
        ]
    )
    assert (args.command, args.vae, args.out, args.epochs) == ("train-surrogate", "v.pt", "s.pt", 7)
    assert (args.weight_decay, args.labels, args.augment, args.augment_radius) == (1e-4, "decoded", 500, 2.5)
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["train-surrogate", "--labels", "predicted"])
