"""jkoflow's built-in plugins: potentials (ICNNs), energies, estimators, samplers, problems.

Each module implements the ``jkoflow_register`` hook and is advertised through the
``jkoflow.plugins`` entry-point group in ``pyproject.toml``, exactly as a third-party
plugin would be. Nothing in ``jkoflow`` core imports this package.
"""
