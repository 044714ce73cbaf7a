"""Helpers for the experiment-command tests: the real ``dltrain``, in subprocesses or in this
process.

A subprocess spends seconds importing torch: it is kept for what is about the process (an exit
status, a signal, torchrun, Hydra's command line and launchers, what a pipe receives). A run
that a test only needs as a folder is trained here (``train_here``), and the subcommands that do
not start Hydra (eval, predict, export, resume, summary, check) run here through ``cli.main``,
the code the installed command runs (``dltrain_here``).

Every command runs with ``cwd`` inside a temporary folder and, where the command takes one, an
explicit ``hydra.run.dir`` or ``hydra.sweep.dir`` there. Independent subprocesses are started
together (``run_together``): the tests run on two CPU cores.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterator, List, Sequence, Tuple

import yaml

from dltrain.sweep_resume import working_dir

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


# ---------------------------------------------------------------------------------------------
# in this process
# working_dir(path): ``cwd`` for a command run here: relative paths, outputs/ and run.yaml's git
# state (None in a temporary folder) are read from it
@contextlib.contextmanager
def torch_state_kept() -> Iterator[None]:
    """What a run changes for the whole process (every generator, deterministic algorithms, the
    thread count), put back afterwards: no later test depends on the runs before it."""
    import random

    import numpy as np
    import torch

    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    threads = torch.get_num_threads()
    torch_rng, np_rng, py_rng = torch.get_rng_state(), np.random.get_state(), random.getstate()
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.set_num_threads(threads)
        torch.set_rng_state(torch_rng)
        np.random.set_state(np_rng)
        random.setstate(py_rng)


# the subcommands that never start Hydra: replay and training go through Hydra's command line,
# which configures logging for the whole process, so they run in subprocesses
IN_PROCESS = ("eval", "predict", "export", "resume", "summary", "check")


def dltrain_here(args: Sequence[str], cwd: Path) -> subprocess.CompletedProcess:
    """``dltrain ARGS`` in ``cwd``, in this process, through ``cli.main`` (which turns a
    UserError into one line on stderr and exit 2): the exit status and what it printed, as
    ``dltrain`` would return them."""
    from dltrain import cli, launch
    from dltrain.sweeps import is_sweep

    assert args and args[0] in IN_PROCESS, f"dltrain {args[0]} starts Hydra: run it with dltrain()"
    assert not (args[0] == "resume" and len(args) > 1 and is_sweep(Path(cwd, args[1]))), \
        "resuming a sweep starts Hydra's jobs: run it with dltrain()"
    out, err = io.StringIO(), io.StringIO()
    invocation, code = list(launch.invocation), 0
    with working_dir(cwd), torch_state_kept(), \
            contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            cli.main(list(args))
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        finally:
            launch.invocation[:] = invocation
    return subprocess.CompletedProcess(["dltrain", *args], code, out.getvalue(), err.getvalue())


def train_here(overrides: Sequence[str], run_dir: Path, cwd: Path | None = None) -> str:
    """A run trained in this process, as ``dltrain OVERRIDES hydra.run.dir=RUN_DIR`` trains it
    (the same composition, validation and ``run_training``), for tests that need a run folder
    and not the command that made it. Returns what it printed."""
    from rich.console import Console

    from dltrain.launch import compose
    from dltrain.train.run import run_training

    run_dir = Path(run_dir).absolute()
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    out = io.StringIO()
    with working_dir(cwd or run_dir.parent), torch_state_kept():
        config = compose(list(overrides))
        run_training(config, run_dir, Console(file=out, width=240, highlight=False, soft_wrap=True),
                     command=["dltrain", *overrides, f"hydra.run.dir={run_dir}"])
    return out.getvalue()


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
