"""About 70 bad inputs, by hand: each gets one clear line on stderr naming the bad key or value
and exit code 2 from ``jkoflow``, before anything runs. The table of docs/robustness.md."""

from __future__ import annotations

from pathlib import Path

import pytest
from jkoflow.cli import main

BASE = 'dim = 1\n[sampler]\nkind = "gaussian"\nn = 10\n[solver]\ntau = 0.1\nsteps = 1\ninner_iters = 2\n[[terms]]\nkind = "entropy"\n'
CASES: list[tuple[str, str | None, list[str] | None, str]] = []


def add(name: str, text: str | None = None, args: list[str] | None = None, *, expect: str) -> None:
    CASES.append((name, text, args, expect))


add("empty file", "", expect="dim: missing; a spec without a problem must give")
add("dim string", BASE.replace("dim = 1", 'dim = "1"'), expect="dim: got '1'; expected a positive integer")
add("dim 0", BASE.replace("dim = 1", "dim = 0"), expect="dim: got 0; expected a positive integer")
add("dim 1.5", BASE.replace("dim = 1", "dim = 1.5"), expect="dim: got 1.5; expected a positive integer")
add(
    "sampler int",
    BASE.replace('[sampler]\nkind = "gaussian"\nn = 10\n', "").replace("dim = 1\n", "dim = 1\nsampler = 5\n"),
    expect="sampler: got 5; expected a table (or a name)",
)
add(
    "sampler no kind",
    BASE.replace('kind = "gaussian"\n', ""),
    expect="sampler.kind: missing or not a string; expected",
)
add("n 0", BASE.replace("n = 10", "n = 0"), expect="sampler.n: got 0; expected a positive integer (n")
add("n -5", BASE.replace("n = 10", "n = -5"), expect="sampler.n: got -5; expected a positive integer (")
add("n 1.5", BASE.replace("n = 10", "n = 1.5"), expect="sampler.n: got 1.5; expected a positive integer")
add(
    "terms table",
    BASE.replace('[[terms]]\nkind = "entropy"\n', '[terms]\nkind = "entropy"\n'),
    expect="terms: got {'kind': 'entropy'}; expected a non-e",
)
add(
    "terms empty",
    BASE.replace('[[terms]]\nkind = "entropy"\n', "").replace("dim = 1\n", "dim = 1\nterms = []\n"),
    expect="terms: got []; expected a non-empty list of tabl",
)
add(
    "terms [5]",
    BASE.replace('[[terms]]\nkind = "entropy"\n', "").replace("dim = 1\n", "dim = 1\nterms = [5]\n"),
    expect="terms[0]: got 5; expected a table with 'kind' an",
)
add(
    "term no kind",
    BASE.replace('kind = "entropy"', "weight = 1.0"),
    expect="terms[0].kind: missing or not a string; expected",
)
add(
    "weight str",
    BASE.replace('kind = "entropy"', 'kind = "entropy"\nweight = "1"'),
    expect="terms[0].weight: got '1'; expected a finite numb",
)
add("tau 0", BASE.replace("tau = 0.1", "tau = 0"), expect="solver: tau=0: expected a positive number, finit")
add(
    "tau -1", BASE.replace("tau = 0.1", "tau = -1"), expect="solver: tau=-1: expected a positive number, fini"
)
add("tau str", BASE.replace("tau = 0.1", 'tau = "0.1"'), expect="solver.tau: got '0.1' (str); expected float")
add(
    "tau inf",
    BASE.replace("tau = 0.1", "tau = inf"),
    expect="solver.tau: got inf; expected finite numbers (no",
)
add(
    "steps -1",
    BASE.replace("steps = 1", "steps = -1"),
    expect="solver: steps=-1: expected a non-negative intege",
)
add(
    "inner 1.5",
    BASE.replace("inner_iters = 2", "inner_iters = 1.5"),
    expect="solver.inner_iters: got 1.5 (float); expected in",
)
add(
    "lr 0",
    BASE.replace("inner_iters = 2", "inner_iters = 2\nlr = 0"),
    expect="solver: lr=0: expected a positive number, finite",
)
add(
    "optimizer x",
    BASE.replace("inner_iters = 2", 'inner_iters = 2\noptimizer = "adamx"'),
    expect="solver: optimizer='adamx': expected one of ['ada",
)
add(
    "logdet nope",
    BASE.replace("inner_iters = 2", 'inner_iters = 2\nlogdet = "nope"'),
    expect="solver.logdet.kind: unknown logdet 'nope' (known",
)
add(
    "logdet 5",
    BASE.replace("inner_iters = 2", "inner_iters = 2\nlogdet = 5"),
    expect="solver.logdet: got 5; expected a name or a table",
)
add(
    "batch 1",
    BASE.replace("inner_iters = 2", "inner_iters = 2\nbatch_size = 1"),
    expect="solver: batch_size=1: expected an integer >= 2 o",
)
add(
    "fresh 1",
    BASE.replace("inner_iters = 2", "inner_iters = 2\nfresh_samples = 1"),
    expect="solver: fresh_samples=1: expected an integer >=",
)
add(
    "lr_schedule x",
    BASE.replace("inner_iters = 2", 'inner_iters = 2\nlr_schedule = "x"'),
    expect="solver: lr_schedule='x': expected one of ['const",
)
add(
    "solver seed",
    BASE.replace("inner_iters = 2", "inner_iters = 2\nseed = 3"),
    expect="solver.seed: is not a solver setting here: use t",
)
add(
    "potential nope",
    BASE + '[potential]\nkind = "nope"\n',
    expect="potential.kind: unknown net 'nope' (known: ficnn",
)
add(
    "widths []",
    BASE + '[potential]\nkind = "ficnn"\nwidths = []\n',
    expect="potential: widths=[]: expected a non-empty list",
)
add(
    "widths [0]",
    BASE + '[potential]\nkind = "ficnn"\nwidths = [0]\n',
    expect="potential: widths=[0]: expected a non-empty list",
)
add(
    "widths [-1]",
    BASE + '[potential]\nkind = "ficnn"\nwidths = [-1]\n',
    expect="potential: widths=[-1]: expected a non-empty lis",
)
add(
    "widths str",
    BASE + '[potential]\nkind = "ficnn"\nwidths = "32"\n',
    expect="potential.widths: got '32' (str); expected Seque",
)
add(
    "widths [1.5]",
    BASE + '[potential]\nkind = "ficnn"\nwidths = [1.5]\n',
    expect="potential.widths: got [1.5] (list); expected Seq",
)
add(
    "potential dim",
    BASE + '[potential]\nkind = "ficnn"\ndim = 3\n',
    expect="potential.dim: is set by jkoflow itself and cann",
)
add("problem 5", "problem = 5\n", expect="problem: got 5; expected a table (or a name)")
add("problem {}", "[problem]\n", expect="problem.kind: missing or not a string; expected")
add("problem nope", '[problem]\nkind = "nope"\n', expect="problem.kind: unknown problem 'nope' (known: agg")
add(
    "problem bad param",
    '[problem]\nkind = "heat"\nfoo = 1\n',
    expect="problem.foo: unknown parameter of problem 'heat'",
)
add(
    "problem n 0",
    '[problem]\nkind = "heat"\nn = 0\n',
    expect="sampler.n: got 0; expected a positive integer (n",
)
add(
    "problem std -1",
    '[problem]\nkind = "heat"\nstd = -1.0\n',
    expect="problem: std=-1.0: expected a positive number",
)
add("problem dim 0", '[problem]\nkind = "heat"\ndim = 0\n', expect="dim: got 0; expected a positive integer")
add("porous m 1", '[problem]\nkind = "porous-medium"\nm = 1.0\n', expect="problem: m=1.0: expected m > 1")
add(
    "porous t0 0",
    '[problem]\nkind = "porous-medium"\nt0 = 0.0\n',
    expect="problem: t0=0.0: expected t0 > 0 (the profile is",
)
add(
    "aggregation dim 3",
    '[problem]\nkind = "aggregation"\ndim = 3\n',
    expect="problem: dim=3: the exact steady state is known",
)
add("dtype float16", 'dtype = "float16"\n' + BASE, expect="dtype: got 'float16'; expected one of: float32,")
add("seed -1", "seed = -1\n" + BASE, expect="seed: got -1; expected an integer in [0, 2^63)")
add("seed 1.5", "seed = 1.5\n" + BASE, expect="seed: got 1.5; expected an integer in [0, 2^63)")
add("unknown top", "foo = 1\n" + BASE, expect="foo: unknown top-level key; expected one of: pro")
add(
    "porous term m 1",
    BASE.replace('kind = "entropy"', 'kind = "porous_medium"\nm = 1.0'),
    expect="terms[0]: m=1.0: expected m > 1",
)
add(
    "internal f nope",
    BASE.replace('kind = "entropy"', 'kind = "internal"\nf = "nope"'),
    expect="terms[0]: unknown internal_fn 'nope'; did you me",
)
add(
    "interaction W nope",
    BASE.replace('kind = "entropy"', 'kind = "interaction"\nW = "nope"'),
    expect="terms[0]: unknown kernel 'nope' (known: aggregat",
)
add(
    "potential V 5",
    BASE.replace('kind = "entropy"', 'kind = "potential"\nV = 5'),
    expect="terms[0].V: got 5 (int); expected str | dict[str",
)
add(
    "V quadratic matrix str",
    BASE.replace('kind = "entropy"', 'kind = "potential"\nV = { kind = "quadratic", matrix = "x" }'),
    expect="terms[0]: matrix='x': expected a number, a list",
)
add(
    "divergence nope",
    BASE.replace('kind = "entropy"', 'kind = "divergence_to_start"\ndivergence = "nope"'),
    expect="terms[0]: unknown divergence 'nope' (known: ener",
)
add(
    "check_convexity str",
    BASE.replace('kind = "entropy"', 'kind = "potential"\ncheck_convexity = "yes"'),
    expect="terms[0].check_convexity: got 'yes' (str); expec",
)
add(
    "V import",
    BASE.replace('kind = "entropy"', 'kind = "potential"\nV = "os:system"'),
    expect="terms[0].V: import string 'os:system': a spec ma",
)
add(
    "logdet table bad",
    BASE.replace("inner_iters = 2", 'inner_iters = 2\nlogdet = { kind = "exact", foo = 1 }'),
    expect="solver.logdet.foo: unknown parameter of logdet '",
)
add(
    "logdet hutchinson probes 0",
    BASE.replace("inner_iters = 2", 'inner_iters = 2\nlogdet = { kind = "stochastic", probes = 0 }'),
    expect="solver.logdet.kind: unknown logdet 'stochastic'",
)
add(
    "cli steps abc",
    None,
    ["run", "heat", "--steps", "abc"],
    expect="error: argument --steps: 'abc': expected a posit",
)
add(
    "cli seed -1",
    None,
    ["run", "heat", "--seed", "-1", "--steps", "1"],
    expect="seed: got -1; expected an integer in [0, 2^63)",
)
add(
    "cli seed huge",
    None,
    ["run", "heat", "--seed", str(2**80)],
    expect="seed: got 1208925819614629174706176; expected an",
)
add("cli extra pos", None, ["run", "heat", "heat"], expect="error: unrecognized arguments: heat")
add("cli empty target", None, ["run", ""], expect="an empty target: expected a spec file (SPEC.toml")
add("cli out empty", None, ["run", "heat", "--out", ""], expect="--out '': expected a directory path")
add("cli unknown cmd", None, ["frobnicate"], expect="error: argument command: invalid choice: 'frobni")
add("cli no cmd", None, [], expect="error: the following arguments are required: com")
add("cli bench pde bogus", None, ["bench", "pde", "--bogus"], expect="error: unrecognized arguments: --bogus")
add("cli bench nope", None, ["bench", "nope"], expect="unknown suite 'nope'; expected one of ['molecule")
add(
    "cli allow bad",
    None,
    ["run", "heat", "--allow-import", "os:system", "--steps", "1"],
    expect="allowed import 'os:system': expected a module na",
)


@pytest.mark.parametrize(("name", "text", "args", "expect"), CASES, ids=[c[0] for c in CASES])
def test_a_bad_input_gets_one_clear_line_and_exit_2(
    name: str,
    text: str | None,
    args: list[str] | None,
    expect: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if text is not None:
        spec = tmp_path / "s.toml"
        spec.write_text(text)
        args = ["run", str(spec), "--out", str(tmp_path / "out"), "--no-progress"]
    assert args is not None
    try:
        code = main(args)
    except SystemExit as exc:  # argparse errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert expect in last, last
    if text is not None:
        assert not (tmp_path / "out" / "spec.toml").exists()  # refused before anything is written
