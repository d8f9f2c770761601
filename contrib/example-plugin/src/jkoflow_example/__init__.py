"""jkoflow-example-plugin: a double-well energy, a quadratic+softplus convex potential net and
the energy distance, registered through the ``jkoflow.plugins`` entry point."""

from .double_well import DoubleWell, DoubleWellEnergy
from .energy_distance import EnergyDistance
from .nets import QuadSoftplus

__all__ = ["DoubleWell", "DoubleWellEnergy", "EnergyDistance", "QuadSoftplus"]
