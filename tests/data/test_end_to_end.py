"""Every registered data set trains for one epoch through the real run entry point, from files
the test writes, and has its YAML file."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dltrain.cli import config_dir
from dltrain.data import DATASETS
from dltrain.schema import GROUPS

from data_support import (classification_csv, write_cifar10, write_image_folder, write_mnist,
                          write_csv)


def mnist(tmp_path):
    write_mnist(tmp_path)
    return {"name": "mnist", "root": str(tmp_path), "download": False}, "cnn"


def fashion_mnist(tmp_path):
    write_mnist(tmp_path, "FashionMNIST")
    return {"name": "fashion_mnist", "root": str(tmp_path), "download": False}, "mlp"


def cifar10(tmp_path):
    write_cifar10(tmp_path)
    return {"name": "cifar10", "root": str(tmp_path), "download": False, "augment": True}, "cnn"


def csv(tmp_path):
    return {"name": "csv", "path": str(classification_csv(tmp_path / "t.csv")), "target": "label"}, "mlp"


def csv_regression(tmp_path):
    lines = ["a,kind,price"] + [f"{i},{'xyz'[i % 3]},{i * 0.5 + 1}" for i in range(60)]
    path = write_csv(tmp_path / "r.csv", "\n".join(lines))
    return {"name": "csv", "path": str(path), "target": "price"}, "mlp"


def image_folder(tmp_path):
    path = write_image_folder(tmp_path / "imgs")
    return {"name": "image_folder", "path": str(path), "image_size": 8, "num_workers": 0}, "cnn"


def image_folder_streamed(tmp_path):
    path = write_image_folder(tmp_path / "imgs")
    return {"name": "image_folder", "path": str(path), "image_size": 8, "max_memory_mb": 0,
            "num_workers": 1}, "cnn"


def npz(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "a.npz", x=rng.normal(size=(80, 6, 2)), y=rng.normal(size=80))
    return {"name": "npz", "path": str(tmp_path / "a.npz")}, "gru"


CASES = {
    "digits": lambda tmp_path: ({"name": "digits"}, "mlp"),
    "diabetes": lambda tmp_path: ({"name": "diabetes"}, "mlp"),
    "mnist": mnist,
    "fashion_mnist": fashion_mnist,
    "cifar10": cifar10,
    "sine": lambda tmp_path: ({"name": "sine", "num_samples": 100, "seq_len": 20}, "gru"),
    "adding": lambda tmp_path: ({"name": "adding", "num_samples": 100, "seq_len": 20}, "lstm"),
    "csv": csv,
    "csv_regression": csv_regression,
    "image_folder": image_folder,
    "image_folder_streamed": image_folder_streamed,
    "npz": npz,
    "synthetic": lambda tmp_path: ({"name": "synthetic", "shape": [1, 8, 8], "num_samples": 100}, "cnn"),
}


def test_every_data_set_has_a_case_and_a_yaml_file():
    assert set(DATASETS.names()) == set(GROUPS["data"])
    assert set(DATASETS.names()) <= set(CASES)
    for name in DATASETS.names():
        assert (config_dir() / "data" / f"{name}.yaml").is_file(), name


@pytest.mark.parametrize("case", list(CASES))
def test_trains_one_epoch(tmp_path, case, train, skip_cifar_md5):
    data, model = CASES[case](tmp_path)
    summary = train(data, tmp_path / "run", model)
    assert summary["status"] == "completed", summary
    assert summary["data"] == data["name"] and summary["epochs_completed"] == 1
    assert math.isfinite(summary["test_loss"])
    assert (tmp_path / "run" / "checkpoints" / "best.pt").is_file()
