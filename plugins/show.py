"""``jkoflow show DIR [DIR ...]``: a run directory's record and per-step table, its plots
re-rendered; several directories side by side.

One directory: the run record (status, steps, seed, versions, times; ``run.json``), a table of
every step (``metrics.json``, or the checkpoints of a killed run) and ``summary.png`` drawn
again from the particles (``particles.npz``, or the checkpoints). Several: one column per run,
with the spec keys that differ between them, the last step's metrics, times and versions;
``--plot FILE`` draws F over time for all of them in one figure.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from jkoflow.cli import DEBUG_HELP, CommandContext, add_allow_import
from jkoflow.registry import default_registry

__all__ = ["RunInfo", "add_parser", "load_info", "show_command"]

_TABLE_SKIP = {
    "step",
    "t",
    "t_physical",
    "failures",
    "non_finite",
    "tau",
    "substep",
    "lr_drops",
    "inner_loss_final",
}


class RunInfo:
    """What ``show`` reads from one run directory."""

    def __init__(self, path: Path) -> None:
        from jkoflow import checkpoint
        from jkoflow.records import read_run_json
        from jkoflow.rundir import is_locked
        from jkoflow.spec_io import load

        self.path = path
        self.record = read_run_json(path) or {}
        self.spec: dict[str, Any] = load(path / "spec.toml") if (path / "spec.toml").exists() else {}
        self.checkpoint = None
        try:
            self.checkpoint = checkpoint.load(path)
        except ValueError:
            pass
        metrics: list[dict[str, Any]] = []
        try:
            metrics = json.loads((path / "metrics.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            pass
        if self.checkpoint is not None and len(self.checkpoint.entries) > len(metrics):
            metrics = self.checkpoint.metrics()
        self.metrics = metrics
        status = str(self.record.get("status", "unknown (no run.json)"))
        if status == "running" and not is_locked(path):
            status = "killed (resumable: jkoflow resume)"
        self.status = status

    @property
    def session(self) -> dict[str, Any]:
        sessions = self.record.get("sessions") or [{}]
        return dict(sessions[-1])

    def steps(self) -> str:
        done = self.record.get("steps_done", max(len(self.metrics) - 1, 0))
        target = self.record.get("steps_target", self.spec.get("solver", {}).get("steps", "?"))
        return f"{done}/{target}"

    def cloud(self) -> tuple[list[torch.Tensor], np.ndarray]:
        """The particles of every entry and their times."""
        if self.checkpoint is not None and len(self.checkpoint.entries) >= len(self.metrics):
            xs = [e["x"] for e in self.checkpoint.entries]
            ts = np.array([0.0] + [e["record"]["t"] for e in self.checkpoint.entries[1:]])
            return xs, ts
        with np.load(self.path / "particles.npz") as data:
            return [torch.from_numpy(x) for x in data["x"]], np.asarray(data["t"], dtype=float)


def load_info(path: str | Path) -> RunInfo:
    """Read a run directory (:class:`ValueError` naming it when it holds no run)."""
    from jkoflow.rundir import holds_run

    p = Path(path)
    if not p.is_dir() or not holds_run(p):
        raise ValueError(f"{str(p)!r} is not a run directory (no spec.toml, metrics.json or steps/)")
    return RunInfo(p)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.4g}"
    if isinstance(value, list):
        return ",".join(_fmt(v) for v in value) if len(value) <= 4 else f"[{len(value)} values]"
    return str(value)


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


def _columns(metrics: list[dict[str, Any]]) -> list[str]:
    keys: list[str] = []
    for r in metrics:
        for k, v in r.items():
            if k in _TABLE_SKIP or k in keys:
                continue
            if isinstance(v, (int, float, bool)) or v is None:
                keys.append(k)
    return keys


def _summary(info: RunInfo) -> str:
    s = info.session
    commit = s.get("git_commit")
    git = f" (git {commit[:10]}{', dirty' if s.get('git_dirty') else ''})" if commit else ""
    wall = sum(float(x.get("wall_seconds") or 0) for x in info.record.get("sessions", []))
    cpu = sum(float(x.get("cpu_seconds") or 0) for x in info.record.get("sessions", []))
    name = info.record.get("name") or info.path.name
    lines = [
        (
            f"run {info.path}: {name}, status {info.status}, steps {info.steps()}, seed {info.spec.get('seed')}, "
            f"{info.spec.get('dtype')}, device {s.get('device', '?')}, threads {s.get('threads', '?')}, "
            f"processes {s.get('world_size', 1)}"
        ),
        (
            f"jkoflow {s.get('jkoflow', '?')}{git}, torch {s.get('torch', '?')}, numpy {s.get('numpy', '?')}, "
            f"python {s.get('python', '?')}; {len(info.record.get('sessions', []))} session(s), "
            f"wall {wall:.3g} s, cpu {cpu:.3g} s"
        ),
    ]
    if info.record.get("error"):
        lines.append(f"error: {info.record['error']}")
    cols = _columns(info.metrics)
    rows = [
        [str(r.get("step")), _fmt(r.get("t_physical", r.get("t")))] + [_fmt(r.get(k)) for k in cols]
        for r in info.metrics
    ]
    lines += ["", _table(["step", "t"] + cols, rows)]
    return "\n".join(lines)


def _problem(info: RunInfo, registry: Any, allow: tuple[str, ...]) -> tuple[Any, str | None]:
    """The run's problem (for the exact solution in the plot), or ``(None, why not)``."""
    import copy

    from jkoflow.params import make
    from jkoflow.spec import resolve_spec

    if "problem" not in info.spec:
        return None, None
    try:
        resolved = resolve_spec(copy.deepcopy(info.spec), registry, allow_imports=allow)
        assert resolved.problem is not None
        params = {k: v for k, v in resolved.problem.items() if k != "kind"}
        return make(registry.get("problem", resolved.problem["kind"]), params, "problem", registry), None
    except Exception as exc:  # noqa: BLE001 (the plot is drawn without the exact solution then)
        return None, f"{type(exc).__name__}: {exc}"


def render(info: RunInfo, registry: Any, allow: tuple[str, ...] = ()) -> tuple[Path, str | None]:
    """Draw ``summary.png`` of the run again; returns its path and why the exact solution is
    missing (or None)."""
    from jkoflow.flow import Flow
    from jkoflow.potential import PotentialNet
    from jkoflow.report import plot_summary

    xs, ts = info.cloud()
    problem, why = _problem(info, registry, allow)
    tau = float(ts[1] - ts[0]) if len(ts) > 1 else 1.0
    # only the particles and times are plotted: the maps are not needed
    flow = Flow(tau=tau, particles=xs, potentials=cast(list[PotentialNet], [None] * (len(xs) - 1)))
    if len(ts) > 1 and not np.allclose(flow.times, ts):
        from jkoflow.flow import StepRecord

        flow.records = [
            StepRecord(step=k, t=float(t), F=None, transport=0.0, inner_loss=[], seconds=0.0)
            for k, t in enumerate(ts[1:], 1)
        ]
    path = info.path / "summary.png"
    plot_summary(
        flow, info.metrics[: len(xs)], problem, path, title=str(info.record.get("name") or info.path.name)
    )
    return path, why


def _compare(infos: list[RunInfo]) -> str:
    from jkoflow.runner import flatten

    flat = [flatten(i.spec) for i in infos]
    keys = sorted(set().union(*flat))
    differing = [
        k for k in keys if len({json.dumps(f.get(k), sort_keys=True, default=str) for f in flat}) > 1
    ]
    last = [i.metrics[-1] if i.metrics else {} for i in infos]
    metric_keys = [
        k for k in _columns(last) if k not in ("seconds", "cpu_seconds", "checkpoint_seconds", "converged")
    ]
    rows: list[list[str]] = [
        ["status"] + [i.status for i in infos],
        ["steps"] + [i.steps() for i in infos],
    ]
    rows += [[k] + [_fmt(f.get(k)) for f in flat] for k in differing]
    rows += [[f"last {k}"] + [_fmt(m.get(k)) for m in last] for k in metric_keys]

    def per_step(i: RunInfo) -> str:
        secs = [float(r["seconds"]) for r in i.metrics[1:] if isinstance(r.get("seconds"), (int, float))]
        return _fmt(sum(secs) / len(secs)) if secs else "-"

    rows.append(["s/step"] + [per_step(i) for i in infos])
    for key in ("jkoflow", "git_commit", "torch", "threads", "world_size"):
        rows.append([key] + [_fmt(i.session.get(key))[:10] for i in infos])
    header = ["", *[str(i.path) for i in infos]]
    text = _table(header, rows)
    if not differing:
        text += "\n(the specs are identical)"
    return text


def _plot_compare(infos: list[RunInfo], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from jkoflow.files import atomic_path

    fig, ax = plt.subplots(figsize=(6, 4))
    for i in infos:
        ts = [float(r.get("t_physical", r.get("t")) or 0.0) for r in i.metrics]
        fs = [np.nan if r.get("F") is None else float(r["F"]) for r in i.metrics]
        ax.plot(ts, fs, "o-", ms=3, label=str(i.path))
    ax.set_xlabel("t")
    ax.set_ylabel("F")
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format=path.suffix.lstrip(".") or "png")
    plt.close(fig)


def show_command(args: argparse.Namespace, ctx: CommandContext | None = None) -> int:
    """``jkoflow show DIR [DIR ...]``."""
    state = ctx if ctx is not None else CommandContext(command="show")
    registry = state.registry if state.registry is not None else default_registry()
    infos = []
    for d in args.directories:
        try:
            infos.append(load_info(d))
        except ValueError as exc:
            print(f"jkoflow show: {exc}", file=sys.stderr)
            return 2
    if len(infos) == 1:
        print(_summary(infos[0]))
        if not args.no_plot and infos[0].metrics:
            path, why = render(infos[0], registry, tuple(args.allow_import))
            print(f"\nwrote {path}" + (f" (without the exact solution: {why})" if why else ""))
        return 0
    print(_compare(infos))
    if args.plot:
        _plot_compare(infos, Path(args.plot))
        print(f"\nwrote {args.plot}")
    return 0


def add_parser(subparsers: Any) -> None:
    show = subparsers.add_parser("show", help="summarize a run directory (or compare several side by side)")
    show.add_argument("directories", nargs="+", metavar="DIR", help="run directories")
    show.add_argument("--no-plot", action="store_true", help="do not re-render DIR/summary.png")
    show.add_argument("--plot", metavar="FILE", help="with several DIRs: F over time of all of them in FILE")
    add_allow_import(show, "as for jkoflow run (the plot's problem)")
    show.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
    show.set_defaults(handler=show_command)
