"""Callbacks that keep the run folder in step with training: checkpoints, and the metric
loggers (metrics.csv, TensorBoard, ...; see :mod:`dltrain.loggers`)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence

from dltrain import runs
from dltrain.checkpoint import save_checkpoint
from dltrain.console import err_console
from dltrain.errors import UserError
from dltrain.loggers import MetricLogger, flatten
from dltrain.loggers.base import logger_name, one_line
from dltrain.train.loop import Callback, Job, log_point


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
    config) before training, the running training loss at log points (to loggers with
    ``log_step``), each epoch's metrics at ``step=epoch``, and ``finish`` (summary.json's
    values, the run folder's files, then the status) once, however the run ends.

    Put it before :class:`CheckpointWriter`: the loggers take an epoch before last.pt says it is
    done, so a crash in between leaves them one epoch ahead of the checkpoint, which the resume
    drops (each logger's ``start``), and never behind it.

    A logger that fails to start stops the run (one :class:`UserError` naming it). A logger that
    fails after that never stops training: it is dropped with one warning line on the error
    console, and the others go on. An ``essential`` logger (metrics.csv's, the run folder's own
    record) is never dropped: its failure (a full disk) is the run's.
    """

    def __init__(self, loggers: Sequence[MetricLogger]) -> None:
        self.loggers = list(loggers)
        self.finished = False
        self.n_batches = 0
        self.steppers: List[MetricLogger] = []  # the loggers that take log_step

    def start(self, history: Sequence[Mapping[str, float]], config: Mapping[str, Any]) -> None:
        params = flatten(config)
        started: List[MetricLogger] = []
        for logger in self.loggers:
            try:
                logger.start(history)
                started.append(logger)
                logger.log_params(params)
            except Exception as e:
                for other in started:  # they opened runs and files: close them as failed
                    with contextlib.suppress(Exception):
                        other.finish("failed")
                self.finished = True
                if isinstance(e, UserError):
                    raise
                raise UserError(f"logger={logger_name(logger)} could not start: "
                                f"{one_line(e)}; fix its options or leave it out") from None

    def record(self) -> Dict[str, Dict[str, Any]]:
        """``{name: what it records}`` of the loggers that record something, for run.yaml."""
        out = {}
        for logger in self._with("record"):
            record = logger.record()
            if record:
                out[logger_name(logger)] = dict(record)
        return out

    def on_epoch_start(self, job: Job, n_batches: int) -> None:
        self.n_batches = n_batches
        self.steppers = self._with("log_step")  # looked up once an epoch, not every step

    def on_step(self, job: Job, batch: int, running: Callable[[], Dict[str, float]]) -> None:
        """At the loop's log points (the optimizer steps where it measures the gradient norm:
        the epoch's first and every ``trainer.log_every`` after), one read of the running
        metrics for all loggers that take them; none at all when no logger does."""
        if not self.steppers:
            return
        trainer = job.config.trainer
        if not log_point(batch, self.n_batches, trainer.accumulate, trainer.log_every):
            return
        metrics = running()  # a host sync, at a log point only
        for logger in self.steppers:
            self._call(logger, "log_step", metrics, job.state.step)

    def on_epoch_end(self, job: Job, row: Dict[str, float], improved: bool) -> None:
        metrics = {key: value for key, value in row.items() if key != "epoch"}
        for logger in list(self.loggers):
            self._call(logger, "log_metrics", metrics, step=int(row["epoch"]))

    def finish(self, status: str, artifacts: Iterable[Path] = (),
               summary: Optional[Mapping[str, Any]] = None) -> None:
        """Once: ``summary`` (summary.json's values) to the loggers that take it, the files
        among ``artifacts`` that exist, then ``status``. A second call (a failure while an
        interrupted run finishes) does nothing."""
        if self.finished:
            return
        self.finished = True
        files = [Path(path) for path in artifacts if Path(path).is_file()]
        for logger in list(self.loggers):
            if summary is not None and hasattr(logger, "log_summary"):
                self._call(logger, "log_summary", summary)
            for path in files:
                self._call(logger, "log_artifact", path)
            self._call(logger, "finish", status)

    def _with(self, method: str) -> List[MetricLogger]:
        return [logger for logger in self.loggers if hasattr(logger, method)]

    def _call(self, logger: MetricLogger, method: str, *args: Any, **kwargs: Any) -> None:
        """``logger.method(...)``; a failure drops the logger with one warning, unless it is
        ``essential`` (metrics.csv's)."""
        if logger not in self.loggers:  # dropped by an earlier failure
            return
        if getattr(logger, "essential", False):
            getattr(logger, method)(*args, **kwargs)
            return
        try:
            getattr(logger, method)(*args, **kwargs)
        except Exception as e:
            self.loggers.remove(logger)
            err_console.print("[bold yellow]warning:[/] ", end="")
            err_console.print(f"logger={logger_name(logger)} failed ({method}: {one_line(e)}); "
                              f"training goes on without it", markup=False, highlight=False)


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
