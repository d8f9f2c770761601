"""jkoflow: Wasserstein gradient flows by JKO steps solved with input-convex neural networks.

Each JKO step ``rho_{t+1} = argmin_rho F(rho) + W_2^2(rho, rho_t) / (2 tau)`` is solved over
``rho = (grad u) # rho_t`` with ``u`` an input-convex neural network (Alvarez-Melis, Schiff,
Mroueh 2022). Core holds the interfaces and the solver; every concrete piece is a plugin.
"""

from .divergence import Divergence
from .flow import Flow, StepRecord
from .functional import Functional, LogDet, Need, StepContext, WeightedSum, total
from .logdet import LogDetError, LogDetEstimator, LogDetWarning
from .potential import PotentialNet
from .problem import Problem
from .registry import Registry, default_registry, hookimpl
from .sampler import Sampler
from .solver import ConvergenceWarning, FlowDivergedError, JKOSolver, SubstepWarning
from .spec import Run, SpecError, SpecWarning, build, load, resolve

__version__ = "0.1.0"

__all__ = [
    "ConvergenceWarning",
    "Divergence",
    "Flow",
    "FlowDivergedError",
    "Functional",
    "JKOSolver",
    "LogDet",
    "LogDetError",
    "LogDetEstimator",
    "LogDetWarning",
    "Need",
    "PotentialNet",
    "Problem",
    "Registry",
    "Run",
    "Sampler",
    "SpecError",
    "SpecWarning",
    "StepContext",
    "StepRecord",
    "SubstepWarning",
    "WeightedSum",
    "build",
    "default_registry",
    "hookimpl",
    "load",
    "resolve",
    "total",
]
