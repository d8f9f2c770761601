"""The import policy: a spec reaches code only through registered plugins unless the user
allows a module (``allow_imports`` / ``jkoflow run --allow-import``); a refused import string
never imports anything, even for a problem (which is instantiated while the spec resolves)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import jkoflow
import pytest
from jkoflow import spec as specmod
from jkoflow.registry import ImportNotAllowedError, ImportPolicy, default_registry, import_policy

BASE = {
    "dim": 1,
    "sampler": {"kind": "gaussian", "n": 10},
    "solver": {"tau": 0.1, "steps": 1, "inner_iters": 2},
}


@pytest.fixture
def canary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A module ``jkoflow_canary`` whose import writes ``imported`` and whose ``V`` and
    ``boom`` write ``called``: any of these files proves code ran."""
    (tmp_path / "jkoflow_canary.py").write_text(
        textwrap.dedent(f"""
        from pathlib import Path
        Path({str(tmp_path)!r}, "imported").write_text("yes")

        def V(x):
            Path({str(tmp_path)!r}, "called").write_text("yes")
            return 0.5 * x.pow(2).sum(-1)

        def boom(**kwargs):
            Path({str(tmp_path)!r}, "called").write_text("yes")
            raise SystemExit("boom ran")
        """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


@pytest.mark.parametrize(
    ("where", "spec"),
    [
        ("terms[0].kind", {**BASE, "terms": [{"kind": "jkoflow_canary:boom"}]}),
        ("problem.kind", {"problem": {"kind": "jkoflow_canary:boom"}}),
        ("terms[0].V", {**BASE, "terms": [{"kind": "potential", "V": "jkoflow_canary:V"}]}),
        ("terms[0].V.kind", {**BASE, "terms": [{"kind": "potential", "V": {"kind": "jkoflow_canary:boom"}}]}),
        (
            "sampler.kind",
            {**BASE, "sampler": {"kind": "jkoflow_canary:boom", "n": 10}, "terms": [{"kind": "entropy"}]},
        ),
        (
            "solver.logdet.kind",
            {
                **BASE,
                "solver": {**BASE["solver"], "logdet": "jkoflow_canary:boom"},
                "terms": [{"kind": "entropy"}],
            },
        ),
    ],
)
def test_a_spec_cannot_import_what_the_user_did_not_allow(canary: Path, where: str, spec: dict) -> None:
    for call in (specmod.resolve, specmod.build):
        with pytest.raises(specmod.SpecError, match="--allow-import jkoflow_canary") as info:
            call(spec)
        assert info.value.path == where
    assert not (canary / "imported").exists() and not (canary / "called").exists()


def test_allowing_a_module_loads_it_and_records_the_import(canary: Path) -> None:
    spec = {**BASE, "terms": [{"kind": "potential", "V": "jkoflow_canary:V"}]}
    run = specmod.build(spec, allow_imports=["jkoflow_canary"])
    assert run.imports == ["jkoflow_canary:V"]
    assert (canary / "imported").exists()
    flow = run.execute()
    assert flow.steps == 1 and (canary / "called").exists()
    # allowing another module is not enough; a spec cannot allow itself (no such key)
    with pytest.raises(specmod.SpecError, match="allowed: other"):
        specmod.build(spec, allow_imports=["other"])
    with pytest.raises(specmod.SpecError, match="unknown top-level key|--allow-import jkoflow_canary"):
        specmod.build({**spec, "allow_imports": ["jkoflow_canary"]})
    with pytest.raises(specmod.SpecError, match="unknown top-level key"):
        specmod.build({**BASE, "terms": [{"kind": "entropy"}], "allow_imports": ["jkoflow_canary"]})


def test_submodules_of_an_allowed_package_are_allowed_but_not_its_prefix_siblings() -> None:
    policy = ImportPolicy(("mypkg",))
    assert policy.permits("mypkg") and policy.permits("mypkg.energies")
    assert not policy.permits("mypkgevil") and not policy.permits("os")
    with pytest.raises(ValueError, match="expected a module name"):
        ImportPolicy(("mypkg:attr",))


def test_plain_python_may_still_use_import_strings() -> None:
    """Outside spec processing the caller is Python code: import strings keep working there."""
    registry = default_registry()
    assert registry.get("potential_fn", "math:fabs") is __import__("math").fabs
    with import_policy(()), pytest.raises(ImportNotAllowedError):
        registry.get("potential_fn", "math:fabs")


def test_registered_names_need_no_allowance() -> None:
    run = jkoflow.build({**BASE, "terms": [{"kind": "potential", "V": {"kind": "quadratic", "center": 1.0}}]})
    assert run.imports == []
