"""Built-in plugin: the commands ``jkoflow run``, ``jkoflow resume`` and ``jkoflow plugins``.

They reach the command line as any plugin's commands do, through the hook
``jkoflow_add_commands`` (core's :mod:`jkoflow.cli` holds no command but ``bench``)::

jkoflow run [SPEC.toml | PROBLEM] [--steps N] [--out DIR] [--overwrite] [--seed S] [--device D] [--nproc N]
            [--allow-import MODULE]
jkoflow resume DIR [--steps N] [--nproc N]
jkoflow plugins [--json]
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import time
from pathlib import Path
from typing import Any

from jkoflow.cli import DEBUG_HELP, CommandContext, add_allow_import, positive_int
from jkoflow.registry import default_registry, hookimpl
from jkoflow.solver import FlowDivergedError

DEFAULT_PROBLEM = "heat"


def run_command(args: argparse.Namespace, ctx: CommandContext | None = None) -> int:
    """``jkoflow run``: build the spec file or named problem ``args.target`` and run it in a
    locked run directory, checkpointing every step (:mod:`jkoflow.runner`)."""
    from jkoflow import spec as specmod
    from jkoflow.rundir import RunDir, RunDirError, unique_dir

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
    if getattr(args, "device", None) is not None:
        raw["device"] = args.device
    nproc = getattr(args, "nproc", 1) or 1
    if _distributed_child():  # a rank that --nproc launched (torchrun sets WORLD_SIZE)
        import os

        nproc = int(os.environ.get("WORLD_SIZE", "1"))
    elif nproc > 1:
        return _launch(args, raw, registry, name, state)
    if args.out is not None:
        out = Path(args.out)
        created = [d for d in (out, *out.parents) if not d.exists()]
    else:
        base = Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
        created = [d for d in base.parents if not d.exists()]
        try:
            out = unique_dir(base)
        except OSError as exc:
            print(f"jkoflow run: cannot create {str(base)!r}: {_os_reason(exc)}", file=sys.stderr)
            return 2
        created.insert(0, out)
    parallel = _join_process_group() if nproc > 1 else None
    rd: Any = None
    problem = None
    if parallel is None or parallel.rank == 0:
        try:
            rd = RunDir.create(out, overwrite=args.overwrite, flag="--out")
        except RunDirError as exc:
            _remove_empty(created)
            problem = str(exc)
    if parallel is not None:  # every rank learns whether rank 0 got the directory
        import torch.distributed as dist

        box = [problem]
        dist.broadcast_object_list(box, src=0)
        problem = box[0]
    if problem is not None:
        if parallel is None or parallel.rank == 0:
            print(f"jkoflow run: {problem}", file=sys.stderr)
        if parallel is not None:
            parallel.close()
        return 2
    try:
        kwargs: dict[str, tuple[str, ...]] = {}
        if "allow_imports" in inspect.signature(specmod.build).parameters:
            kwargs["allow_imports"] = tuple(args.allow_import)
        elif args.allow_import:
            print("jkoflow run: this jkoflow does not support --allow-import; ignoring it", file=sys.stderr)
        try:
            run = specmod.build(raw, registry, **kwargs)
        except BaseException:
            if rd is not None:
                rd.release()
                rd = None
                _remove_lock(out, created)
            _remove_empty(created)  # a spec that does not build leaves no empty output directory
            raise
        state.phase = "run"
        for name_ in getattr(run, "imports", []):
            print(f"jkoflow run: imported {name_!r} (allowed by --allow-import)", file=sys.stderr)
        if parallel is not None:
            run = parallel.shard(run)
            if parallel.rank != 0:
                args.no_progress = True
        return _execute_and_report(run, rd, out, name, "run", None, args, state, parallel)
    finally:
        if rd is not None:
            rd.release()
        if parallel is not None:
            parallel.close()


def resume_command(args: argparse.Namespace, ctx: CommandContext | None = None) -> int:
    """``jkoflow resume DIR [--steps N] [--nproc N]``: continue a run directory from its last
    complete step (or extend a finished run to ``N`` steps), ending as the uninterrupted run
    would; with ``--nproc`` on that many processes (each takes its shard of the cloud)."""
    from jkoflow import spec as specmod
    from jkoflow.checkpoint import remove_after
    from jkoflow.records import read_run_json
    from jkoflow.rundir import RunDir, RunDirError, holds_run
    from jkoflow.runner import ResumeError, check_resumable, load_resumable, steps_done

    state = ctx if ctx is not None else CommandContext(command="resume")
    registry = state.registry if state.registry is not None else default_registry()
    out = Path(args.directory)
    nproc = getattr(args, "nproc", 1) or 1
    if _distributed_child():
        import os

        nproc = int(os.environ.get("WORLD_SIZE", "1"))
    elif nproc > 1:
        if not (out.is_dir() and holds_run(out)):
            print(f"jkoflow resume: {str(out)!r} holds no run", file=sys.stderr)
            return 2
        import torch
        from jkoflow.distributed import launch

        argv = ["--threads", str(torch.get_num_threads())] + (["--debug"] if state.debug else [])
        argv += ["resume", str(out)] + ([] if args.steps is None else ["--steps", str(args.steps)])
        for module in args.allow_import:
            argv += ["--allow-import", module]
        argv += ["--no-progress"] if args.no_progress else []
        return launch(argv, nproc, lambda: read_run_json(out))
    parallel = _join_process_group() if nproc > 1 else None
    lead = parallel is None or parallel.rank == 0

    def refuse(message: str) -> int:
        if lead:
            print(f"jkoflow resume: {message}", file=sys.stderr)
        return 2

    rd: Any = None
    problem = None
    if lead:
        try:
            rd = RunDir.open(out)
        except RunDirError as exc:
            problem = str(exc)
    if parallel is not None:  # every rank learns whether rank 0 got the directory
        import torch.distributed as dist

        box = [problem]
        dist.broadcast_object_list(box, src=0)
        problem = box[0]
    try:
        if problem is not None:
            return refuse(problem)
        state.phase = "load"
        raw = specmod.load(out / "spec.toml")
        ckpt = load_resumable(out)
        done = steps_done(ckpt)
        if args.steps is not None:
            if args.steps < done:
                return refuse(
                    f"--steps {args.steps}: {out} already has {done} complete steps; expected N >= {done}"
                )
            solver = raw.setdefault("solver", {})
            if isinstance(solver, dict):
                solver["steps"] = args.steps
        state.phase = "build"
        run = specmod.build(raw, registry, allow_imports=tuple(args.allow_import))
        try:
            check_resumable(run, ckpt, out)
        except ResumeError as exc:
            return refuse(str(exc))
        state.phase = "run"
        record = read_run_json(out) or {}
        name = str(record.get("name") or out.name)
        steps = run.solver.steps
        if (
            done == steps
            and record.get("status") == "complete"
            and all((out / f).exists() for f in ("particles.npz", "maps.pt", "summary.png"))
        ):
            if lead:
                print(f"{out} is complete ({done} steps); nothing to do (extend it with --steps N)")
            return 0
        if parallel is not None:
            import torch.distributed as dist

            dist.barrier()  # every rank has read the checkpoint before rank 0 trims it
            run = parallel.shard(run)
            if not lead:
                args.no_progress = True
        if lead:
            remove_after(out, ckpt.last)
            where = "" if parallel is None else f" on {parallel.world_size} processes"
            print(f"jkoflow resume: continuing {out} from step {done} of {steps}{where}", file=sys.stderr)
        return _execute_and_report(run, rd, out, name, "resume", ckpt, args, state, parallel)
    finally:
        if rd is not None:
            rd.release()
        if parallel is not None:
            parallel.close()


def _execute_and_report(
    run: Any,
    rd: Any,
    out: Path,
    name: str,
    command: str,
    ckpt: Any,
    args: argparse.Namespace,
    state: CommandContext,
    parallel: Any,
) -> int:
    """Run into ``out`` and say how it ended (one line on stderr unless it completed)."""
    from jkoflow.runner import execute

    prog = f"jkoflow {command}"
    outcome = execute(
        run,
        rd,
        name=name,
        command=command,
        resume=ckpt,
        progress=not args.no_progress,
        parallel=parallel,
    )
    if parallel is not None and parallel.rank != 0:
        return outcome.code
    flow = outcome.flow
    if flow is None:
        print(f"{prog}: interrupted before step 0; only spec.toml and run.json are in {out}", file=sys.stderr)
        return outcome.code
    if outcome.status == "failed":
        if state.debug and outcome.exception is not None:
            import traceback

            traceback.print_exception(outcome.exception)
        if outcome.exception is not None and not isinstance(outcome.exception, FlowDivergedError):
            hint = "" if state.debug else " (rerun with --debug for the traceback)"
            print(
                f"{prog}: {outcome.error}; the {flow.steps} completed steps are in {out}{hint}",
                file=sys.stderr,
            )
        else:
            print(f"{prog}: {outcome.error}; the {flow.steps} completed steps are in {out}", file=sys.stderr)
    elif outcome.status == "interrupted":
        print(
            f"{prog}: interrupted; the {flow.steps} completed steps are in {out} "
            f"(continue with `jkoflow resume {out}`)",
            file=sys.stderr,
        )
    last = outcome.records[-1]
    mean_seconds = sum(r.seconds for r in flow.records) / max(flow.steps, 1)
    extras = ", ".join(
        f"{k}={v:.4g}"
        for k, v in last.items()
        if k not in ("step", "t", "seconds", "t_physical", "lr_drops", "cpu_seconds", "checkpoint_seconds")
        and isinstance(v, float)
    )
    print(f"{flow.steps} steps, {mean_seconds:.3g} s/step; last step: {extras}")
    print(f"wrote {out}/ (spec.toml, metrics.json, particles.npz, maps.pt, summary.png, run.json, steps/)")
    return outcome.code


def _remove_lock(out: Path, created: list[Path]) -> None:
    """Remove the lock file of a directory this command created (so that it can be removed)."""
    from jkoflow.rundir import LOCK_NAME

    if out in created:
        (out / LOCK_NAME).unlink(missing_ok=True)


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


def _distributed_child() -> bool:
    """Whether this process is one of the ranks ``jkoflow run --nproc N`` launched."""
    import os

    return os.environ.get("JKOFLOW_DISTRIBUTED") == "1"


def _join_process_group() -> Any:
    from jkoflow.distributed import init_from_env

    return init_from_env()


def _launch(
    args: argparse.Namespace, raw: dict[str, Any], registry: Any, name: str, state: CommandContext
) -> int:
    """``jkoflow run --nproc N``: check the spec and the output directory here, then run the
    ranks through torchrun (:func:`jkoflow.distributed.launch`)."""
    import torch
    from jkoflow import spec as specmod
    from jkoflow.distributed import launch
    from jkoflow.records import read_run_json
    from jkoflow.rundir import holds_run, unique_dir

    run = specmod.build(raw, registry, allow_imports=tuple(args.allow_import))  # bad input: exit 2 here
    from jkoflow.distributed import DataParallel

    try:  # the settings a data-parallel run refuses, before any process starts
        DataParallel(0, args.nproc).check(run)
    except ValueError as exc:
        print(f"jkoflow run: --nproc {args.nproc}: {exc}", file=sys.stderr)
        return 2
    state.phase = "run"
    if args.out is not None:
        out = Path(args.out)
        if out.exists() and not out.is_dir():
            print(f"jkoflow run: --out {str(out)!r} is an existing file, not a directory", file=sys.stderr)
            return 2
        if holds_run(out) and not args.overwrite:
            print(
                f"jkoflow run: --out {str(out)!r} already holds a run; continue it with `jkoflow resume {out}`, "
                "replace it with --overwrite, or choose another directory",
                file=sys.stderr,
            )
            return 2
    else:
        out = unique_dir(Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}")
    argv = ["--threads", str(torch.get_num_threads())] + (["--debug"] if state.debug else [])
    argv += ["run", args.target or DEFAULT_PROBLEM, "--out", str(out)]  # the ranks read WORLD_SIZE
    if args.steps is not None:
        argv += ["--steps", str(args.steps)]
    if args.seed is not None:
        argv += ["--seed", str(args.seed)]
    if getattr(args, "device", None) is not None:
        argv += ["--device", args.device]
    for module in args.allow_import:
        argv += ["--allow-import", module]
    argv += (["--overwrite"] if args.overwrite else []) + (["--no-progress"] if args.no_progress else [])
    return launch(argv, args.nproc, lambda: read_run_json(out))


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
    run.add_argument(
        "--device",
        metavar="DEVICE",
        help="override the spec's device: cpu (default) or cuda[:index]; every tensor of the run is made on it",
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_allow_import(
        run,
        "allow import strings 'MODULE.sub:attr' from MODULE (and its submodules) in this spec; "
        "without it a spec can only name registered plugins",
    )
    run.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run that --out already holds (without it such a directory is refused)",
    )
    run.add_argument(
        "--nproc",
        type=positive_int,
        default=1,
        metavar="N",
        help="data-parallel run on N processes through torchrun (gloo on CPU); see docs/runs.md",
    )
    # SUPPRESS: without --debug here, the subparser must not reset a global --debug to False
    run.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
    run.set_defaults(handler=run_command)
    resume = subparsers.add_parser(
        "resume", help="continue a run directory from its last complete step (or extend it with --steps)"
    )
    resume.add_argument("directory", metavar="DIR", help="a run directory written by jkoflow run")
    resume.add_argument(
        "--steps", type=positive_int, metavar="N", help="run to N steps in all (extends a finished run)"
    )
    resume.add_argument("--no-progress", action="store_true", help="no progress bar")
    resume.add_argument(
        "--nproc",
        type=positive_int,
        default=1,
        metavar="N",
        help="continue on N processes (as jkoflow run --nproc)",
    )
    add_allow_import(resume, "allow import strings from MODULE in the run's spec (as for jkoflow run)")
    resume.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
    resume.set_defaults(handler=resume_command)
    from jkoflow.plugins import show, sweep

    show.add_parser(subparsers)
    sweep.add_parser(subparsers)
    plugins = subparsers.add_parser("plugins", help="list registered plugins by kind with their package")
    plugins.add_argument("--json", action="store_true", help="print {kind: {name: provider}} as JSON")
    plugins.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
    plugins.set_defaults(handler=plugins_command)
