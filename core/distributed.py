"""Data-parallel JKO steps under ``torch.distributed`` (``jkoflow run --nproc N``).

Each of the ``N`` processes (ranks; launched by ``torchrun``; gloo for CPU tensors, and nccl for
CUDA tensors where CUDA is available, each rank's ``"cuda"`` being its own GPU ``LOCAL_RANK``:
untested here, this machine has no GPU) holds one contiguous shard of the particles (``torch.tensor_split`` of
the start cloud, in order) and the same potential (every rank seeds torch alike). The solver
runs unchanged on each shard; two wrappers make its steps those of the whole cloud:

* **gradients**: before every ``optimizer.step()`` (a global optimizer step pre-hook) the
  gradients are all-reduced with the weights ``b_r / B`` (``b_r`` particles of rank ``r`` in the
  iteration, ``B`` in all), so each rank takes the step of the mean over all particles and the
  potentials stay identical (rank 0's are also broadcast after every step);
* **terms** (:class:`ShardedFunctional`): a term that is a mean over particles (potential
  energy ``mean_i V(y_i)``, internal energies ``-mean_i w_i log det H_u(x_i)``, entropy, porous
  medium) is evaluated on the rank's own particles; any other term (interaction energy
  ``1/2 mean_{i != j} W(y_i - y_j)``, divergences ``D(y, x_0)``, and every term jkoflow does not
  know to be a mean) is evaluated on the whole cloud: each rank gathers ``x``, ``y``,
  ``log det H_u`` and ``log rho`` from all ranks (the others' detached, its own differentiable)
  and scales its gradient by ``B / b_r``, so that the weighted all-reduce gives the gradient of
  the term on the whole cloud. The start cloud (``start``) and ``F`` of a cloud (``value``) are
  always computed on the gathered cloud. The loss every rank sees is the whole cloud's (the
  transport term is corrected by its all-reduced mean), so stopping rules and failure checks
  agree across ranks (the values agree to an ulp: each rank adds its own transport term back;
  a stopping rule that lands within an ulp of its threshold could still split the ranks). Two recorded diagnostics stay rank 0's own: ``StepRecord.transport``
  (read by the solver before the correction) and ``grad_norm`` (read before the all-reduce).

Which built-in terms are means is listed in :data:`PER_PARTICLE` (by class name); a
third-party term declares it with a class attribute ``per_particle_mean = True``.

Tolerance: the 2-process flow equals the 1-process flow up to the order of floating-point
sums (a mean of two half-means instead of one mean, all-reduced gradients); measured on the
heat problem in float64 (N = 50, 3 steps, 20 inner iterations), see ``tests/test_distributed.py``.

Not supported with ``--nproc > 1`` (refused): ``fresh_samples`` (every rank would draw the same
samples), L-BFGS (gradients are evaluated inside ``step()``) and ``compile``. ``jkoflow resume
DIR --nproc N`` continues a run on ``N`` processes (each takes its shard of the checkpointed
cloud); without ``--nproc`` it continues on one. Random log-det probes are drawn
per rank from identically seeded generators: a valid but different estimate than one process
draws. A numerical failure seen on one rank only (its diagnosis is local) can stop the ranks
apart; the process group's timeout then ends the run with an error instead of a hang.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable
from typing import Any

import attrs
import torch
import torch.distributed as dist
from torch import Tensor

from .flow import Flow
from .functional import Functional, LogDet, StepContext
from .run import Run

__all__ = [
    "PER_PARTICLE",
    "DataParallel",
    "ShardedFunctional",
    "init_from_env",
    "is_per_particle",
    "shard_bounds",
]

PER_PARTICLE = frozenset({"PotentialEnergy", "InternalEnergy"})
"""Built-in terms whose inner objective and value are means over particles."""

TIMEOUT = datetime.timedelta(seconds=float(os.environ.get("JKOFLOW_DIST_TIMEOUT", "300")))


def is_per_particle(term: Functional) -> bool:
    """Whether ``term`` is a mean over particles (evaluated per shard)."""
    flag = getattr(term, "per_particle_mean", None)
    if flag is not None:
        return bool(flag)
    return type(term).__name__ in PER_PARTICLE and type(term).__module__.startswith("jkoflow.")


def shard_bounds(n: int, world_size: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` of each rank's contiguous shard of ``n`` particles."""
    sizes = [len(t) for t in torch.tensor_split(torch.arange(n), world_size)]
    out, start = [], 0
    for s in sizes:
        out.append((start, start + s))
        start += s
    return out


def _gather_rows(t: Tensor, world_size: int) -> list[Tensor]:
    """Every rank's ``t`` (same trailing shape, any number of rows), in rank order; no autograd."""
    t = t.detach().contiguous()
    count = torch.tensor([t.shape[0]], dtype=torch.long, device=t.device)
    counts = [torch.zeros_like(count) for _ in range(world_size)]
    dist.all_gather(counts, count)
    sizes = [int(c) for c in counts]
    most = max(sizes)
    padded = t.new_zeros((most, *t.shape[1:]))
    padded[: t.shape[0]] = t
    parts = [torch.zeros_like(padded) for _ in range(world_size)]
    dist.all_gather(parts, padded)
    return [p[:s] for p, s in zip(parts, sizes)]


class DataParallel:
    """This process's place in a data-parallel run (see the module docstring)."""

    def __init__(self, rank: int, world_size: int) -> None:
        self.rank = rank
        self.world_size = world_size
        self.weight = 1.0 / world_size
        """``b_r / B`` of the current inner iteration (set by :class:`ShardedFunctional`)."""
        self._hook: Any = None

    # --- the cloud -------------------------------------------------------------------------
    def gather(self, t: Tensor) -> Tensor:
        """The whole cloud's rows of ``t`` (detached), on every rank."""
        return torch.cat(_gather_rows(t, self.world_size))

    def gather_cloud(self, x: Tensor, log_density: Tensor | None) -> tuple[Tensor, Tensor | None]:
        return self.gather(x), None if log_density is None else self.gather(log_density)

    def sync(self, flow: Flow) -> None:
        """Broadcast rank 0's last potential (parameters and buffers) to every rank."""
        if not flow.potentials:
            return
        with torch.no_grad():
            for t in [*flow.potentials[-1].parameters(), *flow.potentials[-1].buffers()]:
                dist.broadcast(t.data, src=0)

    def shard_flow(self, flow: Flow) -> Flow:
        """This rank's shard of a whole-cloud flow (a checkpoint to resume): its particles and
        log-densities, sharing the flow's potentials and records lists."""
        start, stop = shard_bounds(flow.particles[0].shape[0], self.world_size)[self.rank]
        return Flow(
            tau=flow.tau,
            potentials=flow.potentials,
            particles=[x[start:stop].clone() for x in flow.particles],
            log_densities=[None if ld is None else ld[start:stop].clone() for ld in flow.log_densities],
            records=flow.records,
            initial_F=flow.initial_F,
            rng_state=flow.rng_state,
        )

    # --- gradients -------------------------------------------------------------------------
    def _all_reduce_grads(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads]) * self.weight
        dist.all_reduce(flat)
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()

    def shard(self, run: Run) -> Run:
        """``run`` on this rank's particles with the wrappers of the module docstring."""
        self.check(run)
        n = run.x0.shape[0]
        start, stop = shard_bounds(n, self.world_size)[self.rank]
        if self._hook is None:
            from torch.optim.optimizer import register_optimizer_step_pre_hook

            self._hook = register_optimizer_step_pre_hook(self._all_reduce_grads)
        return attrs.evolve(
            run,
            x0=run.x0[start:stop].clone(),
            log_density0=None if run.log_density0 is None else run.log_density0[start:stop].clone(),
            functional=ShardedFunctional(run.functional, self),
        )

    def check(self, run: Run) -> None:
        """Refuse (``ValueError``) the settings a data-parallel run does not support."""
        solver = run.solver
        if solver.fresh_samples:
            raise ValueError(
                f"solver.fresh_samples = {solver.fresh_samples} is not supported with --nproc > 1 (every "
                "process would draw the same samples); run it on one process"
            )
        if solver.optimizer not in ("adam", "adamw", "sgd"):
            raise ValueError(
                f"solver.optimizer = {solver.optimizer!r} is not supported with --nproc > 1; expected one of "
                "adam, adamw, sgd (the gradients are all-reduced before each optimizer step)"
            )
        if getattr(solver, "compile", False):
            raise ValueError(
                "solver.compile = true is not supported with --nproc > 1 (untested with collectives)"
            )
        n = run.x0.shape[0]
        if n < 2 * self.world_size:
            raise ValueError(f"{n} particles are too few to split over {self.world_size} processes")

    def close(self) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        if dist.is_initialized():
            dist.destroy_process_group()


class ShardedFunctional(Functional):
    """``functional`` on a shard, computing the whole cloud's objective (module docstring)."""

    def __init__(self, functional: Functional, parallel: DataParallel) -> None:
        self.inner = functional
        self.parallel = parallel
        self.needs = functional.needs
        self._terms = functional.terms()

    def __repr__(self) -> str:
        return repr(self.inner)

    def start(self, x0: Tensor, log_density0: Tensor | None = None) -> None:
        x, ld = self.parallel.gather_cloud(x0, log_density0)
        self.inner.start(x, ld)

    def value(self, x: Tensor, log_density: Tensor | None = None) -> float | None:
        full_x, full_ld = self.parallel.gather_cloud(x, log_density)
        return self.inner.value(full_x, full_ld)

    def _whole(self, ctx: StepContext) -> StepContext:
        """``ctx`` on the whole cloud: the others' rows detached, this rank's differentiable."""
        p = self.parallel

        def cat(own: Tensor) -> Tensor:
            parts = _gather_rows(own, p.world_size)
            parts[p.rank] = own
            return torch.cat(parts)

        logdet = None
        if ctx.logdet is not None:
            logdet = LogDet(value=cat(ctx.logdet.value), surrogate=cat(ctx.logdet.surrogate))
        return StepContext(
            x=cat(ctx.x),
            y=cat(ctx.y),
            tau=ctx.tau,
            logdet=logdet,
            log_density=None if ctx.log_density is None else cat(ctx.log_density),
        )

    def inner_objective(self, ctx: StepContext) -> Tensor:
        if not (torch.is_grad_enabled() and ctx.y.requires_grad):
            return self.inner.inner_objective(ctx)  # a failure diagnosis: this rank's particles only
        p = self.parallel
        b = ctx.x.shape[0]
        local_terms: list[tuple[float, Functional]] = []
        whole_terms: list[tuple[float, Functional]] = []
        for w, term in self._terms:
            (local_terms if is_per_particle(term) else whole_terms).append((w, term))
        transport = (((ctx.y - ctx.x) ** 2).sum(dim=1).mean() / (2 * ctx.tau)).detach()
        local = [w * term.inner_objective(ctx) for w, term in local_terms]
        # one all-reduce: b_r, b_r * transport_r, b_r * v_r for each per-particle term
        values = [float(b), b * float(transport), *[b * float(v.detach()) for v in local]]
        stats = torch.tensor(values, dtype=torch.float64, device=ctx.x.device)
        dist.all_reduce(stats)
        total_b = float(stats[0])
        p.weight = b / total_b
        out = (stats[1] / total_b - transport.to(torch.float64)).to(ctx.y.dtype)  # whole-cloud transport
        for k, v in enumerate(local):
            out = out + v + (stats[2 + k].to(v.dtype) / total_b - v).detach()
        if whole_terms:
            whole = self._whole(ctx)
            scale = total_b / b
            for w, term in whole_terms:
                v = w * term.inner_objective(whole)
                out = out + v.detach() + scale * (v - v.detach())
        return out


def init_from_env() -> DataParallel:
    """Join the process group torchrun set up (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ...)."""
    if not dist.is_initialized():
        backend = os.environ.get("JKOFLOW_DIST_BACKEND")
        if backend is None:
            backend = "gloo"
            if torch.cuda.is_available():  # CPU tensors over gloo, CUDA tensors over nccl
                torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))  # "cuda" = this rank's GPU
                backend = "cpu:gloo,cuda:nccl"
        dist.init_process_group(backend=backend, timeout=TIMEOUT)
    return DataParallel(dist.get_rank(), dist.get_world_size())


def launch(argv: list[str], nproc: int, run_json: Callable[[], dict[str, Any] | None]) -> int:
    """Run ``python -m jkoflow ARGV`` on ``nproc`` processes through torchrun (standalone, this
    machine); the exit code is the run's: 0 complete, 1 failed, 130 interrupted (from
    ``run.json``), else torchrun's."""
    import subprocess
    import sys

    env = dict(os.environ, JKOFLOW_DISTRIBUTED="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
    cmd += ["-m", "jkoflow", *argv]
    try:
        proc = subprocess.run(cmd, env=env, check=False)
    except KeyboardInterrupt:
        proc = None
    record = run_json() or {}
    status = record.get("status")
    if status == "complete":
        return 0
    if status == "interrupted" or proc is None:
        return 130
    if status == "failed":
        return 1
    return proc.returncode if proc.returncode in (0, 1, 2, 130) else 1
