"""Data sets by name. ``load_data(cfg)`` returns the three splits and the :class:`DataInfo`."""

from __future__ import annotations

import math

import torch

from dltrain.data.base import DataInfo, DataSplits, Split, StreamSplit
from dltrain.data.registry import DATASETS
from dltrain.errors import UserError
from dltrain.schema import DataConfig

# importing a source module registers its data sets (torchvision and PIL are imported only
# when a set that needs them is loaded)
from dltrain.data import (  # noqa: E402,F401
    csv_file,
    image_folder,
    npz_file,
    sequences,
    sklearn_sets,
    synthetic,
    torchvision_sets,
)


def load_data(cfg: DataConfig) -> DataSplits:
    data = DATASETS.get(cfg.name)(cfg)
    if cfg.task != "auto" and cfg.task != data.info.task:
        raise UserError(f"data.task={cfg.task} but data={cfg.name} is a {data.info.task} set")
    check_splits(cfg, data)
    return data


def check_splits(cfg: DataConfig, data: DataSplits) -> None:
    """Refuse data that would train, but teach or measure nothing: an empty split, a val or test
    split of one sample, a classification with one class, a constant regression target.

    A split of one sample is refused, not warned about: its loss and accuracy are one sample's,
    so the val split would pick best.pt and stop early by chance, and a test result of 0 or 1
    says nothing. Two samples is where dltrain stops judging; the user knows their data."""
    info = data.info
    sizes = "/".join(str(len(s)) for _, s in data.splits())
    for name, split in data.splits():
        if len(split) == 0:
            raise UserError(
                f"data={cfg.name}: the {name} split is empty (train/val/test {sizes}); "
                "use more samples or larger data.val_fraction / data.test_fraction"
                + _stratified_hint(cfg, info, name))
    for name, split in data.splits()[1:]:
        if len(split) == 1:
            use = "would pick best.pt and stop early" if name == "val" else "would be the test result"
            metrics = "loss and accuracy" if info.task == "classification" else "loss"
            raise UserError(
                f"data={cfg.name}: the {name} split holds a single sample (train/val/test "
                f"{sizes}): one sample's {metrics} {use} by chance; use more samples or a "
                f"larger data.{name}_fraction")
    train = data.train
    if info.task == "classification":
        labels = int(torch.unique(train.y).numel()) if isinstance(train, Split) else info.num_outputs
        if min(labels, info.num_outputs) < 2:
            only = f" ({info.class_names[0]!r})" if info.class_names else ""
            raise UserError(
                f"data={cfg.name}: the training samples hold a single class{only}; a "
                "classification needs at least two (with one, the loss is 0 and the accuracy "
                "1 from the start)")
    elif isinstance(train, Split) and len(train) > 1:
        y = train.y.reshape(len(train), -1)
        constant = (y == y[0]).all(dim=0)
        if bool(constant.any()):
            mean = info.target_mean or (float(y[0, 0]),) * y.shape[1]
            columns = [i for i in range(y.shape[1]) if constant[i]]
            which = "the regression target" if y.shape[1] == 1 else f"target column(s) {columns}"
            raise UserError(
                f"data={cfg.name}: {which} is the same in every training sample "
                f"({mean[columns[0]]:g}): there is nothing to learn; choose a target that varies")


def _stratified_hint(cfg: DataConfig, info: DataInfo, name: str) -> str:
    """Why a classification's val or test split came out empty although there are samples:
    each class is split on its own and rounds to none."""
    fraction = getattr(cfg, f"{name}_fraction", 0) if name != "train" else 0
    if info.task != "classification" or info.num_outputs < 2 or not 0 < fraction < 1:
        return ""
    needed = math.floor(0.5 / fraction) + 1  # Python's round() takes 0.5 to 0
    return (f"; the split is stratified: each of the {info.num_outputs} classes gives it "
            f"{fraction:g} of its samples, rounded, so a class needs {needed} or more samples "
            "to give it one")


__all__ = ["DATASETS", "DataInfo", "DataSplits", "Split", "StreamSplit", "load_data"]
