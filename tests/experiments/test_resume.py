"""``dltrain resume RUN``: a run stopped at an epoch boundary and resumed ends exactly like one
that never stopped; changes that alter the maths are refused unless accepted.

The runs compared are trained once per session by ``trained`` and ``second_wave`` (conftest.py).
The resumes run in this process, through the command's entry point (``cli.main``, which exits
with the status the command would).
"""

from __future__ import annotations

import shutil

import pytest

from .helpers import (EPOCHS, EXTENDED, assert_ok, assert_user_error, dltrain, dltrain_here,
                      read_csv, read_json, read_yaml, without_timing)

pytestmark = pytest.mark.slow


def test_resume_continues_after_the_last_epoch(resumed_pair):
    stdout = resumed_pair.resume_stdout
    assert f"resuming after epoch {EPOCHS}" in stdout
    assert f"epoch {EPOCHS + 1}/{EXTENDED}" in stdout
    assert f"epoch {EPOCHS}/{EXTENDED}" not in stdout
    assert resumed_pair.resumed.summary["status"] == "completed"
    assert resumed_pair.resumed.summary["epochs_completed"] == EXTENDED


def test_resumed_metrics_equal_an_uninterrupted_run(resumed_pair):
    resumed, straight = resumed_pair.resumed.metrics, resumed_pair.straight.metrics
    assert [int(row["epoch"]) for row in resumed] == list(range(1, EXTENDED + 1))
    assert without_timing(resumed) == without_timing(straight)


def test_resumed_weights_equal_an_uninterrupted_run(resumed_pair):
    import torch

    resumed, straight = resumed_pair.resumed.weights, resumed_pair.straight.weights
    assert resumed.keys() == straight.keys() and resumed
    for name in straight:
        assert torch.equal(resumed[name], straight[name]), name


def test_resumed_test_metrics_equal_an_uninterrupted_run(resumed_pair):
    resumed, straight = resumed_pair.resumed.summary, resumed_pair.straight.summary
    for key in ("test_loss", "test_acc", "best_val_loss", "best_epoch", "steps"):
        assert resumed[key] == straight[key], key


def test_resume_is_recorded_and_the_saved_config_kept(resumed_pair):
    """Issue 7 item 8: the saved config stays the run's original one; run.yaml says what each
    resume did."""
    record = resumed_pair.resumed.record
    assert len(record["resumes"]) == 1
    entry = record["resumes"][0]
    assert entry["from_epoch"] == EPOCHS
    assert "changes" not in entry
    assert "resume" in entry["command"] and f"trainer.epochs={EXTENDED}" in entry["command"]
    # the original record is kept
    assert f"trainer.epochs={EPOCHS}" in record["command"] and record["seed"] == 0
    assert resumed_pair.resumed.config["trainer"]["epochs"] == EPOCHS
    assert "resumes" not in resumed_pair.straight.record


NEW_LR = 0.5  # the run trains with Adam's default, 0.001


@pytest.fixture(scope="module")
def attempts(resumed_pair, tmp_path_factory):
    """Resumes of the finished run: without extending it (as is, and asking for fewer epochs),
    with a changed learning rate, and with that change accepted. The ones that may write into
    the run work on copies of it."""
    run = resumed_pair.resumed_dir
    copies = {}
    for name in ("shorter", "accepted"):
        copies[name] = tmp_path_factory.mktemp(name) / "run"
        shutil.copytree(run, copies[name])
    more = f"trainer.epochs={EXTENDED + 1}"
    finished, shorter, refused, accepted = (dltrain_here(args, cwd) for args, cwd in (
        (["resume", str(run)], resumed_pair.cwd),
        (["resume", str(copies["shorter"]), f"trainer.epochs={EPOCHS}"], copies["shorter"].parent),
        (["resume", str(run), f"optim.lr={NEW_LR}", more], resumed_pair.cwd),
        (["resume", str(copies["accepted"]), f"optim.lr={NEW_LR}", more, "--allow-changes"],
         copies["accepted"].parent),
    ))
    return {"finished": finished, "shorter": shorter, "refused": refused, "accepted": accepted,
            "copies": copies}


def test_resuming_a_finished_run_tells_how_to_extend_it(resumed_pair, attempts):
    run = resumed_pair.resumed_dir
    assert_user_error(attempts["finished"], f"already finished {EXTENDED} epochs",
                      f"dltrain resume {run} trainer.epochs=N")
    assert read_yaml(run / "run.yaml") == resumed_pair.resumed.record
    assert read_yaml(run / ".hydra" / "config.yaml") == resumed_pair.resumed.config


def test_a_refused_resume_leaves_the_saved_config_alone(resumed_pair, attempts):
    # trainer.epochs=3 on a run that finished 5 is refused; the folder must still describe the
    # run it holds, or a later resume or replay would silently use the refused values
    run = attempts["copies"]["shorter"]
    assert_user_error(attempts["shorter"], f"already finished {EXTENDED} epochs",
                      f"dltrain resume {run} trainer.epochs=N")
    assert read_yaml(run / ".hydra" / "config.yaml") == resumed_pair.resumed.config
    assert read_yaml(run / "run.yaml") == resumed_pair.resumed.record


def test_resume_refuses_a_change_to_the_maths(resumed_pair, attempts):
    run = resumed_pair.resumed_dir
    proc = attempts["refused"]
    assert_user_error(proc, "changes the maths of the run", f"optim.lr: 0.001 → {NEW_LR}",
                      "--allow-changes", f"dltrain replay {run} optim.lr={NEW_LR}")
    # trainer.epochs is free to change: only the learning rate is listed
    listed = proc.stderr.split("--allow-changes")[0]
    assert "optim.lr" in listed and "trainer.epochs" not in listed
    assert read_yaml(run / "run.yaml") == resumed_pair.resumed.record
    assert read_yaml(run / ".hydra" / "config.yaml") == resumed_pair.resumed.config
    assert without_timing(read_csv(run / "metrics.csv")) == \
        without_timing(resumed_pair.resumed.metrics)


def test_resume_accepts_a_change_with_allow_changes(resumed_pair, attempts):
    run, proc = attempts["copies"]["accepted"], assert_ok(attempts["accepted"])
    assert f"resuming after epoch {EXTENDED}" in proc.stdout

    resumes = read_yaml(run / "run.yaml")["resumes"]
    assert len(resumes) == 2
    assert resumes[-1]["from_epoch"] == EXTENDED
    assert resumes[-1]["changes"] == [{"key": "optim.lr", "from": 0.001, "to": NEW_LR}]
    # the saved config still describes the epochs before the change (issue 7 item 8)
    assert read_yaml(run / ".hydra" / "config.yaml") == resumed_pair.resumed.config

    metrics = read_csv(run / "metrics.csv")
    assert without_timing(metrics[:EXTENDED]) == without_timing(resumed_pair.resumed.metrics)
    assert read_json(run / "summary.json")["epochs_completed"] == EXTENDED + 1
    # the accepted change is applied, not only recorded: the new epoch trains with the new rate
    assert [float(row["lr"]) for row in metrics] == [0.001] * EXTENDED + [NEW_LR]


def test_replay_of_a_changed_run_names_the_changes_it_does_not_replay(attempts):
    """Issue 7 item 8: replay trains the original config and says which recorded changes it
    leaves out."""
    run = attempts["copies"]["accepted"]
    proc = assert_ok(dltrain(["replay", str(run), "trainer.epochs=1"], run.parent))
    assert f"replaying {run} with its original config" in proc.stdout
    assert f"optim.lr: 0.001 → {NEW_LR} (from epoch {EXTENDED + 1})" in proc.stdout
