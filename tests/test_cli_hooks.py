"""The command line is built from plugin hooks: ``jkoflow_add_commands`` adds commands (the
built-in ``run`` and ``plugins`` included), ``jkoflow_bench_suites`` adds ``jkoflow bench``
suites, and core imports neither plugins nor contrib."""

from __future__ import annotations

import argparse
import ast
import importlib
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

import jkoflow
import pytest
from jkoflow.cli import main
from jkoflow.registry import Registry, default_registry, hookimpl

CORE = Path(jkoflow.__file__).resolve().parent


class HelloPlugin:
    """A third-party plugin object: one command and one bench suite, nothing in the registry."""

    def __init__(self) -> None:
        self.suite_argv: list[list[str]] = []

    @hookimpl
    def jkoflow_add_commands(self, subparsers: Any) -> None:
        hello = subparsers.add_parser("hello", help="say hello")
        hello.add_argument("--name", default="world")
        hello.add_argument("--code", type=int, default=0)
        hello.set_defaults(handler=self.hello)

    def hello(self, args: argparse.Namespace, ctx: Any) -> int:
        assert ctx.registry is not None and ctx.command == "hello" and ctx.rest == []
        print(f"hello {args.name}")
        return args.code

    @hookimpl
    def jkoflow_bench_suites(self) -> dict[str, Any]:
        def mine(argv: list[str]) -> int:
            """A suite of this test: records its arguments."""
            self.suite_argv.append(list(argv))
            return 3

        return {"mine": mine}


def _registry(*plugins: tuple[object, str]) -> Registry:
    """A fresh registry with the built-in commands and ``plugins``."""
    registry = Registry()
    registry.register(importlib.import_module("jkoflow.plugins.commands"), "jkoflow")
    for plugin, provider in plugins:
        registry.register(plugin, provider)
    return registry


def test_a_third_party_command_runs_with_its_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    registry = _registry((HelloPlugin(), "hello-pkg"))
    assert main(["hello", "--name", "jko"], registry=registry) == 0
    assert capsys.readouterr().out == "hello jko\n"
    assert main(["hello", "--code", "4"], registry=registry) == 4
    with pytest.raises(SystemExit) as exit_:  # unknown arguments are an argparse error: exit 2
        main(["hello", "--bogus"], registry=registry)
    assert exit_.value.code == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_a_third_party_bench_suite_gets_its_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    plugin = HelloPlugin()
    registry = _registry((plugin, "hello-pkg"))
    assert main(["bench", "mine", "--fast", "x"], registry=registry) == 3
    assert plugin.suite_argv == [["--fast", "x"]]
    assert main(["bench", "--help"], registry=registry) == 0
    out = capsys.readouterr().out
    assert "mine" in out and "A suite of this test" in out
    assert main(["bench"], registry=registry) == 2
    assert "no suite given; expected one of ['mine']" in capsys.readouterr().err
    assert main(["bench", "nope"], registry=registry) == 2
    assert "unknown suite 'nope'; expected one of ['mine']" in capsys.readouterr().err


def test_run_and_plugins_come_from_the_hook() -> None:
    sub = argparse.ArgumentParser().add_subparsers(dest="command")
    owners = default_registry().add_commands(sub)
    assert owners["run"] == "jkoflow" and owners["plugins"] == "jkoflow"
    assert "bench" not in owners  # core's own command, not a plugin's
    assert {"run", "plugins"} <= set(sub.choices)


def test_without_plugins_only_bench_is_there(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["run", "heat"], registry=Registry())
    assert exit_.value.code == 2
    assert "invalid choice: 'run' (choose from 'bench')" in capsys.readouterr().err
    assert main(["bench"], registry=Registry()) == 2
    assert "no suite given; expected one of []" in capsys.readouterr().err


def test_the_default_registry_has_the_builtin_suites() -> None:
    suites = default_registry().bench_suites()
    pde = importlib.import_module("jkoflow.plugins.bench_pde")
    assert suites["pde"] is pde


def test_a_command_name_taken_twice_names_both_packages(capsys: pytest.CaptureFixture[str]) -> None:
    class Again:
        @hookimpl
        def jkoflow_add_commands(self, subparsers: Any) -> None:
            subparsers.add_parser("run", help="a second run")

    class Bench:
        @hookimpl
        def jkoflow_add_commands(self, subparsers: Any) -> None:
            subparsers.add_parser("bench")

    registry = _registry((Again(), "again-pkg"), (Bench(), "bench-pkg"), (HelloPlugin(), "hello-pkg"))
    with pytest.warns(RuntimeWarning) as record:
        assert main(["hello"], registry=registry) == 0  # the other plugins' commands still work
    assert sorted(str(w.message).split("package ")[1].split(":")[0] for w in record) == [
        "'again-pkg'",
        "'bench-pkg'",
    ]
    messages = [f.describe() for f in registry.failures]
    assert any("'run' is added twice: by 'jkoflow' and by 'again-pkg'" in m for m in messages), messages
    assert any("'bench' is added twice: by 'jkoflow' and by 'bench-pkg'" in m for m in messages), messages
    with pytest.warns(RuntimeWarning):
        main(["hello"], registry=registry)
    assert len(registry.failures) == 2  # a hook called again records its failure once


def test_a_broken_suite_hook_is_a_failure_not_a_crash(capsys: pytest.CaptureFixture[str]) -> None:
    class Broken:
        @hookimpl
        def jkoflow_bench_suites(self) -> dict[str, Any]:
            return {"bad": 42}

    registry = _registry((Broken(), "broken-pkg"), (HelloPlugin(), "hello-pkg"))
    with pytest.warns(RuntimeWarning, match="broken-pkg.*jkoflow_bench_suites"):
        suites = registry.bench_suites()
    assert sorted(suites) == ["mine"]
    assert "suite 'bad': expected a module with main(argv) or a callable" in registry.failures[0].error


def test_a_command_without_handler_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    class NoHandler:
        @hookimpl
        def jkoflow_add_commands(self, subparsers: Any) -> None:
            subparsers.add_parser("idle")

    assert main(["idle"], registry=_registry((NoHandler(), "idle-pkg"))) == 1
    assert "sets no handler" in capsys.readouterr().err


class Quadratic:
    """A term that declares its parts: ``int V d rho`` with ``V(x) = x^2``, and an unused ``V``
    attribute that the old attribute probing would have read instead."""

    V = staticmethod(lambda x: 0.0 * x.sum(-1))

    def reference_parts(self) -> dict[str, object]:
        return {"V": lambda x: (x**2).sum(-1)}


class OldStyle:
    """A term without ``reference_parts``: read by its attribute ``W``."""

    def W(self, z: Any) -> Any:
        return z.abs().sum(-1)


def test_reference_parts_prefers_the_declared_parts() -> None:
    import torch
    from jkoflow.functional import ReferenceTerm
    from jkoflow.reference import reference_parts

    assert isinstance(Quadratic(), ReferenceTerm) and not isinstance(OldStyle(), ReferenceTerm)
    x = torch.tensor([[1.0], [2.0]])
    assert reference_parts(Quadratic())["V"](x).tolist() == [1.0, 4.0]
    assert list(reference_parts(OldStyle())) == ["W"]
    assert reference_parts(object()) == {}

    class Odd:
        def reference_parts(self) -> dict[str, object]:
            return {"U": abs}

    with pytest.raises(TypeError, match=r"gave \['U'\]"):
        reference_parts(Odd())


def _imports(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names.append("." * node.level + (node.module or ""))
    return names


def test_core_cli_imports_no_contrib_and_no_plugin() -> None:
    source = (CORE / "cli.py").read_text()
    assert "jkoflow.contrib" not in source
    for name in _imports(CORE / "cli.py"):
        assert "contrib" not in name and "plugins" not in name, name


@pytest.mark.parametrize("path", sorted(CORE.rglob("*.py")), ids=lambda p: str(p.relative_to(CORE)))
def test_core_imports_no_plugin(path: Path) -> None:
    for name in _imports(path):
        assert "contrib" not in name and not name.startswith("jkoflow.plugins"), (path, name)


def test_the_old_bench_pde_module_is_a_deprecated_alias() -> None:
    sys.modules.pop("jkoflow.bench_pde", None)
    with pytest.warns(DeprecationWarning, match="jkoflow.plugins.bench_pde"):
        old = importlib.import_module("jkoflow.bench_pde")
    new = importlib.import_module("jkoflow.plugins.bench_pde")
    for name in old.__all__:
        assert getattr(old, name) is getattr(new, name)
    assert old.CARRIED_COSINE is new.CARRIED_COSINE  # documented names beyond __all__ too
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        old.nope  # noqa: B018


def test_bench_pde_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["bench", "pde", "--help"])
    assert exit_.value.code == 0
    assert "usage: jkoflow bench pde" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["run", "plugins"])
def test_builtin_command_help_exits_0(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    assert f"usage: jkoflow {command}" in capsys.readouterr().out


def test_molecules_help_says_jkoflow_molecules(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("rdkit")
    pytest.importorskip("selfies")
    with pytest.raises(SystemExit) as exit_:
        main(["molecules", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: jkoflow molecules") and "python -m" not in out.splitlines()[0]


def test_molecules_plugin_is_silent_without_its_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    plugin = importlib.import_module("jkoflow.contrib.molecules.plugin")
    monkeypatch.setattr(plugin, "AVAILABLE", False)
    registry = Registry()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        registry.register(plugin, "jkoflow")
        assert registry.add_commands(argparse.ArgumentParser().add_subparsers()) == {}
        assert registry.bench_suites() == {}
    assert list(registry) == [] and registry.failures == []


def test_without_rdkit_nothing_is_reported(tmp_path: Path) -> None:
    """A base install (rdkit unimportable): no failure, no warning, nothing on stderr of
    ``jkoflow plugins``, no molecules command or suite; the rest works."""
    code = textwrap.dedent("""
        import contextlib, io, sys, warnings
        sys.modules["rdkit"] = None
        warnings.simplefilter("error")
        from jkoflow.cli import main
        from jkoflow.registry import default_registry
        reg = default_registry()
        assert reg.failures == [], reg.failures
        assert "molecules" not in reg.names("problem") and "heat" in reg.names("problem")
        assert sorted(reg.bench_suites()) == ["pde"]
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            assert main(["plugins"]) == 0
        assert err.getvalue() == "", err.getvalue()
        print("ok")
    """)
    res = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert res.returncode == 0 and res.stdout.strip().endswith("ok"), res.stderr
