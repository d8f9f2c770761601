"""pytest plugin (entry point ``pytest11``): ``pytest --jkoflow-conformance``.

With the flag, the session gains one test item per conformance case of every plugin in
jkoflow's default registry (built-ins and every installed third-party package), next to the
tests collected as usual; select with ``-k`` (item names are ``kind::name[d=...]``, e.g.
``-k "divergence and energy_distance"``). Without the flag this module imports nothing but
pytest, so it costs nothing in other test runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

OPTION = "--jkoflow-conformance"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("jkoflow")
    group.addoption(
        OPTION,
        action="store_true",
        default=False,
        help="run jkoflow's plugin conformance suites over every registered plugin "
        "(nets, functionals, log-det estimators, divergences, V, W, f, samplers)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "jkoflow_conformance: a jkoflow plugin conformance check")


class ConformanceItem(pytest.Item):
    """One conformance case: builds a registry entry and runs its ``assert_valid_*`` check."""

    def __init__(self, *, case: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case = case
        self.add_marker("jkoflow_conformance")
        self.user_properties.append(("provider", case.provider))

    def runtest(self) -> None:
        if self.case.skip:
            pytest.skip(self.case.skip)
        self.case.run()

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        from jkoflow.testing.checks import ConformanceError

        if isinstance(excinfo.value, ConformanceError):
            return f"{self.case.kind} {self.case.name!r} from {self.case.provider!r}:\n{excinfo.value}"
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return Path("jkoflow-conformance"), None, f"jkoflow conformance {self.case.id} ({self.case.provider})"


class ConformanceSuite(pytest.Collector):
    """The collector that holds every :class:`ConformanceItem`."""

    def collect(self) -> list[pytest.Item]:  # pragma: no cover - items are made directly
        return []


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    if not config.getoption(OPTION):
        return
    from jkoflow.registry import default_registry
    from jkoflow.testing import conformance

    registry = default_registry()
    suite = ConformanceSuite.from_parent(session, name="jkoflow-conformance", nodeid="jkoflow-conformance")
    added: list[pytest.Item | pytest.Collector] = []
    for failure in registry.failures:
        name = f"load::{failure.provider}::{failure.entry_point.split(' = ')[0]}"
        added.append(_FailedPlugin.from_parent(suite, name=name, failure=failure))
    for case in conformance.cases(registry):
        added.append(ConformanceItem.from_parent(suite, name=case.id, case=case))
    items.extend(item for item in added if isinstance(item, pytest.Item))
    # report them as collected, so "collected N items / M deselected / K selected" adds up
    config.hook.pytest_collectreport(report=pytest.CollectReport(suite.nodeid, "passed", None, added))


class _FailedPlugin(pytest.Item):
    """A plugin that failed to load fails the conformance run (naming the package); one that
    only lacks an optional extra's dependency (:attr:`PluginFailure.optional`) is skipped with
    the reason and the install command."""

    def __init__(self, *, failure: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.failure = failure

    def runtest(self) -> None:
        if self.failure.optional:  # only an optional extra is missing: nothing to check, not broken
            pytest.skip(self.failure.describe())
        raise AssertionError(self.failure.describe())

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        return str(excinfo.value)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return Path("jkoflow-conformance"), None, f"load {self.failure.provider}"
