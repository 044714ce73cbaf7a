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
from dltrain.data.batching import iterate, num_batches
from dltrain.losses import l1_penalty
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
    criterion: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: Schedule
    data: DataSplits
    device: torch.device
    generator: torch.Generator  # draws the shuffling order; its state is checkpointed
    monitor: str
    mode: str
    l1_params: List[nn.Parameter]
    state: TrainState = field(default_factory=TrainState)


class Callback(Protocol):
    def on_epoch_start(self, job: Job, n_batches: int) -> None: ...

    def on_step(self, job: Job, batch: int, running_loss: Callable[[], float]) -> None: ...

    def on_epoch_end(self, job: Job, row: Dict[str, float], improved: bool) -> None: ...


class TrainingDiverged(Exception):
    """The training loss became NaN or infinite."""


def train_step(job: Job, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step; returns the data loss and the outputs, both still on the device."""
    reg, trainer = job.config.regularization, job.config.trainer
    out = job.model(x)
    loss = job.criterion(out, y)
    objective = loss + reg.l1 * l1_penalty(job.l1_params) if reg.l1 > 0 else loss
    job.optimizer.zero_grad(set_to_none=True)
    objective.backward()
    if trainer.grad_clip is not None:
        nn.utils.clip_grad_norm_(job.model.parameters(), trainer.grad_clip)
    job.optimizer.step()
    job.schedule.after_step()
    return loss, out


@torch.inference_mode()
def evaluate(job: Job, split: Split, prefix: str) -> Dict[str, float]:
    """Loss and task metrics of ``job.model`` on ``split`` (``{prefix}_loss``, ...)."""
    job.model.eval()
    sums = MetricSums(job.data.info, job.device)
    for x, y in iterate(split, job.config.trainer.eval_batch_size, shuffle=False):
        out = job.model(x)
        sums.add(job.criterion(out, y), out, y)
    return sums.compute(prefix)


def fit(job: Job, callbacks: Sequence[Callback] = ()) -> TrainState:
    """Train from ``job.state.epoch`` to ``trainer.epochs`` (or an early stop)."""
    trainer = job.config.trainer
    state = job.state
    train = job.data.train
    n_batches = num_batches(len(train), trainer.batch_size)
    has_batch_norm = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in job.model.modules())

    while state.epoch < trainer.epochs and state.stop_reason is None:
        for cb in callbacks:
            cb.on_epoch_start(job, n_batches)
        job.model.train()
        sums = MetricSums(job.data.info, job.device)
        lr = job.optimizer.param_groups[0]["lr"]
        start = time.perf_counter()
        batches = iterate(train, trainer.batch_size, shuffle=True, generator=job.generator,
                          drop_singleton=has_batch_norm)
        for i, (x, y) in enumerate(batches, 1):
            loss, out = train_step(job, x, y)
            sums.add(loss, out, y)
            state.step += 1
            for cb in callbacks:
                cb.on_step(job, i, sums.running_loss)
        row = sums.compute("train")  # the epoch's one host sync of the training pass
        elapsed = time.perf_counter() - start
        if not math.isfinite(row["train_loss"]):
            raise TrainingDiverged(f"the training loss became {row['train_loss']} in epoch {state.epoch + 1}")

        row.update(evaluate(job, job.data.val, "val"))
        state.epoch += 1
        row = {"epoch": state.epoch, **row, "lr": lr, "epoch_time_s": elapsed,
               "samples_per_s": sums.n / elapsed if elapsed > 0 else float("nan")}
        state.history.append(row)
        job.schedule.after_epoch(row[job.monitor])
        improved = state.update_best(row[job.monitor], job.mode, trainer.early_stopping.min_delta)
        patience = trainer.early_stopping.patience
        if patience is not None and state.bad_epochs >= patience:
            state.stop_reason = f"early stopping: no {job.monitor} improvement in {patience} epochs"
        for cb in callbacks:
            cb.on_epoch_end(job, row, improved)
    return state
