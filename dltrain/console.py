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
    err_console.print("[bold red]error:[/] ", end="")
    err_console.print(str(error), markup=False)
