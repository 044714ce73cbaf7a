"""Shared preparation of array data: the fixed-seed split and train-only standardization."""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np
import torch

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
) -> DataSplits:
    """Split ``x, y`` and standardize with statistics of the training split only.

    ``per="channel"`` normalizes image channels (one mean per channel), ``per="feature"`` each
    column of a table or each feature of a sequence. Regression targets are standardized too,
    and ``info`` records how to undo it.
    """
    classification = info.task == "classification"
    train, val, test = split_indices(y, cfg, stratify=classification)
    axes = {
        "channel": tuple(i for i in range(x.ndim) if i != 1),  # (N, C, ...) → one per channel
        "feature": tuple(range(x.ndim - 1)),  # (N, ..., F) → one per last-axis feature
        "position": (0,),  # one per input position (pixel, cell)
    }[per]
    mean = x[train].mean(axis=axes, keepdims=True)
    std = x[train].std(axis=axes, keepdims=True)
    std[std == 0] = 1.0
    x = (x - mean) / std
    if not classification:
        y_mean, y_std = y[train].mean(axis=0), y[train].std(axis=0)
        y_std[y_std == 0] = 1.0
        y = (y - y_mean) / y_std
        info = dataclasses.replace(
            info, target_mean=tuple(map(float, y_mean)), target_std=tuple(map(float, y_std))
        )

    def part(ix: np.ndarray) -> Split:
        return Split(torch.from_numpy(np.ascontiguousarray(x[ix], dtype=np.float32)),
                     torch.from_numpy(np.ascontiguousarray(y[ix])))

    return DataSplits(part(train), part(val), part(test), info)
