"""The JKO-ICNN solver (paper Algorithm 1).

Each step solves

    rho_{t+1} = argmin_rho  F(rho) + W_2^2(rho, rho_t) / (2 tau)

over ``rho = (grad u_theta) # rho_t`` with ``u_theta`` an input-convex network, by training
``theta`` with a stochastic optimizer on

    L(theta) = Fhat(u_theta; x) + 1/(2 tau) * mean_i |grad u_theta(x_i) - x_i|^2,

then pushing the particles ``x_i <- grad u_theta(x_i)`` and their log-densities
``l_i <- l_i - log det H_u(x_i)``.

With ``fresh_samples = B`` the inner objective is estimated, at every inner iteration, on
``B`` new draws ``z ~ rho_0`` pushed through the maps of the previous steps,
``x = T_t o ... o T_1 (z) ~ rho_t`` (paper Section 3: "particles of rho_t obtained via the
pushforward map of previous point clouds"), with ``log rho_t(x) = log rho_0(z) -
sum_s log det H_{u_s}`` when a term needs densities. Its expectation is then the population
objective ``F((grad u) # rho_t) + E_{rho_t} |grad u(x) - x|^2 / (2 tau)`` rather than its value on one
fixed cloud, so the fitted map approaches the ideal JKO map of ``rho_t`` instead of the
minimizer for the empirical measure of the carried particles (whose sampling error biases
every step the same way and accumulates). The carried particles are only pushed forward,
for evaluation.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable

import attrs
import torch
from torch import Tensor

from .flow import Flow, StepRecord
from .functional import Functional, Need, StepContext
from .logdet import LogDetError, LogDetEstimator
from .potential import PotentialNet

Sample0 = Callable[[int, torch.Generator], tuple[Tensor, Tensor | None]]
"""Draws ``(z, log rho_0(z))`` with ``z`` of shape ``(n, d)`` from the initial distribution."""

LR_SCHEDULES = ("constant", "cosine")

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
}


class FlowDivergedError(RuntimeError):
    """A JKO step produced non-finite values it could not recover from.

    ``flow`` holds every step completed before the failure, so nothing is lost.
    """

    def __init__(self, message: str, flow: Flow) -> None:
        super().__init__(message)
        self.flow = flow


def _positive(instance: object, attribute: attrs.Attribute, value: float) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not (math.isfinite(value) and value > 0)
    ):
        raise ValueError(f"{attribute.name}={value!r}: expected a positive number, finite")


def _non_negative_int(instance: object, attribute: attrs.Attribute, value: int) -> None:
    if isinstance(value, bool) or not (isinstance(value, int) and value >= 0):
        raise ValueError(f"{attribute.name}={value!r}: expected a non-negative integer")


def _int(instance: object, attribute: attrs.Attribute, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{attribute.name}={value!r}: expected an integer")  # noqa: TRY004 (spec maps ValueError)


def _bool(instance: object, attribute: attrs.Attribute, value: bool) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{attribute.name}={value!r}: expected true or false")  # noqa: TRY004 (spec maps ValueError)


def _optimizer_name(instance: object, attribute: attrs.Attribute, value: str) -> None:
    if value not in OPTIMIZERS:
        raise ValueError(f"optimizer={value!r}: expected one of {sorted(OPTIMIZERS)}")


def _check_start(x0: object, log_density0: object, make_potential: object) -> None:
    """Refuse a start cloud that would run silently wrong: not an ``(n, d)`` floating tensor,
    non-finite entries, or log-densities that are not one finite value per particle."""
    if not isinstance(x0, Tensor) or not x0.is_floating_point() or x0.ndim != 2:
        what = f"shape {tuple(x0.shape)}, dtype {x0.dtype}" if isinstance(x0, Tensor) else type(x0).__name__
        raise ValueError(f"x0 ({what}): expected a floating tensor of shape (n, d)")
    bad = int((~torch.isfinite(x0)).any(dim=1).sum())
    if bad:
        raise ValueError(f"x0: {bad} of {x0.shape[0]} particles have non-finite coordinates")
    if log_density0 is not None:
        if not isinstance(log_density0, Tensor) or tuple(log_density0.shape) != (x0.shape[0],):
            shape = (
                tuple(log_density0.shape) if isinstance(log_density0, Tensor) else type(log_density0).__name__
            )
            raise ValueError(
                f"log_density0 {shape}: expected a tensor of shape ({x0.shape[0]},), one per particle"
            )
        bad = int((~torch.isfinite(log_density0)).sum())
        if bad:
            raise ValueError(f"log_density0: {bad} of {x0.shape[0]} values are non-finite")
    if not callable(make_potential):
        raise TypeError(f"make_potential={make_potential!r}: expected a callable returning a PotentialNet")


@attrs.define
class JKOSolver:
    """Settings of the outer (JKO) and inner (ICNN fitting) loops.

    Parameters
    ----------
    tau: JKO step size.
    steps: number of JKO steps ``T``.
    inner_iters: optimizer iterations per step (``n_u`` in the paper).
    lr: learning rate of the inner optimizer.
    optimizer: ``"adam"`` (paper), ``"adamw"`` or ``"sgd"``.
    warm_start: start each step from the previous step's ``theta`` (else re-initialize).
    seed: seeds torch before building potentials and drawing probes.
    max_lr_drops: how often one step may recover from a non-finite loss by restoring the
        last finite parameters and halving the learning rate before giving up.
    batch_size: particles per inner iteration (a fresh random minibatch each time); ``None``
        uses them all. With many particles and a small batch the inner objective is an
        unbiased estimate over the whole cloud at the cost of ``batch_size`` particles per
        iteration, which shrinks the bias of fitting each step to one fixed small sample.
    fresh_samples: draw this many new particles ``z ~ rho_0`` at every inner iteration and
        push them through the previous steps' maps (see the module docstring); ``None``
        (or ``0``, for TOML) trains on the carried particles. Needs ``sample0`` in :meth:`run`. The cost per
        inner iteration grows with the step index (one gradient, plus one ``log det`` when a
        term needs densities, per previous map and sample).
    lr_schedule: ``"constant"`` or ``"cosine"`` (the inner learning rate decays from ``lr``
        to ``lr / 100`` over ``inner_iters`` by a half cosine, restarting every step; with
        stochastic objectives such as ``fresh_samples`` this averages out the gradient noise
        that a constant rate leaves in the last iterate).
    progress: show a progress bar over JKO steps.
    """

    tau: float = attrs.field(validator=_positive)
    steps: int = attrs.field(validator=_non_negative_int)
    inner_iters: int = attrs.field(default=200, validator=_non_negative_int)
    lr: float = attrs.field(default=1e-2, validator=_positive)
    optimizer: str = attrs.field(default="adam", validator=_optimizer_name)
    warm_start: bool = attrs.field(default=True, validator=_bool)
    seed: int = attrs.field(default=0, validator=_int)
    max_lr_drops: int = attrs.field(default=4, validator=_non_negative_int)
    batch_size: int | None = attrs.field(default=None)
    fresh_samples: int | None = attrs.field(default=None)
    lr_schedule: str = attrs.field(default="constant")
    progress: bool = attrs.field(default=False, validator=_bool)

    @batch_size.validator
    def _check_batch_size(self, attribute: attrs.Attribute, value: int | None) -> None:
        if value is not None and (isinstance(value, bool) or not (isinstance(value, int) and value >= 2)):
            raise ValueError(f"batch_size={value!r}: expected an integer >= 2 or None (all particles)")

    @fresh_samples.validator
    def _check_fresh_samples(self, attribute: attrs.Attribute, value: int | None) -> None:
        if value is None or value == 0:
            return
        if isinstance(value, bool) or not (isinstance(value, int) and value >= 2):
            raise ValueError(
                f"fresh_samples={value!r}: expected an integer >= 2, or 0 / None (train on the carried particles)"
            )
        if self.batch_size is not None:
            raise ValueError(
                f"fresh_samples={value!r} and batch_size={self.batch_size!r}: expected at most one of them "
                "(fresh samples replace minibatches of the carried particles)"
            )
        if self.inner_iters == 0:
            raise ValueError(
                f"fresh_samples={value!r} with inner_iters=0: expected inner_iters >= 1 "
                "(fresh samples are drawn per inner iteration)"
            )

    @lr_schedule.validator
    def _check_lr_schedule(self, attribute: attrs.Attribute, value: str) -> None:
        if value not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule={value!r}: expected one of {list(LR_SCHEDULES)}")

    def lr_at(self, iteration: int, lr: float | None = None) -> float:
        """Inner learning rate at ``iteration`` (0-based) of a step, starting from ``lr``."""
        lr = self.lr if lr is None else lr
        if self.lr_schedule == "constant" or self.inner_iters <= 1:
            return lr
        final = lr / 100
        return final + 0.5 * (lr - final) * (1 + math.cos(math.pi * iteration / (self.inner_iters - 1)))

    def run(
        self,
        functional: Functional,
        make_potential: Callable[[], PotentialNet],
        x0: Tensor,
        log_density0: Tensor | None = None,
        logdet: LogDetEstimator | None = None,
        callback: Callable[[Flow], None] | None = None,
        sample0: Sample0 | None = None,
    ) -> Flow:
        """Run ``steps`` JKO steps from the particles ``x0`` (shape ``(n, d)``).

        ``log_density0 = log rho_0(x0)`` lets the solver carry log-densities (needed by
        internal energies); ``logdet`` estimates ``log det H_u`` when a term needs it or when
        log-densities are carried. ``callback(flow)`` runs after step 0 and every step.
        ``sample0(n, generator) -> (z, log rho_0(z))`` draws from ``rho_0``; required by
        ``fresh_samples``.
        """
        _check_start(x0, log_density0, make_potential)
        if self.fresh_samples and sample0 is None:
            raise ValueError(
                f"fresh_samples={self.fresh_samples}: pass sample0(n, generator) drawing from rho_0"
            )
        needs = functional.needs
        if Need.LOG_DENSITY in needs and log_density0 is None:
            raise ValueError(f"{functional!r} needs log-densities: pass log_density0 = log rho_0(x0)")
        track = log_density0 is not None
        if (Need.LOGDET in needs or track) and logdet is None:
            why = (
                f"{functional!r} needs log det H_u"
                if Need.LOGDET in needs
                else "carrying log-densities (log_density0 given)"
            )
            raise ValueError(f"{why}: pass a LogDetEstimator as `logdet`")
        torch.manual_seed(self.seed)
        x = x0.detach().clone()
        lrho = None if log_density0 is None else log_density0.detach().clone()
        flow = Flow(tau=self.tau, particles=[x], log_densities=[lrho])
        functional.start(x, lrho)
        flow.initial_F = functional.value(x, lrho)
        if callback:
            callback(flow)
        potential = make_potential()
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=self.steps, desc="JKO steps", unit="step")
        try:
            for step in range(1, self.steps + 1):
                start = time.perf_counter()
                if step > 1:
                    potential = copy.deepcopy(potential) if self.warm_start else make_potential()
                losses, transport, drops = self._fit(potential, functional, x, lrho, logdet, flow, sample0)
                with torch.no_grad():
                    if track:
                        assert logdet is not None and lrho is not None
                        lrho = lrho - logdet(potential, x, grad=False).value
                    x_next = potential.transport(x, create_graph=False)
                bad = int((~torch.isfinite(x_next)).any(dim=1).sum())
                if bad:
                    raise FlowDivergedError(
                        f"step {step}: {bad} of {x.shape[0]} pushed particles are not finite", flow
                    )
                x = x_next
                record = StepRecord(
                    step=step,
                    t=step * self.tau,
                    F=functional.value(x, lrho),
                    transport=transport,
                    inner_loss=losses,
                    seconds=time.perf_counter() - start,
                    lr_drops=drops,
                )
                flow.potentials.append(potential)
                flow.particles.append(x)
                flow.log_densities.append(lrho)
                flow.records.append(record)
                if callback:
                    callback(flow)
                if bar is not None:
                    bar.set_postfix(F=record.F, loss=losses[-1] if losses else None)
                    bar.update()
        finally:
            if bar is not None:
                bar.close()
        return flow

    def _fit(
        self,
        potential: PotentialNet,
        functional: Functional,
        x: Tensor,
        lrho: Tensor | None,
        logdet: LogDetEstimator | None,
        flow: Flow,
        sample0: Sample0 | None = None,
    ) -> tuple[list[float], float, int]:
        """Inner loop: fit ``theta`` for one JKO step; returns the loss curve, the final
        transport term and how many times the learning rate was halved to recover."""
        optimizer = OPTIMIZERS[self.optimizer](potential.parameters(), lr=self.lr)
        wants_logdet = Need.LOGDET in functional.needs
        losses: list[float] = []
        transport_value = float("nan")
        drops = 0
        last_good = copy.deepcopy(potential.state_dict())
        n = x.shape[0]
        batch = self.batch_size if self.batch_size is not None and self.batch_size < n else None
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + len(flow.records))
        wants_density = Need.LOG_DENSITY in functional.needs
        pool: tuple[Tensor, Tensor | None] | None = None
        if self.fresh_samples:
            assert sample0 is not None
            # with densities, push in chunks of B: log det H_u of a chunk costs what one iteration's does
            pool = self._fresh(
                sample0,
                generator,
                flow,
                logdet if wants_density else None,
                x,
                self.inner_iters,
                self.fresh_samples,
                chunk=self.fresh_samples if wants_density else 32768,
            )
        base_lr = self.lr
        it = 0
        while it < self.inner_iters:
            optimizer.zero_grad(set_to_none=True)
            for group in optimizer.param_groups:
                group["lr"] = self.lr_at(it, base_lr)
            xb, lb = x, lrho
            if batch is not None:
                idx = torch.randperm(n, generator=generator)[:batch].to(x.device)
                xb, lb = x[idx], None if lrho is None else lrho[idx]
            elif pool is not None:
                assert self.fresh_samples is not None
                chunk = slice(it * self.fresh_samples, (it + 1) * self.fresh_samples)
                xb, lb = pool[0][chunk], None if pool[1] is None else pool[1][chunk]
            try:
                y = potential.transport(xb)
                transport = ((y - xb) ** 2).sum(dim=1).mean() / (2 * self.tau)
                ld = logdet(potential, xb) if wants_logdet and logdet is not None else None
                ctx = StepContext(x=xb, y=y, tau=self.tau, logdet=ld, log_density=lb)
                loss = functional.inner_objective(ctx) + transport
                finite = bool(torch.isfinite(loss.detach()))
                if finite:
                    loss.backward()
            except LogDetError:
                finite = False
            if not finite:
                drops += 1
                if drops > self.max_lr_drops:
                    raise FlowDivergedError(
                        f"step {len(flow.records) + 1}, inner iteration {it}: non-finite loss after "
                        f"{self.max_lr_drops} learning-rate halvings (lr now {base_lr:.3g}); "
                        "try a smaller tau or lr, or a larger strong-convexity alpha",
                        flow,
                    )
                potential.load_state_dict(last_good)
                base_lr *= 0.5
                optimizer.state.clear()
                continue
            last_good = {k: v.detach().clone() for k, v in potential.state_dict().items()}
            optimizer.step()
            potential.project()
            losses.append(loss.item())
            transport_value = transport.item()
            it += 1
        return losses, transport_value, drops

    def _fresh(
        self,
        sample0: Sample0,
        generator: torch.Generator,
        flow: Flow,
        logdet: LogDetEstimator | None,
        like: Tensor,
        batches: int,
        batch: int,
        chunk: int = 32768,
    ) -> tuple[Tensor, Tensor | None]:
        """``batches`` draws of ``batch`` fresh particles of ``rho_t``, concatenated: ``z ~ rho_0``
        (one ``sample0(batch)`` call per batch, so a stratified sampler stratifies every
        iteration's batch) pushed through ``T_1, ..., T_t`` in chunks of ``chunk`` points, with
        ``log rho_t`` carried when ``logdet`` is given. One call serves a whole inner loop: the
        same samples as per-iteration draws, pushed in a few large batches."""
        draws = [sample0(batch, generator) for _ in range(batches)]
        z = torch.cat([d[0] for d in draws]).to(device=like.device, dtype=like.dtype)
        lz: Tensor | None = None
        if all(d[1] is not None for d in draws):
            lz = torch.cat([d[1] for d in draws if d[1] is not None]).to(device=like.device, dtype=like.dtype)
        if logdet is not None and lz is None:
            raise ValueError("fresh_samples: the functional needs log-densities, but sample0 returned none")
        xs, ls = [], []
        for start in range(0, z.shape[0], chunk):
            xb = z[start : start + chunk]
            lb = None if logdet is None or lz is None else lz[start : start + chunk]
            for previous in flow.potentials:
                if lb is not None:
                    assert logdet is not None
                    lb = lb - logdet(previous, xb, grad=False).value.detach()
                xb = previous.transport(xb, create_graph=False).detach()
            xs.append(xb)
            ls.append(lb)
        return torch.cat(xs), None if ls[0] is None else torch.cat(ls)  # type: ignore[arg-type]
