"""The small data sets that ship with scikit-learn: no network, no files of the user's.

The CSV files are read straight from scikit-learn's data folder: importing scikit-learn costs
more than a second, longer than training the default model. Its loaders are the fallback.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Optional

import numpy as np

from dltrain.data.base import DataInfo, DataSplits
from dltrain.data.prepare import split_and_standardize
from dltrain.data.registry import DATASETS
from dltrain.schema import DataConfig


def _sklearn_file(name: str) -> Optional[Path]:
    spec = importlib.util.find_spec("sklearn")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / name
    return path if path.is_file() else None


def _digits() -> tuple[np.ndarray, np.ndarray]:
    path = _sklearn_file("digits.csv.gz")
    if path is not None:
        table = np.loadtxt(path, delimiter=",", dtype=np.float32)
        return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.images.astype(np.float32), bunch.target.astype(np.int64)


def _diabetes() -> tuple[np.ndarray, np.ndarray]:
    data, target = _sklearn_file("diabetes_data_raw.csv.gz"), _sklearn_file("diabetes_target.csv.gz")
    if data is not None and target is not None:
        return np.loadtxt(data, dtype=np.float32), np.loadtxt(target, dtype=np.float32)
    from sklearn.datasets import load_diabetes

    bunch = load_diabetes(scaled=False)
    return bunch.data.astype(np.float32), bunch.target.astype(np.float32)


@DATASETS.register("digits")
def load_digits(cfg: DataConfig) -> DataSplits:
    """1797 handwritten digits, 8×8 grey levels 0-16, 10 classes."""
    images, y = _digits()
    info = DataInfo(name="digits", kind="image", input_shape=(1, 8, 8), task="classification",
                    num_outputs=10, class_names=tuple(str(c) for c in range(10)))
    return split_and_standardize(images[:, None], y, info, cfg, per="channel")


@DATASETS.register("diabetes")
def load_diabetes(cfg: DataConfig) -> DataSplits:
    """442 patients, 10 clinical features, disease progression after one year."""
    x, y = _diabetes()
    info = DataInfo(name="diabetes", kind="table", input_shape=(x.shape[1],), task="regression",
                    num_outputs=1)
    return split_and_standardize(x, y[:, None], info, cfg, per="feature")
