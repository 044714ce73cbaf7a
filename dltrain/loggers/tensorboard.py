"""``logger=tensorboard``: event files in RUN/tensorboard/ (``tensorboard --logdir outputs``).

Each epoch's metrics as scalars ``loss/train``, ``loss/val``, ``acc/val``, ``lr``, ...; the config
as a text table; curves.png as an image; the final status as text. tensorboard is imported when
the logger is built, never before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from dltrain.errors import UserError
from dltrain.loggers.base import LOGGERS


@LOGGERS.register("tensorboard")
class TensorBoardLogger:
    FOLDER = "tensorboard"

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
        self.step = 0  # the last epoch logged

    def start(self, history: Sequence[Mapping[str, float]]) -> None:
        self.step = len(history)
        # on a resume, TensorBoard hides the events of the epochs past the checkpoint that an
        # earlier process logged (purge_step), so no epoch is drawn twice
        purge = self.step + 1 if self.folder.exists() else None
        self.writer = self.make_writer(log_dir=str(self.folder), purge_step=purge)

    def log_params(self, params: Mapping[str, Any]) -> None:
        lines = ["| key | value |", "|---|---|"]
        lines += [f"| {key} | {str(value).replace('|', '&#124;')} |" for key, value in params.items()]
        self.writer.add_text("config", "\n".join(lines), self.step)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        for key, value in metrics.items():
            split, _, name = key.partition("_")
            tag = f"{name}/{split}" if split in ("train", "val", "test") else key
            self.writer.add_scalar(tag, value, step)
        self.writer.flush()
        self.step = step

    def log_artifact(self, path: Path) -> None:
        if Path(path).suffix == ".png":  # curves.png beside the scalars; other files stay put
            from matplotlib.image import imread

            self.writer.add_image(Path(path).stem, imread(path), self.step, dataformats="HWC")

    def finish(self, status: str) -> None:
        if self.writer is None:  # never started
            return
        self.writer.add_text("status", status, self.step)
        self.writer.close()
