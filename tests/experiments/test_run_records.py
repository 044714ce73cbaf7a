"""What every run leaves besides metrics.csv: curves.png, run.yaml and, with
``logger=tensorboard``, TensorBoard event files."""

from __future__ import annotations

import pytest

from .helpers import EPOCHS, EXTENDED, assert_png, read_csv, read_yaml

pytestmark = pytest.mark.slow


def test_every_run_draws_its_curves(trained):
    for run in (trained.dropout, trained.straight, trained.regression):
        assert_png(run.run_dir / "curves.png")


def test_run_record_says_how_the_run_came_to_be(dropout_run):
    record = read_yaml(dropout_run.run_dir / "run.yaml")
    assert {"seed", "command", "versions", "device", "git"} <= set(record)
    assert record["seed"] == 0
    assert record["device"] == "cpu"
    assert record["command"].startswith("dltrain ")
    assert "regularization.dropout=0.2" in record["command"]
    assert f"trainer.epochs={EPOCHS}" in record["command"]
    assert set(record["versions"]) >= {"dltrain", "torch", "python"}
    assert all(isinstance(v, str) and v for v in record["versions"].values())
    # the key is always there; null outside a git checkout (the test's cwd is a temp folder)
    git = record["git"]
    assert git is None or set(git) == {"commit", "dirty"}


def test_tensorboard_logger_writes_the_epoch_scalars(trained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = trained.straight.run_dir
    folder = run / "tensorboard"
    assert list(folder.glob("events.out.tfevents.*")), f"no event files in {folder}"
    events = EventAccumulator(str(folder))
    events.Reload()
    metrics = read_csv(run / "metrics.csv")
    for tag, column in (("loss/train", "train_loss"), ("loss/val", "val_loss"),
                        ("acc/val", "val_acc"), ("lr", "lr")):
        scalars = events.Scalars(tag)
        assert [s.step for s in scalars] == list(range(1, EXTENDED + 1)), tag
        for scalar, row in zip(scalars, metrics):
            assert scalar.value == pytest.approx(float(row[column]), rel=1e-6), tag


def test_csv_logger_writes_no_tensorboard_files(dropout_run):
    assert (dropout_run.run_dir / "metrics.csv").is_file()
    assert not (dropout_run.run_dir / "tensorboard").exists()
