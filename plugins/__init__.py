"""jkoflow's built-in plugins: potentials (ICNNs), energies, estimators, samplers, problems,
the commands ``jkoflow run`` and ``jkoflow plugins`` (:mod:`.commands`) and the bench suite
``jkoflow bench pde`` (:mod:`.bench_pde`).

Each module implements hooks of :mod:`jkoflow.registry` (``jkoflow_register``,
``jkoflow_add_commands``, ``jkoflow_bench_suites``) and is advertised through the
``jkoflow.plugins`` entry-point group in ``pyproject.toml``, exactly as a third-party plugin
would be. Nothing in ``jkoflow`` core imports this package.
"""
