"""The training loop on tiny budgets: steps, determinism, early stopping, divergence, clipping,
the run folder it fills, and a checkpoint that carries enough to resume exactly."""

from __future__ import annotations

import copy
import io
import json
import math

import pytest
import torch
from rich.console import Console
from torch import nn

from dltrain import runs
from dltrain.checkpoint import load_checkpoint, save_checkpoint
from dltrain.data.batching import num_batches
from dltrain.train.loop import (TrainingDiverged, TrainingInterrupted, TrainState, evaluate, fit,
                                train_step)
from dltrain.train.run import build_job, make_checkpoint, restore, run_training

TIMING = {"epoch_time_s", "samples_per_s"}




def tiny(make_config, **groups):
    groups.setdefault("trainer", {})
    groups["trainer"] = {"epochs": 2, "batch_size": 256, **groups["trainer"]}
    return make_config(**groups)


def without_timing(history):
    return [{k: v for k, v in row.items() if k not in TIMING} for row in history]


def test_fit_runs_every_batch_of_every_epoch(make_config):
    job = build_job(tiny(make_config))
    n = num_batches(len(job.data.train), 256)
    state = fit(job)
    assert state.epoch == 2 and state.step == 2 * n
    assert [row["epoch"] for row in state.history] == [1, 2]
    for row in state.history:
        assert {"train_loss", "train_acc", "val_loss", "val_acc", "lr"} <= row.keys()
        assert math.isfinite(row["train_loss"]) and 0 <= row["val_acc"] <= 1
        assert row["lr"] == 0.1
    assert state.history[1]["val_loss"] < state.history[0]["val_loss"]  # it learns
    assert state.best == min(row["val_loss"] for row in state.history)


def test_same_seed_same_run_other_seed_other_run(make_config):
    histories, weights = [], []
    for seed in (3, 3, 4):
        job = build_job(tiny(make_config, trainer={"seed": seed}))
        histories.append(without_timing(fit(job).history))
        weights.append([p.detach().clone() for p in job.model.parameters()])
    assert histories[0] == histories[1]
    assert all(torch.equal(a, b) for a, b in zip(weights[0], weights[1]))
    assert histories[0] != histories[2]


def test_early_stopping_ends_the_run(make_config):
    config = tiny(make_config, trainer={"epochs": 6, "early_stopping": {"patience": 2,
                                                                          "min_delta": 100.0}})
    state = fit(build_job(config))
    # epoch 1 sets the best; no later epoch beats it by 100: stop after `patience` bad epochs
    assert state.epoch == 3 and state.best_epoch == 1 and state.bad_epochs == 2
    assert state.stop_reason and "val_loss" in state.stop_reason


@pytest.mark.parametrize(
    "mode, values, best, best_epoch",
    [("min", [3.0, 2.0, 2.5, 1.0], 1.0, 4), ("max", [0.1, 0.5, 0.4, 0.45], 0.5, 2)],
)
def test_update_best(mode, values, best, best_epoch):
    state = TrainState()
    improved = []
    for v in values:
        state.epoch += 1
        improved.append(state.update_best(v, mode, min_delta=0.0))
    assert state.best == best and state.best_epoch == best_epoch
    assert improved[0] is True
    assert state.bad_epochs == len(values) - best_epoch


def test_min_delta_needs_a_real_improvement():
    state = TrainState()
    assert state.update_best(1.0, "min", min_delta=0.1)
    assert not state.update_best(0.95, "min", min_delta=0.1)
    assert state.update_best(0.85, "min", min_delta=0.1)
    assert state.best == 0.85 and state.bad_epochs == 0


def test_divergence_is_reported(make_config):
    job = build_job(tiny(make_config))

    class NaNLoss(nn.Module):
        def forward(self, out, y):
            return out.sum() * float("nan")

    job.criterion = NaNLoss()
    with pytest.raises(TrainingDiverged, match="nan"):
        fit(job)


def test_batch_norm_survives_a_last_batch_of_one(make_config):
    probe = build_job(tiny(make_config))
    n_train = len(probe.data.train)
    config = tiny(make_config, regularization={"batch_norm": True},
                  trainer={"batch_size": n_train - 1, "epochs": 1})
    state = fit(build_job(config))
    assert state.step == 1  # the batch of one was dropped, not fed to batch norm


def test_grad_clip_limits_the_step(make_config):
    clip, lr = 0.01, 0.1
    config = tiny(make_config, trainer={"grad_clip": clip})
    job = build_job(config)
    x, y = job.data.train.x[:64], job.data.train.y[:64]
    ref = copy.deepcopy(job.model)
    params = list(ref.parameters())
    grads = torch.autograd.grad(job.criterion(ref(x), y), params)
    norm = torch.sqrt(sum(g.square().sum() for g in grads))
    assert norm > clip  # the clip is active
    scale = clip / (norm + 1e-6)
    want = [p - lr * g * scale for p, g in zip(params, grads)]

    train_step(job, x, y)

    for got, w in zip(job.model.parameters(), want):
        assert torch.allclose(got, w, atol=1e-6)


def test_built_job_penalizes_weights_not_biases(make_config):
    """build_job wires L1 and L2 exactly as configured: one SGD step, checked by hand."""
    lr, l1, wd = 0.1, 0.01, 0.05
    config = tiny(make_config, model={"name": "mlp", "hidden_sizes": [8]},
                  optim={"name": "sgd", "lr": lr, "momentum": 0.0},
                  regularization={"l1": l1, "weight_decay": wd, "batch_norm": True})
    job = build_job(config)
    x, y = job.data.train.x[:32], job.data.train.y[:32]
    ref = copy.deepcopy(job.model)
    grads = torch.autograd.grad(job.criterion(ref(x), y), list(ref.parameters()))
    want = []
    with torch.no_grad():
        for p, g in zip(ref.parameters(), grads):
            penalized = p.ndim >= 2  # weights; biases and batch-norm scales/shifts are 1-D
            want.append(p - lr * (g + (l1 * p.sign() + wd * p if penalized else 0)))

    train_step(job, x, y)

    for got, w in zip(job.model.parameters(), want):
        assert torch.allclose(got, w, atol=1e-6)


def test_evaluate_does_not_train(make_config):
    job = build_job(tiny(make_config, regularization={"dropout": 0.5}))
    before = [p.detach().clone() for p in job.model.parameters()]
    first = evaluate(job, job.data.val, "val")
    second = evaluate(job, job.data.val, "val")
    assert first == second  # eval mode: dropout off, so the same numbers twice
    assert set(first) == {"val_loss", "val_acc"}
    assert all(torch.equal(a, b) for a, b in zip(before, job.model.parameters()))


# ---------------------------------------------------------------------------------------------
# checkpoints of a real job
class Saver:
    """Saves last.pt after each epoch, as RunFolder does."""

    def __init__(self, path):
        self.path = path

    def on_epoch_start(self, job, n_batches):
        pass

    def on_step(self, job, batch, running_loss):
        pass

    def on_epoch_end(self, job, row, improved):
        save_checkpoint(self.path, make_checkpoint(job))


class Interrupt:
    """A stop flag raised by a signal handler, here raised after ``after_steps`` steps."""

    def __init__(self, after_steps):
        self.after_steps = after_steps
        self.requested = 0

    def on_epoch_start(self, job, n_batches):
        pass

    def on_step(self, job, batch, running_loss):
        if job.state.step == self.after_steps:
            self.requested = 15  # SIGTERM

    def on_epoch_end(self, job, row, improved):
        pass


@pytest.mark.parametrize("sched, where, precision", [
    ({"name": "none"}, "epoch end", "32"), ({"name": "none"}, "mid epoch", "32"),
    ({"name": "onecycle"}, "epoch end", "32"), ({"name": "onecycle"}, "mid epoch", "32"),
    ({"name": "onecycle"}, "mid epoch", "bf16-mixed"),  # autocast keeps the resume exact
])
def test_checkpoint_resumes_exactly(make_config, tmp_path, sched, where, precision):
    """Train 3 epochs straight, or stop, rebuild from the checkpoint and train on: the same."""
    config = tiny(make_config, trainer={"epochs": 3, "seed": 7, "batch_size": 128,
                                        "precision": precision},
                  optim={"name": "adam"}, sched=sched, regularization={"dropout": 0.2})
    straight = build_job(config)
    fit(straight)
    per_epoch = straight.state.step // 3

    first = build_job(config)
    if where == "epoch end":
        fit(first, [Saver(tmp_path / "last.pt"), StopAfterFirstEpoch()])
        assert first.state.epoch == 1
    else:
        flag = Interrupt(after_steps=per_epoch + 2)
        with pytest.raises(TrainingInterrupted):
            fit(first, [flag], flag)
        assert (first.state.epoch, first.state.step) == (1, per_epoch + 2)
        save_checkpoint(tmp_path / "last.pt", make_checkpoint(first))
    ckpt = load_checkpoint(tmp_path / "last.pt")  # weights_only: everything is plain data

    resumed = build_job(config)
    restore(resumed, ckpt)
    resumed.state.stop_reason = None
    fit(resumed)

    assert resumed.state.step == straight.state.step
    for a, b in zip(straight.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)
    # metrics.csv of a resumed run reads as that of the uninterrupted one, lr column included
    for got, want in zip(without_timing(resumed.state.history), without_timing(straight.state.history)):
        assert got == want


class StopAfterFirstEpoch(Saver):
    """A run killed after its first checkpoint (stop_reason is set after last.pt is saved)."""

    def __init__(self):
        pass

    def on_epoch_end(self, job, row, improved):
        job.state.stop_reason = "killed"


def test_checkpoint_holds_the_config_and_data_info(make_config, tmp_path):
    from dltrain.schema import load_config

    config = tiny(make_config, trainer={"epochs": 1})
    job = build_job(config)
    fit(job)
    save_checkpoint(tmp_path / "c.pt", make_checkpoint(job))
    ckpt = load_checkpoint(tmp_path / "c.pt")
    assert load_config(ckpt["config"]) == config
    assert ckpt["data_info"]["name"] == "digits" and tuple(ckpt["data_info"]["input_shape"]) == (1, 8, 8)
    assert ckpt["epoch"] == 1 and ckpt["monitor"] == "val_loss" and ckpt["mode"] == "min"


# ---------------------------------------------------------------------------------------------
# the run folder
def test_run_training_fills_the_run_folder(make_config, tmp_path):
    config = tiny(make_config, trainer={"epochs": 2})
    out = io.StringIO()
    summary = run_training(config, tmp_path, Console(file=out, width=120))

    assert summary["status"] == "completed" and summary["epochs_completed"] == 2
    assert 0 <= summary["test_acc"] <= 1 and math.isfinite(summary["test_loss"])
    assert json.loads((tmp_path / runs.SUMMARY).read_text()) == summary
    rows = runs.read_metrics(tmp_path / runs.METRICS)
    assert [r["epoch"] for r in rows] == [1.0, 2.0]
    last = load_checkpoint(tmp_path / runs.CHECKPOINTS / runs.LAST)
    assert last["epoch"] == 2
    best = load_checkpoint(tmp_path / runs.CHECKPOINTS / runs.BEST)
    assert best["epoch"] == summary["best_epoch"]
    assert summary["best_val_loss"] == pytest.approx(min(r["val_loss"] for r in rows))
    assert out.getvalue().startswith("completed after 2 epochs: ")


def test_metrics_csv_round_trips(tmp_path):
    history = [{"epoch": 1, "train_loss": 0.123456789012345, "lr": 1e-3},
               {"epoch": 2, "train_loss": float("nan"), "lr": 5e-4}]
    runs.write_metrics(tmp_path / "m.csv", history)
    back = runs.read_metrics(tmp_path / "m.csv")
    assert back[0] == history[0]  # repr keeps every digit
    assert back[1]["epoch"] == 2 and math.isnan(back[1]["train_loss"]) and back[1]["lr"] == 5e-4


def test_summary_json_writes_null_for_non_finite(tmp_path):
    runs.write_json(tmp_path / "s.json", {"a": float("nan"), "b": float("inf"), "c": 1.5, "d": "x"})
    assert json.loads((tmp_path / "s.json").read_text()) == {"a": None, "b": None, "c": 1.5, "d": "x"}


def test_rich_progress_redraws_on_a_clock_and_reads_the_loss_at_redraws(make_config, monkeypatch):
    """Issue 9: the live bar costs nothing per step - it redraws at most every DRAW_S and reads
    the running loss (a host sync) only at a redraw, log_every steps after the last read."""
    from dltrain.train import progress as progress_module

    clock = iter(i * 0.01 for i in range(10**6))  # 10 ms a step
    monkeypatch.setattr(progress_module.time, "perf_counter", lambda: next(clock))
    bar = progress_module.RichProgress(Console(file=io.StringIO(), force_terminal=True))
    job = build_job(tiny(make_config, trainer={"batch_size": 16, "log_every": 5}))
    reads = []
    redraws = []
    monkeypatch.setattr(bar.progress, "refresh", lambda: redraws.append(1))
    bar.on_epoch_start(job, 200)
    for batch in range(1, 201):
        bar.on_step(job, batch, lambda: reads.append(batch) or {"train_loss": 1.0, "train_acc": 0.5})
    bar.close()
    assert 5 <= len(redraws) <= 10  # 2 s of steps, a redraw every 0.25 s (and one at the start)
    assert 0 < len(reads) <= len(redraws)
