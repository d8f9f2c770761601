"""The ideal 1-D JKO scheme in Lagrangian (quantile) coordinates: a reference for jkoflow.

In one dimension a probability measure ``rho`` is its quantile function ``X = F^{-1}: (0,1) -> R``
and ``W_2^2(rho, rho') = int_0^1 |X(u) - X'(u)|^2 du``. Put ``M`` particles of mass ``h = 1/M`` at
the quantiles ``u_i = (i - 1/2) h``; the density between neighbours is ``h / s_i`` with
``s_i = X_{i+1} - X_i``. One JKO step

    X^{k+1} = argmin_X  h/(2 tau) sum_i |X_i - X^k_i|^2 + E(X)

with the energy (internal + potential + interaction)

    E(X) = sum_i s_i f(h / s_i)  +  h sum_i V(X_i)  +  h^2/2 sum_{i != j} W(X_i - X_j)

is a strictly convex problem on the ordered cone ``X_1 < ... < X_M`` (``s f(h/s)`` is the
perspective of the convex ``f``; ``W`` is convex on each half-line in the kernels used here).
Newton's method with a backtracking line search that keeps the order converges in a few
iterations to machine precision. The Hessian is tridiagonal without interaction (internal
energy couples neighbours only; ``V`` and the transport term are diagonal) and dense with it.

This solves the JKO scheme itself (implicit Euler in Wasserstein space), not the PDE: its
trajectory with step ``tau`` is what a perfect JKO-ICNN inner solver would produce, so the
deviation of jkoflow's particles from it isolates the inner solver's error from the O(tau)
time-discretization error. Compare a particle that started at ``x_0`` with the ideal trajectory at
its quantile ``u = F_0(x_0)`` (:meth:`IdealJKO1D.at`).

The energy terms are plain callables on torch tensors (no plugin imports): ``f(r)`` elementwise,
``V(x)`` on ``(n, 1)`` returning ``(n,)``, ``W(z)`` on ``(..., 1)`` returning ``(...)``; their
derivatives come from autograd in float64.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import attrs
import numpy as np
import torch
from scipy.linalg import solve_banded
from torch import Tensor

Fn = Callable[[Tensor], Tensor]


@attrs.define
class Energy1D:
    """``E = sum_k w_k f_k`` on the real line: internal ``f(r)``, potential ``V(x)``, kernel ``W(z)``.

    Each is ``None`` or a torch callable; ``weights`` are folded into the callables by
    :func:`energy_from_functional`.
    """

    f: Fn | None = None
    V: Fn | None = None
    W: Fn | None = None


def _derivs(fn: Callable[[Tensor], Tensor], s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Value, first and second derivative of an elementwise scalar function at ``s`` (float64)."""
    with torch.enable_grad():
        t = torch.as_tensor(s, dtype=torch.float64).clone().requires_grad_(True)
        val = fn(t)
        (d1,) = torch.autograd.grad(val.sum(), t, create_graph=True)
        (d2,) = torch.autograd.grad(d1.sum(), t)
    return val.detach().numpy(), d1.detach().numpy(), d2.detach().numpy()


REFERENCE_PARTS = ("V", "W", "f")
"""The keys of :func:`reference_parts`: potential ``V``, interaction kernel ``W``, internal ``f``."""


def reference_parts(term: object) -> dict[str, Any]:
    """What the 1-D reference reads off one (unweighted) term: ``{"V": V}`` for a potential energy
    ``int V d rho``, ``{"W": W}`` for an interaction energy, ``{"f": f}`` for an internal energy
    (``f`` exposing ``f_over_r(log r)``); several keys for a term that is their sum; ``{}`` for
    a term of another kind.

    A term declares its parts with ``reference_parts()`` (the protocol
    :class:`jkoflow.functional.ReferenceTerm`). A term that does not is read as before by its
    attributes: a callable ``V``, else a callable ``W``, else an ``f`` with ``f_over_r``. This is
    the one place that reads terms so; every user of the reference (``jkoflow bench pde``
    included) goes through it.
    """
    declared = getattr(term, "reference_parts", None)
    if callable(declared):
        parts = dict(declared())
        unknown = sorted(set(parts) - set(REFERENCE_PARTS))
        if unknown:
            raise TypeError(
                f"term {term!r}: reference_parts() gave {unknown}; expected keys among {list(REFERENCE_PARTS)}"
            )
        return parts
    V, W, f = (getattr(term, name, None) for name in REFERENCE_PARTS)
    if callable(V):
        return {"V": V}
    if callable(W):
        return {"W": W}
    if f is not None and hasattr(f, "f_over_r"):
        return {"f": f}
    return {}


def _r_times_f_over_r(f_over_r: Callable[[Tensor], Tensor]) -> Fn:
    """``r -> r f_over_r(log r) = f(r)``."""
    return lambda r: r * f_over_r(torch.log(r))


def energy_from_functional(functional: object) -> Energy1D:
    """Read the 1-D energy off a jkoflow functional: the :func:`reference_parts` of its weighted terms.

    A potential ``V`` and a kernel ``W`` enter as they are, an internal-energy density ``f`` through
    ``r f(r) = r f_over_r(log r)``. A term with no part raises ``TypeError`` naming it: the
    reference covers these three kinds only.
    """
    f_parts: list[tuple[float, Callable[[Tensor], Tensor]]] = []
    v_parts: list[tuple[float, Callable[[Tensor], Tensor]]] = []
    w_parts: list[tuple[float, Callable[[Tensor], Tensor]]] = []
    for weight, term in functional.terms():  # type: ignore[attr-defined]
        parts = reference_parts(term)
        if not parts:
            raise TypeError(
                f"term {term!r}: the 1-D reference handles potential (V), interaction (W) and internal (f) energies only"
            )
        if "V" in parts:
            v_parts.append((weight, parts["V"]))
        if "W" in parts:
            w_parts.append((weight, parts["W"]))
        if "f" in parts:
            f_parts.append((weight, _r_times_f_over_r(parts["f"].f_over_r)))

    def combine(parts: list[tuple[float, Callable[[Tensor], Tensor]]], lift: bool) -> Fn | None:
        if not parts:
            return None

        def fn(x: Tensor) -> Tensor:
            arg = x.unsqueeze(-1) if lift else x
            return sum(w * g(arg) for w, g in parts)  # type: ignore[return-value]

        return fn

    return Energy1D(f=combine(f_parts, False), V=combine(v_parts, True), W=combine(w_parts, True))


def quantiles(
    cdf: Callable[[np.ndarray], np.ndarray], u: np.ndarray, lo: float, hi: float, iters: int = 100
) -> np.ndarray:
    """``F^{-1}(u)`` for a continuous non-decreasing ``cdf`` with ``F(lo) <= u <= F(hi)`` by
    vectorized bisection (to machine precision after ~60 halvings)."""
    u = np.asarray(u, dtype=float)
    a = np.full_like(u, lo)
    b = np.full_like(u, hi)
    for _ in range(iters):
        mid = 0.5 * (a + b)
        below = cdf(mid) < u
        a = np.where(below, mid, a)
        b = np.where(below, b, mid)
    return 0.5 * (a + b)


class NewtonFailed(RuntimeError):
    """The Newton iteration of a reference JKO step did not converge."""


@attrs.define
class IdealJKO1D:
    """The JKO scheme solved to machine precision in quantile coordinates (see module docstring).

    Parameters
    ----------
    energy: the functional (internal ``f``, potential ``V``, kernel ``W``).
    tau: JKO step size.
    tol: stop Newton when the squared Newton decrement ``-grad . d`` falls below
        ``tol * (1 + |objective|)`` and take that last step in full (round-off keeps ``|grad|``
        near ``1e-9 / h`` and the decrement near ``1e-17``; past ``1e-14`` the remaining
        position error is below ``1e-7`` and the last step removes it to round-off).
    max_newton: Newton iterations per step before :class:`NewtonFailed`.
    """

    energy: Energy1D
    tau: float
    tol: float = 1e-14
    max_newton: int = 100

    def objective(
        self, X: np.ndarray, Xp: np.ndarray
    ) -> tuple[float, np.ndarray, np.ndarray | tuple[np.ndarray, np.ndarray]]:
        """Objective, gradient and Hessian (``(diag, off)`` when tridiagonal, else dense)."""
        M = X.size
        h = 1.0 / M
        val = float(h / (2 * self.tau) * np.sum((X - Xp) ** 2))
        grad = h * (X - Xp) / self.tau
        diag = np.full(M, h / self.tau)
        off = np.zeros(M - 1)
        e = self.energy
        if e.V is not None:
            v, dv, d2v = _derivs(e.V, X)
            val += h * float(v.sum())
            grad = grad + h * dv
            diag = diag + h * d2v
        if e.f is not None:
            s = np.diff(X)
            g, dg, d2g = _derivs(lambda t: t * e.f(h / t), s)  # type: ignore[misc]
            val += float(g.sum())
            grad = grad.copy()
            grad[:-1] -= dg
            grad[1:] += dg
            diag = diag.copy()
            diag[:-1] += d2g
            diag[1:] += d2g
            off = off - d2g
        dense = None
        if e.W is not None:
            z = X[:, None] - X[None, :]
            eye = np.eye(M, dtype=bool)
            z = np.where(eye, 1.0, z)
            w, dw, d2w = _derivs(e.W, z)
            w, dw, d2w = (np.where(eye, 0.0, a) for a in (w, dw, d2w))
            val += 0.5 * h * h * float(w.sum())
            grad = grad + h * h * dw.sum(axis=1)
            dense = -h * h * d2w
            dense[np.diag_indices(M)] = h * h * d2w.sum(axis=1)
            dense = dense + np.diag(diag) + np.diag(off, 1) + np.diag(off, -1)
        return val, grad, (dense if dense is not None else (diag, off))

    def step(self, Xp: np.ndarray) -> tuple[np.ndarray, int]:
        """One JKO step from the ordered quantile particles ``Xp``; returns ``(X, newton_iters)``."""
        X = Xp.copy()
        h = 1.0 / X.size
        val, grad, hess = self.objective(X, Xp)
        for it in range(self.max_newton):
            if isinstance(hess, tuple):
                diag, off = hess
                banded = np.zeros((3, X.size))
                banded[0, 1:] = off
                banded[1] = diag
                banded[2, :-1] = off
                d = -solve_banded((1, 1), banded, grad)
            else:
                # torch's LAPACK honours torch.set_num_threads (numpy's BLAS may spin on busy cores)
                d = -torch.linalg.solve(torch.from_numpy(hess), torch.from_numpy(grad)).numpy()
            slope = float(grad @ d)
            if -slope <= self.tol * (1.0 + abs(val)):
                Xn = X + d  # the last (tiny) Newton step: quadratic convergence, no line search
                return (Xn if np.all(np.diff(Xn) > 0) else X), it
            step = 1.0
            while True:
                Xn = X + step * d
                if np.all(np.diff(Xn) > 0):
                    vn, gn, hn = self.objective(Xn, Xp)
                    if vn <= val + 1e-4 * step * slope:
                        break
                step *= 0.5
                if step < 1e-12:
                    raise NewtonFailed(
                        f"line search failed at Newton iteration {it} (decrement {-slope:.3g})"
                    )
            X, val, grad, hess = Xn, vn, gn, hn
        raise NewtonFailed(
            f"no convergence in {self.max_newton} Newton iterations (decrement {-slope:.3g}, h = {h:.3g})"
        )

    def run(self, X0: np.ndarray, steps: int) -> IdealTrajectory:
        """``steps`` JKO steps from the quantile particles ``X0`` (at ``u_i = (i - 1/2)/M``)."""
        X0 = np.asarray(X0, dtype=float)
        if X0.ndim != 1 or np.any(np.diff(X0) <= 0):
            raise ValueError("X0 must be a strictly increasing 1-D array of quantile particles")
        xs = [X0]
        iters = []
        for _ in range(steps):
            X, it = self.step(xs[-1])
            xs.append(X)
            iters.append(it)
        return IdealTrajectory(tau=self.tau, X=np.stack(xs), newton_iters=iters)


@attrs.define
class IdealTrajectory:
    """Quantile particles ``X[k, i]`` of the ideal JKO scheme after ``k`` steps, ``u_i = (i - 1/2)/M``."""

    tau: float
    X: np.ndarray
    newton_iters: list[int]

    @property
    def u(self) -> np.ndarray:
        M = self.X.shape[1]
        return (np.arange(M) + 0.5) / M

    def at(self, u: np.ndarray, step: int) -> np.ndarray:
        """``X^step(u)`` by linear interpolation (linear extrapolation in the outer half-cells)."""
        grid, X = self.u, self.X[step]
        u = np.asarray(u, dtype=float)
        out = np.interp(u, grid, X)
        left, right = u < grid[0], u > grid[-1]
        out[left] = X[0] + (u[left] - grid[0]) * (X[1] - X[0]) / (grid[1] - grid[0])
        out[right] = X[-1] + (u[right] - grid[-1]) * (X[-1] - X[-2]) / (grid[-1] - grid[-2])
        return out


def ideal_jko(
    functional: object,
    quantile0: Callable[[np.ndarray], np.ndarray],
    tau: float,
    steps: int,
    M: int = 2000,
) -> IdealTrajectory:
    """Ideal JKO trajectory of a jkoflow functional from ``rho_0`` given by its quantile function."""
    u = (np.arange(M) + 0.5) / M
    return IdealJKO1D(energy_from_functional(functional), tau).run(quantile0(u), steps)


def deviation(traj: IdealTrajectory, u: np.ndarray, x: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """``mean_i |x^k_i - X^k(u_i)|`` for every step ``k`` of particle positions ``x[k]`` (shape ``(n,)``)."""
    return np.array(
        [float(np.mean(np.abs(np.asarray(xk).ravel() - traj.at(u, k)))) for k, xk in enumerate(x)]
    )


__all__ = [
    "Energy1D",
    "IdealJKO1D",
    "IdealTrajectory",
    "NewtonFailed",
    "deviation",
    "energy_from_functional",
    "ideal_jko",
    "quantiles",
    "reference_parts",
]
