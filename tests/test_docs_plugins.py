"""docs/plugins.md: its complete PotentialNet example runs and passes the kit's checks, and a
copy whose project() does nothing is rejected (so the example's project() is what holds)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from jkoflow.testing import ConvexityError, assert_valid_potential_net

DOC = Path(__file__).parent.parent / "docs" / "plugins.md"


def _example_namespace() -> dict:
    text = DOC.read_text()
    after = text.split("A complete `PotentialNet`", 1)[1]
    block = re.search(r"```python\n(.*?)```", after, re.DOTALL)
    assert block is not None, "docs/plugins.md lost its PotentialNet example"
    namespace: dict = {}
    exec(compile(block.group(1), str(DOC), "exec"), namespace)  # noqa: S102 - our own docs
    return namespace


@pytest.mark.parametrize("dim", [1, 2])
def test_the_documented_potential_net_passes(dim: int) -> None:
    ridge_net = _example_namespace()["RidgeNet"]
    torch.manual_seed(0)
    assert_valid_potential_net(ridge_net(dim))


def test_the_documented_net_without_its_projection_is_rejected() -> None:
    ridge_net = _example_namespace()["RidgeNet"]

    class NoProjection(ridge_net):
        def project(self) -> None:
            """Does nothing: the adversarial steps drive some s_k negative and stay there."""

    torch.manual_seed(0)
    with pytest.raises(ConvexityError, match="project\\(\\) did not restore convexity"):
        assert_valid_potential_net(NoProjection(2))
