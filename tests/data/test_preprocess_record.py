"""Every data source records how a raw input becomes the model's input
(``DataInfo.preprocess``), and the record is right: applying its ``scale`` to the raw data gives
the split the model trained on, a CSV's ``table`` lists its columns and categories, an image
set's ``image`` its size and channels. No training: the loaders only."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from dltrain.data import load_data
from dltrain.data.base import Split, StreamSplit
from dltrain.data.csv_file import classes, features, read_table
from dltrain.data.prepare import split_indices
from dltrain.data.sequences import adding_problem, sine_waves
from dltrain.data.sklearn_sets import _diabetes, _digits
from dltrain.data.synthetic import prototypes_and_noise
from dltrain.data.transforms import NormalizeImages

from data_support import config
from test_end_to_end import CASES


def loaded(case: str, tmp_path: Path):
    data, _ = CASES[case](tmp_path)
    cfg = config(data).data
    return cfg, load_data(cfg)


def scaled(raw: np.ndarray, scale: dict) -> np.ndarray:
    """What the record says the model sees: ``(raw - mean) / std``, broadcast per input."""
    mean = np.asarray(scale["mean"], dtype=np.float32)
    std = np.asarray(scale["std"], dtype=np.float32)
    return (np.asarray(raw, dtype=np.float32) - mean) / std


def assert_splits_are_scaled_raw(data, raw_x: np.ndarray, y: np.ndarray, cfg, stratify: bool):
    """Each split's x is the record's scaling of the raw inputs the split holds."""
    scale = data.info.preprocess.get("scale")
    for part, (name, split) in zip(split_indices(y, cfg, stratify), data.splits()):
        expected = raw_x[part] if scale is None else scaled(raw_x[part], scale)
        np.testing.assert_allclose(split.x.numpy(), expected, rtol=1e-5, atol=1e-5,
                                   err_msg=f"{name} split")


def assert_images_are_scaled_raw(data) -> None:
    """Image splits hold raw uint8 images and normalize them batch by batch: the record's
    scaling of the raw images equals that normalization."""
    scale = data.info.preprocess["scale"]
    for name, split in data.splits():
        if isinstance(split, StreamSplit):
            raw = torch.stack([split.dataset[i][0] for i in range(min(len(split), 4))])
        else:
            assert isinstance(split, Split)
            raw = split.x[:16]
        assert raw.dtype == torch.uint8, "image splits keep the raw grey levels"
        transform = split.transform
        if transform.augment is not None:  # the training split of cifar10 with data.augment
            transform = NormalizeImages(transform.mean, transform.std)
        np.testing.assert_allclose(transform(raw).numpy(), scaled(raw.numpy(), scale),
                                   rtol=1e-5, atol=1e-5, err_msg=f"{name} split")


def assert_versioned(data) -> None:
    preprocess = data.info.preprocess
    assert preprocess["version"] == 1
    assert set(preprocess) <= {"version", "scale", "image", "table"}
    if "scale" in preprocess:  # broadcastable to one input
        shape = data.info.input_shape
        np.broadcast_shapes(np.shape(preprocess["scale"]["mean"]), shape)
        assert np.shape(preprocess["scale"]["mean"]) == np.shape(preprocess["scale"]["std"])


def test_digits(tmp_path):
    cfg, data = loaded("digits", tmp_path)
    assert_versioned(data)
    images, y = _digits()
    assert "image" not in data.info.preprocess  # grey levels 0-16 in a CSV, not image files
    assert_splits_are_scaled_raw(data, images[:, None], y, cfg, stratify=True)


def test_diabetes(tmp_path):
    cfg, data = loaded("diabetes", tmp_path)
    assert_versioned(data)
    x, y = _diabetes()
    assert_splits_are_scaled_raw(data, x, y[:, None], cfg, stratify=False)


@pytest.mark.parametrize("shape", [[6], [5, 3], [2, 4, 4]], ids=["table", "sequence", "image"])
def test_synthetic(tmp_path, shape):
    data_cfg = {"name": "synthetic", "shape": shape, "num_samples": 60}
    cfg = config(data_cfg).data
    data = load_data(cfg)
    assert_versioned(data)
    x, y = prototypes_and_noise(cfg)
    assert_splits_are_scaled_raw(data, x, y, cfg, stratify=True)


@pytest.mark.parametrize("case, generate", [("sine", sine_waves), ("adding", adding_problem)])
def test_sequences_are_read_as_they_are(tmp_path, case, generate):
    cfg, data = loaded(case, tmp_path)
    assert_versioned(data)
    assert "scale" not in data.info.preprocess
    x, y = generate(cfg)
    assert_splits_are_scaled_raw(data, x, y, cfg, stratify=False)


@pytest.mark.parametrize("case, target, columns", [
    ("csv", "label", [{"name": "height", "categories": None},
                      {"name": "colour", "categories": ["blue", "green", "red"]},
                      {"name": "weight", "categories": None}]),
    ("csv_regression", "price", [{"name": "a", "categories": None},
                                 {"name": "kind", "categories": ["x", "y", "z"]}]),
])
def test_csv_records_its_columns_and_scale(tmp_path, case, target, columns):
    cfg, data = loaded(case, tmp_path)
    assert_versioned(data)
    assert data.info.preprocess["table"] == {"columns": columns, "target": target}
    scale = data.info.preprocess["scale"]
    one_hot = [i for i, c in enumerate(columns) if c["categories"]]
    first = one_hot[0]
    width = len(columns[first]["categories"])
    assert scale["mean"][first:first + width] == [0.0] * width, "one-hot columns are not standardized"
    assert scale["std"][first:first + width] == [1.0] * width
    table = read_table(Path(cfg.path))
    x, _, _ = features(table, target)
    column = next(c for c in table.columns if c.name == target)
    if data.info.task == "classification":
        y, _ = classes(column)
    else:
        y = np.array([float(v) for v in column.values], dtype=np.float32)[:, None]
    assert_splits_are_scaled_raw(data, x, y, cfg, stratify=data.info.task == "classification")


def test_npz(tmp_path):
    cfg, data = loaded("npz", tmp_path)
    assert_versioned(data)
    with np.load(cfg.path) as arrays:
        x, y = arrays["x"].astype(np.float32), arrays["y"].astype(np.float32)
    assert_splits_are_scaled_raw(data, x, y[:, None], cfg, stratify=False)


@pytest.mark.parametrize("case", ["image_folder", "image_folder_streamed"])
def test_image_folder(tmp_path, case):
    cfg, data = loaded(case, tmp_path)
    assert_versioned(data)
    assert data.info.preprocess["image"] == {"size": 8, "channels": 3, "resize": "fit"}
    assert data.info.input_shape == (3, 8, 8)
    assert_images_are_scaled_raw(data)


def test_image_folder_grayscale(tmp_path):
    data_cfg, _ = CASES["image_folder"](tmp_path)
    data = load_data(config({**data_cfg, "grayscale": True, "image_size": 6}).data)
    assert data.info.preprocess["image"] == {"size": 6, "channels": 1, "resize": "fit"}
    assert_images_are_scaled_raw(data)


@pytest.mark.parametrize("case, size, channels", [("mnist", 28, 1), ("cifar10", 32, 3)])
def test_torchvision_sets(tmp_path, case, size, channels, skip_cifar_md5):
    _, data = loaded(case, tmp_path)
    assert_versioned(data)
    assert data.info.preprocess["image"] == {"size": size, "channels": channels, "resize": "fit"}
    assert_images_are_scaled_raw(data)


def test_the_record_survives_a_checkpoint(tmp_path, train):
    """Saved with the run's best.pt, it loads back with weights_only=True, unchanged."""
    from dltrain.predict.model import load_run

    data_cfg, _ = CASES["csv"](tmp_path)
    train(data_cfg, tmp_path / "run")
    expected = load_data(config(data_cfg).data).info
    saved = torch.load(tmp_path / "run" / "checkpoints" / "best.pt", weights_only=True)
    assert saved["data_info"]["preprocess"] == expected.preprocess
    info = load_run(tmp_path / "run").info
    assert dataclasses.replace(info, preprocess={}) == dataclasses.replace(expected, preprocess={})
    assert info.preprocess == expected.preprocess
