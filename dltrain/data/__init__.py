"""Data sets by name. ``load_data(cfg)`` returns the three splits and the :class:`DataInfo`."""

from __future__ import annotations

from dltrain.data.base import DataInfo, DataSplits, Split
from dltrain.data.registry import DATASETS
from dltrain.errors import UserError
from dltrain.schema import DataConfig

# importing a source module registers its data sets
from dltrain.data import sklearn_sets  # noqa: E402,F401


def load_data(cfg: DataConfig) -> DataSplits:
    data = DATASETS.get(cfg.name)(cfg)
    if cfg.task != "auto" and cfg.task != data.info.task:
        raise UserError(f"data.task={cfg.task} but data={cfg.name} is a {data.info.task} set")
    return data


__all__ = ["DATASETS", "DataInfo", "DataSplits", "Split", "load_data"]
