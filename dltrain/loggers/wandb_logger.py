"""``logger=wandb``: the run in Weights & Biases, beside metrics.csv; the same content as
``logger=mlflow``.

- config: the flattened config (``optim.lr``), and ``dltrain.run_dir``, ``dltrain.git_commit``
  and ``dltrain.git_dirty`` (in a git checkout), ``dltrain.sweep`` and ``dltrain.job`` (a sweep's
  job, whose sweep is also the run's group);
- history: each epoch's row at step=epoch; summary: the test metrics, ``best_<monitor>``,
  ``best_epoch`` and ``status`` at the end;
- files: summary.json, run.yaml, curves.png, gradflow.png (and checkpoints/best.pt with
  ``logger.wandb.log_model=true``), copied into the run's files;
- the run is named after the run folder (``SWEEP/N`` for a job), tagged ``logger.wandb.tags``.

Offline unless ``logger.wandb.mode`` or the WANDB_MODE environment variable says otherwise:
the run is written to RUN/wandb/offline-run-DATE_TIME-ID/ (``logger.wandb.dir`` moves the
wandb/ folder) and ``wandb sync RUN/wandb/offline-run-*`` uploads it later.

run.yaml keeps the run id (``loggers.wandb``) and ``dltrain resume`` continues the same run
(``wandb.init(id=..., resume="allow")``): offline, each session writes a folder of its own with
that id, and ``wandb sync`` uploads them into one run, in order. W&B keeps one value per step:
an epoch that a crashed process logged past its checkpoint keeps that value there, and W&B drops
the resumed one as a step it already has (metrics.csv has the resumed one). A logger added at a
resume logs the epochs of the checkpoint's history first.

wandb is imported when the logger is built, never before.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence

from dltrain import runs
from dltrain.errors import UserError
from dltrain.loggers.base import (
    LOGGERS,
    final_metrics,
    one_line,
    recorded,
    run_context,
    run_name,
)

NAME = "wandb"
INIT_TIMEOUT = 30  # seconds


@LOGGERS.register(NAME)
class WandbLogger:
    def __init__(self, run_dir: Path, project: str = "dltrain", entity: Optional[str] = None,
                 mode: Optional[str] = None, dir: Optional[str] = None, log_model: bool = False,
                 tags: Sequence[str] = ()) -> None:
        try:
            import wandb
        except ImportError:
            raise UserError("logger=wandb needs the wandb package: pip install "
                            "'dltrain[tracking]' (or pip install wandb)") from None
        self.wandb = wandb
        self.run_dir = Path(run_dir)
        self.project, self.entity, self.log_model, self.tags = project, entity, log_model, list(tags)
        self.mode = mode or os.environ.get("WANDB_MODE") or "offline"
        self.dir = Path(dir).expanduser().resolve() if dir else self.run_dir.resolve()
        before = recorded(self.run_dir, NAME)
        self.run_id: Optional[str] = before.get("run_id")  # None: W&B names a new run
        self.resumed = self.run_id is not None
        self.run: Any = None

    def start(self, history: Sequence[Mapping[str, float]]) -> None:
        wandb = self.wandb
        context = run_context(self.run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        try:
            self.run = wandb.init(
                project=self.project, entity=self.entity, dir=str(self.dir), mode=self.mode,
                id=self.run_id, resume="allow", name=run_name(self.run_dir),
                group=Path(context["sweep"]).name if "sweep" in context else None,
                tags=self.tags or None,
                config={f"dltrain.{key}": value for key, value in context.items()},
                # no lines of its own on the console, and sys.stdout left alone; a server that
                # does not answer fails the start in 30 s (W&B waits 90 s) unless told otherwise
                settings=wandb.Settings(silent=True, console="off", init_timeout=float(
                    os.environ.get("WANDB_INIT_TIMEOUT", INIT_TIMEOUT))))
            self.run_id = self.run.id
        except Exception as e:
            raise UserError(f"logger=wandb could not start its run ({self.mode}): {one_line(e)}; "
                            f"for an offline run: logger.wandb.mode=offline") from None
        if not self.resumed:  # a logger added at a resume: the epochs so far first
            for row in history:
                self.run.log({k: v for k, v in row.items() if k != "epoch"}, step=int(row["epoch"]),
                             commit=True)

    def record(self) -> Dict[str, Any]:
        record = {"run_id": self.run_id, "project": self.project, "mode": self.mode,
                  "dir": str(self.dir)}
        if self.entity:
            record["entity"] = self.entity
        if self.mode == "offline":  # what `wandb sync` takes
            record["offline_run"] = str(Path(self.run.dir).parent)
        return record

    def log_params(self, params: Mapping[str, Any]) -> None:
        # W&B's config may change (a resume's accepted changes): the latest values
        self.run.config.update(dict(params), allow_val_change=True)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        self.run.log(dict(metrics), step=step, commit=True)  # the row is written now

    def log_summary(self, summary: Mapping[str, Any]) -> None:
        self.run.summary.update({**final_metrics(summary), "status": summary.get("status")})

    def log_artifact(self, path: Path, folder: str = "") -> None:
        """A copy among the run's files (a later ``wandb sync`` uploads them; a copy, so that
        the offline run does not depend on the run folder staying where it is)."""
        if self.mode == "disabled":
            return
        files = Path(self.run.dir)
        target = files / folder / Path(path).name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
        self.run.save(str(target), base_path=str(files), policy="now")

    def finish(self, status: str) -> None:
        if self.run is None:  # never started
            return
        best = self.run_dir / runs.CHECKPOINTS / runs.BEST
        if self.log_model and best.is_file():
            self.log_artifact(best, runs.CHECKPOINTS)
        self.run.summary["status"] = status
        self.run.finish(exit_code=1 if status == "failed" else 0)
        self.run = None
