"""Losses by task: auto picks the natural one, settings reach torch, a misfit is the user's error."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dltrain.errors import UserError
from dltrain.losses import build_loss
from dltrain.schema import LOSSES_FOR_TASK, CrossEntropyConfig, HuberConfig, LossConfig


@pytest.mark.parametrize("task, cls", [("classification", nn.CrossEntropyLoss),
                                       ("regression", nn.MSELoss)])
def test_auto_picks_the_task_loss(task, cls):
    assert type(build_loss(LossConfig(name="auto"), task)) is cls


def test_auto_builds_the_task_loss_with_that_loss_defaults():
    """loss=auto means "the task's loss as its own config would build it"."""
    auto = build_loss(LossConfig(name="auto"), "classification")
    named = build_loss(CrossEntropyConfig(), "classification")
    assert auto.label_smoothing == named.label_smoothing == CrossEntropyConfig().label_smoothing
    logits, y = torch.randn(6, 3), torch.tensor([0, 1, 2, 0, 1, 2])
    assert torch.equal(auto(logits, y), named(logits, y))


@pytest.mark.parametrize("cfg, cls", [(LossConfig(name="mse"), nn.MSELoss),
                                      (HuberConfig(), nn.HuberLoss),
                                      (LossConfig(name="l1"), nn.L1Loss),
                                      (CrossEntropyConfig(), nn.CrossEntropyLoss)])
def test_losses_by_name(cfg, cls):
    task = "classification" if cls is nn.CrossEntropyLoss else "regression"
    assert type(build_loss(cfg, task)) is cls


def test_label_smoothing_reaches_torch():
    loss = build_loss(CrossEntropyConfig(label_smoothing=0.2), "classification")
    assert isinstance(loss, nn.CrossEntropyLoss)
    assert loss.label_smoothing == 0.2


def test_huber_delta_reaches_torch():
    loss = build_loss(HuberConfig(delta=0.5), "regression")
    assert isinstance(loss, nn.HuberLoss)
    assert loss.delta == 0.5


@pytest.mark.parametrize(
    "cfg, task",
    [(CrossEntropyConfig(), "regression"), (LossConfig(name="mse"), "classification"),
     (HuberConfig(), "classification"), (LossConfig(name="l1"), "classification")],
)
def test_a_loss_that_does_not_fit_the_task_is_refused(cfg, task):
    with pytest.raises(UserError) as e:
        build_loss(cfg, task)
    message = str(e.value)
    assert cfg.name in message and task in message
    for allowed in LOSSES_FOR_TASK[task]:
        assert allowed in message


def test_misfit_loss_fails_at_validation(make_config):
    with pytest.raises(UserError, match="loss=mse"):
        make_config(loss={"name": "mse"})  # digits is a classification set
    with pytest.raises(UserError, match="loss=cross_entropy"):
        make_config(data={"name": "diabetes"}, loss={"name": "cross_entropy"})


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_val_and_test_loss_are_plain_cross_entropy_of_the_best_model(make_config, tmp_path,
                                                                       smoothing):
    """Issue 7 item 1: with or without label smoothing, the reported val_loss (the monitor) and
    test_loss are F.cross_entropy of the saved best model's outputs, so runs trained with
    different smoothing compare."""
    import io

    import torch.nn.functional as F
    from rich.console import Console

    from dltrain import runs
    from dltrain.checkpoint import load_checkpoint
    from dltrain.train.run import build_job, run_training

    config = make_config(loss={"name": "cross_entropy", "label_smoothing": smoothing},
                         trainer={"epochs": 2, "batch_size": 128})
    summary = run_training(config, tmp_path, Console(file=io.StringIO()))
    job = build_job(config)
    best = load_checkpoint(tmp_path / runs.CHECKPOINTS / runs.BEST)
    job.model.load_state_dict(best["model"])
    job.model.eval()
    with torch.no_grad():
        for split, reported in ((job.data.val, best["history"][-1]["val_loss"]),
                                (job.data.test, summary["test_loss"])):
            want = F.cross_entropy(job.model(split.x), split.y).item()
            assert reported == pytest.approx(want, rel=1e-5)
    assert job.criterion.label_smoothing == smoothing  # training still uses the smoothing


def test_default_cross_entropy_is_unsmoothed():
    """Issue 7 item 1: loss=auto is plain cross-entropy, the loss other tools report."""
    assert build_loss(LossConfig(name="auto"), "classification").label_smoothing == 0.0
