"""What every metric logger is (:class:`MetricLogger`), the table of them (:data:`LOGGERS`),
how a config's ``logger`` node becomes a list of them (:func:`build_loggers`), and what the
loggers that keep runs elsewhere (MLflow, W&B) share: the run's description
(:func:`run_context`), its final metrics (:func:`final_metrics`) and the ids they left in
run.yaml (:func:`recorded`)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Protocol, Sequence

from dltrain import runs
from dltrain.registry import Registry
from dltrain.schema import flatten  # noqa: F401  (the params every logger gets)


class MetricLogger(Protocol):
    """What a run tells its loggers, in this order: ``start``, ``log_params``, ``log_metrics``
    once per epoch, ``log_artifact`` per file, ``finish``. A resume starts them again.

    Three more methods are optional; the run calls them only on loggers that have them:

    - ``log_step(metrics, step)``: the epoch's running training metrics (``train_loss``, ...)
      at each log point (every ``trainer.log_every`` optimizer steps); ``step`` is the global
      optimizer step. Reading them is a host sync, done only when some logger has this method.
    - ``log_summary(summary)``: summary.json's values when the run ends, before its files.
    - ``record()``: a dict (the logger's run id, where it writes) that run.yaml keeps under
      ``loggers.NAME``, read back on resume with :func:`recorded`. Called after ``start``.

    A logger that cannot start raises :class:`~dltrain.errors.UserError` (from its constructor
    where it can: the constructors all run before any logger starts), which stops the run
    before training. A logger that fails later is dropped with one warning; training goes on.
    """

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
        """A file of the run folder (summary.json, run.yaml, curves.png, gradflow.png)."""

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


def logger_name(logger: Any) -> str:
    """The name ``logger``'s class is registered under (``mlflow``), for messages and run.yaml."""
    for name in LOGGERS.names():
        if LOGGERS.get(name) is type(logger):
            return name
    return type(logger).__name__


def one_line(error: BaseException) -> str:
    """``Type: the first line of its message``, for a one-line error or warning."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


# ---------------------------------------------------------------------------------------------
# shared by the loggers that keep the run elsewhere too (MLflow, W&B)
def recorded(run_dir: Path, name: str) -> Dict[str, Any]:
    """What ``logger=name`` left in run.yaml (``loggers.NAME``) when the run started or, if
    later, when it was last resumed; empty when it left nothing."""
    record = runs.read_record(Path(run_dir))
    found: Dict[str, Any] = {}
    for entry in [record, *(record.get("resumes") or [])]:
        mine = (entry.get("loggers") or {}).get(name) if isinstance(entry, dict) else None
        if isinstance(mine, dict):
            found = mine
    return found


def final_metrics(summary: Mapping[str, Any]) -> Dict[str, float]:
    """summary.json's results: the test metrics, the best monitored value and its epoch (an
    interrupted or failed run has no test metrics; a missing value is left out)."""
    return {key: float(value) for key, value in summary.items()
            if key.startswith(("test_", "best_")) and isinstance(value, (int, float))
            and not isinstance(value, bool) and math.isfinite(value)}


def sweep_job(run_dir: Path) -> Optional[Dict[str, str]]:
    """``{"sweep": SWEEP_FOLDER, "job": N}`` when a Hydra multirun made ``run_dir`` (its
    .hydra/hydra.yaml says so), else None."""
    import yaml

    path = Path(run_dir) / runs.SAVED_CONFIG.parent / "hydra.yaml"
    try:
        hydra = (yaml.safe_load(path.read_text()) or {}).get("hydra") if path.is_file() else None
    except (OSError, yaml.YAMLError, AttributeError):
        return None
    if not isinstance(hydra, dict) or hydra.get("mode") != "MULTIRUN":
        return None
    job = (hydra.get("job") or {}).get("num")
    # the job's folder is SWEEP/N (train.yaml's hydra.sweep.subdir)
    return {"sweep": str(Path(run_dir).resolve().parent), "job": str(job)}


def run_context(run_dir: Path) -> Dict[str, str]:
    """What a tracker tags its run with: the dltrain run folder, the git commit of the current
    directory (when it is a checkout; whether it had changes), the sweep and job number."""
    context = {"run_dir": str(Path(run_dir).resolve())}
    git = runs.git_state(Path.cwd())  # None outside a checkout, or without git
    if git:
        context.update(git_commit=git["commit"], git_dirty=str(git["dirty"]).lower())
    context.update(sweep_job(run_dir) or {})
    return context


def run_name(run_dir: Path) -> str:
    """A tracker's name for the run: the run folder's name, ``SWEEP/N`` for a sweep's job."""
    job = sweep_job(run_dir)
    return f"{Path(job['sweep']).name}/{job['job']}" if job else Path(run_dir).resolve().name
