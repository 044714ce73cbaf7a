"""What the libraries under dltrain log, in dltrain's style.

Hydra, its plugins (the Optuna sweeper, the joblib launcher) and Optuna log through Python's
logging, each in a style of its own: Hydra with a timestamp (``[2026-01-01 12:00:00,000][HYDRA]
Launching 2 jobs locally``), Optuna with colour codes written even to a pipe. :func:`setup`
hands their records to one handler that prints them as dltrain prints: ``hydra: Launching 2
jobs locally`` on stdout, ``warning: optuna: ...`` on stderr, through dltrain's consoles, which
colour nothing off a terminal (and so reach train.log too). Other libraries say only warnings
and errors: matplotlib's note that it built its font cache is not news for the user.

:class:`LoggingCallback` calls it where Hydra has just (re)configured logging, and takes over
Optuna's own handler before a search starts. Nothing heavy is imported here.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

# loggers whose INFO is part of a sweep's story, under the name dltrain gives them
SPEAKERS = {"hydra": "hydra", "hydra_plugins": "hydra", "optuna": "optuna"}
# libraries that say only warnings and errors
QUIET = ("matplotlib", "PIL", "alembic", "fsspec", "urllib3")


class DltrainHandler(logging.Handler):
    """``source: message``: INFO and below on dltrain's console (stdout), warnings and errors
    as ``warning: source: message`` / ``error: source: message`` on its error console."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from dltrain.console import console, err_console

            source = record.name.split(".")[0]
            source = SPEAKERS.get(source, source)
            message = record.getMessage().strip()
            if record.exc_info and record.exc_info[1] is not None:
                error = record.exc_info[1]
                message += f" ({type(error).__name__}: {error})"  # one line, not a traceback
            if record.levelno >= logging.WARNING:
                level = "error" if record.levelno >= logging.ERROR else "warning"
                colour = "red" if level == "error" else "yellow"
                err_console.print(f"[bold {colour}]{level}:[/] ", end="")
                err_console.print(f"{source}: {message}", markup=False, highlight=False)
            else:
                console.print(f"{source}: {message}", markup=False, highlight=False)
        except Exception:  # a log line must never end a run
            self.handleError(record)


_handler = DltrainHandler()


def _attach(logger: logging.Logger, level: int) -> None:
    if _handler not in logger.handlers:
        logger.addHandler(_handler)
    logger.setLevel(level)
    logger.propagate = False  # not to the root logger, which Hydra may have given a handler


def setup() -> None:
    """Route Hydra's, its plugins' and (once imported) Optuna's records through dltrain's
    handler; everything else says warnings and errors only, in the same style. Idempotent."""
    root = logging.getLogger()
    if _handler not in root.handlers:
        root.addHandler(_handler)
    root.setLevel(logging.WARNING)
    for name in ("hydra", "hydra_plugins"):
        _attach(logging.getLogger(name), logging.INFO)
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
    if "optuna.logging" in sys.modules:
        take_over_optuna()


def take_over_optuna() -> None:
    """Optuna installs its own handler on first import (colour codes, a timestamp); drop it
    and print its records through dltrain's. Imports optuna: call it where a search starts."""
    import optuna.logging

    optuna.logging.disable_default_handler()
    _attach(logging.getLogger("optuna"), logging.INFO)


def _uses_optuna(config: Any) -> bool:
    try:
        return "optuna" in str(config.hydra.sweeper._target_).lower()
    except Exception:  # no sweeper node (a single run)
        return False


try:  # Hydra calls these hooks (configured in configs/train.yaml)
    from hydra.experimental.callback import Callback as _HydraCallback
except ImportError:  # pragma: no cover - hydra is a dependency
    _HydraCallback = object


class LoggingCallback(_HydraCallback):
    """Puts :func:`setup` in place after Hydra configured logging: at the start of a run or a
    sweep, and of each job (a joblib worker is a process of its own)."""

    def on_run_start(self, config: Any, **kwargs: Any) -> None:
        setup()

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        setup()
        if _uses_optuna(config):  # before the sweeper creates its study, which Optuna logs
            take_over_optuna()

    def on_job_start(self, config: Any, **kwargs: Any) -> None:
        setup()

