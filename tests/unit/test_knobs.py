"""The standard training knobs, against hand computations: gradient accumulation, the EMA of
the weights, the gradient norm in the metrics, the finiteness check at log points,
limit_batches and overfit_batches, and an exact resume with each of them on."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn
from unit_support import straight_and_resumed

from dltrain import runs
from dltrain.data.batching import num_batches
from dltrain.train.ema import EMA, ema_factor
from dltrain.train.loop import TrainingDiverged, fit
from dltrain.train.run import build_job, make_checkpoint

TIMING = {"epoch_time_s", "samples_per_s"}


def weights(job):
    return [p.detach().clone() for p in job.model.parameters()]


def rows(history):
    return [{k: v for k, v in row.items() if k not in TIMING} for row in history]


@pytest.mark.parametrize("l1, sched", [(0.0, "none"), (0.01, "onecycle")])
def test_accumulating_two_batches_of_32_is_one_batch_of_64(make_config, l1, sched):
    """Same permutation, so batches 2k and 2k+1 of 32 are batch k of 64; digits' 1257 training
    samples end on an uneven step (a batch of 41 after one of 32: 73 against 64+9)."""
    results = {}
    for batch_size, accumulate in ((64, 1), (32, 2)):
        config = make_config(
            model={"name": "mlp", "hidden_sizes": [16]}, optim={"name": "sgd", "lr": 0.1, "momentum": 0.9},
            sched={"name": sched}, regularization={"l1": l1},
            trainer={"epochs": 2, "batch_size": batch_size, "accumulate": accumulate,
                     "diagnostics": False})
        job = build_job(config)
        fit(job)
        results[accumulate] = job
    one, two = results[1], results[2]
    assert one.state.step == two.state.step == 2 * math.ceil(len(one.data.train) / 64)
    for a, b in zip(weights(one), weights(two)):
        assert torch.allclose(a, b, atol=1e-6, rtol=0)
    # per-step schedules count optimizer steps: the same lrs, onecycle ending where it should
    assert [r["lr"] for r in one.state.history] == pytest.approx([r["lr"] for r in two.state.history])
    assert one.optimizer.param_groups[0]["lr"] == pytest.approx(two.optimizer.param_groups[0]["lr"])


def test_ema_is_the_hand_computed_average(make_config):
    config = make_config(trainer={"epochs": 1, "batch_size": 256, "ema_decay": 0.9,
                                  "diagnostics": False})
    job = build_job(config)
    average = {k: v.clone() for k, v in job.model.state_dict().items()}
    seen = []

    class Watch:  # the weights after every optimizer step, as fit leaves them
        def on_epoch_start(self, job, n):
            pass

        def on_step(self, job, batch, running):
            seen.append({k: v.clone() for k, v in job.model.state_dict().items()})

        def on_epoch_end(self, job, row, improved):
            pass

    fit(job, [Watch()])
    assert len(seen) == num_batches(len(job.data.train), 256) >= 4
    for n, state in enumerate(seen):
        d = min(0.9, (1 + n) / (10 + n))
        assert d == ema_factor(0.9, n)
        average = {k: d * average[k] + (1 - d) * state[k] for k in average}
    got = job.ema.state_dict()
    for k in average:
        assert torch.allclose(got[k], average[k], atol=1e-6), k
    # the model keeps its trained weights; validation saw the average
    assert torch.equal(job.model.state_dict()["1.weight"], seen[-1]["1.weight"])


def test_validation_and_checkpoint_use_the_ema_weights(make_config):
    from dltrain.train.loop import evaluate

    config = make_config(trainer={"epochs": 1, "batch_size": 128, "ema_decay": 0.99,
                                  "diagnostics": False})
    job = build_job(config)
    fit(job)
    val_loss = job.state.history[-1]["val_loss"]
    ckpt = make_checkpoint(job)
    assert {"model", "train_model", "ema_updates"} <= ckpt.keys()
    with job.ema.applied():
        assert evaluate(job, job.data.val, "val")["val_loss"] == pytest.approx(val_loss, rel=1e-6)
        for k, v in job.model.state_dict().items():
            assert torch.equal(ckpt["model"][k], v)
    assert evaluate(job, job.data.val, "val")["val_loss"] != pytest.approx(val_loss, rel=1e-6)


def test_ema_applied_restores_the_trained_weights():
    model = nn.Linear(3, 2)
    ema = EMA(model, 0.5)
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update()
    trained = copy.deepcopy(model.state_dict())
    with ema.applied():
        assert not torch.equal(model.weight, trained["weight"])
    assert all(torch.equal(v, trained[k]) for k, v in model.state_dict().items())


def test_grad_norm_is_the_mean_of_the_measured_steps(make_config):
    """One step an epoch (a batch larger than the set): grad_norm is that step's gradient norm,
    computed here by hand on the initial weights."""
    config = make_config(trainer={"epochs": 1, "batch_size": 4096, "diagnostics": False})
    job = build_job(config)
    model = copy.deepcopy(job.model)
    train = job.data.train
    x = train.transform(train.x) if train.transform else train.x
    nn.CrossEntropyLoss()(model(x), train.y).backward()
    want = torch.sqrt(sum(p.grad.pow(2).sum() for p in model.parameters())).item()
    fit(job)
    assert job.state.history[0]["grad_norm"] == pytest.approx(want, rel=1e-5)


def test_a_non_finite_loss_stops_at_the_next_log_point_naming_its_step(make_config):
    config = make_config(trainer={"epochs": 3, "batch_size": 16, "log_every": 5,
                                  "diagnostics": False})
    job = build_job(config)
    criterion = job.criterion
    calls = []

    def poisoned(out, y):  # the 7th batch's loss is NaN
        calls.append(1)
        loss = criterion(out, y)
        return loss * float("nan") if len(calls) == 7 else loss

    job.criterion = poisoned
    with pytest.raises(TrainingDiverged, match=r"became nan at step 7 \(epoch 1\)"):
        fit(job)
    assert job.state.step == 11  # the log point after step 7: steps 1, 6, 11, ... of the epoch
    assert job.state.epoch == 0


def test_limit_batches_cuts_train_val_and_test(make_config):
    config = make_config(trainer={"epochs": 2, "batch_size": 16, "eval_batch_size": 16,
                                  "limit_batches": 3, "diagnostics": False})
    job = build_job(config)
    seen = []
    criterion = job.eval_criterion
    job.eval_criterion = lambda out, y: (seen.append(len(y)), criterion(out, y))[1]
    fit(job)
    assert job.state.step == 6
    assert seen == [16] * 6  # three val batches an epoch


def test_overfit_batches_trains_and_validates_on_the_same_batches(make_config):
    config = make_config(model={"name": "mlp", "hidden_sizes": [64]}, optim={"name": "adam", "lr": 0.01},
                         trainer={"epochs": 60, "batch_size": 32, "overfit_batches": 2,
                                  "diagnostics": False})
    job = build_job(config)
    fit(job)
    assert job.state.step == 120
    last = job.state.history[-1]
    assert last["train_loss"] < 0.01 and last["val_loss"] < 0.01 and last["val_acc"] == 1.0


@pytest.mark.parametrize("trainer, sched", [
    ({"accumulate": 3}, {"name": "onecycle"}),
    ({"ema_decay": 0.9}, {"name": "none"}),
    ({"limit_batches": 5}, {"name": "cosine", "warmup_steps": 4}),
    ({"diagnostics": True, "log_every": 2}, {"name": "step", "step_size": 1, "warmup_epochs": 1}),
])
def test_resume_mid_epoch_is_exact_with_each_knob(make_config, tmp_path, trainer, sched):
    config = make_config(optim={"name": "adam"}, sched=sched, regularization={"dropout": 0.2},
                         trainer={"epochs": 3, "seed": 7, "batch_size": 64, **trainer})
    straight, resumed = straight_and_resumed(config, lambda steps: steps // 3 + 2, tmp_path)

    assert resumed.state.step == straight.state.step
    for a, b in zip(weights(straight), weights(resumed)):
        assert torch.equal(a, b)
    if straight.ema is not None:
        for k, v in straight.ema.state_dict().items():
            assert torch.equal(v, resumed.ema.state_dict()[k])
    assert rows(resumed.state.history) == rows(straight.state.history)


@pytest.mark.parametrize("preset, overrides", [
    ("fast", []), ("limit", ["trainer.limit_batches=2"]),
    ("overfit", ["trainer.epochs=40", "regularization=dropout"]),
])
def test_debug_presets_fill_the_run_folder(tmp_path, preset, overrides):
    """Each preset trains what it says over the default config, and writes every file; the
    command line still wins over the preset (and regularization stays off under overfit)."""
    import io

    from rich.console import Console

    from dltrain.launch import compose
    from dltrain.train.run import run_training

    config = compose([f"debug={preset}", "trainer.device=cpu", "trainer.progress=none", *overrides])
    summary = run_training(config, tmp_path, Console(file=io.StringIO()), command=["dltrain"])
    history = runs.read_metrics(tmp_path / runs.METRICS)
    steps = {"fast": 1, "limit": 3 * 2, "overfit": 40 * 2}[preset]
    assert summary["status"] == "completed" and summary["steps"] == steps
    for name in ("metrics.csv", "summary.json", "curves.png", "checkpoints/best.pt",
                 "checkpoints/last.pt", "train.log"):
        assert (tmp_path / name).stat().st_size > 0, name
    if preset == "fast":
        assert (tmp_path / "gradflow.png").stat().st_size > 0
        assert (tmp_path / "diagnostics.csv").stat().st_size > 0
    if preset == "overfit":
        assert config.regularization.dropout == 0 and config.regularization.weight_decay == 0
        assert float(history[-1]["val_loss"]) < 0.05 * float(history[0]["val_loss"])
