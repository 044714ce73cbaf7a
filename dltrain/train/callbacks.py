"""Callbacks that keep the run folder in step with training: checkpoints, and the metric
loggers (metrics.csv, TensorBoard, ...; see :mod:`dltrain.loggers`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Mapping, Sequence

from dltrain import runs
from dltrain.checkpoint import save_checkpoint
from dltrain.loggers import MetricLogger, flatten
from dltrain.train.loop import Callback, Job


class CheckpointWriter(Callback):
    """After every epoch: best.pt on improvement, then last.pt.

    ``checkpoint`` builds the checkpoint dict of the job's current state. metrics.csv is the
    csv logger's (:class:`LoggerFanOut`), which must come before this callback.
    """

    def __init__(self, root: Path, checkpoint: Callable[[], Dict[str, Any]], write: bool = True) -> None:
        self.root = Path(root)
        self.checkpoint = checkpoint
        # every process of a DDP job builds the checkpoint (a collective); rank 0 writes it
        self.write = write

    def on_epoch_end(self, job: Job, row: Dict[str, float], improved: bool) -> None:
        ckpt = self.checkpoint()
        if improved and self.write:
            save_checkpoint(self.root / runs.CHECKPOINTS / runs.BEST, ckpt)
        self.save_last(ckpt)

    def save_last(self, ckpt: Dict[str, Any]) -> None:
        if self.write:
            save_checkpoint(self.root / runs.CHECKPOINTS / runs.LAST, ckpt)


class LoggerFanOut(Callback):
    """Hands a run's events to every chosen logger: ``start`` (the checkpoint's history and the
    config) before training, each epoch's metrics at ``step=epoch``, and ``finish`` (the run
    folder's files, then the status) once, however the run ends.

    Put it before :class:`CheckpointWriter`: the loggers take an epoch before last.pt says it is
    done, so a crash in between leaves them one epoch ahead of the checkpoint, which the resume
    drops (each logger's ``start``), and never behind it.
    """

    def __init__(self, loggers: Sequence[MetricLogger]) -> None:
        self.loggers = list(loggers)
        self.finished = False

    def start(self, history: Sequence[Mapping[str, float]], config: Mapping[str, Any]) -> None:
        params = flatten(config)
        for logger in self.loggers:
            logger.start(history)
            logger.log_params(params)

    def on_epoch_end(self, job: Job, row: Dict[str, float], improved: bool) -> None:
        metrics = {key: value for key, value in row.items() if key != "epoch"}
        for logger in self.loggers:
            logger.log_metrics(metrics, step=int(row["epoch"]))

    def finish(self, status: str, artifacts: Iterable[Path] = ()) -> None:
        """Once: the files among ``artifacts`` that exist, then ``status``. A second call (a
        failure while an interrupted run finishes) does nothing."""
        if self.finished:
            return
        self.finished = True
        files = [Path(path) for path in artifacts if Path(path).is_file()]
        for logger in self.loggers:
            for path in files:
                logger.log_artifact(path)
            logger.finish(status)


class DiagnosticsRecorder(Callback):
    """diagnostics.csv: each epoch's gradient flow and layer health (``job.diagnostics``), and
    gradflow.png when the run ends. Started from the checkpoint's epoch, as the loggers are."""

    def __init__(self, root: Path, epochs_done: int) -> None:
        from dltrain.diagnostics import DiagnosticsWriter

        self.root = Path(root)
        self.writer = DiagnosticsWriter(self.root)
        self.writer.start(epochs_done)

    def on_epoch_end(self, job: Job, row: Dict[str, float], improved: bool) -> None:
        if job.diagnostics is not None:
            self.writer.write(job.diagnostics.end_epoch(int(row["epoch"])))

    def plot(self, title: str) -> Path:
        """gradflow.png from diagnostics.csv (the epochs of every session of the run)."""
        from dltrain.diagnostics import DIAGNOSTICS, GRADFLOW, plot_gradflow

        path = self.root / GRADFLOW
        plot_gradflow(self.root / DIAGNOSTICS, path, title)
        return path
