"""Hypothesis strategies for testing jkoflow plugins.

Everything a plugin test needs to generate inputs with known answers:

* :func:`clouds` and :func:`points`: particle clouds ``x`` of shape ``(n, d)`` over many scales,
  including near-degenerate ones (nearly collinear, duplicated rows, tight clusters) where
  Hessians, log-determinants and divergences break first;
* :func:`spd_matrices`: symmetric positive definite ``A = Q diag(lambda) Q^T`` whose condition
  number ``lambda_max / lambda_min`` is drawn in a given range (and met exactly);
* :func:`convex_functions`: random convex potentials ``f`` with closed-form gradient and
  Hessian (quadratic + log-sum-exp of an affine map + softplus ridges), as
  :class:`RandomConvexPotential` modules. By Brenier's theorem ``T = grad f`` is the optimal
  transport map from any ``rho`` to ``(grad f) # rho``; on a cloud, the pairing
  ``x_i -> grad f(x_i)`` is cyclically monotone and hence optimal, so
  ``W_2^2 = mean_i |grad f(x_i) - x_i|^2`` exactly (:func:`transport_problems`; the idea of
  geomloss's ``convex_gradients`` test generators);
* :func:`icnn_configs` and :func:`potential_nets`: random ICNN settings and the networks built
  from them through the registry.

All strategies shrink: a failing test reports the simplest cloud, matrix or function that
still fails (coordinates towards 0, sizes towards their minimum, "generic" clouds first).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as nnf
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from jkoflow.potential import PotentialNet
from torch import Tensor, nn

CLOUD_KINDS = ("generic", "collinear", "duplicated", "clustered")
"""Cloud shapes drawn by :func:`clouds`; all but ``generic`` are near-degenerate."""


def _floats(lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False, allow_subnormal=False)


def _int_or(value: int | st.SearchStrategy[int]) -> st.SearchStrategy[int]:
    return value if isinstance(value, st.SearchStrategy) else st.just(int(value))


def dims(min_dim: int = 1, max_dim: int = 4) -> st.SearchStrategy[int]:
    """Dimensions ``d`` in ``[min_dim, max_dim]`` (shrinking towards ``min_dim``)."""
    return st.integers(min_dim, max_dim)


def log_uniform(lo: float, hi: float) -> st.SearchStrategy[float]:
    """Positive floats spread evenly in ``log10`` over ``[lo, hi]``; shrinks towards ``1``
    when ``1`` is in range (else towards ``lo``)."""
    if not 0 < lo <= hi:
        raise ValueError(f"log_uniform({lo}, {hi}): expected 0 < lo <= hi")
    a, b = math.log10(lo), math.log10(hi)
    return _floats(a, b).map(lambda e: float(10.0**e))


def points(dim: int, scale: float = 3.0, dtype: torch.dtype = torch.float64) -> st.SearchStrategy[Tensor]:
    """Single points of ``[-scale, scale]^dim`` as tensors of shape ``(dim,)``."""
    return hnp.arrays(np.float64, (dim,), elements=_floats(-scale, scale)).map(
        lambda a: torch.as_tensor(a, dtype=dtype)
    )


@st.composite
def clouds(
    draw: st.DrawFn,
    dim: int | st.SearchStrategy[int] = dims(),
    min_size: int = 1,
    max_size: int = 16,
    scales: tuple[float, float] = (1e-2, 1e2),
    degenerate: bool = True,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """Particle clouds ``x`` of shape ``(n, d)``.

    ``x = s * z`` with ``z`` in ``[-1, 1]^{n x d}`` and a scale ``s`` drawn log-uniformly in
    ``scales``. With ``degenerate=True`` a quarter of the draws are each of:
    ``collinear`` (all points within ``1e-6 s`` of one line), ``duplicated`` (every row repeated)
    and ``clustered`` (all points within ``1e-6 s`` of one point).
    """
    d = draw(_int_or(dim))
    n = draw(st.integers(min_size, max_size))
    s = draw(log_uniform(*scales))
    kind = draw(st.sampled_from(CLOUD_KINDS if degenerate else CLOUD_KINDS[:1]))
    z = draw(hnp.arrays(np.float64, (n, d), elements=_floats(-1.0, 1.0)))
    if kind == "collinear":
        direction = np.ones(d) / math.sqrt(d)
        z = z[:, :1] * direction + 1e-6 * z
    elif kind == "duplicated":
        k = max(1, n // 2)
        z = z[np.arange(n) % k]
    elif kind == "clustered":
        z = z[:1] + 1e-6 * z
    return torch.as_tensor(s * z, dtype=dtype)


@st.composite
def spd_matrices(
    draw: st.DrawFn,
    dim: int | st.SearchStrategy[int] = dims(),
    condition: tuple[float, float] = (1.0, 1e3),
    scale: tuple[float, float] = (1.0, 1.0),
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """SPD matrices ``A = Q diag(lambda) Q^T`` with ``lambda_max / lambda_min = kappa`` exactly,
    ``kappa`` drawn log-uniformly in ``condition`` (``kappa = 1`` when ``d = 1``) and
    ``lambda_min`` log-uniformly in ``scale``. ``Q`` is the orthogonal factor of a drawn matrix
    (Householder QR: orthogonal even when the drawn matrix is singular)."""
    d = draw(_int_or(dim))
    lo, hi = condition
    if not 1.0 <= lo <= hi:
        raise ValueError(f"condition={condition}: expected 1 <= low <= high")
    kappa = draw(log_uniform(lo, hi)) if d > 1 else 1.0
    lam_min = draw(log_uniform(*scale))
    inner = draw(hnp.arrays(np.float64, (max(d - 2, 0),), elements=_floats(0.0, 1.0)))
    exponents = np.concatenate([[0.0], inner, [1.0]])[:d] if d > 1 else np.zeros(1)
    eigenvalues = lam_min * kappa**exponents
    g = draw(hnp.arrays(np.float64, (d, d), elements=_floats(-1.0, 1.0)))
    q, _ = np.linalg.qr(g + 0.0)
    a = (q * eigenvalues) @ q.T
    return torch.as_tensor(0.5 * (a + a.T), dtype=dtype)


# --- random convex functions with closed-form derivatives ------------------------------
class RandomConvexPotential(PotentialNet):
    """``f(x) = 1/2 (x-c)^T A (x-c) + s * LSE(P x + p) + sum_k w_k softplus(R_k . x + r_k)``.

    ``A = M M^T + alpha I`` (so ``f`` is ``alpha``-strongly convex for every value of the
    parameters), ``s = exp(log_s) >= 0``, ``w_k = exp(log_w_k) >= 0``. Convex by construction:
    log-sum-exp and softplus are convex, composition with affine maps and non-negative sums
    keep convexity. :meth:`gradient` and :meth:`hessian_exact` are closed forms, independent
    of autograd, so they can check autograd-based code:

    * ``grad f = A (x - c) + s P^T softmax(P x + p) + R^T (w * sigmoid(R x + r))``
    * ``H_f = A + s P^T (diag(q) - q q^T) P + R^T diag(w sigma (1 - sigma)) R``, ``q = softmax``.

    All coefficients are ``nn.Parameter`` s, so ``theta``-gradients of anything built on
    ``f`` (e.g. ``log det H_f``) can be checked against the closed form.
    """

    def __init__(
        self,
        center: Tensor,
        quad_factor: Tensor,
        alpha: float,
        lse_weight: Tensor,
        lse_bias: Tensor,
        lse_log_scale: float | Tensor,
        ridge_weight: Tensor,
        ridge_bias: Tensor,
        ridge_log_scale: Tensor,
    ) -> None:
        super().__init__()
        self.dim = int(center.shape[0])
        if not alpha > 0:
            raise ValueError(f"alpha={alpha}: expected a positive strong-convexity modulus")
        self.strong_convexity = float(alpha)
        as_param = lambda t: nn.Parameter(torch.as_tensor(t, dtype=torch.float64).clone())
        self.center = as_param(center)
        self.quad_factor = as_param(quad_factor)
        self.lse_weight = as_param(lse_weight)
        self.lse_bias = as_param(lse_bias)
        self.lse_log_scale = as_param(lse_log_scale)
        self.ridge_weight = as_param(ridge_weight)
        self.ridge_bias = as_param(ridge_bias)
        self.ridge_log_scale = as_param(ridge_log_scale)

    @property
    def matrix(self) -> Tensor:
        """``A = M M^T + alpha I``."""
        m = self.quad_factor
        return m @ m.T + self.strong_convexity * torch.eye(self.dim, dtype=m.dtype, device=m.device)

    def forward(self, x: Tensor) -> Tensor:
        z = x - self.center
        quad = 0.5 * ((z @ self.matrix) * z).sum(-1)
        lse = torch.exp(self.lse_log_scale) * torch.logsumexp(x @ self.lse_weight.T + self.lse_bias, dim=-1)
        ridge = nnf.softplus(x @ self.ridge_weight.T + self.ridge_bias) @ torch.exp(self.ridge_log_scale)
        return quad + lse + ridge

    def gradient(self, x: Tensor) -> Tensor:
        """Closed-form ``grad f(x)``, shape ``(n, d)``."""
        q = torch.softmax(x @ self.lse_weight.T + self.lse_bias, dim=-1)
        sig = torch.sigmoid(x @ self.ridge_weight.T + self.ridge_bias)
        return (
            (x - self.center) @ self.matrix
            + torch.exp(self.lse_log_scale) * q @ self.lse_weight
            + (sig * torch.exp(self.ridge_log_scale)) @ self.ridge_weight
        )

    def hessian_exact(self, x: Tensor) -> Tensor:
        """Closed-form ``H_f(x)``, shape ``(n, d, d)`` (differentiable in the parameters)."""
        p, r = self.lse_weight, self.ridge_weight
        q = torch.softmax(x @ p.T + self.lse_bias, dim=-1)
        pq = q @ p  # (n, d) = P^T q
        lse = torch.einsum("nk,ki,kj->nij", q, p, p) - pq[:, :, None] * pq[:, None, :]
        sig = torch.sigmoid(x @ r.T + self.ridge_bias)
        ridge = torch.einsum("nk,ki,kj->nij", sig * (1 - sig) * torch.exp(self.ridge_log_scale), r, r)
        return self.matrix + torch.exp(self.lse_log_scale) * lse + ridge

    def reset_parameters(self) -> None:
        """The parameters are the drawn function itself; nothing to reset."""


@st.composite
def convex_functions(
    draw: st.DrawFn,
    dim: int | st.SearchStrategy[int] = dims(),
    max_lse_terms: int = 3,
    max_ridges: int = 4,
    condition: tuple[float, float] = (1.0, 10.0),
    alpha: float = 0.1,
) -> RandomConvexPotential:
    """Random convex potentials with closed-form gradients and Hessians.

    The quadratic part has ``A = M M^T + alpha I`` with ``A`` drawn by :func:`spd_matrices`
    (eigenvalues ``>= 2 alpha``); log-sum-exp and softplus parts have drawn affine maps with
    entries in ``[-2, 2]`` and non-negative scales in ``[e^-2, e]``.
    """
    d = draw(_int_or(dim))
    a = draw(spd_matrices(st.just(d), condition=condition, scale=(2 * alpha, 2 * alpha + 1.0)))
    evals, evecs = torch.linalg.eigh(a)
    factor = evecs * torch.sqrt(torch.clamp(evals - alpha, min=0.0))
    k = draw(st.integers(1, max_lse_terms))
    m = draw(st.integers(1, max_ridges))
    arr = lambda shape, lo=-2.0, hi=2.0: torch.as_tensor(
        draw(hnp.arrays(np.float64, shape, elements=_floats(lo, hi)))
    )
    return RandomConvexPotential(
        center=arr((d,), -1.0, 1.0),
        quad_factor=factor,
        alpha=alpha,
        lse_weight=arr((k, d)),
        lse_bias=arr((k,)),
        lse_log_scale=torch.as_tensor(draw(_floats(-2.0, 1.0))),
        ridge_weight=arr((m, d)),
        ridge_bias=arr((m,)),
        ridge_log_scale=arr((m,), -2.0, 1.0),
    )


@st.composite
def transport_problems(
    draw: st.DrawFn,
    dim: int | st.SearchStrategy[int] = dims(),
    min_size: int = 2,
    max_size: int = 16,
) -> tuple[Tensor, Tensor, RandomConvexPotential]:
    """``(x, y, f)`` with ``y_i = grad f(x_i)`` for a random convex ``f``: the pairing is an
    optimal transport plan between the uniform measures on ``x`` and ``y`` (Brenier; cyclical
    monotonicity of ``grad f``), so ``W_2^2 = mean_i |y_i - x_i|^2``."""
    d = draw(_int_or(dim))
    f = draw(convex_functions(st.just(d)))
    x = draw(clouds(st.just(d), min_size=min_size, max_size=max_size, scales=(0.1, 3.0), degenerate=False))
    with torch.no_grad():
        y = f.gradient(x)
    return x, y, f


# --- ICNN configurations ----------------------------------------------------------------
@st.composite
def icnn_configs(
    draw: st.DrawFn,
    kinds: tuple[str, ...] = ("ficnn", "resicnn"),
    max_depth: int = 3,
    max_width: int = 16,
    activations: tuple[str, ...] = ("softplus", "celu", "elu"),
) -> dict[str, Any]:
    """Keyword settings of the built-in ICNNs (``{"kind": ..., "widths": [...], ...}``):
    depth, widths (equal for ``resicnn``), activation, strong convexity ``alpha``, the
    quadratic part and the output-weight scale (large scales give nets far from the identity)."""
    kind = draw(st.sampled_from(kinds))
    depth = draw(st.integers(1, max_depth))
    if kind == "resicnn":
        widths = [draw(st.integers(1, max_width))] * depth
    else:
        widths = draw(st.lists(st.integers(1, max_width), min_size=depth, max_size=depth))
    return {
        "kind": kind,
        "widths": widths,
        "activation": draw(st.sampled_from(activations)),
        "alpha": draw(st.sampled_from([1e-3, 0.0, 0.1, 0.5])),
        "quadratic": draw(st.sampled_from(["full", "scalar", "none"])),
        "init_scale": draw(log_uniform(1e-2, 10.0)),
    }


@st.composite
def potential_nets(
    draw: st.DrawFn,
    dim: int | st.SearchStrategy[int] = dims(),
    configs: st.SearchStrategy[dict[str, Any]] = icnn_configs(),
    registry: Any = None,
) -> PotentialNet:
    """Networks built from :func:`icnn_configs` through the registry (``kind`` names a net),
    in float64, initialized from a drawn torch seed."""
    from jkoflow.registry import default_registry

    d = draw(_int_or(dim))
    config = dict(draw(configs))
    seed = draw(st.integers(0, 2**31 - 1))
    factory = (registry or default_registry()).get("net", config.pop("kind"))
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = factory(d, **config)
    return net.double()


__all__ = [
    "CLOUD_KINDS",
    "RandomConvexPotential",
    "clouds",
    "convex_functions",
    "dims",
    "icnn_configs",
    "log_uniform",
    "points",
    "potential_nets",
    "spd_matrices",
    "transport_problems",
]


def random_convex_potential(
    dim: int, seed: int = 0, lse_terms: int = 2, ridges: int = 3, condition: float = 10.0, alpha: float = 0.1
) -> RandomConvexPotential:
    """A :class:`RandomConvexPotential` drawn from a seeded numpy generator (no hypothesis):
    the fixed, reproducible potential the conformance checks use. The quadratic part has
    eigenvalues spread log-evenly over ``[2 alpha, 2 alpha * condition]``."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    lam = 2 * alpha * condition ** np.linspace(0.0, 1.0, dim)
    factor = q * np.sqrt(lam - alpha)
    u = lambda *shape: torch.as_tensor(rng.uniform(-1.5, 1.5, size=shape))
    return RandomConvexPotential(
        center=u(dim) / 3,
        quad_factor=torch.as_tensor(factor),
        alpha=alpha,
        lse_weight=u(lse_terms, dim),
        lse_bias=u(lse_terms),
        lse_log_scale=torch.tensor(-0.5),
        ridge_weight=u(ridges, dim),
        ridge_bias=u(ridges),
        ridge_log_scale=u(ridges) / 3 - 0.5,
    )


__all__ += ["random_convex_potential"]


def random_icnn(
    dim: int,
    seed: int = 0,
    widths: tuple[int, ...] = (32, 32),
    spectrum: tuple[float, float] = (1.0, 3.0),
    registry: Any = None,
) -> PotentialNet:
    """A fixed-seed, far-from-initial FICNN for estimator tests and benchmarks.

    The registered ``ficnn`` with ``init_scale = 1``, every parameter perturbed by
    ``0.2 N(0, 1)``, then projected (convex again), and its learned quadratic set to
    ``Q diag(linspace(*spectrum)) Q^T`` for a random rotation ``Q``: the net's Hessian is the
    quadratic's plus the ridge curvature, varies from point to point, and
    :meth:`hessian_baseline` (the quadratic) is a useful, not exact, preconditioner.
    """
    from jkoflow.registry import default_registry

    torch.manual_seed(seed)
    net = (registry or default_registry()).get("net", "ficnn")(dim, widths=widths, init_scale=1.0)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.2 * torch.randn_like(p))
        q, _ = torch.linalg.qr(torch.randn(dim, dim))
        net.quad.copy_((q * torch.linspace(spectrum[0], spectrum[1], dim)) @ q.T)
    net.project()
    return net


__all__ += ["random_icnn"]
