"""Re-export of :mod:`jkoflow.convexity` (the regions and the deterministic sweep behind the
convexity checks), which moved out of the testing kit so that runtime code can use it without
hypothesis or pytest. Import from :mod:`jkoflow.convexity` in new code."""

from __future__ import annotations

from jkoflow.convexity import (
    DEFAULT_HALF_WIDTH,
    DEFAULT_SWEEP,
    SAMPLER_POINTS,
    Bounds,
    ConvexFn,
    Counterexample,
    Region,
    ResolvedRegion,
    as_float64,
    box_of,
    resolve_region,
    row_hessian,
    sweep_convexity,
    sweep_points,
)

__all__ = [
    "DEFAULT_HALF_WIDTH",
    "DEFAULT_SWEEP",
    "SAMPLER_POINTS",
    "Bounds",
    "ConvexFn",
    "Counterexample",
    "Region",
    "ResolvedRegion",
    "as_float64",
    "box_of",
    "resolve_region",
    "row_hessian",
    "sweep_convexity",
    "sweep_points",
]
