"""diagnostics.csv: one row per (epoch, layer, quantity), rewritten whole at every epoch."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Iterable, List, Tuple

from dltrain.atomic import atomic_write_text

DIAGNOSTICS = "diagnostics.csv"
HEADER = ("epoch", "layer", "quantity", "value")

Row = Tuple[int, str, str, float]  # (epoch, layer, quantity, value)

# the `quantity` column's values, in the order rows list them for a layer
QUANTITIES = {
    "grad_norm": "L2 norm of the layer's gradient (all its parameters), mean over the epoch's "
                 "recorded steps; unscaled, before clipping",
    "weight_norm": "L2 norm of the layer's parameters at the end of the epoch",
    "update_ratio": "||w_new - w_old|| / ||w_old|| of one optimizer step, mean over the epoch's "
                    "recorded steps",
    "dead_fraction": "share of the units after the layer (features; channels of a conv map) whose "
                     "ReLU-family activation input is never > 0 on the probe batch",
    "saturated_fraction": "share of the sigmoid (|x| > 4) or tanh (|x| > 2) inputs after the layer "
                          "that lie in the flat tails, over the probe batch",
    "hidden_grad_first": "recurrent models: mean over probe samples of ||d loss_i / d h_t||, the "
                         "last layer's hidden state after the first step",
    "hidden_grad_middle": "the same after step T//2",
    "hidden_grad_last": "the same after the last step",
}


class DiagnosticsWriter:
    """Keeps ``run_dir/diagnostics.csv`` as metrics.csv is kept (:class:`dltrain.loggers.csv_file.
    CsvLogger`): the file is rewritten whole and atomically, so it is never half written, and a
    resume drops the rows past its checkpoint's epoch."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / DIAGNOSTICS
        self.rows: List[Row] = []

    def start(self, epochs_done: int) -> None:
        """Keep the rows of the epochs a checkpoint holds (``epoch <= epochs_done``): the epochs
        logged after it are trained again."""
        old = read_rows(self.path) if self.path.is_file() else []
        self.rows = [row for row in old if row[0] <= epochs_done]
        self._save()

    def write(self, rows: Iterable[Row]) -> None:
        self.rows.extend(rows)
        self._save()

    def _save(self) -> None:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(HEADER)
        writer.writerows((int(e), layer, q, repr(float(v))) for e, layer, q, v in self.rows)
        atomic_write_text(self.path, buf.getvalue())


def read_rows(path: Path) -> List[Row]:
    """diagnostics.csv's rows, typed."""
    with open(path, newline="") as f:
        return [(int(r["epoch"]), r["layer"], r["quantity"], float(r["value"]))
                for r in csv.DictReader(f)]
