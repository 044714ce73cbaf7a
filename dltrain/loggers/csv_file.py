"""``logger=csv``: metrics.csv in the run folder, one row per epoch. Always chosen."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence

from dltrain import runs
from dltrain.loggers.base import LOGGERS


@LOGGERS.register("csv")
class CsvLogger:
    """Rewrites metrics.csv whole (atomically) from its rows at every epoch, so the file is
    never half written and a resume, started from the checkpoint's rows, drops any row past it."""

    # the run folder's own record: a failure to write it (a full disk) is the run's, not a
    # logger's to be dropped with a warning
    essential = True

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / runs.METRICS
        self.rows: List[Dict[str, float]] = []

    def start(self, history: Sequence[Mapping[str, float]]) -> None:
        self.rows = [dict(row) for row in history]
        runs.write_metrics(self.path, self.rows)

    def log_params(self, params: Mapping[str, Any]) -> None:
        pass  # the run folder keeps its config in .hydra/config.yaml

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        self.rows.append({"epoch": step, **metrics})
        runs.write_metrics(self.path, self.rows)

    def log_artifact(self, path: Path) -> None:
        pass  # the files are in the run folder already

    def finish(self, status: str) -> None:
        pass  # every row is on disk as soon as it is logged
