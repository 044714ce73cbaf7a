"""Issue 14, hyperparameter search: dltrain's Optuna sweeper (hydra/sweeper=dltrain_optuna).

Trials report every epoch and a pruner stops the hopeless ones; the study lives in a database,
so a search stopped by a signal is continued by the same command, and two processes share one
study. Every check reads the study back from its SQLite file with Optuna, beside the folders.
"""

from __future__ import annotations

import io
import signal
import time
from pathlib import Path

import pytest
from rich.console import Console

from dltrain.errors import UserError
from dltrain.sweep_resume import resume_sweep

from .helpers import (
    assert_ok,
    dltrain,
    dltrain_here,
    finish,
    read_csv,
    read_json,
    read_yaml,
    run_together,
    start,
)

optuna = pytest.importorskip("optuna")
from optuna.trial import TrialState  # noqa: E402

pytestmark = pytest.mark.slow

# the digits MLP at its smallest: each trial trains in well under a second
SEARCH = ["-m", "hpo=digits_mlp", "model.hidden_sizes=[16]", "trainer.batch_size=256",
          "trainer.progress=none", "trainer.diagnostics=false", "trainer.device=cpu"]
STUDY = "digits_mlp"  # configs/hpo/digits_mlp.yaml's study_name


def trials(db: Path):
    from dltrain import hpo

    return hpo.load_study(f"sqlite:///{db}", STUDY).get_trials()


def job_folders(sweep: Path):
    return sorted(p.name for p in sweep.iterdir() if (p / ".hydra").is_dir())


def test_the_median_pruner_stops_a_diverging_and_a_stalled_trial(tmp_path):
    """lr=50 diverges (val_loss ~40), lr=1e-6 learns nothing: both are worse after their first
    epoch than the completed lr=0.1 trial was, so the median pruner stops them there."""
    db, sweep = tmp_path / "study.db", tmp_path / "sweep"
    study = optuna.create_study(storage=f"sqlite:///{db}", study_name=STUDY)
    for lr in (0.1, 1e-6, 50.0):  # in this order: the good one is the pruner's reference
        study.enqueue_trial({"optim.lr": lr})
    epochs = 4
    proc = assert_ok(dltrain([
        *SEARCH, "optim=sgd", "hydra.sweeper.params=null", "optim.lr=choice(0.1,0.000001,50.0)",
        "hydra.sweeper.n_trials=3", "hydra.sweeper.pruner.n_startup_trials=1",
        "hydra.sweeper.pruner.n_warmup_steps=0", f"trainer.epochs={epochs}",
        f"hydra.sweeper.storage=sqlite:///{db}", f"hydra.sweep.dir={sweep}"], tmp_path))

    good, stalled, diverging = trials(db)
    assert [t.params["optim.lr"] for t in (good, stalled, diverging)] == [0.1, 1e-6, 50.0]
    assert good.state == TrialState.COMPLETE and len(good.intermediate_values) == epochs
    assert good.value == read_json(sweep / "0" / "summary.json")["best_val_loss"]
    for trial in (stalled, diverging):
        assert trial.state == TrialState.PRUNED
        folder = Path(trial.user_attrs["dltrain_dir"])
        assert folder == sweep / str(trial.number)  # each trial's folder is its number
        summary = read_json(folder / "summary.json")
        assert summary["status"] == "pruned" and summary["epochs_completed"] == 1 < epochs
        assert summary["reason"] == (f"the median pruner stopped trial {trial.number} after "
                                     f"epoch 1 (val_loss {trial.intermediate_values[1]:.4g})")
        assert "test_loss" not in summary  # a pruned trial is no candidate: never tested
        # what the trial reported is what its metrics.csv says, epoch by epoch
        rows = read_csv(folder / "metrics.csv")
        assert trial.intermediate_values == {int(r["epoch"]): float(r["val_loss"]) for r in rows}
        assert trial.value == trial.intermediate_values[1]
    assert diverging.value > 10 * stalled.value > 10 * good.value

    # the table: pruned trials with the epochs they reached, after the completed one
    table = [line for line in proc.stdout.splitlines() if line.startswith("│ ")]
    cells = [[c.strip() for c in line.split("│")[1:-1]] for line in table]
    assert [(c[0], c[1], c[2], c[-1]) for c in cells] == [
        ("0", "0.1", "completed", str(epochs)), ("1", "1e-06", "pruned", "1"),
        ("2", "50", "pruned", "1")]
    assert "(3 jobs: 1 completed, 2 pruned; sorted by best_val_loss, min)" in proc.stdout
    assert f"replay it: dltrain replay {sweep / '0'}\n" in proc.stdout
    rows = read_csv(sweep / "summary.csv")
    assert [(r["job"], r["status"], r["epochs"]) for r in rows] == [
        ("0", "completed", str(epochs)), ("1", "pruned", "1"), ("2", "pruned", "1")]
    assert read_yaml(sweep / "optimization_results.yaml")["best_params"] == {"optim.lr": 0.1}

    # dltrain resume continues the folder's study: nothing left, unless more trials are asked
    with pytest.raises(UserError) as refused:
        resume_sweep(sweep, console=Console(file=io.StringIO()))
    assert str(refused.value) == (
        f"{sweep} has nothing left to run: its study 'digits_mlp' holds 3 of 3 trials "
        "(3 trials: 1 completed, 2 pruned); to search further, raise their number: "
        f"dltrain resume {sweep} hydra.sweeper.n_trials=13")
    assert_ok(dltrain(["resume", str(sweep), "hydra.sweeper.n_trials=4"], tmp_path))
    assert [t.number for t in trials(db)] == [0, 1, 2, 3]
    assert trials(db)[3].state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert job_folders(sweep) == ["0", "1", "2", "3"]


def test_a_search_stopped_by_sigterm_is_finished_by_the_same_command(tmp_path):
    """SIGTERM while the third of four trials trains: that trial stays running in the study,
    its job saves last.pt. The same command again continues it from there, then runs the
    fourth: exactly four trials, each trained once, epoch by epoch."""
    db = tmp_path / "study.db"
    epochs = 20
    command = [*SEARCH, "hydra.sweeper.n_trials=4", f"trainer.epochs={epochs}",
               "hydra.sweeper.pruner.name=none", "hydra.sweeper.storage=sqlite:///study.db"]
    first = start(command, tmp_path)
    deadline = time.monotonic() + 120
    while True:  # two trials told, the third a few epochs in
        assert first.poll() is None and time.monotonic() < deadline, finish(first)
        third = list(tmp_path.glob("outputs/multirun/*/*/2/metrics.csv"))
        if third and len(read_csv(third[0])) >= 2:
            break
        time.sleep(0.02)
    first.send_signal(signal.SIGTERM)
    stopped = finish(first)
    assert stopped.returncode == 143, stopped.stderr
    assert "stopped by SIGTERM: checkpoints/last.pt is saved; the search continues trial 2" \
        in stopped.stderr
    assert "or run the same command again" in stopped.stderr
    left = trials(db)
    assert [t.state for t in left] == [TrialState.COMPLETE] * 2 + [TrialState.RUNNING]
    folder = Path(left[2].user_attrs["dltrain_dir"])
    assert read_json(folder / "summary.json")["status"] == "interrupted"

    again = assert_ok(dltrain(command, tmp_path))
    assert f"Continuing trial 2, stopped before it finished, from its checkpoints/last.pt " \
           f"({folder})" in again.stdout
    done = trials(db)
    assert [t.number for t in done] == [0, 1, 2, 3]
    assert [t.state for t in done] == [TrialState.COMPLETE] * 4
    # the stopped trial went on in its own folder, from its last.pt: every epoch once
    assert read_json(folder / "summary.json")["status"] == "completed"
    assert [int(r["epoch"]) for r in read_csv(folder / "metrics.csv")] == list(range(1, epochs + 1))
    assert [r.get("optuna_trial") for r in read_yaml(folder / "run.yaml")["resumes"]] == [2]
    assert sorted(done[2].intermediate_values) == list(range(1, epochs + 1))
    # the second run's table lists the study's four trials, wherever they ran
    assert "(4 jobs, sorted by best_val_loss, min)" in again.stdout


def test_two_processes_share_one_study(tmp_path):
    """Two searches on one SQLite study, started together: n_trials between them, each trial
    asked, run and told once, the processes' draws apart."""
    db = tmp_path / "shared.db"
    n_trials = 6
    command = [*SEARCH, f"hydra.sweeper.n_trials={n_trials}", "trainer.epochs=20",
               "hydra.sweeper.pruner.name=none", f"hydra.sweeper.storage=sqlite:///{db}"]
    sweeps = [tmp_path / "a", tmp_path / "b"]
    for proc in run_together([([*command, f"hydra.sweep.dir={s}"], tmp_path) for s in sweeps]):
        assert_ok(proc)
    held = trials(db)
    assert [t.number for t in held] == list(range(n_trials))
    assert all(t.state == TrialState.COMPLETE for t in held)
    folders = {t.number: Path(t.user_attrs["dltrain_dir"]) for t in held}
    for number, folder in folders.items():  # one folder per trial, named by its number
        assert folder.name == str(number) and folder.parent in sweeps
        assert read_json(folder / "summary.json")["status"] == "completed"
        assert "resumes" not in read_yaml(folder / "run.yaml")
    assert sorted(name for s in sweeps for name in job_folders(s)) == [str(n) for n in range(n_trials)]
    assert all(job_folders(s) for s in sweeps)  # both processes ran trials
    assert len({t.params["optim.lr"] for t in held}) == n_trials  # nobody repeated a draw
    # each folder's summary lists the whole study
    for sweep in sweeps:
        summary = assert_ok(dltrain_here(["summary", str(sweep)], tmp_path))
        assert f"sweep {sweep} ({n_trials} jobs, sorted by best_val_loss, min)" in summary.stdout
