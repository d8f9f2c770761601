"""Atomic writes (``jkoflow.files``) and the run files written through them."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch
from jkoflow.files import atomic_path, atomic_write_text
from jkoflow.flow import Flow


def test_atomic_write_replaces_whole_and_leaves_no_temporaries(tmp_path: Path) -> None:
    target = tmp_path / "metrics.json"
    atomic_write_text(target, "old")
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_failed_write_keeps_the_previous_file(tmp_path: Path) -> None:
    target = tmp_path / "particles.npz"
    atomic_write_text(target, "complete")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "complete"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["particles.npz"]


def test_concurrent_writers_never_mix(tmp_path: Path) -> None:
    """Each writer has its own temporary name: the file is always one writer's whole text."""
    target = tmp_path / "metrics.json"
    texts = [str(k) * 20000 for k in range(8)]
    threads = [threading.Thread(target=atomic_write_text, args=(target, t)) for t in texts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert target.read_text() in texts
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_flow_map_rejects_steps_outside_the_flow() -> None:
    u = torch.nn.Linear(1, 1)
    flow = Flow(tau=0.1, potentials=[u, u])  # type: ignore[list-item]
    for bad in (0, 3, -1, 1.0, True):
        with pytest.raises(ValueError, match=r"1\.\.2"):
            flow.map(bad)  # type: ignore[arg-type]
