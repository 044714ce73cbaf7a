"""Callbacks that keep the run folder in step with training: checkpoints, metrics, TensorBoard."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict

from dltrain import runs
from dltrain.checkpoint import save_checkpoint
from dltrain.errors import UserError
from dltrain.train.loop import Callback, Job


class CheckpointWriter(Callback):
    """After every epoch: best.pt on improvement, metrics.csv, then last.pt.

    ``checkpoint`` builds the checkpoint dict of the job's current state.
    """

    def __init__(self, root: Path, checkpoint: Callable[[], Dict[str, Any]]) -> None:
        self.root = Path(root)
        self.checkpoint = checkpoint

    def on_epoch_end(self, job: Job, row: Dict[str, float], improved: bool) -> None:
        ckpt = self.checkpoint()
        if improved:
            save_checkpoint(self.root / runs.CHECKPOINTS / runs.BEST, ckpt)
        # metrics.csv goes before last.pt: a crash in between leaves the csv one row ahead of
        # the checkpoint, which resume rewrites; never a checkpoint ahead of its metrics
        self.save_last(job, ckpt)

    def save_last(self, job: Job, ckpt: Dict[str, Any]) -> None:
        runs.write_metrics(self.root / runs.METRICS, job.state.history)
        save_checkpoint(self.root / runs.CHECKPOINTS / runs.LAST, ckpt)


class TensorBoardLogger(Callback):
    """``logger=tensorboard``: each epoch's metrics as scalars under RUN/tensorboard/."""

    FOLDER = "tensorboard"

    def __init__(self, root: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise UserError(
                "logger=tensorboard needs the tensorboard package: pip install tensorboard "
                "(or pip install 'dltrain[dev]')"
            ) from None
        self.writer = SummaryWriter(log_dir=str(Path(root) / self.FOLDER))

    def on_epoch_end(self, job: Job, row: Dict[str, float], improved: bool) -> None:
        epoch = int(row["epoch"])
        for key, value in row.items():
            split, _, name = key.partition("_")
            if split in ("train", "val"):
                self.writer.add_scalar(f"{name}/{split}", value, epoch)
            elif key != "epoch":
                self.writer.add_scalar(key, value, epoch)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
