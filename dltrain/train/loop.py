"""The training loop: ``fit`` reads top to bottom; a step is one small function.

Side effects (progress, files, checkpoints) hang off callbacks and never change the maths.
No host sync happens inside a step: losses and metrics accumulate on the device and are read at
the end of each epoch, or every ``trainer.log_every`` steps when a live display asks for them.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Protocol, Sequence

import torch
from torch import nn

from dltrain.data import DataSplits, Split
from dltrain.data.batching import batch_bounds, iterate
from dltrain.distributed import Dist
from dltrain.fastpath import FastPath
from dltrain.losses import l1_penalty
from dltrain.memory import allocating
from dltrain.optim import Schedule
from dltrain.schema import TrainConfig
from dltrain.train.ema import EMA
from dltrain.train.metrics import MetricSums

if TYPE_CHECKING:
    from dltrain.diagnostics import Diagnostics


@dataclass
class TrainState:
    """Everything about progress that a checkpoint must carry to resume exactly."""

    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps taken
    best: Optional[float] = None  # best value of the monitored metric so far
    best_epoch: int = 0
    bad_epochs: int = 0  # epochs since the last improvement (early stopping)
    history: List[Dict[str, float]] = field(default_factory=list)  # one row per epoch
    stop_reason: Optional[str] = None  # None while running; why training ended early otherwise
    # an epoch cut short by a signal: batches done, the shuffle generator's state when the
    # epoch began (to draw the same order again), its running sums and time so far
    batch: int = 0
    epoch_rng: Optional[torch.Tensor] = None
    partial_sums: Optional[Dict[str, torch.Tensor]] = None
    partial_time: float = 0.0
    epoch_lr: Optional[float] = None  # the learning rate the cut-short epoch started with

    def update_best(self, value: float, mode: str, min_delta: float) -> bool:
        better = (
            self.best is None
            or (mode == "min" and value < self.best - min_delta)
            or (mode == "max" and value > self.best + min_delta)
        )
        if better:
            self.best, self.best_epoch, self.bad_epochs = value, self.epoch, 0
        else:
            self.bad_epochs += 1
        return better


@dataclass
class Job:
    """What ``fit`` trains: built once by :mod:`dltrain.train.run`."""

    config: TrainConfig
    model: nn.Module
    criterion: nn.Module  # the training loss
    eval_criterion: nn.Module  # the loss reported for val and test (no label smoothing)
    optimizer: torch.optim.Optimizer
    schedule: Schedule
    data: DataSplits
    device: torch.device
    generator: torch.Generator  # draws the shuffling order; its state is checkpointed
    monitor: str
    mode: str
    l1_params: List[nn.Parameter]
    state: TrainState = field(default_factory=TrainState)
    # how ``model`` runs on ``device``: precision, torch.compile, channels-last (None: as it is,
    # in float32). ``model`` stays the plain module: it is what checkpoints save
    fast: Optional[FastPath] = None
    # this process's part in a data-parallel job (a process on its own: Dist())
    dist: Dist = field(default_factory=Dist)
    threads: str = ""  # how trainer.threads set torch's CPU threads, and why (run.yaml)
    ema: Optional[EMA] = None  # trainer.ema_decay: the averaged weights validation uses
    # trainer.diagnostics: per-layer gradient flow, measured at log steps (rank 0 only)
    diagnostics: Optional["Diagnostics"] = None

    def __post_init__(self) -> None:
        if self.fast is None:
            self.fast = FastPath.plain(self.model)


class Callback:
    """Side effects hang off these hooks; every one is optional and none changes the maths."""

    def on_epoch_start(self, job: Job, n_batches: int) -> None:
        pass

    def on_step(self, job: Job, batch: int, running: Callable[[], Dict[str, float]]) -> None:
        """``running()`` gives the epoch's training metrics so far; it reads the device (a host
        sync): call it at log points only."""

    def on_epoch_end(self, job: Job, row: Dict[str, float], improved: bool) -> None:
        pass

    def close(self) -> None:
        pass


class TrainingDiverged(Exception):
    """The training loss became NaN or infinite."""


class TrainingPruned(Exception):
    """A hyperparameter search's pruner stopped this trial after an epoch: it is unlikely to beat
    the search's other trials. The message says which pruner, when and at what value."""


class TrainingInterrupted(Exception):
    """A stop was requested (Ctrl-C, SIGTERM); the state is consistent after the last step."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class StopFlag(Protocol):
    requested: int  # 0, or the number of the signal that asked training to stop


def min_last_batch(model: nn.Module, world_size: int = 1) -> int:
    """The smallest last batch training keeps: a sample for each process, two with batch norm,
    which cannot train on a single sample."""
    has_norm = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    return world_size * (2 if has_norm else 1)


def train_step(job: Job, x: torch.Tensor, y: torch.Tensor, weight: float = 1.0,
               penalty_weight: float = 1.0, *, first: bool = True, update: bool = True,
               measure: bool = False) -> tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    """A forward and backward pass on one batch, and, when ``update``, the optimizer step on
    the gradients accumulated since ``first`` (the step's first batch). Returns the data loss, the outputs and (when
    ``measure``) the global gradient norm before clipping, all still on the device.

    The optimizer steps on the gradient of the mean loss over every sample of its batches
    (``trainer.accumulate`` batches, under DDP of every process): ``weight`` is this batch's
    part in it, its samples over those of the step's batches times the number of processes,
    whose gradients DDP averages. The L1 penalty counts once a step: ``penalty_weight`` is this
    batch's share of the step's global samples.
    """
    reg, trainer = job.config.regularization, job.config.trainer
    fast = job.fast
    with fast.precision.autocast():
        out = fast.forward(x, train=True)
        loss = job.criterion(out.float(), y)  # in float32 whatever the precision (a no-op at 32)
    objective = loss * weight if weight != 1.0 else loss
    if reg.l1 > 0:
        objective = objective + (reg.l1 * penalty_weight) * l1_penalty(job.l1_params)
    # 16-mixed scales the loss so that small float16 gradients do not underflow; at 32 and
    # bf16-mixed the scaler passes each call through. On CUDA, scaler.step reads back whether a
    # gradient overflowed (a host sync per step) unless the optimizer is fused: the fused
    # kernels take the overflow flag on the device and skip the update there
    scaler = fast.precision.scaler
    if first:
        job.optimizer.zero_grad(set_to_none=True)
    # between the batches of one step, DDP need not average the gradients yet
    sync = fast.ddp.no_sync() if fast.ddp is not None and not update else contextlib.nullcontext()
    with sync:
        scaler.scale(objective).backward()
    if not update:
        return loss, out, None
    norm = None
    if trainer.grad_clip is not None or measure:
        scaler.unscale_(job.optimizer)  # clip and measure the true gradients, not scaled ones
        params = [p for p in job.model.parameters() if p.grad is not None]
        # the diagnostics' per-layer norms give the global one too (one pass over the
        # gradients, not two); clipping keeps torch's own, so they never change the maths
        recorded = job.diagnostics.record_grads() if measure and job.diagnostics else None
        if trainer.grad_clip is not None:
            norm = nn.utils.clip_grad_norm_(params, trainer.grad_clip)
        else:
            norm = recorded if recorded is not None else total_norm(params)
    if measure and job.diagnostics is not None:
        job.diagnostics.before_update()
    scaler.step(job.optimizer)  # 16-mixed: skipped when a gradient is inf or NaN
    scaler.update()
    if measure and job.diagnostics is not None:
        job.diagnostics.after_update()
    job.schedule.after_step()
    if job.ema is not None:
        job.ema.update()
    return loss, out, norm


def total_norm(params: List[nn.Parameter]) -> torch.Tensor:
    """The global L2 norm of the gradients of ``params``, as clip_grad_norm_ computes it, without
    its scaling pass (torch < 2.6 has no get_total_norm: clip at infinity, which scales by 1)."""
    get = getattr(nn.utils, "get_total_norm", None)
    if get is None:
        return nn.utils.clip_grad_norm_(params, float("inf"))
    return get([p.grad for p in params])


def log_point(batch: int, n_batches: int, accumulate: int, log_every: int) -> bool:
    """Whether ``batch`` (1-based, of ``n_batches``) ends an optimizer step that is a log point:
    the epoch's first step and every ``log_every``-th after it."""
    update = batch % accumulate == 0 or batch == n_batches
    return update and ((batch - 1) // accumulate) % log_every == 0


def epoch_batches(job: Job) -> List[int]:
    """The sizes of an epoch's training batches (global), after trainer.limit_batches or
    trainer.overfit_batches."""
    trainer = job.config.trainer
    limit = trainer.overfit_batches or trainer.limit_batches
    bounds = batch_bounds(len(job.data.train), trainer.batch_size,
                          min_last_batch(job.model, job.dist.world_size))[:limit]
    return [stop - start for start, stop in bounds]


def optimizer_steps(n_batches: int, accumulate: int) -> int:
    """Optimizer steps in an epoch of ``n_batches``: the last step takes what is left."""
    return -(-n_batches // accumulate)


class Evaluable(Protocol):
    """What :func:`evaluate` reads: a :class:`Job`, or a model with its data and nothing to
    train it with (``dltrain eval``)."""

    config: TrainConfig
    model: nn.Module
    eval_criterion: nn.Module
    data: DataSplits
    device: torch.device


@torch.inference_mode()
def evaluate(job: Evaluable, split: Split, prefix: str, *, size: Optional[int] = None,
             limit: Optional[int] = None) -> Dict[str, float]:
    """Loss and task metrics of ``job.model`` on ``split`` (``{prefix}_loss``, ...), in batches
    of ``size`` (trainer.eval_batch_size), the first ``limit`` of them (trainer.limit_batches)."""
    job.model.eval()
    # a training job's fast path; dltrain eval's job has none: the module, in float32
    fast = getattr(job, "fast", None) or FastPath.plain(job.model)
    # under DDP each process evaluates its part of every batch with the plain module (no
    # collective per batch, so the parts may differ in number), and the sums are added up
    dist = getattr(job, "dist", None) or Dist()
    sums = MetricSums(job.data.info, job.device)
    trainer = job.config.trainer
    size = size or trainer.eval_batch_size
    limit = limit or trainer.limit_batches
    with allocating(f"evaluating {prefix} (batches of {size} samples)",
                    f"trainer.eval_batch_size={size}", job.device):
        for x, y in iterate(split, size, shuffle=False, shard=(dist.rank, dist.world_size),
                            limit=limit):
            with fast.precision.autocast():
                out = fast.forward(x)
            out = out.float()  # the loss and the metrics in float32, whatever the precision
            sums.add(job.eval_criterion(out, y), out, y)
    return sums.compute(prefix, dist)


def validate(job: Job) -> Dict[str, float]:
    """The epoch's validation metrics: of the averaged weights when trainer.ema_decay is set;
    with trainer.overfit_batches, on the training batches the epoch trained on."""
    trainer = job.config.trainer
    with job.ema.applied() if job.ema is not None else contextlib.nullcontext():
        if trainer.overfit_batches:
            return evaluate(job, job.data.train, "val", size=trainer.batch_size,
                            limit=trainer.overfit_batches)
        return evaluate(job, job.data.val, "val")


class LogPoints:
    """What the loop measures at log points (every ``trainer.log_every`` optimizer steps of an
    epoch, its first included): the gradient norm, and whether the loss stayed finite. Device
    sums in between; one read per log point (the finiteness check) and one per epoch."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.norm_sum = torch.zeros((), device=job.device)
        self.norms = 0
        # each batch's loss since the last check (references, no kernel), and its step
        self.losses: List[torch.Tensor] = []
        self.steps: List[int] = []

    def add_loss(self, loss: torch.Tensor, step: int) -> None:
        self.losses.append(loss.detach())
        self.steps.append(step)

    def add_norm(self, norm: torch.Tensor) -> None:
        self.norm_sum = self.norm_sum + norm.float()
        self.norms += 1

    def check_finite(self) -> None:
        """Raise :class:`TrainingDiverged` naming the first step whose loss was not finite;
        under DDP every process learns of it from any."""
        if not self.losses:
            return
        losses, steps = torch.stack(self.losses).float(), self.steps
        self.losses, self.steps = [], []
        bad = (~torch.isfinite(losses)).any().to(torch.float64).reshape(1)
        self.job.dist.all_reduce([bad])
        if not bad.tolist()[0]:  # the log point's host sync
            return
        values = losses.tolist()
        at = next((k for k, v in enumerate(values) if not math.isfinite(v)), None)
        where = (f"became {values[at]} at step {steps[at]}" if at is not None
                 else f"became non-finite in another process by step {steps[-1]}")
        raise TrainingDiverged(f"the training loss {where} (epoch {self.job.state.epoch + 1})")

    def grad_norm(self) -> Dict[str, torch.Tensor]:
        """``grad_norm``: the mean over the epoch's measured steps, still on the device."""
        return {"grad_norm": self.norm_sum / self.norms} if self.norms else {}

    def state_dict(self) -> Dict[str, object]:
        return {"norm_sum": self.norm_sum.detach().clone(), "norms": self.norms}

    def load_state_dict(self, state: Dict[str, object]) -> None:
        self.norm_sum = state["norm_sum"].to(self.job.device)
        self.norms = int(state["norms"])


def fit(job: Job, callbacks: Sequence[Callback] = (), stop: Optional[StopFlag] = None) -> TrainState:
    """Train from ``job.state`` to ``trainer.epochs`` (or an early stop).

    When ``stop.requested`` becomes non-zero, the current optimizer step finishes and
    :class:`TrainingInterrupted` is raised with ``job.state`` describing the partial epoch.
    """
    trainer = job.config.trainer
    state = job.state
    train = job.data.train
    dist = job.dist
    min_last = min_last_batch(job.model, dist.world_size)
    sizes = epoch_batches(job)
    n_batches, accumulate = len(sizes), trainer.accumulate
    limit = trainer.overfit_batches or trainer.limit_batches
    # the global samples of each batch's optimizer step
    group_size = [sum(sizes[i - i % accumulate:i - i % accumulate + accumulate]) for i in range(n_batches)]

    while state.epoch < trainer.epochs and state.stop_reason is None:
        for cb in callbacks:
            cb.on_epoch_start(job, n_batches)
        job.model.train()
        sums = MetricSums(job.data.info, job.device)
        points = LogPoints(job)
        if state.batch:  # resuming inside an epoch: replay its order, skip the batches done
            job.generator.set_state(state.epoch_rng)
            partial = dict(state.partial_sums)
            points.load_state_dict(partial.pop("log_points"))
            if job.diagnostics is not None and "diagnostics" in partial:
                job.diagnostics.load_state_dict(partial.pop("diagnostics"))
            partial.pop("diagnostics", None)
            if dist.is_main:  # the sums of all processes, saved by rank 0 (MetricSums.gathered)
                sums.load_state_dict(partial)
        else:
            state.epoch_rng, state.partial_time = job.generator.get_state(), 0.0
            state.epoch_lr = job.optimizer.param_groups[0]["lr"]
        lr = state.epoch_lr
        compiling = job.fast.clock.seconds
        start = time.perf_counter() - state.partial_time
        # overfit_batches: the same first batches, in the same order, every epoch
        batches = iterate(train, trainer.batch_size, shuffle=not trainer.overfit_batches,
                          generator=job.generator, min_last=min_last, skip=state.batch,
                          shard=(dist.rank, dist.world_size), limit=limit)
        for i, (x, y) in enumerate(batches, state.batch + 1):
            update = i % accumulate == 0 or i == n_batches
            measure = log_point(i, n_batches, trainer.accumulate, trainer.log_every)
            weight = y.shape[0] * dist.world_size / group_size[i - 1]
            loss, out, norm = train_step(job, x, y, weight, sizes[i - 1] / group_size[i - 1],
                                         first=(i - 1) % accumulate == 0, update=update,
                                         measure=measure)
            sums.add(loss, out, y)
            points.add_loss(loss, state.step + 1)
            state.batch = i
            if update:
                state.step += 1
                if measure:
                    points.add_norm(norm)
                    points.check_finite()
            for cb in callbacks:
                cb.on_step(job, i, sums.running)
            if update and stop is not None and stop.requested:
                state.partial_sums = {
                    **(sums.gathered(dist) if dist.distributed else sums.state_dict()),
                    "log_points": points.state_dict(),
                    **({"diagnostics": job.diagnostics.state_dict()} if job.diagnostics else {})}
                state.partial_time = time.perf_counter() - start
                raise TrainingInterrupted(stop.requested)
        points.check_finite()
        row = sums.compute("train", dist, extra=points.grad_norm())  # the pass's one host sync
        elapsed = time.perf_counter() - start
        # torch.compile's warm-up is reported apart (summary.json's compile_time_s): the steps
        # that compiled count only the time they took besides compiling
        steps_time = elapsed - (job.fast.clock.seconds - compiling)
        state.batch, state.epoch_rng, state.partial_sums, state.epoch_lr = 0, None, None, None
        if not math.isfinite(row["train_loss"]):
            raise TrainingDiverged(f"the training loss became {row['train_loss']} in epoch {state.epoch + 1}")

        row.update(validate(job))
        state.epoch += 1
        row = {"epoch": state.epoch, **row, "lr": lr, "epoch_time_s": elapsed,
               "samples_per_s": sum(sizes) / steps_time if steps_time > 0 else float("nan")}
        state.history.append(row)
        job.schedule.after_epoch(row[job.monitor])
        improved = state.update_best(row[job.monitor], job.mode, trainer.early_stopping.min_delta)
        patience = trainer.early_stopping.patience
        if patience is not None and state.bad_epochs >= patience:
            state.stop_reason = (f"early stopping: no {job.monitor} improvement in {patience} "
                                 f"epoch{'' if patience == 1 else 's'}")
        for cb in callbacks:
            cb.on_epoch_end(job, row, improved)
    return state
