"""Issue 12: the sweep summary lists every job of the sweep's record with its status, refuses a
folder that is not a sweep, and ``resume SWEEP`` refuses what it cannot finish, in one line.

The folders are written here as Hydra and dltrain write them (multirun.yaml's hydra section,
each job's .hydra/, summary.json, checkpoints/last.pt); tests/experiments/test_sweep_resume.py
does the same with a real sweep stopped by a real signal.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import List, Optional

import pytest
import yaml
from rich.console import Console

from dltrain import runs, sweeps
from dltrain.errors import UserError

BASIC = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


def record(task: List[str], params: Optional[dict] = None, sweeper: str = "basic") -> dict:
    """The parts of multirun.yaml that Hydra's sweeper and dltrain read."""
    return {"hydra": {
        "mode": "MULTIRUN",
        "sweep": {"dir": "sweep", "subdir": "${hydra.job.num}"},
        "sweeper": {"_target_": BASIC, "max_batch_size": None, "params": params},
        "overrides": {"hydra": ["hydra.mode=MULTIRUN"], "task": task},
        "runtime": {"choices": {"hydra/sweeper": sweeper}},
    }}


def make_sweep(path: Path, task: List[str], **kwargs) -> Path:
    path.mkdir(parents=True)
    (path / "multirun.yaml").write_text(yaml.safe_dump(record(task, **kwargs)))
    return path


def make_job(job: Path, overrides: List[str], summary: Optional[dict] = None, last: bool = False,
             mode: str = "MULTIRUN", sweeper: str = "basic") -> Path:
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (job / ".hydra" / "config.yaml").write_text("{}\n")
    (job / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(
        {"hydra": {"mode": mode, "runtime": {"choices": {"hydra/sweeper": sweeper}}}}))
    if summary is not None:
        (job / "summary.json").write_text(json.dumps(summary))
    if last:
        (job / "checkpoints").mkdir()
        (job / "checkpoints" / "last.pt").write_bytes(b"")
    return job


def done(value: float, status: str = "completed") -> dict:
    return {"status": status, "best_val_loss": value, "monitor": "val_loss", "mode": "min",
            "epochs_completed": 3, **({"test_loss": value} if status == "completed" else {})}


def printed(sweep_dir: Path, write: bool = False) -> str:
    out = io.StringIO()
    # as dltrain.console prints off a terminal: lines are not wrapped
    sweeps.summarize_sweep(sweep_dir, Console(file=out, width=300, soft_wrap=True), write=write)
    return out.getvalue()


def test_the_record_lists_the_jobs_in_the_order_hydra_numbers_them():
    jobs = sweeps.planned_jobs(record(["optim=sgd,adam", "optim.lr=0.1,0.01", "trainer.epochs=1"],
                                      params={"trainer.seed": "0,1"}))
    # the sweeper's params first, then the command line's overrides, the last varying fastest
    assert jobs[:3] == [
        ["trainer.seed=0", "optim=sgd", "optim.lr=0.1", "trainer.epochs=1"],
        ["trainer.seed=0", "optim=sgd", "optim.lr=0.01", "trainer.epochs=1"],
        ["trainer.seed=0", "optim=adam", "optim.lr=0.1", "trainer.epochs=1"],
    ]
    assert len(jobs) == 8 and jobs[-1] == ["trainer.seed=1", "optim=adam", "optim.lr=0.01",
                                          "trainer.epochs=1"]


def test_a_glob_sweep_lists_the_options_it_matches():
    assert sweeps.planned_jobs(record(["optim=glob(s*)", "optim.lr=1,2"])) == [
        ["optim=sgd", "optim.lr=1"], ["optim=sgd", "optim.lr=2"]]


@pytest.fixture
def mixed(tmp_path) -> Path:
    """Seven jobs: completed, interrupted, killed after a checkpoint, killed before one, never
    started, failed, and one still training (its lock held while the test runs)."""
    sweep = make_sweep(tmp_path / "sweep", ["optim.lr=1,2,3,4,5,6,7", "trainer.epochs=3"])
    def job(n: int, **kwargs) -> Path:
        return make_job(sweep / str(n), [f"optim.lr={n + 1}", "trainer.epochs=3"], **kwargs)

    job(0, summary=done(0.5), last=True)
    job(1, summary=done(0.2, "interrupted"), last=True)
    job(2, last=True)  # SIGKILL: no summary.json, but a checkpoint
    job(3)  # killed before its first checkpoint: nothing to keep
    # job 4 never started: no folder
    job(5, summary={"status": "failed", "reason": "loss is nan"})
    job(6, last=True)
    return sweep


def test_every_job_of_the_record_is_listed_with_its_status(mixed):
    with runs.locked(mixed / "6"):
        jobs = {j["job"]: j for j in sweeps.sweep_jobs(mixed)}
    assert {n: j["status"] for n, j in jobs.items()} == {
        "0": "completed", "1": "interrupted", "2": "interrupted", "3": "not started",
        "4": "not started", "5": "failed", "6": "running"}
    assert jobs["4"]["params"] == {"optim.lr": 5, "trainer.epochs": 3}
    assert jobs["4"]["dir"] == str(mixed / "4")
    assert "killed" in jobs["2"]["reason"]


def test_the_table_counts_the_statuses_and_orders_the_rows(mixed):
    with runs.locked(mixed / "6"):
        text = printed(mixed)
    assert (f"sweep {mixed} (7 jobs: 1 completed, 2 interrupted, 1 running, 2 not started, "
            "1 failed; sorted by best_val_loss, min)") in text
    rows = [line.split("│")[1].strip() for line in text.splitlines() if line.startswith("│")]
    # finished first, then interrupted (by their best so far), running, not started, failed
    assert rows == ["0", "1", "2", "6", "3", "4", "5"]
    assert "best job: 0 " in text  # an interrupted job's better value does not win
    assert "resume" not in text.split("replay it:")[1]  # not while a job still runs


def test_an_unfinished_sweep_names_the_resume_command(mixed):
    text = printed(mixed)
    assert f"5 jobs unfinished: finish the sweep with dltrain resume {mixed}" in text


def test_a_sweep_whose_jobs_all_completed_keeps_its_header(tmp_path):
    sweep = make_sweep(tmp_path / "sweep", ["optim.lr=1,2"])
    for n in range(2):
        make_job(sweep / str(n), [f"optim.lr={n + 1}"], summary=done(0.1 * (n + 1)))
    assert f"sweep {sweep} (2 jobs, sorted by best_val_loss, min)" in printed(sweep)


def test_a_sweep_that_never_trained_is_listed_unsorted(tmp_path):
    sweep = make_sweep(tmp_path / "sweep", ["optim.lr=1,2,3"])
    make_job(sweep / "0", ["optim.lr=1"])  # stopped by Ctrl-C before its first epoch ended
    assert f"sweep {sweep} (3 jobs: 3 not started)\n" in printed(sweep)


def test_an_optuna_search_is_summarized_from_its_job_folders(tmp_path):
    sweep = tmp_path / "hpo"  # Hydra's Optuna sweeper writes no multirun.yaml
    make_job(sweep / "0", ["optim.lr=0.003"], summary=done(0.3), sweeper="optuna")
    make_job(sweep / "1", ["optim.lr=0.0001"], last=True, sweeper="optuna")
    assert sweeps.is_sweep(sweep)
    text = printed(sweep)
    assert f"sweep {sweep} (2 jobs: 1 completed, 1 interrupted; sorted by best_val_loss" in text


# ---------------------------------------------------------------------------------------------
# folders that are not sweeps: refused before anything is written
@pytest.mark.parametrize("case", ["runs", "run", "sweeps", "empty"])
def test_a_folder_that_is_not_a_sweep_is_refused_and_left_alone(tmp_path, case):
    folder = tmp_path / "work"
    folder.mkdir()
    expected = {
        "runs": f"{folder} is not a sweep folder: it holds no multirun.yaml and no sweep jobs",
        "run": f"{folder} is a run folder, not a sweep",
        "sweeps": f"{folder} is not a sweep; name one of the sweeps in it: {folder / 'a'}",
        "empty": f"{folder} is not a sweep folder",
    }[case]
    if case == "runs":  # two single runs side by side: a day of outputs/, a user's folder
        make_job(folder / "diabetes", [], summary=done(30.0), mode="RUN")
        make_job(folder / "digits", [], summary=done(0.2), mode="RUN")
    elif case == "run":
        make_job(folder, [], summary=done(0.2), mode="RUN")
    elif case == "sweeps":
        make_sweep(folder / "a", ["optim.lr=1,2"])
    before = sorted(p.name for p in folder.rglob("*"))
    with pytest.raises(UserError) as error:
        printed(folder, write=True)
    assert str(error.value).startswith(expected) and "\n" not in str(error.value)
    assert sorted(p.name for p in folder.rglob("*")) == before  # no summary.csv, no sweep.png


# ---------------------------------------------------------------------------------------------
# resume SWEEP: what it refuses, in one line, before anything runs
def resume(sweep: Path, *overrides: str) -> str:
    from dltrain.sweep_resume import resume_sweep

    with pytest.raises(UserError) as error:
        resume_sweep(sweep, list(overrides), console=Console(file=io.StringIO()))
    assert "\n" not in str(error.value)
    return str(error.value)


def test_resume_refuses_a_search_by_hydras_own_optuna_sweeper(tmp_path):
    """Hydra's sweeper kept no study: there is nothing to continue (dltrain's own keeps one)."""
    sweep = tmp_path / "hpo"
    make_job(sweep / "0", ["optim.lr=0.003"], last=True, sweeper="optuna")
    assert resume(sweep).startswith(f"{sweep} is a search by Hydra's own Optuna sweeper "
                                     "(hydra/sweeper=optuna), which kept no study to continue")


def test_resume_refuses_overrides(mixed):
    assert resume(mixed, "trainer.epochs=9").startswith(
        "a sweep resumes with the config its jobs started with, without overrides")


def test_resume_refuses_a_sweep_that_is_still_running(mixed):
    with runs.locked(mixed / "6"):
        message = resume(mixed)
    assert message.startswith(f"{mixed} is still running: job 6 is held by dltrain process ")


def test_resume_says_when_nothing_is_left(tmp_path):
    sweep = make_sweep(tmp_path / "sweep", ["optim.lr=1,2"])
    make_job(sweep / "0", ["optim.lr=1"], summary=done(0.1))
    make_job(sweep / "1", ["optim.lr=2"], summary={"status": "failed", "reason": "nan"})
    assert resume(sweep).startswith(f"{sweep} has nothing left to run (2 jobs: 1 completed, "
                                    "1 failed)")


def test_resume_refuses_a_folder_that_is_not_a_sweep(tmp_path):
    make_job(tmp_path / "runs" / "a", [], mode="RUN")
    assert resume(tmp_path / "runs").startswith(f"{tmp_path / 'runs'} is not a sweep folder")
