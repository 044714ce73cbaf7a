"""SIGTERM and Ctrl-C stop training cleanly: last.pt is saved, the resume command printed, and
the exit status follows the shell's convention (128 + signal number).

The signals go to real ``dltrain`` processes; what is then done with the folders they left (eval,
resume) runs in this process, through the command's entry point."""

from __future__ import annotations

import queue
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List

import pytest

from .helpers import (TRAIN_TIMEOUT_S, assert_ok, cli_env, describe, dltrain_cmd, dltrain_here,
                      load_weights, read_csv, read_json)

pytestmark = pytest.mark.slow

# long enough that the signal always lands while training runs
LONG_RUN = ["model=lstm", "model.hidden_size=32", "trainer.epochs=50", "trainer.progress=plain",
            "trainer.device=cpu"]


class Training:
    """A ``dltrain`` training run in the background whose stdout is read line by line."""

    def __init__(self, run_dir: Path, cwd: Path) -> None:
        self.run_dir = run_dir
        self.stderr_path = cwd / f"{run_dir.name}.stderr"
        self._stderr = open(self.stderr_path, "w")
        self.proc = subprocess.Popen(dltrain_cmd(*LONG_RUN, f"hydra.run.dir={run_dir}"), cwd=cwd,
                                     env=cli_env(), stdout=subprocess.PIPE, stderr=self._stderr,
                                     text=True)
        self.lines: "queue.Queue[str | None]" = queue.Queue()
        self.stdout: List[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def wait_for_line(self, prefix: str, timeout: float = TRAIN_TIMEOUT_S) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                self.kill()
                raise AssertionError(f"no line starting with {prefix!r} in {timeout}s:\n"
                                     + "".join(self.stdout))
            if line is None:
                self.finish()
                raise AssertionError(
                    f"dltrain ended before printing {prefix!r}:\n{self.describe()}")
            self.stdout.append(line)
            if line.startswith(prefix):
                return line

    def finish(self, timeout: float = TRAIN_TIMEOUT_S) -> int:
        """Wait for the exit; the exit status, with every line of stdout collected."""
        try:
            code = self.proc.wait(timeout=timeout)
        finally:
            self.kill()
        if not self._stderr.closed:
            while (line := self.lines.get(timeout=10)) is not None:
                self.stdout.append(line)
            self._stderr.close()
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def describe(self) -> str:
        stdout = "".join(self.stdout)
        return f"exit {self.proc.returncode}\n--- stdout\n{stdout}\n--- stderr\n{self.stderr}"


@dataclass
class Stopped:
    run_dir: Path
    code: int
    stdout: str
    stderr: str
    cwd: Path


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    """One run stopped by SIGTERM and one by SIGINT, both after their first epoch."""
    cwd = tmp_path_factory.mktemp("signals")
    runs = {signal.SIGTERM: Training(cwd / "term", cwd), signal.SIGINT: Training(cwd / "int", cwd)}
    try:
        for signum, run in runs.items():
            run.wait_for_line("epoch 1/")
            run.proc.send_signal(signum)
        codes = {signum: run.finish() for signum, run in runs.items()}
    finally:
        for run in runs.values():
            run.kill()
    return {signum: Stopped(run.run_dir, codes[signum], "".join(run.stdout), run.stderr, cwd)
            for signum, run in runs.items()}


def test_sigterm_exits_143_and_names_the_resume_command(stopped):
    run = stopped[signal.SIGTERM]
    assert run.code == 143, run.stderr
    assert "stopped by SIGTERM" in run.stderr
    assert f"dltrain resume {run.run_dir}" in run.stderr
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_an_interrupted_run_still_describes_itself(stopped, signum):
    """Issue 7 item 12: summary.json (status interrupted, epochs done, best so far) and
    curves.png are written, and eval works on the best checkpoint."""
    run = stopped[signum]
    summary = read_json(run.run_dir / "summary.json")
    epochs = load_weights(run.run_dir / "checkpoints" / "last.pt")["epoch"]
    assert summary["status"] == "interrupted"
    assert summary["epochs_completed"] == epochs >= 1
    best = min(float(row["val_loss"]) for row in read_csv(run.run_dir / "metrics.csv"))
    assert summary["best_val_loss"] == pytest.approx(best)
    assert (run.run_dir / "curves.png").read_bytes()[:4] == b"\x89PNG"
    if signum == signal.SIGINT:  # once is enough: eval of an interrupted run's best.pt
        proc = assert_ok(dltrain_here(["eval", str(run.run_dir)], run.cwd))
        assert "test split" in proc.stdout


def test_ctrl_c_exits_130(stopped):
    run = stopped[signal.SIGINT]
    assert run.code == 130, run.stderr
    assert "stopped by Ctrl-C" in run.stderr
    assert f"dltrain resume {run.run_dir}" in run.stderr
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_interrupted_run_saves_a_safe_checkpoint(stopped, signum):
    run = stopped[signum]
    ckpt = load_weights(run.run_dir / "checkpoints" / "last.pt")  # weights_only=True
    assert ckpt["epoch"] >= 1
    assert ckpt["model"] and ckpt["optimizer"]
    # metrics.csv matches the checkpoint: one row per completed epoch
    assert [int(row["epoch"]) for row in read_csv(run.run_dir / "metrics.csv")] == \
        list(range(1, ckpt["epoch"] + 1))


def test_resume_after_sigterm_completes(stopped):
    run = stopped[signal.SIGTERM]
    epoch = load_weights(run.run_dir / "checkpoints" / "last.pt")["epoch"]
    proc = assert_ok(dltrain_here(["resume", str(run.run_dir), f"trainer.epochs={epoch + 1}"],
                                  run.cwd))
    assert f"resuming after epoch {epoch}" in proc.stdout, describe(proc)
    summary = read_json(run.run_dir / "summary.json")
    assert summary["status"] == "completed"
    assert summary["epochs_completed"] == epoch + 1
    assert [int(row["epoch"]) for row in read_csv(run.run_dir / "metrics.csv")] == \
        list(range(1, epoch + 2))
