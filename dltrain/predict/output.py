"""The predictions CSV that ``dltrain predict`` writes, one row per input.

Columns:

- the input's id: ``row`` (a CSV's data row number, from 1), ``file`` (an image's path relative
  to the folder given) or ``index`` (an array's index, from 0);
- classification: ``prediction``, the predicted class's name, then ``p_<class>``, the
  probability of each class in the run's class order (names made safe for a column:
  characters other than letters, digits and ``_`` become ``_``);
- regression: ``prediction`` (one target) or ``prediction_0``, ``prediction_1``, ... (one per
  target, the columns of ``load_run(...).predict``), in the target's own units.

Numbers are written with the fewest digits that read back as the same float32 (NumPy's
shortest round-trip form: ``0.1``, not ``0.10000000149011612``), so nothing the model computed
is lost and nothing it did not compute is shown.

With a file, the CSV is written to a temporary file in the same folder and renamed into place
at the end: an error at any point leaves no partial file, and an existing file is only replaced
by a complete one. Without one it streams to standard output (a reader that stops early, as
``| head`` does, ends the command quietly with status 141, as SIGPIPE ends ``cat``).
"""

from __future__ import annotations

import csv
import io
import re
import sys
from pathlib import Path
from typing import IO, Callable, List, Optional, Sequence

import numpy as np

from dltrain.atomic import atomic_write
from dltrain.data.base import DataInfo
from dltrain.errors import UserError

_UNSAFE = re.compile(r"[^0-9A-Za-z_]+")


def safe_names(names: Sequence[str]) -> List[str]:
    """Column-safe forms of ``names``, unique (a clash gets ``_2``, ``_3``, ...)."""
    out: List[str] = []
    for i, name in enumerate(names):
        base = _UNSAFE.sub("_", str(name)).strip("_") or str(i)
        safe, k = base, 2
        while safe in out:
            safe, k = f"{base}_{k}", k + 1
        out.append(safe)
    return out


def columns(info: DataInfo, id_name: str) -> List[str]:
    """The header of the predictions CSV."""
    if info.task == "classification":
        return [id_name, "prediction", *(f"p_{n}" for n in safe_names(info.class_names))]
    if info.num_outputs == 1:
        return [id_name, "prediction"]
    return [id_name, *(f"prediction_{i}" for i in range(info.num_outputs))]


class PredictionWriter:
    """Rows of predictions to a text stream, the header before the first."""

    def __init__(self, stream: IO[str], info: DataInfo) -> None:
        self.writer = csv.writer(stream, lineterminator="\n")
        self.info = info
        self.rows = 0
        self._header = False

    def write(self, ids: Sequence[str], id_name: str, outputs: np.ndarray) -> None:
        """``outputs`` (n, classes) probabilities or (n, targets) values of the inputs ``ids``."""
        if not self._header:
            self.writer.writerow(columns(self.info, id_name))
            self._header = True
        # str of a NumPy float32: its shortest round-trip form
        values = [[str(v) for v in row] for row in outputs.astype(np.float32)]
        if self.info.task == "classification":
            names = self.info.class_names
            for id_, index, row in zip(ids, outputs.argmax(axis=1).tolist(), values):
                self.writer.writerow([id_, names[index], *row])
        else:
            for id_, row in zip(ids, values):
                self.writer.writerow([id_, *row])
        self.rows += len(ids)


def write_csv(out: Optional[str], fill: Callable[[IO[str]], None]) -> Optional[Path]:
    """Run ``fill`` on the destination's text stream: the file ``out`` (written atomically), or
    standard output when ``out`` is None or ``-``. Returns the file written, if any."""
    if out is None or out == "-":
        try:
            fill(sys.stdout)
            sys.stdout.flush()
        except BrokenPipeError:
            _quiet_stdout()
        return None
    path = Path(out).expanduser()
    if path.is_dir():
        raise UserError(f"--out {out} is a folder; give the name of the CSV file to write")
    if not path.parent.is_dir():
        raise UserError(f"--out {out}: there is no folder {path.parent}")

    def write(f: IO[bytes]) -> None:
        text = io.TextIOWrapper(f, encoding="utf-8", newline="")
        try:
            fill(text)
            text.flush()
        finally:
            text.detach()  # atomic_write flushes, syncs and closes the file itself

    try:
        atomic_write(path, write)
    except OSError as e:
        raise UserError(f"--out {out}: cannot write it: {e.strerror or e}") from None
    return path


def _quiet_stdout() -> None:
    """The reader of standard output went away (``| head``): stop at once, without a traceback
    and with the status of a program that SIGPIPE ended (128 + 13), as ``seq`` or ``cat`` would.
    Python flushes stdout again at exit: point it at /dev/null first (as Python's docs advise)."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    raise SystemExit(128 + 13)
