"""Running a built :class:`~jkoflow.run.Run` into a locked run directory, checkpointing every step.

After step 0 and after every (sub)step the per-step callback writes the entry's checkpoint
(:mod:`jkoflow.checkpoint`) and ``metrics.json``, with SIGINT and SIGTERM deferred until both
are on disk. When the run ends, fails or is interrupted (Ctrl-C, SIGTERM), ``particles.npz``,
``maps.pt`` and ``summary.png`` are written from the checkpointed entries (again with the
signals deferred) and ``run.json`` records the outcome (:mod:`jkoflow.records`). After a
SIGKILL the checkpoints are still there: ``jkoflow resume DIR`` continues from the last
complete step and writes the rest.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import attrs
import torch

from . import checkpoint
from .files import atomic_write_text
from .flow import Flow
from .records import Session
from .report import plot_summary, step_record, write_metrics, write_particles
from .run import Run
from .rundir import RunDir
from .solver import FlowDivergedError

__all__ = [
    "Outcome",
    "Parallel",
    "ResumeError",
    "check_resumable",
    "deferred_signals",
    "execute",
    "flatten",
    "load_resumable",
    "spec_changes",
    "spec_text",
    "steps_done",
]


class Parallel(Protocol):
    """What a data-parallel run (:mod:`jkoflow.distributed`) gives the runner."""

    rank: int
    world_size: int

    def gather_cloud(
        self, x: torch.Tensor, log_density: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The whole cloud (on every rank) from each rank's shard."""
        ...

    def sync(self, flow: Flow) -> None:
        """Make the last potential identical on every rank."""
        ...

    def shard_flow(self, flow: Flow) -> Flow:
        """This rank's shard of a whole-cloud flow (sharing its potentials and records)."""
        ...


@attrs.define
class Outcome:
    """How :func:`execute` ended: ``status`` ``complete``, ``failed`` or ``interrupted``, the
    exit code (0, 1, 130), the flow of the checkpointed entries (the whole cloud), its
    ``metrics.json`` records and the error text."""

    status: str
    code: int
    flow: Flow | None
    records: list[dict[str, Any]]
    error: str | None = None
    exception: BaseException | None = None


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """Hold SIGINT and SIGTERM while the block runs, then raise ``KeyboardInterrupt`` if one
    came (in the main thread; elsewhere signals cannot arrive, and this does nothing)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []

    def hold(signum: int, frame: object) -> None:
        caught.append(signum)

    previous = {s: signal.signal(s, hold) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if caught:
        raise KeyboardInterrupt


def _raise_interrupt(signum: int, frame: object) -> None:
    """SIGTERM ends a run as Ctrl-C does."""
    raise KeyboardInterrupt


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def spec_text(spec: dict[str, Any]) -> str:
    """The resolved spec as the TOML text of ``spec.toml``."""
    import tomli_w

    from .spec import public
    from .spec_io import _toml_ready

    return str(tomli_w.dumps(_toml_ready(public(spec))))


def _truncated(flow: Flow, entries: int) -> Flow:
    """The first ``entries`` (sub)steps of ``flow``."""
    return attrs.evolve(
        flow,
        potentials=flow.potentials[:entries],
        particles=flow.particles[: entries + 1],
        log_densities=flow.log_densities[: entries + 1],
        records=flow.records[:entries],
    )


def _merged_metrics(directory: Path, ckpt: checkpoint.Checkpoint) -> list[dict[str, Any]]:
    """The records of the checkpoint's entries: from ``metrics.json`` where it has them (it also
    holds the checkpoint times), else from the checkpoints."""
    try:
        written = json.loads((directory / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        written = []
    out = []
    for k, entry in enumerate(ckpt.metrics()):
        if k < len(written) and isinstance(written[k], dict) and written[k].get("step") == entry.get("step"):
            out.append(written[k])
        else:
            out.append(entry)
    return out


def execute(
    run: Run,
    rd: RunDir | None,
    *,
    name: str,
    command: str = "run",
    resume: checkpoint.Checkpoint | None = None,
    progress: bool = False,
    parallel: Parallel | None = None,
    plot: bool = True,
) -> Outcome:
    """Run ``run`` in the locked directory ``rd`` (from the checkpoint ``resume``, if given):
    write ``spec.toml`` and ``run.json`` first, a checkpoint and ``metrics.json`` after every
    entry, and the final files at the end (see the module docstring; ``plot = False`` skips
    ``summary.png``, which ``jkoflow show DIR`` can draw later). Errors after the first
    checkpoint (a diverged flow, an interrupt, any exception) become the :class:`Outcome`;
    before it they propagate (``run.json`` records them)."""
    writer = rd is not None and (parallel is None or parallel.rank == 0)
    out = rd.path if rd is not None else Path(".")  # a rank other than 0 writes nothing
    text = spec_text(run.spec)
    t0 = run.problem.t0 if run.problem is not None else 0.0
    tau = run.solver.tau
    restored: Flow | None = None  # the whole cloud's flow
    solver_flow: Flow | None = None  # what the solver continues: this rank's shard of it
    records: list[dict[str, Any]] = []
    if resume is not None:
        restored = checkpoint.restore_flow(resume, run.make_potential, device=run.x0.device)
        solver_flow = restored if parallel is None else parallel.shard_flow(restored)
        records = _merged_metrics(out, resume) if writer else resume.metrics()
    saved = [resume.last if resume is not None else -1]  # the last checkpointed entry
    whole0 = 0
    if restored is not None and restored.records:
        whole0 = checkpoint.whole_steps(restored.records[-1].t, tau) or 0
    session = None
    if writer:
        atomic_write_text(out / "spec.toml", text)
        session = Session(
            out,
            name=name,
            command=command,
            spec=run.spec,
            steps_target=run.solver.steps,
            steps_done=whole0,
            device=str(run.x0.device),
            world_size=1 if parallel is None else parallel.world_size,
            new_run=resume is None,
        )
    whole = [whole0]
    view: list[Flow] = [] if restored is None else [restored]
    clock = [time.process_time()]

    def full(flow: Flow) -> Flow:
        """The flow with the whole cloud (gathered across ranks in a data-parallel run)."""
        if parallel is None:
            return flow
        shadow = view[0] if view else Flow(tau=flow.tau, initial_F=flow.initial_F)
        while len(shadow.particles) < len(flow.particles):
            k = len(shadow.particles)
            x, ld = parallel.gather_cloud(flow.particles[k], flow.log_densities[k])
            shadow.particles.append(x)
            shadow.log_densities.append(ld)
        shadow.potentials, shadow.records = flow.potentials, flow.records
        shadow.rng_state, shadow.initial_F = flow.rng_state, flow.initial_F
        return shadow

    def on_step(flow: Flow) -> None:
        cpu = time.process_time() - clock[0]
        if parallel is not None:
            parallel.sync(flow)
        whole_flow = full(flow)
        view[:] = [whole_flow]
        index = len(flow.records)
        with deferred_signals():
            rec = step_record(whole_flow, index, run.problem_metrics(whole_flow), t0)
            solver_cpu = getattr(flow.records[-1], "cpu_seconds", None) if index else None
            # the solver's own measure of the step where it gives one, else the time between callbacks
            rec["cpu_seconds"] = (
                solver_cpu if isinstance(solver_cpu, float) and math.isfinite(solver_cpu) else cpu
            )
            if writer:
                begin = time.perf_counter()
                checkpoint.write_entry(out, whole_flow, index, rec, spec_toml=text if index == 0 else None)
                rec["checkpoint_seconds"] = time.perf_counter() - begin
                records.append(rec)
                write_metrics(records, out)
            else:
                records.append(rec)
            saved[0] = index
            if index and (w := checkpoint.whole_steps(flow.records[-1].t, tau)) is not None:
                whole[0] = w
                if session is not None:
                    session.update(w)
        clock[0] = time.process_time()

    status, code, error = "complete", 0, None
    exception: BaseException | None = None
    kwargs: dict[str, Any] = {} if solver_flow is None else {"resume": solver_flow}
    try:
        with _sigterm_interrupts():
            run.execute(progress=progress, callback=on_step, **kwargs)
    except FlowDivergedError as exc:
        status, code, error, exception = "failed", 1, str(exc), exc
    except KeyboardInterrupt as exc:
        status, code, error, exception = "interrupted", 130, "interrupted", exc
    except Exception as exc:  # noqa: BLE001 (any failure mid-run keeps the completed steps)
        status, code, exception = "failed", 1, exc
        error = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    if saved[0] < 0 or not view:
        if session is not None:
            session.finish(status, 0, error)
        if exception is not None and not isinstance(exception, (KeyboardInterrupt, FlowDivergedError)):
            raise exception
        return Outcome(status, code, None, records, error, exception)
    flow = _truncated(view[0], saved[0])
    try:
        with deferred_signals():
            if writer:
                write_particles(flow, out)
                flow.save(out / "maps.pt", potential_spec=run.spec["potential"])
                if plot:
                    plot_summary(flow, records[: saved[0] + 1], run.problem, out / "summary.png", title=name)
                if status == "complete" and whole[0] < run.solver.steps:
                    status = "interrupted"  # cannot happen unless the solver stopped early
                if session is not None:
                    session.finish(status, whole[0], error)
    except KeyboardInterrupt:
        status, code = "interrupted", 130
        if session is not None:
            session.finish(status, whole[0], "interrupted while writing the final files")
    return Outcome(status, code, flow, records[: saved[0] + 1], error, exception)


def load_resumable(directory: Path) -> checkpoint.Checkpoint:
    """The checkpoint of ``directory`` cut to its last whole JKO step."""
    ckpt = checkpoint.load(directory)
    return ckpt.truncated(ckpt.whole_step_entry())


def steps_done(ckpt: checkpoint.Checkpoint) -> int:
    """Whole JKO steps in a checkpoint cut by :func:`load_resumable`."""
    if not ckpt.last:
        return 0
    done = checkpoint.whole_steps(ckpt.entries[-1]["record"]["t"], ckpt.tau)
    assert done is not None
    return done


class ResumeError(ValueError):
    """A run directory cannot be continued with this spec (bad input)."""


def check_resumable(run: Run, ckpt: checkpoint.Checkpoint, directory: Path) -> None:
    """Refuse (:class:`ResumeError`) to continue ``ckpt`` with ``run`` unless the spec is the one
    the run started with (``solver.steps`` may grow), the start particles are the same and the
    run has no more steps than ``run`` asks for."""
    from .spec_io import tomllib

    done = steps_done(ckpt)
    if done > run.solver.steps:
        raise ResumeError(
            f"{directory} already has {done} complete steps; expected solver.steps >= {done} "
            f"(got {run.solver.steps})"
        )
    if ckpt.spec_toml is not None:
        changed = spec_changes(tomllib.loads(ckpt.spec_toml), tomllib.loads(spec_text(run.spec)))
        if changed:
            raise ResumeError(
                f"{directory} holds a run of another spec: it differs at {', '.join(changed)} (a resumed "
                "run must keep its spec; only solver.steps may grow)"
            )
    x0 = ckpt.entries[0]["x"]
    if x0.shape != run.x0.shape or x0.dtype != run.x0.dtype or not bool((x0 == run.x0.cpu()).all()):
        raise ResumeError(
            f"the start particles in {directory}/steps/000000.pt differ from those the spec draws now "
            "(another jkoflow, torch or sampler version?); cannot continue exactly"
        )


def spec_changes(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Dotted keys whose values differ between two specs, ``solver.steps`` aside."""
    a, b = flatten(before), flatten(after)
    keys = sorted(set(a) | set(b))
    return [k for k in keys if k != "solver.steps" and a.get(k) != b.get(k)]


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """A nested spec as ``{"solver.lr": ..., "terms[0].kind": ...}``."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        out = {}
        for i, v in enumerate(value):
            out.update(flatten(v, f"{prefix}[{i}]"))
        return out
    return {prefix: value}
