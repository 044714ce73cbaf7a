"""Shared preparation of array data: the fixed-seed split and train-only standardization."""

from __future__ import annotations

import dataclasses
from typing import Literal, Optional, Sequence, Tuple

import numpy as np
import torch

from dltrain.data import preprocess
from dltrain.data.base import DataInfo, DataSplits, Split
from dltrain.schema import DataConfig


def split_indices(y: np.ndarray, cfg: DataConfig, stratify: bool) -> tuple[np.ndarray, ...]:
    """Train/val/test indices, fixed by ``cfg.split_seed`` and stratified for classification
    (each class is split in the same proportions)."""
    rng = np.random.default_rng(cfg.split_seed)
    groups = [np.flatnonzero(y == c) for c in np.unique(y)] if stratify else [np.arange(len(y))]
    train, val, test = [], [], []
    for idx in groups:
        idx = rng.permutation(idx)
        n_test = round(len(idx) * cfg.test_fraction)
        n_val = round(len(idx) * cfg.val_fraction)
        test.append(idx[:n_test])
        val.append(idx[n_test:n_test + n_val])
        train.append(idx[n_test + n_val:])
    return tuple(np.sort(np.concatenate(part)) for part in (train, val, test))


def split_and_standardize(
    x: np.ndarray,
    y: np.ndarray,
    info: DataInfo,
    cfg: DataConfig,
    *,
    per: Literal["channel", "feature", "position"],
    columns: Optional[np.ndarray] = None,
) -> DataSplits:
    """Split ``x, y`` with :func:`split_indices` and :func:`standardize` the parts."""
    parts = split_indices(y, cfg, stratify=info.task == "classification")
    return standardize([(x[ix], y[ix]) for ix in parts], info, per=per, columns=columns)


def standardize(
    parts: Sequence[Tuple[np.ndarray, np.ndarray]],
    info: DataInfo,
    *,
    per: Literal["channel", "feature", "position"],
    columns: Optional[np.ndarray] = None,
) -> DataSplits:
    """Standardize the ``(x, y)`` of train, val and test with statistics of train only.

    ``per="channel"`` normalizes image channels (one mean per channel), ``per="feature"`` each
    column of a table or each feature of a sequence. ``columns`` (with ``per="feature"``) is a
    mask of the features to standardize; the others (one-hot columns) are kept as they are.
    Regression targets are standardized too, and ``info`` records how to undo it.
    """
    (x_train, y_train) = parts[0]
    axes = {
        "channel": tuple(i for i in range(x_train.ndim) if i != 1),  # (N, C, ...) → one per channel
        "feature": tuple(range(x_train.ndim - 1)),  # (N, ..., F) → one per last-axis feature
        "position": (0,),  # one per input position (pixel, cell)
    }[per]
    mean = x_train.mean(axis=axes, keepdims=True)
    std = x_train.std(axis=axes, keepdims=True)
    std[std == 0] = 1.0
    if columns is not None:
        mean[..., ~columns] = 0.0
        std[..., ~columns] = 1.0
    info = preprocess.record(info, scale=preprocess.scale(mean[0], std[0]))
    y_mean = y_std = None
    if info.task == "regression":
        y_mean, y_std = y_train.mean(axis=0), y_train.std(axis=0)
        y_std[y_std == 0] = 1.0
        info = dataclasses.replace(
            info, target_mean=tuple(map(float, y_mean)), target_std=tuple(map(float, y_std))
        )

    def part(x: np.ndarray, y: np.ndarray) -> Split:
        x = (x - mean) / std
        if y_mean is not None:
            y = (y - y_mean) / y_std
        return Split(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
                     torch.from_numpy(np.ascontiguousarray(y)))

    return DataSplits(*(part(x, y) for x, y in parts), info)
