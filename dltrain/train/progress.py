"""Live progress: a rich display on a terminal, one plain line per epoch elsewhere (CI, pipes)."""

from __future__ import annotations

import sys
import time
from typing import Callable, Dict

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                           TimeRemainingColumn)

from dltrain.train.loop import Callback, Job

READOUT_S = 1.0
DRAW_S = 0.25  # seconds between redraws of the live bar


def format_row(row: Dict[str, float]) -> str:
    parts = []
    for key, value in row.items():
        if key == "epoch":
            continue
        if key == "lr":
            parts.append(f"lr {value:.3g}")
        elif key == "epoch_time_s":
            parts.append(f"{value:.2f}s")
        elif key == "samples_per_s":
            parts.append(f"{value:,.0f} samples/s")
        else:
            parts.append(f"{key} {value:.4f}")
    return "  ".join(parts)


class PlainProgress(Callback):
    """One line per epoch; never reads the device inside an epoch."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def on_epoch_end(self, job: Job, row: Dict[str, float], improved: bool) -> None:
        epochs = job.config.trainer.epochs
        mark = " *" if improved else ""
        self.console.print(f"epoch {int(row['epoch'])}/{epochs}  {format_row(row)}{mark}",
                           markup=False, highlight=False)
        if job.state.stop_reason:
            self.console.print(job.state.stop_reason, markup=False)


class RichProgress(PlainProgress):
    """A live bar per epoch: batch, running loss, samples/s and ETA; a summary line after it.

    The bar is redrawn from the step at most every ``DRAW_S`` seconds, with no refresh thread:
    on a small model a redraw per step, or rich's own 10 Hz thread competing with torch's
    threads for the cores, cost a fifth of the training speed. The running loss is read (a
    host sync) at a redraw, once ``trainer.log_every`` steps have passed since the last read.
    """

    def __init__(self, console: Console) -> None:
        super().__init__(console)
        self.progress = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("{task.fields[metric]}"),
            TextColumn("{task.fields[speed]} samples/s"),
            TimeRemainingColumn(),
            console=console,
            transient=True,
            auto_refresh=False,
        )
        self.task = None

    def on_epoch_start(self, job: Job, n_batches: int) -> None:
        epoch = f"{job.state.epoch + 1}/{job.config.trainer.epochs}"
        self.start = self.last_readout = self.last_draw = time.perf_counter()
        self.first_batch = self.read_batch = job.state.batch  # a resumed epoch starts part-way
        self.batch_size = job.config.trainer.batch_size
        if self.task is None:
            self.progress.start()
            self.task = self.progress.add_task("train", total=n_batches, epoch=epoch, loss="…",
                                               metric="", speed="…")
        else:
            self.progress.reset(self.task, total=n_batches, epoch=epoch, loss="…", metric="", speed="…")
        self.progress.refresh()

    def on_step(self, job: Job, batch: int, running: Callable[[], Dict[str, float]]) -> None:
        now = time.perf_counter()
        if now - self.last_draw < DRAW_S:
            return
        self.last_draw = now
        fields = {"speed": f"{(batch - self.first_batch) * self.batch_size / max(now - self.start, 1e-9):,.0f}"}
        # the loss is a host sync: read it every log_every steps, or after a quiet second so
        # short epochs show it too
        if batch - self.read_batch >= job.config.trainer.log_every or now - self.last_readout > READOUT_S:
            now_metrics = running()
            fields["loss"] = f"{now_metrics['train_loss']:.4f}"
            key = "train_acc" if "train_acc" in now_metrics else "train_mae"
            fields["metric"] = f"{key[6:]} {now_metrics[key]:.4f}"
            self.last_readout, self.read_batch = now, batch
        self.progress.update(self.task, completed=batch, **fields)
        self.progress.refresh()

    def close(self) -> None:
        if self.task is not None:
            self.progress.stop()


def make_progress(kind: str, console: Console) -> PlainProgress | None:
    """``auto`` is rich on a terminal and plain lines otherwise."""
    if kind == "auto":
        kind = "rich" if sys.stdout.isatty() else "plain"
    if kind == "none":
        return None
    return RichProgress(console) if kind == "rich" else PlainProgress(console)
