"""data=npz: kind from x.ndim, task from y's dtype, given or drawn validation and test splits,
and clear errors for files that do not fit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dltrain.data import load_data
from dltrain.errors import UserError
from dltrain.schema import NpzDataConfig


def npz_config(path, **kw) -> NpzDataConfig:
    return NpzDataConfig(name="npz", path=str(path), **kw)


def write(path, **arrays):
    np.savez(path, **arrays)
    return path


RNG = np.random.default_rng(0)


@pytest.mark.parametrize("shape, kind", [((6,), "table"), ((7, 3), "sequence"),
                                         ((2, 5, 5), "image")])
def test_kind_follows_the_number_of_dimensions(tmp_path, shape, kind):
    path = write(tmp_path / "a.npz", x=RNG.normal(size=(60, *shape)), y=np.arange(60) % 3)
    data = load_data(npz_config(path))
    info = data.info
    assert (info.kind, info.input_shape, info.task, info.num_outputs) == (
        kind, shape, "classification", 3)
    assert info.class_names == ("0", "1", "2")
    for _, split in data.splits():
        assert split.x.dtype == torch.float32 and split.x.shape[1:] == shape
        assert split.y.dtype == torch.int64 and split.y.ndim == 1


def test_float_targets_are_a_regression_with_one_output_per_column(tmp_path):
    x = RNG.normal(size=(50, 4))
    path = write(tmp_path / "r.npz", x=x, y=x[:, :2] * 10 + 3)
    data = load_data(npz_config(path))
    assert (data.info.task, data.info.num_outputs) == ("regression", 2)
    assert data.train.y.shape[1:] == (2,)
    assert abs(data.train.y.mean().item()) < 1e-5 and len(data.info.target_std) == 2
    path = write(tmp_path / "r1.npz", x=x, y=x[:, 0].astype(np.float32))
    assert load_data(npz_config(path)).train.y.shape[1:] == (1,)


def test_text_labels_and_the_task_override(tmp_path):
    x = RNG.normal(size=(40, 3))
    path = write(tmp_path / "t.npz", x=x, y=np.array(["cat", "dog"] * 20))
    assert load_data(npz_config(path)).info.class_names == ("cat", "dog")
    path = write(tmp_path / "i.npz", x=x, y=np.arange(40))
    assert load_data(npz_config(path, task="regression")).info.task == "regression"


def test_given_validation_and_test_arrays_are_the_splits(tmp_path):
    x, x_val, x_test = RNG.normal(size=(30, 4)), RNG.normal(size=(8, 4)), RNG.normal(size=(9, 4))
    path = write(tmp_path / "s.npz", x=x, y=np.arange(30) % 2, x_val=x_val,
                 y_val=np.arange(8) % 2, x_test=x_test, y_test=np.arange(9) % 2)
    data = load_data(npz_config(path))
    assert (len(data.train), len(data.val), len(data.test)) == (30, 8, 9)
    # standardized with the statistics of x alone
    mean, std = x.mean(0), x.std(0)
    np.testing.assert_allclose(data.val.x.numpy(), (x_val - mean) / std, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(data.test.x.numpy(), (x_test - mean) / std, rtol=1e-4, atol=1e-5)


def test_a_missing_test_split_is_drawn_from_x(tmp_path):
    path = write(tmp_path / "s.npz", x=RNG.normal(size=(100, 4)), y=np.arange(100) % 2,
                 x_val=RNG.normal(size=(7, 4)), y_val=np.arange(7) % 2)
    data = load_data(npz_config(path, test_fraction=0.2))
    assert (len(data.train), len(data.val), len(data.test)) == (80, 7, 20)


def test_images_are_standardized_per_channel_on_train(tmp_path):
    x = RNG.integers(0, 255, size=(40, 3, 4, 4)).astype(np.uint8)
    x[:, 2] //= 4  # a darker channel
    path = write(tmp_path / "img.npz", x=x, y=np.arange(40) % 4)
    data = load_data(npz_config(path))
    train = data.train.x.double()
    np.testing.assert_allclose(train.mean(dim=(0, 2, 3)).numpy(), 0, atol=1e-5)
    np.testing.assert_allclose(train.std(dim=(0, 2, 3), unbiased=False).numpy(), 1, atol=1e-4)


# ---------------------------------------------------------------------------------------------
# bad input
def error_of(path, **kw) -> str:
    with pytest.raises(UserError) as e:
        load_data(npz_config(path, **kw))
    assert "\n" not in str(e.value)
    return str(e.value)


def test_missing_file(tmp_path):
    assert "no such file" in error_of(tmp_path / "none.npz")


def test_not_an_npz_file(tmp_path):
    (tmp_path / "bad.npz").write_text("hello")
    assert "cannot read it as a NumPy .npz file" in error_of(tmp_path / "bad.npz")


@pytest.mark.parametrize("arrays, missing", [({"x": np.zeros((5, 2))}, "'y'"),
                                             ({"y": np.zeros(5), "z": np.zeros(5)}, "'x'")])
def test_missing_arrays_are_named_with_those_present(tmp_path, arrays, missing):
    message = error_of(write(tmp_path / "m.npz", **arrays))
    assert f"no array {missing}" in message and "it has:" in message


def test_mismatched_lengths(tmp_path):
    message = error_of(write(tmp_path / "m.npz", x=np.zeros((10, 2)), y=np.zeros(9)))
    assert "x has 10 rows but y has 9" in message


def test_half_a_split(tmp_path):
    message = error_of(write(tmp_path / "h.npz", x=np.zeros((10, 2)), y=np.zeros(10),
                             x_val=np.zeros((3, 2))))
    assert "has x_val but no y_val" in message


def test_split_with_other_sample_shape(tmp_path):
    message = error_of(write(tmp_path / "h.npz", x=np.zeros((10, 2)), y=np.arange(10) % 2,
                             x_test=np.zeros((3, 5)), y_test=np.arange(3) % 2))
    assert "x_test has samples of shape (5,)" in message


def test_wrong_number_of_dimensions(tmp_path):
    message = error_of(write(tmp_path / "d.npz", x=np.zeros(10), y=np.zeros(10)))
    assert "x has shape (10,)" in message


def test_object_arrays_are_refused(tmp_path):
    np.savez(tmp_path / "o.npz", x=np.array([{"a": 1}] * 4, dtype=object), y=np.zeros(4))
    assert "cannot read" in error_of(tmp_path / "o.npz")
