"""Functionals ``F(rho)`` and the per-step context the solver hands them.

A JKO step minimizes, over the convex potential ``u``,

    F((grad u) # rho_t) + 1/(2 tau) * E_{x ~ rho_t} |grad u(x) - x|^2 .

A :class:`Functional` supplies the first part as an *inner objective*: a scalar tensor
whose gradient in ``theta`` equals that of ``F((grad u) # rho_t)`` estimated on the
particles. It declares which quantities it needs (``Need``) so the solver computes
``log det H_u`` only when some term asks for it. Terms compose linearly:
``2 * F + G`` and ``sum([F, G])`` are functionals whose needs are the union of their parts.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol, runtime_checkable

import attrs
from torch import Tensor


class Need(enum.Enum):
    """Quantities a functional may ask the solver for, beyond ``x`` and ``T(x)``."""

    LOGDET = "logdet"
    """``log det H_u(x_i)`` (value and a differentiable surrogate) at every particle."""
    LOG_DENSITY = "log_density"
    """The current log-density ``l_i^t = log rho_t(x_i)`` of every particle."""


@attrs.define(frozen=True)
class LogDet:
    """Per-particle ``log det H_u(x_i)``.

    ``value`` is a detached estimate; ``surrogate`` is a tensor whose gradient in ``theta``
    is (an unbiased estimate of) the gradient of ``log det H_u(x_i)``; its value need not
    equal ``value``. Shapes ``(n,)``.
    """

    value: Tensor
    surrogate: Tensor


@attrs.define(frozen=True)
class StepContext:
    """What a functional sees inside one JKO step.

    Attributes
    ----------
    x: particles of ``rho_t``, shape ``(n, d)`` (detached).
    y: pushed particles ``T(x) = grad u(x)``, shape ``(n, d)``, differentiable in ``theta``.
    tau: the JKO step size.
    logdet: ``log det H_u(x)`` when some term needs :attr:`Need.LOGDET`, else ``None``.
    log_density: ``log rho_t(x)`` (shape ``(n,)``) when known, else ``None``.
    """

    x: Tensor
    y: Tensor
    tau: float
    logdet: LogDet | None = None
    log_density: Tensor | None = None


class Functional(abc.ABC):
    """A term ``F(rho)`` of the objective of a Wasserstein gradient flow."""

    needs: frozenset[Need] = frozenset()

    @abc.abstractmethod
    def inner_objective(self, ctx: StepContext) -> Tensor:
        """Scalar whose ``theta``-gradient is that of ``F((grad u) # rho_t)``."""

    def value(self, x: Tensor, log_density: Tensor | None = None) -> float | None:
        """``F`` of the empirical measure on ``x`` (with per-particle log-densities where the
        term needs them); ``None`` when it cannot be computed from what is given."""
        return None

    def start(self, x0: Tensor, log_density0: Tensor | None = None) -> None:
        """Called by the solver once per run, before anything else, with ``rho_0``'s particles
        (terms such as ``D(rho, rho_0)`` keep them). Default: nothing."""

    # --- linear combinations -------------------------------------------------------------
    def terms(self) -> list[tuple[float, Functional]]:
        """``[(weight, term), ...]`` with ``self == sum(weight * term)``."""
        return [(1.0, self)]

    def __mul__(self, weight: float) -> Functional:
        if not isinstance(weight, (int, float)):
            return NotImplemented
        return WeightedSum([(float(weight) * w, f) for w, f in self.terms()])

    __rmul__ = __mul__

    def __add__(self, other: object) -> Functional:
        if isinstance(other, (int, float)) and other == 0:  # so that sum([...]) works
            return self
        if not isinstance(other, Functional):
            return NotImplemented
        return WeightedSum(self.terms() + other.terms())

    __radd__ = __add__

    def __repr__(self) -> str:
        return type(self).__name__


class WeightedSum(Functional):
    """``F = sum_k w_k F_k``; its needs are the union of the terms' needs."""

    def __init__(self, terms: Sequence[tuple[float, Functional]]) -> None:
        if not terms:
            raise ValueError("a WeightedSum needs at least one term")
        self._terms = [(float(w), f) for w, f in terms]
        self.needs = frozenset().union(*(f.needs for _, f in self._terms))

    def terms(self) -> list[tuple[float, Functional]]:
        return list(self._terms)

    def inner_objective(self, ctx: StepContext) -> Tensor:
        return sum(w * f.inner_objective(ctx) for w, f in self._terms)  # type: ignore[return-value]

    def start(self, x0: Tensor, log_density0: Tensor | None = None) -> None:
        for _, f in self._terms:
            f.start(x0, log_density0)

    def value(self, x: Tensor, log_density: Tensor | None = None) -> float | None:
        total = 0.0
        for w, f in self._terms:
            v = f.value(x, log_density)
            if v is None:
                return None
            total += w * v
        return total

    def __repr__(self) -> str:
        return " + ".join(f"{w:g}*{f!r}" for w, f in self._terms)


@runtime_checkable
class ReferenceTerm(Protocol):
    """A term that tells the exact 1-D reference (:mod:`jkoflow.reference`) what it is.

    ``reference_parts()`` returns some of ``{"V": V, "W": W, "f": f}``: ``V`` the potential of a
    potential energy ``int V d rho`` (a torch callable, ``(n, 1) -> (n,)``), ``W`` the kernel of an
    interaction energy ``1/2 int int W(x - y) d rho d rho`` (``(..., 1) -> (...)``), ``f`` the
    convex density of an internal energy ``int f(rho)`` (an object with ``f_over_r(log r)``
    ``= f(r) / r``); the term is the sum of the parts it returns, unweighted (the functional's
    weights apply on top). Optional: the reference reads a term without it by its attributes
    ``V``, ``W`` or ``f`` (:func:`jkoflow.reference.reference_parts`).
    """

    def reference_parts(self) -> Mapping[str, object]: ...


def total(functionals: Iterable[Functional]) -> Functional:
    """Sum of functionals (``sum`` with a readable error on an empty list)."""
    items = list(functionals)
    if not items:
        raise ValueError("no functional terms given: expected at least one")
    out: Functional = items[0]
    for f in items[1:]:
        out = out + f
    return out


__all__ = ["Functional", "LogDet", "Need", "ReferenceTerm", "StepContext", "WeightedSum", "total"]
