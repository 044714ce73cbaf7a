"""What every metric logger is (:class:`MetricLogger`), the table of them (:data:`LOGGERS`) and
how a config's ``logger`` node becomes a list of them (:func:`build_loggers`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, List, Mapping, Protocol, Sequence

from dltrain.registry import Registry
from dltrain.schema import flatten  # noqa: F401  (the params every logger gets)


class MetricLogger(Protocol):
    """What a run tells its loggers, in this order: ``start``, ``log_params``, ``log_metrics``
    once per epoch, ``log_artifact`` per file, ``finish``. A resume starts them again."""

    def start(self, history: Sequence[Mapping[str, float]]) -> None:
        """Training (re)starts after ``history``: the rows of the epochs the checkpoint holds,
        empty for a new run. Logged epochs past them (a crash between an epoch's logging and its
        checkpoint) are dropped or hidden, so a logger never keeps an epoch twice."""

    def log_params(self, params: Mapping[str, Any]) -> None:
        """The run's config, flattened to dotted keys (``optim.lr``). Again on each resume,
        where ``--allow-changes`` may have changed values."""

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """One epoch's metrics (``train_loss``, ``val_acc``, ``lr``, ...); ``step`` is the
        epoch, counted from 1."""

    def log_artifact(self, path: Path) -> None:
        """A file the run has written into its folder (summary.json, curves.png)."""

    def finish(self, status: str) -> None:
        """The run ended: ``completed``, ``early_stopped``, ``failed`` or ``interrupted``.
        Releases whatever ``start`` opened."""


# name -> class(run_dir, **options): the names are schema.GROUPS["logger"]
LOGGERS: Registry = Registry("logger")


def build_loggers(options: Mapping[str, Any], run_dir: Path) -> List[MetricLogger]:
    """One logger per entry of ``config.logger`` ({name: its option dataclass}), built with
    the run folder and the option's keys other than ``name``."""
    loggers = []
    for name, option in options.items():
        values = dataclasses.asdict(option) if dataclasses.is_dataclass(option) else dict(option)
        values.pop("name", None)
        loggers.append(LOGGERS.get(name)(Path(run_dir), **values))
    return loggers
