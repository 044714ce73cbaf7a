"""Whole processes, timed from outside: their wall time, exit status and peak memory, each run
on a pseudo-terminal.

The peak resident set (``ru_maxrss``) of each child comes from ``os.wait4`` on that child alone,
so neither the benchmark's own process nor its other children count.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import shutil
import struct
import subprocess
import sys
import termios
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Sequence

SCRIPTS = Path(__file__).resolve().parent
FLOOR = "import torch; torch.optim.Adam([torch.zeros(1, requires_grad=True)])"


@dataclass
class Finished:
    rc: int
    wall_s: float
    max_rss_mib: float
    started: float  # time.time() just before the process was started


def run(cmd: Sequence[str], *, cwd: Path, output: Path, timeout: float = 1800) -> Finished:
    """Run ``cmd`` to its end (killed after ``timeout`` s) on a pseudo-terminal of 120 columns,
    as in a user's terminal: progress displays (dltrain's, Lightning's) draw as they do there.
    What it prints goes to ``output``."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    env = {**os.environ, "TERM": os.environ.get("TERM") or "xterm-256color"}
    env.pop("COLUMNS", None)
    reader = threading.Thread(target=_drain, args=(master, output), daemon=True)
    try:
        started, start = time.time(), time.perf_counter()
        proc = subprocess.Popen(list(cmd), cwd=cwd, stdin=subprocess.DEVNULL, stdout=slave,
                                stderr=slave, env=env)
    finally:
        os.close(slave)
    reader.start()
    killer = threading.Timer(timeout, proc.kill)
    killer.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    killer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    reader.join(timeout=10)
    os.close(master)
    # ru_maxrss is in KiB on Linux
    return Finished(proc.returncode, wall, usage.ru_maxrss / 1024, started)


def _drain(master: int, output: Path) -> None:
    """Copy the terminal's output to a file, as a terminal emulator would read it."""
    with open(output, "wb") as f:
        while True:
            try:
                data = os.read(master, 1 << 16)
            except OSError:  # EIO: the child and its children closed the terminal
                return
            if not data:
                return
            f.write(data)


def dltrain_command() -> List[str]:
    """The installed console script, as a user runs it (``python -m dltrain`` without one)."""
    exe = shutil.which("dltrain")
    return [exe] if exe else [sys.executable, "-m", "dltrain"]


NAMES = ("import_torch", "floor", "help", "config_error", "first_step", "default_run",
         "lean_memory")


def command(name: str, where: Path) -> List[str]:
    """The command ``name``, its files (run folder, first-step time) in the fresh folder
    ``where``. ``default_run`` is ``dltrain`` with its defaults (the digits MLP, 30 epochs);
    ``lean_memory`` trains the same data and model by a hand-written loop (its peak memory is
    the baseline of the default run's)."""
    dltrain = dltrain_command()
    run_dir = f"hydra.run.dir={where / 'run'}"
    if name == "import_torch":
        return [sys.executable, "-c", "import torch"]
    if name == "floor":
        return [sys.executable, "-c", FLOOR]
    if name == "help":
        return [*dltrain, "--help"]
    if name == "config_error":
        return [*dltrain, "optim.lr=-1"]
    if name == "first_step":
        return [sys.executable, str(SCRIPTS / "first_step.py"), str(where / "t"),
                "trainer.epochs=1", run_dir]
    if name == "default_run":
        return [*dltrain, run_dir]
    if name == "lean_memory":
        spec = {"approach": "lean_minimal", "threads": 0, "workdir": str(where),
                "out": str(where / "result.json")}
        return [sys.executable, str(SCRIPTS.parent / "bench.py"), "--trial", json.dumps(spec)]
    raise ValueError(name)


def measure_startup(tmp: Path, repeat: int, log: Callable[[str], None],
                    names: Sequence[str] = NAMES) -> Dict[str, List[Dict[str, float]]]:
    """Each command ``repeat`` times, interleaved; every record has rc, wall_s, max_rss_mib, and
    ``first_step_s`` (process start to first step) for ``first_step``."""
    results: Dict[str, List[Dict[str, float]]] = {name: [] for name in names}
    for rep in range(repeat):
        for name in names:
            where = tmp / f"{name}-{rep}"
            where.mkdir(parents=True)
            done = run(command(name, where), cwd=where, output=where / "output.txt")
            record = {"rc": done.rc, "wall_s": done.wall_s, "max_rss_mib": done.max_rss_mib}
            if name == "first_step" and (where / "t").exists():
                record["first_step_s"] = float((where / "t").read_text()) - done.started
            results[name].append(record)
            expected = 2 if name == "config_error" else 0
            if name == "first_step" and done.rc == 0 and "first_step_s" not in record:
                record["rc"] = -1  # not counted: the hook never saw a step
                log("startup first_step: no first step seen; has dltrain.train.loop.train_step "
                    "been renamed? (bench/first_step.py wraps it)")
            if done.rc != expected:
                tail = (where / "output.txt").read_text(errors="replace")[-2000:]
                log(f"startup {name}: exit status {done.rc}, expected {expected}\n{tail}")
            log(f"startup {rep + 1}/{repeat} {name}: {done.wall_s:.2f} s"
                + (f", first step at {record['first_step_s']:.2f} s" if "first_step_s" in record
                   else "") + f", peak RSS {done.max_rss_mib:.0f} MiB")
    return results
