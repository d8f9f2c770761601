"""Built-in plugin: the commands ``jkoflow run`` and ``jkoflow plugins``.

They reach the command line as any plugin's commands do, through the hook
``jkoflow_add_commands`` (core's :mod:`jkoflow.cli` holds no command but ``bench``)::

jkoflow run [SPEC.toml | PROBLEM] [--steps N] [--out DIR] [--seed S] [--allow-import MODULE]
jkoflow plugins [--json]
"""

from __future__ import annotations

import argparse
import inspect
import json
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import attrs
from jkoflow.cli import DEBUG_HELP, CommandContext, positive_int
from jkoflow.flow import Flow
from jkoflow.registry import default_registry, hookimpl

DEFAULT_PROBLEM = "heat"


def run_command(args: argparse.Namespace, ctx: CommandContext | None = None) -> int:
    """``jkoflow run``: build the spec file or named problem ``args.target`` and run it, writing
    every completed step (also when the run fails or is interrupted)."""
    from jkoflow import spec as specmod
    from jkoflow.report import plot_summary, step_record, write_metrics, write_particles
    from jkoflow.solver import FlowDivergedError

    state = ctx if ctx is not None else CommandContext(command="run")
    registry = state.registry if state.registry is not None else default_registry()
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


def plugins_command(args: argparse.Namespace, ctx: CommandContext | None = None) -> int:
    """``jkoflow plugins``: every registered entry by kind with its package, then the failures."""
    registry = ctx.registry if ctx is not None and ctx.registry is not None else default_registry()
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


@hookimpl
def jkoflow_add_commands(subparsers: Any) -> None:
    run = subparsers.add_parser("run", help="run a spec file or a named problem")
    run.add_argument("target", nargs="?", help=f"SPEC.toml or a problem name (default: {DEFAULT_PROBLEM})")
    run.add_argument("--steps", type=positive_int, metavar="N", help="override solver.steps")
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
    run.set_defaults(handler=run_command)
    plugins = subparsers.add_parser("plugins", help="list registered plugins by kind with their package")
    plugins.add_argument("--json", action="store_true", help="print {kind: {name: provider}} as JSON")
    plugins.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
    plugins.set_defaults(handler=plugins_command)
