"""``dltrain eval``: the saved model on its test or validation split, in detail, with the same
numbers as the run's own summary.

The command runs in this process, through its entry point (``cli.main``): what it computes and
writes is under test here, not the process (tests/cli runs ``dltrain eval`` as one).
"""

from __future__ import annotations

import math
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from .helpers import EPOCHS, assert_ok, dltrain_here, read_csv, read_json

pytestmark = pytest.mark.slow

DIGITS = [str(i) for i in range(10)]


@dataclass
class Evals:
    test: dict  # eval_test.json of `dltrain eval RUN`
    test_stdout: str
    val: dict  # eval_val.json of `dltrain eval CHECKPOINT --split val`
    val_stdout: str
    regression: dict  # eval_test.json of the data=diabetes run
    regression_summary: dict
    run_val: dict  # eval_val.json of `dltrain eval RUN --split val`, beside eval_test.json


@pytest.fixture(scope="module")
def evals(trained, tmp_path_factory) -> Evals:
    run, regression_dir = trained.dropout.run_dir, trained.regression.run_dir
    cwd = tmp_path_factory.mktemp("eval")
    # a checkpoint on its own, away from its run folder: eval_val.json goes beside checkpoints/
    copy = cwd / "copy" / "checkpoints" / "last.pt"
    copy.parent.mkdir(parents=True)
    shutil.copy(run / "checkpoints" / "last.pt", copy)
    test, val, regression, run_val = (dltrain_here(args, cwd) for args in (
        ["eval", str(run)],
        ["eval", str(copy), "--split", "val"],
        ["eval", str(regression_dir)],
        ["eval", str(run), "--split", "val"],
    ))
    for proc in (test, val, regression, run_val):
        assert_ok(proc)
    return Evals(test=read_json(run / "eval_test.json"), test_stdout=test.stdout,
                 val=read_json(cwd / "copy" / "eval_val.json"), val_stdout=val.stdout,
                 regression=read_json(regression_dir / "eval_test.json"),
                 regression_summary=read_json(regression_dir / "summary.json"),
                 run_val=read_json(run / "eval_val.json"))


def test_eval_of_each_split_has_its_own_file(evals):
    """Issue 7 item 13: `eval RUN --split val` does not overwrite the test split's result."""
    assert "test_acc" in evals.test and "val_acc" not in evals.test
    assert "val_acc" in evals.run_val and "test_acc" not in evals.run_val


def split_sizes(stdout: str) -> dict:
    match = re.search(r"train/val/test: ([\d,]+)/([\d,]+)/([\d,]+)", stdout)
    assert match, stdout
    return dict(zip(("train", "val", "test"), (int(n.replace(",", "")) for n in match.groups())))


def test_eval_matches_the_runs_test_metrics(dropout_run, evals):
    summary = read_json(dropout_run.run_dir / "summary.json")
    assert evals.test["test_acc"] == pytest.approx(summary["test_acc"], abs=1e-9)
    assert evals.test["test_loss"] == pytest.approx(summary["test_loss"], abs=1e-9)
    assert evals.test["epoch"] == summary["best_epoch"]  # the best checkpoint by default
    assert evals.test["checkpoint"].endswith("best.pt")
    assert f"wrote {dropout_run.run_dir / 'eval_test.json'}" in evals.test_stdout


def test_eval_reports_every_digit_class(evals):
    """The class names come from the data set; the numbers are checked against scikit-learn in
    tests/unit/test_evaluate.py."""
    per_class = evals.test["per_class"]
    assert sorted(per_class) == DIGITS == evals.test["class_names"]
    for name, row in per_class.items():
        assert set(row) == {"precision", "recall", "f1", "support"}, name
    assert 0.0 <= evals.test["macro_f1"] <= 1.0


def test_confusion_matrix_covers_the_test_split_and_agrees_with_accuracy(dropout_run, evals):
    """The report's predictions are of the same model on the same split as test_acc."""
    cm = evals.test["confusion_matrix"]
    n_test = split_sizes(dropout_run.stdout)["test"]
    assert len(cm) == 10 and all(len(row) == 10 for row in cm)
    total = sum(map(sum, cm))
    assert total == n_test == evals.test["samples"]
    trace = sum(cm[i][i] for i in range(10))
    assert trace / total == pytest.approx(evals.test["test_acc"], abs=1e-12)


def test_eval_of_a_checkpoint_on_the_val_split(dropout_run, evals):
    val = evals.val
    assert val["checkpoint"].endswith("last.pt")
    assert "test_acc" not in val and "test_loss" not in val
    # the validation numbers of the checkpoint's epoch, as training logged them
    row = read_csv(dropout_run.run_dir / "metrics.csv")[val["epoch"] - 1]
    assert int(row["epoch"]) == val["epoch"] == EPOCHS
    assert val["val_acc"] == pytest.approx(float(row["val_acc"]), abs=1e-9)
    assert val["val_loss"] == pytest.approx(float(row["val_loss"]), abs=1e-9)
    assert val["samples"] == split_sizes(dropout_run.stdout)["val"]
    assert sum(map(sum, val["confusion_matrix"])) == val["samples"]
    assert "val split" in evals.val_stdout
    assert f"wrote {Path(val['checkpoint']).parent.parent / 'eval_val.json'}" in evals.val_stdout


def test_eval_of_a_regression_run(evals):
    result, summary = evals.regression, evals.regression_summary
    for key in ("test_loss", "test_mse", "test_mae", "test_r2"):
        assert isinstance(result.get(key), float) and math.isfinite(result[key]), (key, result)
    for key in ("test_loss", "test_mae", "test_r2"):
        assert result[key] == pytest.approx(summary[key], abs=1e-9), key
    # one target: the mean squared error is at least the squared mean absolute error
    assert result["test_mse"] >= result["test_mae"] ** 2 > 0
    assert "per_class" not in result and "confusion_matrix" not in result
