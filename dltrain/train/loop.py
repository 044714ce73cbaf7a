"""The training loop: ``fit`` reads top to bottom; a step is one small function.

Side effects (progress, files, checkpoints) hang off callbacks and never change the maths.
No host sync happens inside a step: losses and metrics accumulate on the device and are read at
the end of each epoch, or every ``trainer.log_every`` steps when a live display asks for them.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Protocol, Sequence

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
from dltrain.train.metrics import MetricSums


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


def train_step(job: Job, x: torch.Tensor, y: torch.Tensor,
               share: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step; returns the data loss and the outputs, both still on the device.

    ``share``: under DDP, this process's batch size times the number of processes over the
    global batch size. DDP averages the processes' gradients; weighing each process's mean loss
    by its share makes that average the gradient of the global batch's mean loss, also when the
    last batch does not split evenly.
    """
    reg, trainer = job.config.regularization, job.config.trainer
    fast = job.fast
    with fast.precision.autocast():
        out = fast.forward(x, train=True)
        loss = job.criterion(out.float(), y)  # in float32 whatever the precision (a no-op at 32)
    weighted = loss * share if share != 1.0 else loss
    objective = weighted + reg.l1 * l1_penalty(job.l1_params) if reg.l1 > 0 else weighted
    job.optimizer.zero_grad(set_to_none=True)
    # 16-mixed scales the loss so that small float16 gradients do not underflow; at 32 and
    # bf16-mixed the scaler passes each call through. On CUDA, scaler.step reads back whether a
    # gradient overflowed (a host sync per step) unless the optimizer is fused: the fused
    # kernels take the overflow flag on the device and skip the update there
    scaler = fast.precision.scaler
    scaler.scale(objective).backward()
    if trainer.grad_clip is not None:
        scaler.unscale_(job.optimizer)  # clip the true gradients, not the scaled ones
        nn.utils.clip_grad_norm_(job.model.parameters(), trainer.grad_clip)
    scaler.step(job.optimizer)  # 16-mixed: skipped when a gradient is inf or NaN
    scaler.update()
    job.schedule.after_step()
    return loss, out


class Evaluable(Protocol):
    """What :func:`evaluate` reads: a :class:`Job`, or a model with its data and nothing to
    train it with (``dltrain eval``)."""

    config: TrainConfig
    model: nn.Module
    eval_criterion: nn.Module
    data: DataSplits
    device: torch.device


@torch.inference_mode()
def evaluate(job: Evaluable, split: Split, prefix: str) -> Dict[str, float]:
    """Loss and task metrics of ``job.model`` on ``split`` (``{prefix}_loss``, ...)."""
    job.model.eval()
    # a training job's fast path; dltrain eval's job has none: the module, in float32
    fast = getattr(job, "fast", None) or FastPath.plain(job.model)
    # under DDP each process evaluates its part of every batch with the plain module (no
    # collective per batch, so the parts may differ in number), and the sums are added up
    dist = getattr(job, "dist", None) or Dist()
    sums = MetricSums(job.data.info, job.device)
    size = job.config.trainer.eval_batch_size
    with allocating(f"evaluating {prefix} (batches of {size} samples)",
                    f"trainer.eval_batch_size={size}", job.device):
        for x, y in iterate(split, size, shuffle=False, shard=(dist.rank, dist.world_size)):
            with fast.precision.autocast():
                out = fast.forward(x)
            out = out.float()  # the loss and the metrics in float32, whatever the precision
            sums.add(job.eval_criterion(out, y), out, y)
    return sums.compute(prefix, dist)


def fit(job: Job, callbacks: Sequence[Callback] = (), stop: Optional[StopFlag] = None) -> TrainState:
    """Train from ``job.state`` to ``trainer.epochs`` (or an early stop).

    When ``stop.requested`` becomes non-zero, the current step finishes and
    :class:`TrainingInterrupted` is raised with ``job.state`` describing the partial epoch.
    """
    trainer = job.config.trainer
    state = job.state
    train = job.data.train
    dist = job.dist
    min_last = min_last_batch(job.model, dist.world_size)
    sizes = [stop - start for start, stop in batch_bounds(len(train), trainer.batch_size, min_last)]
    n_batches = len(sizes)

    while state.epoch < trainer.epochs and state.stop_reason is None:
        for cb in callbacks:
            cb.on_epoch_start(job, n_batches)
        job.model.train()
        sums = MetricSums(job.data.info, job.device)
        if state.batch:  # resuming inside an epoch: replay its order, skip the batches done
            job.generator.set_state(state.epoch_rng)
            if dist.is_main:  # the sums of all processes, saved by rank 0 (MetricSums.gathered)
                sums.load_state_dict(state.partial_sums)
        else:
            state.epoch_rng, state.partial_time = job.generator.get_state(), 0.0
            state.epoch_lr = job.optimizer.param_groups[0]["lr"]
        lr = state.epoch_lr
        compiling = job.fast.clock.seconds
        start = time.perf_counter() - state.partial_time
        batches = iterate(train, trainer.batch_size, shuffle=True, generator=job.generator,
                          min_last=min_last, skip=state.batch, shard=(dist.rank, dist.world_size))
        for i, (x, y) in enumerate(batches, state.batch + 1):
            share = y.shape[0] * dist.world_size / sizes[i - 1] if dist.distributed else 1.0
            loss, out = train_step(job, x, y, share)
            sums.add(loss, out, y)
            state.step += 1
            state.batch = i
            for cb in callbacks:
                cb.on_step(job, i, sums.running)
            if stop is not None and stop.requested:
                state.partial_sums = sums.gathered(dist) if dist.distributed else sums.state_dict()
                state.partial_time = time.perf_counter() - start
                raise TrainingInterrupted(stop.requested)
        row = sums.compute("train", dist)  # the epoch's one host sync of the training pass
        elapsed = time.perf_counter() - start
        # torch.compile's warm-up is reported apart (summary.json's compile_time_s): the steps
        # that compiled count only the time they took besides compiling
        steps_time = elapsed - (job.fast.clock.seconds - compiling)
        state.batch, state.epoch_rng, state.partial_sums, state.epoch_lr = 0, None, None, None
        if not math.isfinite(row["train_loss"]):
            raise TrainingDiverged(f"the training loss became {row['train_loss']} in epoch {state.epoch + 1}")

        row.update(evaluate(job, job.data.val, "val"))
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
