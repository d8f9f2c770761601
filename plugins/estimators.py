"""Built-in log-determinant estimators: ``exact``, ``slq``, ``hutchinson_cg``, ``hutchpp``, ``auto``.

Internal energies need, for every particle, ``log det H_u(x_i)`` (the change of variables
``l_i <- l_i - log det H_u(x_i)``) and its gradient in ``theta``,
``d/dtheta log det H = tr(H^{-1} dH/dtheta)``. In high dimension both are estimated from
Hessian-vector products only (paper App. B.4, DESIGN.md section 1):

* value: ``log det H = tr log H ~= (1/p) sum_probes |v|^2 sum_k tau_k^2 log theta_k``
  (Stochastic Lanczos Quadrature; ``theta_k`` the Ritz values, ``tau_k`` the first components
  of the eigenvectors of the Lanczos tridiagonal ``T_m``);
* gradient: ``tr(H^{-1} dH) = E_v[v^T H^{-1} dH v]`` with Rademacher ``v``: solve
  ``z = H^{-1} v`` (conjugate gradient, or the Lanczos solve ``|v| Q_m T_m^{-1} e_1`` which is
  the same Krylov iterate), then differentiate the surrogate ``sg(z)^T H(theta) v``.

Budgets are counted in Hessian-vector products ("matvecs") per particle: the detached
products of the Krylov iterations plus the differentiable ones of the surrogate.

Every estimator raises :class:`~jkoflow.logdet.LogDetError` (naming how many particles are
affected) on non-finite values and on non-positive curvature found by Lanczos or CG, and
warns with :class:`~jkoflow.logdet.LogDetWarning` when CG does not reach its tolerance.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import attrs
import torch
from jkoflow.functional import LogDet
from jkoflow.logdet import LogDetError, LogDetEstimator, check_finite, low_rank_route, warn
from jkoflow.potential import LowRankHessian, PotentialNet
from jkoflow.registry import Registry, hookimpl
from torch import Tensor

Operator = Callable[[Tensor], Tensor]
"""``V -> H_u(x_i) V[i, k]`` on tensors of shape ``(n, p, d)``."""

AUTO_THRESHOLD = 64
"""Default dimension up to which ``auto`` uses the exact estimator (docs/benchmarks.md,
"Log-determinant estimators"): up to d = 64 exact costs at most a few times the cheapest
stochastic setting and carries no Monte Carlo noise into the log-densities; at d = 128 the dense
route costs 12-16x the preconditioned SLQ, which is within 1% there. Above the threshold ``auto``
still takes the exact estimator where the net's low-rank route applies
(:func:`jkoflow.logdet.low_rank_route`) and costs less than SLQ (:meth:`AutoLogDet.choose`)."""

AUTO_STOCHASTIC_OPTIONS: dict[str, Any] = {"probes": 2, "lanczos_steps": 8}
"""``auto``'s default SLQ budget above the threshold (preconditioned)."""


# --- building blocks ---------------------------------------------------------------------
def rademacher(n: int, p: int, d: int, like: Tensor) -> Tensor:
    """``p`` Rademacher probes (entries +-1) per particle, shape ``(n, p, d)`` (global torch RNG)."""
    return torch.randint(0, 2, (n, p, d), device=like.device).to(like.dtype) * 2 - 1


def _particles_with(mask: Tensor) -> int:
    """Number of particles (first axis) with any ``True`` entry in ``mask``."""
    return int(mask.reshape(mask.shape[0], -1).any(dim=1).sum())


@attrs.define
class Lanczos:
    """``m`` steps of Lanczos with full reorthogonalization from the start vectors ``v``.

    ``basis`` ``(n, p, m, d)`` holds the orthonormal Krylov vectors ``q_j``, ``theta``
    ``(n, p, m)`` the Ritz values (eigenvalues of ``T_m``), ``weights`` ``(n, p, m)`` the
    Gauss quadrature weights ``tau_k^2`` (squared first components of ``T_m``'s eigenvectors),
    ``evecs`` ``(n, p, m, m)`` those eigenvectors, ``norm2`` ``(n, p)`` ``|v|^2``. After a
    breakdown (an invariant subspace found: ``beta_j ~ 0``) the remaining rows are padded with
    ``theta = 1``, zero weight, so they contribute nothing.
    """

    basis: Tensor
    theta: Tensor
    weights: Tensor
    evecs: Tensor
    norm2: Tensor

    def quadrature(self, f: Callable[[Tensor], Tensor]) -> Tensor:
        """``v^T f(H) v ~= |v|^2 sum_k tau_k^2 f(theta_k)``, shape ``(n, p)``."""
        return self.norm2 * (self.weights * f(self.theta)).sum(-1)

    def apply(self, f: Callable[[Tensor], Tensor]) -> Tensor:
        """``f(H) v ~= |v| Q_m f(T_m) e_1``, shape ``(n, p, d)`` (``f = 1/x``: the CG iterate)."""
        coeff = self.evecs @ (self.evecs[..., 0, :] * f(self.theta)).unsqueeze(-1)
        return self.norm2.sqrt()[..., None] * (self.basis.transpose(-1, -2) @ coeff).squeeze(-1)


def lanczos(op: Operator, v: Tensor, steps: int) -> Lanczos:
    """Batched Lanczos (``steps <= d``) with full reorthogonalization; Ritz data by
    ``torch.linalg.eigh`` of the tridiagonal. Raises :class:`LogDetError` when a Ritz value is
    not positive (``H`` is then not positive definite)."""
    n, p, d = v.shape
    m = max(1, min(int(steps), d))
    eps = torch.finfo(v.dtype).eps
    norm2 = (v * v).sum(-1)
    q = v / norm2.clamp_min(torch.finfo(v.dtype).tiny).sqrt()[..., None]
    basis = v.new_zeros(n, p, m, d)
    alphas = v.new_zeros(n, p, m)
    betas = v.new_zeros(n, p, m)
    alive = torch.ones(n, p, m, dtype=torch.bool, device=v.device)
    alive[..., 0] = norm2 > 0
    q_prev = torch.zeros_like(v)
    beta_prev = v.new_zeros(n, p)
    scale = v.new_zeros(n, p)
    for j in range(m):
        basis[:, :, j] = q
        w = op(q)
        a = (w * q).sum(-1)
        w = w - a[..., None] * q - beta_prev[..., None] * q_prev
        qs = basis[:, :, : j + 1]
        for _ in range(2):  # full reorthogonalization, twice ("twice is enough")
            if j < 12:  # element-wise products beat many tiny batched mat-vecs for short bases
                w = w - ((qs * w.unsqueeze(-2)).sum(-1, keepdim=True) * qs).sum(-2)
            else:
                w = w - ((qs @ w.unsqueeze(-1)).transpose(-1, -2) @ qs).squeeze(-2)
        b = w.norm(dim=-1)
        alphas[..., j] = a
        scale = torch.maximum(scale, a.abs() + beta_prev)
        if j + 1 < m:
            ok = alive[..., j] & (b > 1e3 * eps * scale)
            alive[..., j + 1] = ok
            betas[..., j] = torch.where(ok, b, torch.zeros_like(b))
            q_prev, q = (
                q,
                torch.where(
                    ok[..., None], w / b.clamp_min(torch.finfo(v.dtype).tiny)[..., None], torch.zeros_like(w)
                ),
            )
            beta_prev = betas[..., j]
    nonfinite = ~(torch.isfinite(alphas) & torch.isfinite(betas))
    if bool(nonfinite.any()):
        raise LogDetError("Lanczos met non-finite Hessian-vector products", _particles_with(nonfinite), n)
    alphas = torch.where(alive, alphas, torch.ones_like(alphas))
    tri = (
        torch.diag_embed(alphas)
        + torch.diag_embed(betas[..., : m - 1], 1)
        + torch.diag_embed(betas[..., : m - 1], -1)
    )
    theta, evecs = torch.linalg.eigh(tri)
    weights = evecs[..., 0, :] ** 2
    bad = (theta <= 0) & (weights > 1e2 * eps)
    if bool(bad.any()):
        raise LogDetError(
            f"non-positive curvature: Lanczos found Ritz values <= 0 (smallest {float(theta.min()):.3g}); "
            "H_u is not positive definite",
            _particles_with(bad),
            n,
        )
    return Lanczos(basis=basis, theta=theta, weights=weights, evecs=evecs, norm2=norm2)


def conjugate_gradient(op: Operator, b: Tensor, rtol: float, max_iters: int) -> tuple[Tensor, Tensor, Tensor]:
    """Solve ``H_u(x_i) z = b`` for every particle and probe (batched CG, shape ``(n, p, d)``).

    Returns ``(z, residual_ratio, iterations)`` with ``residual_ratio = |b - H z| / |b|``.
    Raises :class:`LogDetError` on non-positive curvature ``p^T H p <= 0``.
    """
    z = torch.zeros_like(b)
    r = b.clone()
    direction = r.clone()
    rs = (r * r).sum(-1)
    bnorm = rs.sqrt().clamp_min(torch.finfo(b.dtype).tiny)
    iters = 0
    for iters in range(1, max_iters + 1):
        done = rs.sqrt() <= rtol * bnorm
        if bool(done.all()):
            iters -= 1
            break
        hp = op(direction)
        php = (direction * hp).sum(-1)
        nonpos = (php <= 0) & ~done
        if bool(nonpos.any()):
            raise LogDetError(
                f"non-positive curvature: CG found p^T H p <= 0 (smallest {float(php.min()):.3g}); "
                "H_u is not positive definite",
                _particles_with(nonpos),
                b.shape[0],
            )
        step = torch.where(done, torch.zeros_like(rs), rs / php)
        z = z + step[..., None] * direction
        r = r - step[..., None] * hp
        rs_new = (r * r).sum(-1)
        beta = torch.where(done, torch.zeros_like(rs), rs_new / rs.clamp_min(torch.finfo(b.dtype).tiny))
        direction = r + beta[..., None] * direction
        rs = torch.where(done, rs, rs_new)
    return z, rs.sqrt() / bnorm, torch.tensor(iters)


def _log(theta: Tensor) -> Tensor:
    return torch.log(theta)


def _inverse(theta: Tensor) -> Tensor:
    return 1.0 / theta


@attrs.define
class Preconditioned:
    """The operator ``V -> L^{-1} H_u(x_i) L^{-T} V`` with ``G = L L^T`` the potential's
    :meth:`~PotentialNet.hessian_baseline` (identity when it has none), and ``log det G``.

    ``log det H_u = log det G + log det(L^{-1} H_u L^{-T})`` exactly, for every ``theta``; the
    second operator is close to the identity when ``G`` captures most of ``H_u`` (the ICNN's
    learned quadratic), so Lanczos converges in few steps and Hutchinson's variance
    (``2 |log(.)|_F^2`` off the diagonal) is small.
    """

    potential: PotentialNet
    x: Tensor
    enabled: bool

    def parts(self, create_graph: bool) -> tuple[Operator, Tensor]:
        """``(operator, log det G)``; both differentiable in ``theta`` when ``create_graph``."""
        hvp = self.potential.hvp_operator(self.x, create_graph=create_graph)
        base = self.potential.hessian_baseline() if self.enabled else None
        zero = self.x.new_zeros(())
        if base is None:
            return hvp, zero
        with torch.set_grad_enabled(create_graph):
            base = base.to(self.x.dtype)
            chol, info = torch.linalg.cholesky_ex(base if create_graph else base.detach())
            if int(info) != 0:  # no usable preconditioner: plain operator
                return hvp, zero
            eye = torch.eye(base.shape[0], dtype=base.dtype, device=base.device)
            linv = torch.linalg.solve_triangular(chol, eye, upper=False)  # L^{-1}
            logdet = 2.0 * torch.log(torch.diagonal(chol)).sum()

        def apply(v: Tensor) -> Tensor:
            return hvp(v @ linv) @ linv.T  # rows: (L^{-1} H L^{-T} v)^T

        return apply, logdet


def _surrogate(op: Operator, solves: Tensor, vectors: Tensor) -> Tensor:
    """``sum_k sg(z_k)^T H(theta) v_k`` per particle, shape ``(n,)``, with ``op`` the
    differentiable operator (``H_u`` or its preconditioned form)."""
    check_finite(solves, "H_u^{-1} v (Krylov solve)")
    return (solves.detach() * op(vectors)).sum(-1).sum(-1)


def _finish(value: Tensor, surrogate: Tensor | None) -> LogDet:
    value = value.detach()
    check_finite(value)
    return LogDet(value=value, surrogate=value if surrogate is None else surrogate)


def _positive_int(name: str, value: int) -> int:
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        raise ValueError(f"{name}={value!r}: expected a positive integer")
    return value


# --- estimators --------------------------------------------------------------------------
class ExactLogDet(LogDetEstimator):
    """``log det H_u(x_i) = 2 sum_k log L_kk`` with ``H_u = L L^T`` (batched Cholesky), or, for a
    net whose Hessian is a constant SPD part plus rank ``r <= d/2`` (:meth:`from_low_rank`, the
    ICNN's hidden units), by the matrix determinant lemma: the same value and gradient.

    ``H_u`` comes from :meth:`PotentialNet.hessian` (closed form for the ICNN; vmapped reverse
    passes otherwise), then one ``d x d`` factorization per particle: the right choice in low
    dimension. Surrogate ``<sg(H^{-1}), H(theta)>_F``, whose gradient is exactly
    ``tr(H^{-1} dH/dtheta)`` (no backward pass through the factorization).
    Budget: ``d`` matvecs' worth of work plus ``O(d^3)`` per particle.
    """

    uses_hessian = True
    supports_low_rank = True

    def __call__(self, potential: PotentialNet, x: Tensor, *, grad: bool = True) -> LogDet:
        if low_rank_route(potential, x.shape[1]):
            return self.from_low_rank(
                potential.transport_and_low_rank_hessian(x, create_graph=grad)[1], grad=grad
            )
        return self.from_hessian(potential.hessian(x, create_graph=grad), grad=grad)

    def from_low_rank(self, hess: LowRankHessian, *, grad: bool = True) -> LogDet:
        """``log det H_u = 2 sum_k log L_kk + log det S``, ``S = I_r + diag(c) G``,
        ``G = W^T W = C^T (V^T V) C`` (matrix determinant lemma on ``H_u = L (I + W diag(c) W^T)
        L^T``, ``W = V C``).

        With ``c >= 0`` (an ICNN after ``project()``) ``S`` is similar to the SPD
        ``K = I + c^{1/2} G c^{1/2} = R R^T`` (eigenvalues at least 1): one ``r x r`` Cholesky per
        particle gives ``log det S = log det K`` and, by Woodbury,
        ``S^{-1} = I - c^{1/2} K^{-1} c^{1/2} G = I - Z^T Z G`` with ``Z = R^{-1} diag(c^{1/2})``
        (one triangular solve; no division by ``c``). Surrogate: the first
        term through autograd, and ``<sg(S^{-T}), S(theta)>_F`` whose gradient is
        ``tr(S^{-1} dS/dtheta) = d/dtheta log det S``. Negative weights (a net that is not
        input-convex) take an LU route instead; ``det S <= 0`` raises :class:`LogDetError`."""
        coef, c = hess.coefficients, hess.weights
        n, r = c.shape
        eye = torch.eye(r, dtype=coef.dtype, device=coef.device)
        gamma = hess.basis.T @ hess.basis  # V^T V, (r, r)
        gram = torch.bmm(coef.transpose(1, 2), torch.matmul(gamma, coef))  # W_i^T W_i
        small = eye + c[:, :, None] * gram  # S, (n, r, r)
        base = 2.0 * torch.log(torch.diagonal(hess.chol)).sum()
        with torch.no_grad():
            g, w = gram.detach(), c.detach()
            if bool((w >= 0).all()):
                root = w.sqrt()
                chol, info = torch.linalg.cholesky_ex(
                    torch.addcmul(eye, root[:, :, None] * g, root[:, None, :])
                )
                bad = int((info != 0).sum())
                logabs = 2.0 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
                inverse = None
                if not bad and grad:  # c^{1/2} K^{-1} c^{1/2} = Z^T Z, Z = R^{-1} diag(c^{1/2}), K = R R^T
                    z = torch.linalg.solve_triangular(chol, torch.diag_embed(root), upper=False)
                    inverse = eye - torch.bmm(torch.bmm(z.transpose(1, 2), z), g)
            else:
                sign, logabs = torch.linalg.slogdet(small.detach())
                bad = int((sign <= 0).sum())
                inverse = None if bad or not grad else torch.linalg.inv(small.detach())
            if bad:
                raise LogDetError("H_u is not positive definite (det of the low-rank part <= 0)", bad, n)
            logdet = logabs + base.detach()
            check_finite(logdet)
        if inverse is None:
            return LogDet(value=logdet, surrogate=logdet)
        trace = (inverse.transpose(1, 2) * small).sum((-2, -1))
        return LogDet(value=logdet, surrogate=logdet + (base - base.detach()) + (trace - trace.detach()))

    def from_hessian(self, hess: Tensor, *, grad: bool = True) -> LogDet:
        """``log det`` by batched Cholesky of the given ``H_u(x_i)``, with the trace surrogate
        (in ``d = 1``: ``log h`` directly, its autograd gradient ``h' / h`` being exact)."""
        if hess.shape[-1] == 1:
            h = hess[:, 0, 0]
            log_h = torch.log(h)
            # one host read when all is well: log h is finite everywhere iff h > 0 and finite
            if not math.isfinite(float(log_h.detach().sum())):
                bad = int((h.detach() <= 0).sum())
                if bad:
                    raise LogDetError("H_u is not positive definite (u'' <= 0)", bad, hess.shape[0])
                check_finite(log_h.detach())
            return LogDet(value=log_h.detach(), surrogate=log_h if grad else log_h.detach())
        with torch.no_grad():
            chol, info = torch.linalg.cholesky_ex(hess.detach())
            bad = int((info != 0).sum())
            if bad:
                raise LogDetError("H_u is not positive definite (Cholesky failed)", bad, hess.shape[0])
            logdet = 2.0 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
            check_finite(logdet)
        if not grad:
            return LogDet(value=logdet, surrogate=logdet)
        # d/dtheta log det H = tr(H^{-1} dH/dtheta) = d/dtheta <sg(H^{-1}), H>_F: no backward
        # through the factorization, only through the (closed-form) Hessian.
        inner = (torch.cholesky_inverse(chol) * hess).sum((-2, -1))
        return LogDet(value=logdet, surrogate=logdet + (inner - inner.detach()))

    def matvecs(self, dim: int) -> int:
        """Hessian-vector products' worth of work per particle (``d`` columns)."""
        return dim


class SLQLogDet(LogDetEstimator):
    """Stochastic Lanczos Quadrature (Ubaru, Chen, Saad 2017) for the value; the gradient
    surrogate ``sg(z)^T H v`` uses the Lanczos solve ``z = |v| Q_m T_m^{-1} e_1 ~= H^{-1} v``
    from the same Krylov basis (the CG iterate after ``m`` steps; no extra matvecs).

    Parameters
    ----------
    probes: Rademacher probes ``p`` per particle.
    lanczos_steps: Lanczos steps ``m`` (capped at ``d``; ``m = d`` is exact per probe).
    precondition: work on ``L^{-1} H_u L^{-T}`` with ``G = L L^T`` the potential's
        :meth:`~PotentialNet.hessian_baseline` (see :class:`Preconditioned`); exact in
        expectation either way, much lower variance for ICNNs whose quadratic part dominates.

    Budget: ``p * m`` detached matvecs, plus ``p`` differentiable ones for the gradient.
    """

    def __init__(self, probes: int = 8, lanczos_steps: int = 30, precondition: bool = True) -> None:
        self.probes = _positive_int("probes", probes)
        self.lanczos_steps = _positive_int("lanczos_steps", lanczos_steps)
        self.precondition = bool(precondition)

    def __call__(self, potential: PotentialNet, x: Tensor, *, grad: bool = True) -> LogDet:
        pre = Preconditioned(potential, x, self.precondition)
        op, logdet_base = pre.parts(create_graph=False)
        v = rademacher(x.shape[0], self.probes, x.shape[1], x)
        krylov = lanczos(op, v, self.lanczos_steps)
        value = krylov.quadrature(_log).mean(-1) + logdet_base
        if not grad:
            return _finish(value, None)
        op_theta, logdet_theta = pre.parts(create_graph=True)
        return _finish(value, logdet_theta + _surrogate(op_theta, krylov.apply(_inverse), v) / self.probes)

    def matvecs(self, dim: int) -> int:
        return self.probes * (min(self.lanczos_steps, dim) + 1)


class HutchinsonCGLogDet(LogDetEstimator):
    """Hutchinson + conjugate gradient for the gradient, SLQ for the value.

    Gradient surrogate ``(1/p) sum_k sg(z_k)^T H(theta) v_k`` with ``z_k = H^{-1} v_k`` solved by
    batched CG on Hessian-vector products to the relative residual ``cg_rtol`` (at most
    ``cg_max_iters`` iterations; a :class:`LogDetWarning` names the particles that did not
    converge, or a :class:`LogDetError` when ``strict``). The value is SLQ with
    ``value_probes`` probes of ``lanczos_steps`` steps.

    Budget: ``value_probes * m`` + ``probes * (CG iterations)`` detached matvecs, plus ``probes``
    differentiable ones.
    """

    def __init__(
        self,
        probes: int = 4,
        cg_rtol: float = 1e-3,
        cg_max_iters: int = 100,
        value_probes: int = 8,
        lanczos_steps: int = 30,
        strict: bool = False,
        precondition: bool = True,
    ) -> None:
        self.probes = _positive_int("probes", probes)
        if not 0 < cg_rtol < 1:
            raise ValueError(f"cg_rtol={cg_rtol!r}: expected 0 < cg_rtol < 1")
        self.cg_rtol = float(cg_rtol)
        self.cg_max_iters = _positive_int("cg_max_iters", cg_max_iters)
        self.value = SLQLogDet(value_probes, lanczos_steps, precondition)
        self.strict = bool(strict)
        self.precondition = bool(precondition)
        self.last_cg_iters = 0

    def __call__(self, potential: PotentialNet, x: Tensor, *, grad: bool = True) -> LogDet:
        value = self.value(potential, x, grad=False).value
        if not grad:
            return _finish(value, None)
        pre = Preconditioned(potential, x, self.precondition)
        v = rademacher(x.shape[0], self.probes, x.shape[1], x)
        z, residual, iters = conjugate_gradient(
            pre.parts(create_graph=False)[0], v, self.cg_rtol, self.cg_max_iters
        )
        self.last_cg_iters = int(iters)
        unconverged = residual > self.cg_rtol
        if bool(unconverged.any()):
            message = (
                f"CG did not reach rtol={self.cg_rtol:g} in {self.cg_max_iters} iterations "
                f"(worst relative residual {float(residual.max()):.3g})"
            )
            if self.strict:
                raise LogDetError(message, _particles_with(unconverged), x.shape[0])
            warn(f"{message}: {_particles_with(unconverged)} of {x.shape[0]} particles affected")
        op_theta, logdet_theta = pre.parts(create_graph=True)
        return _finish(value, logdet_theta + _surrogate(op_theta, z, v) / self.probes)

    def matvecs(self, dim: int) -> int:
        """Budget with CG at its iteration cap (the actual count is ``last_cg_iters``)."""
        return self.value.matvecs(dim) - self.value.probes + self.probes * (min(self.cg_max_iters, dim) + 1)


class HutchPPLogDet(LogDetEstimator):
    """Hutch++ (Meyer, Musco, Musco, Woodruff 2021) for ``tr log H`` and ``tr(H^{-1} dH)``.

    A sketch ``Q = orth(log(H) S)`` (``S``: ``sketch`` Rademacher columns, ``log(H) s`` by
    Lanczos) captures the top of ``|log H|``'s spectrum; the trace splits exactly as
    ``tr(M) = tr(Q^T M Q) + tr((I - QQ^T) M (I - QQ^T))`` for any matrix ``M``:

    * value (``M = log H``): ``sum_j q_j^T log(H) q_j`` by Lanczos quadrature, plus Hutchinson
      on ``g' = (I - QQ^T) g`` for ``probes`` Rademacher ``g``;
    * gradient (``M = H^{-1} dH``): surrogate
      ``sum_j sg(H^{-1} q_j)^T H(theta) q_j + (1/p) sum_g sg(H^{-1} g')^T H(theta) g'``, with the
      solves from the same Lanczos runs.

    Unbiased for any ``Q``; with ``sketch >= d`` it is exact up to Lanczos error.
    ``precondition``: as in :class:`SLQLogDet` (everything above then applies to
    ``L^{-1} H L^{-T}``, plus the exact ``log det G``).
    Budget: ``m (2 sketch + probes)`` detached matvecs plus ``sketch + probes`` differentiable.
    """

    def __init__(
        self, sketch: int = 4, probes: int = 4, lanczos_steps: int = 30, precondition: bool = True
    ) -> None:
        self.sketch = _positive_int("sketch", sketch)
        self.probes = _positive_int("probes", probes)
        self.lanczos_steps = _positive_int("lanczos_steps", lanczos_steps)
        self.precondition = bool(precondition)

    def __call__(self, potential: PotentialNet, x: Tensor, *, grad: bool = True) -> LogDet:
        n, d = x.shape
        pre = Preconditioned(potential, x, self.precondition)
        op, logdet_base = pre.parts(create_graph=False)
        k = min(self.sketch, d)
        s = rademacher(n, k, d, x)
        sketch = lanczos(op, s, self.lanczos_steps).apply(_log)  # (n, k, d) = log(H) S
        check_finite(sketch, "Hutch++ sketch log(H) S")
        basis, _ = torch.linalg.qr(sketch.transpose(1, 2))  # (n, d, k)
        q = basis.transpose(1, 2)  # (n, k, d), orthonormal rows
        top = lanczos(op, q, self.lanczos_steps)
        value = top.quadrature(_log).sum(-1) + logdet_base
        vectors, solves = [q], [top.apply(_inverse)]
        if k < d:
            g = rademacher(n, self.probes, d, x)
            g = g - (g @ basis) @ q  # (I - QQ^T) g
            rest = lanczos(op, g, self.lanczos_steps)
            value = value + rest.quadrature(_log).mean(-1)
            vectors.append(g / self.probes)
            solves.append(rest.apply(_inverse))
        if not grad:
            return _finish(value, None)
        op_theta, logdet_theta = pre.parts(create_graph=True)
        return _finish(
            value, logdet_theta + _surrogate(op_theta, torch.cat(solves, 1), torch.cat(vectors, 1))
        )

    def matvecs(self, dim: int) -> int:
        m = min(self.lanczos_steps, dim)
        k = min(self.sketch, dim)
        p = self.probes if k < dim else 0
        return m * (2 * k + p) + k + p


STOCHASTIC: dict[str, type[LogDetEstimator]] = {
    "slq": SLQLogDet,
    "hutchinson_cg": HutchinsonCGLogDet,
    "hutchpp": HutchPPLogDet,
}


class AutoLogDet(LogDetEstimator):
    """``exact`` when ``d <= threshold``, else the ``stochastic`` estimator (built with
    ``options``). The default threshold comes from ``benchmarks/logdet.py`` (see
    docs/benchmarks.md): below it the exact route is as fast and has no variance."""

    def __init__(
        self, threshold: int = AUTO_THRESHOLD, stochastic: str = "slq", options: dict[str, Any] | None = None
    ) -> None:
        if stochastic not in STOCHASTIC:
            raise ValueError(f"stochastic={stochastic!r}: expected one of {sorted(STOCHASTIC)}")
        self.threshold = int(threshold)
        self.exact = ExactLogDet()
        if options is None:  # the benchmark's cheapest setting within 1% / cosine 0.999 at d = 128
            options = dict(AUTO_STOCHASTIC_OPTIONS) if stochastic == "slq" else {}
        self.stochastic = STOCHASTIC[stochastic](**options)

    def choose(self, dim: int, potential: PotentialNet | None = None) -> LogDetEstimator:
        """The estimator used in dimension ``dim``: exact up to the threshold; above it, exact
        where ``potential`` has a low-rank Hessian form (:func:`jkoflow.logdet.low_rank_route`)
        whose cost beats the stochastic estimator's, else the stochastic one.

        Cost model, checked against ``benchmarks/logdet.py`` (docs/benchmarks.md): the low-rank
        route costs ``~ n r^3`` (``r x r`` products and factorizations per particle), a Krylov
        estimator ``~ n m r (r + d)`` for ``m`` matvecs of ``~ r (w + d) <= r (r + d)`` each; exact
        is chosen when ``r^2 <= m (r + d)``. Measured at N = 512 against SLQ p = 2, m = 8
        (``m = 18``): r = 16, d = 128: 0.012 s vs 0.097 s (chosen); r = 64, d = 128: 0.19 vs 0.11 s
        (not chosen); r = 64, d = 192: 0.19 vs 0.18 s (the break-even); r = 128, d = 256: 1.16 vs
        0.29 s (not chosen)."""
        if dim <= self.threshold:
            return self.exact
        if potential is not None and low_rank_route(potential, dim):
            rank = potential.hessian_rank()
            matvecs = getattr(self.stochastic, "matvecs", None)
            assert rank is not None
            if matvecs is not None and rank * rank <= matvecs(dim) * (rank + dim):
                return self.exact
        return self.stochastic

    def for_dim(self, dim: int) -> LogDetEstimator:
        return self.choose(dim)

    def for_potential(self, potential: PotentialNet, dim: int) -> LogDetEstimator:
        return self.choose(dim, potential)

    def __call__(self, potential: PotentialNet, x: Tensor, *, grad: bool = True) -> LogDet:
        return self.choose(x.shape[1], potential)(potential, x, grad=grad)


@hookimpl
def jkoflow_register(registry: Registry) -> None:
    registry.add("logdet", "exact", ExactLogDet)
    registry.add("logdet", "slq", SLQLogDet)
    registry.add("logdet", "hutchinson_cg", HutchinsonCGLogDet)
    registry.add("logdet", "hutchpp", HutchPPLogDet)
    registry.add("logdet", "auto", AutoLogDet)
