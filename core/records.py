"""Run records: what produced a run directory (``run.json``).

``run.json`` holds the run's name, its status (``running``, ``complete``, ``interrupted``,
``failed``), the completed and the target number of JKO steps, the last error, the resolved
spec, and one *session* per ``jkoflow run`` / ``jkoflow resume`` that wrote the directory: the
command line, start and end times (UTC, ISO 8601), process id and host, the jkoflow version and
git commit (when jkoflow runs from a git checkout; ``git_dirty`` when it has uncommitted
changes), the python, torch and numpy versions, the platform, the seed, device, dtype, torch
thread count and the number of processes, the steps the session ran, and its wall and CPU time.
Per-step wall and CPU times are in ``metrics.json`` (``seconds``, ``cpu_seconds``).
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .files import atomic_write_text

RUN_JSON = "run.json"
FORMAT = 1

__all__ = ["RUN_JSON", "Session", "environment", "git_commit", "read_run_json", "utc_now"]


def utc_now() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


@functools.lru_cache(maxsize=1)
def git_commit() -> tuple[str | None, bool | None]:
    """``(commit, dirty)`` of the git checkout jkoflow is imported from, or ``(None, None)``
    when it is not one (an installed wheel) or git is missing."""
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"],
            check=False,
            capture_output=True,
            text=True,
            timeout=5,
        )
        if head.returncode != 0:
            return None, None
        status = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            check=False,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None, None
    dirty = bool(status.stdout.strip()) if status.returncode == 0 else None
    return head.stdout.strip() or None, dirty


def environment() -> dict[str, Any]:
    """Versions and machine facts of this process (see the module docstring)."""
    from . import __version__

    commit, dirty = git_commit()
    return {
        "jkoflow": __version__,
        "git_commit": commit,
        "git_dirty": dirty,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
    }


def read_run_json(directory: str | Path) -> dict[str, Any] | None:
    """``run.json`` of ``directory`` as a dict, or ``None`` when absent or unreadable."""
    try:
        data = json.loads((Path(directory) / RUN_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class Session:
    """One process writing a run directory: appends its session to ``run.json`` and keeps the
    directory's status current (:meth:`update`, :meth:`finish`)."""

    def __init__(
        self,
        directory: str | Path,
        *,
        name: str,
        command: str,
        spec: Mapping[str, Any],
        steps_target: int,
        steps_done: int = 0,
        device: str = "cpu",
        world_size: int = 1,
        new_run: bool = True,
    ) -> None:
        self.path = Path(directory) / RUN_JSON
        previous = {} if new_run else (read_run_json(directory) or {})
        self.data: dict[str, Any] = {
            "format": FORMAT,
            "name": previous.get("name", name),
            "status": "running",
            "steps_done": steps_done,
            "steps_target": steps_target,
            "error": None,
            "spec": dict(spec),
            "sessions": list(previous.get("sessions", [])),
        }
        self._wall = time.perf_counter()
        self._cpu = time.process_time()
        self.session: dict[str, Any] = {
            "command": command,
            "argv": list(sys.argv),
            "started": utc_now(),
            "ended": None,
            **environment(),
            "seed": spec.get("seed"),
            "dtype": spec.get("dtype"),
            "device": device,
            "world_size": world_size,
            "first_step": steps_done + 1,
            "last_step": steps_done,
            "status": "running",
            "wall_seconds": None,
            "cpu_seconds": None,
        }
        self.data["sessions"].append(self.session)
        self.write()

    def write(self) -> None:
        atomic_write_text(self.path, json.dumps(self.data, indent=1, default=str))

    def update(self, steps_done: int, write: bool = True) -> None:
        """A step completed: record it (on disk too, so a killed run's record is current)."""
        self.data["steps_done"] = steps_done
        self.session["last_step"] = steps_done
        if write:
            self.write()

    def finish(self, status: str, steps_done: int, error: str | None = None) -> None:
        """Record how the session ended: ``complete``, ``interrupted`` or ``failed``."""
        self.update(steps_done, write=False)
        self.data["status"] = status
        self.data["error"] = error
        self.session["status"] = status
        self.session["ended"] = utc_now()
        self.session["wall_seconds"] = round(time.perf_counter() - self._wall, 3)
        self.session["cpu_seconds"] = round(time.process_time() - self._cpu, 3)
        self.write()
