"""Run directories that cannot lose or mix work: one writer at a time, never silently replaced.

A process writing a run directory holds an exclusive lock on ``DIR/.jkoflow.lock`` for as long
as it writes (``filelock``: ``fcntl.flock`` on POSIX, ``msvcrt.locking`` on Windows; the
operating system releases it when the process dies, even by SIGKILL), so a second writer is
refused at once instead of mixing its files with the first's. A directory that already holds a
run (a step checkpoint or any of :data:`WORK_FILES`) is refused too, unless the caller asks to overwrite it (then the
run's files are removed first, other files are left alone) or to resume it.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import filelock

LOCK_NAME = ".jkoflow.lock"
RUN_FILES = ("spec.toml", "metrics.json", "run.json", "particles.npz", "maps.pt", "summary.png")
"""Files whose presence means that a directory holds a run."""
STEPS_DIR = "steps"

__all__ = ["LOCK_NAME", "RUN_FILES", "RunDir", "RunDirBusy", "RunDirError", "holds_run", "unique_dir"]


class RunDirError(ValueError):
    """A run directory cannot be used as asked (bad input: the CLI exits 2)."""


class RunDirBusy(RunDirError):
    """Another process holds the directory's lock."""


WORK_FILES = ("metrics.json", "particles.npz", "maps.pt")
"""Files that hold the work of a run (written from step 0 on)."""


def holds_run(directory: str | Path) -> bool:
    """Whether ``directory`` holds (part of) a run: a step checkpoint or a file written from
    step 0 on. The ``spec.toml`` and ``run.json`` of a run that ended before step 0 hold no work
    and do not count (a new run replaces them)."""
    d = Path(directory)
    steps = d / STEPS_DIR
    return any((d / name).exists() for name in WORK_FILES) or (steps.is_dir() and any(steps.glob("*.pt")))


def unique_dir(base: str | Path) -> Path:
    """Create and return ``base``, or ``base-2``, ``base-3``, ... if it exists (atomically: two
    processes asking for the same ``base`` get different directories)."""
    base = Path(base)
    base.parent.mkdir(parents=True, exist_ok=True)
    for k in range(1, 10_000):
        candidate = base if k == 1 else base.with_name(f"{base.name}-{k}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise RunDirError(f"no free directory name like {str(base)!r}")


def is_locked(directory: str | Path) -> bool:
    """Whether some process holds ``directory``'s lock now."""
    path = Path(directory) / LOCK_NAME
    if not path.exists():
        return False
    lock = filelock.FileLock(path, timeout=0)
    try:
        lock.acquire()
    except filelock.Timeout:
        return True
    lock.release()
    return False


class RunDir:
    """An exclusively locked run directory; release with :meth:`release` (or ``with``)."""

    def __init__(self, path: Path, lock: filelock.BaseFileLock) -> None:
        self.path = path
        self._lock = lock

    @classmethod
    def _locked(cls, path: Path, flag: str) -> RunDir:
        lock = filelock.FileLock(path / LOCK_NAME, timeout=0)
        try:
            lock.acquire()
        except filelock.Timeout:
            raise RunDirBusy(
                f"{flag} {str(path)!r} is being written by another jkoflow process (it holds "
                f"{path / LOCK_NAME}); wait for it to end, or use another directory"
            ) from None
        except OSError as exc:
            raise RunDirError(f"{flag} {str(path)!r}: cannot lock it: {exc.strerror or exc}") from None
        return cls(path, lock)

    @classmethod
    def create(cls, path: str | Path, overwrite: bool = False, flag: str = "--out") -> RunDir:
        """Lock ``path`` (created if missing) for a new run. A directory that holds a run is
        refused (:class:`RunDirError`) unless ``overwrite``, which removes its run files."""
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise RunDirError(f"{flag} {str(path)!r} is an existing file, not a directory")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunDirError(f"{flag} {str(path)!r} cannot be created: {_reason(exc)}") from None
        _probe(path, flag)
        rd = cls._locked(path, flag)
        try:
            if holds_run(path) and not overwrite:
                raise RunDirError(
                    f"{flag} {str(path)!r} already holds a run; continue it with `jkoflow resume {path}`, "
                    "replace it with --overwrite, or choose another directory"
                )
            rd.clear()  # --overwrite; or the spec.toml and run.json of a run that never began
        except BaseException:
            rd.release()
            raise
        return rd

    @classmethod
    def open(cls, path: str | Path) -> RunDir:
        """Lock an existing run directory to continue it."""
        path = Path(path)
        if not path.is_dir():
            raise RunDirError(f"{str(path)!r} is not a directory: expected a run directory")
        if not holds_run(path):
            raise RunDirError(f"{str(path)!r} holds no run (no metrics.json, particles.npz or steps/)")
        _probe(path, "run directory")
        rd = cls._locked(path, "run directory")
        try:
            rd.remove_temporaries()
        except BaseException:
            rd.release()
            raise
        return rd

    def remove_temporaries(self) -> None:
        """Remove the temporary files of writes a killed process left (``.NAME.*.tmp*``, see
        :func:`jkoflow.files.atomic_path`); safe under the lock: no other writer exists."""
        for base in (self.path, self.path / STEPS_DIR):
            if base.is_dir():
                for p in base.glob(".*.tmp*"):
                    if p.is_file():
                        p.unlink(missing_ok=True)

    def clear(self) -> None:
        """Remove this directory's run files (``--overwrite``); other files stay."""
        for name in RUN_FILES:
            (self.path / name).unlink(missing_ok=True)
        shutil.rmtree(self.path / STEPS_DIR, ignore_errors=True)
        self.remove_temporaries()

    def release(self) -> None:
        self._lock.release()


def _probe(path: Path, flag: str) -> None:
    """Check that a file can be written in ``path`` (:class:`RunDirError` naming why not)."""
    try:
        with tempfile.NamedTemporaryFile(dir=path, prefix=".jkoflow-probe-"):
            pass
    except OSError as exc:
        raise RunDirError(f"{flag} {str(path)!r} is not writable: {_reason(exc)}") from None


def _reason(exc: OSError) -> str:
    reason = exc.strerror or str(exc)
    return f"{reason} ({exc.filename})" if exc.filename else reason
