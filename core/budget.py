"""A memory estimate of a run, checked before anything is allocated.

A spec with ``n``, ``dim``, a width or ``steps`` of ``10^12`` must be refused with a message,
not attempted. :func:`estimate` adds up the big allocations of a run from its resolved spec
(``b`` bytes per number: 4 in float32, 8 in float64):

* the flow keeps every snapshot of the particles: ``(steps + 1) n d b`` (and as many
  log-densities, ``(steps + 1) n b``);
* the network: ``P`` parameters (for a net with ``widths = [w_1, ..., w_L]``,
  ``P ~= sum_l (d + w_{l-1}) w_l + w_L``) held 4 times (weights, gradients, two Adam moments)
  and once more per saved step (``steps + 1`` copies: the flow keeps every map);
* activations of one inner iteration on ``B`` particles (``n``, ``batch_size`` or
  ``fresh_samples``): ``6 B (d + sum_l w_l) b`` (forward, backward and the double backward
  of ``T = grad u``);
* Hessians when a term needs ``log det H_u``: ``4 B d^2 b``.

:func:`check` raises :class:`~jkoflow.spec.SpecError` naming the largest part's key when the
total exceeds the machine's physical memory. The figures are lower bounds of what torch
allocates (they leave out the temporaries of particular estimators) meant to stop runs that
cannot fit by orders of magnitude, not to predict peak memory.
"""

from __future__ import annotations

import os
from typing import Any

import attrs


@attrs.define(frozen=True)
class Part:
    """One allocation: the spec key that sets it, bytes, and the formula (for messages)."""

    key: str
    nbytes: float
    formula: str


def physical_memory() -> int | None:
    """Bytes of physical memory of this machine, or ``None`` when unknown."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, ValueError):
        return None


def _gib(nbytes: float) -> str:
    return f"{nbytes / 2**30:.3g} GiB"


def _parts(spec: Any) -> tuple[int, dict[str, Any], dict[str, Any]]:
    """``(dim, sampler table, settings)`` of a :class:`~jkoflow.spec.ResolvedSpec` or of a
    resolved spec dict without a problem."""
    if hasattr(spec, "settings"):
        return int(spec.dim), dict(spec.sampler), dict(spec.settings)
    return int(spec["dim"]), dict(spec["sampler"]), dict(spec)


def estimate(spec: Any, needs_logdet: bool) -> list[Part]:
    """The big allocations of a run of the resolved ``spec`` (module docstring): a
    :class:`~jkoflow.spec.ResolvedSpec`, or a resolved spec dict without a problem."""
    d, sampler, settings = _parts(spec)
    n = int(sampler["n"])
    b = 8 if settings.get("dtype") == "float64" else 4
    solver = settings["solver"]
    steps = int(solver["steps"])
    batch = int(solver.get("fresh_samples") or solver.get("batch_size") or n)
    widths = settings["potential"].get("widths") or []
    widths = [int(w) for w in widths] if isinstance(widths, (list, tuple)) else []
    params = sum((d + w_prev) * w for w_prev, w in zip([0, *widths], widths)) + (widths[-1] if widths else 0)
    params += d * d + d  # a quadratic / linear part, as the built-in nets have
    batch_key = (
        "solver.fresh_samples"
        if solver.get("fresh_samples")
        else "solver.batch_size"
        if solver.get("batch_size")
        else "sampler.n"
    )

    def key(factors: dict[str, float]) -> str:  # the setting that makes this part large
        return max(factors, key=lambda k: factors[k])

    wsum = sum(widths)
    parts = [
        Part(
            key({"solver.steps": steps + 1, "sampler.n": n, "dim": d + 1}),
            (steps + 1) * n * (d + 1) * b,
            f"(steps + 1) x n x (dim + 1) x {b} B: every snapshot of the particles",
        ),
        Part(
            key({"potential.widths": wsum + 1, "dim": d, "solver.steps": steps + 5}),
            params * b * (4 + steps + 1),
            f"{params} parameters x {b} B x (4 + steps + 1): the net, its optimizer state and every saved map",
        ),
        Part(
            key({batch_key: batch, "potential.widths": wsum, "dim": d}),
            6 * batch * (d + wsum) * b,
            f"6 x {batch} x (dim + sum(widths)) x {b} B: activations of one inner iteration",
        ),
    ]
    if needs_logdet:
        parts.append(
            Part(
                key({"dim": d * d, batch_key: batch}),
                4 * batch * d * d * b,
                f"4 x {batch} x dim^2 x {b} B: Hessians for log det H_u",
            )
        )
    return parts


def check(spec: Any, needs_logdet: bool, limit: int | None = None) -> None:
    """Refuse (``SpecError``) a run whose :func:`estimate` exceeds ``limit`` bytes (default:
    the physical memory)."""
    from .spec import SpecError

    limit = physical_memory() if limit is None else limit
    if limit is None:
        return
    parts = estimate(spec, needs_logdet)
    total = sum(p.nbytes for p in parts)
    if total > limit:
        big = max(parts, key=lambda p: p.nbytes)
        d, sampler, settings = _parts(spec)
        sizes = (
            f"dim={d}, n={sampler['n']}, steps={settings['solver']['steps']}, "
            f"widths={settings['potential'].get('widths')}"
        )
        raise SpecError(
            big.key,
            f"this run needs at least {_gib(total)} of memory ({sizes}); the largest part is "
            f"{_gib(big.nbytes)} = {big.formula}; this machine has {_gib(limit)}",
        )


__all__ = ["Part", "check", "estimate", "physical_memory"]
