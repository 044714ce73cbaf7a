"""The run folder: metrics.csv, checkpoints/ and summary.json beside Hydra's .hydra/."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any, Callable, Dict, List

from dltrain.atomic import atomic_write_text

METRICS = "metrics.csv"
SUMMARY = "summary.json"
CHECKPOINTS = "checkpoints"
LAST = "last.pt"
BEST = "best.pt"


def write_metrics(path: Path, history: List[Dict[str, float]]) -> None:
    """Rewrite metrics.csv whole (atomically) so it always matches the last checkpoint."""
    buf = io.StringIO()
    if history:
        writer = csv.DictWriter(buf, fieldnames=list(history[0]), lineterminator="\n")
        writer.writeheader()
        for row in history:
            writer.writerow({k: int(v) if k == "epoch" else repr(float(v)) for k, v in row.items()})
    atomic_write_text(path, buf.getvalue())


def read_metrics(path: Path) -> List[Dict[str, float]]:
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def write_json(path: Path, data: Dict[str, Any]) -> None:
    def clean(v: Any) -> Any:  # JSON has no NaN: write null rather than invalid JSON
        return None if isinstance(v, float) and not math.isfinite(v) else v

    atomic_write_text(path, json.dumps({k: clean(v) for k, v in data.items()}, indent=2) + "\n")


class RunFolder:
    """Callback that keeps the run folder in step with training, epoch by epoch.

    ``checkpoint`` builds the checkpoint dict of the job's current state.
    """

    def __init__(self, root: Path, checkpoint: Callable[[], Dict[str, Any]]) -> None:
        self.root = Path(root)
        self.checkpoint = checkpoint
        self.ckpt_dir = self.root / CHECKPOINTS

    def on_epoch_start(self, job, n_batches: int) -> None:
        pass

    def on_step(self, job, batch: int, running_loss) -> None:
        pass

    def on_epoch_end(self, job, row: Dict[str, float], improved: bool) -> None:
        from dltrain.checkpoint import save_checkpoint

        ckpt = self.checkpoint()
        if improved:
            save_checkpoint(self.ckpt_dir / BEST, ckpt)
        # metrics.csv is written before last.pt: a crash in between leaves a csv one row ahead
        # of the checkpoint, which resume trims; never a checkpoint ahead of its metrics
        write_metrics(self.root / METRICS, job.state.history)
        save_checkpoint(self.ckpt_dir / LAST, ckpt)
