"""jkoflow.testing: the plugin author's kit.

* :mod:`jkoflow.testing.strategies`: hypothesis strategies (clouds, SPD matrices, random
  convex functions with known gradients and optimal maps, ICNN configurations);
* :mod:`jkoflow.testing.checks`: ``assert_convex``, ``assert_strongly_convex``,
  ``assert_valid_potential_net``, ``assert_valid_functional``,
  ``assert_valid_logdet_estimator``, ``assert_valid_divergence`` (and checks for potentials
  ``V``, kernels ``W``, internal-energy densities ``f`` and samplers);
* :mod:`jkoflow.testing.problem_checks`: ``assert_valid_problem`` (exact density, samples and
  ``F`` against each other; step-0 metrics);
* :mod:`jkoflow.testing.convexity`: the regions and the dense sweep behind the convexity checks;
* :mod:`jkoflow.testing.conformance`: the suites run over every registered plugin by
  ``pytest --jkoflow-conformance`` (:mod:`jkoflow.testing.pytest_plugin`).

Needs the ``testing`` extra (``pip install jkoflow[testing]``: hypothesis, pytest). See
``docs/plugins.md`` for the plugin contract.
"""

from .checks import (
    ConformanceError,
    ConvexityError,
    Counterexample,
    assert_convex,
    assert_strongly_convex,
    assert_valid_divergence,
    assert_valid_functional,
    assert_valid_internal_fn,
    assert_valid_kernel,
    assert_valid_logdet_estimator,
    assert_valid_potential_fn,
    assert_valid_potential_net,
    assert_valid_sampler,
    find_convexity_counterexample,
    find_violation,
)
from .problem_checks import assert_valid_problem

__all__ = [
    "ConformanceError",
    "ConvexityError",
    "Counterexample",
    "assert_convex",
    "assert_strongly_convex",
    "assert_valid_divergence",
    "assert_valid_functional",
    "assert_valid_internal_fn",
    "assert_valid_kernel",
    "assert_valid_logdet_estimator",
    "assert_valid_potential_fn",
    "assert_valid_potential_net",
    "assert_valid_problem",
    "assert_valid_sampler",
    "find_convexity_counterexample",
    "find_violation",
]
