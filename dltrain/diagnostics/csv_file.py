"""diagnostics.csv: one row per (epoch, layer, quantity), an epoch's rows appended at its end."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Iterable, List, Tuple

from dltrain.atomic import DiskFull, atomic_write_text, disk_full

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
    """Keeps ``run_dir/diagnostics.csv``. A run (or a resume) starts by rewriting it whole and
    atomically with the rows of the epochs its checkpoint holds; each epoch then appends its
    rows in one write, without the fsync of an atomic rewrite, which cost 15 times the
    measurements themselves on a small model. A process killed inside that write can leave a
    partial last line: the next start drops it, with the epoch it belonged to, which is trained
    again."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / DIAGNOSTICS

    def start(self, epochs_done: int) -> None:
        """Keep the rows of the epochs a checkpoint holds (``epoch <= epochs_done``): the epochs
        logged after it are trained again."""
        old = read_rows(self.path) if self.path.is_file() else []
        atomic_write_text(self.path, _text([HEADER], [row for row in old if row[0] <= epochs_done]))

    def write(self, rows: Iterable[Row]) -> None:
        text = _text([], rows)
        try:
            with open(self.path, "a", newline="") as f:
                f.write(text)
        except OSError as e:
            if disk_full(e):
                raise DiskFull(self.path, len(text)) from None
            raise


def _text(header: List[Tuple[str, ...]], rows: Iterable[Row]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerows(header)
    writer.writerows((int(e), layer, q, repr(float(v))) for e, layer, q, v in rows)
    return buf.getvalue()


def read_rows(path: Path) -> List[Row]:
    """diagnostics.csv's rows, typed; a line cut short (a process killed while appending) is
    left out."""
    rows = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            try:
                rows.append((int(r["epoch"]), r["layer"], r["quantity"], float(r["value"])))
            except (TypeError, ValueError):
                continue
    return rows
