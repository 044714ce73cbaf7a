"""``logger=tensorboard``: event files in RUN/tensorboard/ (``tensorboard --logdir outputs``).

- each epoch's metrics as scalars ``loss/train``, ``loss/val``, ``acc/val``, ``lr``, ... at
  step=epoch; the final test metrics beside them (``loss/test``, ``acc/test`` at the last
  epoch), with ``best_val_loss`` and ``best_epoch``;
- the running training loss (and accuracy or MAE, R²) of the epoch at each log point, at
  step=optimizer step, as ``loss/train_step``, ... in RUN/tensorboard/steps/: a run of its own
  in TensorBoard, because a resume hides the events past the checkpoint by step, and the two
  kinds of step must not hide each other's;
- the config as a text table, and as HParams (its flattened keys): the HParams tab lists every
  run under ``--logdir`` (a sweep's jobs too) with its config and the last value of each scalar,
  test metrics included;
- curves.png as an image; the final status as text.

A resume continues the same event files: TensorBoard hides what the earlier process logged past
the checkpoint (``purge_step``). The HParams are written once, when the run starts: TensorBoard
keeps the first it finds for a run, so a resume's accepted changes show in the config text of
that resume (at the epoch it resumed from), not in the HParams tab. tensorboard is imported when
the logger is built, never before.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Mapping, Sequence

from dltrain.errors import UserError
from dltrain.loggers.base import LOGGERS, final_metrics


def tag(key: str) -> str:
    """``val_loss`` -> ``loss/val``: TensorBoard draws a section per prefix; other keys as
    they are (``lr``, ``best_val_loss``)."""
    split, _, name = key.partition("_")
    return f"{name}/{split}" if split in ("train", "val", "test") and name else key


def hparam_values(params: Mapping[str, Any]) -> Dict[str, Any]:
    """The config as HParams take it: numbers and strings; true/false, lists as JSON text;
    unset (null) values left out."""
    values: Dict[str, Any] = {}
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, bool):
            values[key] = "true" if value else "false"
        elif isinstance(value, (int, float, str)):
            values[key] = value
        else:
            values[key] = json.dumps(value)
    return values


@LOGGERS.register("tensorboard")
class TensorBoardLogger:
    FOLDER = "tensorboard"
    STEPS = "steps"  # RUN/tensorboard/steps: the step-level scalars

    def __init__(self, run_dir: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise UserError(
                "logger=tensorboard needs the tensorboard package: pip install tensorboard "
                "(or pip install 'dltrain[dev]')"
            ) from None
        self.make_writer = SummaryWriter
        self.folder = Path(run_dir) / self.FOLDER
        self.writer: Any = None
        self.steps: Any = None  # the step-level writer, opened at the first log point
        self.step = 0  # the last epoch logged
        self.new = True  # no earlier process wrote here

    def start(self, history: Sequence[Mapping[str, float]]) -> None:
        self.step = len(history)
        self.new = not self.folder.exists()
        # on a resume, TensorBoard hides the events of the epochs past the checkpoint that an
        # earlier process logged (purge_step), so no epoch is drawn twice
        purge = None if self.new else self.step + 1
        self.writer = self.make_writer(log_dir=str(self.folder), purge_step=purge)

    def log_params(self, params: Mapping[str, Any]) -> None:
        lines = ["| key | value |", "|---|---|"]
        lines += [f"| {key} | {str(value).replace('|', '&#124;')} |" for key, value in params.items()]
        self.writer.add_text("config", "\n".join(lines), self.step)
        if self.new:
            from torch.utils.tensorboard.summary import hparams

            # the session's start info only: without an experiment summary of its own, the
            # HParams tab builds its columns from every run's, so runs with different keys
            # (a sweep over models) compare side by side
            _, session_start, _ = hparams(hparam_values(params), {})
            self.writer.file_writer.add_summary(session_start)

    def log_step(self, metrics: Mapping[str, float], step: int) -> None:
        if self.steps is None:
            folder = self.folder / self.STEPS
            # a resume hides what the earlier process logged from this log point on
            self.steps = self.make_writer(log_dir=str(folder),
                                          purge_step=step if folder.exists() else None)
        for key, value in metrics.items():
            self.steps.add_scalar(f"{tag(key)}_step", value, step)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(tag(key), value, step)
        self.writer.flush()
        if self.steps is not None:
            self.steps.flush()
        self.step = step

    def log_summary(self, summary: Mapping[str, Any]) -> None:
        """The test metrics and the best epoch, at the last epoch: the HParams tab's columns."""
        for key, value in final_metrics(summary).items():
            self.writer.add_scalar(tag(key), value, self.step)

    def log_artifact(self, path: Path) -> None:
        if Path(path).suffix == ".png":  # curves.png beside the scalars; other files stay put
            from matplotlib.image import imread

            self.writer.add_image(Path(path).stem, imread(path), self.step, dataformats="HWC")

    def finish(self, status: str) -> None:
        if self.steps is not None:
            self.steps.close()
        if self.writer is None:  # never started
            return
        self.writer.add_text("status", status, self.step)
        self.writer.close()
