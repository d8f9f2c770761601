"""The entry-point module: jkoflow imports it and calls :func:`jkoflow_register`."""

from __future__ import annotations

from jkoflow.registry import Registry, hookimpl

from .double_well import DoubleWell, double_well
from .energy_distance import EnergyDistance
from .nets import quad_softplus


@hookimpl
def jkoflow_register(registry: Registry) -> None:
    registry.add("functional", "double_well", double_well)
    registry.add("potential_fn", "double_well", DoubleWell)
    registry.add("net", "quad_softplus", quad_softplus)
    registry.add("divergence", "energy_distance", EnergyDistance)
