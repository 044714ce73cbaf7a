"""Where dltrain prints: ``console`` for results and progress (stdout), ``err_console`` and
:func:`report` for errors (stderr). Only rich is imported here."""

from __future__ import annotations

import os
import sys

from rich.console import Console

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
