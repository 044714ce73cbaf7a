"""Issue 7 item 9: one process per run folder. A second run or resume is refused with the
folder and the holder's PID; a lock left by a killed process does not block."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys

import pytest
from rich.console import Console

from dltrain import runs
from dltrain.errors import UserError

HOLD = """
import sys, time
from dltrain import runs
with runs.locked(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(60)
"""


def test_a_second_process_is_refused_and_a_killed_holder_releases_the_lock(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(UserError, match=rf"{tmp_path} is in use: dltrain process {holder.pid}"):
            with runs.locked(tmp_path):
                pass
        holder.send_signal(signal.SIGKILL)  # no clean-up runs: the kernel drops the lock
        holder.wait()
        with runs.locked(tmp_path):
            assert (tmp_path / runs.LOCK).read_text().strip() == str(os.getpid())
    finally:
        holder.kill()
        holder.wait()


def test_resume_of_a_folder_in_use_is_refused_before_touching_it(make_config, tmp_path):
    from dltrain.train.run import run_training

    run_training(make_config(), tmp_path, Console(file=io.StringIO()))
    before = {p.name: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with runs.locked(tmp_path):  # this process trains in it
        proc = subprocess.run([sys.executable, "-m", "dltrain", "resume", str(tmp_path),
                               "trainer.epochs=2"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert f"dltrain process {os.getpid()}" in proc.stderr and "Traceback" not in proc.stderr
    after = {p.name: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert {k: v for k, v in after.items() if k != runs.LOCK} == \
        {k: v for k, v in before.items() if k != runs.LOCK}
