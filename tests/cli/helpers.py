"""Helpers for the command-line tests: the real ``dltrain`` in a subprocess, run in a temp dir.

Every subprocess runs with ``cwd`` set to a temporary folder and a ``hydra.run.dir`` or
``hydra.sweep.dir`` inside it, so no test ever writes into the repository.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

import pytest

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"

# Variables that would change what dltrain prints (colours forced on or off, Hydra's full
# tracebacks) or where it writes (a run id inherited from a parent sweep).
_OUTPUT_CHANGING_ENV = (
    "FORCE_COLOR", "NO_COLOR", "CLICOLOR_FORCE", "TTY_COMPATIBLE", "TTY_INTERACTIVE",
    "HYDRA_FULL_ERROR", "DLTRAIN_RUN_UID",
)

TRAIN_TIMEOUT_S = 300
QUICK_TIMEOUT_S = 60


def cli_env() -> Dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in _OUTPUT_CHANGING_ENV}


def dltrain_cmd(*args: str) -> List[str]:
    return [sys.executable, "-m", "dltrain", *args]


def run_dltrain(args: List[str], cwd: Path, *, timeout: float = TRAIN_TIMEOUT_S,
                env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
    """``python -m dltrain ARGS`` in ``cwd``; stdout is a pipe, so progress is plain."""
    return subprocess.run(dltrain_cmd(*args), cwd=cwd, env=env or cli_env(),
                          capture_output=True, text=True, timeout=timeout)


def describe(proc: subprocess.CompletedProcess) -> str:
    """What a failed assertion shows: exit code and both streams."""
    return f"exit {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"


def read_csv(path: Path) -> List[Dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


class TrainedRun:
    """A finished ``dltrain`` run: the process and its run folder."""

    def __init__(self, proc: subprocess.CompletedProcess, run_dir: Path, cwd: Path) -> None:
        self.proc = proc
        self.run_dir = run_dir
        self.cwd = cwd

    @property
    def summary(self) -> dict:
        return read_json(self.run_dir / "summary.json")

    @property
    def metrics(self) -> List[Dict[str, str]]:
        return read_csv(self.run_dir / "metrics.csv")


def train_once(tmp_path_factory: pytest.TempPathFactory, name: str, args: List[str]) -> TrainedRun:
    cwd = tmp_path_factory.mktemp(name)
    run_dir = cwd / "run"
    proc = run_dltrain([*args, f"hydra.run.dir={run_dir}"], cwd)
    assert proc.returncode == 0, describe(proc)
    return TrainedRun(proc, run_dir, cwd)


# the runs that several tests inspect (see conftest.py): tiny models, two epochs
DEFAULT_ARGS = ["trainer.epochs=2", "model.hidden_sizes=[32]"]
REGRESSION_ARGS = ["data=diabetes", "loss=huber", "trainer.epochs=2", "model.hidden_sizes=[32]"]
