"""Every spec in examples/ resolves against the installed plugins."""

from __future__ import annotations

from pathlib import Path

import jkoflow
import pytest
from jkoflow import spec as specmod

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.toml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_spec_resolves(path: Path) -> None:
    resolved = jkoflow.resolve(specmod.load(path))
    assert resolved["solver"]["steps"] >= 1


def test_examples_exist() -> None:
    assert len(EXAMPLES) >= 2
