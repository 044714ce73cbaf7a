"""The scikit-learn sets: shapes, disjoint fixed splits, train-only standardization, stratification."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import datasets as skd

from dltrain.data import DATASETS, load_data
from dltrain.data.prepare import split_indices
from dltrain.errors import UserError
from dltrain.schema import DataConfig


@pytest.fixture(scope="module")
def digits():
    return load_data(DataConfig(name="digits"))


@pytest.fixture(scope="module")
def diabetes():
    return load_data(DataConfig(name="diabetes"))


def test_sklearn_sets_are_registered():
    assert {"diabetes", "digits"} <= set(DATASETS.names())


def test_digits_shapes_and_info(digits):
    info = digits.info
    assert (info.kind, info.input_shape, info.task, info.num_outputs) == (
        "image", (1, 8, 8), "classification", 10)
    assert info.class_names == tuple(str(i) for i in range(10))
    total = 0
    for _, split in digits.splits():
        assert split.x.shape[1:] == (1, 8, 8) and split.x.dtype.is_floating_point
        assert split.y.shape == (len(split),) and split.y.dtype.is_floating_point is False
        assert set(split.y.unique().tolist()) == set(range(10))
        total += len(split)
    assert total == len(skd.load_digits().target)


def test_diabetes_shapes_and_info(diabetes):
    info = diabetes.info
    assert (info.kind, info.input_shape, info.task, info.num_outputs) == (
        "table", (10,), "regression", 1)
    for _, split in diabetes.splits():
        assert split.x.shape == (len(split), 10)
        assert split.y.shape == (len(split), 1) and split.y.dtype.is_floating_point
    assert sum(len(s) for _, s in diabetes.splits()) == 442


@pytest.mark.parametrize("name, n", [("digits", 1797), ("diabetes", 442)])
def test_split_sizes_follow_the_fractions(name, n):
    data = load_data(DataConfig(name=name, val_fraction=0.2, test_fraction=0.1))
    # per-class rounding may move a few samples (at most half a sample per class)
    slack = 1 + (10 / 2 if name == "digits" else 0)
    assert abs(len(data.test) - 0.1 * n) <= slack
    assert abs(len(data.val) - 0.2 * n) <= slack
    assert len(data.train) + len(data.val) + len(data.test) == n


@pytest.mark.parametrize("stratify", [False, True])
def test_split_indices_are_disjoint_and_complete(stratify):
    y = np.repeat(np.arange(4), 25)
    train, val, test = split_indices(y, DataConfig(name="digits"), stratify=stratify)
    joined = np.concatenate([train, val, test])
    assert len(joined) == len(set(joined.tolist())) == 100
    assert sorted(joined.tolist()) == list(range(100))


def test_split_is_fixed_by_split_seed():
    y = np.arange(200) % 5
    a = split_indices(y, DataConfig(name="digits", split_seed=0), stratify=True)
    b = split_indices(y, DataConfig(name="digits", split_seed=0), stratify=True)
    c = split_indices(y, DataConfig(name="digits", split_seed=1), stratify=True)
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    assert not np.array_equal(a[2], c[2])


def expected_splits(x, y, cfg, stratify, axes, standardize_y, rows="train"):
    """The splits computed here by hand: standardize with the statistics of ``rows``."""
    parts = split_indices(y, cfg, stratify=stratify)
    fit = parts[0] if rows == "train" else np.arange(len(y))
    mean = x[fit].mean(axis=axes, keepdims=True)
    std = x[fit].std(axis=axes, keepdims=True)
    std[std == 0] = 1
    xs = (x - mean) / std
    if standardize_y:
        y = (y - y[parts[0]].mean(axis=0)) / y[parts[0]].std(axis=0)
    return [(xs[ix], y[ix]) for ix in parts]


def matches(data, want, tol) -> bool:
    return all(np.allclose(split.x.numpy(), wx, rtol=tol, atol=tol)
               for (_, split), (wx, _) in zip(data.splits(), want))


# digits may be standardized per pixel position or per channel: either is sound, as long as the
# statistics come from the training rows alone
DIGIT_AXES = {"position": (0,), "channel": (0, 2, 3)}


def test_digits_standardized_with_training_statistics_only(digits):
    bunch = skd.load_digits()
    x = bunch.images.astype(np.float32)[:, None]
    cfg = DataConfig(name="digits")
    fits = {per: matches(digits, expected_splits(x, bunch.target, cfg, True, axes, False), 1e-5)
            for per, axes in DIGIT_AXES.items()}
    assert any(fits.values()), "the splits are not the raw images standardized on train"
    for per, axes in DIGIT_AXES.items():
        everything = expected_splits(x, bunch.target, cfg, True, axes, False, rows="all")
        assert not matches(digits, everything, 1e-5), f"{per} statistics of all rows were used"
    want = expected_splits(x, bunch.target, cfg, True, (0,), False)
    for (name, split), (_, wy) in zip(digits.splits(), want):
        np.testing.assert_array_equal(split.y.numpy(), wy, err_msg=name)

    train_x = digits.train.x.numpy().astype(np.float64)
    assert abs(train_x.mean()) < 1e-5
    if fits["channel"]:
        assert train_x.std() == pytest.approx(1, abs=1e-4)
    else:
        np.testing.assert_allclose(train_x.mean(axis=0), 0, atol=1e-5)


def test_diabetes_standardized_with_training_statistics_only(diabetes):
    bunch = skd.load_diabetes(scaled=False)
    x, y = bunch.data.astype(np.float32), bunch.target.astype(np.float32)[:, None]
    cfg = DataConfig(name="diabetes")
    want = expected_splits(x, y, cfg, False, (0,), True)
    for (name, split), (wx, wy) in zip(diabetes.splits(), want):
        np.testing.assert_allclose(split.x.numpy(), wx, rtol=1e-4, atol=1e-4, err_msg=name)
        np.testing.assert_allclose(split.y.numpy(), wy, rtol=1e-4, atol=1e-4, err_msg=name)

    train_x = diabetes.train.x.numpy().astype(np.float64)
    np.testing.assert_allclose(train_x.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(train_x.std(axis=0), 1, atol=1e-4)
    # statistics of all rows would have given other numbers: the test above can tell them apart
    assert not np.allclose(np.concatenate([s.x.numpy() for _, s in diabetes.splits()]).mean(0), 0,
                           atol=1e-3)

    # targets: standardized on train, and info undoes it back to the original units
    train_idx = split_indices(y, cfg, stratify=False)[0]
    info = diabetes.info
    np.testing.assert_allclose(info.target_mean, y[train_idx].mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(info.target_std, y[train_idx].std(axis=0), rtol=1e-5)
    restored = diabetes.train.y.numpy() * np.array(info.target_std) + np.array(info.target_mean)
    np.testing.assert_allclose(restored, y[train_idx], rtol=1e-4)


def test_digits_classes_are_stratified(digits):
    y_all = skd.load_digits().target
    counts = np.bincount(y_all, minlength=10)
    for name, split in digits.splits():
        got = np.bincount(split.y.numpy(), minlength=10)
        share = len(split) / len(y_all)
        # each class holds its overall share of the split, up to rounding
        assert np.all(np.abs(got - share * counts) <= 1.5), (name, got, share * counts)


def test_task_mismatch_and_unknown_set_are_user_errors():
    with pytest.raises(UserError, match="regression"):
        load_data(DataConfig(name="digits", task="regression"))
    with pytest.raises(UserError, match="digits"):
        load_data(DataConfig(name="digts"))
