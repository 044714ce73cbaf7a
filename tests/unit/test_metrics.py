"""MetricSums against numpy and scikit-learn, computed over the whole set at once."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, mean_absolute_error, r2_score

from dltrain.data.base import DataInfo
from dltrain.train.metrics import MetricSums

N, BATCH = 53, 10  # the last batch is smaller: sums must weight batches by their size
CPU = torch.device("cpu")


def batches(*arrays):
    for start in range(0, N, BATCH):
        yield tuple(torch.from_numpy(a[start:start + BATCH]) for a in arrays)


def test_classification_accuracy_and_loss():
    rng = np.random.default_rng(0)
    k = 5
    logits = rng.normal(size=(N, k)).astype(np.float32)
    y = rng.integers(0, k, size=N)
    info = DataInfo(name="c", kind="table", input_shape=(3,), task="classification", num_outputs=k)

    sums = MetricSums(info, CPU)
    for out, target in batches(logits, y):
        sums.add(torch.nn.functional.cross_entropy(out, target), out, target)
    got = sums.compute("val")

    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    want_loss = -logp[np.arange(N), y].mean()
    assert set(got) == {"val_loss", "val_acc"}
    assert got["val_acc"] == pytest.approx(accuracy_score(y, logits.argmax(axis=1)), abs=1e-5)
    assert got["val_loss"] == pytest.approx(want_loss, abs=1e-5)
    assert sums.running()["train_loss"] == pytest.approx(want_loss, abs=1e-5)
    assert sums.n == N


@pytest.mark.parametrize("k, mean, std", [(2, (10.0, -3.0), (2.0, 0.5)), (1, (), ())])
def test_regression_mae_in_original_units_and_r2(k, mean, std):
    rng = np.random.default_rng(1)
    y = rng.normal(size=(N, k)).astype(np.float32)  # standardized targets, as training sees them
    pred = (0.7 * y + rng.normal(scale=0.5, size=(N, k))).astype(np.float32)
    info = DataInfo(name="r", kind="table", input_shape=(3,), task="regression", num_outputs=k,
                    target_mean=mean, target_std=std)

    sums = MetricSums(info, CPU)
    for out, target in batches(pred, y):
        sums.add(torch.nn.functional.mse_loss(out, target), out, target)
    got = sums.compute("test")

    scale = np.array(std) if std else np.ones(k)
    shift = np.array(mean) if mean else np.zeros(k)
    y_orig, pred_orig = y * scale + shift, pred * scale + shift
    assert set(got) == {"test_loss", "test_mae", "test_r2"}
    assert got["test_loss"] == pytest.approx(((pred - y) ** 2).mean(), abs=1e-5)
    assert got["test_mae"] == pytest.approx(mean_absolute_error(y_orig, pred_orig), abs=1e-5)
    assert got["test_r2"] == pytest.approx(r2_score(y_orig, pred_orig), abs=1e-5)


def test_r2_of_perfect_and_of_mean_predictions():
    rng = np.random.default_rng(2)
    y = rng.normal(size=(N, 1)).astype(np.float32)
    info = DataInfo(name="r", kind="table", input_shape=(3,), task="regression", num_outputs=1)
    for pred, want in ((y.copy(), 1.0), (np.full_like(y, y.mean()), 0.0)):
        sums = MetricSums(info, CPU)
        for out, target in batches(pred, y):
            sums.add(torch.zeros(()), out, target)
        assert sums.compute("val")["val_r2"] == pytest.approx(want, abs=1e-5)
