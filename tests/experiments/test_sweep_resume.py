"""Issue 12, sweeps that survive interruption: a real 3-job grid sweep stopped by SIGTERM in its
second job lists every job with its status, and ``dltrain resume SWEEP`` finishes it.

The sweep is interrupted as a user's would be: job 0 finishes, job 1 gets SIGTERM after its
first checkpoint (so it stops inside its second epoch), job 2 never starts. The sweep folder is
then copied, and the copy is finished by the command, ``dltrain resume SWEEP``, in a process of
its own (it runs the jobs through Hydra), while ``dltrain summary`` of the original runs in this
process.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List

import pytest

from .helpers import (TINY, TRAIN_TIMEOUT_S, assert_ok, cli_env, describe, dltrain_cmd,
                      dltrain_here, finish, read_csv, read_json, read_yaml, start)

pytestmark = pytest.mark.slow

EPOCHS = 40  # long enough that the signal lands inside job 1 (0.02 s an epoch on one thread)
LRS = ["0.01", "0.02", "0.03"]
SWEEP = ["-m", f"optim.lr={','.join(LRS)}", f"trainer.epochs={EPOCHS}", *TINY]


@dataclass
class Interrupted:
    dir: Path  # the sweep as the signal left it (never resumed)
    sweep: subprocess.CompletedProcess
    summary: subprocess.CompletedProcess  # dltrain summary of it
    resumed: Path  # a copy finished by `dltrain resume COPY`
    resume: subprocess.CompletedProcess


def interrupt_in_job_1(sweep_dir: Path, cwd: Path) -> subprocess.CompletedProcess:
    """The sweep, with SIGTERM as soon as job 1 has saved its first checkpoint."""
    proc = subprocess.Popen(dltrain_cmd(*SWEEP, f"hydra.sweep.dir={sweep_dir}"), cwd=cwd,
                            env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    first = sweep_dir / "1" / "checkpoints" / "last.pt"
    deadline = time.monotonic() + TRAIN_TIMEOUT_S
    try:
        while not first.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                out = finish(proc)
                raise AssertionError(f"job 1 never saved a checkpoint:\n{describe(out)}")
            time.sleep(0.005)
        proc.send_signal(signal.SIGTERM)
    finally:
        result = finish(proc)
    assert result.returncode == 143, describe(result)
    return result


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory) -> Interrupted:
    cwd = tmp_path_factory.mktemp("sweep_resume")
    sweep_dir = cwd / "sweep"
    sweep = interrupt_in_job_1(sweep_dir, cwd)
    resumed = cwd / "resumed"
    shutil.copytree(sweep_dir, resumed)
    proc = start(["resume", str(resumed)], cwd)
    try:
        summary = dltrain_here(["summary", str(sweep_dir)], cwd)
    finally:
        resume = finish(proc)
    return Interrupted(sweep_dir, sweep, summary, resumed, resume)


def summary_rows(sweep_dir: Path) -> Dict[str, Dict[str, str]]:
    return {row["job"]: row for row in read_csv(sweep_dir / "summary.csv")}


def test_the_signal_left_one_job_of_each_kind(interrupted):
    assert read_json(interrupted.dir / "0" / "summary.json")["status"] == "completed"
    job1 = read_json(interrupted.dir / "1" / "summary.json")
    assert job1["status"] == "interrupted" and 1 <= job1["epochs_completed"] < EPOCHS, job1
    assert not (interrupted.dir / "2").exists()
    assert f"dltrain resume {interrupted.dir / '1'}" in interrupted.sweep.stderr


def test_summary_lists_every_job_of_the_sweep_with_its_status(interrupted):
    proc = assert_ok(interrupted.summary)
    assert (f"sweep {interrupted.dir} (3 jobs: 1 completed, 1 interrupted, 1 not started; "
            "sorted by best_val_loss, min)") in proc.stdout, describe(proc)
    rows = summary_rows(interrupted.dir)
    assert {job: row["status"] for job, row in rows.items()} == \
        {"0": "completed", "1": "interrupted", "2": "not started"}
    # the job that never ran still shows what it would have run, from the sweep's record
    assert {job: row["optim.lr"] for job, row in rows.items()} == dict(zip("012", LRS))
    assert rows["2"]["dir"] == str(interrupted.dir / "2") and rows["2"]["best_val_loss"] == ""
    assert f"finish the sweep with dltrain resume {interrupted.dir}" in proc.stdout
    assert "best job: 0 " in proc.stdout  # only a finished job can be the best


def assert_finished(sweep_dir: Path, stdout: str) -> None:
    for job in "012":
        summary = read_json(sweep_dir / job / "summary.json")
        assert summary["status"] == "completed" and summary["epochs_completed"] == EPOCHS, summary
        epochs = [int(row["epoch"]) for row in read_csv(sweep_dir / job / "metrics.csv")]
        assert epochs == list(range(1, EPOCHS + 1)), (job, epochs)
    assert f"sweep {sweep_dir} (3 jobs, sorted by best_val_loss, min)" in stdout
    assert {row["status"] for row in summary_rows(sweep_dir).values()} == {"completed"}


def test_resume_finishes_the_sweep(interrupted):
    proc = assert_ok(interrupted.resume)
    assert (f"resuming sweep {interrupted.resumed} (3 jobs): 1 completed (kept), 1 interrupted "
            "(resumed from last.pt: job 1), 1 not started (started now: job 2)"
            in proc.stdout), describe(proc)
    assert_finished(interrupted.resumed, proc.stdout)
    assert "Traceback" not in proc.stderr


def test_the_completed_job_is_kept_as_it_was(interrupted):
    for name in ("summary.json", "metrics.csv", "run.yaml", "checkpoints/best.pt"):
        before = (interrupted.dir / "0" / name).read_bytes()
        assert (interrupted.resumed / "0" / name).read_bytes() == before, name


def test_the_interrupted_job_resumes_from_its_last_checkpoint(interrupted):
    done = read_json(interrupted.dir / "1" / "summary.json")["epochs_completed"]
    stdout = interrupted.resume.stdout
    assert f"resuming after epoch {done}" in stdout
    record = read_yaml(interrupted.resumed / "1" / "run.yaml")
    assert [r["from_epoch"] for r in record["resumes"]] == [done]
    assert record["resumes"][0]["command"] == f"dltrain resume {interrupted.resumed}"
    # its original record and Hydra's are untouched
    assert record["command"].startswith("dltrain -m optim.lr=")
    for name in (".hydra/config.yaml", ".hydra/hydra.yaml", ".hydra/overrides.yaml"):
        assert (interrupted.resumed / "1" / name).read_bytes() == \
            (interrupted.dir / "1" / name).read_bytes(), name


def hydra_record(job: Path) -> dict:
    return read_yaml(job / ".hydra" / "hydra.yaml")["hydra"]


def without(record: dict, job_keys: List[str]) -> dict:
    record = {**record, "job": {k: v for k, v in record["job"].items() if k not in job_keys},
              "runtime": {k: v for k, v in record["runtime"].items() if k != "output_dir"},
              "overrides": {**record["overrides"], "task": None}, "sweep": None}
    return record


def test_the_job_that_never_started_runs_in_its_own_folder_as_hydra_would(interrupted):
    job0, job2 = interrupted.resumed / "0", interrupted.resumed / "2"
    assert read_yaml(job2 / ".hydra" / "overrides.yaml") == \
        [o.replace(f"optim.lr={LRS[0]}", f"optim.lr={LRS[2]}")
         for o in read_yaml(job0 / ".hydra" / "overrides.yaml")]
    # the same composed config as the job that the sweep itself ran, but for the swept value
    config0, config2 = (read_yaml(j / ".hydra" / "config.yaml") for j in (job0, job2))
    assert config2["optim"].pop("lr") == float(LRS[2]) and config0["optim"].pop("lr") == float(LRS[0])
    assert config2 == config0
    # and Hydra's record of it, with its own number and folder
    record0, record2 = hydra_record(job0), hydra_record(job2)
    assert (record2["job"]["num"], record2["job"]["id"]) == (2, "2")
    assert record2["runtime"]["output_dir"] == str(job2)
    assert record2["sweep"]["dir"] == str(interrupted.resumed)  # where the sweep is now
    keys = ["num", "id", "override_dirname"]
    assert without(record2, keys) == without(record0, keys)
    assert read_yaml(job2 / "run.yaml")["command"] == f"dltrain resume {interrupted.resumed}"

