"""Helpers for the experiment-command tests: the real ``dltrain`` in subprocesses.

Every subprocess runs with ``cwd`` inside a temporary folder and, where the command takes one, an
explicit ``hydra.run.dir`` or ``hydra.sweep.dir`` there. Independent commands are started
together (``run_together``): each one spends seconds importing torch, and the tests run on two
CPU cores.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import yaml

TRAIN_TIMEOUT_S = 300

# the smallest run that still exercises everything: pinned to the CPU, where dltrain is
# deterministic, so "bit for bit" claims hold on a machine with a GPU too
TINY = ["model.hidden_sizes=[16]", "trainer.progress=plain", "trainer.device=cpu"]

# the shared runs (conftest.py): dropout draws random numbers in every step, so a replay or a
# resume only matches if every generator is seeded or restored exactly
DROPOUT = [*TINY, "regularization.dropout=0.2"]
EPOCHS = 3  # the dropout run's length
EXTENDED = 5  # the length a copy of it is resumed to
REPLAY_LR = 0.01  # a replay's override; the dropout run uses Adam's default, 0.001

# timing columns differ between two runs of the same config; every other column must not
TIMING_COLUMNS = ("epoch_time_s", "samples_per_s")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# variables that would change what dltrain prints or where it writes (a run id inherited from
# a parent process would put two runs in one folder)
_OUTPUT_CHANGING_ENV = (
    "FORCE_COLOR", "NO_COLOR", "CLICOLOR_FORCE", "TTY_COMPATIBLE", "TTY_INTERACTIVE",
    "HYDRA_FULL_ERROR", "DLTRAIN_RUN_UID", "COLUMNS", "LINES",
)


def cli_env() -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _OUTPUT_CHANGING_ENV}
    # wide enough that rich never truncates a table cell ("complet…") the tests read back
    env["COLUMNS"] = "240"
    env["PYTHONUNBUFFERED"] = "1"  # stdout lines arrive as they are printed (signal tests)
    # several runs share two cores: one thread each, not several threads spinning against
    # each other (both sides of every comparison run with the same setting)
    env["OMP_NUM_THREADS"] = "1"
    return env


def dltrain_cmd(*args: str) -> List[str]:
    return [sys.executable, "-m", "dltrain", *args]


def start(args: Sequence[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(dltrain_cmd(*args), cwd=cwd, env=cli_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, timeout: float = TRAIN_TIMEOUT_S) -> subprocess.CompletedProcess:
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def dltrain(args: Sequence[str], cwd: Path,
            timeout: float = TRAIN_TIMEOUT_S) -> subprocess.CompletedProcess:
    """``python -m dltrain ARGS`` in ``cwd``; stdout is a pipe, so progress is plain."""
    return finish(start(args, cwd), timeout)


def run_together(
        commands: Sequence[Tuple[Sequence[str], Path]]) -> List[subprocess.CompletedProcess]:
    """Independent ``(args, cwd)`` commands started at once; their results in the same order."""
    procs = [start(args, cwd) for args, cwd in commands]
    try:
        return [finish(p) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def describe(proc: subprocess.CompletedProcess) -> str:
    """What a failed assertion shows: the command, its exit code and both streams."""
    return (f"{' '.join(map(str, proc.args))}\nexit {proc.returncode}\n"
            f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}")


def assert_ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, describe(proc)
    return proc


def assert_user_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    """Exit 2 with one readable message on stderr, no Python traceback."""
    assert proc.returncode == 2, describe(proc)
    assert "Traceback" not in proc.stderr + proc.stdout, describe(proc)
    assert "error:" in proc.stderr, describe(proc)
    for fragment in fragments:
        assert fragment in proc.stderr, f"{fragment!r} missing\n{describe(proc)}"


def read_csv(path: Path) -> List[Dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def read_yaml(path: Path):
    return yaml.safe_load(Path(path).read_text())


def without_timing(rows: List[Dict[str, str]]) -> List[Dict[str, str]]:
    """metrics.csv rows as exact strings, the timing columns left out."""
    return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in rows]


def assert_png(path: Path) -> None:
    assert path.is_file(), f"{path} missing"
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 1000, f"{path} is not a PNG image"


def new_run_folders(cwd: Path) -> List[Path]:
    """Run folders that dltrain made under ``cwd/outputs/DATE/TIME-ID`` (no hydra.run.dir)."""
    return sorted(p.parent.parent for p in (cwd / "outputs").glob("*/*/.hydra/config.yaml"))


def load_weights(path: Path) -> dict:
    import torch  # only the tests that compare weights pay for importing torch

    return torch.load(path, map_location="cpu", weights_only=True)
