"""``jkoflow sweep SWEEP.toml``: a base spec run over a grid or a list of settings and seeds, on
Ray or on a local process pool, into one results table.

A sweep file::

    base = "heat.toml"            # a spec file (relative to the sweep file), or a [base] table
    seeds = [0, 1, 2]             # default [0]
    out = "sweeps/heat-lr"        # default sweeps/STEM; --out overrides
    metrics = ["F", "w1"]         # the summary's columns (default: F and the problem's w1, map_error)

    [grid]                        # every combination of these (dotted key paths into the spec)
    "solver.lr" = [0.01, 0.02]
    "potential.widths" = [[16], [32, 32]]

    [[cases]]                     # and/or a list of settings, each combined with the grid
    "terms[0].weight" = 2.0

Each (case, seed) runs as ``jkoflow run`` would, in ``OUT/runs/LABEL`` (checkpointed, locked).
``OUT/results.csv`` has one row per run: the label, the seed, each swept key, the status
(``complete``, ``failed``, ``interrupted``), the steps done, the last step's metrics and the
error of a failed run; ``OUT/summary.csv`` the mean and standard deviation (over seeds, ``ddof
= 1``) of each metric per case, which is also printed. Each run uses one torch thread, so its
numbers do not depend on where it ran: Ray and the local pool give the same table. A re-run
skips complete runs and resumes interrupted ones from their last checkpoint.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import itertools
import json
import math
import os
import re
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from jkoflow.cli import DEBUG_HELP, CommandContext, add_allow_import, positive_int

__all__ = ["Case", "SweepError", "add_parser", "load_sweep", "run_case", "sweep_command"]

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\[\d+\])*$")
_TIMING = {"seconds", "cpu_seconds", "checkpoint_seconds"}
_NOT_METRICS = _TIMING | {"step", "failures", "non_finite", "substep", "tau"}
DEFAULT_SUMMARY = ("F", "w1", "map_error")


class SweepError(ValueError):
    """A bad sweep file (the CLI exits 2)."""


class Case:
    """One run of a sweep: its swept settings, seed, spec and directory name."""

    def __init__(self, index: int, settings: dict[str, Any], seed: int, spec: dict[str, Any]) -> None:
        self.index = index
        self.settings = settings
        self.seed = seed
        self.spec = spec
        parts = [f"{k}={_compact(v)}" for k, v in settings.items()] + [f"seed={seed}"]
        self.label = ",".join(parts)
        slug = re.sub(r"[^A-Za-z0-9._=,+-]", "_", self.label)
        if len(slug) > 100:
            slug = slug[:80] + "-" + hashlib.sha1(self.label.encode()).hexdigest()[:10]
        self.dirname = slug

    @property
    def group(self) -> str:
        """The label without the seed (the summary's row)."""
        return ",".join(f"{k}={_compact(v)}" for k, v in self.settings.items()) or "(base)"


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":")) if not isinstance(value, str) else value


def _parse_key(key: str, where: str) -> list[str | int]:
    """``"terms[0].weight"`` -> ``["terms", 0, "weight"]``."""
    parts: list[str | int] = []
    for piece in key.split("."):
        if not _KEY.match(piece):
            raise SweepError(
                f"{where}: {key!r} is not a key path; expected e.g. 'solver.lr' or 'terms[0].weight'"
            )
        name, *indices = piece.replace("]", "").split("[")
        parts.append(name)
        parts += [int(i) for i in indices]
    if parts[0] == "seed":
        raise SweepError(f"{where}: {key!r}: give seeds as `seeds = [...]`, not as a swept key")
    return parts


def _set(spec: dict[str, Any], key: str, value: Any, where: str) -> None:
    parts = _parse_key(key, where)
    node: Any = spec
    for i, part in enumerate(parts[:-1]):
        nxt = parts[i + 1]
        if isinstance(part, int):
            if not isinstance(node, list) or not -len(node) <= part < len(node):
                raise SweepError(f"{where}: {key!r}: no list item [{part}] in the base spec")
            node = node[part]
            continue
        if not isinstance(node, dict):
            raise SweepError(f"{where}: {key!r}: {part!r} is inside a value that is not a table")
        if part not in node:
            if isinstance(nxt, int):
                raise SweepError(f"{where}: {key!r}: the base spec has no list {part!r}")
            node[part] = {}
        node = node[part]
    last = parts[-1]
    if isinstance(last, int):
        if not isinstance(node, list) or not -len(node) <= last < len(node):
            raise SweepError(f"{where}: {key!r}: no list item [{last}] in the base spec")
        node[last] = value
    elif not isinstance(node, dict):
        raise SweepError(f"{where}: {key!r}: the value before {last!r} is not a table")
    else:
        node[last] = value


def load_sweep(path: str | Path) -> tuple[list[Case], dict[str, Any]]:
    """Read a sweep file: its cases (every setting x seed, in order) and its options
    (``out``, ``metrics``); :class:`SweepError` names a bad entry."""
    import copy

    from jkoflow import spec_io
    from jkoflow.params import SpecError

    path = Path(path)
    try:
        sweep = spec_io.load(path)
    except SpecError as exc:
        raise SweepError(str(exc).replace("spec file", "sweep file")) from None
    known = {"base", "grid", "cases", "seeds", "out", "metrics"}
    unknown = sorted(set(sweep) - known)
    if unknown:
        raise SweepError(f"{path}: unknown key {unknown[0]!r}; expected some of {sorted(known)}")
    base = sweep.get("base")
    if isinstance(base, str):
        base_path = (path.parent / base) if not Path(base).is_absolute() else Path(base)
        try:
            base = spec_io.load(base_path)
        except SpecError as exc:
            raise SweepError(f"base: {exc}") from None
    if not isinstance(base, dict):
        raise SweepError(f"base: got {base!r}; expected a spec file name or a [base] table")
    grid = sweep.get("grid", {})
    if not isinstance(grid, dict):
        raise SweepError(f"grid: got {grid!r}; expected a table of key = [values]")
    for key, values in grid.items():
        _parse_key(key, "grid")
        if not isinstance(values, list) or not values:
            raise SweepError(f"grid.{key}: got {values!r}; expected a non-empty list of values")
    cases = sweep.get("cases", [{}])
    if not isinstance(cases, list) or not cases or not all(isinstance(c, dict) for c in cases):
        raise SweepError(f"cases: got {cases!r}; expected a non-empty array of tables ([[cases]])")
    seeds = sweep.get("seeds", [0])
    if (
        not isinstance(seeds, list)
        or not seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**63 for s in seeds)
        or len(set(seeds)) != len(seeds)
    ):
        raise SweepError(f"seeds: got {seeds!r}; expected a non-empty list of distinct integers >= 0")
    metrics = sweep.get("metrics")
    if metrics is not None and (
        not isinstance(metrics, list) or not all(isinstance(m, str) for m in metrics)
    ):
        raise SweepError(f"metrics: got {metrics!r}; expected a list of metric names")
    out: list[Case] = []
    keys = list(grid)
    for ci, case in enumerate(cases):
        for point in itertools.product(*(grid[k] for k in keys)):
            settings = {**case, **dict(zip(keys, point))}
            where = f"cases[{ci}]" if case else "grid"
            for seed in seeds:
                spec = copy.deepcopy(base)
                for key, value in settings.items():
                    _set(spec, key, value, where)
                spec["seed"] = seed
                out.append(Case(len(out), settings, seed, spec))
    labels = [c.dirname for c in out]
    if len(set(labels)) != len(labels):
        dup = next(label for label in labels if labels.count(label) > 1)
        raise SweepError(f"two runs of the sweep would share the directory {dup!r}: a setting is repeated")
    return out, {"out": sweep.get("out"), "metrics": metrics}


def run_case(
    spec: dict[str, Any], directory: str, allow_imports: tuple[str, ...] = (), threads: int = 1
) -> dict[str, Any]:
    """Run (or skip, or resume) one run of a sweep in ``directory``; never raises: a failure is
    ``{"status": "failed", "error": ...}``. Runs in a worker process (Ray or the local pool)."""
    import torch

    torch.set_num_threads(threads)
    try:
        return _run_case(spec, Path(directory), allow_imports)
    except KeyboardInterrupt:
        return {
            "status": "interrupted",
            "error": "interrupted",
            "metrics": {},
            "steps": None,
            "action": "interrupted",
        }
    except Exception as exc:  # noqa: BLE001 (every failure is a row of the table, never a lost run)
        return {
            "status": "failed",
            "error": f"{type(exc).__name__}: {' '.join(str(exc).split())}",
            "metrics": {},
            "steps": None,
            "action": "failed",
        }


def _run_case(spec: dict[str, Any], directory: Path, allow_imports: tuple[str, ...]) -> dict[str, Any]:
    from jkoflow import spec as specmod
    from jkoflow.checkpoint import remove_after
    from jkoflow.records import read_run_json
    from jkoflow.rundir import RunDir, holds_run
    from jkoflow.runner import check_resumable, execute, load_resumable, steps_done

    run = specmod.build(spec, allow_imports=allow_imports)
    if directory.is_dir() and holds_run(directory):
        rd = RunDir.open(directory)
        try:
            ckpt = load_resumable(directory)
            check_resumable(run, ckpt, directory)
            record = read_run_json(directory) or {}
            done = steps_done(ckpt)
            if done == run.solver.steps and record.get("status") == "complete":
                metrics = json.loads((directory / "metrics.json").read_text(encoding="utf-8"))
                return {
                    "status": "complete",
                    "error": None,
                    "metrics": metrics[-1],
                    "steps": done,
                    "action": "skipped",
                }
            remove_after(directory, ckpt.last)
            outcome = execute(run, rd, name=directory.name, command="resume", resume=ckpt, plot=False)
            action = "resumed"
        finally:
            rd.release()
    else:
        rd = RunDir.create(directory, flag="run directory")
        try:
            outcome = execute(run, rd, name=directory.name, command="run", plot=False)
            action = "ran"
        finally:
            rd.release()
    record = read_run_json(directory) or {}
    return {
        "status": outcome.status,
        "error": outcome.error,
        "metrics": outcome.records[-1] if outcome.records else {},
        "steps": record.get("steps_done"),
        "action": action,
    }


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _rows(cases: list[Case], results: dict[int, dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    keys = list(dict.fromkeys(k for c in cases for k in c.settings))
    metric_keys: list[str] = []
    for c in cases:
        for k, v in results.get(c.index, {}).get("metrics", {}).items():
            if k not in _NOT_METRICS and k not in metric_keys and (_number(v) is not None or v is None):
                metric_keys.append(k)
    header = ["run", "seed", *keys, "status", "steps", *metric_keys, "error", "dir"]
    rows = []
    for c in cases:
        r = results.get(c.index, {"status": "not run", "metrics": {}, "steps": None, "error": None})
        row: dict[str, Any] = {"run": c.label, "seed": c.seed, "status": r["status"], "steps": r["steps"]}
        row.update({k: _compact(c.settings[k]) if k in c.settings else "" for k in keys})
        row.update({k: r["metrics"].get(k) for k in metric_keys})
        row["error"] = r.get("error") or ""
        row["dir"] = f"runs/{c.dirname}"
        rows.append(row)
    return header, rows


def _csv(header: list[str], rows: Iterable[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in header})
    return buf.getvalue()


def summarize(
    cases: list[Case], results: dict[int, dict[str, Any]], metrics: list[str]
) -> tuple[list[str], list[dict[str, Any]]]:
    """Per case (over its seeds): the number of complete runs, and the mean and standard
    deviation (``ddof = 1``; empty for one run) of each metric."""
    groups: dict[str, list[Case]] = {}
    for c in cases:
        groups.setdefault(c.group, []).append(c)
    header = ["case", "runs", "complete"]
    for m in metrics:
        header += [f"{m}_mean", f"{m}_std"]
    rows = []
    for group, members in groups.items():
        done = [results[c.index] for c in members if results.get(c.index, {}).get("status") == "complete"]
        row: dict[str, Any] = {"case": group, "runs": len(members), "complete": len(done)}
        for m in metrics:
            values = [v for r in done if (v := _number(r["metrics"].get(m))) is not None]
            mean = sum(values) / len(values) if values else None
            std = (
                math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
                if mean is not None and len(values) > 1
                else None
            )
            row[f"{m}_mean"], row[f"{m}_std"] = mean, std
        rows.append(row)
    return header, rows


def _print_summary(header: list[str], rows: list[dict[str, Any]], metrics: list[str]) -> None:
    cols = ["case", "complete"] + metrics
    table = [cols]
    for r in rows:
        cells = [str(r["case"]), f"{r['complete']}/{r['runs']}"]
        for m in metrics:
            mean, std = r[f"{m}_mean"], r[f"{m}_std"]
            cells.append("-" if mean is None else f"{mean:.5g}" + ("" if std is None else f" ± {std:.2g}"))
        table.append(cells)
    widths = [max(len(row[i]) for row in table) for i in range(len(cols))]
    for row in table:
        print(
            "  ".join(
                cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))
            )
        )


def _backend(args: argparse.Namespace) -> str:
    if args.backend != "auto":
        return str(args.backend)
    if args.address:
        return "ray"
    try:
        import ray  # noqa: F401
    except ImportError:
        return "local"
    return "ray"


def _worker_failed(exc: BaseException) -> dict[str, Any]:
    """The result row of a run whose worker raised or died (never dropped from the table)."""
    return {
        "status": "failed",
        "error": f"{type(exc).__name__}: {exc}",
        "metrics": {},
        "steps": None,
        "action": "failed",
    }


def _execute(
    cases: list[Case],
    out: Path,
    args: argparse.Namespace,
    on_result: Callable[[Case, dict[str, Any]], None],
) -> str:
    """Run the cases on the chosen backend, calling ``on_result`` as each ends; returns the
    backend's description."""
    backend = _backend(args)
    workers = args.workers or os.cpu_count() or 1
    allow = tuple(args.allow_import)
    call = [(c, c.spec, str(out / "runs" / c.dirname), allow, 1) for c in cases]
    if backend == "ray":
        import ray

        started = False
        if not ray.is_initialized():
            if args.address:
                ray.init(address=args.address, log_to_driver=False)
            else:
                ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
            started = True
        try:
            remote = ray.remote(num_cpus=1, max_retries=0)(run_case)
            pending = {remote.remote(*a[1:]): a[0] for a in call}
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    case = pending.pop(ref)
                    try:
                        result = ray.get(ref)
                    except Exception as exc:  # noqa: BLE001 (a worker that died is a failed row)
                        result = _worker_failed(exc)
                    on_result(case, result)
        finally:
            if started:
                ray.shutdown()
        return f"ray ({args.address or f'local, {workers} CPUs'})"
    if workers == 1:
        for a in call:
            on_result(a[0], run_case(*a[1:]))
        return "this process"
    import concurrent.futures
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # no inherited torch threads or locks
    with concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = {pool.submit(run_case, *a[1:]): a[0] for a in call}
        try:
            for fut in concurrent.futures.as_completed(futures):
                try:
                    result = fut.result()
                except Exception as exc:  # noqa: BLE001 (a worker that died is a failed row)
                    result = _worker_failed(exc)
                on_result(futures[fut], result)
        except KeyboardInterrupt:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return f"local process pool ({workers} workers)"


def sweep_command(args: argparse.Namespace, ctx: CommandContext | None = None) -> int:
    """``jkoflow sweep SWEEP.toml``."""
    from jkoflow.files import atomic_write_text
    from jkoflow.rundir import RunDir, RunDirError

    state = ctx if ctx is not None else CommandContext(command="sweep")
    try:
        cases, options = load_sweep(args.sweep)
    except SweepError as exc:
        print(f"jkoflow sweep: {exc}", file=sys.stderr)
        return 2
    if args.backend == "local" and args.address:
        print(
            "jkoflow sweep: --address joins a Ray cluster; it cannot be used with --backend local",
            file=sys.stderr,
        )
        return 2
    if _backend(args) == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            print(
                "jkoflow sweep: --backend ray / --address needs Ray: pip install 'jkoflow[ray]'",
                file=sys.stderr,
            )
            return 2
    out = Path(args.out or options["out"] or Path("sweeps") / Path(args.sweep).stem).resolve()
    try:
        (out / "runs").mkdir(parents=True, exist_ok=True)
        lock = RunDir._locked(out, "sweep directory")
    except (OSError, RunDirError) as exc:
        print(f"jkoflow sweep: {exc}", file=sys.stderr)
        return 2
    state.phase = "run"
    results: dict[int, dict[str, Any]] = {}
    metrics = list(options["metrics"] or [])

    def write() -> None:
        header, rows = _rows(cases, results)
        atomic_write_text(out / "results.csv", _csv(header, rows))

    def on_result(case: Case, result: dict[str, Any]) -> None:
        results[case.index] = result
        write()
        line = f"[{len(results)}/{len(cases)}] {result['action']:<8} {case.label}: {result['status']}"
        if result.get("error"):
            line += f" ({result['error']})"
        print(line, file=sys.stderr)

    code = 0
    begin = time.perf_counter()
    try:
        where = _execute(cases, out, args, on_result)
    except KeyboardInterrupt:
        write()
        print(f"jkoflow sweep: interrupted; rerun to resume ({out})", file=sys.stderr)
        code = 130
        where = "interrupted"
    finally:
        lock.release()
    write()
    if not metrics:
        present = {k for r in results.values() for k in r.get("metrics", {})}
        metrics = [m for m in DEFAULT_SUMMARY if m in present]
    header, rows = summarize(cases, results, metrics)
    atomic_write_text(out / "summary.csv", _csv(header, rows))
    print(
        f"{len(cases)} runs on {where} in {time.perf_counter() - begin:.1f} s; wrote {out}/results.csv, summary.csv"
    )
    _print_summary(header, rows, metrics)
    failed = [(c, results[c.index]) for c in cases if results.get(c.index, {}).get("status") == "failed"]
    if failed:
        print(f"\n{len(failed)} failed:")
        for c, r in failed:
            print(f"  {c.label}: {r.get('error')}")
        code = code or 1
    elif code == 0 and any(results.get(c.index, {}).get("status") != "complete" for c in cases):
        code = 1
    return code


def add_parser(subparsers: Any) -> None:
    sweep = subparsers.add_parser("sweep", help="run a spec over a grid or list of settings and seeds")
    sweep.add_argument("sweep", metavar="SWEEP.toml", help="the sweep file (base spec, grid/cases, seeds)")
    sweep.add_argument("--out", help="the sweep's directory (default: the file's `out`, else sweeps/STEM)")
    sweep.add_argument(
        "--backend",
        choices=("auto", "ray", "local"),
        default="auto",
        help="ray (the `ray` extra) or a local process pool; auto: ray when installed",
    )
    sweep.add_argument("--address", help="join this Ray cluster (e.g. 'auto' or 'ray://host:10001')")
    sweep.add_argument(
        "--workers",
        type=positive_int,
        metavar="N",
        help="parallel runs (default: the CPU cores; 1: in this process)",
    )
    add_allow_import(sweep, "as for jkoflow run")
    sweep.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
    sweep.set_defaults(handler=sweep_command)
