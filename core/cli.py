"""The ``jkoflow`` command line.

jkoflow [--threads N] [--debug] [--version] COMMAND ...

The commands come from plugins through the hook ``jkoflow_add_commands`` (see
:mod:`jkoflow.registry`): the built-in plugin ``jkoflow.plugins.commands`` adds

jkoflow run [SPEC.toml | PROBLEM] [--steps N] [--out DIR] [--overwrite] [--seed S] [--device D]
            [--nproc N] [--allow-import MODULE]
jkoflow resume DIR [--steps N] [--nproc N]
jkoflow show DIR [DIR ...]
jkoflow plugins [--json]

(``jkoflow.plugins.show`` and ``jkoflow.plugins.sweep`` add ``show`` and ``sweep SWEEP.toml``)

and other plugins add theirs. The one command of core is

jkoflow bench SUITE [...]         (the suites of the hook ``jkoflow_bench_suites``; ``jkoflow bench --help``)

Errors are one line on stderr and an exit code: 2 for bad input (a bad flag, spec or output
directory), 1 for a run that failed, 130 for an interrupted one; ``--debug`` re-raises instead,
to show the full traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

import attrs
import torch

from . import __version__
from .registry import Registry, RegistryError, default_registry, suite_main


@attrs.define
class CommandContext:
    """What a command handler gets besides its parsed arguments: ``handler(args, ctx)``.

    ``registry`` is the plugin registry the command line was built from; ``rest`` the arguments
    the command's parser did not recognise (empty unless the parser sets
    ``set_defaults(extra_args=True)``); ``parser`` the ``jkoflow`` parser (``parser.error(...)``
    exits 2). :func:`main` reports an exception a handler lets through by ``phase``, which the
    handler advances: "start" (parsing, plugin loading), "load" (reading an input file), "build"
    (resolving and building a spec), "run" (the run and writing its outputs); a ValueError,
    TypeError or OSError in "load" or "build" is bad input (exit 2), elsewhere a failure (exit 1).
    """

    command: str | None = None
    debug: bool = False
    phase: str = "start"
    registry: Registry | None = None
    rest: list[str] = attrs.field(factory=list)
    parser: argparse.ArgumentParser | None = None


def _bench(args: argparse.Namespace, ctx: CommandContext) -> int | None:
    """``jkoflow bench SUITE ARGS...``: run the suite a plugin gave through ``jkoflow_bench_suites``."""
    assert ctx.registry is not None
    suites = ctx.registry.bench_suites()
    names = sorted(suites)
    if args.suite is None:
        if any(a in ("-h", "--help") for a in ctx.rest):
            print(_bench_help(suites))
            return 0
        print(f"jkoflow bench: no suite given; expected one of {names}", file=sys.stderr)
        return 2
    if args.suite not in suites:
        print(f"jkoflow bench: unknown suite {args.suite!r}; expected one of {names}", file=sys.stderr)
        return 2
    main_ = suite_main(suites[args.suite])
    assert main_ is not None  # the registry keeps only runnable suites
    return main_(list(ctx.rest))


def _bench_help(suites: dict[str, Any]) -> str:
    lines = [
        "usage: jkoflow bench SUITE [ARGS...]",
        "",
        "Run a benchmark suite; `jkoflow bench SUITE --help` shows its arguments.",
        "",
        "suites:",
    ]
    for name in sorted(suites):
        doc = (getattr(suites[name], "__doc__", None) or "").strip()
        summary = " ".join(doc.split("\n\n")[0].split())
        summary = summary.removeprefix(f"``jkoflow bench {name}``: ")
        lines.append(f"  {name:<12} {summary}".rstrip())
    if not suites:
        lines.append("  (none: no installed plugin gives one)")
    return "\n".join(lines)


def positive_int(text: str) -> int:
    """An argparse ``type=``: a positive integer (for plugins' commands too)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive integer")
    return value


_positive_int = positive_int  # the former name

DEBUG_HELP = "show the full traceback of an error instead of a one-line message"


def add_allow_import(parser: argparse.ArgumentParser, help: str) -> None:
    """The repeatable ``--allow-import MODULE`` option of the commands that read a spec."""
    parser.add_argument("--allow-import", action="append", default=[], metavar="MODULE", help=help)


def build_parser(registry: Registry | None = None) -> argparse.ArgumentParser:
    """The ``jkoflow`` parser: global options, every plugin's commands (hook
    ``jkoflow_add_commands`` on ``registry``, default: :func:`default_registry`) and ``bench``."""
    parser = argparse.ArgumentParser(prog="jkoflow", description="JKO-ICNN Wasserstein gradient flows")
    parser.add_argument("--version", action="version", version=f"jkoflow {__version__}")
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        metavar="N",
        help="torch CPU threads (default: torch's choice)",
    )
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser("bench", help="benchmark suites (jkoflow bench --help lists them)", add_help=False)
    bench.add_argument("suite", nargs="?", help="the suite's name")
    bench.set_defaults(handler=_bench, extra_args=True)
    registry = registry if registry is not None else default_registry()
    registry.add_commands(sub)  # core's own command first: a plugin cannot take its name
    return parser


def main(argv: Sequence[str] | None = None, registry: Registry | None = None) -> int:
    """The ``jkoflow`` command: :func:`_main`, with its errors as one line and an exit code.

    2: bad input (a spec, registry or argument error, or a ValueError/TypeError/OSError while
    the spec is read, resolved and built); 1: any other error; 130: interrupted. ``--debug``
    re-raises instead. ``registry`` (default: :func:`default_registry`) gives the commands, the
    bench suites and every plugin the commands use.
    """
    state = CommandContext()
    try:
        return _main(argv, state, registry)
    except KeyboardInterrupt:
        if state.debug:
            raise
        print(f"{_prog(state)}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if state.debug:
            raise
        from .spec import SpecError

        message = _one_line(str(exc))
        bad_input = isinstance(exc, (SpecError, RegistryError)) or (
            state.phase in ("load", "build") and isinstance(exc, (ValueError, TypeError, OSError))
        )
        if bad_input:
            if state.phase in ("build", "run") and isinstance(exc, (SpecError, RegistryError)):
                message = f"invalid spec: {message}"
            print(f"{_prog(state)}: {message or type(exc).__name__}", file=sys.stderr)
            return 2
        what = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
        print(f"{_prog(state)}: {what} (rerun with --debug for the traceback)", file=sys.stderr)
        return 1


def _prog(state: CommandContext) -> str:
    return f"jkoflow {state.command}" if state.command else "jkoflow"


def _one_line(text: str) -> str:
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def _peek(argv: Sequence[str]) -> tuple[str | None, bool]:
    """The command named in ``argv`` and whether the global ``--debug`` precedes it, read before
    the parser exists (the plugins that make it may fail, and the error names the command)."""
    debug = False
    tokens = iter(argv)
    for token in tokens:
        if token == "--debug":
            debug = True
        elif token == "--threads":
            next(tokens, None)
        elif token == "--" or not token.startswith("-"):
            return (next(tokens, None) if token == "--" else token), debug
    return None, debug


def _main(
    argv: Sequence[str] | None = None, state: CommandContext | None = None, registry: Registry | None = None
) -> int:
    """Parse ``argv`` and run the command; errors propagate (:func:`main` reports them)."""
    state = state if state is not None else CommandContext()
    argv = list(sys.argv[1:] if argv is None else argv)
    state.command, state.debug = _peek(argv)
    registry = registry if registry is not None else default_registry()
    state.registry = registry
    parser = build_parser(registry)
    state.parser = parser
    args, rest = parser.parse_known_args(argv)
    state.command, state.debug = args.command, bool(args.debug)
    if args.threads:
        cores = os.cpu_count()
        if cores is not None and args.threads > cores:
            print(
                f"jkoflow: --threads {args.threads} is more than the {cores} CPU cores here (oversubscribed)",
                file=sys.stderr,
            )
        torch.set_num_threads(args.threads)
    if rest and not getattr(args, "extra_args", False):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    state.rest = rest
    handler = getattr(args, "handler", None)
    if handler is None:
        print(
            f"jkoflow {args.command}: the plugin that adds this command sets no handler "
            "(parser.set_defaults(handler=...))",
            file=sys.stderr,
        )
        return 1
    return int(handler(args, state) or 0)


if __name__ == "__main__":
    sys.exit(main())
