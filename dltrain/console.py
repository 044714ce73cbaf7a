"""Where dltrain prints: ``console`` for results and progress (stdout), ``err_console`` and
:func:`report` for errors (stderr), and how numbers read there (:func:`format_value`). Only rich
is imported here."""

from __future__ import annotations

import math
import os
import sys
from typing import Any, Optional, TextIO

from rich.console import Console, Group, RenderableType
from rich.text import Text

# off a terminal rich would wrap lines and cut table cells at 80 columns; logs read better wide
_TTY = sys.stdout.isatty()
console = Console(highlight=False, soft_wrap=not _TTY,
                  width=None if _TTY else int(os.environ.get("COLUMNS", 200)))
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def report(error: BaseException) -> None:
    # one process of several (torchrun, srun) says which it is; rank 0 speaks for the job
    rank = os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0"))
    where = f" (rank {rank})" if rank != "0" else ""
    err_console.print(f"[bold red]error{where}:[/] ", end="")
    err_console.print(str(error), markup=False)


# ---------------------------------------------------------------------------------------------
# one number format for every table and line: counts with thousands separators (50,826),
# metrics with four decimals (three digits below 0.001), seconds with two (one from 10 s), rates
# whole, learning rates in three digits
_IDENTIFIERS = ("seed", "job", "rank")  # numbers that name something rather than count it


def format_value(value: Any, key: str = "") -> str:
    """``value`` as dltrain prints it anywhere; ``key`` (``parameters``, ``val_loss``,
    ``train_time_s``, ``lr``, ...) picks the form of a number."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return "" if value is None else str(value)
    if isinstance(value, int):
        return str(value) if key.endswith(_IDENTIFIERS) else f"{value:,}"
    if not isinstance(value, float):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    if key == "lr" or key.endswith((".lr", "_lr")):
        return f"{value:.3g}"
    if key.endswith("per_s"):
        return f"{value:,.0f}"
    if key.endswith("_s"):
        return f"{value:,.2f}" if value < 10 else f"{value:,.1f}"
    if value and abs(value) < 1e-3:  # a weight decay, a tiny loss: four decimals would be 0
        return f"{value:.3g}"
    return f"{value:,.4f}"


def titled(title: str, table: RenderableType) -> Group:
    """``table`` under ``title``, the title a line of its own that wraps at the console's width:
    rich wraps a table's own title at the table's width, after some 70 characters of a sweep's
    title on a 160-column terminal."""
    return Group(Text(title, style="bold", overflow="fold"), table)


# ---------------------------------------------------------------------------------------------
# jobs of a sweep that run side by side (Hydra's joblib launcher) share the terminal
class _LinePrefix:
    """A text stream that writes whole lines to ``stream``, each behind ``prefix``: lines of
    processes writing to the same terminal or pipe interleave, but never mid-line."""

    def __init__(self, stream: TextIO, prefix: str) -> None:
        self.stream, self.prefix, self.pending = stream, prefix, ""

    def write(self, text: str) -> int:
        lines = (self.pending + text).split("\n")
        self.pending = lines.pop()
        if lines:  # one write per batch of lines: short writes to a pipe are atomic
            self.stream.write("".join(f"{self.prefix}{line}\n" for line in lines))
            self.stream.flush()
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return False  # a live bar redrawn by several processes at once would be garbage

    def fileno(self) -> int:
        return self.stream.fileno()


def job_console(label: str, stream: Optional[TextIO] = None) -> Console:
    """A console whose every line starts with ``[label]``, in plain text (no live bar)."""
    prefix = f"[{label}] "
    width = int(os.environ.get("COLUMNS", 200)) if not _TTY else (console.width or 80)
    return Console(file=_LinePrefix(stream or sys.stdout, prefix), highlight=False,
                   soft_wrap=not _TTY, width=max(40, width - len(prefix)), no_color=True,
                   force_terminal=False)


def console_for_job(hydra_config: Any) -> Console:
    """The console a Hydra job prints to: ``console``, or, when the sweep's launcher runs jobs
    side by side (joblib), one that starts each line with the job's number (``[job 3] ``).
    ``hydra_config`` is ``HydraConfig.get()``."""
    launcher = str(getattr(getattr(hydra_config, "launcher", None), "_target_", "") or "")
    mode = getattr(getattr(hydra_config, "mode", None), "name", "")
    if mode != "MULTIRUN" or "joblib" not in launcher.lower():
        return console
    if getattr(hydra_config.launcher, "n_jobs", None) == 1:  # one job at a time: no interleaving
        return console
    return job_console(f"job {hydra_config.job.num}")
