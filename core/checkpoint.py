"""Per-step checkpoints of a run directory: ``DIR/steps/NNNNNN.pt``, one file per flow entry.

Entry 0 is the start cloud; entry ``k`` is the ``k``-th (sub)step of the flow. Each file is
written atomically (:mod:`jkoflow.files`) right after its step and holds only plain data (no
pickled code; loaded with ``torch.load(..., weights_only=True)``):

==================  =======================================================================
key                 contents
==================  =======================================================================
``format``          1
``index``           the entry ``k``
``tau``             the flow's step size
``x``               the particles after the entry, ``(n, d)``
``log_density``     their log-densities ``(n,)``, or ``None``
``state_dict``      the trained potential of the entry (``None`` for entry 0)
``record``          the solver's :class:`~jkoflow.flow.StepRecord` as a dict (``None`` for 0)
``metrics``         the entry's ``metrics.json`` record
``rng_state``       torch's CPU generator state after the entry (``Flow.rng_state``), and
                    ``cuda_rng_state`` the CUDA generators' (``None`` on a CPU-only run)
``initial_F``       ``F`` of the start cloud (entry 0)
``spec``            the resolved spec as TOML text (entry 0): resume refuses a changed spec
==================  =======================================================================

The inner optimizer is created anew at every step (:meth:`jkoflow.solver.JKOSolver._fit`), so
no optimizer state crosses steps and none is stored; the warm start is the previous entry's
``state_dict``. Since every per-step generator is seeded by the seed and the entry index and
torch's global generator is restored from ``rng_state``, a flow resumed from entry ``k``
(:func:`restore_flow`, then ``JKOSolver.run(..., resume=flow)``) continues exactly as the
uninterrupted run would (bit for bit on one thread).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import torch

from .files import atomic_path
from .flow import Flow, StepRecord
from .potential import PotentialNet
from .rundir import STEPS_DIR

FORMAT = 1
_NAME = re.compile(r"^(\d{6})\.pt$")

__all__ = ["Checkpoint", "load", "remove_after", "restore_flow", "whole_steps", "write_entry"]


def _path(directory: Path, index: int) -> Path:
    return directory / STEPS_DIR / f"{index:06d}.pt"


def write_entry(
    directory: str | Path,
    flow: Flow,
    index: int,
    metrics: dict[str, Any],
    spec_toml: str | None = None,
    particles: tuple[torch.Tensor, torch.Tensor | None] | None = None,
) -> Path:
    """Write entry ``index`` of ``flow`` (its last one, normally) to ``directory/steps/``.
    ``particles`` replaces the flow's own ``(x, log_density)`` of the entry (a data-parallel
    run writes the gathered cloud)."""
    directory = Path(directory)
    (directory / STEPS_DIR).mkdir(exist_ok=True)
    x, ld = particles if particles is not None else (flow.particles[index], flow.log_densities[index])
    blob: dict[str, Any] = {
        "format": FORMAT,
        "index": index,
        "tau": float(flow.tau),
        "x": x.detach().cpu(),
        "log_density": None if ld is None else ld.detach().cpu(),
        "state_dict": None if index == 0 else flow.potentials[index - 1].state_dict(),
        "record": None if index == 0 else flow.records[index - 1].as_dict(),
        "metrics": metrics,
        "rng_state": flow.rng_state if flow.rng_state is not None else torch.get_rng_state(),
        "cuda_rng_state": flow.cuda_rng_state,
        "initial_F": flow.initial_F,
        "spec": spec_toml,
    }
    path = _path(directory, index)
    with atomic_path(path) as tmp:
        torch.save(blob, tmp)
    return path


@attrs.define
class Checkpoint:
    """The entries ``0..k`` found in a run directory, in order."""

    entries: list[dict[str, Any]]

    @property
    def last(self) -> int:
        return len(self.entries) - 1

    @property
    def tau(self) -> float:
        return float(self.entries[0]["tau"])

    @property
    def spec_toml(self) -> str | None:
        spec: str | None = self.entries[0].get("spec")
        return spec

    def metrics(self) -> list[dict[str, Any]]:
        return [dict(e["metrics"]) for e in self.entries]

    def truncated(self, last: int) -> Checkpoint:
        return Checkpoint(self.entries[: last + 1])

    def whole_step_entry(self) -> int:
        """The last entry that ends a whole JKO step (not inside a split step)."""
        records = [e["record"] for e in self.entries[1:]]
        for k in range(len(records), 0, -1):
            if whole_steps(records[k - 1]["t"], self.tau) is not None:
                return k
        return 0


def whole_steps(t: float, tau: float) -> int | None:
    """``t / tau`` when ``t`` is a whole number of steps (as :meth:`JKOSolver.run` checks), else None."""
    done = round(t / tau)
    return done if abs(t - done * tau) <= 1e-9 * max(1.0, t) else None


def load(directory: str | Path) -> Checkpoint:
    """The contiguous entries ``0, 1, ..., k`` of ``directory/steps`` (entries after a gap are
    ignored); ``ValueError`` when there is no entry 0 or one cannot be read."""
    directory = Path(directory)
    found = sorted(
        int(m.group(1)) for p in (directory / STEPS_DIR).glob("*.pt") if (m := _NAME.match(p.name))
    )
    if not found or found[0] != 0:
        raise ValueError(
            f"{directory} has no checkpoint {STEPS_DIR}/000000.pt (a run killed before its start was "
            "written, or written by a jkoflow without checkpoints): nothing to resume; start it again "
            "with `jkoflow run ... --overwrite`"
        )
    entries: list[dict[str, Any]] = []
    for k in found:
        if k != len(entries):
            break
        path = _path(directory, k)
        try:
            blob = torch.load(path, weights_only=True, map_location="cpu")
        except Exception as exc:  # noqa: BLE001 (any unreadable file: name it)
            raise ValueError(f"checkpoint {path} cannot be read: {type(exc).__name__}: {exc}") from None
        if not isinstance(blob, dict) or blob.get("format") != FORMAT or blob.get("index") != k:
            raise ValueError(f"checkpoint {path} is not a jkoflow step checkpoint of format {FORMAT}")
        entries.append(blob)
    return Checkpoint(entries)


def remove_after(directory: str | Path, last: int) -> None:
    """Delete the entries after ``last`` (a resume overwrites them)."""
    for p in (Path(directory) / STEPS_DIR).glob("*.pt"):
        m = _NAME.match(p.name)
        if m and int(m.group(1)) > last:
            p.unlink(missing_ok=True)


def restore_flow(
    checkpoint: Checkpoint,
    make_potential: Callable[[], PotentialNet],
    device: torch.device | str | None = None,
) -> Flow:
    """The :class:`Flow` of the checkpoint's entries (potentials rebuilt by ``make_potential``
    and loaded from their state dicts; particles moved to ``device``, default: where they were
    saved, the CPU), ready for ``JKOSolver.run(..., resume=flow)``."""
    entries = checkpoint.entries
    flow = Flow(tau=checkpoint.tau, initial_F=entries[0].get("initial_F"))
    for e in entries:
        ld = e["log_density"]
        flow.particles.append(e["x"] if device is None else e["x"].to(device))
        flow.log_densities.append(ld if device is None or ld is None else ld.to(device))
        if e["index"] == 0:
            continue
        u = make_potential()
        u.load_state_dict(e["state_dict"])
        flow.potentials.append(u)
        known = attrs.fields_dict(StepRecord)  # a field added or dropped since: defaults apply
        flow.records.append(StepRecord(**{k: v for k, v in e["record"].items() if k in known}))
    flow.rng_state = entries[-1]["rng_state"]
    flow.cuda_rng_state = entries[-1].get("cuda_rng_state")
    return flow
