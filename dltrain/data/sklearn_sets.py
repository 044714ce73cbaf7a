"""The small data sets that ship with scikit-learn: no network, no files."""

from __future__ import annotations

import numpy as np

from dltrain.data.base import DataInfo, DataSplits
from dltrain.data.prepare import split_and_standardize
from dltrain.data.registry import DATASETS
from dltrain.schema import DataConfig


@DATASETS.register("digits")
def load_digits(cfg: DataConfig) -> DataSplits:
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    x = bunch.images.astype(np.float32)[:, None, :, :]  # (N, 1, 8, 8)
    y = bunch.target.astype(np.int64)
    info = DataInfo(
        name="digits",
        kind="image",
        input_shape=(1, 8, 8),
        task="classification",
        num_outputs=10,
        class_names=tuple(str(c) for c in bunch.target_names),
    )
    return split_and_standardize(x, y, info, cfg, per="position")


@DATASETS.register("diabetes")
def load_diabetes(cfg: DataConfig) -> DataSplits:
    from sklearn.datasets import load_diabetes as sk_diabetes

    bunch = sk_diabetes(scaled=False)
    x = bunch.data.astype(np.float32)
    y = bunch.target.astype(np.float32)[:, None]
    info = DataInfo(
        name="diabetes", kind="table", input_shape=(x.shape[1],), task="regression", num_outputs=1
    )
    return split_and_standardize(x, y, info, cfg, per="feature")

