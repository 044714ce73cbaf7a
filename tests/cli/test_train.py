"""``dltrain`` trains and fills its run folder: Hydra's record, metrics, checkpoints, summary.

Two training subprocesses in all (the ``default_run`` and ``regression_run`` fixtures); each
test below inspects one of them.
"""

from __future__ import annotations

import math
import re

import pytest
import yaml

from .helpers import DEFAULT_ARGS

pytestmark = pytest.mark.slow

# 64 pixels → 32 → 10 classes, weights and biases
DIGITS_MLP32_PARAMETERS = 64 * 32 + 32 + 32 * 10 + 10
# 10 features → 32 → 1 target
DIABETES_MLP32_PARAMETERS = 10 * 32 + 32 + 32 * 1 + 1

ANSI_ESCAPE = re.compile(r"\x1b\[")


def floats(rows, column):
    return [float(row[column]) for row in rows]


# ---------------------------------------------------------------------------------------------
# the run folder
def test_run_folder_holds_hydra_record_metrics_checkpoints_and_summary(default_run):
    run = default_run.run_dir
    for name in (".hydra/config.yaml", ".hydra/overrides.yaml", ".hydra/hydra.yaml",
                 "checkpoints/last.pt", "checkpoints/best.pt", "metrics.csv", "summary.json"):
        assert (run / name).is_file(), f"{name} missing from the run folder"
    # hydra.run.dir was honoured: nothing else appeared in the working directory
    assert sorted(p.name for p in default_run.cwd.iterdir()) == ["run"]


def test_hydra_record_holds_the_composed_config_and_the_overrides(default_run):
    hydra_dir = default_run.run_dir / ".hydra"
    overrides = yaml.safe_load((hydra_dir / "overrides.yaml").read_text())
    assert overrides == DEFAULT_ARGS

    config = yaml.safe_load((hydra_dir / "config.yaml").read_text())
    assert "hydra" not in config
    assert config["trainer"]["epochs"] == 2
    assert config["model"]["name"] == "mlp"
    assert config["model"]["hidden_sizes"] == [32]
    assert config["optim"]["name"] == "adam"
    assert config["data"]["name"] == "digits"

    hydra = yaml.safe_load((hydra_dir / "hydra.yaml").read_text())["hydra"]
    assert hydra["run"]["dir"] == str(default_run.run_dir)


def test_metrics_csv_has_one_row_per_epoch_with_the_documented_columns(default_run):
    rows = default_run.metrics
    assert [int(row["epoch"]) for row in rows] == [1, 2]
    required = {"epoch", "train_loss", "val_loss", "val_acc", "lr", "epoch_time_s", "samples_per_s"}
    assert required <= set(rows[0]), f"missing columns: {required - set(rows[0])}"
    for row in rows:
        for column, value in row.items():
            assert math.isfinite(float(value)), f"{column}={value!r} in epoch {row['epoch']}"
    assert all(0 <= acc <= 1 for acc in floats(rows, "val_acc"))
    assert all(loss > 0 for loss in floats(rows, "train_loss") + floats(rows, "val_loss"))
    assert floats(rows, "lr") == [pytest.approx(1e-3)] * 2  # adam's default, no schedule
    assert all(t > 0 for t in floats(rows, "epoch_time_s"))
    assert all(s > 0 for s in floats(rows, "samples_per_s"))


def test_summary_reports_test_metrics_best_epoch_and_run_facts(default_run):
    import torch

    summary = default_run.summary
    rows = default_run.metrics
    assert summary["status"] == "completed"
    assert summary["test_loss"] > 0 and math.isfinite(summary["test_loss"])
    assert 0 <= summary["test_acc"] <= 1
    # the monitored metric defaults to val_loss; best and best_epoch come from metrics.csv
    assert summary["monitor"] == "val_loss"
    val_losses = floats(rows, "val_loss")
    assert summary["best_val_loss"] == pytest.approx(min(val_losses))
    assert summary["best_epoch"] == 1 + val_losses.index(min(val_losses))
    assert summary["epochs_completed"] == 2
    assert summary["parameters"] == DIGITS_MLP32_PARAMETERS
    assert summary["seed"] == 0
    if not torch.cuda.is_available() and not torch.backends.mps.is_available():
        assert summary["device"] == "cpu"
    else:
        assert re.fullmatch(r"cpu|mps|cuda(:\d+)?", summary["device"])
    assert summary["train_time_s"] > 0
    assert summary["mean_samples_per_s"] == pytest.approx(
        sum(floats(rows, "samples_per_s")) / len(rows))


@pytest.mark.parametrize("name", ["last.pt", "best.pt"])
def test_checkpoints_load_as_plain_data_and_hold_the_training_state(default_run, name):
    import torch

    ckpt = torch.load(default_run.run_dir / "checkpoints" / name, map_location="cpu",
                      weights_only=True)
    for key in ("model", "optimizer", "scheduler", "epoch", "step", "rng", "config", "versions"):
        assert key in ckpt, f"{name} lacks {key!r}"
    summary = default_run.summary
    expected_epoch = 2 if name == "last.pt" else summary["best_epoch"]
    assert ckpt["epoch"] == expected_epoch
    if name == "last.pt":
        assert ckpt["step"] == summary["steps"] > 0
    assert sum(t.numel() for t in ckpt["model"].values()) == DIGITS_MLP32_PARAMETERS
    assert {"state", "param_groups"} <= set(ckpt["optimizer"])
    assert ckpt["config"]["trainer"]["epochs"] == 2
    assert ckpt["config"]["model"]["hidden_sizes"] == [32]
    assert ckpt["versions"]["torch"] == str(torch.__version__)
    assert ckpt["rng"], "rng state is empty"


# ---------------------------------------------------------------------------------------------
# progress when stdout is not a terminal
def test_progress_on_a_pipe_is_one_plain_line_per_epoch(default_run):
    out = default_run.proc.stdout
    epoch_lines = [line for line in out.splitlines() if re.match(r"epoch \d+/\d+\b", line)]
    assert len(epoch_lines) == 2, out
    assert epoch_lines[0].startswith("epoch 1/2 ")
    assert epoch_lines[1].startswith("epoch 2/2 ")
    assert all("val_loss" in line for line in epoch_lines)
    for stream in (default_run.proc.stdout, default_run.proc.stderr):
        assert not ANSI_ESCAPE.search(stream), "ANSI escape codes written to a pipe"
        assert "\r" not in stream, "a live display redrew lines on a pipe"


# ---------------------------------------------------------------------------------------------
# regression
def test_regression_run_reports_mae_and_r2(regression_run):
    rows = regression_run.metrics
    assert [int(row["epoch"]) for row in rows] == [1, 2]
    assert {"val_loss", "val_mae", "val_r2"} <= set(rows[0])
    assert "val_acc" not in rows[0], "accuracy makes no sense for a regression task"
    assert all(mae >= 0 for mae in floats(rows, "val_mae"))
    assert all(r2 <= 1 for r2 in floats(rows, "val_r2"))

    summary = regression_run.summary
    assert summary["status"] == "completed"
    assert summary["task"] == "regression"
    assert summary["parameters"] == DIABETES_MLP32_PARAMETERS
    for key in ("test_loss", "test_mae", "test_r2"):
        assert isinstance(summary[key], float) and math.isfinite(summary[key]), key
    assert summary["test_mae"] >= 0 and summary["test_r2"] <= 1
    assert "test_acc" not in summary

    config = yaml.safe_load((regression_run.run_dir / ".hydra" / "config.yaml").read_text())
    assert config["loss"]["name"] == "huber"
