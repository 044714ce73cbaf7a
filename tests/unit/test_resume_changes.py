"""Issue 7 item 8: a resume with --allow-changes applies every change it accepts from the resume
on (or refuses it with a reason), keeps the saved config the run's original one and records each
change in run.yaml with its epoch."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from dltrain import runs
from dltrain.checkpoint import load_checkpoint
from dltrain.errors import UserError
from dltrain.rerun import prepare_resume, recorded_changes, saved_config
from dltrain.train.loop import Callback
from dltrain.train.run import build_job, run_training

# the reference schedules below step without an optimizer step
pytestmark = pytest.mark.filterwarnings("ignore:Detected call of")

EPOCHS, STOP_AT = 4, 2
QUIET = Console(file=io.StringIO())




class StopAfter(Callback):
    """Ends training at an epoch boundary, leaving last.pt there (as an early stop does)."""

    def on_epoch_end(self, job, row, improved):
        if job.state.epoch == STOP_AT:
            job.state.stop_reason = "stopped by the test"


def trained_run(make_config, tmp_path, sched):
    config = make_config(optim={"name": "sgd", "lr": 0.1, "momentum": 0.9}, sched=sched,
                         trainer={"epochs": EPOCHS, "batch_size": 256})
    run_training(config, tmp_path, QUIET, callbacks=[StopAfter()])
    return tmp_path


def resume(run_dir, *overrides):
    plan = prepare_resume(str(run_dir), list(overrides), allow_changes=True)
    run_training(plan.config, plan.root, QUIET, resume=True, event=plan.event)
    return plan


def reference(config, keys=("lr",)):
    """What a run started with ``config`` has in its optimizer at the start of each epoch."""
    job = build_job(config)
    sched = job.schedule
    out = []
    for _ in range(config.trainer.epochs):
        out.append({k: job.optimizer.param_groups[0][k] for k in keys})
        if sched.interval == "step":
            for _ in range(len(job.data.train) // 256 + 1):
                sched.after_step()
        elif sched.interval == "epoch":
            sched.after_epoch(0.0)
    return out


# every schedule key (and the schedule-shaping trainer.epochs and optim.lr) that resume accepts
SCHEDULE_CHANGES = [
    ({"name": "none"}, "optim.lr", 0.02),
    ({"name": "step", "step_size": 2, "gamma": 0.5}, "sched.step_size", 1),
    ({"name": "step", "step_size": 1, "gamma": 0.5}, "sched.gamma", 0.1),
    ({"name": "cosine"}, "sched.eta_min", 0.05),
    ({"name": "cosine"}, "trainer.epochs", 6),
    ({"name": "cosine"}, "optim.lr", 0.3),
    ({"name": "onecycle"}, "sched.max_lr", 0.5),
    ({"name": "onecycle"}, "sched.pct_start", 0.6),
    ({"name": "onecycle"}, "trainer.epochs", 6),
]


@pytest.mark.parametrize("sched, key, value", SCHEDULE_CHANGES,
                         ids=[f"{s['name']}-{k}" for s, k, _ in SCHEDULE_CHANGES])
def test_an_accepted_schedule_change_sets_the_lr_from_the_resume_on(make_config, tmp_path,
                                                                    sched, key, value):
    run = trained_run(make_config, tmp_path, sched)
    before = runs.read_metrics(run / runs.METRICS)
    plan = resume(run, f"{key}={value}", f"trainer.epochs={value if key == 'trainer.epochs' else EPOCHS}")
    rows = runs.read_metrics(run / runs.METRICS)
    assert rows[:STOP_AT] == before  # the epochs before the change are kept as they were
    want = [r["lr"] for r in reference(plan.config)][STOP_AT:]
    got = [row["lr"] for row in rows[STOP_AT:]]
    assert got == pytest.approx(want, rel=1e-9)  # the first resumed epoch shows the new lr
    unchanged = make_config(optim={"name": "sgd", "lr": 0.1, "momentum": 0.9}, sched=sched,
                            trainer={"epochs": EPOCHS, "batch_size": 256})
    old = [r["lr"] for r in reference(unchanged)][STOP_AT:]
    assert got[:len(old)] != pytest.approx(old, rel=1e-6), "the change did not change the lr"


@pytest.mark.parametrize("key, value, attribute, want", [
    ("sched.factor", 0.5, "factor", 0.5),
    ("sched.patience", 1, "patience", 1),
    ("sched.min_lr", 0.001, "min_lrs", [0.001, 0.001]),  # both parameter groups
])
def test_an_accepted_plateau_change_reaches_the_live_scheduler(make_config, tmp_path, key, value,
                                                              attribute, want):
    run = trained_run(make_config, tmp_path, {"name": "plateau", "patience": 3})
    resume(run, f"{key}={value}")
    state = load_checkpoint(run / runs.CHECKPOINTS / runs.LAST)["scheduler"]
    assert state[attribute] == want


def test_onecycle_cycle_momentum_takes_effect_on_resume(make_config, tmp_path):
    run = trained_run(make_config, tmp_path, {"name": "onecycle"})
    plan = resume(run, "sched.cycle_momentum=true")
    group = load_checkpoint(run / runs.CHECKPOINTS / runs.LAST)["optimizer"]["param_groups"][0]
    job = build_job(plan.config)  # a run started with cycling, stepped to the end
    for _ in range(job.schedule.scheduler.total_steps):
        job.schedule.after_step()
    # cycling ends at max_momentum (0.95); without it momentum stays the configured 0.9
    assert group["momentum"] == pytest.approx(job.optimizer.param_groups[0]["momentum"])
    assert group["momentum"] != 0.9


def test_changes_are_recorded_with_their_epoch_and_the_saved_config_kept(make_config, tmp_path):
    run = trained_run(make_config, tmp_path, {"name": "none"})
    original = saved_config(run)
    resume(run, "optim.lr=0.02", "regularization.l1=1e-05")
    assert saved_config(run) == original
    entry = runs.read_record(run)["resumes"][0]
    assert entry["from_epoch"] == STOP_AT
    assert {c["key"]: (c["from"], c["to"]) for c in entry["changes"]} == {
        "optim.lr": (0.1, 0.02), "regularization.l1": (0.0, 1e-05)}
    assert recorded_changes(run) == ["optim.lr: 0.1 → 0.02 (from epoch 3)",
                                     "regularization.l1: 0.0 → 1e-05 (from epoch 3)"]
    # a second resume starts from the changed settings, not from the original config
    with pytest.raises(UserError, match="already finished"):
        prepare_resume(str(run), [], allow_changes=False)
    plan = prepare_resume(str(run), ["trainer.epochs=5"], allow_changes=False)
    assert plan.config.optim.lr == 0.02 and not plan.event


@pytest.mark.parametrize("override, reason", [
    ("model.hidden_sizes=[4]", "architecture"),
    ("regularization.batch_norm=true", "layers"),
    ("regularization.dropout=0.1", "dropout layers"),
    ("trainer.seed=3", "seed"),
    ("trainer.monitor=val_acc", "metric"),
    ("data.split_seed=1", "old data"),
])
def test_a_change_that_cannot_take_effect_is_refused_with_a_reason(make_config, tmp_path,
                                                                   override, reason):
    run = trained_run(make_config, tmp_path, {"name": "none"})
    with pytest.raises(UserError, match=reason):
        prepare_resume(str(run), [override], allow_changes=True)
