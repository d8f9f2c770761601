"""The ``jkoflow`` command line.

jkoflow run [SPEC.toml | PROBLEM] [--steps N] [--out DIR] [--seed S]
jkoflow plugins [--json]
jkoflow bench pde [...]           (validation suite; see ``jkoflow bench pde --help``)
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import attrs
import torch

from .flow import Flow
from .registry import default_registry

DEFAULT_PROBLEM = "heat"


def _run(args: argparse.Namespace) -> int:
    from . import spec as specmod
    from .report import plot_summary, step_record, write_metrics, write_particles
    from .solver import FlowDivergedError

    registry = default_registry()
    target = args.target or DEFAULT_PROBLEM
    if target.endswith(".toml") or Path(target).is_file():
        raw = specmod.load(target)
        name = Path(target).stem
    elif target in registry.names("problem"):
        raw = {"problem": target}
        name = target
    else:
        close = registry.names("problem")
        print(
            f"jkoflow run: {target!r} is neither a spec file nor a problem (problems: {', '.join(close)})",
            file=sys.stderr,
        )
        return 2
    if args.steps is not None:
        raw.setdefault("solver", {})["steps"] = args.steps
    if args.seed is not None:
        raw["seed"] = args.seed
    try:
        run = specmod.build(raw, registry)
    except specmod.SpecError as exc:
        print(f"jkoflow run: invalid spec: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out or Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    specmod.dump(specmod.public(run.spec), out / "spec.toml")
    t0 = run.problem.t0 if run.problem is not None else 0.0
    records: list[dict[str, object]] = []

    latest: list[Flow] = []

    def on_step(flow: Flow) -> None:
        records.append(step_record(flow, flow.steps, run.problem_metrics(flow), t0))
        write_metrics(records, out)
        latest[:] = [flow]

    status = 0
    previous_term = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        flow = run.execute(progress=not args.no_progress, callback=on_step)
    except FlowDivergedError as exc:
        print(f"jkoflow run: {exc}; writing the {exc.flow.steps} completed steps to {out}", file=sys.stderr)
        flow, status = exc.flow, 1
    except KeyboardInterrupt:
        if not latest:
            print(f"jkoflow run: interrupted before step 0; only spec.toml is in {out}", file=sys.stderr)
            return 130
        flow, status = _completed(latest[0], len(records) - 1), 130
        print(f"jkoflow run: interrupted; writing the {flow.steps} completed steps to {out}", file=sys.stderr)
    finally:
        signal.signal(signal.SIGTERM, previous_term)
    write_particles(flow, out)
    flow.save(out / "maps.pt", potential_spec=run.spec["potential"])
    plot_summary(flow, records, run.problem, out / "summary.png", title=name)
    last = records[-1]
    mean_seconds = sum(r.seconds for r in flow.records) / max(flow.steps, 1)
    extras = ", ".join(
        f"{k}={v:.4g}"
        for k, v in last.items()
        if k not in ("step", "t", "seconds", "t_physical", "lr_drops") and isinstance(v, float)
    )
    print(f"{flow.steps} steps, {mean_seconds:.3g} s/step; last step: {extras}")
    print(f"wrote {out}/ (spec.toml, metrics.json, particles.npz, maps.pt, summary.png)")
    return status


def _raise_interrupt(signum: int, frame: object) -> None:
    """SIGTERM ends a run as Ctrl-C does: the completed steps are written, then exit 130."""
    raise KeyboardInterrupt


def _completed(flow: Flow, steps: int) -> Flow:
    """The first ``steps`` JKO steps of ``flow`` (an interrupt may land while a step is appended)."""
    return attrs.evolve(
        flow,
        potentials=flow.potentials[:steps],
        particles=flow.particles[: steps + 1],
        log_densities=flow.log_densities[: steps + 1],
        records=flow.records[:steps],
    )


def _plugins(args: argparse.Namespace) -> int:
    registry = default_registry()
    listing = registry.listing()
    if args.json:
        print(json.dumps(listing, indent=1))
    else:
        for kind, entries in listing.items():
            print(f"{kind}:")
            for name, provider in entries.items():
                print(f"  {name:<28} ({provider})")
    for failure in registry.failures:
        print(failure.describe(), file=sys.stderr)
    return 0


def _bench(args: argparse.Namespace, rest: list[str]) -> int:
    import importlib

    modules = {"pde": "jkoflow.bench_pde", "molecules": "jkoflow.contrib.molecules.bench"}
    if args.suite not in modules:
        print(
            f"jkoflow bench: unknown suite {args.suite!r}; expected one of {sorted(modules)}", file=sys.stderr
        )
        return 2
    try:
        module = importlib.import_module(modules[args.suite])
    except ImportError as exc:
        print(f"jkoflow bench {args.suite}: not available ({exc})", file=sys.stderr)
        return 2
    return int(module.main(rest) or 0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jkoflow", description="JKO-ICNN Wasserstein gradient flows")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a spec file or a named problem")
    run.add_argument("target", nargs="?", help=f"SPEC.toml or a problem name (default: {DEFAULT_PROBLEM})")
    run.add_argument("--steps", type=int, help="override solver.steps")
    run.add_argument("--out", help="output directory (default: runs/NAME-TIMESTAMP)")
    run.add_argument("--seed", type=int, help="override the seed")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    plugins = sub.add_parser("plugins", help="list registered plugins by kind with their package")
    plugins.add_argument("--json", action="store_true", help="print {kind: {name: provider}} as JSON")
    bench = sub.add_parser("bench", help="benchmark suites (pde, molecules)", add_help=False)
    bench.add_argument("suite", help="pde or molecules")
    molecules = sub.add_parser(
        "molecules", help="molecular tools (needs the 'molecules' extra)", add_help=False
    )
    molecules.add_argument("rest", nargs=argparse.REMAINDER)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.command == "run":
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        return _run(args)
    if args.command == "plugins":
        return _plugins(args)
    if args.command == "bench":
        return _bench(args, rest)
    if args.command == "molecules":
        try:
            from jkoflow.contrib.molecules.cli import main as molecules_main
        except ImportError as exc:
            print(
                f"jkoflow molecules: not available ({exc}); install with pip install 'jkoflow[molecules]'",
                file=sys.stderr,
            )
            return 2
        return int(molecules_main(list(args.rest) + rest) or 0)
    return 2


if __name__ == "__main__":
    sys.exit(main())
