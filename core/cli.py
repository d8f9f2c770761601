"""The ``jkoflow`` command line.

jkoflow [--threads N] [--debug] [--version]
jkoflow run [SPEC.toml | PROBLEM] [--steps N] [--out DIR] [--seed S] [--allow-import MODULE]
jkoflow plugins [--json]
jkoflow bench pde [...]           (validation suite; see ``jkoflow bench pde --help``)

Errors are one line on stderr and an exit code: 2 for bad input (a bad flag, spec or output
directory), 1 for a run that failed, 130 for an interrupted one; ``--debug`` re-raises instead,
to show the full traceback.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import attrs
import torch

from . import __version__
from .flow import Flow
from .registry import RegistryError, default_registry

DEFAULT_PROBLEM = "heat"


@attrs.define
class _State:
    """What :func:`main` needs to report an exception that :func:`_main` let through."""

    command: str | None = None
    debug: bool = False
    #: "start" (parsing, plugin loading), "load" (reading the spec file), "build" (resolving and
    #: building the spec), "run" (the run and writing its outputs)
    phase: str = "start"


def _run(args: argparse.Namespace, state: _State | None = None) -> int:
    from . import spec as specmod
    from .report import plot_summary, step_record, write_metrics, write_particles
    from .solver import FlowDivergedError

    state = state or _State(command="run")
    registry = default_registry()
    if args.target is not None and not args.target.strip():
        print(
            "jkoflow run: an empty target: expected a spec file (SPEC.toml) or a problem name",
            file=sys.stderr,
        )
        return 2
    if args.out is not None and not args.out.strip():
        print("jkoflow run: --out '': expected a directory path", file=sys.stderr)
        return 2
    target = args.target or DEFAULT_PROBLEM
    if target.endswith(".toml") or Path(target).is_file():
        state.phase = "load"
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
    state.phase = "build"
    if args.steps is not None:
        solver = raw.setdefault("solver", {})
        if not isinstance(solver, dict):
            raise specmod.SpecError("solver", f"expected a table, got {solver!r}")
        solver["steps"] = args.steps
    if args.seed is not None:
        raw["seed"] = args.seed
    out = Path(args.out or Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}")
    created = [d for d in (out, *out.parents) if not d.exists()]
    problem = _prepare_out(out)
    if problem:
        _remove_empty(created)
        print(f"jkoflow run: --out {str(out)!r} {problem}", file=sys.stderr)
        return 2
    kwargs: dict[str, tuple[str, ...]] = {}
    if "allow_imports" in inspect.signature(specmod.build).parameters:
        kwargs["allow_imports"] = tuple(args.allow_import)
    elif args.allow_import:
        print("jkoflow run: this jkoflow does not support --allow-import; ignoring it", file=sys.stderr)
    try:
        run = specmod.build(raw, registry, **kwargs)
    except BaseException:
        _remove_empty(created)  # a spec that does not build leaves no empty output directory
        raise
    state.phase = "run"
    for name_ in getattr(run, "imports", []):
        print(f"jkoflow run: imported {name_!r} (allowed by --allow-import)", file=sys.stderr)
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
        if state.debug:
            import traceback

            traceback.print_exc()
        print(f"jkoflow run: {exc}; writing the {exc.flow.steps} completed steps to {out}", file=sys.stderr)
        flow, status = exc.flow, 1
    except KeyboardInterrupt:
        if not latest:
            print(f"jkoflow run: interrupted before step 0; only spec.toml is in {out}", file=sys.stderr)
            return 130
        flow, status = _completed(latest[0], len(records) - 1), 130
        print(f"jkoflow run: interrupted; writing the {flow.steps} completed steps to {out}", file=sys.stderr)
    except Exception as exc:  # any other failure mid-run: keep every completed step, then exit 1
        if not latest:
            raise
        if state.debug:
            import traceback

            traceback.print_exc()
        flow, status = _completed(latest[0], len(records) - 1), 1
        message = " ".join(str(exc).split())
        print(
            f"jkoflow run: {type(exc).__name__}: {message}; writing the {flow.steps} completed steps to {out}"
            f"{'' if state.debug else ' (rerun with --debug for the traceback)'}",
            file=sys.stderr,
        )
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


def _prepare_out(out: Path) -> str | None:
    """Create the output directory ``out`` and probe that it is writable; why not, or None."""
    if out.exists() and not out.is_dir():
        return "is an existing file, not a directory"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"cannot be created: {_os_reason(exc)}"
    try:
        with tempfile.NamedTemporaryFile(dir=out, prefix=".jkoflow-probe-"):
            pass
    except OSError as exc:
        return f"is not writable: {_os_reason(exc)}"
    return None


def _remove_empty(directories: list[Path]) -> None:
    """Remove ``directories`` (deepest first) while they are empty."""
    for directory in directories:
        try:
            directory.rmdir()
        except OSError:
            return


def _os_reason(exc: OSError) -> str:
    reason = exc.strerror or str(exc)
    return f"{reason} ({exc.filename})" if exc.filename else reason


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
    if args.suite is None:
        print(f"jkoflow bench: no suite given; expected one of {sorted(modules)}", file=sys.stderr)
        return 2
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


def _positive_int(text: str) -> int:
    """An argparse ``type=``: a positive integer."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive integer")
    return value


DEBUG_HELP = "show the full traceback of an error instead of a one-line message"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jkoflow", description="JKO-ICNN Wasserstein gradient flows")
    parser.add_argument("--version", action="version", version=f"jkoflow {__version__}")
    parser.add_argument(
        "--threads",
        type=_positive_int,
        default=None,
        metavar="N",
        help="torch CPU threads (default: torch's choice)",
    )
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a spec file or a named problem")
    run.add_argument("target", nargs="?", help=f"SPEC.toml or a problem name (default: {DEFAULT_PROBLEM})")
    run.add_argument("--steps", type=_positive_int, metavar="N", help="override solver.steps")
    run.add_argument("--out", help="output directory (default: runs/NAME-TIMESTAMP)")
    run.add_argument("--seed", type=int, help="override the seed")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument(
        "--allow-import",
        action="append",
        default=[],
        metavar="MODULE",
        help="allow import strings 'MODULE.sub:attr' from MODULE (and its submodules) in this spec; "
        "without it a spec can only name registered plugins",
    )
    # SUPPRESS: without --debug here, the subparser must not reset a global --debug to False
    run.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
    plugins = sub.add_parser("plugins", help="list registered plugins by kind with their package")
    plugins.add_argument("--json", action="store_true", help="print {kind: {name: provider}} as JSON")
    bench = sub.add_parser("bench", help="benchmark suites (pde, molecules)", add_help=False)
    bench.add_argument("suite", nargs="?", help="pde or molecules")
    molecules = sub.add_parser(
        "molecules", help="molecular tools (needs the 'molecules' extra)", add_help=False
    )
    molecules.add_argument("rest", nargs=argparse.REMAINDER)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The ``jkoflow`` command: :func:`_main`, with its errors as one line and an exit code.

    2: bad input (a spec, registry or argument error, or a ValueError/TypeError/OSError while
    the spec is read, resolved and built); 1: any other error; 130: interrupted. ``--debug``
    re-raises instead.
    """
    state = _State()
    try:
        return _main(argv, state)
    except KeyboardInterrupt:
        if state.debug:
            raise
        print(f"{_prog(state)}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if state.debug:
            raise
        from .spec import SpecError

        message = _one_line(str(exc))
        bad_input = isinstance(exc, (SpecError, RegistryError)) or (
            state.phase in ("load", "build") and isinstance(exc, (ValueError, TypeError, OSError))
        )
        if bad_input:
            if state.phase in ("build", "run") and isinstance(exc, (SpecError, RegistryError)):
                message = f"invalid spec: {message}"
            print(f"{_prog(state)}: {message or type(exc).__name__}", file=sys.stderr)
            return 2
        what = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
        print(f"{_prog(state)}: {what} (rerun with --debug for the traceback)", file=sys.stderr)
        return 1


def _prog(state: _State) -> str:
    return f"jkoflow {state.command}" if state.command else "jkoflow"


def _one_line(text: str) -> str:
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def _main(argv: Sequence[str] | None = None, state: _State | None = None) -> int:
    """Parse ``argv`` and run the command; errors propagate (:func:`main` reports them)."""
    state = state if state is not None else _State()
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    state.command, state.debug = args.command, bool(args.debug)
    if args.threads:
        cores = os.cpu_count()
        if cores is not None and args.threads > cores:
            print(
                f"jkoflow: --threads {args.threads} is more than the {cores} CPU cores here (oversubscribed)",
                file=sys.stderr,
            )
        torch.set_num_threads(args.threads)
    if args.command == "run":
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        return _run(args, state)
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
